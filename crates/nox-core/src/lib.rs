//! nox's vocabulary, shared by the CLI and every backend.
//!
//! This crate knows nothing of libvirt or LXC: it defines what an instance *is* (its name,
//! resources, spec and state), how per-host configuration is layered, the [`Backend`] trait
//! the backends implement, and the errors all of them speak.

pub mod backend;
pub mod backup;
pub mod check;
pub mod cloud_init;
pub mod compat;
pub mod config;
pub mod error;
pub mod fetch;
pub mod golden;
pub mod host;
pub mod image;
pub mod instance;
pub mod interrupt;
pub mod lock;
pub mod name;
pub mod progress;
pub mod resources;
pub mod script;
pub mod spec;
pub mod ssh_identity;
pub mod wait;

pub use backend::Backend;
pub use check::{Check, CheckStatus};
pub use config::Config;
pub use error::{Error, Result};
pub use instance::BackendKind;
pub use name::InstanceName;
pub use progress::Progress;
