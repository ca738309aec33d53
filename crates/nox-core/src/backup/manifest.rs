//! The manifest every backup carries (`manifest.json`): what was backed up, how, and every
//! data file with its size and SHA-256.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::instance::{BackendKind, InstanceSpec};

pub const MANIFEST: &str = "manifest.json";
/// The manifest format this nox writes and reads.
pub const FORMAT: u32 = 1;

/// What every backup says about itself. Credentials never appear here: nox never has any
/// for the instances it backs up, and S3 credentials stay out of backups entirely.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    pub nox_version: String,
    /// `YYYYMMDDTHHMMSSZ`, UTC; unique per instance.
    pub id: String,
    pub instance: String,
    pub backend: BackendKind,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub kind: BackupKind,
    /// For an incremental backup: the backup (of the same instance) it applies on top of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    pub consistency: Consistency,
    /// Why a backup is only crash-consistent, or how it was made consistent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The instance's spec as it was backed up.
    pub spec: InstanceSpec,
    /// Whether the instance started with the host, when it was backed up.
    pub autostart: bool,
    /// Whether it was running when it was backed up.
    pub was_running: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<VmBackup>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lxc: Option<LxcBackup>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incus: Option<IncusBackup>,
    /// Every data file, with its size and SHA-256; the manifest itself is not listed. In an
    /// encrypted backup (in S3) these are the encrypted objects, checked before decryption.
    pub files: Vec<FileEntry>,
    /// Set only on the copy of a backup in S3 that was encrypted before upload; the local
    /// store always holds backups in clear.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
}

/// How a backup in S3 was encrypted, and to whom. Public keys only: a manifest never holds
/// key material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Encryption {
    /// Always `age` (age-encryption.org/v1): each file is one age file, `NAME.age`.
    pub scheme: String,
    /// The X25519 recipients (`age1...`) it was encrypted to: any one of their identities
    /// decrypts it.
    pub recipients: Vec<String>,
    /// The files as they are in clear, with the size and SHA-256 a restore verifies after
    /// decryption.
    pub plaintext: Vec<FileEntry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupKind {
    Full,
    Incremental,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    /// Filesystems were frozen (guest agent) or every process stopped (container freezer,
    /// `--stop`) at the point in time: what a clean shutdown would have left.
    Application,
    /// What a power cut at that point would have left; journaling filesystems recover.
    Crash,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub name: String,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
}

/// The VM part of a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmBackup {
    /// The domain's UUID and MAC, kept when restoring under the same name.
    pub uuid: String,
    pub mac: String,
    /// The libvirt checkpoint this backup's point in time is, which the next incremental
    /// backup starts from.
    pub checkpoint: String,
    /// The backed-up disk: its target (`vda`), its file in the backup, its size in the guest.
    pub disk_target: String,
    pub disk_file: String,
    pub virtual_size: u64,
    pub image_checksum: String,
}

/// The container part of a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LxcBackup {
    /// The id map ids in the tarball are shifted by (host ids as on disk), or `None` for a
    /// privileged container (ids as they are).
    pub idmap: Option<IdMap>,
    pub tun: bool,
    pub mac: String,
    pub cloud_init: bool,
    pub provisioned: bool,
    /// The rootfs tarball (tar, zstd).
    pub rootfs_file: String,
}

/// The part of a manifest for an instance on an Incus remote: Incus's own export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncusBackup {
    /// The `[remotes]` entry it was backed up from.
    pub remote: String,
    /// The member it ran on, for a cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Incus's export tarball (`incus export`'s format).
    pub export_file: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdMap {
    pub uid_start: u32,
    pub gid_start: u32,
    pub count: u32,
}

impl Manifest {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("manifest serializes") + "\n"
    }

    pub fn read(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST);
        let bytes = std::fs::read(&path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
            Error::failed(
                format!("{} is not a nox backup manifest: {e}", path.display()),
                "the backup is damaged or from an incompatible nox",
            )
        })?;
        if m.format != FORMAT {
            return Err(Error::failed(
                format!(
                    "{} has manifest format {}, this nox reads {FORMAT}",
                    path.display(),
                    m.format
                ),
                "restore it with the nox version that made it",
            ));
        }
        Ok(m)
    }
}
