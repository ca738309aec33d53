//! The crate's one error type. Every refusal by Incus carries Incus's own `error` text.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// What can go wrong talking to Incus.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The remote's URL is not `unix:///path` or `https://host[:port]`.
    #[error("invalid Incus URL `{url}`: {reason}")]
    InvalidUrl { url: String, reason: String },

    /// No connection could be made (refused, unreachable, TLS handshake failed).
    #[error("cannot connect to {endpoint}: {message}")]
    Connect { endpoint: String, message: String },

    /// The server's certificate is not the pinned one: possibly another server, possibly an attack.
    #[error(
        "{endpoint} presented a certificate with fingerprint {actual}, not the pinned {expected}"
    )]
    FingerprintMismatch {
        endpoint: String,
        expected: String,
        actual: String,
    },

    /// No answer in time: connecting, or waiting for a response.
    #[error("{endpoint}: no answer within {after:?} ({what})")]
    Timeout {
        endpoint: String,
        what: &'static str,
        after: Duration,
    },

    /// Incus answered with an error status. `message` is Incus's `error` text.
    #[error("Incus refused {method} {path} ({status}): {message}")]
    Api {
        method: String,
        path: String,
        status: u16,
        message: String,
    },

    /// An asynchronous operation ended in failure (or was cancelled). `message` is its `err`.
    #[error("Incus operation {id} ({description}) failed: {message}")]
    Operation {
        id: String,
        description: String,
        message: String,
    },

    /// The connection broke mid-request, or HTTP itself failed.
    #[error("HTTP to {endpoint} failed: {message}")]
    Transport { endpoint: String, message: String },

    /// Incus answered something this client does not understand.
    #[error("unexpected answer from Incus to {what}: {message}")]
    Protocol { what: String, message: String },

    /// An exec websocket failed.
    #[error("exec websocket: {0}")]
    WebSocket(String),

    /// A trust token that cannot be decoded, or is not a trust token.
    #[error("invalid trust token: {0}")]
    Token(String),

    /// A client certificate or key that cannot be read or used.
    #[error("client certificate or key {path}: {message}")]
    Identity { path: PathBuf, message: String },

    /// Local I/O (files to upload or download, stdin, stdout).
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: Arc<std::io::Error>,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source: Arc::new(source),
        }
    }

    pub(crate) fn protocol(what: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Error::Protocol {
            what: what.into(),
            message: message.to_string(),
        }
    }

    /// The HTTP status Incus answered with, when this is an API refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// True when Incus said the thing does not exist (HTTP 404).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// True when the server could not be reached at all (connect failure or timeout): the
    /// remote, or that member, is down or unreachable.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Error::Connect { .. } | Error::Timeout { .. })
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
