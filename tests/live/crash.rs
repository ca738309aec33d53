//! Crash safety and concurrency, through the real `nox` binary built with fault points
//! (`NOX_FAULT_POINT=NAME` kills it with SIGKILL at that point, `NAME:stop` stops it there).
//!
//! For create, delete, backup and restore on both backends, nox is killed at every point of
//! the way; the next nox command on that name must finish or undo the half-done work, say so
//! in one line, and leave nothing behind: no domain, container, overlay, disk, seed, process,
//! lock, intent record or partial backup. Then the name must be usable again.
//!
//! And two commands on one name: the loser of a create race is told at once (exit 2, "already
//! exists"), `list` and `status` never wait for a lock, and a command waiting for a killed
//! holder goes on once the kernel frees the lock.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use nox_tests::fixture::{lxcpath, Fixture};
use nox_tests::image::TestImage;
use nox_tests::{live, ok, text};
use serde_json::Value;

const CT_IMAGE: &str = "debian-12-test-minimal";
const VM_IMAGE: &str = "debian-12-test";

fn config(fx: &Fixture, image: &TestImage) -> PathBuf {
    fx.nox_config(
        image,
        &format!(
            "[backup]\ndir = \"{}\"\nkeep = 5\n",
            fx.dir.join("backups").display()
        ),
    )
}

/// `nox ARGS` with `NOX_FAULT_POINT=point`, which must kill it there.
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
        "`nox {}` was to be killed at {point}, but ended with {:?}\nstderr: {}",
        args.join(" "),
        out.status,
        text(&out.stderr)
    );
}

/// The next command on the name: it succeeds, and says in exactly one line (its first) what
/// it put right after which interrupted command.
#[track_caller]
fn recovers(fx: &Fixture, cfg: &Path, args: &[&str], name: &str, what: &str) -> Output {
    let out = ok(fx
        .nox(cfg)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap());
    let err = text(&out.stderr);
    let notes: Vec<&str> = err.lines().filter(|l| l.contains("interrupted")).collect();
    assert_eq!(notes.len(), 1, "one recovery line expected:\n{err}");
    assert!(
        notes[0].starts_with(&format!("note: {name}: {what} an interrupted `nox ")),
        "{}",
        notes[0]
    );
    out
}

/// Everything nox could have left of `name` on this host, described; empty means nothing.
fn leftovers(fx: &Fixture, name: &str) -> Vec<String> {
    let mut found = Vec::new();
    virt::error::clear_error_callback();
    if let Ok(conn) = virt::connect::Connect::open(Some("qemu:///system")) {
        if conn.lookup_domain_by_name(name).is_ok() {
            found.push(format!("libvirt domain {name}"));
        }
    }
    for p in [
        fx.dir.join("vm/instances").join(name),
        lxcpath().join(name),
        fx.state_dir()
            .join("locks/local")
            .join(format!("{name}.lock")),
        fx.state_dir()
            .join("intents/local")
            .join(format!("{name}.json")),
    ] {
        if p.exists() {
            found.push(p.display().to_string());
        }
    }
    for dir in [
        fx.state_dir().join("intents/local"),
        fx.dir.join("backups").join(name),
    ] {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().contains(".tmp-") {
                found.push(e.path().display().to_string());
            }
        }
    }
    // A process still working for the name: QEMU, an LXC monitor, a tar or qemu-img child.
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(name) && !cmdline.contains("NOX_FAULT_POINT") {
            found.push(format!(
                "process {}: {cmdline}",
                e.file_name().to_string_lossy()
            ));
        }
    }
    found
}

#[track_caller]
fn nothing_left(fx: &Fixture, name: &str, after: &str) {
    let left = leftovers(fx, name);
    assert!(left.is_empty(), "after {after}, left of {name}: {left:#?}");
}

/// No partial backup of `name` in the store.
#[track_caller]
fn nothing_left_in_backups(fx: &Fixture, name: &str) {
    let partial: Vec<String> = std::fs::read_dir(fx.dir.join("backups").join(name))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp-"))
        .collect();
    assert!(partial.is_empty(), "partial backups of {name}: {partial:?}");
}

fn newest_backup(fx: &Fixture, cfg: &Path, name: &str) -> Vec<Value> {
    let out = ok(fx.nox(cfg).args(["backups", "--json"]).output().unwrap());
    let all: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    all.into_iter().filter(|b| b["instance"] == name).collect()
}

