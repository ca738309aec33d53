//! `cargo xtask ci`: the whole CI run, in the order a reviewer would check a change, with a
//! time breakdown at the end (docs/testing.md quotes it).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
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
    // Every cargo below builds in CI's build cache (build_cache.rs): fuzz in one directory,
    // everything else in another. Set before any thread starts, for every child to inherit.
    let cache = crate::build_cache::prepare(&crate::util::project_root())?;
    std::env::set_var("CARGO_TARGET_DIR", cache.join("target"));
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
    // 5 s a target (8 until the VM templates joined CI): a short run from the seeds; longer
    // runs are `cargo xtask fuzz`.
    step("fuzz (5 s per target)", &mut || {
        crate::fuzz::fuzz_all(5, Some(&cache.join("fuzz")))
    })?;
    let mut test_bin = PathBuf::new();
    step("build tests", &mut || {
        sh(Command::new("cargo").args(["test", "--workspace", "--all-targets", "--no-run"]))?;
        test_bin = nox_with_fault_points()?;
        Ok(())
    })?;
    // The remotes' tests run against a real three-member Incus cluster on this machine.
    step("incus cluster up", &mut crate::incus::up)?;
    let result = step("unit and live tests", &mut || {
        tests_in_two_lanes(image_config.as_ref().unwrap(), &test_bin, &[])
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

/// `cargo xtask it [FILTER...]`: setup, the test image and the Incus cluster, then the tests
/// whose names match FILTER (all without one) in CI's two lanes, and the cluster down again.
pub fn live_tests(filter: &[String]) -> Result<()> {
    crate::setup::run()?;
    let image_config = crate::test_image::build()?;
    let test_bin = nox_with_fault_points()?;
    crate::incus::up()?;
    let result = tests_in_two_lanes(&image_config, &test_bin, filter);
    result.and(crate::incus::down())
}

/// Every test, with `NOX_IT=1`, which declares the live environment: live tests run and never
/// skip.
fn tests_in_two_lanes(image_config: &Path, test_bin: &Path, filter: &[String]) -> Result<()> {
    fresh_vm_templates()?;
    let test = |args: &[&str]| -> Command {
        let mut c = Command::new("cargo");
        c.arg("test")
            .args(args)
            .arg("--no-fail-fast")
            .env("NOX_IT", "1")
            .env("NOX_TEST_IMAGE_CONFIG", image_config)
            .env("NOX_TEST_BIN", test_bin);
        if !filter.is_empty() {
            c.arg("--").args(filter);
        }
        c
    };
    run_in_two_lanes(test)
}

/// The live tests' VM templates (tests/src/fixture.rs) are shared by every test of a run and
/// made by the first create of each shape. Each run starts without any, so every run builds
/// and proves its own; a template build a killed run left running goes first.
fn fresh_vm_templates() -> Result<()> {
    const DIR: &str = "/var/lib/nox-it/templates";
    let names = Command::new("virsh")
        .args(["-c", "qemu:///system", "list", "--name"])
        .output()?;
    for name in String::from_utf8_lossy(&names.stdout).lines() {
        if !name.starts_with("nox.template.") {
            continue;
        }
        let xml = Command::new("virsh")
            .args(["-c", "qemu:///system", "dumpxml", name])
            .output()?;
        if String::from_utf8_lossy(&xml.stdout).contains(DIR) {
            eprintln!("xtask: destroying {name}, a template build a killed run left");
            let _ = Command::new("virsh")
                .args(["-c", "qemu:///system", "destroy", name])
                .status();
        }
    }
    match std::fs::remove_dir_all(DIR) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// The test files of the second lane, which runs beside all the others: the ones against the
/// Incus test cluster, whose containers live in incusd and mostly wait on it, and enough of
/// the rest to even out the two lanes' times (docs/testing.md has them). The other lane's VMs
/// keep the CPUs busy under emulation, so together they take about the time of the longer
/// lane instead of the sum.
const SECOND_LANE: &[(&str, &str)] = &[
    ("nox-incus", "live"),
    ("nox-tests", "remote"),
    ("nox-tests", "mount"),
    // Containers only, with private caches: the image verbs and builds.
    ("nox-tests", "images"),
    ("nox-tests", "image_build"),
    // Short-lived VMs killed at fault points, and containers: it moved here when a slow run's
    // main lane took 2048 s against this lane's 720 s.
    ("nox-tests", "crash"),
    // VM clones: mostly restores of the run's shared templates, which the main lane's
    // backup.rs usually builds first; one cold boot of its own (a template rebuilt).
    ("nox-tests", "clones"),
    // Moved here when a run's main lane ended 450 s after this one (2999 s in all): the VM
    // test bed and the VM backend's own tests.
    ("nox-tests", "testbed"),
    ("nox-tests", "vm"),
    // Issue 13's port forwards: a container and two VM clones, two of them restarted.
    ("nox-tests", "forward"),
];

fn run_in_two_lanes(test: impl Fn(&[&str]) -> Command + Sync) -> Result<()> {
    let root = crate::util::project_root();
    // In the checkout's own target/, where a developer looks, whatever dir cargo builds in.
    let log = root.join("target/ci-second-lane.log");
    let second = std::thread::scope(|s| -> Result<Result<()>> {
        let lane = s.spawn(|| -> Result<()> {
            let out = std::fs::File::create(&log)?;
            let mut failed = Vec::new();
            for &(package, target) in SECOND_LANE {
                let mut cmd = test(&["--package", package, "--test", target]);
                writeln!(&out, "xtask: $ {}", crate::util::display(&cmd))?;
                let status = cmd
                    .stdout(Stdio::from(out.try_clone()?))
                    .stderr(Stdio::from(out.try_clone()?))
                    .status()?;
                if !status.success() {
                    failed.push(format!("{package} --test {target}"));
                }
            }
            anyhow::ensure!(failed.is_empty(), "failed: {}", failed.join(", "));
            Ok(())
        });
        let mut failed = Vec::new();
        let others = nox_tests_targets(&root)?;
        let mut runs: Vec<Vec<String>> = vec![
            [
                "--workspace",
                "--all-targets",
                "--exclude",
                "nox-tests",
                "--exclude",
                "nox-incus",
            ]
            .map(String::from)
            .to_vec(),
            ["--package", "nox-incus", "--lib"]
                .map(String::from)
                .to_vec(),
        ];
        let mut tests = vec!["--package".to_string(), "nox-tests".into(), "--lib".into()];
        for t in others
            .iter()
            .filter(|t| !SECOND_LANE.contains(&("nox-tests", t.as_str())))
        {
            tests.extend(["--test".to_string(), t.clone()]);
        }
        runs.push(tests);
        for args in &runs {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            if sh(&mut test(&args)).is_err() {
                failed.push(args.join(" "));
            }
        }
        let second = lane.join().expect("the second lane does not panic");
        eprintln!("\n===== the second lane ({}) =====", log.display());
        eprintln!("{}", std::fs::read_to_string(&log).unwrap_or_default());
        anyhow::ensure!(failed.is_empty(), "tests failed: {}", failed.join("; "));
        Ok(second)
    })?;
    second
}

/// The `[[test]]` targets of tests/Cargo.toml, so a new test file lands in a lane by itself.
fn nox_tests_targets(root: &Path) -> Result<Vec<String>> {
    let manifest = std::fs::read_to_string(root.join("tests/Cargo.toml"))?;
    let mut names = Vec::new();
    let mut in_test = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_test = line == "[[test]]";
        } else if let Some(v) = line.strip_prefix("name = ").filter(|_| in_test) {
            names.push(v.trim_matches('"').to_string());
        }
    }
    anyhow::ensure!(!names.is_empty(), "no [[test]] in tests/Cargo.toml");
    Ok(names)
}

/// nox with the crash tests' fault points, copied out of `target/debug` where other builds
/// would replace it.
fn nox_with_fault_points() -> Result<PathBuf> {
    sh(Command::new("cargo").args([
        "build",
        "--package",
        "nox-cli",
        "--bin",
        "nox",
        "--features",
        "fault-points",
    ]))?;
    let target = target_dir();
    let dir = target.join("nox-tests");
    std::fs::create_dir_all(&dir)?;
    let bin = dir.join("nox");
    std::fs::copy(target.join("debug/nox"), &bin)?;
    Ok(bin)
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::util::project_root().join("target"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_live_test_file_is_in_a_lane() {
        let names = nox_tests_targets(&crate::util::project_root()).unwrap();
        assert!(names.contains(&"crash".to_string()), "{names:?}");
        for &(package, target) in SECOND_LANE {
            if package == "nox-tests" {
                assert!(
                    names.contains(&target.to_string()),
                    "{target} not in {names:?}"
                );
            }
        }
        let files = std::fs::read_dir(crate::util::project_root().join("tests/live")).unwrap();
        assert_eq!(
            files.count(),
            names.len(),
            "a tests/live file without a [[test]] entry"
        );
    }
}
