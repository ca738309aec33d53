//! `cargo xtask bench incus`: nox on the Incus test cluster, against Incus's own CLI in the
//! same run.
//!
//! 1. `nox create NAME --remote cluster --target member2` to ready (the image already on the
//!    cluster), against `incus launch` of the same image on the same member followed by
//!    Incus's way to wait for it, `incus exec NAME -- systemctl is-system-running --wait`
//!    (asked again while systemd is not yet up to answer).
//!    Both talk to member1's unix socket; runs alternate so drift hits both alike.
//! 2. `nox list --json` over 30 instances, ten on each member, all running: made from a tiny
//!    busybox image so that making them takes seconds, each carrying a nox record.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::harness::stats;
use crate::util::{output, project_root, sh};

const RUNS: usize = 5;
const LIST_INSTANCES: usize = 30;
const LIST_RUNS: usize = 15;
const IMAGE: &str = "debian-12-test-minimal";
const TINY_ALIAS: &str = "nox-bench-tiny";

struct Cluster {
    doc: Value,
    /// nox's config: the cluster over member1's unix socket, and the test image.
    config: PathBuf,
    home: PathBuf,
    nox: PathBuf,
}

impl Cluster {
    fn nox(&self) -> Command {
        let mut c = Command::new(&self.nox);
        c.env("NOX_CONFIG", &self.config)
            .env("HOME", &self.home)
            .env("XDG_DATA_HOME", self.home.join("data"))
            .env("XDG_CACHE_HOME", self.home.join("cache"))
            .stdin(Stdio::null());
        c
    }

    fn member(&self, n: usize) -> &Value {
        &self.doc["members"][n - 1]
    }

    /// The incus CLI on member1's socket.
    fn incus(&self) -> Command {
        let incus_dir = self.member(1)["incus_dir"].as_str().unwrap_or_default();
        let mut c = Command::new("incus");
        c.env("INCUS_DIR", incus_dir)
            .env("INCUS_CONF", self.home.join("incus-cli"))
            .stdin(Stdio::null());
        c
    }
}

