//! Container base images: fetched and verified once, then unpacked once per id mapping into
//! `LXCPATH/.nox/images/KEY-MAPPING/rootfs`. Unprivileged bases are unpacked inside the
//! container's user namespace (lxc-usernsexec), so they are shifted once per image, never per
//! container; each container is an overlay on its base.
//!
//! Sources: a rootfs tarball (`https://`, `file://`, a path; verified by checksum), or
//! `images:DIST/RELEASE`, the LXC image server through the `download` template, which checks
//! the server's GPG signatures.

use std::path::{Path, PathBuf};

use nox_core::config::ImageSource;
use nox_core::host::{Cmd, Runner};
use nox_core::{fetch, Error, Progress};

use crate::liblxc::Container;

/// How a base's files are owned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    /// Shifted into root's subordinate range starting here.
    Shifted { uid: u32, gid: u32 },
    /// Host ids (privileged containers).
    Host,
}

impl Mapping {
    fn suffix(self) -> String {
        match self {
            Mapping::Shifted { uid, gid } => format!("u{uid}-g{gid}"),
            Mapping::Host => "host".into(),
        }
    }
}

pub fn images_dir(lxcpath: &Path) -> PathBuf {
    lxcpath.join(".nox/images")
}

/// Returns the base rootfs for `source` under `mapping`, building it if needed.
pub fn ensure_base(
    runner: &dyn Runner,
    lxcpath: &Path,
    source: &ImageSource,
    mapping: Mapping,
    progress: &dyn Progress,
) -> Result<PathBuf, Error> {
    let dir = images_dir(lxcpath);
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    // One builder per image at a time; others wait, then find it built.
    let _guard = nox_core::lock::lock(&dir.join(".lock"))?;

    if let Some(rest) = source.url.strip_prefix("images:") {
        return download_base(&dir, rest, mapping, progress);
    }
    let (tarball, sum) = fetch::fetch_verified(source, &dir, ".tar.xz", progress)?;
    let key = fetch::cache_key(&sum, "");
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

/// `images:DIST/RELEASE`: a base container made once with LXC's `download` template.
fn download_base(
    dir: &Path,
    spec: &str,
    mapping: Mapping,
    progress: &dyn Progress,
) -> Result<PathBuf, Error> {
    let (dist, release) = spec.split_once('/').ok_or_else(|| {
        Error::Usage(format!(
            "images:{spec}: write images:DIST/RELEASE, e.g. images:debian/bookworm"
        ))
    })?;
    let name = format!(
        "{}-{}-{}",
        dist.replace(|c: char| !c.is_ascii_alphanumeric(), "-"),
        release.replace(|c: char| !c.is_ascii_alphanumeric(), "-"),
        mapping.suffix()
    );
    let bases = dir.join("download");
    let rootfs = bases.join(&name).join("rootfs");
    if rootfs.is_dir() {
        return Ok(rootfs);
    }
    std::fs::create_dir_all(&bases).map_err(|e| Error::io("creating the download cache", e))?;
    let c = Container::new(&name, &bases).map_err(Error::from)?;
    if let Mapping::Shifted { uid, gid } = mapping {
        for (k, v) in [
            ("lxc.idmap", format!("u 0 {uid} 65536")),
            ("lxc.idmap", format!("g 0 {gid} 65536")),
        ] {
            c.set_config_item(k, &v).map_err(Error::from)?;
        }
    }
    progress.step(&format!(
        "downloading {dist}/{release} from the LXC image server"
    ));
    let arch = fetch::debian_arch();
    let result = c.create(
        "download",
        &["--dist", dist, "--release", release, "--arch", arch],
    );
    progress.done();
    result.map_err(|e| {
        let _ = std::fs::remove_dir_all(bases.join(&name));
        Error::failed(
            e.to_string(),
            "check the network, or use a local rootfs tarball in [images]",
        )
    })?;
    Ok(rootfs)
}
