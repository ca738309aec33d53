//! The trait every backend implements. The CLI picks a backend and calls it; nothing in a
//! backend knows about the command line.
//!
//! The trait grows with the verbs: a verb joins it (and the CLI) when a backend implements it
//! for real, so there is never a method that answers "not implemented".

use crate::check::Check;
use crate::instance::BackendKind;

pub trait Backend {
    /// Which backend this is.
    fn kind(&self) -> BackendKind;

    /// What this backend needs of the host, checked live (`nox doctor`).
    fn host_checks(&self) -> Vec<Check>;
}
