//! The VM disk: the tree in one ext4 partition of an MBR disk with extlinux, so libvirt boots
//! it like any cloud image, with no kernel passed from outside; packed as compressed qcow2.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use nox_core::host::{Cmd, Runner};
use nox_core::{Error, Result};

const MIB: u64 = 1 << 20;

/// Builds `dest` (qcow2) from `tree`, using `work` for the raw disk and its mount point.
pub fn build_qcow2(runner: &dyn Runner, tree: &Path, work: &Path, dest: &Path) -> Result<()> {
    // The tree plus 1 GiB of room, rounded to MiB; a VM grows it to its --disk anyway.
    let size = (tree_bytes(runner, tree)? + 1024 * MIB).div_ceil(MIB) * MIB;
    let raw = work.join("disk.raw");
    fs::File::create(&raw)
        .and_then(|f| f.set_len(size))
        .map_err(|e| Error::io(format!("creating {}", raw.display()), e))?;
    // One bootable Linux partition from 1 MiB to the end: syslinux's mbr.bin chain-loads the
    // active partition.
    runner.run_with_input(
        &Cmd::new("sfdisk")
            .package("fdisk")
            .args(["--quiet", "--label", "dos"])
            .arg(&raw),
        b"start=2048, type=83, bootable\n",
    )?;
    // Mapped by offset: `losetup -P` makes no partition nodes in some containers and hosts.
    let loop_dev = runner
        .run(
            &Cmd::new("losetup")
                .package("mount")
                .args(["--find", "--show", "--offset", &MIB.to_string()])
                .args(["--sizelimit", &(size - MIB).to_string()])
                .arg(&raw),
        )?
        .stdout_text()
        .trim()
        .to_string();
    let loop_guard = Undo(runner, Cmd::new("losetup").args(["-d", &loop_dev]));
    // Syslinux cannot read ext4's 64bit layout; the disk is far below where that matters.
    runner.run(
        &Cmd::new("mkfs.ext4")
            .package("e2fsprogs")
            .args(["-q", "-L", "root", "-O", "^64bit"])
            .arg(&loop_dev),
    )?;
    let mnt = work.join("mnt");
    fs::create_dir_all(&mnt).map_err(|e| Error::io(format!("creating {}", mnt.display()), e))?;
    runner.run(&Cmd::new("mount").arg(&loop_dev).arg(&mnt))?;
    let mount_guard = Undo(runner, Cmd::new("umount").arg(&mnt));
    // `cp -a` keeps owners, modes, hard links, xattrs and ACLs.
    runner.run(
        &Cmd::new("cp")
            .arg("-a")
            .arg(format!("{}/.", tree.display()))
            .arg(&mnt),
    )?;
    runner.run(
        &Cmd::new("extlinux")
            .package("extlinux")
            .arg("--install")
            .arg(mnt.join("boot/extlinux")),
    )?;
    drop(mount_guard);
    drop(loop_guard);
    let _ = fs::remove_dir(&mnt);
    write_mbr(&raw)?;
    runner.run(
        &Cmd::new("qemu-img")
            .package("qemu-utils")
            .args(["convert", "-c", "-O", "qcow2"])
            .arg(&raw)
            .arg(dest),
    )?;
    fs::remove_file(&raw).map_err(|e| Error::io(format!("removing {}", raw.display()), e))
}

/// Syslinux's boot code into the first 440 bytes (the partition table follows).
fn write_mbr(raw: &Path) -> Result<()> {
    let mbr = ["/usr/lib/syslinux/mbr/mbr.bin", "/usr/lib/EXTLINUX/mbr.bin"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::failed(
                "syslinux's mbr.bin is missing",
                "install it: apt-get install syslinux-common",
            )
        })?;
    let code = fs::read(&mbr).map_err(|e| Error::io(format!("reading {}", mbr.display()), e))?;
    let mut disk = fs::OpenOptions::new()
        .write(true)
        .open(raw)
        .map_err(|e| Error::io(format!("opening {}", raw.display()), e))?;
    disk.write_all(&code[..440.min(code.len())])
        .and_then(|_| disk.sync_all())
        .map_err(|e| Error::io(format!("writing the boot code into {}", raw.display()), e))
}

/// Bytes under `dir` on its filesystem (close enough to size a disk).
fn tree_bytes(runner: &dyn Runner, dir: &Path) -> Result<u64> {
    let out = runner
        .run(&Cmd::new("du").args(["-s", "-B1", "-x"]).arg(dir))?
        .stdout_text();
    out.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| Error::failed(format!("du printed {out:?}"), "report this as a bug"))
}

/// A command run on drop: unmount, detach. Errors are ignored there: the build already
/// failed or is done.
struct Undo<'a>(&'a dyn Runner, Cmd);

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.0.run(&self.1) {
            tracing::warn!("{}: {e}", self.1.display());
        }
    }
}
