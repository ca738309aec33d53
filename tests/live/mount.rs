//! Shared folders end to end, through the real `nox` binary, liblxc and libvirt/QEMU.
//!
//! One container shares two host directories (one read-only) from `create`, then gets one
//! more and loses one with `nox mount add|rm` and a restart. One VM does the same over
//! virtiofs, with `mount add|rm` live (hot-plug, no restart). Files cross both ways with
//! ownership mapped, and the guest never reaches past the share (`..`, symlinks).

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Output, Stdio};

use nox_tests::fixture::{lxcpath, Fixture};
use nox_tests::image::TestImage;
use nox_tests::{live, ok, text};
use serde_json::Value;

fn exec(fx: &Fixture, cfg: &Path, name: &str, argv: &[&str]) -> Output {
    fx.nox(cfg)
        .args(["exec", name, "--"])
        .args(argv)
        .output()
        .unwrap()
}

fn out(o: Output) -> String {
    text(&ok(o).stdout).trim().to_string()
}

fn mounts_json(fx: &Fixture, cfg: &Path, name: &str) -> Value {
    serde_json::from_slice(
        &ok(fx
            .nox(cfg)
            .args(["mount", "list", name, "--json"])
            .output()
            .unwrap())
        .stdout,
    )
    .unwrap()
}

/// Exit 2 and one line on stderr holding `what`.
#[track_caller]
fn bad_input(o: Output, what: &str) {
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains(what), "{err}");
}

