//! `cargo xtask ci`: the whole CI run, in the order a reviewer would check a change.

use std::process::Command;

use anyhow::Result;

use crate::util::sh;

pub fn run() -> Result<()> {
    crate::setup::run()?;
    sh(Command::new("cargo").args(["fmt", "--all", "--", "--check"]))?;
    sh(Command::new("cargo").args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    let image_config = crate::test_image::build()?;
    // NOX_IT=1 declares the live environment: live tests run and never skip.
    sh(Command::new("cargo")
        .args(["test", "--workspace", "--all-targets", "--no-fail-fast"])
        .env("NOX_IT", "1")
        .env("NOX_TEST_IMAGE_CONFIG", &image_config))?;
    Ok(())
}

/// `cargo xtask it [FILTER...]`: setup, then only the live tests.
pub fn live_tests(filter: &[String]) -> Result<()> {
    crate::setup::run()?;
    let image_config = crate::test_image::build()?;
    sh(Command::new("cargo")
        .args(["test", "--package", "nox-tests", "--no-fail-fast", "--"])
        .args(filter)
        .env("NOX_IT", "1")
        .env("NOX_TEST_IMAGE_CONFIG", &image_config))
}
