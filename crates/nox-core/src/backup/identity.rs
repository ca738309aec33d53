//! What makes a guest one particular machine: the files a copy restored under a new name must
//! not share with the original. The one list every backend applies (a container's root on
//! this host, an Incus instance through its files API, a VM's disk image), so the three never
//! drift apart.
//!
//! Chosen, and why (docs/backups.md says the same to users):
//! - `/etc/machine-id` is emptied: systemd draws a new id at boot, and with it
//!   systemd-networkd's DHCP client id (a copied one gets the original's address), journald's
//!   and D-Bus's identity.
//! - `/var/lib/dbus/machine-id` is removed: D-Bus reads it before `/etc/machine-id`; where it
//!   is the usual link to `/etc/machine-id` it falls back to that file anyway.
//! - `/var/lib/systemd/random-seed` is removed: systemd credits the seed file to the kernel's
//!   entropy pool at boot, and two machines must not start from the same one.
//! - Tailscale's node state (`tailscaled.state`: machine and node keys) and its log id
//!   (`tailscaled.log.conf`) are removed: two nodes with one key fight over one tailnet
//!   address. The copy starts logged out and joins again (`nox run NAME tailscale`).
//! - SSH host keys are **not** in the list: cloud-init makes new ones when the instance id
//!   changes (every restore under a new name gives a new one), while a guest without
//!   cloud-init would be left with no host keys and no sshd, since Debian's openssh makes them
//!   only when installed.
//! - cloud-init's instance id is not a file here: each backend gives the copy a new one in its
//!   seed or config.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

use crate::error::{Error, Result};

/// How one identity file is reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reset {
    /// Truncated to nothing, its owner and mode kept: systemd reads an empty machine-id as
    /// "not yet initialised" and draws a new one.
    Empty,
    /// Removed: its program makes a new one.
    Remove,
}

/// One file that identifies a machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdentityFile {
    /// Absolute path in the guest.
    pub path: &'static str,
    pub reset: Reset,
}

/// Tailscale's node state: its machine and node keys.
pub const TAILSCALE_STATE: &str = "/var/lib/tailscale/tailscaled.state";

/// Every identity file a restore under a new name resets, in the order it resets them.
pub const IDENTITY_FILES: &[IdentityFile] = &[
    IdentityFile {
        path: "/etc/machine-id",
        reset: Reset::Empty,
    },
    IdentityFile {
        path: "/var/lib/dbus/machine-id",
        reset: Reset::Remove,
    },
    IdentityFile {
        path: "/var/lib/systemd/random-seed",
        reset: Reset::Remove,
    },
    IdentityFile {
        path: TAILSCALE_STATE,
        reset: Reset::Remove,
    },
    IdentityFile {
        path: "/var/lib/tailscale/tailscaled.log.conf",
        reset: Reset::Remove,
    },
];

impl IdentityFile {
    /// The path without its leading `/`, relative to a guest's root.
    pub fn relative(&self) -> &'static str {
        self.path.trim_start_matches('/')
    }

    /// The directory and the file name, relative to a guest's root.
    pub fn split(&self) -> (&'static str, &'static str) {
        self.relative()
            .rsplit_once('/')
            .unwrap_or(("", self.relative()))
    }
}

/// The note a restore prints when the copy's Tailscale state was removed.
pub fn tailscale_note(target: &str) -> String {
    format!(
        "{target} does not share the original's Tailscale node: it starts logged out; join it with `nox run {target} tailscale`"
    )
}

/// Resets every identity file in a guest root filesystem that sits on this host (a restored
/// container's). Paths resolve as they would inside the guest (`RESOLVE_IN_ROOT`): a symlink
/// in the backup (`/var/lib -> /`) can never reach a file of the host. Returns the files that
/// were there and were reset.
pub fn reset_in_root(root: &Path) -> Result<Vec<&'static str>> {
    let root_fd = open_in(None, root, OFlag::O_PATH | OFlag::O_DIRECTORY, false)
        .map_err(|e| Error::io(format!("opening {}", root.display()), e.into()))?;
    let mut reset = Vec::new();
    for f in IDENTITY_FILES {
        let what = || format!("resetting {} in {}", f.path, root.display());
        let done = match f.reset {
            Reset::Empty => empty(&root_fd, f.relative()),
            Reset::Remove => remove(&root_fd, f),
        }
        .map_err(|e| Error::io(what(), e.into()))?;
        if done {
            reset.push(f.path);
        }
    }
    Ok(reset)
}

/// `openat2` under `dir` (or the current directory), resolving inside it when `in_root`.
fn open_in(
    dir: Option<&OwnedFd>,
    path: impl AsRef<Path>,
    flags: OFlag,
    in_root: bool,
) -> nix::Result<OwnedFd> {
    let mut how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .mode(Mode::empty());
    if in_root {
        // Symlinks are followed as if `dir` were `/`, and /proc's magic links not at all.
        how = how.resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    }
    match dir {
        Some(d) => nix::fcntl::openat2(d.as_fd(), path.as_ref(), how),
        None => nix::fcntl::openat2(nix::fcntl::AT_FDCWD, path.as_ref(), how),
    }
}

