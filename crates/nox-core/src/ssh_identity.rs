//! nox's own SSH key, as Lima and Multipass keep one: every guest trusts it, and `nox ssh`
//! uses it, so logging in works without touching the user's `~/.ssh`. The user's own public
//! keys are installed too.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};

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
/// public key text.
pub fn ensure(data_dir: &Path) -> Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let key = key_path(data_dir);
    let public = key.with_extension("pub");
    if !key.is_file() {
        let dir = key.parent().expect("key has a directory");
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(format!("securing {}", dir.display()), e))?;
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "nox", "-f"])
            .arg(&key)
            .output()
            .map_err(|e| {
                Error::failed(
                    format!("cannot run ssh-keygen: {e}"),
                    "install openssh-client",
                )
            })?;
        if !out.status.success() {
            return Err(Error::Backend(format!(
                "ssh-keygen failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
    }
    std::fs::read_to_string(&public)
        .map(|s| s.trim().to_string())
        .map_err(|e| Error::io(format!("reading {}", public.display()), e))
}
