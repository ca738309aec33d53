//! `cargo xtask setup`: bring a fresh Debian 12 host to the state nox needs, idempotently.
//!
//! 1. Packages. qemu and libvirt come from bookworm-backports so they match the qemu-utils
//!    this machine kind ships preinstalled from there (Debian 12's own qemu 7.2 conflicts with
//!    it). The backports suite is added on the mirror the host already uses: never a
//!    hard-coded one.
//! 2. root's subordinate id ranges, which unprivileged LXC containers map into.
//! 3. Daemons. Machines of this kind run no init system, so nothing starts libvirtd, virtlogd
//!    or lxc-net for us; each is started only when it is not already running.
//! 4. The S3 test server: moto (server mode, which checks SigV4 signatures), pinned, in its
//!    own virtualenv under /var/cache/nox; the S3 live tests start it on 127.0.0.1.
//! 5. cargo-fuzz, for `cargo xtask fuzz` (it builds libFuzzer's C++, hence g++).
//! 6. virtiofsd, which VM shared folders need: Debian 12 packages none (trixie does), so it
//!    is built from crates.io, pinned, into /usr/local/bin.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::util::{have_program, output, sh};

/// Packages taken from bookworm-backports: they must match the preinstalled qemu-utils.
const BACKPORTS_PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "libvirt-daemon-system",
    "libvirt-clients",
    "libvirt-dev",
    "passt",
    // The Ubuntu archive's keys, for `build:ubuntu/...` images (bookworm's own is older
    // than Ubuntu 24.04's signing key).
    "ubuntu-keyring",
];

/// Packages from the base suite.
const BASE_PACKAGES: &[&str] = &[
    // nox-lxc links liblxc; lxc-sys runs bindgen, which needs libclang.
    "lxc",
    "lxc-dev",
    "libclang-dev",
    "pkg-config",
    "uidmap",
    // lxc-net's bridge runs dnsmasq and sets up NAT with iptables.
    "dnsmasq-base",
    "iptables",
    // nox forward: DNAT for containers and bridged VMs, in nox's own nftables table.
    "nftables",
    // Image builds (`nox image build`, `cargo xtask test-image`). nox writes cloud-init
    // seeds itself.
    "debootstrap",
    "extlinux",
    "syslinux-common",
    "fdisk",
    "e2fsprogs",
    "xz-utils",
    "zstd",
    "openssh-client",
    // The S3 test server's virtualenv.
    "python3-venv",
    // libfuzzer-sys compiles libFuzzer (C++) for `cargo xtask fuzz`.
    "g++",
    // virtiofsd (VM shared folders) links them; Debian 12 has no virtiofsd package.
    "libseccomp-dev",
    "libcap-ng-dev",
];

/// Where `cargo xtask setup` installs moto, and the version it pins. The live tests look here.
pub const MOTO_VENV: &str = "/var/cache/nox/moto";
const MOTO_REQUIREMENT: &str = "moto[server]==5.1.18";

const BACKPORTS_LIST: &str = "/etc/apt/sources.list.d/nox-bookworm-backports.sources";

pub fn run() -> Result<()> {
    check_debian_12()?;
    install_packages()?;
    ensure_subids()?;
    start_daemons()?;
    ensure_moto()?;
    ensure_cargo_fuzz()?;
    ensure_virtiofsd()?;
    eprintln!("xtask: setup complete");
    Ok(())
}

fn check_debian_12() -> Result<()> {
    let os = fs::read_to_string("/etc/os-release").context("reading /etc/os-release")?;
    let field = |key: &str| {
        os.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_default()
    };
    if field("ID") != "debian" || field("VERSION_ID") != "12" {
        bail!(
            "cargo xtask setup automates Debian 12 (bookworm) only; this host is {} {}. \
             Install the packages listed in docs/testing.md by hand.",
            field("ID"),
            field("VERSION_ID")
        );
    }
    if !nix_is_root() {
        bail!("cargo xtask setup installs packages and starts daemons: run it as root");
    }
    Ok(())
}

