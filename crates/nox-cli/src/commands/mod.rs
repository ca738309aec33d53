//! One module per verb (or family of verbs): each parses nothing itself, calls one nox-ops
//! workflow, and renders what it returns.

pub mod access;
pub mod backup;
pub mod check;
pub mod completions;
pub mod config;
pub mod copy;
pub mod create;
pub mod doctor;
pub mod forward;
pub mod image;
pub mod lifecycle;
pub mod list;
pub mod mounts;
pub mod remote;
pub mod resize;
pub mod scripts;
pub mod snapshot;

use nox_core::config::{self as core_config, ConfigFiles, LoadedConfig, Override};
use nox_core::host::Host;
use nox_core::script::Secret;
use nox_ops::Context;

/// Loads the layered config from the standard files and `NOX_CONFIG`, then `overrides`.
pub fn load_config(overrides: &[Override]) -> nox_core::Result<LoadedConfig> {
    core_config::load(&ConfigFiles::from_env(), overrides)
}

/// `TS_AUTHKEY` from the environment, held from here on in a buffer wiped when dropped. The
/// environment block keeps its own copy for the life of the process: nox cannot wipe it.
pub fn ts_authkey() -> Option<Secret> {
    std::env::var("TS_AUTHKEY").ok().map(Secret::new)
}

/// The context every workflow runs in: config (flags as its top layer), the backends built
/// from it, and this host.
pub fn context(overrides: &[Override]) -> nox_core::Result<Context> {
    let config = load_config(overrides)?.config;
    // Images are built with the host's runner, into [build] dir.
    let host = Host::local();
    let builder = nox_image::Builder::new(host.runner.clone(), config.build.clone());
    let host = host.with_builder(std::sync::Arc::new(builder));
    let backends = crate::backends::build(&config, &host);
    Ok(Context::new(config, backends, host).with_drivers(crate::backends::drivers()))
}