#[test]
fn container_shared_folders() {
    if !live("container_shared_folders") {
        return;
    }
    let started = std::time::Instant::now();
    let image = TestImage::get();
    let fx = Fixture::new("mount-ct");
    let cfg = fx.nox_config(&image, "");
    // The shared directories live in the fixture's private dir, removed with it.
    let host = fx.state_dir().with_file_name("shares");
    let share = host.join("share");
    let ro = host.join("ro");
    let later = host.join("later");
    for d in [&share, &ro, &later] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(ro.join("readme"), "read only\n").unwrap();
    // A link inside the share to the host's /etc: in the guest it must resolve in the guest.
    std::os::unix::fs::symlink("/etc", share.join("etc-link")).unwrap();
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap();

    // Bad --mount: one line, exit 2, nothing made.
    let bad = fx.unique_name("bad");
    fx.own_container(&bad);
    for (arg, what) in [
        ("relative:/mnt/x".to_string(), "absolute"),
        (format!("{}/missing:/mnt/x", host.display()), "missing"),
        (format!("{}:/", share.display()), "guest's /"),
        (format!("{}:/mnt/../etc", share.display()), ".."),
    ] {
        bad_input(
            fx.nox(&cfg)
                .args(["create", &bad, "--backend", "lxc", "--mount", &arg])
                .stdin(Stdio::null())
                .output()
                .unwrap(),
            what,
        );
        assert!(!lxcpath().join(&bad).join("config").exists());
    }
    let name = fx.unique_name("ct");
    fx.own_container(&name);
    let created: Value = serde_json::from_slice(
        &ok(fx
            .nox(&cfg)
            .args(["create", &name, "--backend", "lxc", "--json"])
            .args(["--image", "debian-12-test-minimal"])
            .args(["--mount", &format!("{}:/mnt/share", share.display())])
            .args(["--mount", &format!("{}/:/mnt/ro/:ro", ro.display())])
            .stdin(Stdio::null())
            .output()
            .unwrap())
        .stdout,
    )
    .unwrap();
    assert_eq!(created["state"], "running");
    let want = serde_json::json!([
        {"host": canon(&share), "guest": "/mnt/share", "readonly": false},
        {"host": canon(&ro), "guest": "/mnt/ro", "readonly": true},
    ]);
    assert_eq!(created["mounts"], want);
    let status: Value = serde_json::from_slice(
        &ok(fx
            .nox(&cfg)
            .args(["status", &name, "--json"])
            .output()
            .unwrap())
        .stdout,
    )
    .unwrap();
    assert_eq!(status["mounts"], want);
    assert_eq!(mounts_json(&fx, &cfg, &name), want);

    // Host to guest: content, and ownership mapped (host uid 1234 is uid 1234 inside, not
    // the overflow `nobody` a plain bind mount shows an unprivileged container).
    std::fs::write(share.join("from-host"), "hello guest\n").unwrap();
    std::os::unix::fs::chown(share.join("from-host"), Some(1234), Some(1234)).unwrap();
    assert_eq!(
        out(exec(&fx, &cfg, &name, &["cat", "/mnt/share/from-host"])),
        "hello guest"
    );
    assert_eq!(
        out(exec(
            &fx,
            &cfg,
            &name,
            &["stat", "-c", "%u:%g", "/mnt/share/from-host"]
        )),
        "1234:1234"
    );
    // Guest to host: what the guest's root writes is root's on the host (uid 0, not root's
    // subordinate 100000), and the guest's uid 1000 is the host's 1000.
    ok(exec(
        &fx,
        &cfg,
        &name,
        &["sh", "-c", "echo hello host > /mnt/share/from-guest"],
    ));
    ok(exec(
        &fx,
        &cfg,
        &name,
        &[
            "install",
            "-o",
            "1000",
            "-g",
            "1000",
            "/dev/null",
            "/mnt/share/by-1000",
        ],
    ));
    assert_eq!(
        std::fs::read_to_string(share.join("from-guest")).unwrap(),
        "hello host\n"
    );
    let meta = std::fs::metadata(share.join("from-guest")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (0, 0));
    assert_eq!(
        std::fs::metadata(share.join("by-1000")).unwrap().uid(),
        1000
    );

    // Read-only: readable, and a write is refused.
    assert_eq!(
        out(exec(&fx, &cfg, &name, &["cat", "/mnt/ro/readme"])),
        "read only"
    );
    let w = exec(&fx, &cfg, &name, &["touch", "/mnt/ro/new"]);
    assert!(!w.status.success(), "a write to a read-only share worked");
    assert!(text(&w.stderr).contains("Read-only"), "{}", text(&w.stderr));
    assert!(!ro.join("new").exists());

    // No way out: `..` at the share's root is the guest's /mnt, and links resolve inside the
    // guest, the host's /etc link and one the guest makes to / alike.
    assert_eq!(
        out(exec(&fx, &cfg, &name, &["realpath", "/mnt/share/.."])),
        "/mnt"
    );
    assert_eq!(
        out(exec(
            &fx,
            &cfg,
            &name,
            &["cat", "/mnt/share/../../etc/hostname"]
        )),
        name
    );
    assert_eq!(
        out(exec(
            &fx,
            &cfg,
            &name,
            &["cat", "/mnt/share/etc-link/hostname"]
        )),
        name
    );
    ok(exec(
        &fx,
        &cfg,
        &name,
        &["ln", "-s", "/", "/mnt/share/root-link"],
    ));
    assert_eq!(
        out(exec(
            &fx,
            &cfg,
            &name,
            &["cat", "/mnt/share/root-link/etc/hostname"]
        )),
        name
    );
    // A guest's link stays a link on the host: it is never followed by nox.
    assert!(std::fs::symlink_metadata(share.join("root-link"))
        .unwrap()
        .file_type()
        .is_symlink());

    // mount add|rm on the running container: recorded now, in effect from the next start.
    let add = ok(fx
        .nox(&cfg)
        .args([
            "mount",
            "add",
            &name,
            &format!("{}:/srv/later", later.display()),
        ])
        .output()
        .unwrap());
    assert!(
        text(&add.stdout).contains("next start"),
        "{}",
        text(&add.stdout)
    );
    let rm = ok(fx
        .nox(&cfg)
        .args(["mount", "rm", &name, "/mnt/ro/"])
        .output()
        .unwrap());
    assert!(
        text(&rm.stdout).contains("next start"),
        "{}",
        text(&rm.stdout)
    );
    assert_eq!(
        mounts_json(&fx, &cfg, &name),
        serde_json::json!([
            {"host": canon(&share), "guest": "/mnt/share", "readonly": false},
            {"host": canon(&later), "guest": "/srv/later", "readonly": false},
        ])
    );
    // Bad mount add|rm: one line, exit 2, nothing changed.
    bad_input(
        fx.nox(&cfg)
            .args([
                "mount",
                "add",
                &name,
                &format!("{}:/mnt/share", later.display()),
            ])
            .output()
            .unwrap(),
        "already has a shared folder on /mnt/share",
    );
    bad_input(
        fx.nox(&cfg)
            .args(["mount", "rm", &name, "/nowhere"])
            .output()
            .unwrap(),
        "no shared folder on /nowhere",
    );
    bad_input(
        fx.nox(&cfg)
            .args([
                "mount",
                "add",
                "cluster:web",
                &format!("{}:/x", later.display()),
            ])
            .output()
            .unwrap(),
        "remote cluster",
    );
    assert_eq!(mounts_json(&fx, &cfg, &name).as_array().unwrap().len(), 2);

    ok(fx.nox(&cfg).args(["stop", &name]).output().unwrap());
    ok(fx.nox(&cfg).args(["start", &name]).output().unwrap());
    std::fs::write(later.join("note"), "added later\n").unwrap();
    assert_eq!(
        out(exec(&fx, &cfg, &name, &["cat", "/srv/later/note"])),
        "added later"
    );
    let mounts = out(exec(&fx, &cfg, &name, &["cat", "/proc/self/mounts"]));
    assert!(mounts.contains(" /mnt/share "), "{mounts}");
    assert!(!mounts.contains(" /mnt/ro "), "{mounts}");
    eprintln!("container_shared_folders took {:?}", started.elapsed());
}

