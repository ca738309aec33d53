//! Images: list, aliases, delete, and import of a split image (a metadata tarball and a rootfs
//! tarball) by upload, its fingerprint checked by the server.
//!
//! A split image's fingerprint is SHA-256 over the metadata tarball followed by the rootfs
//! tarball (Incus cmd/incusd/images.go, `getImgPostInfo`): computed here and sent as
//! `X-Incus-fingerprint`, so a corrupted upload is refused rather than stored under another
//! name. A bare rootfs (like nox's test image) needs a metadata tarball: [`metadata_tarball`].

use std::fs::File;
use std::io::{Cursor, Read};
use std::path::Path;

use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderName, Method};
use sha2::{Digest, Sha256};

use crate::api::{Image, ImageAliasEntry, ImageAliasesPost, ImageMetadata};
use crate::client::{enc, Client};
use crate::error::{Error, Result};
use crate::transport::{reader_body, Call, Progress};

/// What to record with an imported image.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageImport {
    /// Aliases to create for it.
    pub aliases: Vec<String>,
    /// Extra properties (`incus image list` shows `description`).
    pub properties: Vec<(String, String)>,
    pub public: bool,
    /// The rootfs part is a VM's disk (qcow2), sent as `rootfs.img` as Incus expects.
    pub virtual_machine: bool,
}

impl Client {
    /// `GET /1.0/images?recursion=1`.
    pub fn images(&self) -> Result<Vec<Image>> {
        self.get(self.scoped("/1.0/images?recursion=1"))
    }

    /// `GET /1.0/images/FINGERPRINT` (a unique prefix will do).
    pub fn image(&self, fingerprint: &str) -> Result<Image> {
        self.get(self.scoped(&format!("/1.0/images/{}", enc(fingerprint))))
    }

