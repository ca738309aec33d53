//! nox's container backend: LXC system containers, driven through liblxc.
//!
//! The default container is unprivileged (mapped into root's subordinate id ranges) and gets
//! `/dev/net/tun`, so Tailscale and other VPNs work without handing the container the host.

pub mod cgroup;
pub mod host_checks;
pub mod liblxc;
pub mod subid;

use nox_core::config::LxcConfig;
use nox_core::Check;

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

impl LxcBackend {
    /// What this backend needs of the host, checked live (`nox doctor`). The instance verbs
    /// join the `Backend` trait implementation when they land.
    pub fn host_checks(&self) -> Vec<Check> {
        host_checks::run(&self.config)
    }
}
