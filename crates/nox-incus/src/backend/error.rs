//! What nox's Incus backend reports. Each error keeps the client's [`crate::Error`] (or the
//! decoder's) as its source; the words are the ones nox printed before it kept causes.

/// A failure in the Incus backend, turned into nox's error by [`nox_core::Error::backend`].
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// A request to a remote failed; `what` says what nox was doing.
    #[error("remote {remote}: {what}: {source}")]
    Remote {
        remote: String,
        what: String,
        #[source]
        source: crate::Error,
    },

    /// A local step with the client's error underneath (a certificate made or written).
    #[error("{what}: {source}")]
    Local {
        what: &'static str,
        #[source]
        source: crate::Error,
    },

    /// A command nox ran in an instance exited non-zero; `stderr` is what it wrote there.
    #[error("`{command}` failed in {instance} (exit {code}): {stderr}")]
    Command {
        command: String,
        instance: String,
        code: i32,
        stderr: String,
    },

    /// The spec nox stored in the instance's config cannot be read back.
    #[error("{instance}'s nox record is damaged: {source}")]
    Record {
        instance: String,
        #[source]
        source: serde_json::Error,
    },
}

impl From<BackendError> for nox_core::Error {
    fn from(e: BackendError) -> Self {
        nox_core::Error::backend(e)
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn a_remote_error_walks_down_to_the_clients_error_and_its_io_error() {
        let io = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "pipe closed");
        let client = crate::Error::io("reading the export", io);
        let e: nox_core::Error = BackendError::Remote {
            remote: "lab".into(),
            what: "downloading the backup".into(),
            source: client,
        }
        .into();
        assert_eq!(
            e.to_string(),
            "remote lab: downloading the backup: reading the export: pipe closed"
        );
        let backend = e.source().expect("the backend error");
        assert!(backend.is::<BackendError>());
        let client = backend.source().expect("the client's error");
        assert!(client.is::<crate::Error>());
        // The client shares its io::Error in an Arc (its errors are Clone).
        let io = client.source().expect("the io error");
        assert_eq!(
            io.downcast_ref::<std::sync::Arc<std::io::Error>>()
                .map(|e| e.kind()),
            Some(std::io::ErrorKind::BrokenPipe)
        );
        assert!(!e.is_bad_input());
    }
}
