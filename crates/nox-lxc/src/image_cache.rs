//! The container image cache as `nox image` sees it: every base under
//! `LXCPATH/.nox/images`, gathered from its note, its downloaded files and its unpacked
//! copies; which containers use each one; and removing the ones asked for or unused.
//!
//! A container uses a base through its config's `lxc.rootfs.path = overlay:BASE/rootfs:DELTA`,
//! so that line, not nox's record, says which base it needs: containers nox did not make are
//! counted too. Restored containers have a `dir:` rootfs and need no base.
//!
//! No backup needs a cached base: a container backup holds its whole root filesystem and
//! restores without the image it was created from (backup.rs), so prune looks at containers
//! only.

use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nox_core::image::CachedImage;
use nox_core::{BackendKind, Error};

use crate::base_note::BaseNote;
use crate::images::images_dir;

/// The directory the old `lxc-create -t download` path kept its bases in, one container
/// directory per base. Nothing makes them any more; they are listed and pruned like the rest.
const DOWNLOAD_DIR: &str = "download";

/// One base in the cache: everything on disk that belongs to one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base {
    /// `sha256-HEX` (a tarball), `fp-HEX` (an `images:` fingerprint), `download/NAME` (the
    /// old download path), or the name of a directory nothing else claims (what a killed
    /// unpack left).
    pub key: String,
    pub note: Option<BaseNote>,
    /// Downloaded files present on disk, and the note.
    pub files: Vec<PathBuf>,
    /// Unpacked copies: `KEY-MAPPING` directories, or one old download tree.
    pub unpacked: Vec<PathBuf>,
}

impl Base {
    fn new(key: &str) -> Base {
        Base {
            key: key.into(),
            note: None,
            files: Vec::new(),
            unpacked: Vec::new(),
        }
    }

    /// The checksum `nox image list` shows: the note's, else read back from the key.
    fn checksum(&self) -> String {
        if let Some(n) = &self.note {
            return n.checksum.clone();
        }
        match self.key.split_once('-') {
            Some((algo @ ("sha256" | "sha512"), hex)) => format!("{algo}:{hex}"),
            Some(("fp", hex)) => format!("fp:{hex}"),
            _ => String::new(),
        }
    }

    /// Whether `which`, as typed for `nox image rm`, names this base.
    pub fn is(&self, which: &str) -> bool {
        !which.is_empty()
            && (self.key == which
                || self.checksum() == which
                || self.note.as_ref().is_some_and(|n| n.name == which))
    }
}

/// Splits an unpacked copy's directory name, `KEY-u100000-g100000` or `KEY-host`, into its
/// key; `None` for a name that is not one (images.rs's `Mapping::suffix` makes them).
pub fn key_of_unpacked(dir_name: &str) -> Option<&str> {
    if let Some(key) = dir_name.strip_suffix("-host") {
        return Some(key).filter(|k| !k.is_empty());
    }
    let mut parts = dir_name.rsplitn(3, '-');
    let (g, u, key) = (parts.next()?, parts.next()?, parts.next()?);
    let number = |s: &str, prefix: char| {
        s.strip_prefix(prefix)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    (number(u, 'u') && number(g, 'g') && !key.is_empty()).then_some(key)
}

/// Every base in the cache directory `dir`, by key.
pub fn scan(dir: &Path) -> Vec<Base> {
    let mut bases: BTreeMap<String, Base> = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
        if is_dir && name == DOWNLOAD_DIR {
            for d in std::fs::read_dir(&path).into_iter().flatten().flatten() {
                let key = format!("{DOWNLOAD_DIR}/{}", d.file_name().to_string_lossy());
                bases
                    .entry(key.clone())
                    .or_insert_with(|| Base::new(&key))
                    .unpacked
                    .push(d.path());
            }
        } else if is_dir {
            // A directory that is no unpacked copy (`.KEY-MAPPING.unpacking`, left by a killed
            // unpack) is a base of its own: listed, so the space it takes is seen, and pruned.
            let key = key_of_unpacked(&name).unwrap_or(&name).to_string();
            bases
                .entry(key.clone())
                .or_insert_with(|| Base::new(&key))
                .unpacked
                .push(path);
        } else if let Some(key) = name.strip_suffix(".json").filter(|k| !k.starts_with('.')) {
            if let Some(note) = BaseNote::read(&path) {
                let base = bases.entry(key.into()).or_insert_with(|| Base::new(key));
                base.note = Some(note);
                base.files.push(path);
            }
        } else if name.ends_with(".tar.xz") {
            files.push(name);
        }
        // Anything else stays: `.lock`, and `.part` files a cut download resumes from.
    }
    // Downloaded files belong to the base whose note names them, else to the key their own
    // name gives (`sha256-HEX.tar.xz`, as a tarball source caches it).
    let claimed: BTreeMap<String, String> = bases
        .values()
        .filter_map(|b| Some((b.key.clone(), b.note.as_ref()?.files.clone())))
        .flat_map(|(key, fs)| fs.into_iter().map(move |f| (f, key.clone())))
        .collect();
    for f in files {
        let key = claimed.get(&f).cloned().unwrap_or_else(|| {
            f.trim_end_matches(".tar.xz")
                .trim_end_matches(".meta")
                .to_string()
        });
        bases
            .entry(key.clone())
            .or_insert_with(|| Base::new(&key))
            .files
            .push(dir.join(&f));
    }
    let mut out: Vec<Base> = bases.into_values().collect();
    for b in &mut out {
        b.files.sort();
        b.unpacked.sort();
    }
    out
}

