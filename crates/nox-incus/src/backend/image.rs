//! An `[images]` source as an Incus image on the remote.
//!
//! - `images:DIST/RELEASE` is Incus's own simplestreams remote (the LXC image server), which
//!   the remote pulls from, verifying it against the server's products file as Incus does.
//! - Any other source (a rootfs tarball for containers, a qcow2 for VMs) is fetched and
//!   verified by nox as for a local instance, then imported into the remote **once**, under
//!   the alias `nox-ALGO-HEX` of its checksum, with the metadata Incus needs. Later creates
//!   find the alias and upload nothing.

use std::collections::BTreeMap;

use nox_core::config::ImageSource;
use nox_core::{fetch, BackendKind, Error, Progress, Result};

use super::{cache_dir, err};
use crate::api::{ImageMetadata, InstanceSource};
use crate::{Client, ImageImport};

/// The LXC image server, which Incus calls `images:`.
pub const IMAGE_SERVER: &str = "https://images.linuxcontainers.org";

/// Fixed, so the same file always gives the same metadata, so the same fingerprint.
const CREATION_DATE: i64 = 1_700_000_000;

/// Incus's architecture name for this host's (the remote is assumed to match it).
fn incus_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "x86_64",
        "aarch64" => "aarch64",
        other => other,
    }
}

/// The image `source` names, on the remote; importing it first if it is not there.
pub fn ensure(
    client: &Client,
    remote: &str,
    source: &ImageSource,
    kind: BackendKind,
    progress: &dyn Progress,
) -> Result<InstanceSource> {
    if let Some(alias) = source.url.strip_prefix("images:") {
        return Ok(InstanceSource::simplestreams(IMAGE_SERVER, alias));
    }
    let sum = fetch::expected_checksum(source)?;
    let alias = format!("nox-{}", fetch::cache_key(&sum, ""));
    let found = client
        .image_alias(&alias)
        .map_err(|e| err(remote, "looking up the image", e))?;
    if found.is_some() {
        tracing::info!(%remote, %alias, "image already on the remote");
        return Ok(InstanceSource::image_alias(&alias));
    }
    let ext = match kind {
        BackendKind::Lxc => ".tar.xz",
        BackendKind::Vm => ".qcow2",
    };
    // One fetch and import per image at a time on this host: creates at once wait here, then
    // find the alias the first one made.
    let cache = cache_dir();
    std::fs::create_dir_all(&cache)
        .map_err(|e| Error::io(format!("creating {}", cache.display()), e))?;
    let _lock = nox_core::lock::lock(&cache.join(".lock"))?;
    if client
        .image_alias(&alias)
        .map_err(|e| err(remote, "looking up the image", e))?
        .is_some()
    {
        return Ok(InstanceSource::image_alias(&alias));
    }
    let (file, _) = fetch::fetch_verified(source, &cache, ext, progress)?;
    let dir = tempfile::tempdir().map_err(|e| Error::io("creating a temp dir", e))?;
    let meta = dir.path().join("metadata.tar");
    std::fs::write(
        &meta,
        crate::metadata_tarball(&ImageMetadata {
            architecture: incus_arch().into(),
            creation_date: CREATION_DATE,
            properties: BTreeMap::from([
                ("description".into(), format!("nox image {}", source.url)),
                ("nox.checksum".into(), sum.to_string()),
            ]),
        }),
    )
    .map_err(|e| Error::io("writing the image metadata", e))?;
    let fingerprint = crate::split_image_fingerprint(&meta, &file)
        .map_err(|e| err(remote, "reading the image", e))?;
    tracing::info!(%remote, %fingerprint, "importing the image");
    progress.step(&format!(
        "importing the image into {remote} (once per image)"
    ));
    let imported = match client
        .find_image(&fingerprint)
        .map_err(|e| err(remote, "looking up the image", e))?
    {
        Some(_) => Ok(()),
        None => client
            .import_image(
                &meta,
                &file,
                &ImageImport {
                    aliases: vec![],
                    properties: vec![],
                    public: false,
                    virtual_machine: kind == BackendKind::Vm,
                },
            )
            .map(|_| ()),
    };
    progress.done();
    // Another create may have imported it meanwhile: what counts is that it is there now.
    if let Err(e) = imported {
        if client.find_image(&fingerprint).ok().flatten().is_none() {
            return Err(err(remote, "importing the image", e));
        }
    }
    if let Err(e) = client.create_image_alias(&alias, &fingerprint, &format!("nox: {}", source.url))
    {
        if client.image_alias(&alias).ok().flatten().is_none() {
            return Err(err(remote, "naming the image", e));
        }
    }
    Ok(InstanceSource::image_alias(&alias))
}
