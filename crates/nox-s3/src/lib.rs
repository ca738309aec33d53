//! nox's S3 remote for backups: any S3-compatible endpoint (AWS, MinIO, Ceph, moto...),
//! requests signed with AWS Signature V4 by the `rust-s3` crate, files streamed in 8 MiB
//! multipart chunks both ways, never read whole into memory.
//!
//! Layout: `PREFIX/INSTANCE/ID/FILE`, the manifest uploaded last, so a backup is listed only
//! once every file is there. Credentials come from `AWS_ACCESS_KEY_ID` and
//! `AWS_SECRET_ACCESS_KEY`, or from `[s3] credentials_file`, which must be readable by its
//! owner only; they are never printed, logged, or written anywhere.
//!
//! A connection cut mid-transfer is retried (bounded, with backoff: `retry.rs`), per part
//! for large uploads (`upload.rs`), per object for downloads. A backup counts as in the
//! bucket only when its manifest is there and every object it lists is there at its size.
//!
//! - `lib.rs`: [`Secret`] (credentials) and [`Remote`] (the bucket: check, list, upload,
//!   download); nox-ops reaches it through its `RemoteStore` trait;
//! - `upload.rs`: one file into one object, multipart, part by part;
//! - `retry.rs`: which failures are tried again, how often, how long apart;
//! - `error.rs`: the crate's error, keeping rust-s3's as its cause.

mod retry;
mod upload;

pub mod error;

use std::fmt;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use nox_core::backup::crypt::{self, Identity};
use nox_core::backup::{LocalBackup, Manifest, Store, MANIFEST};
use nox_core::config::S3Config;
use nox_core::{Error, Progress};
use s3::creds::Credentials;
use s3::{Bucket, Region};
use serde::Deserialize;
use zeroize::Zeroizing;

pub const ENV_ACCESS_KEY: &str = "AWS_ACCESS_KEY_ID";
pub const ENV_SECRET_KEY: &str = "AWS_SECRET_ACCESS_KEY";

/// An access key pair. `Debug` shows the key id only; the secret key is wiped from memory
/// when dropped.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Secret {
    pub access_key_id: String,
    secret_access_key: Zeroizing<String>,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secret")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

impl Secret {
    /// From the environment if both variables are set, else from `file`.
    pub fn load(file: &Path) -> Result<Secret, Error> {
        // The environment block keeps its own copy of the variable: nox cannot wipe that.
        let env = |k: &str| {
            std::env::var(k)
                .ok()
                .map(Zeroizing::new)
                .filter(|v| !v.is_empty())
        };
        if let (Some(id), Some(secret)) = (env(ENV_ACCESS_KEY), env(ENV_SECRET_KEY)) {
            return Ok(Secret {
                access_key_id: id.to_string(),
                secret_access_key: secret,
            });
        }
        Self::from_file(file)
    }

    /// Reads `access_key_id` and `secret_access_key` (TOML) from `file`, refusing a file that
    /// anyone but its owner can read.
    pub fn from_file(file: &Path) -> Result<Secret, Error> {
        let meta = std::fs::metadata(file).map_err(|e| Error::Failed {
            message: format!(
                "no S3 credentials: {ENV_ACCESS_KEY}/{ENV_SECRET_KEY} are not set and {} cannot be read ({e})",
                file.display()
            ),
            hint: Some(format!(
                "set both variables, or write access_key_id and secret_access_key into {} with mode 0600",
                file.display()
            )),
        })?;
        let mode = meta.mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(Error::Refused {
                message: format!(
                    "S3 credentials file {} is readable by others (mode {mode:04o})",
                    file.display()
                ),
                hint: format!("`chmod 600 {}`", file.display()),
            });
        }
        // The file's text is wiped once parsed; the TOML parser's own scratch copies of a
        // value (inside the library) are not ours to wipe.
        let text = std::fs::read_to_string(file)
            .map(Zeroizing::new)
            .map_err(|e| Error::io(format!("reading {}", file.display()), e))?;
        // The parser's message could quote the line, secret included: say where, not what.
        toml::from_str::<Secret>(&text).map_err(|e| Error::Refused {
            message: format!(
                "S3 credentials file {} is not valid{}",
                file.display(),
                e.span()
                    .map(|s| format!(
                        " (line {})",
                        text[..s.start.min(text.len())].matches('\n').count() + 1
                    ))
                    .unwrap_or_default()
            ),
            hint: "it holds two keys: access_key_id = \"...\" and secret_access_key = \"...\""
                .into(),
        })
    }
}

/// The configured bucket.
pub struct Remote {
    bucket: Box<Bucket>,
    prefix: String,
    /// For messages: `s3://BUCKET/PREFIX` at `ENDPOINT`.
    pub label: String,
}

