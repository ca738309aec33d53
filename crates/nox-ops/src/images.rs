//! `nox image list|pull|rm|build`: the image caches backends keep, and images built here.

use nox_core::image::{CachedImage, ImageCache};
use nox_core::image_build::{self, Release};
use nox_core::{BackendKind, Error, Progress, Result};

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

/// `nox image build NAME`: builds the image on this host from its distribution's archive and
/// takes the result into the image cache of each backend in `kinds`, as image `name`.
///
/// The release is `release` (`debian/13`), else the `build:` source of `[images.NAME]`.
pub fn build(
    ctx: &Context,
    name: &str,
    release: Option<&str>,
    kinds: &[BackendKind],
    progress: &dyn Progress,
) -> Result<Vec<CachedImage>> {
    let release = match release {
        Some(r) => Release::parse(r)?,
        None => entry_release(ctx, name, kinds)?,
    };
    let mut caches = Vec::new();
    for &kind in kinds {
        let cache = ctx
            .backends
            .get(None, kind)?
            .image_cache()
            .ok_or_else(|| Error::Usage(format!("the {kind} backend keeps no image cache")))?;
        caches.push(cache);
    }
    let sources = ctx.host.builder.build(release, kinds, progress)?;
    caches
        .into_iter()
        .zip(&sources)
        .map(|(cache, source)| cache.add(name, source, progress))
        .collect()
}

/// The one release the `build:` sources of `[images.NAME]` name for `kinds`.
fn entry_release(ctx: &Context, name: &str, kinds: &[BackendKind]) -> Result<Release> {
    let usage = |why: String| {
        Error::Usage(format!(
            "{why}; give the release to build: nox image build {name} --release debian/12"
        ))
    };
    let entry = ctx
        .config
        .images
        .get(name)
        .ok_or_else(|| usage(format!("no image named {name:?} in [images]")))?;
    let mut found: Option<Release> = None;
    for kind in kinds {
        let sources = match kind {
            BackendKind::Vm => &entry.vm,
            BackendKind::Lxc => &entry.lxc,
        };
        let release = sources
            .iter()
            .find_map(image_build::build_release)
            .transpose()?
            .ok_or_else(|| usage(format!("[images.{name}.{kind}] has no build: source")))?;
        match found {
            Some(r) if r != release => {
                return Err(usage(format!(
                    "[images.{name}] builds {r} for one backend and {release} for another"
                )))
            }
            _ => found = Some(release),
        }
    }
    found.ok_or_else(|| usage("no backend to build for".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nox_core::config::{ImageConfig, ImageSource};

    fn build_source(url: &str) -> ImageSource {
        ImageSource {
            url: url.into(),
            checksum: None,
            checksum_url: None,
        }
    }

    #[test]
    fn the_release_comes_from_the_entrys_build_sources() {
        let dir = tempfile::tempdir().unwrap();
        let mut ctx = crate::testing::context(dir.path(), Vec::new());
        let both = [BackendKind::Vm, BackendKind::Lxc];
        let r = entry_release(&ctx, "debian-13", &both).unwrap();
        assert_eq!(r.suite, "trixie");

        ctx.config.images.insert(
            "mixed".into(),
            ImageConfig {
                vm: vec![build_source("build:debian/12")],
                lxc: vec![build_source("build:debian/13")],
            },
        );
        let e = entry_release(&ctx, "mixed", &both).unwrap_err();
        assert!(
            e.is_bad_input() && e.to_string().contains("for another"),
            "{e}"
        );
        // One backend alone is fine.
        assert_eq!(
            entry_release(&ctx, "mixed", &[BackendKind::Lxc])
                .unwrap()
                .suite,
            "trixie"
        );

        for missing in ["nope", "mixed-no-build"] {
            ctx.config.images.insert(
                "mixed-no-build".into(),
                ImageConfig {
                    vm: vec![build_source("https://x/y.qcow2")],
                    lxc: Vec::new(),
                },
            );
            let e = entry_release(&ctx, missing, &[BackendKind::Vm]).unwrap_err();
            assert!(
                e.is_bad_input() && e.to_string().contains("--release debian/12"),
                "{e}"
            );
        }
    }
}
