//! `cargo xtask test-image`: the Debian 12 guest nox's live tests boot, built from Debian
//! packages only (machines of this kind cannot download cloud images, but reach the mirror).
//!
//! One debootstrap tree becomes:
//! - `debian-12-test.qcow2`: a bootable disk with its own bootloader (extlinux), so libvirt
//!   boots it like any cloud image, with no kernel passed from outside;
//! - `rootfs.tar.xz` + `meta.tar.xz`: an LXC image in the format `lxc-create -t local` takes;
//! - `nox.toml`: declares both as image `debian-12-test`, with their checksums. Its absolute
//!   path is the last line printed, for `NOX_CONFIG=$(cargo xtask test-image | tail -n1)`.
//!
//! Outputs are cached under `/var/cache/nox/test-image/<recipe hash>/` (or
//! `$NOX_TEST_IMAGE_DIR`), keyed by a hash of the recipe: the package list, every file written
//! into the tree, the kernel command line, the LXC metadata, and [`RECIPE_VERSION`] for the
//! build steps themselves. An unchanged recipe costs a few seconds.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::util::{output, sh};

/// Bump when a build step changes what the outputs contain (partitioning, filesystem options,
/// packing); the data below is hashed on its own.
const RECIPE_VERSION: u32 = 2;

/// What the tree holds beyond debootstrap's minbase. python3-cffi-backend: without it
/// debootstrap leaves python3-cryptography, and so cloud-init, unconfigured.
/// cloud-guest-utils: growpart, so cloud-init grows the root partition to the VM's disk.
const PACKAGES: &[&str] = &[
    "systemd-sysv",
    "linux-image-amd64",
    "cloud-init",
    "cloud-guest-utils",
    "openssh-server",
    "qemu-guest-agent",
    "ifupdown",
    "isc-dhcp-client",
    "python3-cffi-backend",
    "iproute2",
    "sudo",
    "locales",
    "ca-certificates",
    "netbase",
    "dbus",
];

/// The kernel command line. `net.ifnames=0`: cloud-init's ENI renderer on Debian 12 writes a
/// stanza for `eth0`, so the NIC must be called that, not `enp1s0`.
const KERNEL_CMDLINE: &str = "root=LABEL=root ro console=ttyS0 net.ifnames=0";

/// LXC image metadata: LXC's generic common config, plus its userns config for unprivileged
/// containers (`lxc-create -t local` picks `config-user` for those). Debian 12's liblxc ships
/// only the generic files; per-distribution ones live in the optional lxc-templates package.
const LXC_CONFIG: &str = "lxc.include = LXC_TEMPLATE_CONFIG/common.conf\nlxc.arch = x86_64\n";
const LXC_CONFIG_USER: &str = "lxc.include = LXC_TEMPLATE_CONFIG/common.conf\nlxc.arch = x86_64\n\
                               lxc.include = LXC_TEMPLATE_CONFIG/userns.conf\n";

/// A container mounts no filesystems of its own: the VM's `LABEL=root` line would fail
/// systemd-remount-fs, and unprivileged containers cannot mount debugfs or tracefs, so those
/// units are masked, as LXC's own images do.
const LXC_FSTAB: &str = "# LXC mounts the container's filesystems.\n";
const LXC_MASKED_UNITS: &[&str] = &["sys-kernel-debug.mount", "sys-kernel-tracing.mount"];

/// The minimal container image is shaped like LXC's own Debian images, the real default path
/// for containers: no cloud-init (nox provisions the user itself), systemd-networkd instead of
/// ifupdown (boot does not wait for a DHCP lease), SSH host keys made on first boot.
const MINIMAL_NETWORK: &str = "[Match]\nName=eth0\n\n[Network]\nDHCP=ipv4\n";
const SSH_HOSTKEYS_UNIT: &str = "[Unit]\nDescription=Create SSH host keys on first boot\n\
Before=ssh.service\nConditionPathExists=!/etc/ssh/ssh_host_ed25519_key\n\n\
[Service]\nType=oneshot\nExecStart=/usr/bin/ssh-keygen -A\n\n\
[Install]\nWantedBy=multi-user.target\n";

