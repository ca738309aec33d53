//! nox's per-instance state on this host: the instance locks and the intent records of
//! operations in progress, under one directory (`[state] dir`, `/var/lib/nox/state`):
//!
//! ```text
//! locks/local/NAME.lock        locks/remotes/REMOTE/NAME.lock
//! intents/local/NAME.json      intents/remotes/REMOTE/NAME.json
//! ```
//!
//! A name is locked per place: `web` on this host and `cluster:web` are two instances. The
//! lock of a remote instance is this host's only: two hosts driving one cluster are kept apart
//! by Incus itself, not by nox.

pub mod instance_lock;
pub mod intent;

use std::path::{Path, PathBuf};

pub use instance_lock::{Holder, InstanceLock};
pub use intent::{Intent, IntentGuard, Operation};

use crate::error::{Error, Result};
use crate::instance::BackendKind;
use crate::name::InstanceRef;

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

/// How to take a lock that another command holds.
pub enum Wait<'a> {
    /// Do not wait: report the holder.
    No,
    /// Wait, after telling `waiting` who holds it.
    Yes(&'a mut dyn FnMut(&Holder)),
}

impl std::fmt::Debug for Wait<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Wait::No => "Wait::No",
            Wait::Yes(_) => "Wait::Yes",
        })
    }
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> StateDir {
        StateDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `local/NAME` or `remotes/REMOTE/NAME`, with `ext`.
    fn place(&self, kind: &str, r: &InstanceRef, ext: &str) -> PathBuf {
        let base = self.root.join(kind);
        let dir = match r.remote() {
            None => base.join("local"),
            Some(remote) => base.join("remotes").join(remote),
        };
        dir.join(format!("{}.{ext}", r.name))
    }

    pub fn lock_path(&self, r: &InstanceRef) -> PathBuf {
        self.place("locks", r, "lock")
    }

    pub fn intent_path(&self, r: &InstanceRef) -> PathBuf {
        self.place("intents", r, "json")
    }

    /// The local instances a running command is creating on `backend` now: a create intent
    /// whose process is alive. Until such a create writes its instance's record, nothing
    /// says which cached image it took, so `nox image rm` and `prune` refuse to run beside
    /// one. A record whose process is gone was left by a killed create, which recovery
    /// undoes: it needs no image.
    pub fn creating(&self, backend: BackendKind) -> Result<Vec<String>> {
        let dir = self.root.join("intents").join("local");
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(format!("reading {}", dir.display()), e)),
        };
        let mut names = Vec::new();
        for e in entries.flatten() {
            let path = e.path();
            let Some(name) = path
                .extension()
                .filter(|x| *x == "json")
                .and_then(|_| path.file_stem())
            else {
                continue;
            };
            // A record being replaced or removed as we read it is no create in progress.
            let Ok(Some(intent)) = intent::read(&path) else {
                continue;
            };
            let alive = Path::new("/proc").join(intent.pid.to_string()).exists();
            if intent.operation == Operation::Create && intent.backend == backend && alive {
                names.push(name.to_string_lossy().into_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    /// Takes `r`'s lock for `verb`. With [`Wait::No`], `Ok(Err(holder))` when it is held.
    pub fn lock(
        &self,
        r: &InstanceRef,
        verb: &str,
        wait: Wait<'_>,
    ) -> Result<std::result::Result<Held, Holder>> {
        let path = self.lock_path(r);
        let lock = match wait {
            Wait::No => match InstanceLock::try_acquire(&path, verb)? {
                Ok(l) => l,
                Err(holder) => return Ok(Err(holder)),
            },
            Wait::Yes(waiting) => InstanceLock::acquire(&path, verb, waiting)?,
        };
        Ok(Ok(Held {
            intent: self.intent_path(r),
            _lock: lock,
        }))
    }
}

/// An instance lock, held: the only way to read, write or clear the instance's record.
#[derive(Debug)]
pub struct Held {
    intent: PathBuf,
    _lock: InstanceLock,
}

impl Held {
    /// What a command that died while holding this lock was doing, if one did.
    pub fn interrupted(&self) -> Result<Option<Intent>> {
        // A temp file is what a writer killed between write and rename left.
        if let (Some(dir), Some(stem)) = (self.intent.parent(), self.intent.file_stem()) {
            let prefix = format!("{}.tmp-", stem.to_string_lossy());
            if let Ok(entries) = std::fs::read_dir(dir) {
                for e in entries.flatten() {
                    if e.file_name().to_string_lossy().starts_with(&prefix) {
                        let _ = std::fs::remove_file(e.path());
                    }
                }
            }
        }
        intent::read(&self.intent)
    }

    /// Forgets the interrupted operation once it has been put right.
    pub fn clear_interrupted(&self) -> Result<()> {
        intent::clear(&self.intent)
    }

    /// Records `intent` before its first side effect; the record goes when the guard drops.
    pub fn begin(&self, intent: &Intent) -> Result<IntentGuard> {
        intent::write(&self.intent, intent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_and_remote_names_are_apart() {
        let s = StateDir::new("/var/lib/nox/state");
        let local: InstanceRef = "web".parse().unwrap();
        let remote: InstanceRef = "cluster:web".parse().unwrap();
        assert_eq!(
            s.lock_path(&local),
            Path::new("/var/lib/nox/state/locks/local/web.lock")
        );
        assert_eq!(
            s.intent_path(&remote),
            Path::new("/var/lib/nox/state/intents/remotes/cluster/web.json")
        );
    }

    #[test]
    fn a_record_is_seen_by_the_next_holder_until_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateDir::new(dir.path());
        let r: InstanceRef = "web".parse().unwrap();
        let held = s.lock(&r, "create", Wait::No).unwrap().unwrap();
        assert_eq!(held.interrupted().unwrap(), None);
        let intent = Intent::new(Operation::Create, BackendKind::Vm);
        std::mem::forget(held.begin(&intent).unwrap());
        // A second command cannot take the lock while the first holds it.
        assert!(s.lock(&r, "delete", Wait::No).unwrap().is_err());
        drop(held);
        // The first died: the next finds what it was doing, and clears it once put right.
        let next = s.lock(&r, "delete", Wait::No).unwrap().unwrap();
        assert_eq!(next.interrupted().unwrap(), Some(intent));
        next.clear_interrupted().unwrap();
        assert_eq!(next.interrupted().unwrap(), None);
        drop(next);
        // Nothing is left in the state directory but its empty directories.
        for kind in ["locks/local", "intents/local"] {
            assert_eq!(std::fs::read_dir(dir.path().join(kind)).unwrap().count(), 0);
        }
    }

    #[test]
    fn creating_names_only_live_creates_of_that_backend() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateDir::new(dir.path());
        assert!(s.creating(BackendKind::Lxc).unwrap().is_empty());
        let record = |name: &str, op: Operation, backend: BackendKind, pid: u32| {
            let mut i = Intent::new(op, backend);
            i.pid = pid;
            let path = s.intent_path(&name.parse().unwrap());
            // Kept on disk: the guard would remove the record when dropped.
            std::mem::forget(intent::write(&path, &i).unwrap());
        };
        let me = std::process::id();
        record("web", Operation::Create, BackendKind::Lxc, me);
        record("db", Operation::Create, BackendKind::Vm, me);
        record("old", Operation::Backup, BackendKind::Lxc, me);
        // pid_max is at most 2^22: this process cannot exist.
        record("dead", Operation::Create, BackendKind::Lxc, u32::MAX);
        assert_eq!(s.creating(BackendKind::Lxc).unwrap(), ["web"]);
        assert_eq!(s.creating(BackendKind::Vm).unwrap(), ["db"]);
    }
}
