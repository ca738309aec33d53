//! The cloud-init NoCloud seed a VM boots with: an ISO 9660 image labelled `cidata` holding
//! `user-data`, `meta-data` and `network-config`.

use std::path::Path;
use std::process::Command;

use nox_core::cloud_init::Provisioning;

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("writing the cloud-init seed: {0}")]
    Io(#[from] std::io::Error),
    #[error("no tool to build a cloud-init seed: install genisoimage (or xorriso)")]
    NoTool,
    #[error("{tool} failed to build the cloud-init seed: {stderr}")]
    Tool { tool: String, stderr: String },
}

/// Writes the seed ISO to `dest`, mode 0600: it may hold a password hash.
pub fn write_seed_iso(p: &Provisioning, dest: &Path) -> Result<(), SeedError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let staging = tempfile::Builder::new().prefix("nox-seed").tempdir()?;
    std::fs::set_permissions(staging.path(), std::fs::Permissions::from_mode(0o700))?;
    let mut files = vec![("user-data", p.user_data()), ("meta-data", p.meta_data())];
    if let Some(net) = p.network_config() {
        files.push(("network-config", net));
    }
    for (name, text) in &files {
        std::fs::write(staging.path().join(name), text)?;
    }
    // Create the destination 0600 before the tool writes into it, so the seed is never
    // readable by others, not even for a moment.
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(dest)?;
    let tool = ["genisoimage", "mkisofs", "xorrisofs"]
        .into_iter()
        .find(|t| crate::programs::find(t).is_some())
        .ok_or(SeedError::NoTool)?;
    let out = Command::new(tool)
        .args(["-quiet", "-output"])
        .arg(dest)
        .args(["-volid", "cidata", "-joliet", "-rock"])
        .args(files.iter().map(|(n, _)| n))
        .current_dir(staging.path())
        .output()?;
    if !out.status.success() {
        let _ = std::fs::remove_file(dest);
        return Err(SeedError::Tool {
            tool: tool.into(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}