pub const IMAGE_NAME: &str = "debian-12-test";
pub const MINIMAL_IMAGE_NAME: &str = "debian-12-test-minimal";
const ROOTFS_MINIMAL: &str = "rootfs-minimal.tar.xz";
const QCOW2: &str = "debian-12-test.qcow2";
const ROOTFS: &str = "rootfs.tar.xz";
const META: &str = "meta.tar.xz";
const NOX_TOML: &str = "nox.toml";

/// Files written into the tree, as (path, mode, contents).
const TREE_FILES: &[(&str, u32, &str)] = &[
    ("etc/hostname", 0o644, "debian\n"),
    (
        "etc/hosts",
        0o644,
        "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n",
    ),
    (
        "etc/fstab",
        0o644,
        "LABEL=root\t/\text4\terrors=remount-ro\t0\t1\n",
    ),
    // Keep Debian's `source` line: cloud-init writes the NIC's stanza into interfaces.d, and
    // without the line the NIC stays down.
    (
        "etc/network/interfaces",
        0o644,
        "source /etc/network/interfaces.d/*\n\nauto lo\niface lo inet loopback\n",
    ),
    (
        "etc/cloud/cloud.cfg.d/90-nox-test-image.cfg",
        0o644,
        "# nox test image: seeds come from NoCloud (a CIDATA disk, or a seed directory).\n\
         datasource_list: [NoCloud, None]\n\
         # The locale module needs generated locales; C.UTF-8 is built in.\n\
         locale: false\n",
    ),
];

/// `cargo xtask test-image`: builds or reuses the image, and prints its nox.toml path last.
pub fn run() -> Result<()> {
    let config = build()?;
    println!("{}", config.display());
    Ok(())
}

/// Builds the image unless this recipe is cached; returns the path of its nox.toml.
pub fn build() -> Result<PathBuf> {
    let root = cache_root();
    let recipe = recipe_hash();
    let out = root.join(&recipe);
    let outputs = [QCOW2, ROOTFS, ROOTFS_MINIMAL, META, NOX_TOML];
    if outputs.iter().all(|f| out.join(f).is_file()) {
        eprintln!("test-image: recipe {recipe} is cached in {}", out.display());
        return Ok(out.join(NOX_TOML));
    }
    let started = Instant::now();
    fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    prune_stale(&root, &recipe);
    let work = Workdir::new(root.join(format!("{recipe}.building-{}", std::process::id())))?;
    let tree = work.path.join("tree");
    let steps = 6;
    let step = |n: usize, what: &str| {
        eprintln!(
            "test-image: [{n}/{steps}] {what} ({}s elapsed)",
            started.elapsed().as_secs()
        )
    };

    step(
        1,
        "debootstrap Debian 12 from the host's mirror (about 2 to 4 minutes)",
    );
    debootstrap(&tree)?;
    step(
        2,
        "configuring the tree for cloud-init, NoCloud and a serial console",
    );
    configure_tree(&tree)?;
    step(3, "building the bootable disk (ext4, extlinux, MBR)");
    build_qcow2(&tree, &work.path)?;
    step(
        4,
        "packing the LXC images (rootfs.tar.xz, rootfs-minimal.tar.xz, meta.tar.xz)",
    );
    build_lxc_image(&tree, &work.path)?;
    build_minimal_lxc_image(&tree, &work.path)?;
    fs::remove_dir_all(&tree).context("removing the build tree")?;
    step(5, "checksums and nox.toml");
    write_nox_toml(&work.path, &out)?;
    step(6, "publishing");
    // Appear complete or not at all: a killed build leaves only a *.building-* directory,
    // which the next run prunes.
    fs::rename(&work.path, &out).with_context(|| format!("publishing {}", out.display()))?;
    work.keep();
    eprintln!(
        "test-image: built recipe {recipe} in {}s: {}",
        started.elapsed().as_secs(),
        out.display()
    );
    Ok(out.join(NOX_TOML))
}

