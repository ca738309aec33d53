//! `nox image list|pull|rm`: the image caches backends keep.

use nox_core::image::{CachedImage, ImageCache};
use nox_core::{Error, Progress, Result};

use crate::context::Context;

fn caches(ctx: &Context) -> Vec<&dyn ImageCache> {
    ctx.backends.all().filter_map(|b| b.image_cache()).collect()
}

fn any_cache(ctx: &Context) -> Result<&dyn ImageCache> {
    caches(ctx).into_iter().next().ok_or_else(|| {
        Error::Usage(
            "no backend of this nox keeps an image cache (VMs do: build with the `vm` feature)"
                .into(),
        )
    })
}

/// Every cached image of every cache.
pub fn list(ctx: &Context) -> Result<Vec<CachedImage>> {
    let mut all = Vec::new();
    for c in caches(ctx) {
        all.extend(c.list()?);
    }
    Ok(all)
}

/// Downloads and verifies the `[images]` entry `name`.
pub fn pull(ctx: &Context, name: &str, progress: &dyn Progress) -> Result<CachedImage> {
    any_cache(ctx)?.pull(name, progress)
}

/// Removes cached images by name or checksum.
pub fn remove(ctx: &Context, which: &str) -> Result<Vec<CachedImage>> {
    any_cache(ctx)?.remove(which)
}
