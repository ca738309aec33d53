//! Snapshots end to end through the real `nox` binary: one container and one VM, each taken
//! through snapshot, change, restore (the change gone), a removal, a killed snapshot put
//! right, and `delete` leaving no snapshot behind. The VM also shows `--memory` resuming a
//! process, and that snapshots and restores keep backups working (the backup after a
//! restore is full, and restorable).

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use nox_tests::fixture::{lxcpath, Fixture, USER_SHAPE};
use nox_tests::image::TestImage;
use nox_tests::{live, ok, text};
use serde_json::Value;

fn config(fx: &Fixture, image: &TestImage) -> PathBuf {
    fx.nox_config(
        image,
        &format!(
            "[backup]\ndir = \"{}\"\nkeep = 5\n",
            fx.dir.join("backups").display()
        ),
    )
}

fn nox(fx: &Fixture, cfg: &Path, args: &[&str]) -> Output {
    fx.nox(cfg)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `nox exec NAME -- sh -c SCRIPT`, which must succeed; its stdout.
#[track_caller]
fn sh(fx: &Fixture, cfg: &Path, name: &str, script: &str) -> String {
    text(&ok(nox(fx, cfg, &["exec", name, "--", "sh", "-c", script])).stdout)
}

#[track_caller]
fn bad_input(out: Output, says: &str) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line expected: {err}");
    assert!(err.contains(says), "{err}");
}

fn snapshots(fx: &Fixture, cfg: &Path, name: &str) -> Vec<Value> {
    let out = ok(nox(fx, cfg, &["snapshots", name, "--json"]));
    serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
}

fn names(list: &[Value]) -> Vec<String> {
    list.iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

/// `nox ARGS` killed at fault point `point`.
#[track_caller]
fn killed_at(fx: &Fixture, cfg: &Path, point: &str, args: &[&str]) {
    let out = fx
        .nox(cfg)
        .args(args)
        .env("NOX_FAULT_POINT", point)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        out.status.signal(),
        Some(9),
        "`nox {}` was to be killed at {point}: {:?}\n{}",
        args.join(" "),
        out.status,
        text(&out.stderr)
    );
}

