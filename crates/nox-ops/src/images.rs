//! `nox image list|pull|rm|prune|build|warm`: the image caches this host's backends keep (VM
//! images and templates, container bases), and images built here.

use nox_core::image::{CachedImage, ImageCache, TemplateRequest, Warmed};
use nox_core::image_build::{self, Release};
use nox_core::instance::NetworkSpec;
use nox_core::{BackendKind, Error, Progress, Result};
use serde::Serialize;

use crate::context::Context;
use crate::ui::Ui;

/// What `nox image prune` removed, and the bytes that freed. The `--json` shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pruned {
    pub removed: Vec<CachedImage>,
    pub freed_bytes: u64,
}

/// This host's caches, with the kind of backend keeping each. Remotes keep their own images.
fn caches(ctx: &Context) -> Vec<(BackendKind, &dyn ImageCache)> {
    ctx.backends
        .at(None)
        .filter_map(|b| Some((b.kind(), b.image_cache()?)))
        .collect()
}

/// The cache of the `kind` backend.
fn cache(ctx: &Context, kind: BackendKind) -> Result<&dyn ImageCache> {
    ctx.backends
        .get(None, kind)?
        .image_cache()
        .ok_or_else(|| Error::Usage(format!("the {kind} backend keeps no image cache")))
}

/// Every cached image of every cache.
pub fn list(ctx: &Context) -> Result<Vec<CachedImage>> {
    let mut all = Vec::new();
    for (_, c) in caches(ctx) {
        all.extend(c.list()?);
    }
    Ok(all)
}

/// Downloads and verifies the `[images]` entry `name` into the cache of `backend` (default:
/// `[defaults] backend`).
pub fn pull(
    ctx: &Context,
    name: &str,
    backend: Option<BackendKind>,
    progress: &dyn Progress,
) -> Result<CachedImage> {
    let kind = backend.unwrap_or(ctx.config.defaults.backend);
    cache(ctx, kind)?.pull(name, progress)
}

/// Removes cached images by name or checksum from the cache of `backend`, or from every
/// cache that has one. `removed` hears of each removal as it happens, so what was removed
/// before a later cache refused is still said.
pub fn remove(
    ctx: &Context,
    which: &str,
    backend: Option<BackendKind>,
    removed: &mut dyn FnMut(&CachedImage),
) -> Result<()> {
    let targets = match backend {
        Some(kind) => vec![cache(ctx, kind)?],
        None => {
            let mut holding = Vec::new();
            for (_, c) in caches(ctx) {
                if c.list()?.iter().any(|i| answers_to(i, which)) {
                    holding.push(c);
                }
            }
            if holding.is_empty() {
                return Err(Error::Refused {
                    message: format!("no cached image {which:?}"),
                    hint: "`nox image list` shows the caches".into(),
                });
            }
            holding
        }
    };
    for c in targets {
        c.remove(which)?.iter().for_each(&mut *removed);
    }
    Ok(())
}

/// Whether `nox image rm WHICH` means `img`: its name, its checksum, or a template's key.
fn answers_to(img: &CachedImage, which: &str) -> bool {
    img.name == which || img.checksum == which || img.shape.as_ref().is_some_and(|s| s.key == which)
}

/// `nox image warm NAME`: makes the VM template of image `name` in the shape `create` would
/// give a VM now (`[defaults]`, flags on top, resolved against this host), unless it exists.
pub fn warm(ctx: &Context, name: &str, ui: &dyn Ui) -> Result<Warmed> {
    let config = &ctx.config;
    if !config.vm.templates {
        return Err(Error::Usage(
            "templates are off here ([vm] templates = false): set `templates = true` under [vm] in your nox.toml (`nox config path` lists the files) to warm one".into(),
        ));
    }
    let backend = ctx.backends.get(None, BackendKind::Vm)?;
    let cache = backend
        .image_cache()
        .ok_or_else(|| Error::Usage("the vm backend keeps no image cache".into()))?;
    let defaults = &config.defaults;
    let network = match &defaults.network {
        NetworkSpec::Ask => crate::create::ask_network(BackendKind::Vm, &*ctx.host.facts, ui)?,
        n => n.clone(),
    };
    let capacity = ctx.host.capacity(&config.vm.storage_dir)?;
    let request = TemplateRequest {
        image: name.into(),
        cpus: defaults.cpus.resolve(&capacity)?,
        memory_bytes: defaults.memory.resolve(&capacity)?,
        disk_bytes: defaults.disk.resolve(&capacity)?,
        network,
    };
    cache.warm(&request, ui.progress())
}