/// Each container in `lxcpath` whose rootfs is an overlay, with the lower directory (the
/// base's `rootfs`) its config names.
pub fn overlay_users(lxcpath: &Path) -> Result<Vec<(String, PathBuf)>, Error> {
    let entries = match std::fs::read_dir(lxcpath) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("reading {}", lxcpath.display()), e)),
    };
    let mut users = Vec::new();
    for e in entries.flatten() {
        let config = e.path().join("config");
        let text = match std::fs::read_to_string(&config) {
            Ok(t) => t,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            // A config that cannot be read may name any base: refusing is the safe answer.
            Err(err) => return Err(Error::io(format!("reading {}", config.display()), err)),
        };
        if let Some(lower) = overlay_lower(&text) {
            users.push((e.file_name().to_string_lossy().into_owned(), lower));
        }
    }
    users.sort();
    Ok(users)
}

/// The lower directory of `lxc.rootfs.path = overlay:LOWER:UPPER` in an LXC config.
fn overlay_lower(config: &str) -> Option<PathBuf> {
    config.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        if k.trim() != "lxc.rootfs.path" {
            return None;
        }
        let rest = v.trim().strip_prefix("overlay:")?;
        Some(PathBuf::from(
            rest.split_once(':').map_or(rest, |(lower, _)| lower),
        ))
    })
}

/// The containers (by name) whose overlay sits on one of `base`'s unpacked copies.
pub fn users_of<'a>(base: &Base, users: &'a [(String, PathBuf)]) -> Vec<&'a str> {
    // Compared canonically too: a config may spell the same directory another way.
    let copies: HashSet<PathBuf> = base
        .unpacked
        .iter()
        .flat_map(|d| {
            [
                d.clone(),
                std::fs::canonicalize(d).unwrap_or_else(|_| d.clone()),
            ]
        })
        .collect();
    users
        .iter()
        .filter(|(_, lower)| {
            let dir = lower.parent().unwrap_or(lower);
            copies.contains(dir) || std::fs::canonicalize(dir).is_ok_and(|d| copies.contains(&d))
        })
        .map(|(name, _)| name.as_str())
        .collect()
}

/// The bases no container uses.
pub fn unused(bases: Vec<Base>, users: &[(String, PathBuf)]) -> Vec<Base> {
    bases
        .into_iter()
        .filter(|b| users_of(b, users).is_empty())
        .collect()
}

/// How `nox image list` shows a base, with its size on disk.
pub fn describe(dir: &Path, base: &Base) -> CachedImage {
    let note = base.note.as_ref();
    let tarball = note
        .and_then(|n| n.files.first())
        .map(|f| dir.join(f))
        .filter(|p| p.is_file())
        .or_else(|| {
            base.files
                .iter()
                .find(|f| f.extension().is_some_and(|x| x == "xz"))
                .cloned()
        });
    let path = tarball
        .or_else(|| base.unpacked.first().cloned())
        .unwrap_or_else(|| dir.join(&base.key));
    let url = match note {
        Some(n) => n.url.clone(),
        None if base.key.starts_with(DOWNLOAD_DIR) => "lxc-create -t download".into(),
        None => String::new(),
    };
    let files: u64 = base.files.iter().map(|f| disk_usage(f).0).sum();
    let copies: Vec<(u64, u64)> = base.unpacked.iter().map(|d| disk_usage(d)).collect();
    CachedImage {
        name: note.map(|n| n.name.clone()).unwrap_or_default(),
        backend: BackendKind::Lxc,
        checksum: base.checksum(),
        path,
        url,
        size_bytes: files + copies.iter().map(|c| c.0).sum::<u64>(),
        virtual_size_bytes: copies.first().map_or(0, |c| c.1),
        kind: nox_core::image::ImageKind::Base,
        shape: None,
        created_at: None,
    }
}