/// By hand: the bucket holds the credentials, which must never reach a log.
impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("label", &self.label)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// One backup in the bucket.
#[derive(Debug, Clone)]
pub struct RemoteBackup {
    pub manifest: Manifest,
}

impl Remote {
    /// Whether `[s3]` names a bucket at all.
    pub fn configured(config: &S3Config) -> bool {
        !config.bucket.is_empty()
    }

    pub fn new(config: &S3Config) -> Result<Remote, Error> {
        if !Self::configured(config) {
            return Err(Error::Refused {
                message: "no S3 bucket is configured".into(),
                hint: "set [s3] bucket (and endpoint for a non-AWS server) in nox.toml".into(),
            });
        }
        let secret = Secret::load(&config.credentials_file)?;
        // Every request is retried by `retry.rs`, the same way, with each retry said.
        s3::set_retries(0);
        let region = if config.endpoint.is_empty() {
            config.region.parse::<Region>().map_err(|e| {
                Error::Usage(format!("invalid [s3] region {:?}: {e}", config.region))
            })?
        } else {
            if !(config.endpoint.starts_with("https://") || config.endpoint.starts_with("http://"))
            {
                return Err(Error::Usage(format!(
                    "invalid [s3] endpoint {:?}: give a URL such as https://s3.example.org",
                    config.endpoint
                )));
            }
            Region::Custom {
                region: config.region.clone(),
                endpoint: config.endpoint.trim_end_matches('/').to_string(),
            }
        };
        // rust-s3 keeps its own plain copy of both keys in the bucket for signing, for as
        // long as this Remote lives (one command); nox's copy is wiped when `secret` drops.
        let creds = Credentials::new(
            Some(&secret.access_key_id),
            Some(&secret.secret_access_key),
            None,
            None,
            None,
        )
        .map_err(error::S3Error::Credentials)?;
        let mut bucket = Bucket::new(&config.bucket, region, creds).map_err(s3_error)?;
        if config.path_style {
            bucket = bucket.with_path_style();
        }
        let prefix = config.prefix.trim_matches('/').to_string();
        let label = format!(
            "s3://{}/{}{}",
            config.bucket,
            prefix,
            if config.endpoint.is_empty() {
                String::new()
            } else {
                format!(" at {}", config.endpoint)
            }
        );
        Ok(Remote {
            bucket,
            prefix,
            label,
        })
    }

    fn key(&self, instance: &str, id: &str, file: &str) -> String {
        if self.prefix.is_empty() {
            format!("{instance}/{id}/{file}")
        } else {
            format!("{}/{instance}/{id}/{file}", self.prefix)
        }
    }

    /// Uploads a backup (in clear, or sealed by `crypt::seal`): data files first, the
    /// manifest last, so the backup is listed only once every file is in.
    pub fn upload(&self, b: &LocalBackup, progress: &dyn Progress) -> Result<(), Error> {
        let m = &b.manifest;
        for f in m.files.iter().map(|f| f.name.as_str()).chain([MANIFEST]) {
            progress.step(&format!("uploading {}/{}/{f}", m.instance, m.id));
            self.put_file(&self.key(&m.instance, &m.id, f), &b.file(f), f, progress)?;
            progress.done();
        }
        Ok(())
    }

    /// One signed request, so bad credentials or a missing bucket are found before a backup
    /// is made rather than after.
    pub fn check(&self) -> Result<(), Error> {
        self.retried("checking access", |_| {
            self.bucket
                .list_page(self.prefix.clone(), None, None, None, Some(1))
                .map(|_| ())
        })
    }

    /// Every complete backup in the bucket (its manifest is there, and every object the
    /// manifest lists, at its size), oldest first per instance. A backup with a manifest but
    /// a missing or short object (an upload cut off, an object deleted by hand or by a
    /// lifecycle rule) is not listed, and said once on stderr.
    pub fn list(&self) -> Result<Vec<RemoteBackup>, Error> {
        let prefix = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        // Listed by the bare prefix and filtered here: a '/' in the listing's prefix parameter
        // is signed differently by some servers (moto), and the bare prefix has none.
        let pages = self.retried("listing backups", |_| {
            self.bucket.list(self.prefix.clone(), None)
        })?;
        let sizes: std::collections::HashMap<&str, u64> = pages
            .iter()
            .flat_map(|p| p.contents.iter())
            .map(|o| (o.key.as_str(), o.size))
            .collect();
        let mut out = Vec::new();
        for key in pages
            .iter()
            .flat_map(|p| p.contents.iter())
            .map(|o| o.key.as_str())
        {
            let Some(rest) = key.strip_prefix(&prefix) else {
                continue;
            };
            let parts: Vec<&str> = rest.split('/').collect();
            let [instance, id, MANIFEST] = parts[..] else {
                continue;
            };
            if !nox_core::backup::is_id(id) || instance.parse::<nox_core::InstanceRef>().is_err() {
                continue;
            }
            let data = self.retried("reading a manifest", |_| self.bucket.get_object(key))?;
            match serde_json::from_slice::<Manifest>(data.as_slice()) {
                Ok(m) if m.instance == instance && m.id == id => {
                    let missing = m.files.iter().find(|f| {
                        sizes.get(self.key(instance, id, &f.name).as_str()) != Some(&f.size)
                    });
                    match missing {
                        None => out.push(RemoteBackup { manifest: m }),
                        Some(f) => tracing::warn!(
                            "{instance}/{id} in {} is incomplete ({} is missing or short): not listed",
                            self.label,
                            f.name
                        ),
                    }
                }
                _ => continue,
            }
        }
        out.sort_by(|a, b| {
            (&a.manifest.instance, &a.manifest.id).cmp(&(&b.manifest.instance, &b.manifest.id))
        });
        Ok(out)
    }

