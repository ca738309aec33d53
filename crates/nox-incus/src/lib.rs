//! A small typed client for Incus's REST API (Incus 6.0), for nox's Incus backend.
//!
//! - Two transports: the unix socket (`unix:///path/unix.socket`), and HTTPS with a TLS client
//!   certificate where the server's certificate is accepted only if its SHA-256 fingerprint is
//!   the pinned one ([`tls`]). No CA, no OpenSSL: rustls.
//! - A blocking API over a private current-thread tokio runtime per [`Client`]: the rest of
//!   nox is synchronous, so async stays in here (hyper 1, tokio-tungstenite for exec).
//! - Every asynchronous request waits on `/1.0/operations/ID/wait`; a failed operation is an
//!   [`Error::Operation`] with Incus's message, and every refusal an [`Error::Api`] with
//!   Incus's `error` text. Connect and request timeouts are short and configurable
//!   ([`Options`]): an unreachable member fails in seconds.
//!
//! Where things are: `client.rs` (connection, operations), `instances.rs`, `exec.rs`,
//! `files.rs`, `images.rs`, `backups.rs`, `certificates.rs` (trust tokens), `api/` (the JSON
//! types), `transport.rs` (HTTP, TLS, unix socket), `token.rs`, `endpoint.rs`; and
//! `backend/`, nox's `Backend` for instances on a remote, built on the client.
//!
//! ```no_run
//! use nox_incus::{Client, ExecCommand};
//! let incus = Client::unix("/var/lib/incus/unix.socket")?;
//! for i in incus.instances()? {
//!     println!("{} {} on {}", i.name, i.status, i.location);
//! }
//! let out = incus.exec_recorded("web", &ExecCommand::new(["uname", "-a"]))?;
//! assert_eq!(out.exit_code, 0);
//! # Ok::<(), nox_incus::Error>(())
//! ```

pub mod api;
pub mod backend;
mod backups;
mod certificates;
mod client;
mod endpoint;
mod error;
mod exec;
mod files;
#[cfg(test)]
mod golden;
mod images;
mod instances;
pub mod tls;
mod token;
mod transport;

pub use backend::{backends, IncusDriver};
pub use certificates::probe_fingerprint;
pub use client::{Client, Options};
pub use endpoint::{Endpoint, DEFAULT_PORT, DEFAULT_SOCKET};
pub use error::{Error, Result};
pub use exec::{ExecCommand, ExecOutput, Stdin};
pub use files::FileOwnership;
pub use images::{metadata_tarball, metadata_yaml, split_image_fingerprint, ImageImport};
pub use tls::{ClientIdentity, Fingerprint, GeneratedPem};
pub use token::TrustToken;
