//! nox-libvirt's errors. Each keeps libvirt's own error as its source, so a program (or
//! `nox -vv`) can still read libvirt's code and domain; the message the user sees carries
//! libvirt's words only, as before.

use crate::agent::AgentError;
use crate::seed::SeedError;

#[derive(Debug, thiserror::Error)]
pub enum LibvirtError {
    /// A libvirt call failed; `context` says what nox was doing (`starting web`).
    #[error("{context}: {}", .source.message())]
    Call {
        context: String,
        #[source]
        source: virt::error::Error,
    },
}

impl LibvirtError {
    pub fn call(context: impl Into<String>, source: virt::error::Error) -> Self {
        LibvirtError::Call {
            context: context.into(),
            source,
        }
    }
}

impl From<LibvirtError> for nox_core::Error {
    fn from(e: LibvirtError) -> Self {
        nox_core::Error::backend(e)
    }
}

impl From<AgentError> for nox_core::Error {
    fn from(e: AgentError) -> Self {
        nox_core::Error::backend(e)
    }
}

impl From<SeedError> for nox_core::Error {
    fn from(e: SeedError) -> Self {
        nox_core::Error::backend(e)
    }
}

/// Whether `e` is the guest agent's own timeout (not some other failure whose text says
/// "timed out").
pub fn is_agent_timeout(e: &nox_core::Error) -> bool {
    match e {
        nox_core::Error::Backend(b) => {
            matches!(
                b.downcast_ref::<AgentError>(),
                Some(AgentError::Timeout(..))
            )
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn a_seed_error_walks_down_to_the_io_error() {
        let io = std::io::Error::new(std::io::ErrorKind::StorageFull, "no space left");
        let e: nox_core::Error = SeedError::from(io).into();
        assert_eq!(e.to_string(), "writing the cloud-init seed: no space left");
        let seed = e.source().expect("the seed error");
        assert!(seed.is::<SeedError>());
        let io = seed.source().expect("the io error");
        assert_eq!(
            io.downcast_ref::<std::io::Error>().map(|e| e.kind()),
            Some(std::io::ErrorKind::StorageFull)
        );
        assert!(!e.is_bad_input());
    }

    #[test]
    fn a_libvirt_call_error_keeps_libvirts_error_and_prints_only_its_message() {
        // virt::error::Error has no public constructor but this conversion.
        let virt_err = virt::error::Error::from(std::ffi::CString::new("a\0b").unwrap_err());
        let message = virt_err.message().to_string();
        let e: nox_core::Error = LibvirtError::call("starting web", virt_err).into();
        assert_eq!(e.to_string(), format!("starting web: {message}"));
        let call = e.source().expect("the libvirt call error");
        assert!(call.is::<LibvirtError>());
        let root = call.source().expect("libvirt's error");
        assert!(root.is::<virt::error::Error>());
        assert!(!e.is_bad_input());
    }

    #[test]
    fn only_the_agents_own_timeout_counts_as_one() {
        let t: nox_core::Error =
            AgentError::Timeout(std::time::Duration::from_secs(1), "the agent".into()).into();
        assert!(is_agent_timeout(&t));
        let other = nox_core::Error::failure("timed out somewhere else");
        assert!(!is_agent_timeout(&other));
    }
}
