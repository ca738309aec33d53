//! `nox image warm|list|prune` on VM templates, through the real `nox` binary, without booting
//! a VM (a template build is a cold boot, about 90 s here; the restore path is `vm.rs`'s):
//! warm refuses bad input with exit 2 in one line and makes nothing; prune removes what a
//! killed build or an older nox left (a directory without a finished note, a note of another
//! template version), which `image list` never shows, and refuses while a template's lock is
//! held, removing nothing.
//!
//! The test runs in its own storage dir and lxcpath: prune takes every unused base there.

use std::path::{Path, PathBuf};
use std::process::Output;

use nox_tests::fixture::Fixture;
use nox_tests::image::TestImage;
use nox_tests::{live, ok, text};
use serde_json::Value;

const IMAGE: &str = "debian-12-test";

/// The test image's `[images]`, with every store inside the test's dir; `vm_extra` goes
/// under `[vm]`.
fn config(fx: &Fixture, image: &TestImage, file: &str, vm_extra: &str) -> PathBuf {
    let images = std::fs::read_to_string(&image.config).expect("reading the image's nox.toml");
    let path = fx.dir.join(file);
    let text = format!(
        "{images}\n[vm]\nstorage_dir = \"{}\"\n{vm_extra}\n\n[state]\ndir = \"{}\"\n\n[lxc]\nlxcpath = \"{}\"\n",
        fx.dir.join("vm").display(),
        fx.state_dir().display(),
        fx.dir.join("lxc").display()
    );
    std::fs::write(&path, text).expect("writing the test config");
    path
}

/// Exit 2, one line on stderr holding `words`, nothing on stdout.
#[track_caller]
fn refused(out: Output, words: &str) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains(words), "{words:?} not in: {err}");
    assert!(out.stdout.is_empty(), "stdout: {}", text(&out.stdout));
}

fn json(out: Output) -> Value {
    serde_json::from_slice(&ok(out).stdout).expect("nox prints JSON")
}

/// A template note as nox writes it, of template format `version`.
fn note(key: &str, version: u32) -> String {
    serde_json::json!({
        "version": version, "key": key, "image": IMAGE, "image_checksum": "sha256:00",
        "cpus": 1, "memory_bytes": 1u64 << 30, "disk_bytes": 10u64 << 30, "network": "user",
        "accel": "qemu", "mac": "52:54:00:00:00:01", "created_at": "2026-01-01T00:00:00Z",
        "size_bytes": 4
    })
    .to_string()
}

fn write(path: &Path, bytes: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn warm_refuses_bad_input_and_prune_takes_what_no_create_restores() {
    if !live("warm_refuses_bad_input_and_prune_takes_what_no_create_restores") {
        return;
    }
    let image = TestImage::get();
    let fx = Fixture::new("template-verbs");
    let cfg = config(&fx, &image, "nox.toml", "");
    let nox = || fx.nox(&cfg);
    let templates = fx.dir.join("vm/templates");

    // Templates turned off: refused, saying how to turn them on.
    let off = config(&fx, &image, "off.toml", "templates = false");
    refused(
        fx.nox(&off)
            .args(["image", "warm", IMAGE])
            .output()
            .unwrap(),
        "templates = true",
    );
    // A macvtap VM boots cold: it has no template to warm.
    refused(
        nox()
            .args(["image", "warm", IMAGE, "--network", "macvtap:eth0"])
            .output()
            .unwrap(),
        "boot cold",
    );
    // A disk smaller than the image, as create refuses it (after the base is cached).
    refused(
        nox()
            .args(["image", "warm", IMAGE, "--disk", "1G", "--network", "user"])
            .output()
            .unwrap(),
        "smaller than image",
    );
    assert!(
        !templates.exists()
            || std::fs::read_dir(&templates)
                .unwrap()
                .flatten()
                .all(|e| !e.path().is_dir()),
        "a refused warm leaves no template directory"
    );

    // What a killed build leaves (no note) and what an older nox made (another version).
    let partial = templates.join("00000000000000aa");
    write(&partial.join("disk.qcow2"), "half");
    let old = templates.join("00000000000000bb");
    write(&old.join("template.json"), &note("00000000000000bb", 0));
    write(&old.join("state.sav"), "old!");
    let list = json(nox().args(["image", "list", "--json"]).output().unwrap());
    assert!(
        !list
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["kind"] == "template"),
        "no create would restore them, so list shows none: {list}"
    );

    // A template's lock held (a build in progress): prune refuses and removes nothing.
    let held = nox_core::lock::lock(&templates.join("00000000000000aa.lock")).unwrap();
    refused(
        nox().args(["image", "prune"]).output().unwrap(),
        "00000000000000aa",
    );
    assert!(partial.is_dir() && old.is_dir());
    drop(held);

    let pruned = json(nox().args(["image", "prune", "--json"]).output().unwrap());
    let removed: Vec<&Value> = pruned["removed"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["kind"] == "template")
        .collect();
    let mut paths: Vec<&str> = removed
        .iter()
        .map(|i| i["path"].as_str().unwrap())
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        [partial.to_str().unwrap(), old.to_str().unwrap()],
        "{pruned}"
    );
    // The older template is named by its note; the partial one has none.
    let old_row = removed
        .iter()
        .find(|i| i["path"] == old.to_str().unwrap())
        .unwrap();
    assert_eq!(old_row["name"], IMAGE);
    assert_eq!(old_row["shape"]["key"], "00000000000000bb");
    assert!(old_row["size_bytes"].as_u64().unwrap() >= 4);
    assert!(!partial.exists() && !old.exists());
    let again = json(nox().args(["image", "prune", "--json"]).output().unwrap());
    assert!(
        !again["removed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["kind"] == "template"),
        "{again}"
    );
}
