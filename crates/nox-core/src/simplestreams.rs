//! A client for simplestreams image servers (the LXC image server and its mirrors), the
//! protocol Incus speaks: `streams/v1/index.json` names the products file; the products file
//! lists, per `DIST:RELEASE:ARCH:VARIANT`, dated versions, each with items (a metadata tarball
//! and a rootfs) carrying their path and SHA-256.
//!
//! What is trusted: the index and the products file, fetched over HTTPS from the configured
//! server. Each item is then verified against the SHA-256 the products file gives for it.
//! There is no GPG check: the server's signed `.sjson` files are not read (LXC 5.0's own
//! `download` template does not check signatures either).
//!
//! It lives in nox-core beside `fetch`, whose resumable, hashing download it reuses, and so
//! that the image commands can use it without depending on the LXC backend.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::{Checksum, ImageSource};
use crate::error::{Error, Result};
use crate::progress::Progress;

/// `streams/v1/index.json`.
#[derive(Debug, Deserialize)]
pub struct Index {
    pub index: BTreeMap<String, IndexEntry>,
}

#[derive(Debug, Deserialize)]
pub struct IndexEntry {
    #[serde(default)]
    pub datatype: String,
    pub path: String,
    #[serde(default)]
    pub format: String,
}

/// The products file (`streams/v1/images.json` on the LXC server).
#[derive(Debug, Deserialize)]
pub struct Products {
    pub products: BTreeMap<String, Product>,
}

#[derive(Debug, Deserialize)]
pub struct Product {
    #[serde(default)]
    pub versions: BTreeMap<String, Version>,
}

#[derive(Debug, Deserialize)]
pub struct Version {
    #[serde(default)]
    pub items: BTreeMap<String, Item>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Item {
    pub ftype: String,
    pub path: String,
    pub sha256: String,
    #[serde(default)]
    pub size: Option<u64>,
    /// On the metadata item: SHA-256 of metadata + rootfs (any kind), Incus's fingerprint.
    #[serde(default)]
    pub combined_sha256: Option<String>,
    /// On the metadata item: SHA-256 of metadata + root.tar.xz.
    #[serde(default)]
    pub combined_rootxz_sha256: Option<String>,
}

/// What to download for one image, chosen from the products file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// `DIST:RELEASE:ARCH:VARIANT`.
    pub product: String,
    /// The newest version's key (`20261126_05:24`).
    pub version: String,
    pub metadata: Item,
    pub rootfs: Item,
    /// Names the image in the cache: the combined checksum when the server gives one, else
    /// the rootfs's own SHA-256.
    pub fingerprint: String,
}

/// Splits `DIST/RELEASE` (the part after `images:`).
pub fn parse_spec(spec: &str) -> Result<(&str, &str)> {
    let usage = || {
        Error::Usage(format!(
            "images:{spec}: write images:DIST/RELEASE, e.g. images:debian/bookworm"
        ))
    };
    let (dist, release) = spec.split_once('/').ok_or_else(usage)?;
    let word = |s: &str| {
        !s.is_empty()
            && !s.starts_with('.')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    };
    if !word(dist) || !word(release) {
        return Err(usage());
    }
    Ok((dist, release))
}

/// The products file's path from the index: the entry for image downloads.
pub fn products_path(index: &Index) -> Option<&str> {
    index
        .index
        .get("images")
        .or_else(|| {
            index
                .index
                .values()
                .find(|e| e.datatype == "image-downloads")
        })
        .map(|e| e.path.as_str())
}

