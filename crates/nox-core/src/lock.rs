//! Exclusive file locks (flock): held while the guard lives, and released by the kernel when
//! the holder dies, so a killed nox never leaves a name or a cache locked.

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{Error, Result};

/// A held lock; dropping it releases the lock.
pub type LockGuard = nix::fcntl::Flock<File>;

/// The lock file, created 0600 if missing (never truncated: it holds nothing).
fn open(path: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(format!("creating {}", path.display()), e))
}

/// Waits for and takes the exclusive lock on `path` (created 0600 if missing).
pub fn lock(path: &Path) -> Result<LockGuard> {
    lock_saying(path, || {})
}

/// As [`lock`], calling `on_wait` first when another process holds the lock, so a long wait
/// (another nox's image build) is said, not silent. The wait ends when the holder ends,
/// however it ends: the kernel releases a dead holder's lock.
pub fn lock_saying(path: &Path, on_wait: impl FnOnce()) -> Result<LockGuard> {
    let f = open(path)?;
    let f = match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(guard) => return Ok(guard),
        Err((f, nix::errno::Errno::EWOULDBLOCK)) => f,
        Err((_, e)) => return Err(Error::io(format!("locking {}", path.display()), e.into())),
    };
    on_wait();
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| Error::io(format!("locking {}", path.display()), e.into()))
}

/// Waits for and takes `path`'s lock shared: any number of holders, none while an exclusive
/// [`lock`] is held.
pub fn lock_shared(path: &Path) -> Result<LockGuard> {
    let f = open(path)?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockShared)
        .map_err(|(_, e)| Error::io(format!("locking {}", path.display()), e.into()))
}

/// The lock on `path` if nobody holds it now, `None` if somebody does. It never waits.
pub fn try_lock(path: &Path) -> Result<Option<LockGuard>> {
    let f = open(path)?;
    match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(guard) => Ok(Some(guard)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(Error::io(format!("locking {}", path.display()), e.into())),
    }
}

#[cfg(test)]
mod wait_tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn a_busy_lock_says_it_waits_then_is_taken_when_the_holder_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let free = AtomicBool::new(false);
        lock_saying(&path, || free.store(true, Ordering::SeqCst)).unwrap();
        assert!(
            !free.load(Ordering::SeqCst),
            "a free lock is taken without waiting"
        );

        // flock belongs to an open file description: a second open in this process waits.
        let held = lock(&path).unwrap();
        let waited = AtomicBool::new(false);
        std::thread::scope(|s| {
            let t = s.spawn(|| lock_saying(&path, || waited.store(true, Ordering::SeqCst)));
            std::thread::sleep(std::time::Duration::from_millis(200));
            assert!(!t.is_finished(), "the second lock must wait for the first");
            drop(held);
            t.join().unwrap().unwrap();
        });
        assert!(waited.load(Ordering::SeqCst));
    }

    #[test]
    fn try_lock_takes_a_free_lock_and_says_none_while_it_is_held() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let held = try_lock(&path).unwrap().expect("a free lock is taken");
        assert!(try_lock(&path).unwrap().is_none());
        drop(held);
        assert!(try_lock(&path).unwrap().is_some());
    }
}
