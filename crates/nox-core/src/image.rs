//! An image cache a backend keeps (`nox image list|pull|rm|prune|warm`): verified bases, named
//! by checksum, each with a note of where it came from, and (VMs) the templates made from them.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::ImageSource;
use crate::error::{Error, Result};
use crate::instance::{BackendKind, NetworkSpec};
use crate::progress::Progress;

/// One cached image. This is the `nox image list --json` shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedImage {
    /// The `[images]` name it was pulled as.
    pub name: String,
    /// Whose cache holds it: `vm` (a qcow2 base) or `lxc` (a container base).
    #[serde(default = "notes_before_container_caches")]
    pub backend: BackendKind,
    /// A verified base, or a VM template made from one. Notes written before templates
    /// existed have no `kind`: they are bases.
    #[serde(default)]
    pub kind: ImageKind,
    /// A base's own checksum; for a template, the checksum of the base it was made from.
    pub checksum: String,
    /// A base's file; a template's directory.
    pub path: PathBuf,
    /// Where a base came from (for a template, its base's URL; empty when that base is gone).
    pub url: String,
    /// Space it takes on disk: for a container base, the tarball and every unpacked copy; for
    /// a template, its saved memory and its disk overlay.
    pub size_bytes: u64,
    /// The disk a VM sees; for a container base, the size of one unpacked root filesystem.
    pub virtual_size_bytes: u64,
    /// A template's shape; `null` for a base.
    #[serde(default)]
    pub shape: Option<TemplateShape>,
    /// When a template was made (RFC 3339, UTC); `null` for a base.
    #[serde(default)]
    pub created_at: Option<String>,
}

/// What a cached image is.
/// (Ordered base first: a list shows a base before the templates made from it.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageKind {
    /// A verified image instances are made from.
    #[default]
    Base,
    /// A booted, saved VM of one shape, which new VMs of that shape restore a copy of.
    Template,
}

impl std::fmt::Display for ImageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ImageKind::Base => "base",
            ImageKind::Template => "template",
        })
    }
}

/// The shape a template was made for: a VM is restored from it only when all of it matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateShape {
    /// The template's key (its directory's name), what `nox image rm KEY` takes.
    pub key: String,
    pub cpus: u32,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
    pub network: String,
    /// `kvm` or `qemu` (software emulation).
    pub accel: String,
}

impl std::fmt::Display for TemplateShape {
    /// `2 CPU, 1G memory, 10G disk, network default`: the words `nox create` takes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} CPU, {} memory, {} disk, network {}",
            self.cpus,
            crate::resources::format_bytes(self.memory_bytes),
            crate::resources::format_bytes(self.disk_bytes),
            self.network
        )
    }
}

/// The shape `nox image warm` builds a template for: the resources as `create` resolves them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateRequest {
    /// The `[images]` name.
    pub image: String,
    pub cpus: u32,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
    pub network: NetworkSpec,
}

/// What `nox image warm` did. The `--json` shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warmed {
    /// False when the template was there already.
    pub built: bool,
    /// The template, as `nox image list` shows it.
    pub template: CachedImage,
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

    /// Makes the template of `request`'s shape now, so the first create of that shape
    /// restores it instead of booting (`nox image warm`). Only VMs have templates.
    fn warm(&self, request: &TemplateRequest, progress: &dyn Progress) -> Result<Warmed> {
        let _ = (request, progress);
        Err(Error::Usage(
            "`image warm` is for VMs: containers start from their base without booting one first"
                .into(),
        ))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A cache that keeps no templates (containers, remotes) refuses `warm` as bad input.
    #[test]
    fn warm_is_for_vms_unless_a_cache_says_otherwise() {
        struct Bases;
        impl ImageCache for Bases {
            fn list(&self) -> Result<Vec<CachedImage>> {
                Ok(Vec::new())
            }
            fn pull(&self, _: &str, _: &dyn Progress) -> Result<CachedImage> {
                unreachable!()
            }
            fn add(&self, _: &str, _: &ImageSource, _: &dyn Progress) -> Result<CachedImage> {
                unreachable!()
            }
            fn remove(&self, _: &str) -> Result<Vec<CachedImage>> {
                unreachable!()
            }
            fn prune(&self) -> Result<Vec<CachedImage>> {
                unreachable!()
            }
        }
        let request = TemplateRequest {
            image: "debian-12".into(),
            cpus: 1,
            memory_bytes: 1 << 30,
            disk_bytes: 10 << 30,
            network: NetworkSpec::Default,
        };
        let e = Bases.warm(&request, &crate::progress::Quiet).unwrap_err();
        assert!(e.is_bad_input(), "{e}");
        assert!(e.to_string().contains("`image warm` is for VMs"), "{e}");
    }

    /// Notes written before templates existed read as bases with no shape.
    #[test]
    fn an_old_note_reads_as_a_base() {
        let old = r#"{"name":"d","backend":"vm","checksum":"sha256:1","path":"/c/x.qcow2","url":"u","size_bytes":2,"virtual_size_bytes":3}"#;
        let img: CachedImage = serde_json::from_str(old).unwrap();
        assert_eq!(img.kind, ImageKind::Base);
        assert_eq!((img.shape, img.created_at), (None, None));
    }

    /// The `image list --json` keys docs/cli.md documents, for a base and a template.
    #[test]
    fn the_json_shape_of_a_template_row() {
        let t = CachedImage {
            name: "debian-12".into(),
            backend: BackendKind::Vm,
            kind: ImageKind::Template,
            checksum: "sha256:1".into(),
            path: "/t/abcd".into(),
            url: "u".into(),
            size_bytes: 5,
            virtual_size_bytes: 10 << 30,
            shape: Some(TemplateShape {
                key: "abcd".into(),
                cpus: 2,
                memory_bytes: 1 << 30,
                disk_bytes: 10 << 30,
                network: "user".into(),
                accel: "qemu".into(),
            }),
            created_at: Some("2026-11-27T03:00:00Z".into()),
        };
        let v = serde_json::to_value(&t).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        keys.sort();
        let mut want = [
            "name",
            "backend",
            "kind",
            "checksum",
            "path",
            "url",
            "size_bytes",
            "virtual_size_bytes",
            "shape",
            "created_at",
        ];
        want.sort();
        assert_eq!(keys, want);
        assert_eq!(v["kind"], "template");
        assert_eq!(v["shape"]["key"], "abcd");
        assert_eq!(v["shape"]["memory_bytes"], 1u64 << 30);
        assert_eq!(
            t.shape.as_ref().unwrap().to_string(),
            "2 CPU, 1G memory, 10G disk, network user"
        );
        let base = CachedImage {
            kind: ImageKind::Base,
            shape: None,
            created_at: None,
            ..t
        };
        let v = serde_json::to_value(&base).unwrap();
        assert_eq!(v["kind"], "base");
        assert!(v["shape"].is_null() && v["created_at"].is_null());
    }
}
