//! Where backups go besides the local store: S3, behind [`RemoteStore`] so the upload and
//! download policies are tested with a fake bucket.

use nox_core::backup::{LocalBackup, Manifest, Store};
use nox_core::config::S3Config;
use nox_core::{Progress, Result};

pub trait RemoteStore {
    /// How the user knows it: `s3://bucket/prefix`.
    fn label(&self) -> &str;
    /// One signed request: bad credentials or a missing bucket are found before a backup.
    fn check(&self) -> Result<()>;
    /// Every complete backup in it (those whose manifest is there), oldest first per instance.
    fn list(&self) -> Result<Vec<Manifest>>;
    /// Uploads a local backup (data files first, the manifest last).
    fn upload(&self, b: &LocalBackup, progress: &dyn Progress) -> Result<()>;
    /// Downloads a backup into the local store; checksums are verified by the restore.
    fn download(&self, store: &Store, m: &Manifest, progress: &dyn Progress)
        -> Result<LocalBackup>;
}

/// Whether `[s3]` names a bucket at all.
pub fn s3_configured(config: &S3Config) -> bool {
    nox_s3::Remote::configured(config)
}

/// The `[s3]` bucket.
pub fn s3(config: &S3Config) -> Result<Box<dyn RemoteStore>> {
    Ok(Box::new(S3(nox_s3::Remote::new(config)?)))
}

struct S3(nox_s3::Remote);

impl RemoteStore for S3 {
    fn label(&self) -> &str {
        &self.0.label
    }
    fn check(&self) -> Result<()> {
        self.0.check()
    }
    fn list(&self) -> Result<Vec<Manifest>> {
        Ok(self.0.list()?.into_iter().map(|r| r.manifest).collect())
    }
    fn upload(&self, b: &LocalBackup, progress: &dyn Progress) -> Result<()> {
        self.0.upload(b, progress)
    }
    fn download(
        &self,
        store: &Store,
        m: &Manifest,
        progress: &dyn Progress,
    ) -> Result<LocalBackup> {
        self.0.download(store, m, progress)
    }
}
