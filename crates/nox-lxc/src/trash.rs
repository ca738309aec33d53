//! Directory trees a command is done with but need not wait to see removed: the upper layer a
//! snapshot restore replaced (2,000 files take longer to unlink than to rename).
//!
//! [`discard`] renames the tree into `LXCPATH/.nox-trash/` (one rename, so a tree is either
//! in use or in the trash, never half of each) and leaves its removal to a detached `rm -rf`
//! that outlives the command. The trash is outside every container's directory, so the
//! removal never races `nox delete` of the container. A removal cut short (host shut down)
//! is started again by [`sweep`], which restores and recoveries call.
//! `lxc-ls` and `nox list` ignore the directory: it holds no container config or record.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nox_core::backup::private_dir;
use nox_core::{Error, InstanceName};

const DIR: &str = ".nox-trash";

/// The trash of containers under `lxcpath`.
pub fn dir(lxcpath: &Path) -> PathBuf {
    lxcpath.join(DIR)
}

/// A name no other discard takes: the container's, this process's id and a clock reading,
/// so a second discard by the same command (or a pid reused after a reboot) cannot collide.
fn entry_name(container: &InstanceName, pid: u32, nanos: u128) -> String {
    format!("{container}-{pid}-{nanos}")
}

/// Moves `tree` into the trash and starts removing it in the background. Falls back to
/// removing it here when it cannot be renamed there (another filesystem).
pub fn discard(lxcpath: &Path, container: &InstanceName, tree: &Path) -> Result<(), Error> {
    let trash = dir(lxcpath);
    private_dir(&trash)?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let to = trash.join(entry_name(container, std::process::id(), nanos));
    match std::fs::rename(tree, &to) {
        Ok(()) => {
            remove_in_background(vec![to.into_os_string()]);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => std::fs::remove_dir_all(tree)
            .map_err(|e| Error::io(format!("removing {}", tree.display()), e)),
        Err(e) => Err(Error::io(
            format!("moving {} to {}", tree.display(), trash.display()),
            e,
        )),
    }
}

/// Starts removing what is left in the trash: removals a shutdown or a kill cut short. An
/// entry changed within [`BUSY`] is skipped: the removal that was started for it is most
/// likely still unlinking its files (which changes it), and a second `rm` on the same tree
/// only doubles the load on the disk while nox's own copy runs.
pub fn sweep(lxcpath: &Path) {
    sweep_quiet_for(lxcpath, BUSY)
}

fn sweep_quiet_for(lxcpath: &Path, busy: std::time::Duration) {
    let Ok(entries) = std::fs::read_dir(dir(lxcpath)) else {
        return;
    };
    let now = std::time::SystemTime::now();
    let paths: Vec<OsString> = entries
        .flatten()
        .filter(|e| !changed_within(&e.path(), now, busy))
        .map(|e| e.path().into_os_string())
        .collect();
    if !paths.is_empty() {
        remove_in_background(paths);
    }
}

/// How recently an entry must have changed for [`sweep`] to leave it to its own removal.
const BUSY: std::time::Duration = std::time::Duration::from_secs(120);

/// Whether `path` was renamed into the trash, or had an entry removed, within `busy` of `now`
/// (a rename and an unlink both set the directory's ctime).
fn changed_within(path: &Path, now: std::time::SystemTime, busy: std::time::Duration) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return false;
    };
    let changed =
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(meta.ctime().max(0) as u64);
    now.duration_since(changed).is_ok_and(|age| age < busy)
}

/// `rm -rf --one-file-system -- PATHS`, detached: its own process group (a Ctrl+C that ends
/// nox does not end it), no terminal, and nobody waits for it. Paths are nox's own, passed
/// as arguments, never through a shell. If it cannot start, the next sweep retries.
fn remove_in_background(paths: Vec<OsString>) {
    use std::os::unix::process::CommandExt;
    let _ = Command::new("rm")
        .args(["-rf", "--one-file-system", "--"])
        .args(paths)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_differ_by_container_pid_and_time() {
        let a: InstanceName = "web".parse().unwrap();
        let b: InstanceName = "db".parse().unwrap();
        let names = [
            entry_name(&a, 7, 1),
            entry_name(&a, 7, 2),
            entry_name(&a, 8, 1),
            entry_name(&b, 7, 1),
        ];
        let unique: std::collections::BTreeSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        assert_eq!(names[0], "web-7-1");
    }

    #[test]
    fn a_discarded_tree_leaves_its_place_at_once_and_is_removed_in_the_background() {
        let lxcpath = tempfile::tempdir().unwrap();
        let tree = lxcpath.path().join("web/.nox-old-delta");
        std::fs::create_dir_all(tree.join("a/b")).unwrap();
        std::fs::write(tree.join("a/b/f"), b"x").unwrap();
        let name: InstanceName = "web".parse().unwrap();
        discard(lxcpath.path(), &name, &tree).unwrap();
        assert!(!tree.exists());
        let trash = dir(lxcpath.path());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::read_dir(&trash).unwrap().next().is_some() {
            assert!(
                std::time::Instant::now() < deadline,
                "the trash was not emptied"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    #[test]
    fn a_sweep_removes_what_an_interrupted_removal_left() {
        let lxcpath = tempfile::tempdir().unwrap();
        let left = dir(lxcpath.path()).join("web-1-1");
        std::fs::create_dir_all(left.join("x")).unwrap();
        // Just changed: its own removal is taken to be running still, and left to it.
        sweep(lxcpath.path());
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(left.exists(), "a sweep doubled a removal still under way");
        // Quiet for long enough: a removal that was cut short.
        sweep_quiet_for(lxcpath.path(), std::time::Duration::ZERO);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while left.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "the sweep removed nothing"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // An empty or missing trash is nothing to do.
        sweep(lxcpath.path());
        sweep(&lxcpath.path().join("nowhere"));
    }
}
