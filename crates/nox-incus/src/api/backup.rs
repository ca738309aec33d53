//! Instance backups (shared/api/instance_backup.go): an export tarball Incus makes, serves and
//! imports again, possibly on another member.

use serde::{Deserialize, Serialize};

/// `POST /1.0/instances/NAME/backups`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct InstanceBackupsPost {
    pub name: String,
    /// RFC 3339; omitted for the server's default expiry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Without snapshots.
    pub instance_only: bool,
    /// The storage driver's own format (faster, but restorable only on the same driver).
    pub optimized_storage: bool,
    /// `gzip`, `xz`, `zstd`, `none`...; omitted for the server's `backups.compression_algorithm`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression_algorithm: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct InstanceBackup {
    pub name: String,
    pub created_at: String,
    pub expires_at: String,
    pub instance_only: bool,
    pub optimized_storage: bool,
}
