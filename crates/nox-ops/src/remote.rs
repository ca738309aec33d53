//! Where backups go besides the local store: S3, behind [`RemoteStore`] so the upload and
//! download policies are tested with a fake bucket; and the age encryption of what goes
//! there ([`upload`] seals a backup when `[backup] recipients_file` is set).

use nox_core::backup::crypt::{self, Identity, Recipients};
use nox_core::backup::{LocalBackup, Manifest, Store};
use nox_core::config::{BackupConfig, S3Config};
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
    /// Downloads a backup into the local store, decrypting it with `identity` when it is
    /// encrypted; checksums in clear are verified by the restore.
    fn download(
        &self,
        store: &Store,
        m: &Manifest,
        identity: Option<&Identity>,
        progress: &dyn Progress,
    ) -> Result<LocalBackup>;
}

/// The public keys uploads are encrypted to: `None` when `[backup] recipients_file` is empty
/// (uploads in clear).
pub fn recipients(config: &BackupConfig) -> Result<Option<Recipients>> {
    if config.recipients_file.as_os_str().is_empty() {
        return Ok(None);
    }
    Recipients::load(&config.recipients_file).map(Some)
}

/// Uploads `b` to `remote`, encrypted to `recipients` when given: each file is sealed into
/// a private scratch directory beside the backup (removed when done, or by the next lock of
/// the store after a kill), so nothing in clear leaves the host.
pub fn upload(
    remote: &dyn RemoteStore,
    store: &Store,
    b: &LocalBackup,
    recipients: Option<&Recipients>,
    progress: &dyn Progress,
) -> Result<()> {
    let Some(recipients) = recipients else {
        return remote.upload(b, progress);
    };
    let m = &b.manifest;
    // A staging directory that is never committed: the store's own hidden, private, self-
    // removing directory.
    let scratch = store.stage(&m.instance, &format!("seal-{}", m.id))?;
    let sealed = crypt::seal(b, recipients, &scratch.dir, progress)?;
    remote.upload(&sealed, progress)
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
        identity: Option<&Identity>,
        progress: &dyn Progress,
    ) -> Result<LocalBackup> {
        self.0.download(store, m, identity, progress)
    }
}
