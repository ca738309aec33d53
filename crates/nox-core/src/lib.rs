//! nox's vocabulary, shared by the CLI and every backend.
//!
//! This crate knows nothing of libvirt or LXC: it defines what an instance *is* (its name,
//! resources, spec and state), how per-host configuration is layered, the [`Backend`] trait
//! the backends implement, and the errors all of them speak.
//!
//! Where things live:
//! - `backend.rs`: the [`Backend`] trait; `image.rs`: the image cache a backend may keep;
//! - `instance.rs` (spec, state, networks), `name.rs`, `resources.rs` (sizes and shares),
//!   `spec.rs` (from flags and `[defaults]` to a spec), `config.rs` (the layered files);
//! - `host/`: the seam for the host: `HostFacts` and the `Runner` for external programs,
//!   and their fakes for unit tests;
//! - `backup/`: manifests, the local store, chains, retention and verification;
//! - `cloud_init.rs` (the NoCloud documents), `fetch.rs` (verified downloads),
//!   `ssh_identity.rs` (nox's own SSH key), `script.rs` (launch scripts and redaction),
//!   `compat.rs` and `check.rs` (what `nox check` and `nox doctor` report), `secret.rs`
//!   (secrets wiped from memory once used);
//! - `forward/`: port forwards (`HOST:GUEST/proto`) and their nftables DNAT;
//! - `error.rs`, `progress.rs`, `interrupt.rs` (Ctrl-C), `wait.rs` (the one polling loop),
//!   `lock.rs` (file locks), `golden.rs` (golden-file assertions for tests);
//! - `state/`: per-instance locks and the intent records that make a killed command's
//!   half-done work recoverable; `fault.rs`: the fault points the crash tests kill nox at.

pub mod backend;
pub mod backup;
pub mod check;
pub mod cloud_init;
pub mod compat;
pub mod config;
pub mod config_edit;
pub mod copy;
pub mod error;
pub mod fault;
pub mod fetch;
pub mod forward;
pub mod golden;
pub mod host;
pub mod image;
pub mod image_build;
pub mod instance;
pub mod interrupt;
pub mod lock;
pub mod mounts;
pub mod name;
pub mod progress;
pub mod provision;
pub mod remote;
pub mod resources;
pub mod script;
pub mod secret;
pub mod simplestreams;
pub mod snapshot;
pub mod spec;
pub mod ssh_identity;
pub mod state;
#[cfg(test)]
mod strategies;
pub mod wait;

pub use backend::Backend;
pub use check::{Check, CheckStatus};
pub use config::Config;
pub use error::{Error, Result};
pub use instance::BackendKind;
pub use name::{InstanceName, InstanceRef, RemoteName};
pub use progress::Progress;
