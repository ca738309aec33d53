//! CI's build cache: the cargo target directories `cargo xtask ci` builds in, kept on this host
//! between runs, as hosted CI keeps `target/` between jobs.
//!
//! Every CI run starts from a fresh clone, and about 450 s of its 45 minutes went to compiling
//! the same 420-odd dependencies again (clippy's check, the test build, the fuzz build). Cargo's
//! own fingerprints decide what is stale, exactly as in a developer's `target/`: nox's crates
//! (whose paths change with the clone) are always built afresh, dependencies only when they
//! change.
//!
//! One directory per Cargo.lock and toolchain, under [`ROOT`]: a new lock or compiler starts a
//! new one, and the others are removed, so the cache holds one generation. A directory that has
//! grown past [`LIMIT_BYTES`] (each clone path adds its own build of nox's crates) is emptied
//! first. A fresh machine has no cache: the same run builds everything, only slower.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

/// Where the cache lives: beside the test image's cache, outside any clone.
const ROOT: &str = "/var/cache/nox/ci-build";
/// Past this, one generation is emptied before the run (the disk is shared with VM images).
const LIMIT_BYTES: u64 = 30 << 30;

/// The cache directory for this checkout's Cargo.lock and toolchain, made ready: the other
/// generations removed, this one emptied if it has grown too large.
pub fn prepare(project: &Path) -> Result<PathBuf> {
    let lock = std::fs::read(project.join("Cargo.lock")).context("reading Cargo.lock")?;
    let rustc = Command::new("rustc")
        .arg("-vV")
        .output()
        .context("running rustc -vV")?;
    let dir = Path::new(ROOT).join(key(&lock, &rustc.stdout));
    if let Ok(entries) = std::fs::read_dir(ROOT) {
        for entry in entries.flatten() {
            if entry.path() != dir {
                eprintln!(
                    "xtask: removing the old build cache {}",
                    entry.path().display()
                );
                remove(&entry.path())?;
            }
        }
    }
    let size = size_of(&dir);
    if size > LIMIT_BYTES {
        eprintln!(
            "xtask: the build cache {} holds {} GiB: emptying it",
            dir.display(),
            size >> 30
        );
        remove(&dir)?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    eprintln!("xtask: building in {} (CI's build cache)", dir.display());
    Ok(dir)
}

/// The generation's name: what makes artifacts incompatible (the locked dependency versions
/// and the compiler).
fn key(lock: &[u8], rustc_version: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(lock);
    h.update(b"\0");
    h.update(rustc_version);
    hex::encode(&h.finalize()[..8])
}

fn remove(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", dir.display()))
        }
        _ => Ok(()),
    }
}

/// Bytes under `dir` (0 when it does not exist); hard links are counted each time, which only
/// errs towards emptying.
fn size_of(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => stack.push(entry.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_changes_with_the_lock_and_the_compiler_only() {
        let k = key(b"lock", b"rustc 1.91.0");
        assert_eq!(k, key(b"lock", b"rustc 1.91.0"));
        assert_eq!(k.len(), 16);
        assert_ne!(k, key(b"lock2", b"rustc 1.91.0"));
        assert_ne!(k, key(b"lock", b"rustc 1.92.0"));
    }

    #[test]
    fn size_counts_nested_files_and_a_missing_dir_is_empty() {
        let dir = std::env::temp_dir().join(format!("xtask-cache-size-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("x"), [0u8; 10]).unwrap();
        std::fs::write(dir.join("a/b/y"), [0u8; 5]).unwrap();
        assert_eq!(size_of(&dir), 15);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(size_of(&dir), 0);
    }
}
