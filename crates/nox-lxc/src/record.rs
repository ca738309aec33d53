//! nox's record of a container, `LXCPATH/NAME/nox.json`: what it was created from and how.
//! Its presence is what makes a container nox's; `delete` removes it with the directory.

use nox_core::instance::InstanceSpec;
use serde::{Deserialize, Serialize};

pub const FILE: &str = "nox.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtRecord {
    pub version: u32,
    pub spec: InstanceSpec,
    pub tun: bool,
    pub mac: String,
    /// Whether the image has cloud-init (else nox provisions the user itself).
    pub cloud_init: bool,
    /// Whether the user, keys and sudo rule are in place (done by nox after the first start
    /// when the image has no cloud-init).
    #[serde(default = "yes")]
    pub provisioned: bool,
    pub created_at: String,
    /// Port forwards (`nox forward`), made real with nftables DNAT while it runs.
    #[serde(default)]
    pub forwards: Vec<nox_core::forward::Forward>,
}

impl CtRecord {
    pub fn read(dir: &std::path::Path) -> Option<CtRecord> {
        serde_json::from_slice(&std::fs::read(dir.join(FILE)).ok()?).ok()
    }

    pub fn write(&self, dir: &std::path::Path) -> std::io::Result<()> {
        std::fs::write(
            dir.join(FILE),
            serde_json::to_vec_pretty(self).expect("serializes"),
        )
    }
}

fn yes() -> bool {
    true
}
