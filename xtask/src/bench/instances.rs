//! `cargo xtask bench vm` and `cargo xtask bench lxc`: nox's VM numbers, measured on this host with the release binary
//! and the test image, against a plain libvirt boot of the same image in the same run.
//!
//! Reported as medians (and min/max) over several runs; write them into docs/benchmarks.md.
//! Everything lives under a private storage dir and is deleted afterwards.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

use super::harness::{in_bench, secs, stats, Bench, ROOT};
use crate::util::sh;

pub fn lxc() -> Result<()> {
    in_bench(measure_lxc)
}

fn measure_lxc(b: &Bench) -> Result<()> {
    // The minimal image is shaped like LXC's own (no cloud-init, systemd-networkd): the default
    // path for real containers. The cloud-init image is measured too, for comparison.
    measure_lxc_image(b, "debian-12-test-minimal", true)?;
    println!("\nthe same with the cloud-init image (debian-12-test):");
    measure_lxc_image(b, "debian-12-test", false)
}

fn measure_lxc_image(b: &Bench, image: &str, all: bool) -> Result<()> {
    let lxcpath = PathBuf::from(ROOT).join("lxc");
    let create = ["--backend", "lxc", "--image", image];
    println!("warming up: the first create unpacks the image once");
    b.nox_ok(&[&["create", "warm", "--no-start"][..], &create].concat())?;
    b.delete(&["warm".into()]);

    // Disk per new container, before and after its first boot.
    let mut before = Vec::new();
    let mut after = Vec::new();
    for i in 0..3 {
        let name = format!("disk{i}");
        b.nox_ok(&[&["create", &name, "--no-start"][..], &create].concat())?;
        before.push(du_bytes(&lxcpath.join(&name))? as f64 / 1e6);
        b.nox_ok(&["start", &name])?;
        b.nox_ok(&["stop", &name])?;
        after.push(du_bytes(&lxcpath.join(&name))? as f64 / 1e6);
        b.delete(&[name]);
    }
    stats("disk per new container, before first boot", "MB", before);
    stats("disk per new container, after first boot", "MB", after);

    // Create to ready (systemd running inside), nox vs a plain lxc-start of the same base.
    let mut nox = Vec::new();
    let mut plain = Vec::new();
    let mut overhead = Vec::new();
    let mut delete = Vec::new();
    for i in 0..5 {
        let name = format!("ready{i}");
        let t = Instant::now();
        b.nox_ok(&[&["create", &name][..], &create].concat())?;
        nox.push(secs(t.elapsed()));
        let t = Instant::now();
        b.nox_ok(&["delete", "--force", &name])?;
        delete.push(secs(t.elapsed()));

        let name = format!("quick{i}");
        let t = Instant::now();
        b.nox_ok(&[&["create", &name, "--no-wait"][..], &create].concat())?;
        overhead.push(secs(t.elapsed()));
        b.delete(&[name]);

        let name = format!("plain{i}");
        b.nox_ok(&[&["create", &name, "--no-start"][..], &create].concat())?;
        plain.push(plain_lxc_start(&lxcpath, &name)?);
        b.delete(&[name]);
    }
    let n = stats("create to ready (systemd running), cached image", "s", nox);
    let p = stats(
        "plain lxc-start of the same base to systemd running",
        "s",
        plain,
    );
    println!(
        "{:<58} {:.3}x",
        "nox create-to-ready / plain lxc-start",
        n / p
    );
    stats("create to container running (--no-wait)", "s", overhead);
    stats("delete --force of a running container", "s", delete);
    if !all {
        return Ok(());
    }

    // list --json with 50 containers.
    let names: Vec<String> = (0..50).map(|i| format!("list{i:02}")).collect();
    for n in &names {
        b.nox_ok(&[&["create", n.as_str(), "--no-start"][..], &create].concat())?;
    }
    let mut list = Vec::new();
    for _ in 0..15 {
        let t = Instant::now();
        b.nox_ok(&["list", "--json"])?;
        list.push(secs(t.elapsed()) * 1000.0);
    }
    stats("nox list --json, 50 containers", "ms", list);
    b.delete(&names);
    Ok(())
}

