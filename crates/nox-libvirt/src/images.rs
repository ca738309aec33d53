//! The VM image cache: verified qcow2 bases under `STORAGE_DIR/images`, named by checksum,
//! each with a small JSON note of where it came from (`nox image list`). `image_verbs.rs`
//! decides what `rm` and `prune` take, bases and templates together.

use std::path::{Path, PathBuf};

use nox_core::config::ImageSource;
pub use nox_core::image::CachedImage;
use nox_core::{fetch, BackendKind, Error, Progress};

use crate::{qemu_img, LibvirtBackend};

pub fn cache_dir(storage_dir: &Path) -> PathBuf {
    storage_dir.join("images")
}

/// Pulls (or finds) the image and checks it is a qcow2 that QEMU can open.
pub fn ensure(
    b: &LibvirtBackend,
    name: &str,
    source: &ImageSource,
    progress: &dyn Progress,
) -> Result<CachedImage, Error> {
    let storage_dir = &b.config.vm.storage_dir;
    let dir = cache_dir(storage_dir);
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    // One download per cache at a time: two creates must not write the same partial file.
    let _lock = lock_cache(storage_dir)?;
    let (path, sum) = fetch::fetch_verified(source, &dir, ".qcow2", progress)?;
    let note = path.with_extension("json");
    if let Some(img) = std::fs::read(&note)
        .ok()
        .and_then(|b| serde_json::from_slice::<CachedImage>(&b).ok())
    {
        return Ok(img);
    }
    let info = qemu_img::info(&*b.host.runner, &path)?;
    let refuse = |why: String| {
        let _ = std::fs::remove_file(&path);
        Err(Error::failed(
            format!("image {name} ({}) {why}", source.url),
            "point [images] at a self-contained qcow2 cloud image",
        ))
    };
    if info.format != "qcow2" {
        return refuse(format!("is {}, not qcow2", info.format));
    }
    // A base that names other files would have QEMU open paths the image chose.
    if let Some(other) = &info.external {
        return refuse(format!(
            "refers to another file ({other}); nox uses only self-contained images"
        ));
    }
    let virtual_size = info.virtual_size;
    // QEMU runs as an unprivileged user and must read the base through the overlay.
    set_mode(&path, 0o644);
    let img = CachedImage {
        name: name.into(),
        backend: BackendKind::Vm,
        checksum: sum.to_string(),
        path: path.clone(),
        url: fetch::expand_url(&source.url),
        size_bytes: std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
        virtual_size_bytes: virtual_size,
        kind: nox_core::image::ImageKind::Base,
        shape: None,
        created_at: None,
    };
    let json = serde_json::to_vec_pretty(&img)
        .map_err(|e| Error::encode(format!("recording image {name}"), e))?;
    std::fs::write(&note, json).map_err(|e| Error::io(format!("writing {}", note.display()), e))?;
    Ok(img)
}

/// The cache's lock: held while an image is fetched, removed or pruned, so `rm` never takes
/// a file a download is writing. It lives with nox's other locks, so the cache holds only
/// images.
pub(crate) fn lock_cache(storage_dir: &Path) -> Result<nox_core::lock::LockGuard, Error> {
    let locks = storage_dir.join("locks");
    std::fs::create_dir_all(&locks)
        .map_err(|e| Error::io(format!("creating {}", locks.display()), e))?;
    nox_core::lock::lock(&locks.join("images.lock"))
}

pub fn list(storage_dir: &Path) -> Vec<CachedImage> {
    let Ok(entries) = std::fs::read_dir(cache_dir(storage_dir)) else {
        return Vec::new();
    };
    let mut images: Vec<CachedImage> = entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
        .collect();
    images.sort_by(|a, b| a.name.cmp(&b.name).then(a.checksum.cmp(&b.checksum)));
    images
}

/// The images no VM uses: `in_use` holds each VM's name and its record's base checksum.
pub(crate) fn unused(images: Vec<CachedImage>, in_use: &[(String, String)]) -> Vec<CachedImage> {
    images
        .into_iter()
        .filter(|i| !in_use.iter().any(|(_, sum)| *sum == i.checksum))
        .collect()
}

/// The image first, its note last: if removing the image fails, the note keeps it listed
/// (and removable) rather than leaving a file `nox image list` cannot see.
pub(crate) fn delete(img: &CachedImage) -> Result<(), Error> {
    for f in [img.path.clone(), img.path.with_extension("json")] {
        match std::fs::remove_file(&f) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("removing {}", f.display()), e)),
        }
    }
    Ok(())
}

pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(name: &str, checksum: &str) -> CachedImage {
        CachedImage {
            name: name.into(),
            backend: BackendKind::Vm,
            checksum: checksum.into(),
            path: format!("/c/{checksum}.qcow2").into(),
            url: String::new(),
            size_bytes: 1,
            virtual_size_bytes: 1,
            kind: nox_core::image::ImageKind::Base,
            shape: None,
            created_at: None,
        }
    }

    #[test]
    fn prune_keeps_exactly_the_images_vms_name() {
        let images = vec![
            image("a", "sha256:1"),
            image("b", "sha256:2"),
            image("c", "sha256:3"),
        ];
        let in_use = [
            ("web".into(), "sha256:2".into()),
            ("db".into(), "sha256:9".into()),
        ];
        let gone = unused(images, &in_use);
        let names: Vec<_> = gone.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["a", "c"]);
    }

    /// Notes written before containers had a cache have no `backend`: they are VM images.
    #[test]
    fn an_old_note_without_backend_reads_as_a_vm_image() {
        let old = r#"{"name":"d","checksum":"sha256:1","path":"/c/x.qcow2","url":"u","size_bytes":2,"virtual_size_bytes":3}"#;
        let img: CachedImage = serde_json::from_str(old).unwrap();
        assert_eq!(img.backend, BackendKind::Vm);
    }
}
