//! How backends tell the user what is happening, without knowing about terminals. The CLI
//! implements [`Progress`] with spinners and bars; tests and `--json` runs use [`Quiet`].

use std::time::Duration;

pub trait Progress {
    /// A new step ("creating disk", "booting").
    fn step(&self, message: &str);
    /// A one-line warning the user should see even in quiet runs.
    fn warn(&self, message: &str);
    /// Bytes of a transfer: `total` when known.
    fn bytes(&self, done: u64, total: Option<u64>);
    /// Still waiting for `what`, this long so far.
    fn waiting(&self, what: &str, elapsed: Duration);
    /// The current step is over.
    fn done(&self);
}

/// Reports nothing but warnings (on stderr).
#[derive(Debug, Default, Clone, Copy)]
pub struct Quiet;

impl Progress for Quiet {
    fn step(&self, _: &str) {}
    fn warn(&self, message: &str) {
        eprintln!("warning: {message}");
    }
    fn bytes(&self, _: u64, _: Option<u64>) {}
    fn waiting(&self, _: &str, _: Duration) {}
    fn done(&self) {}
}
