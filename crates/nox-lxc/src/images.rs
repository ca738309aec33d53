//! Container base images: fetched and verified once, then unpacked once per id mapping into
//! `LXCPATH/.nox/images/KEY-MAPPING/rootfs`. Unprivileged bases are unpacked inside the
//! container's user namespace (lxc-usernsexec), so they are shifted once per image, never per
//! container; each container is an overlay on its base.
//!
//! Each base has a note, `KEY.json` (base_note.rs), naming it for `nox image list`;
//! image_cache.rs lists, removes and prunes bases.
//!
//! Sources: a rootfs tarball (`https://`, `file://`, a path; verified by checksum), or
//! `images:DIST/RELEASE` from the simplestreams server `[lxc] image_server`, whose rootfs is
//! verified against the SHA-256 in the server's products file (nox_core::simplestreams) and
//! cached by the image's fingerprint.

use std::path::{Path, PathBuf};

use nox_core::config::{Checksum, ImageSource};
use nox_core::host::{Cmd, Runner};
use nox_core::{fetch, simplestreams, Error, Progress};

use crate::base_note::BaseNote;

/// How a base's files are owned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    /// Shifted into root's subordinate range starting here.
    Shifted { uid: u32, gid: u32 },
    /// Host ids (privileged containers).
    Host,
}

impl Mapping {
    /// Ends the name of the base's unpacked copy, `KEY-SUFFIX` (image_cache.rs reads it back).
    pub fn suffix(self) -> String {
        match self {
            Mapping::Shifted { uid, gid } => format!("u{uid}-g{gid}"),
            Mapping::Host => "host".into(),
        }
    }
}

pub fn images_dir(lxcpath: &Path) -> PathBuf {
    lxcpath.join(".nox/images")
}

/// Returns the base rootfs for `source` (the `[images]` entry `name`) under `mapping`,
/// building it if needed.
pub fn ensure_base(
    runner: &dyn Runner,
    lxcpath: &Path,
    image_server: &str,
    name: &str,
    source: &ImageSource,
    mapping: Mapping,
    progress: &dyn Progress,
) -> Result<PathBuf, Error> {
    let dir = images_dir(lxcpath);
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    // One builder per image at a time; others wait, then find it built.
    let _guard = nox_core::lock::lock(&dir.join(".lock"))?;

    let (tarball, key) = match source.url.strip_prefix("images:") {
        Some(spec) => {
            let (dist, release) = simplestreams::parse_spec(spec)?;
            progress.step(&format!("looking up {dist}/{release} on {image_server}"));
            let selection = simplestreams::resolve(image_server, dist, release);
            progress.done();
            let selection = selection?;
            // Cached by fingerprint: a base already unpacked needs no download at all.
            let key = format!("fp-{}", selection.fingerprint);
            let rootfs = dir
                .join(format!("{key}-{}", mapping.suffix()))
                .join("rootfs");
            if rootfs.is_dir() {
                // A base unpacked before bases had notes gets its note now.
                note_simplestreams(&dir, &key, name, image_server, &selection)?;
                tracing::info!(product = %selection.product, version = %selection.version,
                    "container base cached");
                return Ok(rootfs);
            }
            tracing::info!(product = %selection.product, version = %selection.version,
                "fetching container base");
            let fetched = simplestreams::fetch(image_server, selection, &dir, progress)?;
            note_simplestreams(&dir, &key, name, image_server, &fetched.selection)?;
            (fetched.rootfs, key)
        }
        None => {
            let (tarball, sum) = fetch::fetch_verified(source, &dir, ".tar.xz", progress)?;
            let key = fetch::cache_key(&sum, "");
            BaseNote {
                name: name.into(),
                checksum: sum.to_string(),
                url: fetch::expand_url(&source.url),
                files: vec![format!("{key}.tar.xz")],
            }
            .write_once(&dir, &key)?;
            (tarball, key)
        }
    };
    let base = dir.join(format!("{key}-{}", mapping.suffix()));
    let rootfs = base.join("rootfs");
    if rootfs.is_dir() {
        tracing::info!(base = %base.display(), "container base cached");
        return Ok(rootfs);
    }
    tracing::info!(base = %base.display(), "container base not cached: unpacking");
    progress.step("unpacking the image (once per image)");
    let staging = dir.join(format!(".{key}-{}.unpacking", mapping.suffix()));
    let _ = std::fs::remove_dir_all(&staging);
    let result = unpack(runner, &tarball, &staging.join("rootfs"), mapping);
    progress.done();
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    std::fs::rename(&staging, &base)
        .map_err(|e| Error::io(format!("publishing {}", base.display()), e))?;
    Ok(rootfs)
}

/// The note of an `images:` base, written once its files are verified (a refused download
/// leaves no note behind). Its files are named by their SHA-256 from the products file, as
/// `simplestreams::fetch` caches them.
fn note_simplestreams(
    dir: &Path,
    key: &str,
    name: &str,
    server: &str,
    selection: &simplestreams::Selection,
) -> Result<(), Error> {
    let file = |item: &simplestreams::Item, ext: &str| -> Result<String, Error> {
        let sum = Checksum::try_from(format!("sha256:{}", item.sha256)).map_err(Error::Usage)?;
        Ok(fetch::cache_key(&sum, ext))
    };
    BaseNote {
        name: name.into(),
        checksum: format!("fp:{}", selection.fingerprint),
        url: format!("{server}/{}", selection.rootfs.path),
        files: vec![
            file(&selection.rootfs, ".tar.xz")?,
            file(&selection.metadata, ".meta.tar.xz")?,
        ],
    }
    .write_once(dir, key)
}

fn unpack(
    runner: &dyn Runner,
    tarball: &Path,
    rootfs: &Path,
    mapping: Mapping,
) -> Result<(), Error> {
    std::fs::create_dir_all(rootfs)
        .map_err(|e| Error::io(format!("creating {}", rootfs.display()), e))?;
    let cmd = match mapping {
        Mapping::Host => Cmd::new("tar").package("tar"),
        Mapping::Shifted { uid, gid } => {
            // The rootfs directory belongs to the container's root; tar then runs as that root
            // inside a user namespace, so every file lands shifted, device nodes excepted.
            nix::unistd::chown(rootfs, Some(uid.into()), Some(gid.into()))
                .map_err(|e| Error::io("chowning the base rootfs", e.into()))?;
            Cmd::new("lxc-usernsexec")
                .package("lxc")
                .arg("-m")
                .arg(format!("u:0:{uid}:65536"))
                .arg("-m")
                .arg(format!("g:0:{gid}:65536"))
                .args(["--", "tar"])
        }
    };
    let cmd = cmd
        .args(["--numeric-owner", "--xattrs", "--xattrs-include=*", "-xpJf"])
        .arg(tarball)
        .arg("-C")
        .arg(rootfs);
    runner.run(&cmd).map(|_| ()).map_err(|e| {
        Error::failed(
            format!("unpacking {} failed: {e}", tarball.display()),
            "check that the image is a rootfs tarball (tar.xz)",
        )
    })
}
