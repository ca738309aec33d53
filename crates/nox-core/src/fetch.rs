//! Verified image downloads into a cache keyed by checksum, shared by both backends.
//!
//! A source is `https://…` / `http://…` (downloaded with resume), `file://…` or a plain path
//! (copied, so a later change to the original cannot alter an instance's base). The expected
//! checksum is either given or read from a checksum file published beside the image
//! (Debian's `SHA512SUMS`). The file is hashed while it is written; on a mismatch the bad copy
//! is deleted. A cached file appears under its final name only once verified (write, fsync,
//! rename), so a cache hit needs no re-hashing.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256, Sha512};

use crate::config::{Checksum, ChecksumAlgorithm, ImageSource};
use crate::error::{Error, Result};
use crate::progress::Progress;

/// The host's Debian architecture name, for `{arch}` in image URLs.
pub fn debian_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "riscv64" => "riscv64",
        "powerpc64" => "ppc64el",
        "s390x" => "s390x",
        other => other,
    }
}

/// The source URL with `{arch}` expanded.
pub fn expand_url(url: &str) -> String {
    url.replace("{arch}", debian_arch())
}

/// The cache file name for a checksum: `sha256-HEX` / `sha512-HEX`, plus `ext`.
pub fn cache_key(sum: &Checksum, ext: &str) -> String {
    let algo = match sum.algorithm {
        ChecksumAlgorithm::Sha256 => "sha256",
        ChecksumAlgorithm::Sha512 => "sha512",
    };
    format!("{algo}-{}{ext}", sum.hex)
}

enum Hasher {
    Sha256(Sha256),
    Sha512(Sha512),
}

impl Hasher {
    fn new(a: ChecksumAlgorithm) -> Self {
        match a {
            ChecksumAlgorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            ChecksumAlgorithm::Sha512 => Hasher::Sha512(Sha512::new()),
        }
    }
    fn update(&mut self, b: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(b),
            Hasher::Sha512(h) => h.update(b),
        }
    }
    fn hex(self) -> String {
        let bytes = match self {
            Hasher::Sha256(h) => h.finalize().to_vec(),
            Hasher::Sha512(h) => h.finalize().to_vec(),
        };
        hex::encode(bytes)
    }
}

fn is_remote(url: &str) -> bool {
    url.starts_with("https://") || url.starts_with("http://")
}

fn local_path(url: &str) -> PathBuf {
    PathBuf::from(url.strip_prefix("file://").unwrap_or(url))
}

fn file_name_of(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

/// The checksum the source must match: given literally, or looked up by file name in the
/// published checksum file (`HEX  NAME` lines, as sha256sum/sha512sum write them).
pub fn expected_checksum(source: &ImageSource) -> Result<Checksum> {
    if let Some(sum) = &source.checksum {
        return Ok(sum.clone());
    }
    let Some(sums_url) = &source.checksum_url else {
        return Err(Error::Usage(format!(
            "image {} has no checksum: nox never uses an unverified image",
            source.url
        )));
    };
    let sums_url = expand_url(sums_url);
    let text = if is_remote(&sums_url) {
        http_get_string(&sums_url)?
    } else {
        fs::read_to_string(local_path(&sums_url))
            .map_err(|e| Error::io(format!("reading checksum file {sums_url}"), e))?
    };
    let url = expand_url(&source.url);
    let want = file_name_of(&url);
    let algorithm = if sums_url.to_ascii_lowercase().contains("sha256") {
        ChecksumAlgorithm::Sha256
    } else {
        ChecksumAlgorithm::Sha512
    };
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        if let (Some(hex), Some(name)) = (parts.next(), parts.next()) {
            if name.trim_start_matches('*') == want {
                let prefix = match algorithm {
                    ChecksumAlgorithm::Sha256 => "sha256",
                    ChecksumAlgorithm::Sha512 => "sha512",
                };
                return Checksum::try_from(format!("{prefix}:{hex}")).map_err(Error::Usage);
            }
        }
    }
    Err(Error::failed(
        format!("{sums_url} lists no checksum for {want}"),
        "check the image's url and checksum_url in [images]",
    ))
}