/// Removes from every cache what no instance uses (no backup needs a cached base: see
/// `ImageCache::prune`).
pub fn prune(ctx: &Context) -> Result<Pruned> {
    let mut removed: Vec<CachedImage> = Vec::new();
    for (kind, c) in caches(ctx) {
        match c.prune() {
            Ok(gone) => removed.extend(gone),
            Err(e) if removed.is_empty() => return Err(e),
            // Say what is already gone: the error alone would hide it.
            Err(e) => {
                let names: Vec<&str> = removed.iter().map(|i| i.checksum.as_str()).collect();
                return Err(e.context(format!(
                    "pruning the {kind} cache, after removing {}",
                    names.join(", ")
                )));
            }
        }
    }
    let freed_bytes = removed.iter().map(|i| i.size_bytes).sum();
    Ok(Pruned {
        removed,
        freed_bytes,
    })
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
    let caches = kinds
        .iter()
        .map(|&kind| cache(ctx, kind))
        .collect::<Result<Vec<_>>>()?;
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
    use nox_core::config::{ImageConfig, ImageSource};
    use nox_core::progress::Quiet;

    use super::*;
    use crate::testing::{context, FakeBackend};

    fn two_caches(dir: &std::path::Path) -> (Context, FakeBackend, FakeBackend) {
        let vm = FakeBackend::new(BackendKind::Vm).with_images(&[
            ("debian", "sha256:v1", 300, Some("web")),
            ("old", "sha256:v2", 200, None),
        ]);
        let lxc = FakeBackend::new(BackendKind::Lxc).with_images(&[
            ("debian", "sha256:c1", 50, None),
            ("alpine", "sha256:c2", 7, Some("box")),
        ]);
        // A remote's images are its own: never listed, pulled or pruned here.
        let remote = FakeBackend::new(BackendKind::Lxc)
            .on_remote("lab")
            .with_images(&[("far", "sha256:r1", 9, None)]);
        let ctx = context(
            dir,
            vec![
                Box::new(vm.clone()),
                Box::new(lxc.clone()),
                Box::new(remote),
            ],
        );
        (ctx, vm, lxc)
    }

    #[test]
    fn list_covers_every_local_cache_with_its_backend() {
        let dir = tempfile::tempdir().unwrap();
        let (ctx, _, _) = two_caches(dir.path());
        let rows: Vec<(BackendKind, String)> = list(&ctx)
            .unwrap()
            .into_iter()
            .map(|i| (i.backend, i.name))
            .collect();
        assert_eq!(rows.len(), 4, "{rows:?}");
        assert!(rows.contains(&(BackendKind::Lxc, "alpine".into())));
        assert!(!rows.iter().any(|(_, n)| n == "far"));
    }

    #[test]
    fn pull_goes_to_the_default_backend_unless_told() {
        let dir = tempfile::tempdir().unwrap();
        let (mut ctx, vm, lxc) = two_caches(dir.path());
        ctx.config.defaults.backend = BackendKind::Lxc;
        pull(&ctx, "debian", None, &Quiet).unwrap();
        pull(&ctx, "debian", Some(BackendKind::Vm), &Quiet).unwrap();
        assert_eq!(lxc.calls(), ["pull debian"]);
        assert_eq!(vm.calls(), ["pull debian"]);
    }

    #[test]
    fn rm_without_backend_tries_every_cache_holding_the_name() {
        let dir = tempfile::tempdir().unwrap();
        let (ctx, vm, lxc) = two_caches(dir.path());
        let mut said = Vec::new();
        // The VM cache refuses (web uses it) after nothing was removed; the LXC one is not
        // reached, so nothing is removed at all.
        let e = remove(&ctx, "debian", None, &mut |i| said.push(i.checksum.clone())).unwrap_err();
        assert!(e.is_bad_input() && e.to_string().contains("web"), "{e}");
        assert!(said.is_empty());
        assert_eq!(lxc.list().unwrap().len(), 2);
        // Told which cache, it removes from that one only.
        remove(&ctx, "debian", Some(BackendKind::Lxc), &mut |i| {
            said.push(i.checksum.clone())
        })
        .unwrap();
        assert_eq!(said, ["sha256:c1"]);
        assert_eq!(vm.list().unwrap().len(), 2);
        // A name no cache has is refused as bad input.
        let e = remove(&ctx, "nothing", None, &mut |_| {}).unwrap_err();
        assert!(e.is_bad_input(), "{e}");
    }

    #[test]
    fn prune_removes_the_unused_images_of_every_cache_and_adds_up_their_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let (ctx, vm, lxc) = two_caches(dir.path());
        let p = prune(&ctx).unwrap();
        let gone: Vec<&str> = p.removed.iter().map(|i| i.checksum.as_str()).collect();
        assert_eq!(gone, ["sha256:v2", "sha256:c1"]);
        assert_eq!(p.freed_bytes, 250);
        assert_eq!(vm.list().unwrap().len(), 1);
        assert_eq!(lxc.list().unwrap().len(), 1);
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["freed_bytes"], 250);
        assert_eq!(json["removed"][1]["backend"], "lxc");
    }

    #[test]
    fn a_cache_that_fails_after_another_pruned_says_what_is_already_gone() {
        let dir = tempfile::tempdir().unwrap();
        let (ctx, _, lxc) = two_caches(dir.path());
        lxc.set_unreachable("lxc is down");
        let e = prune(&ctx).unwrap_err().to_string();
        assert!(e.contains("sha256:v2") && e.contains("lxc is down"), "{e}");
    }

    #[test]
    fn warm_asks_the_vm_cache_for_the_shape_create_would_give() {
        let dir = tempfile::tempdir().unwrap();
        let (mut ctx, vm, lxc) = two_caches(dir.path());
        // The fake host has 4 CPUs and 8 GiB: shares resolve as create resolves them.
        ctx.config.defaults.backend = BackendKind::Lxc;
        ctx.config.defaults.cpus = "50%".parse().unwrap();
        ctx.config.defaults.memory = "25%".parse().unwrap();
        ctx.config.defaults.disk = "12G".parse().unwrap();
        ctx.config.defaults.network = NetworkSpec::User;
        let ui = crate::testing::FakeUi::default();
        let w = warm(&ctx, "debian-13", &ui).unwrap();
        assert!(w.built);
        assert_eq!(
            vm.calls(),
            [format!(
                "warm debian-13 2 {} {} user",
                2u64 << 30,
                12u64 << 30
            )]
        );
        assert!(
            lxc.calls().is_empty(),
            "templates are VMs' whatever the default backend"
        );
        let json = serde_json::to_value(&w).unwrap();
        assert_eq!(json["built"], true);
        assert_eq!(json["template"]["kind"], "template");
        assert_eq!(json["template"]["shape"]["cpus"], 2);
    }

    #[test]
    fn warm_is_refused_when_templates_are_off_or_the_network_cannot_be_asked() {
        let dir = tempfile::tempdir().unwrap();
        let (mut ctx, vm, _) = two_caches(dir.path());
        let ui = crate::testing::FakeUi::default();
        ctx.config.defaults.network = NetworkSpec::Ask;
        let e = warm(&ctx, "debian-12", &ui).unwrap_err();
        assert!(
            e.is_bad_input() && e.to_string().contains("interactive"),
            "{e}"
        );
        ctx.config.vm.templates = false;
        let e = warm(&ctx, "debian-12", &ui).unwrap_err();
        assert!(
            e.is_bad_input() && e.to_string().contains("`templates = true` under [vm]"),
            "{e}"
        );
        assert!(vm.calls().is_empty());
        // A host with no VM backend says so.
        let lxc_only = crate::testing::context(
            dir.path(),
            vec![Box::new(
                FakeBackend::new(BackendKind::Lxc).with_images(&[]),
            )],
        );
        let e = warm(&lxc_only, "debian-12", &ui).unwrap_err();
        assert!(e.is_bad_input(), "{e}");
    }

    #[test]
    fn rm_finds_a_template_by_its_key() {
        let img = CachedImage {
            name: "debian-12".into(),
            backend: BackendKind::Vm,
            kind: nox_core::image::ImageKind::Template,
            checksum: "sha256:1".into(),
            path: "/t/k1".into(),
            url: String::new(),
            size_bytes: 1,
            virtual_size_bytes: 1,
            shape: Some(nox_core::image::TemplateShape {
                key: "0123abcd".into(),
                cpus: 1,
                memory_bytes: 1,
                disk_bytes: 1,
                network: "default".into(),
                accel: "qemu".into(),
            }),
            created_at: None,
        };
        assert!(answers_to(&img, "0123abcd"));
        assert!(answers_to(&img, "debian-12") && answers_to(&img, "sha256:1"));
        assert!(!answers_to(&img, "0123"));
    }

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
