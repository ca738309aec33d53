//! nox's record of a VM, kept as JSON in the domain's `<metadata>` (namespace
//! [`METADATA_NS`](crate::domain::METADATA_NS)): libvirt holds the only copy, so nothing can
//! drift from the domain it describes.

use std::collections::BTreeMap;
use std::path::PathBuf;

use nox_core::instance::InstanceSpec;
use serde::{Deserialize, Serialize};

pub const RECORD_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmRecord {
    pub version: u32,
    pub spec: InstanceSpec,
    /// The cached base image the disk overlays (`sha256:…`).
    pub image_checksum: String,
    /// The directory holding this VM's overlay and seed.
    pub dir: PathBuf,
    pub mac: String,
    /// For `--network user`: the 127.0.0.1 port forwarded to the guest's port 22.
    pub ssh_port: Option<u16>,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// Free-form labels; live tests mark their VMs with one.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The template (`nox image list`) a clone's disk overlays; `None` for a VM booted cold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Port forwards (`nox forward`): passt's for `--network user`, nftables DNAT otherwise.
    #[serde(default)]
    pub forwards: Vec<nox_core::forward::Forward>,
}

impl VmRecord {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("record serializes")
    }

    pub fn from_json(s: &str) -> Option<VmRecord> {
        serde_json::from_str(s).ok()
    }
}
