//! `cargo xtask bench vm|clone|lxc|backup|incus|snapshot|cp|docker|image`: nox's numbers,
//! measured on this host against a
//! baseline in the same run (see docs/benchmarks.md).
//!
//! - `harness.rs`: the private config, storage and binary every benchmark uses, and medians;
//! - `instances.rs`: create, start and list for VMs and containers;
//! - `backup.rs`: VM backups against `qemu-img convert`;
//! - `incus.rs`: creating and listing on the Incus test cluster against Incus's own CLI;
//! - `snapshot.rs`: snapshots against `cp -a` and `virsh snapshot-create-as`;
//! - `copy.rs`: `nox cp` into a VM against `scp` over its SSH forward;
//! - `docker.rs`: a three-layer `docker build` on overlay2 in a container, against vfs and a VM;
//! - `image.rs`: `nox image build` against a plain debootstrap plus conversion;
//! - `clone.rs`: a VM restored from a template against a cold boot of the same shape.

mod backup;
mod clone;
mod copy;
mod docker;
pub mod harness;
mod image;
mod incus;
mod instances;
mod snapshot;

use anyhow::{bail, Result};

pub fn run(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("vm") => instances::vm(),
        Some("lxc") => instances::lxc(),
        Some("backup") => backup::run(),
        Some("incus") => incus::run(),
        Some("snapshot") => snapshot::run(&args[1..]),
        Some("cp") => copy::run(),
        Some("docker") => docker::run(&args[1..]),
        Some("image") => image::run(&args[1..]),
        Some("clone") => clone::run(&args[1..]),
        _ => {
            bail!("usage: cargo xtask bench vm|clone [--runs N]|lxc|backup|incus|snapshot [--no-vm]|cp|docker [--no-vm]|image [--runs N]")
        }
    }
}
