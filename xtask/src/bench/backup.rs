//! `cargo xtask bench backup`: VM backup numbers, with the release binary and the test image.
//!
//! One VM (software emulation) gets 1 GiB of incompressible data written, then:
//! - full backup throughput (`nox backup --full`) against `qemu-img convert -c -O qcow2` of the
//!   same live disk (read with -U), interleaved in the same run;
//! - incremental backup time after 10 MB of new data, against the full backup's;
//! - restore throughput of the full + incremental chain (`nox restore --no-start`).
//!
//! Throughput is the disk's data as the guest sees it (allocated bytes through the whole
//! backing chain, from `qemu-img map`) divided by the time, so both sides of a ratio divide
//! the same number of bytes.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::harness::{in_bench, stats, Bench, ROOT};

const VM: &str = "bk";
const RUNS: usize = 3;

pub fn run() -> Result<()> {
    in_bench(measure)
}

fn guest(b: &Bench, script: &str) -> Result<()> {
    b.nox_ok(&["exec", VM, "--", "sh", "-c", script])?;
    Ok(())
}

/// Bytes of data in the image through its backing chain.
fn data_bytes(image: &Path) -> Result<u64> {
    let out = Command::new("qemu-img")
        .args(["map", "-U", "--output=json"])
        .arg(image)
        .output()?;
    if !out.status.success() {
        bail!("qemu-img map: {}", String::from_utf8_lossy(&out.stderr));
    }
    // One extent per line: {"start": 0, "length": 65536, ..., "data": true, ...}. xtask keeps
    // its dependencies few, so the two fields are read by hand.
    let text = String::from_utf8_lossy(&out.stdout);
    let mut total = 0u64;
    for line in text.lines().filter(|l| l.contains("\"data\": true")) {
        let len = line
            .split("\"length\": ")
            .nth(1)
            .and_then(|r| r.split([',', '}']).next())
            .and_then(|n| n.trim().parse::<u64>().ok())
            .context("qemu-img map: an extent without a length")?;
        total += len;
    }
    Ok(total)
}

fn newest_backup(b: &Bench) -> Result<String> {
    let out = b.nox_ok(&["backups", "--json"])?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("\"backup\": \""))
        .filter_map(|l| l.strip_suffix("\","))
        .next_back()
        .map(String::from)
        .context("no backup listed")
}

fn measure(b: &Bench) -> Result<()> {
    println!("creating the VM (software emulation: about a minute)");
    b.nox_ok(&[
        "create",
        VM,
        "--image",
        "debian-12-test",
        "--network",
        "user",
        "--memory",
        "1G",
        "--disk",
        "4G",
    ])?;
    println!("writing 1 GiB of random data in the guest");
    guest(b, "head -c 1073741824 /dev/urandom > /root/big && sync")?;
    let disk = b.storage.join("instances").join(VM).join("disk.qcow2");
    let data = data_bytes(&disk)? as f64;
    println!(
        "disk data (guest view, through the backing chain): {:.1} MB",
        data / 1e6
    );
    let baseline_out = Path::new(ROOT).join("baseline.qcow2");

    let (mut nox, mut plain) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let _ = std::fs::remove_file(&baseline_out);
        let t = Instant::now();
        let out = Command::new("qemu-img")
            .args(["convert", "-U", "-c", "-O", "qcow2"])
            .arg(&disk)
            .arg(&baseline_out)
            .output()?;
        if !out.status.success() {
            bail!("qemu-img convert: {}", String::from_utf8_lossy(&out.stderr));
        }
        plain.push(data / 1e6 / t.elapsed().as_secs_f64());
        let _ = std::fs::remove_file(&baseline_out);

        let t = Instant::now();
        b.nox_ok(&["backup", VM, "--full", "--keep", "50"])?;
        nox.push(data / 1e6 / t.elapsed().as_secs_f64());
    }
    let full_secs: Vec<f64> = nox.iter().map(|mbs| data / 1e6 / mbs).collect();
    let n = stats("full backup, nox backup --full", "MB/s", nox);
    let p = stats(
        "full, qemu-img convert -c -O qcow2 (same disk)",
        "MB/s",
        plain,
    );
    println!(
        "{:<58} {:.2}x (target >= 0.8x)",
        "ratio nox / qemu-img",
        n / p
    );
    let full = stats("full backup time", "s", full_secs);

    let mut incr = Vec::new();
    for i in 0..RUNS {
        guest(
            b,
            &format!("head -c 10485760 /dev/urandom > /root/small{i} && sync"),
        )?;
        let t = Instant::now();
        let out = b.nox_ok(&["backup", VM, "--keep", "50"])?;
        incr.push(t.elapsed().as_secs_f64());
        let text = String::from_utf8_lossy(&out.stdout);
        if !text.contains("incremental") {
            bail!("expected an incremental backup, got: {text}");
        }
    }
    let i = stats("incremental backup after 10 MB written", "s", incr);
    println!(
        "{:<58} {:.1}% (target < 10%)",
        "incremental / full",
        100.0 * i / full
    );

    let chain = newest_backup(b)?;
    let mut restore = Vec::new();
    for r in 0..2 {
        let name = format!("rs{r}");
        let t = Instant::now();
        b.nox_ok(&["restore", &chain, "--name", &name, "--no-start"])?;
        restore.push(data / 1e6 / t.elapsed().as_secs_f64());
        b.delete(&[name]);
    }
    stats(
        &format!("restore (full + {RUNS} incrementals, --no-start)"),
        "MB/s",
        restore,
    );
    Ok(())
}