/// Waits (10 s at most) until the lxcpath's trash holds nothing of container `name`.
fn replaced_layer_removed(name: &str) {
    let trash = lxcpath().join(".nox-trash");
    let prefix = format!("{name}-");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let left: Vec<String> = std::fs::read_dir(&trash)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|f| f.starts_with(&prefix))
            .collect();
        if left.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the replaced layer is still in {}: {left:?}",
            trash.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn container_snapshots() {
    if !live("container_snapshots") {
        return;
    }
    let t = std::time::Instant::now();
    let image = TestImage::get();
    let fx = Fixture::new("snapshot-ct");
    let cfg = config(&fx, &image);
    let name = fx.unique_name("snap");
    fx.create_container(&cfg, &name);
    let dir = lxcpath().join(&name);

    // A file with its own owner and mode, and a file of the image deleted (an overlay
    // whiteout): both must come back as they were.
    sh(
        &fx,
        &cfg,
        &name,
        "echo one > /root/keep && chown 1234:2345 /root/keep && chmod 0640 /root/keep && rm /etc/motd",
    );
    let out = ok(nox(&fx, &cfg, &["snapshot", &name]));
    assert!(
        text(&out.stdout).contains("snapshot snap0 taken (consistent)"),
        "{}",
        text(&out.stdout)
    );
    let list = snapshots(&fx, &cfg, &name);
    assert_eq!(names(&list), ["snap0"]);
    assert_eq!(list[0]["was_running"], true);
    assert_eq!(list[0]["consistency"], "application");

    sh(
        &fx,
        &cfg,
        &name,
        "echo two > /root/keep && echo new > /root/extra && echo back > /etc/motd",
    );
    let out = ok(nox(&fx, &cfg, &["snapshot", "restore", &name, "snap0"]));
    assert!(text(&out.stdout).contains("restored to snapshot snap0, running"));
    assert_eq!(
        sh(
            &fx,
            &cfg,
            &name,
            "cat /root/keep; stat -c '%u:%g %a' /root/keep; ls /root; test -e /etc/motd && echo motd || true"
        ),
        "one\n1234:2345 640\nkeep\n"
    );
    // The replaced layer left the container's directory with the restore, and its removal,
    // left to the background, finishes.
    assert!(!dir.join(".nox-old-delta").exists());
    replaced_layer_removed(&name);

    // Bad input: one line, exit 2, nothing made.
    bad_input(nox(&fx, &cfg, &["snapshot", &name, "Bad_Name"]), "invalid");
    bad_input(
        nox(&fx, &cfg, &["snapshot", &name, "snap0"]),
        "already has a snapshot",
    );
    bad_input(
        nox(&fx, &cfg, &["snapshot", "restore", &name, "nosuch"]),
        "no snapshot named",
    );
    bad_input(
        nox(&fx, &cfg, &["snapshot", &name, "--memory"]),
        "--memory is for VMs",
    );
    assert_eq!(names(&snapshots(&fx, &cfg, &name)), ["snap0"]);

    // A snapshot killed after its copy is never listed, and the next command removes it.
    killed_at(
        &fx,
        &cfg,
        "lxc.snapshot.copied",
        &["snapshot", &name, "half"],
    );
    assert_eq!(names(&snapshots(&fx, &cfg, &name)), ["snap0"]);
    let out = ok(nox(&fx, &cfg, &["snapshot", &name]));
    let err = text(&out.stderr);
    assert!(
        err.contains("undid an interrupted `nox snapshot`")
            && err.contains("removed the unfinished snapshot half"),
        "{err}"
    );
    // Names go one past the highest: snap1, never a reused one.
    assert_eq!(names(&snapshots(&fx, &cfg, &name)), ["snap0", "snap1"]);
    assert!(!dir.join("nox-snapshots/.tmp-half").exists());

    // A restore killed between moving the old filesystem aside and putting the snapshot in
    // place: the next command puts the old one back and starts the container again.
    sh(&fx, &cfg, &name, "echo three > /root/keep");
    killed_at(
        &fx,
        &cfg,
        "lxc.snapshot.restore.swapping",
        &["snapshot", "restore", &name, "snap0"],
    );
    assert!(!dir.join("delta").exists());
    let out = ok(nox(&fx, &cfg, &["snapshot", "rm", &name, "snap1"]));
    assert!(
        text(&out.stderr).contains("put back the filesystem the restore had moved aside"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(sh(&fx, &cfg, &name, "cat /root/keep"), "three\n");
    assert_eq!(names(&snapshots(&fx, &cfg, &name)), ["snap0"]);

    // A stopped container is snapshotted as it is, and restored stopped.
    ok(nox(&fx, &cfg, &["stop", &name]));
    // Unlike a stopped VM's (below), a container's snapshot leaves its backup chain alone.
    let out = ok(nox(&fx, &cfg, &["snapshot", &name, "cold"]));
    assert!(
        !text(&out.stderr).contains("the next backup of"),
        "{}",
        text(&out.stderr)
    );
    let list = snapshots(&fx, &cfg, &name);
    assert_eq!(list[1]["name"], "cold");
    assert_eq!(list[1]["was_running"], false);
    let out = ok(nox(&fx, &cfg, &["snapshot", "restore", &name, "snap0"]));
    assert!(text(&out.stdout)
        .trim()
        .ends_with("restored to snapshot snap0"));
    ok(nox(&fx, &cfg, &["start", &name]));
    assert_eq!(sh(&fx, &cfg, &name, "cat /root/keep"), "one\n");

    // delete takes the snapshots with it.
    ok(nox(&fx, &cfg, &["delete", "--force", &name]));
    assert!(!dir.join("nox-snapshots").exists() && !dir.join("delta").exists());
    eprintln!("container_snapshots took {:?}", t.elapsed());
}

#[test]
fn vm_snapshots() {
    if !live("vm_snapshots") {
        return;
    }
    let t = std::time::Instant::now();
    let image = TestImage::get();
    let fx = Fixture::new("snapshot-vm");
    let cfg = config(&fx, &image);
    let name = fx.unique_name("snap");
    fx.own_domain(&name);
    // The run's shared passt shape: a clone of its template, not a cold boot.
    let create = [
        &["create", &name, "--image", "debian-12-test"][..],
        USER_SHAPE,
    ]
    .concat();
    ok(nox(&fx, &cfg, &create));
    let dir = fx.dir.join("vm/instances").join(&name);

    // --memory: a process killed after the snapshot runs again, same pid, after the restore.
    let pid = sh(
        &fx,
        &cfg,
        &name,
        "nohup sleep 9999 >/dev/null 2>&1 & echo $!",
    );
    let pid = pid.trim();
    let out = ok(nox(&fx, &cfg, &["snapshot", &name, "live", "--memory"]));
    assert!(
        text(&out.stdout).contains("with memory"),
        "{}",
        text(&out.stdout)
    );
    sh(&fx, &cfg, &name, &format!("kill {pid}; touch /root/after"));
    let out = ok(nox(&fx, &cfg, &["snapshot", "restore", &name, "live"]));
    assert!(
        text(&out.stdout).contains("running"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(
        sh(&fx, &cfg, &name, "pgrep -x sleep; ls /root"),
        format!("{pid}\n")
    );

    // Backups across a disk snapshot: the chain goes on (incremental) after a snapshot...
    let first = text(&ok(nox(&fx, &cfg, &["backup", &name])).stdout);
    assert!(first.contains("full backup"), "{first}");
    let out = ok(nox(&fx, &cfg, &["snapshot", &name, "disk"]));
    assert!(
        text(&out.stdout).contains("snapshot disk taken (consistent)"),
        "quiesced through the agent: {}",
        text(&out.stdout)
    );
    sh(&fx, &cfg, &name, "echo changed > /root/changed; sync");
    let second = text(&ok(nox(&fx, &cfg, &["backup", &name])).stdout);
    assert!(second.contains("incremental backup"), "{second}");

    // ...and a restore (the change gone) ends it: nox says so and the next backup is full.
    let out = ok(nox(&fx, &cfg, &["snapshot", "restore", &name, "disk"]));
    let err = text(&out.stderr);
    assert!(err.contains("the next backup of"), "{err}");
    assert_eq!(sh(&fx, &cfg, &name, "ls /root"), "");
    let third = text(&ok(nox(&fx, &cfg, &["backup", &name])).stdout);
    assert!(third.contains("full backup"), "{third}");
    // Restorable: verified and written out as a standalone disk (not booted: one boot less).
    let copy = fx.unique_name("copy");
    fx.own_domain(&copy);
    ok(nox(
        &fx,
        &cfg,
        &["restore", &name, "--name", &copy, "--no-start"],
    ));
    ok(nox(&fx, &cfg, &["delete", &copy]));

    // Bad input, and a stopped VM's snapshot.
    bad_input(
        nox(&fx, &cfg, &["snapshot", "restore", &name, "nosuch"]),
        "no snapshot named",
    );
    ok(nox(&fx, &cfg, &["stop", &name]));
    bad_input(
        nox(&fx, &cfg, &["snapshot", &name, "--memory"]),
        "is stopped",
    );
    // libvirt cannot snapshot a stopped VM beside a backup checkpoint: nox ends the chain
    // first, and says so.
    let out = ok(nox(&fx, &cfg, &["snapshot", &name, "cold"]));
    assert!(
        text(&out.stderr).contains("the next backup of"),
        "{}",
        text(&out.stderr)
    );
    let list = snapshots(&fx, &cfg, &name);
    assert_eq!(names(&list), ["live", "disk", "cold"]);
    assert_eq!(list[0]["memory"], true);
    assert_eq!(list[2]["was_running"], false);
    ok(nox(&fx, &cfg, &["snapshot", "rm", &name, "cold"]));
    assert_eq!(names(&snapshots(&fx, &cfg, &name)), ["live", "disk"]);

    // delete takes the snapshots, their overlays and the saved memory with it.
    assert!(dir.join("live.mem").exists());
    ok(nox(&fx, &cfg, &["delete", &name]));
    assert!(!dir.exists(), "{} is left", dir.display());
    eprintln!("vm_snapshots took {:?}", t.elapsed());
}
