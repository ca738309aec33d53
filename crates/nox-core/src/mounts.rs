//! Shared folders: a host directory seen inside a guest (`--mount HOST_DIR:GUEST_DIR[:ro]`).
//!
//! Parsing checks only the syntax; [`resolve`] then checks the host side (absolute, an existing
//! directory) and canonicalizes it, so what is stored with the instance is the real directory
//! and never a symlink someone may later point elsewhere.

use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One shared folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// The host directory, absolute and canonical.
    pub host: PathBuf,
    /// Where the guest sees it: absolute, normalized, never `/`.
    pub guest: PathBuf,
    /// The guest may read but not write.
    #[serde(default)]
    pub readonly: bool,
}

impl fmt::Display for Mount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host.display(), self.guest.display())?;
        if self.readonly {
            f.write_str(":ro")?;
        }
        Ok(())
    }
}

const SYNTAX: &str = "use HOST_DIR:GUEST_DIR or HOST_DIR:GUEST_DIR:ro, both absolute";

/// Characters refused in either path: they end up in an LXC `lxc.mount.entry` line (fields
/// split on whitespace, `\` escapes), a libvirt XML attribute and a guest fstab line.
fn check_chars(what: &str, p: &str, whole: &str) -> Result<()> {
    if p.chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
    {
        return Err(Error::Usage(format!(
            "invalid mount {whole:?}: the {what} path holds whitespace, a control character or '\\', which nox cannot pass to the guest's mount table; rename it or share a parent directory"
        )));
    }
    Ok(())
}

impl FromStr for Mount {
    type Err = Error;

    /// The syntax alone: `HOST:GUEST[:ro]`, GUEST absolute and normalized. The host side is
    /// checked against the filesystem by [`resolve`].
    fn from_str(s: &str) -> Result<Mount> {
        let parts: Vec<&str> = s.split(':').collect();
        let (host, guest, readonly) = match parts.as_slice() {
            [h, g] => (*h, *g, false),
            [h, g, "ro"] => (*h, *g, true),
            [h, g, "rw"] => (*h, *g, false),
            [_, _, opt] => {
                return Err(Error::Usage(format!(
                    "invalid mount {s:?}: unknown option {opt:?}; the only options are ro and rw"
                )))
            }
            _ => return Err(Error::Usage(format!("invalid mount {s:?}: {SYNTAX}"))),
        };
        check_chars("host", host, s)?;
        check_chars("guest", guest, s)?;
        if !host.starts_with('/') || !guest.starts_with('/') {
            return Err(Error::Usage(format!("invalid mount {s:?}: {SYNTAX}")));
        }
        Ok(Mount {
            host: PathBuf::from(host),
            guest: guest_path(guest, s)?,
            readonly,
        })
    }
}

/// GUEST normalized (`//` and trailing `/` dropped); `.`, `..` and `/` itself refused, so
/// the path the guest mounts on is the path the user wrote.
fn guest_path(guest: &str, whole: &str) -> Result<PathBuf> {
    let mut out = PathBuf::from("/");
    for c in Path::new(guest).components() {
        match c {
            Component::RootDir => {}
            Component::Normal(n) => out.push(n),
            _ => {
                return Err(Error::Usage(format!(
                    "invalid mount {whole:?}: the guest path may not hold '.' or '..'; write it out in full"
                )))
            }
        }
    }
    if out == Path::new("/") {
        return Err(Error::Usage(format!(
            "invalid mount {whole:?}: the guest's / cannot be shared over; pick a directory such as /mnt/share"
        )));
    }
    Ok(out)
}

/// Parses `--mount` values and checks their host side: each HOST must be an existing
/// directory, and is stored canonical (symlinks resolved now, not at every start). Two mounts
/// on the same guest path are refused.
pub fn resolve(values: &[String]) -> Result<Vec<Mount>> {
    let mut out: Vec<Mount> = Vec::new();
    for v in values {
        let m = resolve_one(v)?;
        if let Some(other) = out.iter().find(|o| o.guest == m.guest) {
            return Err(Error::Usage(format!(
                "two mounts on the guest path {}: {other} and {m}; give each its own guest directory",
                m.guest.display()
            )));
        }
        out.push(m);
    }
    Ok(out)
}