/// Installs the pinned moto into its virtualenv, unless that exact version is there already.
fn ensure_moto() -> Result<()> {
    let venv = Path::new(MOTO_VENV);
    let version = MOTO_REQUIREMENT.rsplit("==").next().unwrap_or_default();
    let have = Command::new(venv.join("bin/python"))
        .args([
            "-c",
            "import importlib.metadata as m; print(m.version('moto'))",
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == version)
        .unwrap_or(false);
    if have && venv.join("bin/moto_server").is_file() {
        eprintln!("xtask: moto {version} already installed in {MOTO_VENV}");
        return Ok(());
    }
    // Debian's own python3: the venv must not depend on a user's pyenv or conda.
    let python = if Path::new("/usr/bin/python3").is_file() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    sh(Command::new(python).args(["-m", "venv", "--clear", MOTO_VENV]))?;
    sh(Command::new(venv.join("bin/pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        MOTO_REQUIREMENT,
    ]))
}

/// Installs cargo-fuzz with the versions its lock file pins, unless it is there already.
fn ensure_cargo_fuzz() -> Result<()> {
    let have = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if have {
        eprintln!("xtask: cargo-fuzz already installed");
        return Ok(());
    }
    sh(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))
}

/// The virtiofsd `cargo xtask setup` builds, where nox-libvirt looks for one.
const VIRTIOFSD_VERSION: &str = "1.14.0";

/// Installs virtiofsd into /usr/local/bin unless the host has one (a distribution's package
/// puts it in /usr/libexec).
fn ensure_virtiofsd() -> Result<()> {
    let have = ["/usr/libexec/virtiofsd", "/usr/local/bin/virtiofsd"]
        .iter()
        .any(|p| Path::new(p).is_file());
    if have {
        eprintln!("xtask: virtiofsd already installed");
        return Ok(());
    }
    sh(Command::new("cargo").args([
        "install",
        "virtiofsd",
        "--locked",
        "--version",
        VIRTIOFSD_VERSION,
        "--root",
        "/usr/local",
    ]))
}

fn nix_is_root() -> bool {
    // xtask keeps its dependencies few, so read the real uid from /proc rather than pull in nix.
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|v| v.split_whitespace().next() == Some("0"))
        })
        .unwrap_or(false)
}

fn is_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn install_packages() -> Result<()> {
    let missing_bpo: Vec<&str> = BACKPORTS_PACKAGES
        .iter()
        .copied()
        .filter(|p| !is_installed(p))
        .collect();
    let missing_base: Vec<&str> = BASE_PACKAGES
        .iter()
        .copied()
        .filter(|p| !is_installed(p))
        .collect();
    if missing_bpo.is_empty() && missing_base.is_empty() {
        eprintln!("xtask: all packages already installed");
        return Ok(());
    }
    ensure_backports_source()?;
    let apt = |args: &[&str]| {
        let mut cmd = Command::new("apt-get");
        cmd.env("DEBIAN_FRONTEND", "noninteractive")
            .args(["-y", "-q", "-o", "Dpkg::Options::=--force-confold"])
            .args(args);
        sh(&mut cmd)
    };
    apt(&["update"])?;
    if !missing_bpo.is_empty() {
        let mut args = vec![
            "install",
            "--no-install-recommends",
            "-t",
            "bookworm-backports",
        ];
        args.extend(&missing_bpo);
        apt(&args)?;
    }
    if !missing_base.is_empty() {
        let mut args = vec!["install", "--no-install-recommends"];
        args.extend(&missing_base);
        apt(&args)?;
    }
    Ok(())
}

