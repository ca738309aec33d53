//! An image cache a backend keeps (`nox image list|pull|rm`): verified bases, named by
//! checksum, each with a note of where it came from.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::ImageSource;
use crate::error::Result;
use crate::progress::Progress;

/// One cached image. This is the `nox image list --json` shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedImage {
    /// The `[images]` name it was pulled as.
    pub name: String,
    pub checksum: String,
    pub path: PathBuf,
    pub url: String,
    pub size_bytes: u64,
    pub virtual_size_bytes: u64,
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
}