/// Truncates `rel` when it is a regular file with content; `false` when it is absent, empty
/// or something else (a FIFO or a device is never opened for writing).
fn empty(root: &OwnedFd, rel: &str) -> nix::Result<bool> {
    let file = match open_in(Some(root), rel, OFlag::O_PATH, true) {
        Ok(f) => f,
        Err(Errno::ENOENT | Errno::ENOTDIR) => return Ok(false),
        Err(e) => return Err(e),
    };
    let st = nix::sys::stat::fstat(&file)?;
    if st.st_mode & nix::libc::S_IFMT != nix::libc::S_IFREG || st.st_size == 0 {
        return Ok(false);
    }
    // Reopened through the O_PATH descriptor itself: the file checked is the file written.
    let proc_path = format!("/proc/self/fd/{}", file.as_raw_fd());
    let writable = open_in(None, proc_path, OFlag::O_WRONLY | OFlag::O_NOCTTY, false)?;
    nix::unistd::ftruncate(&writable, 0)?;
    nix::unistd::fsync(&writable)?;
    Ok(true)
}

/// Unlinks `f` (never a directory); `false` when it was not there.
fn remove(root: &OwnedFd, f: &IdentityFile) -> nix::Result<bool> {
    let (dir, name) = f.split();
    let parent = match open_in(Some(root), dir, OFlag::O_PATH | OFlag::O_DIRECTORY, true) {
        Ok(d) => d,
        Err(Errno::ENOENT | Errno::ENOTDIR) => return Ok(false),
        Err(e) => return Err(e),
    };
    match nix::unistd::unlinkat(&parent, name, nix::unistd::UnlinkatFlags::NoRemoveDir) {
        Ok(()) => Ok(true),
        Err(Errno::ENOENT | Errno::EISDIR) => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn put(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn the_list_holds_tailscale_and_machine_id_as_absolute_guest_paths() {
        assert!(IDENTITY_FILES.iter().any(|f| f.path == TAILSCALE_STATE));
        let mid = IDENTITY_FILES
            .iter()
            .find(|f| f.path == "/etc/machine-id")
            .unwrap();
        assert_eq!(mid.reset, Reset::Empty);
        assert_eq!(mid.split(), ("etc", "machine-id"));
        for f in IDENTITY_FILES {
            assert!(f.path.starts_with('/') && !f.path.contains(".."), "{f:?}");
            // The paths are used as debugfs commands and API query values: plain names only.
            assert!(
                f.path
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b)),
                "{f:?}"
            );
        }
    }

    #[test]
    fn a_root_loses_its_identity_and_keeps_everything_else() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        put(root, "etc/machine-id", "0123456789abcdef0123456789abcdef\n");
        std::fs::set_permissions(
            root.join("etc/machine-id"),
            std::fs::Permissions::from_mode(0o444),
        )
        .unwrap();
        put(
            root,
            "var/lib/tailscale/tailscaled.state",
            "{\"_machinekey\":1}",
        );
        put(root, "var/lib/tailscale/derpmap.cached.json", "{}");
        put(root, "etc/hostname", "web\n");
        let reset = reset_in_root(root).unwrap();
        assert_eq!(reset, ["/etc/machine-id", TAILSCALE_STATE]);
        let mid = root.join("etc/machine-id");
        assert_eq!(std::fs::read(&mid).unwrap(), b"");
        assert_eq!(
            std::fs::metadata(&mid).unwrap().permissions().mode() & 0o777,
            0o444
        );
        assert!(!root.join("var/lib/tailscale/tailscaled.state").exists());
        assert!(root.join("var/lib/tailscale/derpmap.cached.json").exists());
        assert_eq!(
            std::fs::read_to_string(root.join("etc/hostname")).unwrap(),
            "web\n"
        );
        // Nothing left to reset: nothing reported.
        assert!(reset_in_root(root).unwrap().is_empty());
    }

    #[test]
    fn symlinks_in_a_backup_never_reach_the_host() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("host");
        put(&outside, "var/lib/tailscale/tailscaled.state", "host's own");
        put(&outside, "etc/machine-id", "host-id\n");
        let root = tmp.path().join("guest");
        std::fs::create_dir_all(root.join("var")).unwrap();
        // Absolute and relative links that point out of the guest's root, as a hostile backup
        // could hold: inside the guest they resolve under its own root.
        std::os::unix::fs::symlink(outside.join("var/lib"), root.join("var/lib")).unwrap();
        std::os::unix::fs::symlink("../../host/etc", root.join("etc")).unwrap();
        let reset = reset_in_root(&root).unwrap();
        assert!(reset.is_empty(), "{reset:?}");
        assert_eq!(
            std::fs::read_to_string(outside.join("var/lib/tailscale/tailscaled.state")).unwrap(),
            "host's own"
        );
        assert_eq!(
            std::fs::read_to_string(outside.join("etc/machine-id")).unwrap(),
            "host-id\n"
        );
    }

    #[test]
    fn a_link_inside_the_guest_is_followed_inside_it_and_odd_files_are_left() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        // /var/lib/tailscale -> /data/ts inside the guest (absolute: the guest's own /).
        put(root, "data/ts/tailscaled.state", "keys");
        std::fs::create_dir_all(root.join("var/lib")).unwrap();
        std::os::unix::fs::symlink("/data/ts", root.join("var/lib/tailscale")).unwrap();
        // A FIFO where machine-id should be: never opened for writing.
        std::fs::create_dir_all(root.join("etc")).unwrap();
        nix::unistd::mkfifo(
            &root.join("etc/machine-id"),
            Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        // A directory where the random seed should be: not removed.
        std::fs::create_dir_all(root.join("var/lib/systemd/random-seed")).unwrap();
        let reset = reset_in_root(root).unwrap();
        assert_eq!(reset, [TAILSCALE_STATE]);
        assert!(!root.join("data/ts/tailscaled.state").exists());
        assert!(root.join("var/lib/systemd/random-seed").is_dir());
    }
}
