//! nox's own SSH key, as Lima and Multipass keep one: every guest trusts it, and `nox ssh`
//! uses it, so logging in works without touching the user's `~/.ssh`. The user's own public
//! keys are installed too.
//!
//! The key is made in-process (the `ssh-key` crate, seeded from the host's CSPRNG), so nox
//! needs no `ssh-keygen` on the host.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ssh_key::private::{Ed25519Keypair, KeypairData};
use ssh_key::{LineEnding, PrivateKey};

use crate::error::{Error, Result};
use crate::host::HostFacts;

/// `$XDG_DATA_HOME/nox`, else `~/.local/share/nox`.
pub fn data_dir() -> Option<PathBuf> {
    xdg_dir("XDG_DATA_HOME", ".local/share").map(|d| d.join("nox"))
}

/// An XDG base directory: `$var` when set to an absolute path (the spec says to ignore a
/// relative one), else `$HOME/fallback`.
pub fn xdg_dir(var: &str, fallback: &str) -> Option<PathBuf> {
    let get = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    get(var)
        .filter(|p| p.is_absolute())
        .or_else(|| get("HOME").map(|h| h.join(fallback)))
}

/// The private key's path.
pub fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("ssh/id_ed25519")
}

/// Creates the key pair on first use (0600 private key in a 0700 directory) and returns the
/// public key text. The private key is the truth: it is never replaced once it exists (guests
/// trust it), and the public key is always the one derived from it.
pub fn ensure(data_dir: &Path, host: &dyn HostFacts) -> Result<String> {
    let key = key_path(data_dir);
    let public = key.with_extension("pub");
    if !key.is_file() {
        let dir = key.parent().unwrap_or(data_dir);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(format!("securing {}", dir.display()), e))?;
        // Written beside, then linked into place: link fails if another nox made the key
        // meanwhile, and then that key is the one (never half of one, never two).
        let tmp = key.with_extension(unique_tmp(host)?);
        write_file(&tmp, generate(host)?.as_bytes(), 0o600)?;
        let linked = std::fs::hard_link(&tmp, &key);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io(format!("writing {}", key.display()), e)),
        }
    }
    let private_text = std::fs::read_to_string(&key)
        .map_err(|e| Error::io(format!("reading {}", key.display()), e))?;
    let public_text = PrivateKey::from_openssh(&private_text)
        .and_then(|k| k.public_key().to_openssh())
        .map_err(|e| {
            Error::failed(
                format!("{} is not an OpenSSH private key: {e}", key.display()),
                "move it away: nox makes a new one (guests made with the old one then need `nox passwd` or a new key)",
            )
        })?;
    let on_disk = std::fs::read_to_string(&public).unwrap_or_default();
    if on_disk.trim() != public_text.trim() {
        let tmp = public.with_extension(unique_tmp(host)?);
        write_file(&tmp, format!("{public_text}\n").as_bytes(), 0o644)?;
        std::fs::rename(&tmp, &public)
            .map_err(|e| Error::io(format!("writing {}", public.display()), e))?;
    }
    Ok(public_text.trim().to_string())
}

/// A temporary file's extension no other writer uses at the same time.
fn unique_tmp(host: &dyn HostFacts) -> Result<String> {
    let mut b = [0u8; 8];
    host.fill_random(&mut b)?;
    Ok(format!("tmp-{}-{}", std::process::id(), hex::encode(b)))
}

/// A new Ed25519 private key in OpenSSH's format.
fn generate(host: &dyn HostFacts) -> Result<String> {
    let mut seed = [0u8; 32];
    host.fill_random(&mut seed)?;
    let pair = Ed25519Keypair::from_seed(&seed);
    seed.fill(0);
    let key = PrivateKey::new(KeypairData::Ed25519(pair), "nox")
        .map_err(|e| Error::encode("making nox's SSH key", e))?;
    let text = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| Error::encode("encoding nox's SSH key", e))?;
    Ok(text.to_string())
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let io = |e| Error::io(format!("writing {}", path.display()), e);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::LocalHost;

    #[test]
    fn a_key_pair_ssh_can_use() {
        let dir = tempfile::tempdir().unwrap();
        let public = ensure(dir.path(), &LocalHost).unwrap();
        assert!(public.starts_with("ssh-ed25519 AAAA"), "{public}");
        assert!(public.ends_with(" nox"), "{public}");
        let key = key_path(dir.path());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&key), 0o600);
        assert_eq!(mode(key.parent().unwrap()), 0o700);
        // The same key next time; a lost public key is derived again, never a new pair.
        assert_eq!(ensure(dir.path(), &LocalHost).unwrap(), public);
        let private_before = std::fs::read(&key).unwrap();
        std::fs::remove_file(key.with_extension("pub")).unwrap();
        assert_eq!(ensure(dir.path(), &LocalHost).unwrap(), public);
        assert_eq!(std::fs::read(&key).unwrap(), private_before);
        // OpenSSH reads it back and derives the same public key, when it is installed.
        if let Ok(out) = std::process::Command::new("ssh-keygen")
            .arg("-y")
            .arg("-f")
            .arg(&key)
            .output()
        {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let derived = String::from_utf8_lossy(&out.stdout);
            assert_eq!(
                derived.split_whitespace().take(2).collect::<Vec<_>>(),
                public.split_whitespace().take(2).collect::<Vec<_>>()
            );
        }
        let private = std::fs::read_to_string(&key).unwrap();
        assert!(private.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
    }

    #[test]
    fn many_at_once_agree_on_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let keys: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| ensure(dir.path(), &LocalHost).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(keys.iter().all(|k| k == &keys[0]), "{keys:?}");
        let derived =
            PrivateKey::from_openssh(std::fs::read_to_string(key_path(dir.path())).unwrap())
                .unwrap()
                .public_key()
                .to_openssh()
                .unwrap();
        assert_eq!(derived, keys[0]);
    }
}
