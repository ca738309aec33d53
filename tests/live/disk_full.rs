//! A backup store that fills up mid-backup: one line of error, nothing committed or listed,
//! no temp dir left, the container running (thawed), and the next backup works once space is
//! freed. The store is a small ext4 filesystem of its own (a loop mount), never the host's.

use std::path::Path;
use std::process::Stdio;

use nox_tests::fixture::Fixture;
use nox_tests::image::TestImage;
use nox_tests::loopfs::LoopFs;
use nox_tests::{live, ok, text};
use serde_json::Value;

fn backups(fx: &Fixture, cfg: &Path) -> Vec<Value> {
    let out = ok(fx.nox(cfg).args(["backups", "--json"]).output().unwrap());
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// Every entry under `dir` but the store's lock files, as paths relative to it.
fn entries(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_name() == ".lock" {
                continue;
            }
            if p.is_dir() {
                stack.push(p.clone());
            }
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
        }
    }
    out.sort();
    out
}

#[test]
fn a_full_backup_disk_leaves_nothing_and_the_next_backup_works() {
    if !live("a_full_backup_disk_leaves_nothing_and_the_next_backup_works") {
        return;
    }
    let image = TestImage::get();
    let fx = Fixture::new("disk-full");
    // Declared after the fixture, so it is unmounted before the fixture removes its dir.
    let fs = LoopFs::new(&fx.dir, 384);
    let store = fs.mountpoint.join("backups");
    let cfg = fx.nox_config(
        &image,
        &format!("[backup]\ndir = \"{}\"\nkeep = 5\n", store.display()),
    );
    let name = fx.unique_name("ct");
    fx.create_container(&cfg, &name);

    // 8 MiB left: the rootfs archive is many times that, so the disk fills mid-archive.
    let filler = fs.fill_leaving(8 << 20);
    let out = fx.nox(&cfg).args(["backup", &name]).output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    // Which file, why, whose disk, and what to do; the cause said once.
    assert!(
        err.starts_with(&format!("error: writing {}/{name}/.tmp-", store.display()))
            && err.contains("rootfs.tar.zst: No space left on device")
            && err.contains(&format!(
                "the disk holding the backup store {} is full (hint: ",
                store.display()
            )),
        "{err}"
    );
    assert_eq!(err.matches("No space left").count(), 1, "{err}");
    // Nothing committed, listed or left half-written (no .tmp- dir, no backup dir).
    assert_eq!(backups(&fx, &cfg), Vec::<Value>::new());
    assert_eq!(entries(&store), vec![name.clone()]);
    // The container was frozen for the backup: it is thawed and answers.
    let status: Value = serde_json::from_slice(
        &ok(fx
            .nox(&cfg)
            .args(["status", &name, "--json"])
            .output()
            .unwrap())
        .stdout,
    )
    .unwrap();
    assert_eq!(status["state"], "running", "{status}");
    let alive = ok(fx
        .nox(&cfg)
        .args(["exec", &name, "--", "echo", "alive"])
        .output()
        .unwrap());
    assert_eq!(text(&alive.stdout), "alive\n");

    // Space freed: the next backup works, is listed, and restores (every checksum verified).
    std::fs::remove_file(&filler).unwrap();
    let out = ok(fx.nox(&cfg).args(["backup", &name]).output().unwrap());
    assert!(
        text(&out.stdout).contains("full backup"),
        "{}",
        text(&out.stdout)
    );
    let list = backups(&fx, &cfg);
    assert_eq!(list.len(), 1, "{list:?}");
    let id = list[0]["id"].as_str().unwrap();
    assert_eq!(
        entries(&store),
        vec![
            name.clone(),
            format!("{name}/{id}"),
            format!("{name}/{id}/manifest.json"),
            format!("{name}/{id}/rootfs.tar.zst"),
        ]
    );
    let copy = fx.unique_name("ct");
    fx.own_container(&copy);
    ok(fx
        .nox(&cfg)
        .args([
            "restore",
            list[0]["backup"].as_str().unwrap(),
            "--name",
            &copy,
            "--no-start",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap());
}