/// Bytes on disk (allocated blocks) and apparent bytes under `path`, each hard-linked file
/// counted once.
fn disk_usage(path: &Path) -> (u64, u64) {
    let mut seen = HashSet::new();
    let (mut on_disk, mut apparent) = (0, 0);
    for e in walkdir::WalkDir::new(path).into_iter().flatten() {
        let Ok(m) = e.metadata() else { continue };
        if m.nlink() > 1 && !m.is_dir() && !seen.insert((m.dev(), m.ino())) {
            continue;
        }
        on_disk += m.blocks() * 512;
        apparent += m.len();
    }
    (on_disk, apparent)
}

/// Removes a base: unpacked copies first, each renamed out of the way at once so no create
/// ever finds half a rootfs, then its files, its note last, so a failure midway leaves a
/// base that is still listed and can be removed again.
pub fn delete(dir: &Path, base: &Base) -> Result<(), Error> {
    for (i, copy) in base.unpacked.iter().enumerate() {
        let name = copy.file_name().map(|n| n.to_string_lossy().into_owned());
        let doomed = match name {
            Some(n) if n.ends_with(".removing") => copy.clone(),
            Some(n) => dir.join(format!(".{}-{i}.removing", n.trim_start_matches('.'))),
            None => continue,
        };
        if doomed != *copy {
            std::fs::rename(copy, &doomed)
                .map_err(|e| Error::io(format!("removing {}", copy.display()), e))?;
        }
        std::fs::remove_dir_all(&doomed)
            .map_err(|e| Error::io(format!("removing {}", doomed.display()), e))?;
    }
    if base.key.starts_with(DOWNLOAD_DIR) {
        // The old download directory goes with its last base (kept while it holds others).
        let _ = std::fs::remove_dir(dir.join(DOWNLOAD_DIR));
    }
    let note = BaseNote::path(dir, &base.key);
    for f in base.files.iter().filter(|f| **f != note).chain([&note]) {
        match std::fs::remove_file(f) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("removing {}", f.display()), e)),
        }
    }
    Ok(())
}