pub fn run() -> Result<()> {
    crate::setup::run()?;
    crate::test_image::build()?;
    crate::incus::up()?;
    sh(Command::new("cargo")
        .args(["build", "--release", "--quiet", "-p", "nox-cli"])
        .current_dir(project_root()))?;
    let root = PathBuf::from("/var/lib/nox-bench-incus");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("home"))?;
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(crate::incus::cluster_json())?)?;
    let toml = std::fs::read_to_string(doc["nox_toml"].as_str().context("no nox_toml")?)?;
    let socket = doc["members"][0]["unix_socket"]
        .as_str()
        .context("no socket")?;
    // The same transport as the incus CLI: member1's unix socket.
    let toml = toml
        .lines()
        .map(|l| {
            if l.starts_with("url = \"https://") {
                format!("url = \"unix://{socket}\"")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let config = root.join("nox.toml");
    std::fs::write(&config, toml)?;
    let c = Cluster {
        doc,
        config,
        home: root.join("home"),
        nox: project_root().join("target/release/nox"),
    };
    let result = measure(&c);

    let _ = std::fs::remove_dir_all(&root);
    let down = crate::incus::down();
    result.and(down)
}

fn measure(c: &Cluster) -> Result<()> {
    // Warm: the image is imported (once per image) and member2 has it.
    let warm = "bench-warm";
    ok(c.nox().args(create_args(warm)))?;
    ok(c.nox()
        .args(["delete", "--force", &format!("cluster:{warm}")]))?;
    let alias = image_alias(c)?;

    let (mut nox, mut incus) = (Vec::new(), Vec::new());
    for i in 0..RUNS {
        let name = format!("bench-nox-{i}");
        let t = Instant::now();
        let r = ok(c.nox().args(create_args(&name)));
        nox.push(t.elapsed().as_secs_f64());
        let _ = c
            .nox()
            .args(["delete", "--force", &format!("cluster:{name}")])
            .output();
        r?;

        let name = format!("bench-incus-{i}");
        let t = Instant::now();
        let r = ok(c
            .incus()
            .args(["launch", &alias, &name, "--target", "member2"]))
        .and_then(|_| incus_wait(c, &name));
        incus.push(t.elapsed().as_secs_f64());
        let _ = c.incus().args(["delete", "--force", &name]).output();
        r?;
    }
    let n = stats(
        "nox create --remote cluster --target member2 (to ready)",
        "s",
        nox,
    );
    let b = stats(
        "incus launch --target member2 + systemctl --wait",
        "s",
        incus,
    );
    println!(
        "{:<58} ratio  {:>9.2}x (target <= 1.1x)",
        "nox create / incus launch",
        n / b
    );

    list(c)
}

/// Incus's way to wait for a container to boot: `systemctl is-system-running --wait` through
/// `incus exec`, asked again (every 250 ms, as nox polls) while systemd is not up to answer.
fn incus_wait(c: &Cluster, name: &str) -> Result<std::process::Output> {
    let start = Instant::now();
    loop {
        let out = c
            .incus()
            .args([
                "exec",
                name,
                "--",
                "timeout",
                "120",
                "systemctl",
                "is-system-running",
                "--wait",
            ])
            .output()?;
        let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if state == "running" || state == "degraded" {
            return Ok(out);
        }
        if start.elapsed().as_secs() > 120 {
            bail!("{name} did not boot in 120 s: {state:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

fn create_args(name: &str) -> Vec<String> {
    [
        "create",
        name,
        "--remote",
        "cluster",
        "--target",
        "member2",
        "--backend",
        "lxc",
        "--image",
        IMAGE,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The alias nox imported the test image under.
fn image_alias(c: &Cluster) -> Result<String> {
    let text = output(
        c.incus()
            .args(["image", "alias", "list", "--format", "json"]),
    )?;
    let all: Vec<Value> = serde_json::from_str(&text)?;
    all.iter()
        .filter_map(|a| a["name"].as_str())
        .find(|n| n.starts_with("nox-sha256-"))
        .map(String::from)
        .context("nox did not import the test image")
}

/// 30 running instances from a busybox image, ten per member, each with a nox record; then
/// `nox list --json` timed.
fn list(c: &Cluster) -> Result<()> {
    let dir = tempfile_dir()?;
    tiny_image(c, &dir)?;
    let names: Vec<String> = (0..LIST_INSTANCES)
        .map(|i| format!("bench-list-{i}"))
        .collect();
    let spec = |name: &str| {
        serde_json::json!({
            "name": name, "backend": "lxc", "image": "tiny", "cpus": 1,
            "memory_bytes": 64u64 << 20, "disk_bytes": 0, "network": "default",
            "autostart": false, "user": "nox", "ssh_keys": [], "privileged": false,
            "nesting": false, "tun": true,
        })
        .to_string()
    };
    let made = std::thread::scope(|s| {
        let handles: Vec<_> = names
            .chunks(6)
            .map(|chunk| {
                s.spawn(move || -> Result<()> {
                    for (i, name) in chunk.iter().enumerate() {
                        let member = format!("member{}", (name_index(name) + i) % 3 + 1);
                        ok(c.incus().args([
                            "launch",
                            TINY_ALIAS,
                            name,
                            "--target",
                            &member,
                            "-c",
                            &format!("user.nox.spec={}", spec(name)),
                        ]))?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| bail!("a launch thread panicked"))
            })
            .collect::<Result<Vec<_>>>()
    });
    let result = made.and_then(|_| {
        let mut times = Vec::new();
        for _ in 0..LIST_RUNS {
            let t = Instant::now();
            let out = ok(c.nox().args(["list", "--json"]))?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            let all: Vec<Value> = serde_json::from_slice(&out.stdout)?;
            let listed = all.iter().filter(|i| i["remote"] == "cluster").count();
            let running = all.iter().filter(|i| i["state"] == "running").count();
            if listed != LIST_INSTANCES || running != LIST_INSTANCES {
                bail!("nox list saw {listed} instances ({running} running), not {LIST_INSTANCES}");
            }
        }
        let m = stats(
            &format!("nox list --json, {LIST_INSTANCES} instances on 3 members"),
            "ms",
            times,
        );
        println!(
            "{:<58} {}",
            "",
            if m <= 300.0 {
                "within 300 ms"
            } else {
                "OVER 300 ms"
            }
        );
        Ok(())
    });
    std::thread::scope(|s| {
        for chunk in names.chunks(6) {
            s.spawn(move || {
                for n in chunk {
                    let _ = c.incus().args(["delete", "--force", n]).output();
                }
            });
        }
    });
    let _ = c.incus().args(["image", "delete", TINY_ALIAS]).output();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn name_index(name: &str) -> usize {
    name.rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn tempfile_dir() -> Result<PathBuf> {
    let dir = PathBuf::from("/var/lib/nox-bench-incus/tiny");
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A busybox rootfs (a few MB) as Incus image `nox-bench-tiny`: it boots in a blink.
fn tiny_image(c: &Cluster, dir: &Path) -> Result<()> {
    if !Path::new("/bin/busybox").exists() {
        sh(Command::new("apt-get").args([
            "-o",
            "DPkg::Lock::Timeout=900",
            "install",
            "-y",
            "--no-install-recommends",
            "busybox-static",
        ]))?;
    }
    let rootfs = dir.join("rootfs");
    for d in ["bin", "sbin", "etc", "dev", "proc", "sys", "tmp", "run"] {
        std::fs::create_dir_all(rootfs.join(d))?;
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))?;
    std::os::unix::fs::symlink("/bin/busybox", rootfs.join("sbin/init"))?;
    std::os::unix::fs::symlink("/bin/busybox", rootfs.join("bin/sh"))?;
    std::fs::write(
        rootfs.join("etc/inittab"),
        "::sysinit:/bin/busybox true\n::respawn:/bin/busybox sleep 3600\n",
    )?;
    std::fs::write(
        dir.join("metadata.yaml"),
        "architecture: x86_64\ncreation_date: 1700000000\nproperties:\n  description: nox bench tiny\n",
    )?;
    sh(Command::new("tar")
        .args(["-C"])
        .arg(dir)
        .args(["-cJf", "meta.tar.xz", "metadata.yaml"])
        .current_dir(dir))?;
    sh(Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cJf")
        .arg(dir.join("rootfs.tar.xz"))
        .arg("."))?;
    let _ = c.incus().args(["image", "delete", TINY_ALIAS]).output();
    ok(c.incus()
        .args(["image", "import"])
        .arg(dir.join("meta.tar.xz"))
        .arg(dir.join("rootfs.tar.xz"))
        .args(["--alias", TINY_ALIAS]))?;
    Ok(())
}

fn ok(cmd: &mut Command) -> Result<std::process::Output> {
    let out = cmd.output()?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            crate::util::display(cmd),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}