#[test]
fn container_create_delete_backup_restore_killed_anywhere_leave_nothing() {
    if !live("container_create_delete_backup_restore_killed_anywhere_leave_nothing") {
        return;
    }
    let image = TestImage::get();
    let fx = Fixture::new("crash-lxc");
    let cfg = config(&fx, &image);

    // create, killed at each step; the next command (a delete) undoes it.
    for point in [
        "create.begun",
        "lxc.create.overlay",
        "lxc.create.record",
        "lxc.create.config",
        "lxc.create.started",
        "create.made",
    ] {
        let name = fx.unique_name("cc");
        fx.own_container(&name);
        let create = ["create", &name, "--backend", "lxc", "--image", CT_IMAGE];
        killed_at(&fx, &cfg, point, &create);
        assert!(
            fx.state_dir()
                .join(format!("intents/local/{name}.json"))
                .exists(),
            "no intent record after a kill at {point}"
        );
        recovers(&fx, &cfg, &["delete", &name], &name, "undid");
        nothing_left(&fx, &name, &format!("create killed at {point}"));
    }
    // And the name is free again: the same create, killed, then simply retried.
    let name = fx.unique_name("cc");
    fx.own_container(&name);
    let create = ["create", &name, "--backend", "lxc", "--image", CT_IMAGE];
    killed_at(&fx, &cfg, "lxc.create.started", &create);
    recovers(&fx, &cfg, &create, &name, "undid");
    ok(fx
        .nox(&cfg)
        .args(["exec", &name, "--", "true"])
        .output()
        .unwrap());

    // delete, killed half-way; the next delete finishes it.
    for point in ["delete.begun", "lxc.delete.stopped", "lxc.delete.destroyed"] {
        let name = fx.unique_name("cd");
        fx.create_container(&cfg, &name);
        killed_at(&fx, &cfg, point, &["delete", "--force", &name]);
        recovers(&fx, &cfg, &["delete", &name], &name, "finished");
        nothing_left(&fx, &name, &format!("delete killed at {point}"));
    }

    // backup, killed while the container is frozen and before the commit; the next changing
    // command thaws it, and nothing partial is ever listed.
    let name = fx.unique_name("cb");
    fx.create_container(&cfg, &name);
    for point in ["backup.begun", "lxc.backup.frozen", "backup.copied"] {
        killed_at(&fx, &cfg, point, &["backup", &name]);
        if point == "lxc.backup.frozen" {
            let c = nox_lxc::liblxc::Container::new(&name, &lxcpath()).unwrap();
            assert_eq!(c.state(), "FROZEN", "the kill was to leave it frozen");
        }
        assert!(newest_backup(&fx, &cfg, &name).is_empty());
        recovers(
            &fx,
            &cfg,
            &["stop", &name, "--stop-timeout", "30s"],
            &name,
            "undid",
        );
        nothing_left_in_backups(&fx, &name);
        let c = nox_lxc::liblxc::Container::new(&name, &lxcpath()).unwrap();
        assert_eq!(c.state(), "STOPPED");
        ok(fx.nox(&cfg).args(["start", &name]).output().unwrap());
    }
    ok(fx.nox(&cfg).args(["backup", &name]).output().unwrap());
    assert_eq!(newest_backup(&fx, &cfg, &name).len(), 1);

    // restore, killed at each step; the next command on the new name undoes it.
    for point in [
        "restore.begun",
        "lxc.restore.unpacked",
        "lxc.restore.record",
        "lxc.restore.config",
    ] {
        let new = fx.unique_name("cr");
        fx.own_container(&new);
        killed_at(&fx, &cfg, point, &["restore", &name, "--name", &new]);
        recovers(&fx, &cfg, &["delete", &new], &new, "undid");
        nothing_left(&fx, &new, &format!("restore killed at {point}"));
    }
    ok(fx
        .nox(&cfg)
        .args(["delete", "--force", &name])
        .output()
        .unwrap());
    nothing_left(&fx, &name, "the last delete");
}

