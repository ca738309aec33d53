//! What every benchmark shares: a private config and storage under ROOT with the test image
//! and a release build, the `nox` it runs, medians, and finding what it made to delete it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{bail, Result};

use crate::util::{project_root, sh};

pub(crate) const ROOT: &str = "/var/lib/nox-bench";

pub(crate) struct Bench {
    pub nox: PathBuf,
    pub config: PathBuf,
    pub storage: PathBuf,
    pub home: PathBuf,
}

impl Bench {
    pub(crate) fn nox(&self) -> Command {
        let mut c = Command::new(&self.nox);
        c.env("NOX_CONFIG", &self.config)
            .env("HOME", &self.home)
            .env("XDG_DATA_HOME", self.home.join("data"))
            .stdin(Stdio::null());
        c
    }

    pub(crate) fn nox_ok(&self, args: &[&str]) -> Result<Output> {
        let out = self.nox().args(args).output()?;
        if !out.status.success() {
            bail!(
                "nox {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(out)
    }

    pub(crate) fn delete(&self, names: &[String]) {
        let mut c = self.nox();
        c.args(["delete", "--force"]).args(names);
        let _ = c.output();
    }
}

pub(crate) fn stats(name: &str, unit: &str, mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let median = if xs.len() % 2 == 1 {
        xs[xs.len() / 2]
    } else {
        (xs[xs.len() / 2 - 1] + xs[xs.len() / 2]) / 2.0
    };
    println!(
        "{name:<58} median {median:>9.3} {unit}  (min {:.3}, max {:.3}, n={})",
        xs[0],
        xs[xs.len() - 1],
        xs.len()
    );
    median
}

pub(crate) fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Runs `measure` in a fresh bench directory, then removes every instance it made and the
/// directory, whatever happened: a failed benchmark leaves nothing behind.
pub(crate) fn in_bench(measure: impl FnOnce(&Bench) -> Result<()>) -> Result<()> {
    let b = prepare()?;
    let result = measure(&b);
    let leftovers: Vec<String> = list_names(&b);
    b.delete(&leftovers);
    let _ = std::fs::remove_dir_all(ROOT);
    result
}

/// Setup, the test image, a release build, and a private config under ROOT.
pub(crate) fn prepare() -> Result<Bench> {
    prepare_at(ROOT, "")
}

/// `prepare` under `root`, with `extra` lines added to the config's `[lxc]` table.
pub(crate) fn prepare_at(root: &str, extra: &str) -> Result<Bench> {
    crate::setup::run()?;
    let image_config = crate::test_image::build()?;
    sh(Command::new("cargo")
        .args(["build", "--release", "--quiet", "-p", "nox-cli"])
        .current_dir(project_root()))?;
    let root = PathBuf::from(root);
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root)?;
    crate::util::set_mode(&root, 0o711);
    let storage = root.join("vm");
    let config = root.join("nox.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[vm]\nstorage_dir = \"{}\"\n\n[lxc]\nlxcpath = \"{}\"\n{extra}\n\n[backup]\ndir = \"{}\"\n",
            std::fs::read_to_string(&image_config)?,
            storage.display(),
            root.join("lxc").display(),
            root.join("backups").display()
        ),
    )?;
    let b = Bench {
        nox: project_root().join("target/release/nox"),
        config,
        storage,
        home: root.join("home"),
    };
    std::fs::create_dir_all(&b.home)?;
    Ok(b)
}

/// The instances this bench made, to delete at the end. Containers are the bench's own by
/// lxcpath. libvirt domains are global, so `nox list` shows every nox VM on the host (a
/// user's, or a concurrent test run's): only those whose record puts their files under this
/// bench's storage dir are its own.
pub(crate) fn list_names(b: &Bench) -> Vec<String> {
    let Ok(out) = b.nox().args(["list", "--json"]).output() else {
        return Vec::new();
    };
    let all: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    all.iter()
        .filter(|i| {
            i["backend"] == "lxc" || vm_is_under(i["name"].as_str().unwrap_or(""), &b.storage)
        })
        .filter_map(|i| i["name"].as_str().map(String::from))
        .collect()
}

/// Whether nox's record in the domain's metadata names a directory under `storage`.
fn vm_is_under(name: &str, storage: &Path) -> bool {
    let Ok(out) = Command::new("virsh")
        .args(["-q", "metadata", name, "https://nox.dev/xmlns/instance/1"])
        .output()
    else {
        return false;
    };
    // The record is JSON text inside an XML element, so its quotes may come back escaped.
    let xml = String::from_utf8_lossy(&out.stdout).replace("&quot;", "\"");
    let needle = format!("\"dir\":\"{}/", storage.display());
    out.status.success() && xml.contains(&needle)
}