    /// Downloads backup `instance/id` into the local store (a complete backup appears there
    /// only when every file is in), and returns it. An encrypted backup is checked and
    /// decrypted with `identity` on the way in: the local store holds backups in clear. The
    /// checksums in clear are verified by the restore.
    pub fn download(
        &self,
        store: &Store,
        manifest: &Manifest,
        identity: Option<&Identity>,
        progress: &dyn Progress,
    ) -> Result<LocalBackup, Error> {
        let (instance, id) = (manifest.instance.as_str(), manifest.id.as_str());
        let _lock = store.lock(instance)?;
        if let Ok(b) = store.find(&format!("{instance}/{id}").parse()?) {
            return Ok(b);
        }
        let staging = store.stage(instance, id)?;
        for f in &manifest.files {
            if f.name.contains('/') || f.name.starts_with('.') {
                return Err(Error::failed(
                    format!(
                        "backup {instance}/{id} in S3 lists a file outside it: {:?}",
                        f.name
                    ),
                    "the manifest was tampered with; do not restore this backup",
                ));
            }
            let path = staging.dir.join(&f.name);
            let mut file = nox_core::backup::private_file(&path)?;
            progress.step(&format!("downloading {instance}/{id}/{}", f.name));
            self.get_to(
                &self.key(instance, id, &f.name),
                &mut file,
                f.size,
                progress,
            )?;
            file.sync_all()
                .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
            progress.done();
        }
        let clear = match (&manifest.encryption, identity) {
            (None, _) => manifest.clone(),
            (Some(_), Some(identity)) => crypt::unseal(&staging.dir, manifest, identity, progress)?,
            (Some(e), None) => {
                return Err(Error::Refused {
                    message: format!(
                        "backup {instance}/{id} is encrypted to {}",
                        e.recipients.join(", ")
                    ),
                    hint: "set [backup] identity_file to the age secret key of one of them".into(),
                })
            }
        };
        staging.commit(&clear)
    }

    /// Streams one object into `out`, reporting progress from this thread while the
    /// download runs on another (the client wants a `Send` writer).
    fn get_to(
        &self,
        key: &str,
        out: &mut std::fs::File,
        size: u64,
        progress: &dyn Progress,
    ) -> Result<(), Error> {
        let done = AtomicU64::new(0);
        let finished = AtomicBool::new(false);
        // Said through tracing (stderr): the progress bar stays on this thread.
        let retrying = |n: u32, e: &s3::error::S3Error| {
            tracing::warn!(
                "downloading {key}: {} (try {n} of {}), trying again",
                upload::short(e),
                retry::POLICY.attempts
            )
        };
        let result = std::thread::scope(|s| {
            let h = s.spawn(|| {
                // Per object: a cut download starts the file over.
                let r = retry::retry(retry::POLICY, &retrying, |_| {
                    out.set_len(0)?;
                    std::io::Seek::rewind(&mut *out)?;
                    done.store(0, Ordering::Relaxed);
                    let mut w = CountingWriter {
                        inner: &mut *out,
                        done: &done,
                    };
                    self.bucket.get_object_to_writer(key, &mut w)
                });
                finished.store(true, Ordering::SeqCst);
                r
            });
            while !finished.load(Ordering::SeqCst) {
                progress.bytes(done.load(Ordering::Relaxed), Some(size));
                std::thread::sleep(Duration::from_millis(100));
            }
            h.join().expect("the download thread does not panic")
        });
        progress.bytes(done.load(Ordering::Relaxed), Some(size));
        result.map_err(|e| self.error("downloading", e))?;
        Ok(())
    }

