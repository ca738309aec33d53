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

use crate::error::Result;
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
    use crate::instance::BackendKind;

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
}
