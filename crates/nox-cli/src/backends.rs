//! The one place that names backend crates: which backends this nox is built with, made
//! from the config. Everything else sees them only through the `Backend` trait.

use nox_core::host::Host;
use nox_core::{Backend, Config};
use nox_ops::Backends;

/// The backends compiled into this nox (cargo features `vm` and `lxc`), on `host`.
pub fn build(config: &Config, host: &Host) -> Backends {
    let enabled: Vec<Option<Box<dyn Backend>>> = vec![vm(config, host), lxc(config, host)];
    Backends::new(enabled.into_iter().flatten().collect())
}

#[cfg(feature = "vm")]
fn vm(config: &Config, host: &Host) -> Option<Box<dyn Backend>> {
    Some(Box::new(nox_libvirt::LibvirtBackend::new(
        config.clone(),
        host.clone(),
    )))
}

#[cfg(not(feature = "vm"))]
fn vm(_: &Config, _: &Host) -> Option<Box<dyn Backend>> {
    None
}

#[cfg(feature = "lxc")]
fn lxc(config: &Config, host: &Host) -> Option<Box<dyn Backend>> {
    Some(Box::new(nox_lxc::LxcBackend::new(
        config.clone(),
        host.clone(),
    )))
}

#[cfg(not(feature = "lxc"))]
fn lxc(_: &Config, _: &Host) -> Option<Box<dyn Backend>> {
    None
}