/// The cache lock images.rs's `ensure_base` holds while it downloads and unpacks: removal
/// waits for a base being built and never takes one from under it.
pub fn lock(lxcpath: &Path) -> Result<Option<nox_core::lock::LockGuard>, Error> {
    let dir = images_dir(lxcpath);
    if !dir.is_dir() {
        return Ok(None);
    }
    nox_core::lock::lock(&dir.join(".lock")).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpacked_copies_give_back_their_key() {
        assert_eq!(
            key_of_unpacked("sha256-ab-u100000-g100000"),
            Some("sha256-ab")
        );
        assert_eq!(key_of_unpacked("fp-cd-host"), Some("fp-cd"));
        for not in [
            "sha256-ab",
            "-host",
            "x-u1-g",
            "x-uA-g1",
            ".fp-cd-host.unpacking",
            "u1-g1",
        ] {
            assert_eq!(key_of_unpacked(not), None, "{not}");
        }
    }

    #[test]
    fn the_overlay_lower_dir_is_read_from_the_config() {
        let c = "lxc.uts.name = web\nlxc.rootfs.path = overlay:/l/.nox/images/k-host/rootfs:/l/web/delta\n";
        assert_eq!(
            overlay_lower(c),
            Some("/l/.nox/images/k-host/rootfs".into())
        );
        assert_eq!(overlay_lower("lxc.rootfs.path = dir:/l/web/rootfs\n"), None);
        assert_eq!(overlay_lower("# lxc.rootfs.path\n"), None);
    }

    fn touch(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"x").unwrap();
    }

    /// A cache with a noted tarball base unpacked twice, an `images:` base whose files are
    /// named by their own checksums, a tarball with no note, an old download tree and what
    /// a killed unpack left.
    fn cache() -> (tempfile::TempDir, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join(".nox/images");
        touch(&dir.join("sha256-aa.tar.xz"));
        touch(&dir.join("sha256-aa-u100000-g100000/rootfs/etc/hostname"));
        touch(&dir.join("sha256-aa-host/rootfs/etc/hostname"));
        let note = |name: &str, sum: &str, files: &[&str]| BaseNote {
            name: name.into(),
            checksum: sum.into(),
            url: format!("file:///{name}"),
            files: files.iter().map(|f| f.to_string()).collect(),
        };
        note("debian", "sha256:aa", &["sha256-aa.tar.xz"])
            .write_once(&dir, "sha256-aa")
            .unwrap();
        touch(&dir.join("sha256-r1.tar.xz"));
        touch(&dir.join("sha256-m1.meta.tar.xz"));
        touch(&dir.join("fp-f1-u100000-g100000/rootfs/bin/sh"));
        note(
            "alpine",
            "fp:f1",
            &["sha256-r1.tar.xz", "sha256-m1.meta.tar.xz"],
        )
        .write_once(&dir, "fp-f1")
        .unwrap();
        touch(&dir.join("sha256-bb.tar.xz"));
        touch(&dir.join("download/debian-bookworm-u100000-g100000/rootfs/bin/sh"));
        touch(&dir.join(".sha256-cc-host.unpacking/rootfs/bin/sh"));
        touch(&dir.join(".lock"));
        touch(&dir.join("sha256-dd.part"));
        (t, dir)
    }

    #[test]
    fn scan_gathers_each_base_from_its_note_files_and_copies() {
        let (_t, dir) = cache();
        let bases = scan(&dir);
        let keys: Vec<_> = bases.iter().map(|b| b.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                ".sha256-cc-host.unpacking",
                "download/debian-bookworm-u100000-g100000",
                "fp-f1",
                "sha256-aa",
                "sha256-bb"
            ]
        );
        let fp = &bases[2];
        assert_eq!(fp.files.len(), 3, "{fp:?}");
        assert_eq!(fp.unpacked, [dir.join("fp-f1-u100000-g100000")]);
        assert_eq!(fp.checksum(), "fp:f1");
        let aa = &bases[3];
        assert_eq!(aa.unpacked.len(), 2);
        assert!(aa.is("debian") && aa.is("sha256:aa") && aa.is("sha256-aa") && !aa.is(""));
        assert_eq!(bases[4].checksum(), "sha256:bb");
        assert!(bases[4].note.is_none());
    }

    #[test]
    fn unused_bases_are_those_no_container_config_names() {
        let (_t, dir) = cache();
        let users = vec![
            ("web".to_string(), dir.join("sha256-aa-host/rootfs")),
            (
                "db".to_string(),
                dir.join("download/debian-bookworm-u100000-g100000/rootfs"),
            ),
            ("other".to_string(), PathBuf::from("/elsewhere/rootfs")),
        ];
        let bases = scan(&dir);
        assert_eq!(users_of(&bases[3], &users), ["web"]);
        let gone: Vec<String> = unused(bases, &users).into_iter().map(|b| b.key).collect();
        assert_eq!(gone, [".sha256-cc-host.unpacking", "fp-f1", "sha256-bb"]);
    }

    #[test]
    fn delete_removes_every_file_of_a_base_and_nothing_else() {
        let (_t, dir) = cache();
        let bases = scan(&dir);
        let fp = bases.iter().find(|b| b.key == "fp-f1").unwrap();
        let img = describe(&dir, fp);
        assert_eq!(img.name, "alpine");
        assert_eq!(img.path, dir.join("sha256-r1.tar.xz"));
        assert!(img.size_bytes > 0 && img.virtual_size_bytes > 0, "{img:?}");
        delete(&dir, fp).unwrap();
        let after: Vec<String> = scan(&dir).into_iter().map(|b| b.key).collect();
        assert!(!after.contains(&"fp-f1".to_string()), "{after:?}");
        assert_eq!(after.len(), 4, "{after:?}");
        assert!(dir.join(".lock").exists() && dir.join("sha256-dd.part").exists());
        let download = bases
            .iter()
            .find(|b| b.key.starts_with("download/"))
            .unwrap();
        delete(&dir, download).unwrap();
        assert!(!dir.join("download").exists());
        // Nothing renamed out of the way is left behind.
        let hidden = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".removing"))
            .count();
        assert_eq!(hidden, 0);
    }
}
