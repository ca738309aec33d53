//! What a backend does for backups: write an instance's data into a staging directory, and
//! create an instance from a verified chain. The policy around it (full or incremental,
//! retention, S3) is not the backend's business.

use std::path::Path;

use super::manifest::Manifest;
use super::store::LocalBackup;
use crate::error::Result;
use crate::instance::Instance;
use crate::name::InstanceName;
use crate::progress::Progress;

/// What the backend is asked to back up.
#[derive(Debug, Clone)]
pub struct BackupRequest<'a> {
    pub id: &'a str,
    /// The newest complete backup of this instance and how long its chain is (1 for a full
    /// backup), when there is one: a VM backs up incrementally on top of it when it can.
    pub previous: Option<(&'a Manifest, usize)>,
    /// Incremental backups allowed (chains are cut at the retention count, see [`Store::prune`]).
    pub incremental: bool,
    /// Containers: stop the container for the backup instead of freezing it.
    pub stop: bool,
}

/// How a restore is to finish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreOptions {
    pub start: bool,
    /// The target name differs from the backed-up instance's: give it a new identity.
    pub new_identity: bool,
    pub timeout: std::time::Duration,
    /// The cluster member to restore onto (remote clusters only); `None`: where the remote
    /// places it.
    pub target: Option<String>,
}

/// What a backend does for backups. Separate from [`crate::Backend`] so the backends' core
/// trait stays as it is.
pub trait BackupBackend {
    /// Writes the instance's data into `staging` and returns its manifest, `files` filled.
    fn backup(
        &self,
        name: &InstanceName,
        request: &BackupRequest<'_>,
        staging: &Path,
        progress: &dyn Progress,
    ) -> Result<Manifest>;

    /// Creates instance `target` from a verified chain (full backup first, the backup to
    /// restore last). Nothing named `target` exists when this is called.
    fn restore(
        &self,
        chain: &[LocalBackup],
        target: &InstanceName,
        options: RestoreOptions,
        progress: &dyn Progress,
    ) -> Result<Instance>;
}
