//! `cargo xtask bench vm|lxc|backup|incus|snapshot`: nox's numbers, measured on this host against a
//! baseline in the same run (see docs/benchmarks.md).
//!
//! - `harness.rs`: the private config, storage and binary every benchmark uses, and medians;
//! - `instances.rs`: create, start and list for VMs and containers;
//! - `backup.rs`: VM backups against `qemu-img convert`;
//! - `snapshot.rs`: snapshots against `cp -a` and `virsh snapshot-create-as`;
//! - `incus.rs`: creating and listing on the Incus test cluster against Incus's own CLI.

mod backup;
pub mod harness;
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
        Some("snapshot") => snapshot::run(),
        _ => bail!("usage: cargo xtask bench vm|lxc|backup|incus|snapshot"),
    }
}
