//! `cargo xtask fuzz [SECONDS]`: every cargo-fuzz target in crates/nox-core/fuzz, SECONDS
//! each (default 15), on the stable toolchain.
//!
//! libFuzzer itself needs no nightly: only the sanitizers (`-Zsanitizer`) do, so the targets
//! run with `--sanitizer none`. What the targets reach is safe Rust (nox-core's one `unsafe`
//! block is in the process runner, which no target calls), where memory errors, what a
//! sanitizer finds, cannot happen; a panic or a failed assertion aborts the run either way.
//! Each run starts from the seeds kept in the repo (fuzz/seeds/TARGET, read-only) plus what
//! earlier local runs found (fuzz/corpus/TARGET, git-ignored), so a run never changes tracked
//! files. A crash stops with the input's path; fix it and keep it as a unit test.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::util::{project_root, sh};

/// Seconds per target when none are given: five targets in about 75 s, as CI runs them.
const DEFAULT_SECONDS: u64 = 15;

/// The targets, as named in fuzz/Cargo.toml.
pub const TARGETS: &[&str] = &["config", "resources", "names", "manifest", "backup_ref"];

pub fn run(args: &[String]) -> Result<()> {
    let seconds = match args {
        [] => DEFAULT_SECONDS,
        [s] => s
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .with_context(|| format!("`{s}` is not a number of seconds (give e.g. 15)"))?,
        _ => bail!("usage: cargo xtask fuzz [SECONDS]"),
    };
    fuzz_all(seconds, None)
}

/// Runs every target for `seconds`, building in `target_dir` when given (CI's build cache)
/// instead of the fuzz crate's own `target/`.
pub fn fuzz_all(seconds: u64, target_dir: Option<&Path>) -> Result<()> {
    let dir = project_root().join("crates/nox-core/fuzz");
    // The fuzz crate is its own workspace; starting from nox's lock builds nox-core against
    // the versions nox is tested with (cargo adds only libfuzzer-sys and its few deps).
    std::fs::copy(project_root().join("Cargo.lock"), dir.join("Cargo.lock"))
        .context("copying Cargo.lock into the fuzz crate")?;
    // No separate `cargo fuzz build`: its flags differ from `run`'s, so `run` would build
    // everything a second time. The first run builds nox-core; the others only their target.
    for target in TARGETS {
        let corpus = dir.join("corpus").join(target);
        std::fs::create_dir_all(&corpus)
            .with_context(|| format!("creating {}", corpus.display()))?;
        let seeds = dir.join("seeds").join(target);
        if !seeds.is_dir() {
            bail!(
                "{} is missing: every target keeps its seeds",
                seeds.display()
            );
        }
        let mut cmd = fuzz_cmd(&dir);
        if let Some(t) = target_dir {
            // Never the main build's directory: libFuzzer's flags differ, and sharing one
            // would rebuild both every time.
            cmd.env("CARGO_TARGET_DIR", t);
        }
        sh(cmd
            // The dev profile: it builds in about a minute where release with libFuzzer's
            // instrumentation took four (ring and rustls above all), and a short run still
            // makes about 30,000 executions a second, with overflow checks on.
            .args(["run", "--dev", "--sanitizer", "none", target])
            .arg(&corpus)
            .arg(&seeds)
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            // Executions and coverage at the end: a run that did nothing shows it.
            .arg("-print_final_stats=1"))?;
    }
    Ok(())
}

fn fuzz_cmd(dir: &Path) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.arg("fuzz").current_dir(dir);
    cmd
}
