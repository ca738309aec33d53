//! Ctrl-C during a long operation: the CLI's signal handler sets a flag; backends check it at
//! every wait and download step and unwind through their rollback, so an interrupted create
//! leaves nothing behind.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Called from the signal handler: only an atomic store, which is async-signal-safe.
pub fn request() {
    REQUESTED.store(true, Ordering::SeqCst);
}

pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// `Err(Interrupted)` once Ctrl-C was pressed.
pub fn check() -> Result<()> {
    if requested() {
        Err(Error::failed(
            "interrupted",
            "nothing of the interrupted operation was kept",
        ))
    } else {
        Ok(())
    }
}
