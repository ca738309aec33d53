//! `nox image build` and `build:` sources, live.
//!
//! The test bed *is* nox's build of Debian 12: `cargo xtask test-image` runs nox-image's
//! builder, and its nox.toml points `[build] dir` at that build. So here the debootstrap is
//! found done (a fresh machine runs it once, in `xtask test-image`), and this test covers what
//! surrounds it: that `nox image build debian-12` and a download that falls back to a build
//! land exactly the bytes the rest of the suite boots (VMs) and runs (containers), in both
//! image caches, and that a cached image stays while a container needs it.

use std::path::{Path, PathBuf};

use nox_tests::fixture::Fixture;
use nox_tests::image::TestImage;
use nox_tests::{live, ok, text};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn sha256(path: &Path) -> String {
    let mut f = std::fs::File::open(path).unwrap();
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).unwrap();
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// The test bed's images and build dir, with every cache of this test private: the VM image
/// cache, and an lxcpath of its own, so removing a cached base here cannot touch the bases
/// the other tests share.
fn config(fx: &Fixture, image: &TestImage) -> (PathBuf, PathBuf) {
    let lxcpath = fx.dir.join("lxc");
    std::fs::create_dir_all(&lxcpath).unwrap();
    // Nothing listens on 127.0.0.1:9 (discard): the download fails at once, never leaving
    // this host.
    let zero = "0".repeat(64);
    let text = format!(
        "{images}\n[vm]\nstorage_dir = \"{vm}\"\n\n[state]\ndir = \"{state}\"\n\n\
         [lxc]\nlxcpath = \"{lxc}\"\n\n\
         [images.fallback]\n\
         lxc = [\n  {{ url = \"https://127.0.0.1:9/nothing.tar.xz\", checksum = \"sha256:{zero}\" }},\n  \
         {{ url = \"build:debian/bookworm\" }},\n]\n",
        images = std::fs::read_to_string(&image.config).unwrap(),
        vm = fx.dir.join("vm").display(),
        state = fx.state_dir().display(),
        lxc = lxcpath.display(),
    );
    let path = fx.dir.join("nox.toml");
    std::fs::write(&path, text).unwrap();
    (path, lxcpath)
}

/// Deletes the container however the test ends.
struct Delete<'a>(&'a Fixture, &'a Path, &'a str);

impl Drop for Delete<'_> {
    fn drop(&mut self) {
        let _ = self
            .0
            .nox(self.1)
            .args(["delete", "--force", self.2])
            .output();
    }
}

#[test]
fn image_build_and_a_fallback_to_a_build_land_the_test_beds_bytes_in_both_caches() {
    if !live("image_build_and_a_fallback_to_a_build_land_the_test_beds_bytes_in_both_caches") {
        return;
    }
    let fx = Fixture::new("image-build");
    let image = TestImage::get();
    let (cfg, _lxcpath) = config(&fx, &image);

    // `nox image build debian-12`: the built-in entry's build: source, found built.
    let out = ok(fx
        .nox(&cfg)
        .args(["image", "build", "debian-12", "--json"])
        .output()
        .unwrap());
    let stderr = text(&out.stderr);
    assert!(
        !stderr.contains("debootstrap"),
        "nox's recipe must be the test bed's, so this build is found done: {stderr}"
    );
    let built: Value = serde_json::from_slice(&out.stdout).unwrap();
    let built = built.as_array().unwrap();
    assert_eq!(built.len(), 2, "one image per backend: {built:?}");
    let by = |backend: &str| {
        built
            .iter()
            .find(|i| i["backend"] == backend)
            .unwrap_or_else(|| panic!("no {backend} image in {built:?}"))
    };
    assert_eq!(by("vm")["name"], "debian-12");
    assert_eq!(by("vm")["checksum"], sha256(&image.qcow2).as_str());
    assert_eq!(
        by("lxc")["checksum"],
        sha256(&image.minimal_rootfs).as_str()
    );

    let listed: Value = serde_json::from_slice(
        &ok(fx
            .nox(&cfg)
            .args(["image", "list", "--json"])
            .output()
            .unwrap())
        .stdout,
    )
    .unwrap();
    for backend in ["vm", "lxc"] {
        assert!(
            listed
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i["name"] == "debian-12" && i["backend"] == backend),
            "image list shows the {backend} build: {listed}"
        );
    }

    // A download that fails falls back to the build, saying so in one line.
    let name = fx.unique_name("fallback");
    let _delete = Delete(&fx, &cfg, &name);
    let out = fx
        .nox(&cfg)
        .args(["create", &name, "--backend", "lxc", "--image", "fallback"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "create failed: {stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("https://127.0.0.1:9/nothing.tar.xz"))
        .unwrap_or_else(|| panic!("no line names the failed download: {stderr}"));
    assert!(
        line.contains("failed") && line.contains("building it from the Debian archive instead"),
        "{line}"
    );
    let os = ok(fx
        .nox(&cfg)
        .args(["exec", &name, "--", "cat", "/etc/os-release"])
        .output()
        .unwrap());
    assert!(
        text(&os.stdout).contains("bookworm"),
        "{}",
        text(&os.stdout)
    );
    // Shaped like LXC's images: no cloud-init in a built container.
    let ci = fx
        .nox(&cfg)
        .args(["exec", &name, "--", "test", "-e", "/usr/bin/cloud-init"])
        .output()
        .unwrap();
    assert_eq!(ci.status.code(), Some(1), "{}", text(&ci.stderr));

    // The base stays while the container needs it.
    let rm = fx
        .nox(&cfg)
        .args(["image", "rm", "debian-12", "--backend", "lxc"])
        .output()
        .unwrap();
    assert_eq!(rm.status.code(), Some(2), "{}", text(&rm.stderr));
    assert!(text(&rm.stderr).contains(&name), "{}", text(&rm.stderr));
    ok(fx
        .nox(&cfg)
        .args(["delete", "--force", &name])
        .output()
        .unwrap());
    ok(fx
        .nox(&cfg)
        .args(["image", "rm", "debian-12", "--backend", "lxc"])
        .output()
        .unwrap());
}
