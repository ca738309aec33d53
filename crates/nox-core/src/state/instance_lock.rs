//! One lock per instance name, held by every nox command that changes the instance.
//!
//! The lock is a `flock` on `locks/PLACE/NAME.lock`: the kernel drops it when its holder dies,
//! so a killed nox never blocks a name. The file is removed when the lock is released, so no
//! lock file outlives its command. Removing a lock file races with a command that has opened
//! it and waits: that command would then hold a lock on a file no longer in the directory,
//! while a third one creates a new file and locks that. So whoever gets the lock checks that
//! the path still names the file it locked, and starts over if not.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, Result};

/// Who holds a lock, as it wrote itself into the lock file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: Option<u32>,
    /// The verb it runs (`create`, `delete`, ...).
    pub verb: Option<String>,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.verb, self.pid) {
            (Some(v), Some(p)) => write!(f, "`nox {v}` (pid {p})"),
            (None, Some(p)) => write!(f, "another nox command (pid {p})"),
            _ => f.write_str("another nox command"),
        }
    }
}

/// A held instance lock; dropping it removes the file and releases the lock.
#[derive(Debug)]
pub struct InstanceLock {
    path: PathBuf,
    // Dropped after the file is removed (fields drop in order after `Drop::drop`).
    _flock: Flock<File>,
}

impl InstanceLock {
    /// Takes the lock on `path` without waiting: `Ok(Err(holder))` when another process has it.
    pub fn try_acquire(path: &Path, verb: &str) -> Result<std::result::Result<Self, Holder>> {
        loop {
            let file = open(path)?;
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(flock) => {
                    if let Some(lock) = Self::confirm(path, flock, verb)? {
                        return Ok(Ok(lock));
                    }
                }
                Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
                    return Ok(Err(read_holder(&mut file)));
                }
                Err((_, e)) => return Err(lock_error(path, e)),
            }
        }
    }

    /// Takes the lock on `path`, waiting for its holder; `waiting` is called once, with the
    /// holder, when there is one to wait for.
    pub fn acquire(path: &Path, verb: &str, waiting: &mut dyn FnMut(&Holder)) -> Result<Self> {
        match Self::try_acquire(path, verb)? {
            Ok(lock) => return Ok(lock),
            Err(holder) => waiting(&holder),
        }
        loop {
            let file = open(path)?;
            let flock =
                Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| lock_error(path, e))?;
            if let Some(lock) = Self::confirm(path, flock, verb)? {
                return Ok(lock);
            }
        }
    }

    /// The lock is ours if `path` still names the file we locked (see the module comment).
    fn confirm(path: &Path, mut flock: Flock<File>, verb: &str) -> Result<Option<Self>> {
        let ours = flock
            .metadata()
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        match std::fs::metadata(path) {
            Ok(now) if now.ino() == ours.ino() && now.dev() == ours.dev() => {}
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        }
        // Who we are, for the messages of whoever waits. Best effort: the lock is what counts.
        let _ = flock
            .set_len(0)
            .and_then(|_| flock.rewind())
            .and_then(|_| writeln!(flock, "{} {verb}", std::process::id()));
        Ok(Some(InstanceLock {
            path: path.to_path_buf(),
            _flock: flock,
        }))
    }
}

impl Drop for InstanceLock {
    fn drop(&mut self) {
        // Removed while still held: a waiter that wakes up on this file sees it is gone.
        let _ = std::fs::remove_file(&self.path);
    }
}

fn open(path: &Path) -> Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))
}

fn read_holder(file: &mut File) -> Holder {
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    let mut words = text.split_whitespace();
    Holder {
        pid: words.next().and_then(|p| p.parse().ok()),
        verb: words.next().map(str::to_string),
    }
}

fn lock_error(path: &Path, e: nix::errno::Errno) -> Error {
    Error::io(format!("locking {}", path.display()), e.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_taker_is_told_who_holds_it_and_the_file_goes_with_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("local/web.lock");
        let held = InstanceLock::try_acquire(&path, "create").unwrap().unwrap();
        // flock locks belong to open files: a second open in this process conflicts too.
        let holder = InstanceLock::try_acquire(&path, "delete")
            .unwrap()
            .unwrap_err();
        assert_eq!(holder.pid, Some(std::process::id()));
        assert_eq!(holder.verb.as_deref(), Some("create"));
        assert_eq!(
            holder.to_string(),
            format!("`nox create` (pid {})", std::process::id())
        );
        drop(held);
        assert!(!path.exists());
        let again = InstanceLock::try_acquire(&path, "delete").unwrap().unwrap();
        drop(again);
        assert!(!path.exists());
    }

    #[test]
    fn a_waiter_gets_the_lock_when_the_holder_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.lock");
        let held = InstanceLock::try_acquire(&path, "backup").unwrap().unwrap();
        let p = path.clone();
        let waiter = std::thread::spawn(move || {
            let mut seen = Vec::new();
            let lock = InstanceLock::acquire(&p, "stop", &mut |h| seen.push(h.clone())).unwrap();
            let text = std::fs::read_to_string(&p).unwrap();
            drop(lock);
            (seen, text)
        });
        std::thread::sleep(std::time::Duration::from_millis(200));
        drop(held);
        let (seen, text) = waiter.join().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].verb.as_deref(), Some("backup"));
        assert_eq!(text, format!("{} stop\n", std::process::id()));
    }

    #[test]
    fn many_threads_never_hold_it_at_once() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let path = Arc::new(dir.path().join("web.lock"));
        let inside = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (path, inside) = (path.clone(), inside.clone());
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        let _l = InstanceLock::acquire(&path, "start", &mut |_| {}).unwrap();
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0);
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(!path.exists());
    }
}
