//! An image cache a backend keeps (`nox image list|pull|rm|prune`): verified bases, named by
//! checksum, each with a note of where it came from.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::ImageSource;
use crate::error::{Error, Result};
use crate::instance::BackendKind;
use crate::progress::Progress;

/// One cached image. This is the `nox image list --json` shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedImage {
    /// The `[images]` name it was pulled as.
    pub name: String,
    /// Whose cache holds it: `vm` (a qcow2 base) or `lxc` (a container base).
    #[serde(default = "notes_before_container_caches")]
    pub backend: BackendKind,
    pub checksum: String,
    pub path: PathBuf,
    pub url: String,
    /// Space it takes on disk: for a container base, the tarball and every unpacked copy.
    pub size_bytes: u64,
    /// The disk a VM sees; for a container base, the size of one unpacked root filesystem.
    pub virtual_size_bytes: u64,
}

/// The VM cache's notes were written before containers had a cache, without `backend`.
fn notes_before_container_caches() -> BackendKind {
    BackendKind::Vm
}

/// What a backend with an image cache offers.
pub trait ImageCache {
    /// Every cached image, by name then checksum.
    fn list(&self) -> Result<Vec<CachedImage>>;

    /// Downloads and verifies the `[images]` entry `name` into the cache (or finds it there).
    fn pull(&self, name: &str, progress: &dyn Progress) -> Result<CachedImage>;

    /// Takes `source` into the cache as image `name` (`nox image build` hands its result
    /// over this way), verified against its checksum like a download.
    fn add(&self, name: &str, source: &ImageSource, progress: &dyn Progress)
        -> Result<CachedImage>;

    /// Removes cached images by `[images]` name or checksum, refusing one an instance uses;
    /// returns what was removed.
    fn remove(&self, which: &str) -> Result<Vec<CachedImage>>;

    /// Removes every cached image no instance of this backend uses; returns what was removed
    /// (with the sizes it had). No local backup needs a cached base: a VM backup holds the
    /// whole disk and a container backup the whole root filesystem (see each backend's
    /// backup module), so backups never keep a base.
    fn prune(&self) -> Result<Vec<CachedImage>>;
}

/// Refuses to remove cached images while creates are running (`creating`, from
/// `StateDir::creating`): such a create may have taken an image it has not recorded yet.
/// A cache calls this holding its lock, after which no create can take an image unseen.
pub fn refuse_beside_creates(creating: &[String]) -> Result<()> {
    if creating.is_empty() {
        return Ok(());
    }
    Err(Error::Refused {
        message: format!(
            "nox is creating {} now, from an image this command could remove",
            creating.join(", ")
        ),
        hint: "run it again once that create has finished".into(),
    })
}
