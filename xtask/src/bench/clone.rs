//! `cargo xtask bench clone [--runs N]`: `nox create` from a saved template to ready, against a
//! cold `nox create --cold-boot` of the same image and shape, alternating in the same run.
//! Targets (issue 15): at most 5 s under software emulation, and at most 10 % of the cold time;
//! at most 10 MB of disk per clone before the guest writes.
//!
//! Where a clone's time goes comes from nox's own debug log of one more clone: libvirt's
//! restore, the identity script starting in the guest, the wait for the host's bridge to
//! forward the clone's NIC, and the scripts finishing (the DHCP lease last).

use std::time::Instant;

use anyhow::{Context, Result};

use super::harness::{in_bench, secs, stats, Bench};
use super::instances::du_bytes;

const SHAPE: &[&str] = &[
    "--image",
    "debian-12-test",
    "--network",
    "default",
    "--cpus",
    "1",
    "--memory",
    "1G",
];

pub fn run(args: &[String]) -> Result<()> {
    let runs: usize = match args {
        [flag, n] if flag == "--runs" => n.parse().context("--runs takes a number")?,
        [] => 3,
        _ => anyhow::bail!("usage: cargo xtask bench clone [--runs N]"),
    };
    in_bench(|b| measure(b, runs))
}

fn create(b: &Bench, name: &str, extra: &[&str]) -> Result<f64> {
    let t = Instant::now();
    b.nox_ok(&[&["create", name][..], SHAPE, extra].concat())?;
    Ok(secs(t.elapsed()))
}

fn measure(b: &Bench, runs: usize) -> Result<()> {
    // The first create of the shape boots the template, saves it, and clones it.
    let first = create(b, "first", &[])?;
    b.delete(&["first".into()]);
    println!(
        "{:<58} {first:>9.3} s",
        "first create of the shape (template boot + save + clone)"
    );

    let (mut cold, mut clone, mut disk) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        let name = format!("cold{run}");
        cold.push(create(b, &name, &["--cold-boot"])?);
        b.delete(&[name]);
        let name = format!("clone{run}");
        clone.push(create(b, &name, &[])?);
        // What the clone's directory holds right after create: its overlay (with the writes
        // of its identity) and its seed.
        disk.push(du_bytes(&b.storage.join("instances").join(&name))? as f64 / 1e6);
        b.delete(&[name]);
        eprintln!(
            "bench clone: run {run}: cold {:.1} s, clone {:.1} s",
            cold[run], clone[run]
        );
    }
    let c = stats("cold create to ready (--cold-boot)", "s", cold);
    let t = stats("create from the template to ready", "s", clone);
    println!(
        "{:<58} {:.1} % (target <= 10 %, and <= 5 s)",
        "clone / cold",
        100.0 * t / c
    );
    stats("disk used by a clone after create", "MB", disk);

    // Where the time goes, from one more clone's debug log.
    let out = b
        .nox()
        .env("NOX_LOG", "debug")
        .args([&["create", "traced"][..], SHAPE].concat())
        .output()?;
    b.delete(&["traced".into()]);
    let log = String::from_utf8_lossy(&out.stderr);
    for line in log.lines().filter(|l| {
        l.contains("libvirt restore")
            || l.contains("libvirt defineXML")
            || l.contains("program=qemu-img")
            || l.contains("command=guest-exec ")
            || (l.contains("wait done") && (l.contains("network.rs") || l.contains("identity.rs")))
    }) {
        println!("  {}", line.trim());
    }
    Ok(())
}
