//! The container rootfs: the tree shaped like the LXC image server's images, packed as the
//! rootfs tarball nox's container backends unpack.

use std::path::Path;

use nox_core::host::{Cmd, Runner};
use nox_core::{Error, Result};

use crate::recipe::{
    CONTAINER_FSTAB, CONTAINER_MASKED_UNITS, CONTAINER_NETWORK, SSH_HOSTKEYS_UNIT,
};
use crate::tree;

/// No filesystems of its own to mount, and the kernel mounts an unprivileged container cannot
/// make masked. The tree keeps cloud-init (a step a caller may pack as it is).
pub fn shape(tree_dir: &Path) -> Result<()> {
    tree::write(tree_dir, "etc/fstab", CONTAINER_FSTAB, 0o644)?;
    for unit in CONTAINER_MASKED_UNITS {
        let link = tree_dir.join("etc/systemd/system").join(unit);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("/dev/null", &link)
            .map_err(|e| Error::io(format!("masking {unit}"), e))?;
    }
    Ok(())
}

/// Without cloud-init, with systemd-networkd and first-boot SSH host keys, as LXC's images
/// are: nox provisions a container's user itself.
pub fn without_cloud_init(runner: &dyn Runner, tree_dir: &Path) -> Result<()> {
    runner.run(
        &Cmd::new("chroot")
            .arg(tree_dir)
            .args(["dpkg", "--purge", "cloud-init"]),
    )?;
    tree::write(
        tree_dir,
        "etc/systemd/network/80-nox-eth0.network",
        CONTAINER_NETWORK,
        0o644,
    )?;
    tree::write(
        tree_dir,
        "etc/systemd/system/nox-ssh-hostkeys.service",
        SSH_HOSTKEYS_UNIT,
        0o644,
    )?;
    for args in [
        &[
            "enable",
            "systemd-networkd.service",
            "nox-ssh-hostkeys.service",
        ][..],
        &["disable", "networking.service"][..],
    ] {
        runner.run(&Cmd::new("chroot").arg(tree_dir).arg("systemctl").args(args))?;
    }
    Ok(())
}

/// Packs the tree as `dest`. Numeric owners and xattrs (file capabilities such as ping's)
/// survive the round trip. /dev stays empty, as in LXC's own images: LXC mounts a fresh one,
/// and device nodes cannot be made when an unprivileged container's rootfs is unpacked.
pub fn pack(runner: &dyn Runner, tree_dir: &Path, dest: &Path) -> Result<()> {
    tar_xz(runner, tree_dir, &["--exclude=./dev/*", "."], dest)
}

/// `tar` through `xz -T0 -3`: every CPU, and a level that packs a rootfs in seconds rather
/// than minutes for a few percent more bytes.
pub fn tar_xz(runner: &dyn Runner, dir: &Path, members: &[&str], dest: &Path) -> Result<()> {
    runner
        .run(
            &Cmd::new("tar")
                .package("tar")
                .args(["--numeric-owner", "--xattrs", "--xattrs-include=*"])
                .args(["--use-compress-program", "xz -T0 -3"])
                .arg("-C")
                .arg(dir)
                .arg("-cpf")
                .arg(dest)
                .args(members),
        )
        .map(|_| ())
}
