//! The one place that names backend crates: which backends this nox is built with, made
//! from the config. Everything else sees them only through the `Backend` trait (and remote
//! drivers through `RemoteDriverOps`).

use nox_core::host::Host;
use nox_core::remote::RemoteDriverOps;
use nox_core::{Backend, Config};
use nox_ops::Backends;

/// The backends compiled into this nox (cargo features `vm`, `lxc`, `incus`) on `host`, and
/// one set per `[remotes.NAME]`.
pub fn build(config: &Config, host: &Host) -> Backends {
    let mut enabled: Vec<Box<dyn Backend>> = [vm(config, host), lxc(config, host)]
        .into_iter()
        .flatten()
        .collect();
    enabled.extend(remotes(config, host));
    Backends::new(enabled)
}

/// The remote drivers compiled in.
pub fn drivers() -> Vec<Box<dyn RemoteDriverOps>> {
    #[cfg(feature = "incus")]
    return vec![Box::new(nox_incus::IncusDriver)];
    #[cfg(not(feature = "incus"))]
    Vec::new()
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

#[cfg(feature = "incus")]
fn remotes(config: &Config, host: &Host) -> Vec<Box<dyn Backend>> {
    config
        .remotes
        .iter()
        .flat_map(|(name, remote)| match remote.driver {
            nox_core::config::RemoteDriver::Incus => {
                nox_incus::backends(name.as_str(), remote, config, host)
            }
        })
        .collect()
}

#[cfg(not(feature = "incus"))]
fn remotes(_: &Config, _: &Host) -> Vec<Box<dyn Backend>> {
    Vec::new()
}
