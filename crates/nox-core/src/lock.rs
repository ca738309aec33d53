//! Exclusive file locks (flock): held while the guard lives, and released by the kernel when
//! the holder dies, so a killed nox never leaves a name or a cache locked.

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{Error, Result};

/// A held lock; dropping it releases the lock.
pub type LockGuard = nix::fcntl::Flock<File>;

/// Waits for and takes the exclusive lock on `path` (created 0600 if missing).
pub fn lock(path: &Path) -> Result<LockGuard> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| Error::io(format!("locking {}", path.display()), e.into()))
}