fn http_get_string(url: &str) -> Result<String> {
    let resp = ureq::get(url).call().map_err(|e| {
        Error::failed(
            format!("cannot download {url}: {e}"),
            "check the network, or use a local image (url = a path)",
        )
    })?;
    resp.into_string()
        .map_err(|e| Error::io(format!("reading {url}"), e))
}

/// Fetches `source` into `cache_dir/KEY EXT` unless a verified copy is already there; returns
/// the cached path and its checksum.
pub fn fetch_verified(
    source: &ImageSource,
    cache_dir: &Path,
    ext: &str,
    progress: &dyn Progress,
) -> Result<(PathBuf, Checksum)> {
    let sum = expected_checksum(source)?;
    let dest = cache_dir.join(cache_key(&sum, ext));
    if dest.is_file() {
        tracing::info!(url = %source.url, path = %dest.display(), "image cache hit");
        return Ok((dest, sum));
    }
    tracing::info!(url = %source.url, "image not cached: fetching");
    fs::create_dir_all(cache_dir)
        .map_err(|e| Error::io(format!("creating {}", cache_dir.display()), e))?;
    let part = dest.with_extension("part");
    let url = expand_url(&source.url);
    progress.step(&format!("fetching image {url}"));
    let got = if is_remote(&url) {
        download(&url, &part, sum.algorithm, progress)
    } else {
        copy_local(&local_path(&url), &part, sum.algorithm, progress)
    };
    progress.done();
    let got = got.inspect_err(|_| {
        // A partial download is kept for resume; a failed local copy is not worth keeping.
        if !is_remote(&url) {
            let _ = fs::remove_file(&part);
        }
    })?;
    if got != sum.hex {
        let _ = fs::remove_file(&part);
        return Err(Error::failed(
            format!("checksum mismatch for {url}: expected {sum}, got {got}; the copy was deleted"),
            "the image or its checksum is wrong: check [images] in your config, then retry",
        ));
    }
    fs::rename(&part, &dest).map_err(|e| Error::io(format!("caching {}", dest.display()), e))?;
    tracing::info!(path = %dest.display(), "image verified and cached");
    Ok((dest, sum))
}

/// Maps ENOSPC to an error that says so.
pub fn io_or_disk_full(context: String, e: std::io::Error, dir: &Path) -> Error {
    if e.raw_os_error() == Some(28) {
        return Error::failed(
            format!("{context}: the disk holding {} is full", dir.display()),
            "free some space (`nox image rm` removes cached images) or point the storage dir elsewhere",
        );
    }
    Error::io(context, e)
}

fn copy_local(
    src: &Path,
    part: &Path,
    algo: ChecksumAlgorithm,
    progress: &dyn Progress,
) -> Result<String> {
    let mut input = File::open(src).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::failed(
                format!("image file {} does not exist", src.display()),
                "check the image's url in [images] (`nox config show`)",
            )
        } else {
            Error::io(format!("opening {}", src.display()), e)
        }
    })?;
    let total = input.metadata().ok().map(|m| m.len());
    let mut out =
        File::create(part).map_err(|e| Error::io(format!("creating {}", part.display()), e))?;
    let mut hasher = Hasher::new(algo);
    pump(
        &mut input,
        &mut out,
        &mut hasher,
        0,
        total,
        progress,
        part,
        None,
    )?;
    Ok(hasher.hex())
}