#[test]
fn vm_create_delete_backup_restore_killed_anywhere_leave_nothing() {
    if !live("vm_create_delete_backup_restore_killed_anywhere_leave_nothing") {
        return;
    }
    let image = TestImage::get();
    let fx = Fixture::new("crash-vm");
    let cfg = config(&fx, &image);
    let vm_create = |name: &str, extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "create", name, "--image", VM_IMAGE, "--cpus", "1", "--memory", "1G", "--disk", "6G",
        ]
        .map(String::from)
        .to_vec();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };

    // create, stopped VMs (no boot needed to prove the clean-up), then one killed just after
    // QEMU started.
    for (point, extra) in [
        ("create.begun", &["--no-start"][..]),
        ("vm.create.disk", &["--no-start"][..]),
        ("vm.define.seed", &["--no-start"][..]),
        ("vm.define.defined", &["--no-start"][..]),
        ("create.made", &["--no-start"][..]),
        ("vm.define.started", &["--no-wait"][..]),
    ] {
        let name = fx.unique_name("vc");
        fx.own_domain(&name);
        let args = vm_create(&name, extra);
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        killed_at(&fx, &cfg, point, &argv);
        recovers(&fx, &cfg, &["delete", &name], &name, "undid");
        nothing_left(&fx, &name, &format!("VM create killed at {point}"));
    }

    // create from a template: killed while a template boots (its transient domain and
    // directory must go too; in a templates dir of this test's own, so this create is surely
    // the one that boots it), then, from the run's shared template of vm.rs's shape, killed
    // with the clone's state copied and after the restore.
    let private = fx.with_own_templates(&cfg);
    let shared_shape = nox_tests::fixture::USER_SHAPE;
    for (point, config, note) in [
        (
            "vm.template.started",
            &private,
            "removed the unfinished template build",
        ),
        ("vm.clone.state", &cfg, "removed domain"),
        ("vm.clone.restored", &cfg, "removed domain"),
    ] {
        let name = fx.unique_name("vt");
        fx.own_domain(&name);
        let mut args = vec!["create", name.as_str(), "--image", VM_IMAGE];
        args.extend(shared_shape);
        if point == "vm.clone.state" {
            // The shared template exists (or is built here) before the kill.
            let warm = fx.unique_name("vw");
            fx.own_domain(&warm);
            let mut warm_args = vec!["create", warm.as_str(), "--image", VM_IMAGE];
            warm_args.extend(shared_shape);
            ok(fx.nox(config).args(&warm_args).output().unwrap());
            ok(fx
                .nox(config)
                .args(["delete", "--force", &warm])
                .output()
                .unwrap());
        }
        killed_at(&fx, config, point, &args);
        let out = recovers(&fx, config, &["delete", &name], &name, "undid");
        assert!(text(&out.stderr).contains(note), "{}", text(&out.stderr));
        nothing_left(&fx, &name, &format!("VM create killed at {point}"));
    }
    assert!(
        !fx.dir
            .join("templates")
            .read_dir()
            .unwrap()
            .flatten()
            .any(|e| e.path().is_dir()),
        "the killed template build left its directory"
    );

    // delete, killed before and after the domain went; the next delete finishes it.
    for point in ["delete.begun", "vm.delete.undefined"] {
        let name = fx.unique_name("vd");
        fx.own_domain(&name);
        let args = vm_create(&name, &["--no-start"]);
        ok(fx.nox(&cfg).args(&args).output().unwrap());
        killed_at(&fx, &cfg, point, &["delete", &name]);
        recovers(&fx, &cfg, &["delete", &name], &name, "finished");
        nothing_left(&fx, &name, &format!("VM delete killed at {point}"));
    }

    // backup of a stopped VM, killed before and after the copy; restore, killed at each step.
    let name = fx.unique_name("vb");
    fx.own_domain(&name);
    ok(fx
        .nox(&cfg)
        .args(vm_create(&name, &["--no-start"]))
        .output()
        .unwrap());
    for (made, point) in ["backup.begun", "backup.copied"].into_iter().enumerate() {
        killed_at(&fx, &cfg, point, &["backup", &name]);
        // Only whole backups are ever listed: the killed one is not.
        assert_eq!(newest_backup(&fx, &cfg, &name).len(), made);
        recovers(&fx, &cfg, &["backup", &name], &name, "undid");
        assert_eq!(newest_backup(&fx, &cfg, &name).len(), made + 1);
        nothing_left_in_backups(&fx, &name);
    }
    for point in [
        "restore.begun",
        "vm.restore.disk",
        "vm.define.seed",
        "vm.define.defined",
    ] {
        let new = fx.unique_name("vr");
        fx.own_domain(&new);
        killed_at(
            &fx,
            &cfg,
            point,
            &["restore", &name, "--name", &new, "--no-start"],
        );
        recovers(&fx, &cfg, &["delete", &new], &new, "undid");
        nothing_left(&fx, &new, &format!("VM restore killed at {point}"));
    }
    ok(fx.nox(&cfg).args(["delete", &name]).output().unwrap());
    nothing_left(&fx, &name, "the last delete");
}

