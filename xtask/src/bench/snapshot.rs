//! `cargo xtask bench snapshot`: snapshot numbers, with the release binary and the test image,
//! each against a baseline in the same run, interleaved.
//!
//! - Container: `nox snapshot` of a running container (freeze, copy of the overlay's upper
//!   layer, thaw) against a plain `cp -a --reflink=auto` of the same upper layer; and
//!   `nox snapshot restore` of a stopped container against a plain `cp -a` of the snapshot
//!   back. The container gets about 100 MB in 2,000 files written first.
//! - VM: `nox snapshot` of a running VM (quiesced through the guest agent) against
//!   `virsh snapshot-create-as --disk-only --quiesce --atomic` on the same disk.
//!
//! Times include starting `nox` (config, lock, intent record), as a user sees them.
//! `--no-vm` measures the container alone (no minute-long VM boot under emulation).

use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Result};

use super::harness::{list_names, prepare, stats, Bench, ROOT};

const CT: &str = "snb";
const VM: &str = "snv";
const RUNS: usize = 5;

pub fn run(args: &[String]) -> Result<()> {
    let with_vm = match args {
        [] => true,
        [flag] if flag == "--no-vm" => false,
        _ => bail!("usage: cargo xtask bench snapshot [--no-vm]"),
    };
    let b = prepare()?;
    let result = container(&b).and_then(|_| if with_vm { vm(&b) } else { Ok(()) });
    let leftovers: Vec<String> = list_names(&b);
    b.delete(&leftovers);
    let _ = std::fs::remove_dir_all(ROOT);
    result
}

fn run_ok(cmd: &mut Command) -> Result<()> {
    let out = cmd.output()?;
    if !out.status.success() {
        bail!(
            "{:?} failed: {}",
            cmd.get_program(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn ratio(what: &str, nox: f64, base: f64) {
    println!("{what:<58} {:.2}x (target <= 1.2x)", nox / base);
}

fn container(b: &Bench) -> Result<()> {
    println!("creating the container");
    b.nox_ok(&[
        "create",
        CT,
        "--backend",
        "lxc",
        "--image",
        "debian-12-test-minimal",
    ])?;
    b.nox_ok(&[
        "exec",
        CT,
        "--",
        "sh",
        "-c",
        "mkdir -p /root/data && for i in $(seq 2000); do head -c 51200 /dev/urandom > /root/data/f$i; done && sync",
    ])?;
    let dir = std::path::Path::new(ROOT).join("lxc").join(CT);
    let upper = dir.join("delta");
    let scratch = std::path::Path::new(ROOT).join("cp-baseline");
    let (mut nox, mut plain) = (Vec::new(), Vec::new());
    for i in 0..RUNS {
        let _ = std::fs::remove_dir_all(&scratch);
        settle(&upper)?;
        let t = Instant::now();
        run_ok(
            Command::new("cp")
                .args(["-a", "--reflink=auto", "--no-target-directory"])
                .arg(&upper)
                .arg(&scratch),
        )?;
        plain.push(t.elapsed().as_secs_f64());
        settle(&upper)?;
        let t = Instant::now();
        b.nox_ok(&["snapshot", CT, &format!("s{i}")])?;
        nox.push(t.elapsed().as_secs_f64());
    }
    let n = stats("container snapshot, running (nox snapshot)", "s", nox);
    let p = stats("cp -a --reflink=auto of the same upper layer", "s", plain);
    ratio("ratio nox / cp -a", n, p);

    // Restores of a stopped container: the copy back is the work; a running one adds its
    // shutdown and start, which are the guest's.
    b.nox_ok(&["stop", CT])?;
    let (mut nox, mut plain) = (Vec::new(), Vec::new());
    for i in 0..RUNS {
        let _ = std::fs::remove_dir_all(&scratch);
        let source = dir.join(format!("nox-snapshots/s{i}/delta"));
        settle(&source)?;
        let t = Instant::now();
        run_ok(
            Command::new("cp")
                .args(["-a", "--reflink=auto", "--no-target-directory"])
                .arg(&source)
                .arg(&scratch),
        )?;
        plain.push(t.elapsed().as_secs_f64());
        settle(&source)?;
        let t = Instant::now();
        b.nox_ok(&["snapshot", "restore", CT, &format!("s{i}")])?;
        nox.push(t.elapsed().as_secs_f64());
    }
    let _ = std::fs::remove_dir_all(&scratch);
    let n = stats(
        "container restore, stopped (nox snapshot restore)",
        "s",
        nox,
    );
    let p = stats("cp -a --reflink=auto of the snapshot back", "s", plain);
    ratio("ratio nox / cp -a", n, p);
    b.delete(&[CT.to_string()]);
    Ok(())
}

/// Waits until the previous restore's background removal of the layer it replaced is over
/// (nox's trash is empty), then reads `source` whole: each timed copy, nox's or the baseline's,
/// starts beside no other removal, with its source in the page cache. (Not `sync`: this host
/// reclaims clean page cache within seconds, so a sync would have one side read from disk.)
fn settle(source: &std::path::Path) -> Result<()> {
    let trash = std::path::Path::new(ROOT).join("lxc/.nox-trash");
    let deadline = Instant::now() + std::time::Duration::from_secs(120);
    while std::fs::read_dir(&trash).is_ok_and(|mut d| d.next().is_some()) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "nox's trash was not emptied in 2 minutes"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    run_ok(
        Command::new("find")
            .arg(source)
            .args(["-type", "f", "-exec", "cat", "{}", "+"])
            .stdout(std::process::Stdio::null()),
    )
}

fn vm(b: &Bench) -> Result<()> {
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
    ])?;
    let dir = b.storage.join("instances").join(VM);
    let (mut nox, mut plain) = (Vec::new(), Vec::new());
    for i in 0..RUNS {
        let t = Instant::now();
        run_ok(
            Command::new("virsh")
                .args([
                    "-q",
                    "snapshot-create-as",
                    VM,
                    &format!("v{i}"),
                    "--disk-only",
                    "--quiesce",
                    "--atomic",
                    "--diskspec",
                ])
                .arg(format!("vda,file={}/virsh-{i}.qcow2", dir.display()))
                .args(["--diskspec", "sda,snapshot=no"]),
        )?;
        plain.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let out = b.nox_ok(&["snapshot", VM, &format!("n{i}")])?;
        nox.push(t.elapsed().as_secs_f64());
        if !String::from_utf8_lossy(&out.stdout).contains("(consistent)") {
            bail!("the VM snapshot was not quiesced");
        }
    }
    let n = stats(
        "VM disk snapshot, running, quiesced (nox snapshot)",
        "s",
        nox,
    );
    let p = stats(
        "virsh snapshot-create-as --disk-only --quiesce --atomic",
        "s",
        plain,
    );
    ratio("ratio nox / virsh", n, p);
    Ok(())
}