pub fn cache_root() -> PathBuf {
    std::env::var_os("NOX_TEST_IMAGE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/nox/test-image"))
}

/// The first 16 hex digits of SHA-256 over everything that decides the outputs.
pub fn recipe_hash() -> String {
    let recipe = format!(
        "{RECIPE_VERSION}\n{PACKAGES:?}\n{KERNEL_CMDLINE}\n{TREE_FILES:?}\n{LXC_CONFIG}\n{LXC_CONFIG_USER}\n{LXC_FSTAB}\n{LXC_MASKED_UNITS:?}\n{MINIMAL_NETWORK}\n{SSH_HOSTKEYS_UNIT}"
    );
    hex::encode(Sha256::digest(recipe.as_bytes()))[..16].to_string()
}

/// Removes outputs of other recipes and half-built directories: each holds about 1 GB.
fn prune_stale(root: &Path, keep: &str) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name != keep && e.path().is_dir() {
            eprintln!("test-image: removing stale {}", e.path().display());
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

fn debootstrap(tree: &Path) -> Result<()> {
    let mirror = crate::setup::host_debian_mirror()?;
    sh(Command::new("debootstrap")
        .arg("--variant=minbase")
        .arg(format!("--include={}", PACKAGES.join(",")))
        .args(["bookworm"])
        .arg(tree)
        .arg(&mirror))
}

fn configure_tree(tree: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for (path, mode, text) in TREE_FILES {
        let p = tree.join(path);
        fs::create_dir_all(p.parent().unwrap())?;
        fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(*mode))?;
    }
    // Every instance must get its own machine-id and SSH host keys: clear ours, so systemd
    // and cloud-init make new ones on first boot.
    fs::write(tree.join("etc/machine-id"), "")?;
    let _ = fs::remove_file(tree.join("var/lib/dbus/machine-id"));
    for e in fs::read_dir(tree.join("etc/ssh"))?.flatten() {
        if e.file_name().to_string_lossy().starts_with("ssh_host_") {
            fs::remove_file(e.path())?;
        }
    }
    // Package caches are a third of a minbase tree and useless in a guest.
    for dir in ["var/cache/apt/archives", "var/lib/apt/lists"] {
        for e in fs::read_dir(tree.join(dir))?.flatten() {
            if e.path().is_file() {
                fs::remove_file(e.path())?;
            }
        }
    }
    // extlinux reads its config from the partition; the kernel and initrd names carry the
    // version debootstrap installed.
    let boot = tree.join("boot");
    let find = |prefix: &str| -> Result<String> {
        let mut names: Vec<String> = fs::read_dir(&boot)?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(prefix))
            .collect();
        names.sort();
        names
            .pop()
            .with_context(|| format!("no /boot/{prefix}* in the tree"))
    };
    let (kernel, initrd) = (find("vmlinuz-")?, find("initrd.img-")?);
    fs::create_dir_all(boot.join("extlinux"))?;
    fs::write(
        boot.join("extlinux/extlinux.conf"),
        format!(
            "DEFAULT debian\nTIMEOUT 0\nPROMPT 0\n\nLABEL debian\n  KERNEL /boot/{kernel}\n  \
             INITRD /boot/{initrd}\n  APPEND {KERNEL_CMDLINE}\n"
        ),
    )?;
    Ok(())
}

/// Size of everything under `dir`, in bytes (apparent sizes; close enough to size a disk).
fn tree_bytes(dir: &Path) -> Result<u64> {
    let out = output(Command::new("du").args(["-s", "-B1", "-x"]).arg(dir))?;
    out.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .context("parsing du output")
}

