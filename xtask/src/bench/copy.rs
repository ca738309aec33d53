//! `cargo xtask bench cp`: `nox cp` of 200 MB into a VM against `scp` of the same file over the
//! same VM's 127.0.0.1 SSH forward (passt, `user` network), interleaved in one run.
//!
//! Both write the file into the guest's disk; scp runs as the instance's user with nox's own
//! key, `nox cp` through the guest agent. The file is random, so nothing compresses.

use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::harness::{in_bench, secs, stats, Bench, ROOT};

const VM: &str = "cpbench";
const RUNS: usize = 3;
const SIZE_MB: u64 = 200;

pub fn run() -> Result<()> {
    in_bench(measure)
}

fn measure(b: &Bench) -> Result<()> {
    b.nox_ok(&[
        "create",
        VM,
        "--image",
        "debian-12-test",
        "--network",
        "user",
        "--cpus",
        "1",
        "--memory",
        "1G",
        "--disk",
        "4G",
    ])?;
    let status: serde_json::Value =
        serde_json::from_slice(&b.nox_ok(&["status", VM, "--json"])?.stdout)?;
    let port = status["ssh"]["port"]
        .as_u64()
        .context("the VM has no SSH forward")?;
    let user = status["ssh"]["user"].as_str().unwrap_or("nox").to_string();
    let key = b.home.join("data/nox/ssh/id_ed25519");
    let file = std::path::Path::new(ROOT).join("payload");
    let mut random = std::fs::File::open("/dev/urandom")?;
    std::io::copy(
        &mut std::io::Read::take(&mut random, SIZE_MB << 20),
        &mut std::fs::File::create(&file)?,
    )?;
    let (mut nox, mut scp) = (Vec::new(), Vec::new());
    for run in 0..RUNS {
        let t = Instant::now();
        b.nox_ok(&[
            "cp",
            &file.display().to_string(),
            &format!("{VM}:/root/payload"),
        ])?;
        nox.push(secs(t.elapsed()));
        let t = Instant::now();
        let out = Command::new("scp")
            .args(["-q", "-P", &port.to_string(), "-i"])
            .arg(&key)
            .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no"])
            .args(["-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"])
            .arg(&file)
            .arg(format!("{user}@127.0.0.1:/tmp/payload"))
            .output()?;
        if !out.status.success() {
            bail!("scp: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        scp.push(secs(t.elapsed()));
        eprintln!("run {run}: nox cp {:.1} s, scp {:.1} s", nox[run], scp[run]);
    }
    let n = stats(
        &format!("nox cp {SIZE_MB} MB into a VM (guest agent)"),
        "s",
        nox,
    );
    let s = stats(
        &format!("scp {SIZE_MB} MB over the VM's SSH forward"),
        "s",
        scp,
    );
    println!("ratio nox cp / scp: {:.2}x (target <= 1.2x)", n / s);
    Ok(())
}