/// Picks `DIST:RELEASE:ARCH:default` (else `:cloud`), its newest version that has both a
/// metadata tarball and a root.tar.xz.
pub fn select(
    products: &Products,
    dist: &str,
    release: &str,
    arch: &str,
) -> std::result::Result<Selection, String> {
    let candidates = ["default", "cloud"].map(|v| format!("{dist}:{release}:{arch}:{v}"));
    let Some((key, product)) = candidates
        .iter()
        .find_map(|k| products.products.get(k).map(|p| (k, p)))
    else {
        return Err(format!(
            "the server has no {dist}/{release} image for {arch} (looked for {})",
            candidates.join(" and ")
        ));
    };
    // Version keys are dates (`20261126_05:24`): newest sorts last.
    for (version, v) in product.versions.iter().rev() {
        let by_type = |types: &[&str]| {
            types
                .iter()
                .find_map(|t| v.items.values().find(|i| i.ftype == *t))
                .cloned()
        };
        let (Some(metadata), Some(rootfs)) = (
            by_type(&["incus.tar.xz", "lxd.tar.xz"]),
            by_type(&["root.tar.xz"]),
        ) else {
            continue;
        };
        for item in [&metadata, &rootfs] {
            check_item(item)?;
        }
        let fingerprint = metadata
            .combined_rootxz_sha256
            .clone()
            .filter(|s| is_sha256(s))
            .or_else(|| metadata.combined_sha256.clone().filter(|s| is_sha256(s)))
            .unwrap_or_else(|| rootfs.sha256.clone());
        return Ok(Selection {
            product: key.clone(),
            version: version.clone(),
            metadata,
            rootfs,
            fingerprint,
        });
    }
    Err(format!(
        "the server's {key} has no version with both a metadata tarball and a root.tar.xz"
    ))
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// An item's path must stay on the server (relative, no `..`) and its checksum be a SHA-256:
/// a products file cannot send nox elsewhere or leave an item unverified.
fn check_item(item: &Item) -> std::result::Result<(), String> {
    let bad_path = item.path.starts_with('/')
        || item.path.contains("://")
        || item.path.contains('\\')
        || item.path.split('/').any(|c| c == ".." || c.is_empty())
        || item
            .path
            .chars()
            .any(|c| c.is_whitespace() || c.is_control());
    if bad_path {
        return Err(format!(
            "the products file gives {:?} a path outside the server: {:?}",
            item.ftype, item.path
        ));
    }
    if !is_sha256(&item.sha256) {
        return Err(format!(
            "the products file gives {} no valid sha256",
            item.path
        ));
    }
    Ok(())
}

/// The downloaded, verified files of one image.
#[derive(Debug)]
pub struct Fetched {
    pub selection: Selection,
    pub metadata: PathBuf,
    pub rootfs: PathBuf,
}

/// Finds `images:DIST/RELEASE` on `server` for this host's architecture.
pub fn resolve(server: &str, dist: &str, release: &str) -> Result<Selection> {
    let hint = "check the network and [lxc] image_server (`nox config show`)";
    let index: Index = get_json(&format!("{server}/streams/v1/index.json"))?;
    let path = products_path(&index).ok_or_else(|| {
        Error::failed(
            format!("{server}/streams/v1/index.json lists no image products"),
            hint,
        )
    })?;
    let products: Products = get_json(&format!("{server}/{}", path.trim_start_matches('/')))?;
    let arch = crate::fetch::debian_arch();
    select(&products, dist, release, arch).map_err(|e| Error::failed(e, hint))
}

/// Downloads (or finds cached) the selection's rootfs and metadata into `cache_dir`, each
/// verified against its SHA-256 from the products file. The rootfs comes first, so a refused
/// rootfs leaves nothing behind.
pub fn fetch(
    server: &str,
    selection: Selection,
    cache_dir: &Path,
    progress: &dyn Progress,
) -> Result<Fetched> {
    let get = |item: &Item, ext: &str| -> Result<PathBuf> {
        let source = ImageSource {
            url: format!("{server}/{}", item.path),
            checksum: Some(
                Checksum::try_from(format!("sha256:{}", item.sha256)).map_err(Error::Usage)?,
            ),
            checksum_url: None,
        };
        crate::fetch::fetch_verified(&source, cache_dir, ext, progress).map(|(p, _)| p)
    };
    let rootfs = get(&selection.rootfs, ".tar.xz")?;
    let metadata = get(&selection.metadata, ".meta.tar.xz")?;
    Ok(Fetched {
        selection,
        metadata,
        rootfs,
    })
}

fn get_json<T: serde::de::DeserializeOwned>(url: &str) -> Result<T> {
    let resp = ureq::get(url).call().map_err(|e| {
        Error::failed(
            format!("cannot download {url}: {e}"),
            "check the network and [lxc] image_server (`nox config show`)",
        )
    })?;
    let text = resp
        .into_string()
        .map_err(|e| Error::io(format!("reading {url}"), e))?;
    serde_json::from_str(&text).map_err(|e| {
        Error::failed(
            format!("{url} is not a simplestreams file: {e}"),
            "check [lxc] image_server: it must name a simplestreams server's root",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = include_str!("../testdata/simplestreams/index.json");
    const PRODUCTS: &str = include_str!("../testdata/simplestreams/images.json");

    fn products() -> Products {
        serde_json::from_str(PRODUCTS).unwrap()
    }

    #[test]
    fn index_names_the_products_file() {
        let index: Index = serde_json::from_str(INDEX).unwrap();
        assert_eq!(products_path(&index), Some("streams/v1/images.json"));
        let only_by_type: Index = serde_json::from_str(
            r#"{"index":{"other":{"datatype":"image-downloads","path":"s/p.json"}}}"#,
        )
        .unwrap();
        assert_eq!(products_path(&only_by_type), Some("s/p.json"));
    }

    #[test]
    fn picks_the_newest_default_version_and_its_fingerprint() {
        let s = select(&products(), "debian", "bookworm", "amd64").unwrap();
        assert_eq!(s.product, "debian:bookworm:amd64:default");
        // 20261126_05:24 is newer than 20261125_05:24 and 20261124_23:59.
        assert_eq!(s.version, "20261126_05:24");
        assert_eq!(s.metadata.ftype, "incus.tar.xz");
        assert_eq!(
            s.rootfs.path,
            "images/debian/bookworm/amd64/default/20261126_05:24/rootfs.tar.xz"
        );
        assert_eq!(s.fingerprint, "c".repeat(64), "combined_rootxz_sha256 wins");
    }

    #[test]
    fn arch_and_variant_fallbacks() {
        // arm64 has only a cloud variant, with lxd.tar.xz metadata and no combined sums.
        let s = select(&products(), "debian", "bookworm", "arm64").unwrap();
        assert_eq!(s.product, "debian:bookworm:arm64:cloud");
        assert_eq!(s.metadata.ftype, "lxd.tar.xz");
        assert_eq!(s.fingerprint, "e".repeat(64), "the rootfs sha256");
        // The newest trixie version has only a squashfs: the one before is taken.
        let s = select(&products(), "debian", "trixie", "amd64").unwrap();
        assert_eq!(s.version, "20261120_05:24");
        assert_eq!(
            s.fingerprint,
            "1".repeat(64),
            "combined_sha256 when no rootxz"
        );
        let err = select(&products(), "debian", "bookworm", "riscv64").unwrap_err();
        assert!(
            err.contains("no debian/bookworm image for riscv64"),
            "{err}"
        );
        let err = select(&products(), "alpine", "3.20", "amd64").unwrap_err();
        assert!(err.contains("alpine:3.20:amd64:default"), "{err}");
    }

    #[test]
    fn items_pointing_off_the_server_or_unverifiable_are_refused() {
        for (path, sha) in [
            ("/etc/passwd", "a".repeat(64)),
            ("images/../../x", "a".repeat(64)),
            ("https://evil.example/root.tar.xz", "a".repeat(64)),
            ("images/x/root.tar.xz", "abc".into()),
        ] {
            let text = PRODUCTS.replace(
                "images/debian/bookworm/amd64/default/20261126_05:24/rootfs.tar.xz",
                path,
            );
            let text = if sha.len() == 64 {
                text
            } else {
                text.replace(&"b".repeat(64), &sha)
            };
            let p: Products = serde_json::from_str(&text).unwrap();
            let err = select(&p, "debian", "bookworm", "amd64").unwrap_err();
            assert!(
                err.contains("outside the server") || err.contains("no valid sha256"),
                "{path}: {err}"
            );
        }
    }

    #[test]
    fn specs() {
        assert_eq!(
            parse_spec("debian/bookworm").unwrap(),
            ("debian", "bookworm")
        );
        assert_eq!(parse_spec("ubuntu/24.04").unwrap(), ("ubuntu", "24.04"));
        for bad in [
            "debian",
            "debian/",
            "/x",
            "debian/book/worm",
            "de bian/x",
            "../x",
        ] {
            assert!(parse_spec(bad).is_err(), "{bad}");
        }
    }
}
