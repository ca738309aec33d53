//! Fault points, for the crash-safety tests: named places in a changing command where a test
//! build kills its own process with SIGKILL, as `kill -9` or the OOM killer would.
//!
//! Compiled to nothing unless the `fault-points` feature is on (the live tests build nox with
//! it). With it, `NOX_FAULT_POINT=NAME` in the environment kills nox at the point `NAME`, and
//! `NOX_FAULT_POINT=NAME:stop` stops it there (SIGSTOP), holding whatever it holds, so a test
//! can run other commands against it and then kill it.

/// The environment variable that names the point.
pub const ENV: &str = "NOX_FAULT_POINT";

/// Dies (or stops) here if this is the point named in [`ENV`] (test builds only).
#[inline]
pub fn point(name: &str) {
    #[cfg(feature = "fault-points")]
    if let Ok(asked) = std::env::var(ENV) {
        use nix::sys::signal::{raise, Signal};
        // No cleanup, no destructors, no flushed buffers: exactly what a kill leaves.
        if asked == name {
            let _ = raise(Signal::SIGKILL);
        } else if asked.strip_suffix(":stop") == Some(name) {
            let _ = raise(Signal::SIGSTOP);
        }
    }
    #[cfg(not(feature = "fault-points"))]
    let _ = name;
}