/// One `HOST:GUEST[:ro]`, parsed and its host side checked.
pub fn resolve_one(v: &str) -> Result<Mount> {
    let mut m: Mount = v.parse()?;
    let canonical = std::fs::canonicalize(&m.host).map_err(|e| {
        Error::Usage(format!(
            "invalid mount {v:?}: cannot use the host directory {}: {e}; create it first",
            m.host.display()
        ))
    })?;
    if !canonical.is_dir() {
        return Err(Error::Usage(format!(
            "invalid mount {v:?}: {} is not a directory; share the directory holding it",
            canonical.display()
        )));
    }
    check_chars("host", &canonical.to_string_lossy(), v)?;
    if canonical == Path::new("/") {
        return Err(Error::Usage(format!(
            "invalid mount {v:?}: sharing the host's / would hand the guest the whole host; share a directory"
        )));
    }
    m.host = canonical;
    Ok(m)
}

/// The guest path `mount rm` names, normalized as `--mount` normalizes it.
pub fn guest_arg(guest: &str) -> Result<PathBuf> {
    check_chars("guest", guest, guest)?;
    if !guest.starts_with('/') {
        return Err(Error::Usage(format!(
            "invalid guest directory {guest:?}: give the absolute path it is mounted on (see `nox mount list`)"
        )));
    }
    guest_path(guest, guest)
}

/// The virtiofs tag a VM's share is exported under: derived from the guest path (unique per
/// instance), so it stays the same through `mount add|rm`, and short (virtiofs allows 36
/// bytes).
pub fn virtiofs_tag(guest: &Path) -> String {
    // FNV-1a, 64 bits: stable across builds, unlike std's hasher.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in guest.as_os_str().as_encoded_bytes() {
        h = (h ^ u64::from(*b)).wrapping_mul(0x100000001b3);
    }
    format!("nox-{h:016x}")
}

/// The guest's `/etc/fstab` line for a VM share. `nofail`: a share that is gone never stops
/// the guest from booting.
pub fn fstab_line(m: &Mount) -> String {
    let ro = if m.readonly { ",ro" } else { "" };
    format!(
        "{} {} virtiofs defaults,nofail{ro} 0 0",
        virtiofs_tag(&m.guest),
        m.guest.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax() {
        let m: Mount = "/srv/a:/mnt/a".parse().unwrap();
        assert_eq!(m.host, Path::new("/srv/a"));
        assert_eq!(m.guest, Path::new("/mnt/a"));
        assert!(!m.readonly);
        let m: Mount = "/srv/a://mnt//a/./:ro".parse().unwrap();
        assert_eq!(m.guest, Path::new("/mnt/a"));
        assert!(m.readonly);
        assert_eq!(m.to_string(), "/srv/a:/mnt/a:ro");
        for bad in [
            "",
            "/srv/a",
            "srv:/mnt",
            "/srv:mnt",
            "/srv:/mnt:rx",
            "/srv:/mnt:ro:x",
            "/srv:/",
            "/srv:/mnt/../etc",
            "/s rv:/mnt",
            "/srv:/mnt\n",
            "/srv:/m\\nt",
        ] {
            let e = bad.parse::<Mount>().unwrap_err();
            assert!(e.is_bad_input(), "{bad}: {e}");
            assert!(!e.to_string().contains('\n'), "{bad}: {e}");
        }
    }

    #[test]
    fn host_side_is_checked_and_canonical() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("link")).unwrap();
        std::fs::write(dir.path().join("file"), "x").unwrap();
        let d = dir.path().display();
        let ms = resolve(&[format!("{d}/link:/mnt/a"), format!("{d}/real:/mnt/b:ro")]).unwrap();
        let canon = std::fs::canonicalize(&real).unwrap();
        assert_eq!(ms[0].host, canon);
        assert_eq!(ms[1].host, canon);
        for bad in [
            vec![format!("{d}/missing:/mnt/a")],
            vec![format!("{d}/file:/mnt/a")],
            vec!["/:/mnt/a".to_string()],
            vec![format!("{d}/real:/mnt/a"), format!("{d}/link:/mnt/a/")],
        ] {
            let e = resolve(&bad).unwrap_err();
            assert!(e.is_bad_input(), "{bad:?}: {e}");
        }
        assert_eq!(guest_arg("/mnt/a/").unwrap(), Path::new("/mnt/a"));
        assert!(guest_arg("mnt").unwrap_err().is_bad_input());
    }

    #[test]
    fn tags_are_stable_short_and_per_guest_path() {
        let a = virtiofs_tag(Path::new("/mnt/a"));
        assert_eq!(a, virtiofs_tag(Path::new("/mnt/a")));
        assert_ne!(a, virtiofs_tag(Path::new("/mnt/b")));
        assert!(a.len() <= 36, "{a}");
        let m: Mount = "/srv/a:/mnt/a:ro".parse().unwrap();
        assert_eq!(
            fstab_line(&m),
            format!("{a} /mnt/a virtiofs defaults,nofail,ro 0 0")
        );
    }
}
