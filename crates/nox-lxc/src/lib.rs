//! nox's container backend: LXC system containers, driven through liblxc.
//!
//! The default container is unprivileged (mapped into root's subordinate id ranges) and gets
//! `/dev/net/tun`, so Tailscale and other VPNs work without handing the container the host.

pub mod cgroup;
pub mod host_checks;
pub mod liblxc;
pub mod subid;

use nox_core::config::LxcConfig;
use nox_core::{Backend, BackendKind, Check};

/// The LXC backend, bound to one lxcpath.
#[derive(Debug, Clone)]
pub struct LxcBackend {
    config: LxcConfig,
}

impl LxcBackend {
    pub fn new(config: LxcConfig) -> Self {
        LxcBackend { config }
    }
}

impl Backend for LxcBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Lxc
    }

    fn host_checks(&self) -> Vec<Check> {
        host_checks::run(&self.config)
    }
}
