//! Intent records: what a changing command is about to do to an instance, written before its
//! first side effect and removed when it returns.
//!
//! A command that returns, with success or an error, has already cleaned up after itself
//! (each backend undoes a failed create or restore), so only a command that died (SIGKILL,
//! OOM, power loss) leaves its record behind. The next command that takes the instance's
//! lock finds it and finishes or undoes what the dead one left (see nox-ops' `recovery`).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::instance::BackendKind;

/// The operations whose half-done work needs putting right.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// Undone: everything made for the name is removed.
    Create,
    /// Undone, as a create.
    Restore,
    /// Finished: everything left of the instance is removed.
    Delete,
    /// Undone: the backup's job ended, the guest thawed, a stopped instance started again.
    Backup,
    /// Undone: the launch-script files (and any secret) left in the guest are removed.
    Run,
    /// A snapshot taken, restored or removed: the half-made snapshot is removed, a restore
    /// finished or undone, a frozen guest thawed (see `SnapshotBackend::recover`).
    Snapshot,
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Operation::Create => "create",
            Operation::Restore => "restore",
            Operation::Delete => "delete",
            Operation::Backup => "backup",
            Operation::Run => "run",
            Operation::Snapshot => "snapshot",
        })
    }
}

/// One record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    pub operation: Operation,
    /// The backend the instance is (or was going to be) in.
    pub backend: BackendKind,
    pub pid: u32,
    /// Seconds since the Unix epoch.
    pub started: u64,
    /// The instance was running before the operation stopped it (a backup with `--stop`):
    /// undoing it means starting it again.
    #[serde(default)]
    pub was_running: bool,
}

impl Intent {
    /// A record of `operation` on a `backend` instance, by this process, now.
    pub fn new(operation: Operation, backend: BackendKind) -> Intent {
        Intent {
            operation,
            backend,
            pid: std::process::id(),
            started: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            was_running: false,
        }
    }
}

/// A written record; dropping it removes the file (the command returned).
#[derive(Debug)]
pub struct IntentGuard {
    path: PathBuf,
}

impl Drop for IntentGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        if let Some(dir) = self.path.parent() {
            sync_dir(dir);
        }
    }
}

/// Writes `intent` at `path` durably (temp file, fsync, rename, fsync of the directory), so
/// that a record exists on disk before the side effect it announces.
pub fn write(path: &Path, intent: &Intent) -> Result<IntentGuard> {
    let dir = path
        .parent()
        .ok_or_else(|| Error::failure(format!("{} has no directory", path.display())))?;
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let io = |e| Error::io(format!("writing {}", path.display()), e);
    let json = serde_json::to_vec_pretty(intent)
        .map_err(|e| Error::encode("encoding an intent record", e))?;
    // The lock is held, so no other process writes this name's record; the pid keeps the
    // temp name apart from one a dead command left.
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(&json).and_then(|_| f.sync_all()).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    sync_dir(dir);
    Ok(IntentGuard {
        path: path.to_path_buf(),
    })
}

/// The record at `path`, if any. One that cannot be read (a torn write cannot happen, but the
/// file may have been edited) is an error that names the file, so nothing is guessed.
pub fn read(path: &Path) -> Result<Option<Intent>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        Error::failed(
            format!(
                "{} is not an intent record nox can read: {e}",
                path.display()
            ),
            "remove the file once the instance it names is as you want it",
        )
    })
}

/// Removes the record at `path` (after its operation was finished or undone).
pub fn clear(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            if let Some(dir) = path.parent() {
                sync_dir(dir);
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("removing {}", path.display()), e)),
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_lives_until_its_guard_drops() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("intents/local/web.json");
        let intent = Intent::new(Operation::Create, BackendKind::Lxc);
        let guard = write(&path, &intent).unwrap();
        assert_eq!(read(&path).unwrap(), Some(intent));
        // Only the record is in the directory: the temp file was renamed over it.
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
        drop(guard);
        assert_eq!(read(&path).unwrap(), None);
    }

    #[test]
    fn a_killed_command_leaves_its_record_and_clear_removes_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.json");
        let mut intent = Intent::new(Operation::Backup, BackendKind::Vm);
        intent.was_running = true;
        // A process that dies never runs the guard's drop.
        std::mem::forget(write(&path, &intent).unwrap());
        assert!(read(&path).unwrap().unwrap().was_running);
        clear(&path).unwrap();
        clear(&path).unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn an_unreadable_record_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.json");
        std::fs::write(&path, "{ not json").unwrap();
        let e = read(&path).unwrap_err();
        assert!(e.to_string().contains("web.json"), "{e}");
    }
}
