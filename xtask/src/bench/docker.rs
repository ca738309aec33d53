//! `cargo xtask bench docker`: Docker's storage in a nox container, measured. The same
//! three-layer `docker build` (tests/src/docker-three-layer-build.sh: an image imported from
//! a local rootfs tarball with a 64 MiB payload, then RUN, COPY, RUN) timed and its disk
//! counted (`du` of Docker's data root, before and after the build):
//!
//! - overlay2 in a nox container: /var/lib/docker is the host directory nox binds in;
//! - vfs in the same container: what nox gave Docker before, with its data root on the
//!   container's overlay root (daemon.json `storage-driver: vfs`, `data-root` there);
//! - overlay2 in a nox VM (skipped with `--no-vm`: under software emulation the VM takes
//!   minutes to install Docker).
//!
//! Medians over RUNS builds each, in the same run; write them into docs/benchmarks.md.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::harness::{in_bench, secs, stats, Bench};

const BUILD: &str = include_str!("../../../tests/src/docker-three-layer-build.sh");
const PAYLOAD_MIB: &str = "64";
const RUNS: usize = 3;

/// Docker on vfs, its data root on the container's overlay root (where /var/lib/docker was
/// before nox bound a volume there).
const VFS_DAEMON_JSON: &str = r#"{ "storage-driver": "vfs", "data-root": "/var/lib/docker-vfs" }"#;

pub fn run(args: &[String]) -> Result<()> {
    let vm = !args.iter().any(|a| a == "--no-vm");
    in_bench(|b| measure(b, vm))
}

fn measure(b: &Bench, vm: bool) -> Result<()> {
    eprintln!("xtask: creating a container with the docker launch script");
    timed_create(
        b,
        "container",
        &[
            "create",
            "dkr",
            "--backend",
            "lxc",
            "--image",
            "debian-12-test",
            "--script",
            "docker",
        ],
    )?;
    expect_driver(b, "dkr", "overlay2")?;
    builds(b, "dkr", "container, overlay2 (nox's volume)")?;

    exec(
        b,
        "dkr",
        &[
            "sh",
            "-c",
            "printf '%s\\n' \"$1\" > /etc/docker/daemon.json && systemctl restart docker",
            "sh",
            VFS_DAEMON_JSON,
        ],
    )?;
    expect_driver(b, "dkr", "vfs")?;
    builds(b, "dkr", "container, vfs on the overlay root (before)")?;
    b.delete(&["dkr".into()]);

    if vm {
        eprintln!("xtask: creating a VM with the docker launch script (software emulation: slow)");
        timed_create(
            b,
            "VM",
            &[
                "create",
                "dkrvm",
                "--image",
                "debian-12-test",
                "--cpus",
                "2",
                "--memory",
                "2G",
                "--disk",
                "6G",
                "--script",
                "docker",
            ],
        )?;
        expect_driver(b, "dkrvm", "overlay2")?;
        builds(b, "dkrvm", "VM, overlay2")?;
        b.delete(&["dkrvm".into()]);
    } else {
        println!("(VM skipped: --no-vm)");
    }
    Ok(())
}

/// `nox create`, timed: with `--script docker` it includes Docker's install, which is where
/// most of a VM's wall time goes under software emulation.
fn timed_create(b: &Bench, label: &str, args: &[&str]) -> Result<()> {
    let started = Instant::now();
    b.nox_ok(args)?;
    stats(
        &format!("{label}: nox create --script docker (boot, Docker's install)"),
        "s",
        vec![secs(started.elapsed())],
    );
    Ok(())
}

fn exec(b: &Bench, name: &str, argv: &[&str]) -> Result<String> {
    let out = b.nox_ok(&[&["exec", name, "--"][..], argv].concat())?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn expect_driver(b: &Bench, name: &str, want: &str) -> Result<()> {
    let got = exec(b, name, &["docker", "info", "--format", "{{.Driver}}"])?;
    if got.trim() != want {
        bail!(
            "{name}: Docker's storage driver is {:?}, not {want}",
            got.trim()
        );
    }
    Ok(())
}

/// RUNS builds, each from a freshly imported base (a new random payload, so nothing is
/// cached), removed again after.
fn builds(b: &Bench, name: &str, label: &str) -> Result<()> {
    let (mut time, mut disk) = (Vec::new(), Vec::new());
    for i in 0..RUNS {
        let tag = format!("r{i}");
        let out = exec(b, name, &["sh", "-c", BUILD, "sh", &tag, PAYLOAD_MIB])?;
        let kv: BTreeMap<&str, &str> = out.lines().filter_map(|l| l.split_once('=')).collect();
        let num = |k: &str| -> Result<f64> {
            kv.get(k)
                .context(format!("the build printed no {k}: {out}"))?
                .parse::<f64>()
                .context(k.to_string())
        };
        time.push(num("build_seconds")?);
        disk.push((num("disk_after")? - num("disk_before")?) / 1e6);
        exec(
            b,
            name,
            &[
                "sh",
                "-c",
                "docker rmi -f \"nox-three-layers-$1\" \"nox-base-$1\" >/dev/null && docker image prune -f >/dev/null",
                "sh",
                &tag,
            ],
        )?;
    }
    stats(&format!("{label}: three-layer build"), "s", time);
    stats(&format!("{label}: disk the build added"), "MB", disk);
    Ok(())
}
