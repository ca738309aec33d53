//! nox's VM backend: libvirt virtual machines, driven through the libvirt API (the `virt`
//! crate), never by parsing `virsh` output.

pub mod agent;
pub mod domain;
pub mod host_checks;
pub mod kvm_probe;
pub mod programs;
pub mod seed;

use nox_core::config::VmConfig;
use nox_core::{Backend, BackendKind, Check};

/// The VM backend, bound to one libvirt URI.
#[derive(Debug, Clone)]
pub struct LibvirtBackend {
    config: VmConfig,
}

impl LibvirtBackend {
    pub fn new(config: VmConfig) -> Self {
        LibvirtBackend { config }
    }
}

impl Backend for LibvirtBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Vm
    }

    fn host_checks(&self) -> Vec<Check> {
        host_checks::run(&self.config)
    }
}
