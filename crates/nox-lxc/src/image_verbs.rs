//! `nox image` on container bases: the LXC backend's `ImageCache` (list, pull, add, rm,
//! prune) over what image_cache.rs finds on disk.

use std::path::Path;

use nox_core::config::ImageSource;
use nox_core::image::{CachedImage, ImageCache};
use nox_core::{BackendKind, Error, Progress};

use crate::{image_cache, images, subid, LxcBackend};

impl LxcBackend {
    /// How `nox image` shows the base whose unpacked copy holds `rootfs`.
    fn cached(&self, rootfs: &Path) -> Result<CachedImage, Error> {
        let dir = images::images_dir(&self.config.lxc.lxcpath);
        let copy = rootfs.parent().unwrap_or(rootfs);
        image_cache::scan(&dir)
            .iter()
            .find(|b| b.unpacked.iter().any(|u| u == copy))
            .map(|b| image_cache::describe(&dir, b))
            .ok_or_else(|| Error::failure(format!("{} vanished from the cache", copy.display())))
    }

    /// Refuses while a container create runs: between its base and its config, nothing
    /// says which base it took. Called with the cache's lock held, so a create starting
    /// later waits for the removal and unpacks its base again.
    fn refuse_beside_creates(&self) -> Result<(), Error> {
        let state = nox_core::state::StateDir::new(&self.config.state.dir);
        nox_core::image::refuse_beside_creates(&state.creating(BackendKind::Lxc)?)
    }
}

impl ImageCache for LxcBackend {
    fn list(&self) -> Result<Vec<CachedImage>, Error> {
        let dir = images::images_dir(&self.config.lxc.lxcpath);
        let mut list: Vec<CachedImage> = image_cache::scan(&dir)
            .iter()
            .map(|b| image_cache::describe(&dir, b))
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name).then(a.checksum.cmp(&b.checksum)));
        Ok(list)
    }

    /// Fetches, verifies and unpacks the base for the default, unprivileged mapping, as
    /// `nox create --backend lxc` would.
    fn pull(&self, name: &str, progress: &dyn Progress) -> Result<CachedImage, Error> {
        let rootfs = self.base(name, unprivileged_mapping()?, progress)?;
        self.cached(&rootfs)
    }

    /// Takes a built rootfs in, unpacked for unprivileged containers like a pulled one.
    fn add(
        &self,
        name: &str,
        source: &ImageSource,
        progress: &dyn Progress,
    ) -> Result<CachedImage, Error> {
        let rootfs = self.base_from(name, source, unprivileged_mapping()?, progress)?;
        self.cached(&rootfs)
    }

    fn remove(&self, which: &str) -> Result<Vec<CachedImage>, Error> {
        let lxcpath = &self.config.lxc.lxcpath;
        let dir = images::images_dir(lxcpath);
        let _lock = image_cache::lock(lxcpath)?;
        self.refuse_beside_creates()?;
        let matching: Vec<_> = image_cache::scan(&dir)
            .into_iter()
            .filter(|b| b.is(which))
            .collect();
        if matching.is_empty() {
            return Err(Error::Refused {
                message: format!("no cached container image {which:?}"),
                hint: "`nox image list` shows the cache".into(),
            });
        }
        let users = image_cache::overlay_users(lxcpath)?;
        for base in &matching {
            let using = image_cache::users_of(base, &users);
            if !using.is_empty() {
                let img = image_cache::describe(&dir, base);
                return Err(Error::Refused {
                    message: format!(
                        "image {} is the base of the containers {}",
                        if img.name.is_empty() {
                            &img.checksum
                        } else {
                            &img.name
                        },
                        using.join(", ")
                    ),
                    hint: "delete those containers first (`nox delete NAME`)".into(),
                });
            }
        }
        remove_all(&dir, &matching)
    }

    fn prune(&self) -> Result<Vec<CachedImage>, Error> {
        let lxcpath = &self.config.lxc.lxcpath;
        let dir = images::images_dir(lxcpath);
        let _lock = image_cache::lock(lxcpath)?;
        self.refuse_beside_creates()?;
        let users = image_cache::overlay_users(lxcpath)?;
        remove_all(&dir, &image_cache::unused(image_cache::scan(&dir), &users))
    }
}

/// The mapping of a default container: root's subordinate ids.
fn unprivileged_mapping() -> Result<images::Mapping, Error> {
    let (uid, gid) = subid::root_ranges()?;
    Ok(images::Mapping::Shifted {
        uid: uid.start,
        gid: gid.start,
    })
}

/// Removes bases, describing each first (its size is gone afterwards).
fn remove_all(dir: &Path, bases: &[image_cache::Base]) -> Result<Vec<CachedImage>, Error> {
    let mut removed = Vec::new();
    for base in bases {
        let img = image_cache::describe(dir, base);
        image_cache::delete(dir, base)?;
        removed.push(img);
    }
    Ok(removed)
}