fn download(
    url: &str,
    part: &Path,
    algo: ChecksumAlgorithm,
    progress: &dyn Progress,
) -> Result<String> {
    let mut hasher = Hasher::new(algo);
    // Resume: hash what we already have, then ask only for the rest.
    let mut have = 0u64;
    if let Ok(mut existing) = File::open(part) {
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = existing
                .read(&mut buf)
                .map_err(|e| Error::io("reading a partial download", e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            have += n as u64;
        }
    }
    let mut req = ureq::get(url);
    if have > 0 {
        req = req.set("Range", &format!("bytes={have}-"));
    }
    let resp = match req.call() {
        // The partial file is already whole (or longer than the image): start over.
        Err(ureq::Error::Status(416, _)) if have > 0 => {
            let _ = fs::remove_file(part);
            return download(url, part, algo, progress);
        }
        other => other,
    };
    let resp = resp.map_err(|e| {
        Error::failed(
            format!("cannot download {url}: {e}"),
            "check the network and the image url; an interrupted download resumes on retry",
        )
    })?;
    let resumed = resp.status() == 206;
    if !resumed {
        // The server ignored the range (or we had nothing): start over.
        hasher = Hasher::new(algo);
        have = 0;
    }
    let total = resp
        .header("Content-Length")
        .and_then(|l| l.parse::<u64>().ok())
        .map(|l| l + have);
    let mut out = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(!resumed)
        .open(part)
        .map_err(|e| Error::io(format!("creating {}", part.display()), e))?;
    out.seek(SeekFrom::Start(have))
        .map_err(|e| Error::io("seeking the partial download", e))?;
    let mut reader = resp.into_reader();
    pump(
        &mut reader,
        &mut out,
        &mut hasher,
        have,
        total,
        progress,
        part,
        Some(url),
    )?;
    Ok(hasher.hex())
}

#[allow(clippy::too_many_arguments)]
fn pump(
    input: &mut dyn Read,
    out: &mut File,
    hasher: &mut Hasher,
    mut done: u64,
    total: Option<u64>,
    progress: &dyn Progress,
    part: &Path,
    remote: Option<&str>,
) -> Result<()> {
    let dir = part.parent().unwrap_or(Path::new("/"));
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = input.read(&mut buf).map_err(|e| match remote {
            // A cut connection leaves the partial file for the next attempt to resume.
            Some(url) => Error::failed(
                format!("downloading {url} stopped after {done} bytes: {e}"),
                "run the command again: the download resumes where it stopped",
            ),
            None => Error::io("reading the image", e),
        })?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(|e| io_or_disk_full(format!("writing {}", part.display()), e, dir))?;
        done += n as u64;
        progress.bytes(done, total);
        crate::interrupt::check()?;
    }
    out.sync_all()
        .map_err(|e| io_or_disk_full(format!("syncing {}", part.display()), e, dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Quiet;

    fn source(url: &str, checksum: Option<&str>, checksum_url: Option<&str>) -> ImageSource {
        ImageSource {
            url: url.into(),
            checksum: checksum.map(|c| Checksum::try_from(c.to_string()).unwrap()),
            checksum_url: checksum_url.map(String::from),
        }
    }

    #[test]
    fn local_file_is_cached_by_checksum_and_verified() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("img.qcow2");
        fs::write(&img, b"hello").unwrap();
        // sha256("hello")
        let good = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        let cache = dir.path().join("cache");
        let (p, sum) = fetch_verified(
            &source(img.to_str().unwrap(), Some(good), None),
            &cache,
            ".qcow2",
            &Quiet,
        )
        .unwrap();
        assert_eq!(sum.to_string(), good);
        assert_eq!(fs::read(&p).unwrap(), b"hello");
        assert_eq!(
            p.file_name().unwrap().to_str().unwrap(),
            format!("sha256-{}.qcow2", &good[7..])
        );

        let bad = format!("sha256:{}", "0".repeat(64));
        let err = fetch_verified(
            &source(&format!("file://{}", img.display()), Some(&bad), None),
            &cache,
            ".qcow2",
            &Quiet,
        )
        .unwrap_err();
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
        let leftovers: Vec<_> = fs::read_dir(&cache)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(
            leftovers.len(),
            1,
            "the bad copy must be deleted: {leftovers:?}"
        );
    }

    #[test]
    fn checksum_file_beside_the_image_is_used() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("debian-12-genericcloud-amd64.qcow2");
        fs::write(&img, b"hello").unwrap();
        let sums = dir.path().join("SHA512SUMS");
        fs::write(
            &sums,
            "9b71d224bd62f3785d96d46ad3ea3d73319bfbc2890caadae2dff72519673ca72323c3d99ba5c11d7c7acc6e14b8c5da0c4663475c2e5c3adef46f73bcdec043  debian-12-genericcloud-amd64.qcow2\n\
             00  other.qcow2\n",
        )
        .unwrap();
        let url = dir.path().join("debian-12-genericcloud-{arch}.qcow2");
        let s = source(url.to_str().unwrap(), None, Some(sums.to_str().unwrap()));
        if debian_arch() == "amd64" {
            let sum = expected_checksum(&s).unwrap();
            assert_eq!(sum.algorithm, ChecksumAlgorithm::Sha512);
            let (p, _) = fetch_verified(&s, &dir.path().join("c"), ".qcow2", &Quiet).unwrap();
            assert!(p.is_file());
        }
        let missing = source("/x/none.qcow2", None, Some(sums.to_str().unwrap()));
        assert!(expected_checksum(&missing)
            .unwrap_err()
            .to_string()
            .contains("lists no checksum"));
    }

    /// A one-file HTTP server on 127.0.0.1 that answers Range requests with 206 when
    /// `ranges`, and records every request's Range header.
    fn serve(
        body: Vec<u8>,
        sums: String,
        ranges: bool,
    ) -> (
        String,
        std::sync::Arc<std::sync::Mutex<Vec<Option<String>>>>,
    ) {
        use std::io::{BufRead, BufReader};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request = String::new();
                reader.read_line(&mut request).unwrap();
                let mut range = None;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if line.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                        range = Some(v.trim().trim_end_matches('-').to_string());
                    }
                }
                let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
                let data = if path.ends_with("SHA256SUMS") {
                    sums.clone().into_bytes()
                } else {
                    body.clone()
                };
                if !path.ends_with("SHA256SUMS") {
                    log.lock().unwrap().push(range.clone());
                }
                let mut out = stream;
                match range
                    .and_then(|r| r.parse::<usize>().ok())
                    .filter(|_| ranges)
                {
                    Some(from) => {
                        let rest = &data[from..];
                        write!(out, "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", rest.len()).unwrap();
                        out.write_all(rest).unwrap();
                    }
                    None => {
                        write!(
                            out,
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            data.len()
                        )
                        .unwrap();
                        out.write_all(&data).unwrap();
                    }
                }
            }
        });
        (base, seen)
    }

    fn sha256_hex(b: &[u8]) -> String {
        hex::encode(Sha256::digest(b))
    }

    #[test]
    fn http_download_resumes_from_a_partial_file() {
        let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let hex = sha256_hex(&body);
        for ranges in [true, false] {
            let (base, seen) = serve(body.clone(), format!("{hex}  img.qcow2\n"), ranges);
            let dir = tempfile::tempdir().unwrap();
            // An earlier, interrupted download left the first third.
            let sum = Checksum::try_from(format!("sha256:{hex}")).unwrap();
            let part = dir
                .path()
                .join(cache_key(&sum, ".qcow2"))
                .with_extension("part");
            fs::write(&part, &body[..100_000]).unwrap();
            let s = source(
                &format!("{base}/img.qcow2"),
                None,
                Some(&format!("{base}/SHA256SUMS")),
            );
            let (p, got) = fetch_verified(&s, dir.path(), ".qcow2", &Quiet).unwrap();
            assert_eq!(got, sum);
            assert_eq!(fs::read(&p).unwrap(), body, "ranges={ranges}");
            assert!(!part.exists());
            // It asked only for the rest; a server that ignores ranges gets a clean restart.
            assert_eq!(
                seen.lock().unwrap().as_slice(),
                [Some("100000".to_string())]
            );
        }
    }

    #[test]
    fn http_download_with_a_wrong_checksum_is_deleted() {
        let body = b"not the image you are looking for".to_vec();
        let (base, _) = serve(body, String::new(), true);
        let dir = tempfile::tempdir().unwrap();
        let s = source(
            &format!("{base}/img.qcow2"),
            Some(&format!("sha256:{}", "1".repeat(64))),
            None,
        );
        let err = fetch_verified(&s, dir.path(), ".qcow2", &Quiet).unwrap_err();
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            0,
            "the bad download must be deleted"
        );
    }

    #[test]
    fn missing_local_image_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let s = source(
            "/nonexistent/x.qcow2",
            Some(&format!("sha256:{}", "a".repeat(64))),
            None,
        );
        let err = fetch_verified(&s, dir.path(), ".qcow2", &Quiet).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
    }
}
