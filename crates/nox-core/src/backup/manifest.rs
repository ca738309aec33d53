//! The manifest every backup carries (`manifest.json`): what was backed up, how, and every
//! data file with its size and SHA-256.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::reference::is_id;
use crate::error::{Error, Result};
use crate::instance::{BackendKind, InstanceSpec};
use crate::name::{InstanceName, RemoteName};

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
    /// The Docker volume's tarball (tar, zstd), for a container with one: it is a separate
    /// filesystem bound at `/var/lib/docker`, which the rootfs tarball does not cross into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_file: Option<String>,
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
        Manifest::parse(&bytes, &path.display().to_string())
    }

    /// A manifest from its JSON; `origin` names where it came from in errors. Besides the
    /// schema, the fields that become paths and lookups are checked here, once: the id and
    /// parent are backup ids, the instance is a name nox could have written. A manifest is a
    /// file anybody with access to the store or bucket could edit.
    pub fn parse(bytes: &[u8], origin: &str) -> Result<Manifest> {
        let damaged = |what: String| {
            Error::failed(
                format!("{origin} is not a nox backup manifest: {what}"),
                "the backup is damaged or from an incompatible nox",
            )
        };
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| damaged(e.to_string()))?;
        if m.format != FORMAT {
            return Err(Error::failed(
                format!(
                    "{origin} has manifest format {}, this nox reads {FORMAT}",
                    m.format
                ),
                "restore it with the nox version that made it",
            ));
        }
        if !is_id(&m.id) {
            return Err(damaged(format!("its id {:?} is not a backup id", m.id)));
        }
        if let Some(p) = m.parent.as_deref().filter(|p| !is_id(p)) {
            return Err(damaged(format!("its parent {p:?} is not a backup id")));
        }
        if !is_instance(&m.instance) {
            return Err(damaged(format!(
                "its instance {:?} is not an instance name",
                m.instance
            )));
        }
        Ok(m)
    }
}

/// `NAME` or `REMOTE:NAME` as nox writes them into manifests (names from its records may end
/// in '-', as older nox allowed).
fn is_instance(s: &str) -> bool {
    let (remote, name) = match s.split_once(':') {
        Some((r, n)) => (Some(r), n),
        None => (None, s),
    };
    remote.is_none_or(|r| RemoteName::new(r).is_ok()) && InstanceName::from_record(name).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Container backups made before Docker volumes existed have no `docker_file`; a backup
    /// without a volume writes none, so older nox versions still read it.
    #[test]
    fn the_docker_file_is_optional_both_ways() {
        let old = r#"{"idmap":null,"tun":true,"mac":"00:16:3e:00:00:01","cloud_init":true,"provisioned":true,"rootfs_file":"rootfs.tar.zst"}"#;
        let l: LxcBackup = serde_json::from_str(old).unwrap();
        assert_eq!(l.docker_file, None);
        assert_eq!(serde_json::to_string(&l).unwrap(), old);
        let with = LxcBackup {
            docker_file: Some("docker.tar.zst".into()),
            ..l
        };
        let text = serde_json::to_string(&with).unwrap();
        assert!(text.contains(r#""docker_file":"docker.tar.zst""#), "{text}");
    }

    /// The fuzz target's seeds that are valid manifests stay valid as the schema changes, so
    /// the fuzzer keeps starting from inside the format.
    #[test]
    fn the_fuzz_seeds_read_and_write_back_as_themselves() {
        for seed in [
            include_str!("../../fuzz/seeds/manifest/lxc-full.json"),
            include_str!("../../fuzz/seeds/manifest/vm-incremental.json"),
        ] {
            let m = Manifest::parse(seed.as_bytes(), "seed").unwrap();
            assert_eq!(
                Manifest::parse(m.to_json().as_bytes(), "written").unwrap(),
                m
            );
        }
    }

    /// Fields that become paths or lookups are refused unless they have nox's shapes: a
    /// manifest is a file anybody with access to the store or bucket could edit.
    #[test]
    fn ids_parents_and_instances_of_other_shapes_are_refused() {
        let good = crate::backup::testing::manifest("20261125T225012Z", None);
        assert!(Manifest::parse(good.to_json().as_bytes(), "m").is_ok());
        let with = |f: &dyn Fn(&mut Manifest)| {
            let mut m = good.clone();
            f(&mut m);
            Manifest::parse(m.to_json().as_bytes(), "m.json")
        };
        for (what, e) in [
            ("id", with(&|m| m.id = "../../etc".into())),
            ("parent", with(&|m| m.parent = Some("x/y".into()))),
            ("instance", with(&|m| m.instance = "../web".into())),
            ("instance", with(&|m| m.instance = "s3:web:x".into())),
            ("format", with(&|m| m.format = 99)),
        ] {
            let e = e.unwrap_err();
            assert!(e.to_string().contains(what) && !e.is_bad_input(), "{e}");
            assert!(e.to_string().starts_with("m.json"), "{e}");
        }
        // What nox writes itself: a remote's instance, and an older name ending in '-'.
        assert!(with(&|m| m.instance = "lab:web".into()).is_ok());
        assert!(with(&|m| m.instance = "web-".into()).is_ok());
        assert!(with(&|m| m.parent = Some("20261125T225012Z-2".into())).is_ok());
    }

    proptest::proptest! {
        /// A manifest nox writes reads back equal, whatever its strings hold (JSON escaping
        /// of quotes, control characters and any Unicode in notes and file names).
        #[test]
        fn manifests_read_back_as_written(
            id in crate::strategies::backup_id(),
            parent in proptest::option::of(crate::strategies::backup_id()),
            instance in crate::strategies::instance_ref(),
            note in proptest::option::of(".*"),
            files in proptest::collection::vec((".*", proptest::num::u64::ANY, "[0-9a-f]{64}"), 0..4),
            was_running: bool,
        ) {
            let mut m = crate::backup::testing::manifest(&id, parent.as_deref());
            m.instance = instance.to_string();
            m.note = note;
            m.was_running = was_running;
            m.files = files
                .into_iter()
                .map(|(name, size, sha256)| FileEntry { name, size, sha256 })
                .collect();
            let back = Manifest::parse(m.to_json().as_bytes(), "written").unwrap();
            proptest::prop_assert_eq!(back, m);
        }
    }
}
