//! Checking a chain against its manifests before a restore touches anything.

use super::hash::hash_file;
use super::store::LocalBackup;
use crate::error::{Error, Result};
use crate::progress::Progress;

/// Checks every file of every backup in `chain` against its manifest (size, then SHA-256)
/// before anything is touched. A mismatch names the file.
pub fn verify(chain: &[LocalBackup], progress: &dyn Progress) -> Result<()> {
    for b in chain {
        // The file a restore reads must be one that is checked below, never a path of its own.
        let data = [
            b.manifest.vm.as_ref().map(|v| &v.disk_file),
            b.manifest.lxc.as_ref().map(|l| &l.rootfs_file),
            b.manifest.lxc.as_ref().and_then(|l| l.docker_file.as_ref()),
            b.manifest.incus.as_ref().map(|i| &i.export_file),
        ];
        for name in data.into_iter().flatten() {
            if !b.manifest.files.iter().any(|f| &f.name == name) {
                return Err(Error::failed(
                    format!(
                        "backup {}/{} restores from {name:?}, which its file list does not cover",
                        b.manifest.instance, b.manifest.id
                    ),
                    "the manifest was tampered with; do not restore this backup",
                ));
            }
        }
        for f in &b.manifest.files {
            if f.name.contains('/') || f.name.starts_with('.') {
                return Err(Error::failed(
                    format!(
                        "backup {}/{} lists a file outside it: {:?}",
                        b.manifest.instance, b.manifest.id, f.name
                    ),
                    "the manifest was tampered with; do not restore this backup",
                ));
            }
            let path = b.file(&f.name);
            progress.step(&format!(
                "verifying {}/{}/{}",
                b.manifest.instance, b.manifest.id, f.name
            ));
            let corrupt = |why: String| Error::Failed {
                message: format!("backup file {} is corrupt: {why}", path.display()),
                hint: Some("restore another backup (`nox backups`); nothing was changed".into()),
            };
            let meta = std::fs::metadata(&path).map_err(|e| corrupt(e.to_string()))?;
            if meta.len() != f.size {
                return Err(corrupt(format!(
                    "{} bytes, the manifest says {}",
                    meta.len(),
                    f.size
                )));
            }
            let (_, sum) = hash_file(&path, progress)?;
            if sum != f.sha256 {
                return Err(corrupt(format!(
                    "SHA-256 {sum}, the manifest says {}",
                    f.sha256
                )));
            }
            progress.done();
        }
    }
    Ok(())
}