#[test]
fn vm_shared_folders() {
    if !live("vm_shared_folders") {
        return;
    }
    let started = std::time::Instant::now();
    let image = TestImage::get();
    let fx = Fixture::new("mount-vm");
    let cfg = fx.nox_config(&image, "");
    let host = fx.state_dir().with_file_name("shares");
    let share = host.join("share");
    let ro = host.join("ro");
    let later = host.join("later");
    for d in [&share, &ro, &later] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(ro.join("readme"), "read only\n").unwrap();
    std::fs::write(share.join("from-host"), "hello guest\n").unwrap();
    std::os::unix::fs::chown(share.join("from-host"), Some(1234), Some(1234)).unwrap();
    std::os::unix::fs::symlink("/etc", share.join("etc-link")).unwrap();
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap();

    let name = fx.unique_name("vm");
    fx.own_domain(&name);
    let created: Value = serde_json::from_slice(
        &ok(fx
            .nox(&cfg)
            .args(["create", &name, "--image", "debian-12-test", "--json"])
            .args(["--network", "user", "--memory", "1G"])
            .args(["--mount", &format!("{}:/mnt/share", share.display())])
            .args(["--mount", &format!("{}:/mnt/ro:ro", ro.display())])
            .stdin(Stdio::null())
            .output()
            .unwrap())
        .stdout,
    )
    .unwrap();
    assert_eq!(created["state"], "running");
    let want = serde_json::json!([
        {"host": canon(&share), "guest": "/mnt/share", "readonly": false},
        {"host": canon(&ro), "guest": "/mnt/ro", "readonly": true},
    ]);
    assert_eq!(created["mounts"], want);
    assert_eq!(mounts_json(&fx, &cfg, &name), want);
    eprintln!("vm_shared_folders: created after {:?}", started.elapsed());

    // Mounted at first boot from fstab (so every later boot mounts them too).
    let mounts = out(exec(&fx, &cfg, &name, &["cat", "/proc/self/mounts"]));
    assert!(mounts.contains(" /mnt/share virtiofs rw"), "{mounts}");
    assert!(mounts.contains(" /mnt/ro virtiofs ro"), "{mounts}");

    // Host to guest and back; virtiofs keeps uids as they are on the host's disk.
    assert_eq!(
        out(exec(&fx, &cfg, &name, &["cat", "/mnt/share/from-host"])),
        "hello guest"
    );
    assert_eq!(
        out(exec(
            &fx,
            &cfg,
            &name,
            &["stat", "-c", "%u:%g", "/mnt/share/from-host"]
        )),
        "1234:1234"
    );
    ok(exec(
        &fx,
        &cfg,
        &name,
        &["sh", "-c", "echo hello host > /mnt/share/from-guest"],
    ));
    assert_eq!(
        std::fs::read_to_string(share.join("from-guest")).unwrap(),
        "hello host\n"
    );
    let meta = std::fs::metadata(share.join("from-guest")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (0, 0));

    // Read-only.
    assert_eq!(
        out(exec(&fx, &cfg, &name, &["cat", "/mnt/ro/readme"])),
        "read only"
    );
    let w = exec(&fx, &cfg, &name, &["touch", "/mnt/ro/new"]);
    assert!(!w.status.success(), "a write to a read-only share worked");
    assert!(!ro.join("new").exists());

    // No way out: `..` is the guest's /mnt, links resolve in the guest.
    assert_eq!(
        out(exec(&fx, &cfg, &name, &["realpath", "/mnt/share/.."])),
        "/mnt"
    );
    assert_eq!(
        out(exec(
            &fx,
            &cfg,
            &name,
            &["cat", "/mnt/share/etc-link/hostname"]
        )),
        name
    );
    ok(exec(
        &fx,
        &cfg,
        &name,
        &["ln", "-s", "/", "/mnt/share/root-link"],
    ));
    assert_eq!(
        out(exec(
            &fx,
            &cfg,
            &name,
            &["cat", "/mnt/share/root-link/etc/hostname"]
        )),
        name
    );

    // mount add on the running VM: hot-plugged, mounted now, in fstab for later boots.
    std::fs::write(later.join("note"), "added later\n").unwrap();
    let add = ok(fx
        .nox(&cfg)
        .args([
            "mount",
            "add",
            &name,
            &format!("{}:/srv/later:ro", later.display()),
        ])
        .output()
        .unwrap());
    assert!(
        text(&add.stdout).contains("mounted now"),
        "{}",
        text(&add.stdout)
    );
    assert_eq!(
        out(exec(&fx, &cfg, &name, &["cat", "/srv/later/note"])),
        "added later"
    );
    let fstab = out(exec(&fx, &cfg, &name, &["cat", "/etc/fstab"]));
    assert!(
        fstab.contains(" /srv/later virtiofs defaults,nofail,ro 0 0"),
        "{fstab}"
    );
    assert_eq!(mounts_json(&fx, &cfg, &name).as_array().unwrap().len(), 3);
    bad_input(
        fx.nox(&cfg)
            .args([
                "mount",
                "add",
                &name,
                &format!("{}:/srv/later", share.display()),
            ])
            .output()
            .unwrap(),
        "already has a shared folder on /srv/later",
    );

    // mount rm: unmounted, out of fstab, unplugged, out of the record.
    ok(fx
        .nox(&cfg)
        .args(["mount", "rm", &name, "/mnt/ro"])
        .output()
        .unwrap());
    let mounts = out(exec(&fx, &cfg, &name, &["cat", "/proc/self/mounts"]));
    assert!(!mounts.contains(" /mnt/ro "), "{mounts}");
    assert!(mounts.contains(" /srv/later "), "{mounts}");
    let fstab = out(exec(&fx, &cfg, &name, &["cat", "/etc/fstab"]));
    assert!(!fstab.contains(" /mnt/ro "), "{fstab}");
    assert!(fstab.contains("LABEL=root"), "{fstab}");
    assert_eq!(
        mounts_json(&fx, &cfg, &name),
        serde_json::json!([
            {"host": canon(&share), "guest": "/mnt/share", "readonly": false},
            {"host": canon(&later), "guest": "/srv/later", "readonly": true},
        ])
    );
    let domxml = std::process::Command::new("virsh")
        .args(["-c", fx.uri(), "dumpxml", &name])
        .output()
        .unwrap();
    let domxml = text(&ok(domxml).stdout);
    assert_eq!(domxml.matches("<filesystem").count(), 2, "{domxml}");
    eprintln!("vm_shared_folders took {:?}", started.elapsed());
}
