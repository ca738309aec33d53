//! The cloud-init NoCloud seed a VM boots with: a FAT filesystem labelled `CIDATA` holding
//! `user-data`, `meta-data` and `network-config`, written in-process (NoCloud reads vfat as
//! well as ISO 9660), so nox needs no ISO tool on the host.
//!
//! The image is attached as the VM's CD-ROM, whose blocks are 2048 bytes; Linux mounts a FAT
//! only when its sectors are at least the device's blocks, so the seed uses 2048-byte
//! sectors. Timestamps are left at FAT's epoch, so a seed is a pure function of its documents.

use std::io::{Cursor, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nox_core::cloud_init::Provisioning;

/// Large enough for any seed nox writes (a few KiB of documents), small enough to be cheap.
const SIZE: usize = 1 << 20;
const SECTOR: u16 = 2048;
const LABEL: [u8; 11] = *b"CIDATA     ";

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("writing the cloud-init seed: {0}")]
    Io(#[from] std::io::Error),
}

/// The seed's files, in the order they are written.
pub fn documents(p: &Provisioning) -> Vec<(&'static str, String)> {
    let mut files = vec![("user-data", p.user_data()), ("meta-data", p.meta_data())];
    if let Some(net) = p.network_config() {
        files.push(("network-config", net));
    }
    files
}

/// The seed image's bytes.
pub fn image(p: &Provisioning) -> Result<Vec<u8>, SeedError> {
    let mut disk = Cursor::new(vec![0u8; SIZE]);
    fatfs::format_volume(
        &mut disk,
        fatfs::FormatVolumeOptions::new()
            .bytes_per_sector(SECTOR)
            .fat_type(fatfs::FatType::Fat12)
            .volume_label(LABEL)
            // A fixed serial: nothing about the guest depends on it, and the image stays
            // reproducible.
            .volume_id(0x6e6f_7800),
    )?;
    {
        let fs = fatfs::FileSystem::new(&mut disk, fatfs::FsOptions::new())?;
        for (name, text) in documents(p) {
            let mut f = fs.root_dir().create_file(name)?;
            f.truncate()?;
            f.write_all(text.as_bytes())?;
            f.flush()?;
        }
        fs.unmount()?;
    }
    Ok(disk.into_inner())
}

/// Writes the seed to `dest`, mode 0600 from the start: it may hold a password hash.
pub fn write_seed(p: &Provisioning, dest: &Path) -> Result<(), SeedError> {
    let bytes = image(p)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(dest)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn provisioning() -> Provisioning {
        Provisioning {
            instance_id: "6b1c1a0e-6f5e-4c1b-9d0f-3a7e2b9c4d11".into(),
            hostname: "web".into(),
            user: "nox".into(),
            ssh_keys: vec!["ssh-ed25519 AAAA me@host".into()],
            password_hash: None,
            mac: Some("52:54:00:12:34:56".into()),
            mounts: Vec::new(),
        }
    }

    #[test]
    fn a_fat_volume_labelled_cidata_with_the_three_documents() {
        let p = provisioning();
        let bytes = image(&p).unwrap();
        assert_eq!(bytes.len(), SIZE);
        assert_eq!(
            bytes.len() % 2048,
            0,
            "a CD-ROM reads whole 2048-byte blocks"
        );
        // The boot sector says 2048-byte sectors, as the CD-ROM's blocks are.
        assert_eq!(u16::from_le_bytes([bytes[11], bytes[12]]), 2048);
        let mut disk = Cursor::new(bytes.clone());
        let fs = fatfs::FileSystem::new(&mut disk, fatfs::FsOptions::new()).unwrap();
        assert_eq!(fs.volume_label(), "CIDATA");
        for (name, text) in documents(&p) {
            let mut got = String::new();
            fs.root_dir()
                .open_file(name)
                .unwrap()
                .read_to_string(&mut got)
                .unwrap();
            assert_eq!(got, text, "{name}");
        }
        drop(fs);
        // Reproducible: the same documents give the same bytes.
        assert_eq!(image(&p).unwrap(), bytes);
    }

    #[test]
    fn the_seed_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seed.img");
        write_seed(&provisioning(), &path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
