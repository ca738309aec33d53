//! SHA-256 of backup files: hashed once while written ([`HashingWriter`]) or read back
//! ([`hash_file`]), with progress.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::manifest::FileEntry;
use crate::error::{Error, Result};
use crate::progress::Progress;

/// The size and SHA-256 of a file, reporting bytes to `progress`.
pub fn hash_file(path: &Path, progress: &dyn Progress) -> Result<(u64, String)> {
    let mut f =
        File::open(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let total = f.metadata().map(|m| m.len()).ok();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        done += n as u64;
        progress.bytes(done, total);
        crate::interrupt::check()?;
    }
    Ok((done, hex::encode(h.finalize())))
}

/// The [`FileEntry`] of `dir/name`.
pub fn file_entry(dir: &Path, name: &str, progress: &dyn Progress) -> Result<FileEntry> {
    let (size, sha256) = hash_file(&dir.join(name), progress)?;
    Ok(FileEntry {
        name: name.into(),
        size,
        sha256,
    })
}

/// A writer that hashes and counts what passes through it (a stream written once, hashed
/// on the way, never read back).
#[derive(Debug)]
pub struct HashingWriter<W> {
    pub inner: W,
    hasher: Sha256,
    pub written: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }
    pub fn finish(self) -> (W, u64, String) {
        (
            self.inner,
            self.written,
            hex::encode(self.hasher.finalize()),
        )
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
