//! Docker on overlay2 in a container (issue 17), live. Steps rather than a test binary of
//! their own: tests/live/scripts.rs runs them in the container it already installed Docker
//! in, so CI installs Docker in a container once.
//!
//! In a default (unprivileged) container with the docker launch script: Docker's storage
//! driver is overlay2 on the host directory nox binds at /var/lib/docker, an image imported
//! from a local rootfs tarball runs, a three-layer build succeeds, and `nox delete` leaves
//! nothing of the volume on the host.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use crate::fixture::{lxcpath, Fixture};
use crate::{ok, text};

/// The build the benchmark (`cargo xtask bench docker`) times too.
pub const BUILD: &str = include_str!("docker-three-layer-build.sh");

fn nox(fx: &Fixture, cfg: &Path, args: &[&str]) -> Output {
    fx.nox(cfg)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn exec(fx: &Fixture, cfg: &Path, name: &str, argv: &[&str]) -> Output {
    nox(fx, cfg, &[&["exec", name, "--"][..], argv].concat())
}

/// The container's Docker volume on the host, as nox-lxc places it.
pub fn volume(name: &str) -> PathBuf {
    nox_lxc::docker_volume::host_path(&lxcpath(), &name.parse().unwrap())
}

/// Everything but the deletion: call while the container runs with Docker installed.
pub fn overlay2_run_and_build(fx: &Fixture, cfg: &Path, name: &str) {
    let driver = ok(exec(
        fx,
        cfg,
        name,
        &["docker", "info", "--format", "{{.Driver}}"],
    ));
    assert_eq!(text(&driver.stdout).trim(), "overlay2");

    // On the host: the volume belongs to the container's root (its mapped uid), and Docker's
    // layers are in it.
    let config = std::fs::read_to_string(lxcpath().join(name).join("config")).unwrap();
    let (uid, gid) = nox_lxc::docker_volume::owner_from_config(&config).unwrap();
    assert_ne!(uid, 0, "{config}");
    let v = volume(name);
    let meta = std::fs::metadata(&v).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (uid, gid));
    assert!(v.join("overlay2").is_dir(), "{}", v.display());

    // A three-layer build from an imported rootfs (4 MiB payload), then a run of the result.
    let out = ok(exec(fx, cfg, name, &["sh", "-c", BUILD, "sh", "t", "4"]));
    let report = text(&out.stdout);
    assert!(report.contains("build_seconds="), "{report}");
    let layers = ok(exec(
        fx,
        cfg,
        name,
        &[
            "docker",
            "image",
            "inspect",
            "--format",
            "{{len .RootFS.Layers}}",
            "nox-three-layers-t",
        ],
    ));
    assert_eq!(
        text(&layers.stdout).trim(),
        "4",
        "the base and three layers"
    );
    let run = ok(exec(
        fx,
        cfg,
        name,
        &[
            "docker",
            "run",
            "--rm",
            "nox-three-layers-t",
            "sh",
            "-c",
            "read a < /one; read b < /two; read c < /three; echo \"$a $b $c\"",
        ],
    ));
    assert_eq!(text(&run.stdout).trim(), "layer-one layer-two layer-three");
    // The layers are overlay2's, in the volume: none of them went to the overlay root.
    let in_volume = std::fs::read_dir(v.join("overlay2")).unwrap().count();
    assert!(in_volume >= 4, "{in_volume} entries in overlay2/");

    let report: serde_json::Value =
        serde_json::from_slice(&ok(nox(fx, cfg, &["check", name, "--json"])).stdout).unwrap();
    assert_eq!(report["docker"]["overlayfs_dir"], "/var/lib/docker");
    assert_eq!(report["docker_verdict"]["verdict"], "yes", "{report}");
}

/// After `nox delete`: nothing of the volume is left on the host.
pub fn deleted_leaves_no_volume(fx: &Fixture, cfg: &Path, name: &str) {
    let v = volume(name);
    assert!(v.exists());
    ok(nox(fx, cfg, &["delete", "--force", name]));
    assert!(!v.exists(), "{} is left", v.display());
    assert!(!lxcpath().join(name).exists());
}

/// The nox config lines that keep this test's backups in its private dir.
pub fn backup_config(fx: &Fixture) -> String {
    format!("[backup]\ndir = \"{}\"\n", fx.dir.join("backups").display())
}

/// `nox backup` archives the volume beside the rootfs, and a restore under a new name puts
/// it back, owned by the new container's root, with the image built above in it. The copy is
/// not started (Docker in it was shown above): its files on the host are what is checked.
pub fn backup_and_restore_keep_the_volume(fx: &Fixture, cfg: &Path, name: &str) {
    ok(nox(fx, cfg, &["backup", name]));
    let list: serde_json::Value =
        serde_json::from_slice(&ok(nox(fx, cfg, &["backups", "--json"])).stdout).unwrap();
    let id = list[0]["backup"].as_str().unwrap().to_string();
    let dir = fx.dir.join("backups").join(&id);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(
        manifest["lxc"]["docker_file"], "docker.tar.zst",
        "{manifest}"
    );
    assert!(dir.join("docker.tar.zst").is_file());

    let copy = fx.unique_name("dcopy");
    fx.own_container(&copy);
    ok(nox(
        fx,
        cfg,
        &["restore", &id, "--name", &copy, "--no-start"],
    ));
    let v = volume(&copy);
    let config = std::fs::read_to_string(lxcpath().join(&copy).join("config")).unwrap();
    let owner = nox_lxc::docker_volume::owner_from_config(&config).unwrap();
    let meta = std::fs::metadata(&v).unwrap();
    assert_eq!((meta.uid(), meta.gid()), owner);
    assert!(
        config.contains(&format!("{} var/lib/docker", v.display())),
        "{config}"
    );
    let repos = std::fs::read_to_string(v.join("image/overlay2/repositories.json")).unwrap();
    assert!(repos.contains("nox-three-layers-t"), "{repos}");
    ok(nox(fx, cfg, &["delete", "--force", &copy]));
    assert!(!v.exists(), "{} is left", v.display());
}
