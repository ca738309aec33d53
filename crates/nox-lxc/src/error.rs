//! nox-lxc's errors become nox's through [`nox_core::Error::backend`], which keeps them as the
//! cause. liblxc itself reports failure as `false`; [`LxcError`] carries its own words (its
//! error string and the last lines of the container's log), read where the call was made.

pub use crate::liblxc::LxcError;

impl From<LxcError> for nox_core::Error {
    fn from(e: LxcError) -> Self {
        nox_core::Error::backend(e)
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn a_liblxc_failure_stays_reachable_as_the_cause() {
        let e: nox_core::Error = LxcError {
            op: "start",
            name: "web".into(),
            detail: "Failed to create command socket".into(),
        }
        .into();
        assert_eq!(
            e.to_string(),
            "start failed for container web: Failed to create command socket"
        );
        let lxc = e.source().and_then(|s| s.downcast_ref::<LxcError>());
        assert_eq!(lxc.map(|l| l.op), Some("start"));
        assert!(!e.is_bad_input());
    }
}
