//! The VM image cache: verified qcow2 bases under `STORAGE_DIR/images`, named by checksum,
//! each with a small JSON note of where it came from (`nox image list`).

use std::path::{Path, PathBuf};

use nox_core::config::ImageSource;
pub use nox_core::image::CachedImage;
use nox_core::{fetch, Error, Progress};

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
    // The lock lives with nox's other locks, so the cache holds only images.
    let locks = storage_dir.join("locks");
    std::fs::create_dir_all(&locks)
        .map_err(|e| Error::io(format!("creating {}", locks.display()), e))?;
    let _lock = nox_core::lock::lock(&locks.join("images.lock"))?;
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
        checksum: sum.to_string(),
        path: path.clone(),
        url: fetch::expand_url(&source.url),
        size_bytes: std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
        virtual_size_bytes: virtual_size,
    };
    let json = serde_json::to_vec_pretty(&img)
        .map_err(|e| Error::encode(format!("recording image {name}"), e))?;
    std::fs::write(&note, json).map_err(|e| Error::io(format!("writing {}", note.display()), e))?;
    Ok(img)
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

/// Removes a cached image by `[images]` name or checksum; returns what was removed.
pub fn remove(
    storage_dir: &Path,
    which: &str,
    in_use: &[String],
) -> Result<Vec<CachedImage>, Error> {
    let matching: Vec<CachedImage> = list(storage_dir)
        .into_iter()
        .filter(|i| i.name == which || i.checksum == which)
        .collect();
    if matching.is_empty() {
        return Err(Error::Refused {
            message: format!("no cached image {which:?}"),
            hint: "`nox image list` shows the cache".into(),
        });
    }
    for img in &matching {
        if in_use.contains(&img.checksum) {
            return Err(Error::Refused {
                message: format!("image {} is the base of existing VMs", img.name),
                hint: "delete those VMs first (`nox list`)".into(),
            });
        }
    }
    for img in &matching {
        let _ = std::fs::remove_file(&img.path);
        let _ = std::fs::remove_file(img.path.with_extension("json"));
    }
    Ok(matching)
}

pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
}