/// lxc-start, then the moment `systemctl is-system-running --wait` answers, as nox waits.
fn plain_lxc_start(lxcpath: &Path, name: &str) -> Result<f64> {
    let p = lxcpath.display().to_string();
    let t = Instant::now();
    sh(Command::new("lxc-start").args(["-P", &p, "-n", name]))?;
    let pid = String::from_utf8(
        Command::new("lxc-info")
            .args(["-P", &p, "-n", name, "-p", "-H"])
            .output()?
            .stdout,
    )?;
    let socket = format!("/proc/{}/root/run/systemd/private", pid.trim());
    while !Path::new(&socket).exists() {
        if t.elapsed() > Duration::from_secs(60) {
            bail!("plain lxc-start: systemd never started");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = Command::new("lxc-attach")
        .args([
            "-P",
            &p,
            "-n",
            name,
            "--",
            "systemctl",
            "is-system-running",
            "--wait",
        ])
        .output()?;
    let elapsed = secs(t.elapsed());
    let _ = Command::new("lxc-stop")
        .args(["-P", &p, "-n", name, "-k"])
        .output();
    if !String::from_utf8_lossy(&out.stdout).contains("running") {
        bail!(
            "plain lxc-start: systemd is {}",
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok(elapsed)
}

pub fn vm() -> Result<()> {
    in_bench(measure)
}

fn measure(b: &Bench) -> Result<()> {
    let create = [
        "--image",
        "debian-12-test",
        "--network",
        "user",
        "--memory",
        "1G",
    ];
    println!("warming up: first create caches the image");
    b.nox_ok(&[&["create", "warm", "--no-start"][..], &create].concat())?;
    b.delete(&["warm".into()]);

    // 1. Disk used by a new VM before boot.
    let mut disk = Vec::new();
    for i in 0..3 {
        let name = format!("disk{i}");
        b.nox_ok(&[&["create", &name, "--no-start"][..], &create].concat())?;
        disk.push(du_bytes(&b.storage.join("instances").join(&name))? as f64 / 1e6);
        b.delete(&[name]);
    }
    stats("disk used by a new VM before boot", "MB", disk);

    // 2. nox's own overhead: from the call to the domain running (no guest boot).
    let mut overhead = Vec::new();
    for i in 0..5 {
        let name = format!("ovh{i}");
        let t = Instant::now();
        b.nox_ok(&[&["create", &name, "--no-wait"][..], &create].concat())?;
        overhead.push(secs(t.elapsed()));
        b.delete(&[name]);
    }
    stats("create overhead, call to domain running", "s", overhead);

    // 3. list --json with 20 defined VMs.
    let names: Vec<String> = (0..20).map(|i| format!("list{i:02}")).collect();
    for n in &names {
        b.nox_ok(&[&["create", n.as_str(), "--no-start"][..], &create].concat())?;
    }
    let mut list = Vec::new();
    for _ in 0..15 {
        let t = Instant::now();
        b.nox_ok(&["list", "--json"])?;
        list.push(secs(t.elapsed()) * 1000.0);
    }
    stats("nox list --json, 20 defined VMs", "ms", list);
    b.delete(&names);

    // 4. Full create to ready, readiness detection latency, and a plain libvirt boot of the
    //    same image, interleaved so both see the same machine.
    let mut full = Vec::new();
    let mut latency = Vec::new();
    let mut plain = Vec::new();
    for i in 0..3 {
        let name = format!("boot{i}");
        let t = Instant::now();
        // Cold: this compares a boot with a boot (`bench clone` measures templates).
        b.nox_ok(&[&["create", &name, "--cold-boot"][..], &create].concat())?;
        let returned = SystemTime::now();
        full.push(secs(t.elapsed()));
        latency.push(readiness_latency(b, &name, returned)?);
        b.delete(&[name]);
        plain.push(plain_libvirt_boot(b, i)?);
    }
    let nox_full = stats(
        "create to ready (agent + cloud-init), software emulation",
        "s",
        full,
    );
    let base = stats(
        "plain libvirt boot of the same image to the same point",
        "s",
        plain,
    );
    stats(
        "readiness detection: cloud-init done -> create returns",
        "s",
        latency,
    );
    println!(
        "{:<58} {:.3}x",
        "nox create-to-ready / plain libvirt boot",
        nox_full / base
    );
    Ok(())
}

pub(crate) fn du_bytes(p: &Path) -> Result<u64> {
    let out = Command::new("du").args(["-s", "-B1"]).arg(p).output()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .context("parsing du")
}

/// Seconds from cloud-init finishing in the guest (its result.json, by the guest's clock
/// corrected to the host's with the agent's guest-get-time) to `nox create` returning.
fn readiness_latency(b: &Bench, name: &str, returned: SystemTime) -> Result<f64> {
    let out = b.nox_ok(&[
        "exec",
        name,
        "--",
        "stat",
        "-c",
        "%.9Y",
        "/run/cloud-init/result.json",
    ])?;
    let done_guest: f64 = String::from_utf8_lossy(&out.stdout).trim().parse()?;
    let offset = clock_offset(name)?;
    let done_host = done_guest - offset;
    let returned = returned.duration_since(UNIX_EPOCH)?.as_secs_f64();
    Ok(returned - done_host)
}

/// guest clock minus host clock, in seconds, from the agent's guest-get-time.
fn clock_offset(domain: &str) -> Result<f64> {
    let mut best: Option<(f64, f64)> = None;
    for _ in 0..5 {
        let before = now();
        let reply = agent(domain, r#"{"execute":"guest-get-time"}"#)?;
        let after = now();
        let ns: f64 = reply
            .trim()
            .trim_start_matches("{\"return\":")
            .trim_end_matches('}')
            .parse()
            .with_context(|| format!("guest-get-time reply {reply}"))?;
        let rtt = after - before;
        let offset = ns / 1e9 - (before + after) / 2.0;
        if best.is_none_or(|(r, _)| rtt < r) {
            best = Some((rtt, offset));
        }
    }
    Ok(best.unwrap().1)
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn agent(domain: &str, cmd: &str) -> Result<String> {
    let out = Command::new("virsh")
        .args(["-q", "qemu-agent-command", "--timeout", "2", domain, cmd])
        .stderr(Stdio::null())
        .output()?;
    if !out.status.success() {
        bail!("agent not answering");
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The baseline: the domain XML nox generates, started with plain `virsh create`, polled with
/// plain virsh until the agent answers and `cloud-init status --wait` returns.
fn plain_libvirt_boot(b: &Bench, i: usize) -> Result<f64> {
    let name = format!("plain{i}");
    b.nox_ok(&[
        "create",
        &name,
        "--no-start",
        "--image",
        "debian-12-test",
        "--network",
        "user",
        "--memory",
        "1G",
    ])?;
    let xml = Command::new("virsh").args(["dumpxml", &name]).output()?;
    let xml_path = b.storage.join(format!("{name}.xml"));
    std::fs::write(&xml_path, &xml.stdout)?;
    // Take the definition away from nox: the baseline is libvirt alone.
    let _ = Command::new("virsh").args(["undefine", &name]).output()?;
    let t = Instant::now();
    sh(Command::new("virsh")
        .arg("create")
        .arg(&xml_path)
        .stdout(Stdio::null()))?;
    let result = (|| -> Result<f64> {
        while agent(&name, r#"{"execute":"guest-ping"}"#).is_err() {
            if t.elapsed() > Duration::from_secs(600) {
                bail!("plain boot: agent never answered");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let started = agent(
            &name,
            r#"{"execute":"guest-exec","arguments":{"path":"cloud-init","arg":["status","--wait"]}}"#,
        )?;
        let pid: String = started.chars().filter(|c| c.is_ascii_digit()).collect();
        let status = format!(r#"{{"execute":"guest-exec-status","arguments":{{"pid":{pid}}}}}"#);
        loop {
            if agent(&name, &status)?.contains("\"exited\":true") {
                return Ok(secs(t.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })();
    let _ = Command::new("virsh").args(["destroy", &name]).output();
    let _ = std::fs::remove_dir_all(b.storage.join("instances").join(&name));
    result
}
