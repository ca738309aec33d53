//! `nox image` on container bases, through the real `nox` binary and liblxc: a container's
//! base is listed with backend lxc, `image rm` is refused while the container uses it, prune
//! keeps it; once the container is gone, prune removes it and says how much it freed.
//!
//! The test runs in its own lxcpath, not the fixture's shared one: prune removes every base
//! no container there uses, which in the shared lxcpath would take other tests' bases.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use nox_lxc::liblxc::Container;
use nox_tests::fixture::Fixture;
use nox_tests::image::TestImage;
use nox_tests::{live, ok, text};
use serde_json::Value;

/// Shaped like LXC's own images, without cloud-init.
const MINIMAL_IMAGE: &str = "debian-12-test-minimal";

/// A nox config like the fixture's, but with the lxcpath `lxcpath`.
fn config(fx: &Fixture, image: &TestImage, lxcpath: &Path) -> PathBuf {
    let images = std::fs::read_to_string(&image.config).expect("reading the image's nox.toml");
    let path = fx.dir.join("nox.toml");
    let text = format!(
        "{images}\n[vm]\nstorage_dir = \"{}\"\n\n[state]\ndir = \"{}\"\n\n[lxc]\nlxcpath = \"{}\"\n",
        fx.dir.join("vm").display(),
        fx.state_dir().display(),
        lxcpath.display()
    );
    std::fs::write(&path, text).expect("writing the test config");
    path
}

/// Stops and destroys the container when the test ends, passed or not (the fixture only
/// cleans up its shared lxcpath).
struct Remove<'a> {
    name: &'a str,
    lxcpath: &'a Path,
}

impl Drop for Remove<'_> {
    fn drop(&mut self) {
        if let Ok(c) = Container::new(self.name, self.lxcpath) {
            if c.is_running() {
                let _ = c.stop();
            }
            if c.is_defined() {
                let _ = c.destroy();
            }
        }
        let _ = std::fs::remove_dir_all(self.lxcpath.join(self.name));
    }
}

fn json(out: Output) -> Value {
    serde_json::from_slice(&ok(out).stdout).expect("nox prints JSON")
}

/// The lxc entries of `nox image list --json` named `name`.
fn lxc_images(nox: impl Fn() -> Command, name: &str) -> Vec<Value> {
    let list = json(nox().args(["image", "list", "--json"]).output().unwrap());
    list.as_array()
        .expect("a JSON array")
        .iter()
        .filter(|i| i["backend"] == "lxc" && i["name"] == name)
        .cloned()
        .collect()
}

#[test]
fn a_container_base_is_refused_while_used_and_pruned_after() {
    if !live("a_container_base_is_refused_while_used_and_pruned_after") {
        return;
    }
    let image = TestImage::get();
    let fx = Fixture::new("image-cache");
    let lxcpath = fx.dir.join("lxc");
    let cfg = config(&fx, &image, &lxcpath);
    let nox = || fx.nox(&cfg);
    let name = fx.unique_name("ic");
    let _remove = Remove {
        name: &name,
        lxcpath: &lxcpath,
    };
    ok(nox()
        .args([
            "create",
            &name,
            "--backend",
            "lxc",
            "--image",
            MINIMAL_IMAGE,
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap());

    // Listed under the [images] name it was created from, with its checksum and size.
    let listed = lxc_images(nox, MINIMAL_IMAGE);
    assert_eq!(listed.len(), 1, "{listed:?}");
    let base = &listed[0];
    let checksum = base["checksum"].as_str().unwrap().to_string();
    assert!(checksum.starts_with("sha256:"), "{base}");
    let tarball = PathBuf::from(base["path"].as_str().unwrap());
    assert!(tarball.is_file(), "{base}");
    // The tarball and the unpacked rootfs: more than the tarball alone.
    let size = base["size_bytes"].as_u64().unwrap();
    assert!(size > std::fs::metadata(&tarball).unwrap().len(), "{base}");
    assert!(base["virtual_size_bytes"].as_u64().unwrap() > 0, "{base}");

    // rm is refused as bad input, in one line naming the container, and removes nothing.
    for which in [MINIMAL_IMAGE, checksum.as_str()] {
        let out = nox().args(["image", "rm", which]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        let err = text(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains(&name), "{err}");
    }
    assert!(tarball.is_file());
    ok(nox().args(["exec", &name, "--", "true"]).output().unwrap());

    // prune keeps a base a container uses.
    let pruned = json(nox().args(["image", "prune", "--json"]).output().unwrap());
    let removed = pruned["removed"].as_array().unwrap();
    assert!(
        !removed.iter().any(|i| i["checksum"] == checksum.as_str()),
        "{pruned}"
    );
    assert_eq!(lxc_images(nox, MINIMAL_IMAGE).len(), 1);

    ok(nox().args(["delete", "--force", &name]).output().unwrap());

    // Unused now: prune removes it, all of it, and counts what that freed.
    let pruned = json(nox().args(["image", "prune", "--json"]).output().unwrap());
    let removed = pruned["removed"].as_array().unwrap();
    let gone: Vec<&Value> = removed
        .iter()
        .filter(|i| i["checksum"] == checksum.as_str() && i["backend"] == "lxc")
        .collect();
    assert_eq!(gone.len(), 1, "{pruned}");
    let freed = pruned["freed_bytes"].as_u64().unwrap();
    assert!(freed >= size && size > 0, "{pruned}");
    assert!(lxc_images(nox, MINIMAL_IMAGE).is_empty());
    assert!(!tarball.exists());
    let left: Vec<String> = std::fs::read_dir(lxcpath.join(".nox/images"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".lock")
        .collect();
    assert!(left.is_empty(), "left in the cache: {left:?}");

    // Nothing more to prune, said in text too.
    let out = ok(nox().args(["image", "prune"]).output().unwrap());
    assert_eq!(text(&out.stdout).trim(), "freed 0.0 MB");
}