    /// `f`, retried where it failed on the way; a final failure as the user should read it.
    fn retried<T>(
        &self,
        what: &str,
        f: impl FnMut(u32) -> Result<T, s3::error::S3Error>,
    ) -> Result<T, Error> {
        let retrying = |n: u32, e: &s3::error::S3Error| {
            tracing::warn!(
                "{what} on {}: {} (try {n} of {}), trying again",
                self.label,
                upload::short(e),
                retry::POLICY.attempts
            )
        };
        retry::retry(retry::POLICY, &retrying, f).map_err(|e| self.error(what, e))
    }

    /// An S3 failure as the user should read it: what failed, the server's code, what to do.
    fn error(&self, what: &str, e: s3::error::S3Error) -> Error {
        let (status, body) = match &e {
            s3::error::S3Error::HttpFailWithBody(status, body) => (Some(*status), body.clone()),
            _ => (None, String::new()),
        };
        let code = error_code(&body).unwrap_or_default();
        match (status, code.as_str()) {
            (Some(403), c)
                if c.is_empty()
                    || matches!(
                        c,
                        "SignatureDoesNotMatch" | "InvalidAccessKeyId" | "AccessDenied" | "InvalidClientTokenId"
                    ) =>
            {
                Error::failed(
                    format!(
                        "{what} on {}: the server refused the credentials (HTTP 403{})",
                        self.label,
                        if c.is_empty() { String::new() } else { format!(" {c}") }
                    ),
                    format!(
                        "check {ENV_ACCESS_KEY}/{ENV_SECRET_KEY} or the [s3] credentials_file, and that the key may use the bucket"
                    ),
                )
            }
            (Some(404), "NoSuchBucket") => Error::failed(
                format!("{what} on {}: the bucket does not exist", self.label),
                "create it, or fix [s3] bucket (and path_style for self-hosted servers)",
            ),
            (Some(s), c) => Error::failed(
                format!("{what} on {}: HTTP {s} {c}", self.label),
                "check [s3] endpoint, bucket and region",
            ),
            (None, _) => Error::failed(
                format!("{what} on {}: {e}", self.label),
                "check [s3] endpoint and that the server is reachable",
            ),
        }
    }
}

/// The `<Code>` of an S3 error document (`<Error><Code>AccessDenied</Code>...`), read with an
/// XML reader.
fn error_code(body: &str) -> Option<String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(body);
    let mut path: Vec<Vec<u8>> = Vec::new();
    loop {
        match reader.read_event().ok()? {
            Event::Start(e) => path.push(e.local_name().as_ref().to_vec()),
            Event::End(_) => {
                path.pop();
            }
            Event::Text(t) if path == [b"Error".to_vec(), b"Code".to_vec()] => {
                return Some(t.unescape().ok()?.trim().to_string());
            }
            Event::Eof => return None,
            _ => {}
        }
    }
}

/// s3 errors outside a request (bad region, bad URL).
fn s3_error(e: s3::error::S3Error) -> Error {
    Error::Usage(format!("invalid [s3] settings: {e}"))
}

struct CountingWriter<'a, W> {
    inner: W,
    done: &'a AtomicU64,
}

impl<W: Write> Write for CountingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if nox_core::interrupt::requested() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::Interrupted,
                "interrupted",
            ));
        }
        let n = self.inner.write(buf)?;
        self.done.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_from_s3_error_documents() {
        let doc = r#"<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>SignatureDoesNotMatch</Code><Message>The <Code> you gave</Message></Error>"#;
        assert_eq!(error_code(doc).as_deref(), Some("SignatureDoesNotMatch"));
        assert_eq!(
            error_code("<Error><Message>no code</Message></Error>"),
            None
        );
        assert_eq!(error_code("not xml at all"), None);
        assert_eq!(error_code(""), None);
    }
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn credentials_file_must_be_private_and_is_never_echoed() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("creds.toml");
        std::fs::write(
            &f,
            "access_key_id = \"AKIDEXAMPLE\"\nsecret_access_key = \"wJalrXUtnFEMI-SECRET\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Secret::from_file(&f).unwrap_err();
        assert!(e.is_bad_input());
        assert!(e.to_string().contains("readable by others"), "{e}");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        let s = Secret::from_file(&f).unwrap();
        assert_eq!(s.access_key_id, "AKIDEXAMPLE");
        assert!(!format!("{s:?}").contains("SECRET"));
        // A broken file: the message says where, never the line's text.
        std::fs::write(&f, "secret_access_key = wJalrXUtnFEMI-SECRET\n").unwrap();
        let e = Secret::from_file(&f).unwrap_err();
        assert!(!e.to_string().contains("SECRET"), "{e}");
        assert!(!e.hint().unwrap_or_default().contains("SECRET"));
    }
}
