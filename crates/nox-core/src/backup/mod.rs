//! Backups as every backend and the workflows share them; pure files and JSON, no backend.
//!
//! - `manifest.rs`: the manifest each backup carries;
//! - `reference.rs`: backup ids and the `NAME/ID` / `s3:NAME` references users type;
//! - `store.rs`: the local store, its per-instance lock and atomic commits;
//! - `hash.rs`: SHA-256 of backup files, while written or read back;
//! - `chain.rs`: incremental chains and retention;
//! - `verify.rs`: checking a chain before a restore;
//! - `crypt.rs`: age encryption of what goes to S3 (recipients, identities, seal, unseal);
//! - `backend.rs`: [`BackupBackend`], what a backend does (write data, restore a chain);
//! - `identity.rs`: the files that make a guest one machine, reset in a copy restored under a
//!   new name.
//!
//! When to back up fully or incrementally, S3 transfers and restores are workflows, in
//! nox-ops.

mod backend;
mod chain;
pub mod crypt;
mod hash;
pub mod identity;
mod manifest;
mod reference;
mod store;
mod verify;

pub use backend::{BackupBackend, BackupRequest, RestoreOptions};
pub use chain::{chain_len, chain_of, cycle, prunable};
pub use hash::{file_entry, hash_file, HashingWriter};
pub use manifest::{
    BackupKind, Consistency, Encryption, FileEntry, IdMap, IncusBackup, LxcBackup, Manifest,
    VmBackup, FORMAT, MANIFEST,
};
pub use reference::{is_id, new_id, rfc3339, BackupRef};
pub use store::{private_dir, private_file, LocalBackup, Staging, Store};
pub use verify::verify;

#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::instance::{BackendKind, InstanceSpec};

    /// A container backup manifest with `id` and `parent`, and no files.
    pub fn manifest(id: &str, parent: Option<&str>) -> Manifest {
        Manifest {
            format: FORMAT,
            nox_version: "0.1.0".into(),
            id: id.into(),
            instance: "web".into(),
            backend: BackendKind::Lxc,
            created_at: "2026-11-25T22:50:12Z".into(),
            kind: if parent.is_some() {
                BackupKind::Incremental
            } else {
                BackupKind::Full
            },
            parent: parent.map(String::from),
            consistency: Consistency::Application,
            note: None,
            spec: InstanceSpec {
                name: "web".parse().unwrap(),
                backend: BackendKind::Lxc,
                image: "debian-12".into(),
                cpus: 1,
                memory_bytes: 1 << 30,
                disk_bytes: 10 << 30,
                network: crate::instance::NetworkSpec::Default,
                autostart: true,
                user: "nox".into(),
                ssh_keys: vec![],
                privileged: false,
                nesting: false,
                tun: true,
                mounts: Vec::new(),
            },
            autostart: true,
            was_running: true,
            vm: None,
            lxc: None,
            incus: None,
            files: vec![],
            encryption: None,
        }
    }

    /// A backup id, one per second of a minute.
    pub fn id(n: u32) -> String {
        format!("20261125T2250{n:02}Z")
    }
}