fn build_qcow2(tree: &Path, work: &Path) -> Result<()> {
    const MIB: u64 = 1 << 20;
    // The tree plus 1 GiB of room, rounded to MiB; a VM grows it to its --disk anyway.
    let size = (tree_bytes(tree)? + 1024 * MIB).div_ceil(MIB) * MIB;
    let raw = work.join("disk.raw");
    fs::File::create(&raw)?.set_len(size)?;
    // One bootable Linux partition from 1 MiB to the end, in an MBR: syslinux's mbr.bin
    // chain-loads the active partition.
    let mut sfdisk = Command::new("sfdisk")
        .args(["--quiet", "--label", "dos"])
        .arg(&raw)
        .stdin(Stdio::piped())
        .spawn()
        .context("running sfdisk")?;
    sfdisk
        .stdin
        .take()
        .unwrap()
        .write_all(b"start=2048, type=83, bootable\n")?;
    if !sfdisk.wait()?.success() {
        bail!("sfdisk failed to partition {}", raw.display());
    }
    // `losetup -P` makes no partition nodes on this kind of host: map the partition by offset.
    let loop_dev = output(
        Command::new("losetup")
            .args(["--find", "--show", "--offset", &MIB.to_string()])
            .args(["--sizelimit", &(size - MIB).to_string()])
            .arg(&raw),
    )?
    .trim()
    .to_string();
    let loop_guard = LoopDevice(loop_dev.clone());
    // Syslinux cannot read ext4's 64bit layout; the disk is far below where that matters.
    sh(Command::new("mkfs.ext4")
        .args(["-q", "-L", "root", "-O", "^64bit"])
        .arg(&loop_dev))?;
    let mnt = work.join("mnt");
    fs::create_dir_all(&mnt)?;
    sh(Command::new("mount").arg(&loop_dev).arg(&mnt))?;
    let mount_guard = Mount(mnt.clone());
    sh(Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", tree.display()))
        .arg(&mnt))?;
    sh(Command::new("extlinux")
        .arg("--install")
        .arg(mnt.join("boot/extlinux")))?;
    drop(mount_guard);
    drop(loop_guard);
    fs::remove_dir(&mnt)?;
    let mbr = ["/usr/lib/syslinux/mbr/mbr.bin", "/usr/lib/EXTLINUX/mbr.bin"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .context("syslinux's mbr.bin not found: install syslinux-common")?;
    let code = fs::read(mbr)?;
    let mut disk = fs::OpenOptions::new().write(true).open(&raw)?;
    disk.write_all(&code[..440.min(code.len())])?;
    disk.sync_all()?;
    drop(disk);
    sh(Command::new("qemu-img")
        .args(["convert", "-c", "-O", "qcow2"])
        .arg(&raw)
        .arg(work.join(QCOW2)))?;
    fs::remove_file(&raw)?;
    Ok(())
}

fn build_lxc_image(tree: &Path, work: &Path) -> Result<()> {
    // The disk image is built; from here the tree becomes a container's.
    fs::write(tree.join("etc/fstab"), LXC_FSTAB)?;
    for unit in LXC_MASKED_UNITS {
        let link = tree.join("etc/systemd/system").join(unit);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink("/dev/null", &link)?;
    }
    // Numeric owners and xattrs (file capabilities such as ping's) survive the round trip.
    // /dev stays empty, as in LXC's own images: LXC mounts a fresh one, and device nodes
    // cannot be created when an unprivileged container's rootfs is unpacked.
    tar_xz(tree, &["--exclude=./dev/*", "."], &work.join(ROOTFS))?;
    let meta = work.join("meta");
    fs::create_dir_all(meta.join("templates"))?;
    fs::write(meta.join("config"), LXC_CONFIG)?;
    fs::write(meta.join("config-user"), LXC_CONFIG_USER)?;
    fs::write(
        meta.join("create-message"),
        "nox test image (Debian 12, built from packages by `cargo xtask test-image`).\n",
    )?;
    let expiry = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        + 10 * 365 * 24 * 3600;
    fs::write(meta.join("expiry"), format!("{expiry}\n"))?;
    tar_xz(
        &meta,
        &[
            "config",
            "config-user",
            "create-message",
            "expiry",
            "templates",
        ],
        &work.join(META),
    )?;
    fs::remove_dir_all(&meta)?;
    Ok(())
}

/// The container tree made minimal in place (it is the last use of the tree).
fn build_minimal_lxc_image(tree: &Path, work: &Path) -> Result<()> {
    sh(Command::new("chroot")
        .arg(tree)
        .args(["dpkg", "--purge", "cloud-init"])
        .stdout(Stdio::null()))?;
    fs::write(
        tree.join("etc/systemd/network/80-nox-eth0.network"),
        MINIMAL_NETWORK,
    )?;
    fs::write(
        tree.join("etc/systemd/system/nox-ssh-hostkeys.service"),
        SSH_HOSTKEYS_UNIT,
    )?;
    for args in [
        &[
            "enable",
            "systemd-networkd.service",
            "nox-ssh-hostkeys.service",
        ][..],
        &["disable", "networking.service"][..],
    ] {
        sh(Command::new("chroot")
            .arg(tree)
            .arg("systemctl")
            .args(args)
            .stderr(Stdio::null()))?;
    }
    tar_xz(
        tree,
        &["--exclude=./dev/*", "."],
        &work.join(ROOTFS_MINIMAL),
    )
}

fn tar_xz(dir: &Path, members: &[&str], dest: &Path) -> Result<()> {
    let file = fs::File::create(dest)?;
    let mut tar = Command::new("tar")
        .args(["--numeric-owner", "--xattrs", "--xattrs-include=*", "-C"])
        .arg(dir)
        .args(["-cpf", "-"])
        .args(members)
        .stdout(Stdio::piped())
        .spawn()
        .context("running tar")?;
    let mut xz = Command::new("xz")
        .args(["-T0", "-3", "-c"])
        .stdin(tar.stdout.take().unwrap())
        .stdout(file)
        .spawn()
        .context("running xz")?;
    let (t, x) = (tar.wait()?, xz.wait()?);
    if !t.success() || !x.success() {
        bail!("packing {} failed (tar {t}, xz {x})", dest.display());
    }
    Ok(())
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut f = fs::File::open(path)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

/// Writes nox.toml into `work`, naming the files at their final place, `out`.
fn write_nox_toml(work: &Path, out: &Path) -> Result<()> {
    let qcow2 = sha256_file(&work.join(QCOW2))?;
    let rootfs = sha256_file(&work.join(ROOTFS))?;
    let minimal = sha256_file(&work.join(ROOTFS_MINIMAL))?;
    let text = format!(
        "# Generated by `cargo xtask test-image` (recipe {recipe}).\n\
         # Use it with NOX_CONFIG={toml}\n\
         # The LXC image's metadata ({META}) sits beside its rootfs.\n\n\
         [images.{IMAGE_NAME}.vm]\nurl = \"{qcow2_path}\"\nchecksum = \"sha256:{qcow2}\"\n\n\
         [images.{IMAGE_NAME}.lxc]\nurl = \"{rootfs_path}\"\nchecksum = \"sha256:{rootfs}\"\n\n\
         # Shaped like LXC's own images: no cloud-init, systemd-networkd.\n\
         [images.{MINIMAL_IMAGE_NAME}.lxc]\nurl = \"{minimal_path}\"\nchecksum = \"sha256:{minimal}\"\n",
        recipe = recipe_hash(),
        toml = out.join(NOX_TOML).display(),
        qcow2_path = out.join(QCOW2).display(),
        rootfs_path = out.join(ROOTFS).display(),
        minimal_path = out.join(ROOTFS_MINIMAL).display(),
    );
    fs::write(work.join(NOX_TOML), text)?;
    Ok(())
}

/// The build directory; removed on drop unless the build was published.
struct Workdir {
    path: PathBuf,
    keep: std::cell::Cell<bool>,
}

impl Workdir {
    fn new(path: PathBuf) -> Result<Self> {
        fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Workdir {
            path,
            keep: std::cell::Cell::new(false),
        })
    }
    fn keep(&self) {
        self.keep.set(true);
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        if !self.keep.get() {
            // Never remove_dir_all through a live mount: unmount anything still mounted below.
            let _ = Command::new("umount")
                .arg("-R")
                .arg(self.path.join("mnt"))
                .status();
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

struct LoopDevice(String);

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}