/// Adds bookworm-backports on the mirror the host's own Debian source names, unless some apt
/// source already carries that suite.
fn ensure_backports_source() -> Result<()> {
    let sources = nox_image::mirror::host_sources();
    if sources
        .lines()
        .any(|l| !l.trim_start().starts_with('#') && l.contains("bookworm-backports"))
    {
        return Ok(());
    }
    let (uri, signed_by) = nox_image::mirror::apt_source(&sources, "bookworm").context(
        "no Debian bookworm source found in /etc/apt/sources.list or /etc/apt/sources.list.d; \
         add one for your mirror and rerun",
    )?;
    let mut stanza = format!(
        "# Added by nox's `cargo xtask setup`: qemu and libvirt matching the preinstalled qemu-utils.\n\
         Types: deb\nURIs: {uri}\nSuites: bookworm-backports\nComponents: main\n"
    );
    if let Some(key) = signed_by {
        stanza.push_str(&format!("Signed-By: {key}\n"));
    }
    fs::write(BACKPORTS_LIST, stanza).with_context(|| format!("writing {BACKPORTS_LIST}"))?;
    eprintln!("xtask: added bookworm-backports from {uri} ({BACKPORTS_LIST})");
    Ok(())
}

fn ensure_subids() -> Result<()> {
    for file in ["/etc/subuid", "/etc/subgid"] {
        let text = fs::read_to_string(file).unwrap_or_default();
        if text.lines().any(|l| l.starts_with("root:")) {
            continue;
        }
        let mut new = text.clone();
        if !new.is_empty() && !new.ends_with('\n') {
            new.push('\n');
        }
        new.push_str("root:100000:65536\n");
        fs::write(file, new).with_context(|| format!("writing {file}"))?;
        eprintln!("xtask: added root:100000:65536 to {file}");
    }
    Ok(())
}

/// lxcbr0 exists and the dnsmasq lxc-net started for it is alive.
fn lxc_net_up() -> bool {
    let pid = fs::read_to_string("/run/lxc/dnsmasq.pid").unwrap_or_default();
    Path::new("/sys/class/net/lxcbr0").exists()
        && !pid.trim().is_empty()
        && fs::read_to_string(Path::new("/proc").join(pid.trim()).join("comm"))
            .is_ok_and(|comm| comm.trim() == "dnsmasq")
}

fn process_running(name: &str) -> bool {
    let Ok(dir) = fs::read_dir("/proc") else {
        return false;
    };
    dir.filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .any(|e| {
            fs::read_to_string(e.path().join("comm"))
                .map(|c| c.trim() == name)
                .unwrap_or(false)
        })
}

fn start_daemons() -> Result<()> {
    for (daemon, socket) in [
        ("virtlogd", "/run/libvirt/virtlogd-sock"),
        ("libvirtd", "/run/libvirt/libvirt-sock"),
    ] {
        if process_running(daemon) {
            eprintln!("xtask: {daemon} already running");
            continue;
        }
        // A daemon killed uncleanly leaves its pid file; the new one refuses to start over it.
        let _ = fs::remove_file(format!("/run/{daemon}.pid"));
        sh(Command::new(daemon).arg("-d"))?;
        wait_for(Path::new(socket), Duration::from_secs(30))
            .with_context(|| format!("{daemon} started but {socket} never appeared"))?;
    }
    if lxc_net_up() {
        eprintln!("xtask: lxc-net already up (lxcbr0, dnsmasq running)");
    } else {
        // A machine restored without its processes keeps lxcbr0 but loses dnsmasq: containers
        // then get no address. `stop` clears the half state so `start` brings up both again.
        let _ = sh(Command::new("/usr/libexec/lxc/lxc-net").arg("stop"));
        sh(Command::new("/usr/libexec/lxc/lxc-net").arg("start"))?;
    }
    if have_program("virsh") {
        // libvirt's `default` NAT network is defined by the package but inactive without an
        // init system. nox starts it on demand too; doing it here keeps doctor green.
        let active = output(Command::new("virsh").args(["-q", "net-list", "--name"]))?;
        if !active.lines().any(|l| l.trim() == "default") {
            sh(Command::new("virsh").args(["net-start", "default"]))?;
        }
    }
    Ok(())
}

fn wait_for(path: &Path, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    while !path.exists() {
        if start.elapsed() > timeout {
            bail!("timed out after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
