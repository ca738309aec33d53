//! One module per verb, each a short function over the library crates.

pub mod completions;
pub mod config;
pub mod doctor;

use nox_core::config::{self as core_config, ConfigFiles, LoadedConfig, Override};

/// Loads the layered config from the standard files and `NOX_CONFIG`, then `overrides`.
pub fn load_config(overrides: &[Override]) -> nox_core::Result<LoadedConfig> {
    core_config::load(&ConfigFiles::from_env(), overrides)
}