/// A running VM's backup killed while the guest's filesystems are frozen: the next changing
/// command thaws them (a password change writes /etc/shadow, so it works only then), and the
/// next backup works.
#[test]
fn vm_backup_killed_while_the_guest_is_frozen_is_thawed_by_the_next_command() {
    if !live("vm_backup_killed_while_the_guest_is_frozen_is_thawed_by_the_next_command") {
        return;
    }
    let image = TestImage::get();
    let fx = Fixture::new("crash-vm-frozen");
    let cfg = config(&fx, &image);
    let name = fx.unique_name("vf");
    fx.own_domain(&name);
    ok(fx
        .nox(&cfg)
        .args([
            "create", &name, "--image", VM_IMAGE, "--cpus", "2", "--memory", "2G", "--disk", "6G",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap());
    killed_at(&fx, &cfg, "vm.backup.frozen", &["backup", &name]);
    let out = recovers(&fx, &cfg, &["passwd", &name], &name, "undid");
    assert!(
        text(&out.stderr).contains("thawed the guest's filesystems"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("aborted the backup job"),
        "{}",
        text(&out.stderr)
    );
    ok(fx
        .nox(&cfg)
        .args(["exec", &name, "--", "touch", "/var/tmp/writable"])
        .output()
        .unwrap());
    ok(fx.nox(&cfg).args(["backup", &name]).output().unwrap());
    assert_eq!(newest_backup(&fx, &cfg, &name).len(), 1);
    ok(fx
        .nox(&cfg)
        .args(["delete", "--force", &name])
        .output()
        .unwrap());
    nothing_left(&fx, &name, "the delete");
}

/// A `nox` stopped (SIGSTOP) at `point` while holding `name`'s lock.
struct Stopped(std::process::Child);

impl Stopped {
    fn at(fx: &Fixture, cfg: &Path, point: &str, args: &[&str]) -> Stopped {
        let mut child = fx
            .nox(cfg)
            .args(args)
            .env("NOX_FAULT_POINT", format!("{point}:stop"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        let t = Instant::now();
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if stat
                .rsplit_once(") ")
                .is_some_and(|(_, s)| s.starts_with('T'))
            {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("`nox {}` ended ({status}) before {point}", args.join(" "));
            }
            assert!(
                t.elapsed() < Duration::from_secs(120),
                "never reached {point}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Stopped(child)
    }

    fn kill(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn one_changing_command_per_name_and_readers_never_wait() {
    if !live("one_changing_command_per_name_and_readers_never_wait") {
        return;
    }
    let image = TestImage::get();
    let fx = Fixture::new("crash-race");
    let cfg = config(&fx, &image);

    // Two creates of one name started together, three times: one wins, the other is told at
    // once that the name is taken. Never both, never neither, never a timeout.
    for _ in 0..3 {
        let name = fx.unique_name("race");
        fx.own_container(&name);
        let start = || -> Command {
            let mut c = fx.nox(&cfg);
            c.args(["create", &name, "--backend", "lxc", "--image", CT_IMAGE])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            c
        };
        let (mut a, mut b) = (start(), start());
        let t = Instant::now();
        let (ca, cb) = (a.spawn().unwrap(), b.spawn().unwrap());
        let (oa, ob) = (
            ca.wait_with_output().unwrap(),
            cb.wait_with_output().unwrap(),
        );
        let codes = [oa.status.code(), ob.status.code()];
        assert!(
            codes == [Some(0), Some(2)] || codes == [Some(2), Some(0)],
            "codes {codes:?}\nA: {}\nB: {}",
            text(&oa.stderr),
            text(&ob.stderr)
        );
        let loser = if codes[0] == Some(2) { &oa } else { &ob };
        let err = text(&loser.stderr);
        assert!(err.contains("already exists"), "{err}");
        assert!(t.elapsed() < Duration::from_secs(60));
        ok(fx
            .nox(&cfg)
            .args(["delete", "--force", &name])
            .output()
            .unwrap());
        nothing_left(&fx, &name, "the race");
    }

    // A create held at its first step: a second create is refused within a second, list and
    // status answer without waiting, a start waits, and goes on once the holder is killed.
    let name = fx.unique_name("held");
    fx.own_container(&name);
    let held = Stopped::at(
        &fx,
        &cfg,
        "lxc.create.config",
        &["create", &name, "--backend", "lxc", "--image", CT_IMAGE],
    );
    // "Within a second" is about nox's own work. On CI's two CPUs, busy with emulated VMs, just
    // starting a process can take longer than that, so what a bare `nox --version` costs right
    // now is allowed on top. A create that waited for the lock would wait until `held` is killed.
    let t = Instant::now();
    ok(fx.nox(&cfg).arg("--version").output().unwrap());
    let startup = t.elapsed();
    let t = Instant::now();
    let out = fx
        .nox(&cfg)
        .args(["create", &name, "--backend", "lxc", "--image", CT_IMAGE])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(1) + startup,
        "refused after {:?}; a bare `nox --version` took {startup:?}",
        t.elapsed()
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("already exists") && err.contains("`nox create` (pid "),
        "{err}"
    );
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error")).count(),
        1,
        "{err}"
    );

    let t = Instant::now();
    ok(fx.nox(&cfg).args(["list", "--json"]).output().unwrap());
    let _ = fx.nox(&cfg).args(["status", &name]).output().unwrap();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());

    let waiter = fx
        .nox(&cfg)
        .args(["delete", &name])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    held.kill();
    let out = waiter.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("{name}: waiting for `nox create` (pid ")),
        "{err}"
    );
    assert!(err.contains("undid an interrupted `nox create`"), "{err}");
    nothing_left(&fx, &name, "the held create, killed");
}