    /// The image with this fingerprint, if the server has it.
    pub fn find_image(&self, fingerprint: &str) -> Result<Option<Image>> {
        match self.image(fingerprint) {
            Ok(image) => Ok(Some(image)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /1.0/images/aliases/NAME`, or `None` when there is no such alias.
    pub fn image_alias(&self, name: &str) -> Result<Option<ImageAliasEntry>> {
        match self.get(self.scoped(&format!("/1.0/images/aliases/{}", enc(name)))) {
            Ok(alias) => Ok(Some(alias)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST /1.0/images/aliases`: `name` points at the image `fingerprint`.
    pub fn create_image_alias(
        &self,
        name: &str,
        fingerprint: &str,
        description: &str,
    ) -> Result<()> {
        let body = ImageAliasesPost {
            name: name.into(),
            description: description.into(),
            target: fingerprint.into(),
            kind: String::new(),
        };
        self.call(Call::new(Method::POST, self.scoped("/1.0/images/aliases")).json(&body))?;
        Ok(())
    }

    /// `DELETE /1.0/images/aliases/NAME`.
    pub fn delete_image_alias(&self, name: &str) -> Result<()> {
        let path = self.scoped(&format!("/1.0/images/aliases/{}", enc(name)));
        self.call(Call::new(Method::DELETE, path))?;
        Ok(())
    }

    /// `DELETE /1.0/images/FINGERPRINT`, waiting until it is gone.
    pub fn delete_image(&self, fingerprint: &str) -> Result<()> {
        let path = self.scoped(&format!("/1.0/images/{}", enc(fingerprint)));
        self.call_and_wait(Call::new(Method::DELETE, path))?;
        Ok(())
    }

    /// Uploads a split image (metadata tarball + rootfs tarball) and waits until Incus has
    /// stored it. Returns its fingerprint. Fails if Incus already has it: look first with
    /// [`Client::find_image`] and [`split_image_fingerprint`].
    pub fn import_image(
        &self,
        metadata: &Path,
        rootfs: &Path,
        opts: &ImageImport,
    ) -> Result<String> {
        let fingerprint = split_image_fingerprint(metadata, rootfs)?;
        let boundary = format!("nox-incus-{}", &fingerprint[..32]);
        let part = |name: &str, file: &Path| {
            let filename = file
                .file_name()
                .map(|f| f.to_string_lossy().replace(['"', '\r', '\n'], "_"))
                .unwrap_or_else(|| name.to_string());
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
        };
        let head = part("metadata", metadata);
        let rootfs_field = if opts.virtual_machine {
            "rootfs.img"
        } else {
            "rootfs"
        };
        let middle = format!("\r\n{}", part(rootfs_field, rootfs));
        let tail = format!("\r\n--{boundary}--\r\n");
        let open =
            |p: &Path| File::open(p).map_err(|e| Error::io(format!("opening {}", p.display()), e));
        let (meta_file, rootfs_file) = (open(metadata)?, open(rootfs)?);
        let size = |f: &File, p: &Path| {
            f.metadata()
                .map(|m| m.len())
                .map_err(|e| Error::io(format!("reading {}", p.display()), e))
        };
        let length = head.len() as u64
            + size(&meta_file, metadata)?
            + middle.len() as u64
            + size(&rootfs_file, rootfs)?
            + tail.len() as u64;
        let reader = Cursor::new(head.into_bytes())
            .chain(meta_file)
            .chain(Cursor::new(middle.into_bytes()))
            .chain(rootfs_file)
            .chain(Cursor::new(tail.into_bytes()));

        let progress = Progress::new();
        let mut call = Call::new(Method::POST, self.scoped("/1.0/images"))
            .header(
                CONTENT_TYPE,
                format!("multipart/form-data; boundary={boundary}"),
            )
            .header(CONTENT_LENGTH, length.to_string())
            .header(
                HeaderName::from_static("x-incus-fingerprint"),
                fingerprint.clone(),
            );
        if opts.public {
            call = call.header(HeaderName::from_static("x-incus-public"), "true");
        }
        if !opts.aliases.is_empty() {
            let aliases: Vec<String> = opts
                .aliases
                .iter()
                .map(|a| format!("alias={}", enc(a)))
                .collect();
            call = call.header(
                HeaderName::from_static("x-incus-aliases"),
                aliases.join("&"),
            );
        }
        if !opts.properties.is_empty() {
            let props: Vec<String> = opts
                .properties
                .iter()
                .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
                .collect();
            call = call.header(
                HeaderName::from_static("x-incus-properties"),
                props.join("&"),
            );
        }
        call.body = reader_body(Box::new(reader), progress.clone());
        let idle = self.options.request_timeout;
        let op = self.block_on(async {
            let (resp, method, path) = self.http.send_upload(call, progress, idle).await?;
            let (status, body) = self.http.read_body(resp, idle).await?;
            let env = crate::transport::parse_envelope(status, &body, &method, &path)?;
            self.finish_async(env).await
        })?;
        let stored = op
            .as_ref()
            .and_then(|op| op.metadata_str("fingerprint"))
            .unwrap_or(&fingerprint);
        if stored != fingerprint {
            return Err(Error::protocol(
                "an image import",
                format!("Incus stored fingerprint {stored}, expected {fingerprint}"),
            ));
        }
        Ok(fingerprint)
    }
}

/// The fingerprint Incus gives a split image: SHA-256 over the metadata tarball, then the
/// rootfs tarball.
pub fn split_image_fingerprint(metadata: &Path, rootfs: &Path) -> Result<String> {
    let mut h = Sha256::new();
    for p in [metadata, rootfs] {
        let mut f = File::open(p).map_err(|e| Error::io(format!("opening {}", p.display()), e))?;
        std::io::copy(&mut f, &mut h)
            .map_err(|e| Error::io(format!("reading {}", p.display()), e))?;
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// `metadata.yaml`, as Incus reads it (YAML; string values are written JSON-quoted, which YAML
/// reads as the same strings).
pub fn metadata_yaml(meta: &ImageMetadata) -> String {
    let q = |s: &str| serde_json::to_string(s).expect("strings serialize");
    let mut y = format!(
        "architecture: {}\ncreation_date: {}\n",
        q(&meta.architecture),
        meta.creation_date
    );
    if meta.properties.is_empty() {
        y.push_str("properties: {}\n");
    } else {
        y.push_str("properties:\n");
        for (k, v) in &meta.properties {
            y.push_str(&format!("  {}: {}\n", q(k), q(v)));
        }
    }
    y
}

/// A metadata tarball (uncompressed tar holding `metadata.yaml` only) for a bare rootfs
/// tarball. Deterministic: the same metadata gives the same bytes, so the same fingerprint.
pub fn metadata_tarball(meta: &ImageMetadata) -> Vec<u8> {
    let yaml = metadata_yaml(meta);
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(yaml.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(meta.creation_date.max(0) as u64);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, "metadata.yaml", yaml.as_bytes())
        .expect("writing a tar into memory");
    tar.into_inner().expect("writing a tar into memory")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn meta() -> ImageMetadata {
        ImageMetadata {
            architecture: "x86_64".into(),
            creation_date: 1_764_000_000,
            properties: BTreeMap::from([
                (
                    "description".into(),
                    "nox test \"minimal\": Debian 12".into(),
                ),
                ("os".into(), "debian".into()),
                ("release".into(), "bookworm".into()),
            ]),
        }
    }

    #[test]
    fn metadata_yaml_is_pinned() {
        crate::golden::assert_golden("metadata.yaml", &metadata_yaml(&meta()));
    }

    #[test]
    fn metadata_tarball_holds_metadata_yaml_and_is_deterministic() {
        let a = metadata_tarball(&meta());
        assert_eq!(a, metadata_tarball(&meta()));
        let mut archive = tar::Archive::new(Cursor::new(a));
        let mut entries = archive.entries().unwrap();
        let mut entry = entries.next().unwrap().unwrap();
        assert_eq!(entry.path().unwrap().to_str(), Some("metadata.yaml"));
        let mut text = String::new();
        entry.read_to_string(&mut text).unwrap();
        assert_eq!(text, metadata_yaml(&meta()));
        assert!(entries.next().is_none());
    }

    #[test]
    fn split_fingerprint_is_sha256_of_both_files_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (m, r) = (dir.path().join("m"), dir.path().join("r"));
        std::fs::write(&m, b"abc").unwrap();
        std::fs::write(&r, b"def").unwrap();
        // sha256("abcdef")
        assert_eq!(
            split_image_fingerprint(&m, &r).unwrap(),
            "bef57ec7f53a6d40beb640a780a639c83bc29ac8a9816f1fc6c5c6dcd93c4721"
        );
    }
}
