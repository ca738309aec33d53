//! `cargo xtask ci`: the whole CI run, in the order a reviewer would check a change, with a
//! time breakdown at the end (docs/testing.md quotes it).

use std::process::Command;
use std::time::Instant;

use anyhow::Result;

use crate::util::sh;

pub fn run() -> Result<()> {
    let mut times = Vec::new();
    let mut step = |name: &'static str, f: &mut dyn FnMut() -> Result<()>| -> Result<()> {
        let t = Instant::now();
        let r = f();
        times.push((name, t.elapsed()));
        r
    };
    step("setup", &mut crate::setup::run)?;
    let mut image_config = None;
    step("test image", &mut || {
        image_config = Some(crate::test_image::build()?);
        Ok(())
    })?;
    step("fmt", &mut || {
        sh(Command::new("cargo").args(["fmt", "--all", "--", "--check"]))
    })?;
    step("clippy (builds everything)", &mut || {
        sh(Command::new("cargo").args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))
    })?;
    // One backend per build, as a host without the other's C headers would build nox.
    step("build each backend alone", &mut || {
        for feature in ["vm", "lxc"] {
            sh(Command::new("cargo").args([
                "clippy",
                "--package",
                "nox-cli",
                "--no-default-features",
                "--features",
                feature,
                "--",
                "-D",
                "warnings",
            ]))?;
        }
        Ok(())
    })?;
    // Bad input never panics: a short run of every fuzz target (docs/testing.md, Fuzzing).
    step("fuzz (15 s per target)", &mut || crate::fuzz::fuzz_all(15))?;
    step("build tests", &mut || {
        sh(Command::new("cargo").args(["test", "--workspace", "--all-targets", "--no-run"]))
    })?;
    // The remotes' tests run against a real three-member Incus cluster on this machine.
    step("incus cluster up", &mut crate::incus::up)?;
    // NOX_IT=1 declares the live environment: live tests run and never skip.
    let result = step("unit and live tests", &mut || {
        sh(Command::new("cargo")
            .args(["test", "--workspace", "--all-targets", "--no-fail-fast"])
            .env("NOX_IT", "1")
            .env("NOX_TEST_IMAGE_CONFIG", image_config.as_ref().unwrap()))
    });
    // Whatever the tests did, the cluster goes: nothing of a run outlives it.
    let down = step("incus cluster down", &mut crate::incus::down);
    eprintln!("\nxtask ci: time by step");
    let total: f64 = times.iter().map(|(_, d)| d.as_secs_f64()).sum();
    for (name, d) in &times {
        eprintln!("  {name:<28} {:>7.1} s", d.as_secs_f64());
    }
    eprintln!("  {:<28} {:>7.1} s", "total", total);
    result.and(down)
}

/// `cargo xtask it [FILTER...]`: setup, the test image and the Incus cluster, then only the
/// live tests (nox-tests and nox-incus'), and the cluster down again.
pub fn live_tests(filter: &[String]) -> Result<()> {
    crate::setup::run()?;
    let image_config = crate::test_image::build()?;
    crate::incus::up()?;
    let result = sh(Command::new("cargo")
        .args([
            "test",
            "--package",
            "nox-tests",
            "--package",
            "nox-incus",
            "--no-fail-fast",
            "--",
        ])
        .args(filter)
        .env("NOX_IT", "1")
        .env("NOX_TEST_IMAGE_CONFIG", &image_config));
    result.and(crate::incus::down())
}
