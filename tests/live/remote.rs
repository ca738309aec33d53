//! Remotes, live: nox's Incus backend against the real three-member cluster
//! `cargo xtask incus up` starts on this machine (remote `cluster`), through the `nox` binary.

use std::process::Output;
use std::time::{Duration, Instant};

use nox_tests::cluster::{Cluster, GATE};
use nox_tests::fixture::Fixture;
use nox_tests::{ok, on_a_terminal, text};
use serde_json::Value;

const IMAGE: &str = "debian-12-test-minimal";

/// Deletes the named remote instances when dropped, panics included.
struct Cleanup<'a> {
    fx: &'a Fixture,
    cfg: std::path::PathBuf,
    refs: Vec<String>,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for r in &self.refs {
            let _ = self
                .fx
                .nox(&self.cfg)
                .args(["delete", "--force", r])
                .output();
        }
    }
}

fn create(fx: &Fixture, cfg: &std::path::Path, name: &str, extra: &[&str]) -> Output {
    fx.nox(cfg)
        .args([
            "create",
            name,
            "--remote",
            "cluster",
            "--backend",
            "lxc",
            "--image",
            IMAGE,
        ])
        .args(extra)
        .output()
        .unwrap()
}

fn list(fx: &Fixture, cfg: &std::path::Path) -> Vec<Value> {
    let out = ok(fx.nox(cfg).args(["list", "--json"]).output().unwrap());
    serde_json::from_slice(&out.stdout).unwrap()
}

fn find<'a>(all: &'a [Value], name: &str) -> Option<&'a Value> {
    all.iter()
        .find(|i| i["name"] == name && i["remote"] == "cluster")
}

#[test]
fn a_container_on_each_member_with_exec_exit_codes_and_tun() {
    let Some(cluster) = Cluster::get("a_container_on_each_member_with_exec_exit_codes_and_tun")
    else {
        return;
    };
    let _shared = GATE.read().unwrap_or_else(|p| p.into_inner());
    let fx = Fixture::new("remote-members");
    let cfg = cluster.config_in(&fx.dir, "");
    let names: Vec<String> = (1..=3).map(|n| fx.unique_name(&format!("m{n}"))).collect();
    let _cleanup = Cleanup {
        fx: &fx,
        cfg: cfg.clone(),
        refs: names.iter().map(|n| format!("cluster:{n}")).collect(),
    };
    // One on each member, at once; the third without TUN.
    let outs: Vec<Output> = std::thread::scope(|s| {
        let handles: Vec<_> = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let (fx, cfg) = (&fx, &cfg);
                s.spawn(move || {
                    let target = format!("member{}", i + 1);
                    let mut extra = vec!["--target", target.as_str()];
                    if i == 2 {
                        extra.push("--no-tun");
                    }
                    create(fx, cfg, name, &extra)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for out in outs {
        ok(out);
    }
    let all = list(&fx, &cfg);
    for (i, name) in names.iter().enumerate() {
        let inst = find(&all, name).unwrap_or_else(|| panic!("{name} not listed: {all:?}"));
        assert_eq!(inst["location"], format!("member{}", i + 1), "{inst}");
        assert_eq!(inst["state"], "running", "{inst}");
        assert_eq!(inst["backend"], "lxc");
    }
    let first = format!("cluster:{}", names[0]);

    // argv arrives byte for byte: no shell between nox and the program.
    let args = [
        "a b",
        "$HOME",
        "it's",
        "\"q\"",
        "line\nbreak",
        "",
        "*",
        "-n",
    ];
    let out = ok(fx
        .nox(&cfg)
        .args(["exec", &first, "--", "printf", "%s\\0"])
        .args(args)
        .output()
        .unwrap());
    let got: Vec<&[u8]> = out.stdout.split(|b| *b == 0).collect();
    let want: Vec<&[u8]> = args
        .iter()
        .map(|a| a.as_bytes())
        .chain([&b""[..]])
        .collect();
    assert_eq!(got, want);
    // The guest's exit code is nox's; a missing command is 127.
    let out = fx
        .nox(&cfg)
        .args([
            "exec",
            &first,
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 42",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(42));
    assert_eq!(text(&out.stdout), "out\n");
    assert!(text(&out.stderr).contains("err"));
    let out = fx
        .nox(&cfg)
        .args(["exec", &first, "--", "no-such-program"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127), "{}", text(&out.stderr));
    // stdin goes in.
    let mut child = fx
        .nox(&cfg)
        .args(["exec", &first, "--", "wc", "-c"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&vec![b'x'; 100_000]).unwrap();
    }
    let out = ok(child.wait_with_output().unwrap());
    assert_eq!(text(&out.stdout).trim(), "100000");

    // TUN: the default container can make a TUN device; the --no-tun one cannot.
    for (i, name) in names.iter().enumerate() {
        let out = fx
            .nox(&cfg)
            .args([
                "exec",
                &format!("cluster:{name}"),
                "--",
                "ip",
                "tuntap",
                "add",
                "dev",
                "tun0",
                "mode",
                "tun",
            ])
            .output()
            .unwrap();
        assert_eq!(
            out.status.success(),
            i != 2,
            "{name}: {}",
            text(&out.stderr)
        );
    }
    // The user nox made (the image has no cloud-init), and the hostname.
    let out = ok(fx
        .nox(&cfg)
        .args(["exec", &first, "--", "id", "-nG", "nox"])
        .output()
        .unwrap());
    assert!(text(&out.stdout).contains("sudo"), "{}", text(&out.stdout));
    let out = ok(fx
        .nox(&cfg)
        .args(["exec", &first, "--", "hostname"])
        .output()
        .unwrap());
    assert_eq!(text(&out.stdout).trim(), names[0]);

    // Verbs that cannot reach a remote instance say why in one line.
    let out = fx.nox(&cfg).args(["ssh", &first]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr).lines().count(),
        1,
        "{}",
        text(&out.stderr)
    );

    // The same name on this host is another instance: not found there.
    let out = fx.nox(&cfg).args(["status", &names[0]]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));

    ok(fx
        .nox(&cfg)
        .args(["delete", "--force"])
        .args(names.iter().map(|n| format!("cluster:{n}")))
        .output()
        .unwrap());
    let all = list(&fx, &cfg);
    assert!(names.iter().all(|n| find(&all, n).is_none()), "{all:?}");
}

#[test]
fn the_privileged_prompt_on_a_terminal() {
    let Some(cluster) = Cluster::get("the_privileged_prompt_on_a_terminal") else {
        return;
    };
    let _shared = GATE.read().unwrap_or_else(|p| p.into_inner());
    let fx = Fixture::new("remote-prompt");
    let cfg = cluster.config_in(&fx.dir, "");
    let name = fx.unique_name("root");
    let r = format!("cluster:{name}");
    let _cleanup = Cleanup {
        fx: &fx,
        cfg: cfg.clone(),
        refs: vec![r.clone()],
    };
    let mut cmd = fx.nox(&cfg);
    cmd.args(["create", &r, "--privileged", "--image", IMAGE]);
    let (code, out) = on_a_terminal(cmd, "Continue?", b"n");
    assert!(
        out.contains("root in the container is root on the host"),
        "{out}"
    );
    assert!(out.contains("[y/N]"), "the default must be No: {out}");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("nothing was created"), "{out}");
    assert!(find(&list(&fx, &cfg), &name).is_none());
    // Without a terminal: refused, exit 2, nothing created.
    let out = fx
        .nox(&cfg)
        .args(["create", &r, "--privileged", "--image", IMAGE])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(find(&list(&fx, &cfg), &name).is_none());
    // Confirmed: privileged, with TUN, on the privileged network.
    ok(fx
        .nox(&cfg)
        .args(["create", &r, "--privileged", "--yes", "--image", IMAGE])
        .output()
        .unwrap());
    let inst = find(&list(&fx, &cfg), &name).cloned().unwrap();
    assert_eq!(inst["privileged"], true, "{inst}");
    ok(fx
        .nox(&cfg)
        .args([
            "exec", &r, "--", "ip", "tuntap", "add", "dev", "tun0", "mode", "tun",
        ])
        .output()
        .unwrap());
    let out = ok(fx.nox(&cfg).args(["check", &r, "--json"]).output().unwrap());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["privileged"], true);
    assert_eq!(report["user_namespace"]["mapped"], false);
}

#[test]
fn a_member_down_leaves_list_answering_and_everything_recovers() {
    let Some(cluster) = Cluster::get("a_member_down_leaves_list_answering_and_everything_recovers")
    else {
        return;
    };
    // Stopping a member disturbs every other test on the cluster: alone.
    let _alone = GATE.write().unwrap_or_else(|p| p.into_inner());
    let fx = Fixture::new("remote-down");
    let cfg = cluster.config_in(&fx.dir, "");
    let (up, down) = (fx.unique_name("up"), fx.unique_name("down"));
    let _cleanup = Cleanup {
        fx: &fx,
        cfg: cfg.clone(),
        refs: vec![format!("cluster:{up}"), format!("cluster:{down}")],
    };
    ok(create(&fx, &cfg, &up, &["--target", "member1"]));
    ok(create(&fx, &cfg, &down, &["--target", "member3"]));

    let mut member3 = cluster.stop_member(3);
    let t = Instant::now();
    let all = list(&fx, &cfg);
    let took = t.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "list took {took:?} with member3 down"
    );
    assert_eq!(
        find(&all, &down).unwrap()["state"],
        "unreachable",
        "{all:?}"
    );
    assert_eq!(find(&all, &down).unwrap()["location"], "member3");
    assert_eq!(find(&all, &up).unwrap()["state"], "running");
    // The others keep working; the one on member3 fails at once, in one line.
    ok(fx
        .nox(&cfg)
        .args(["exec", &format!("cluster:{up}"), "--", "true"])
        .output()
        .unwrap());
    let t = Instant::now();
    let out = fx
        .nox(&cfg)
        .args(["exec", &format!("cluster:{down}"), "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr).lines().count(),
        1,
        "{}",
        text(&out.stderr)
    );
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "took {:?}",
        t.elapsed()
    );

    member3.restart();
    let t = Instant::now();
    loop {
        let back = fx
            .nox(&cfg)
            .args(["exec", &format!("cluster:{down}"), "--", "true"])
            .output()
            .unwrap()
            .status
            .success();
        if back {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "member3 did not come back"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let all = list(&fx, &cfg);
    assert_eq!(find(&all, &down).unwrap()["state"], "running", "{all:?}");
}

#[test]
fn a_backup_on_one_member_restored_on_another() {
    let Some(cluster) = Cluster::get("a_backup_on_one_member_restored_on_another") else {
        return;
    };
    let _shared = GATE.read().unwrap_or_else(|p| p.into_inner());
    let fx = Fixture::new("remote-backup");
    let backups = fx.dir.join("backups");
    let cfg = cluster.config_in(
        &fx.dir,
        &format!("[backup]\ndir = \"{}\"\n", backups.display()),
    );
    let (from, to) = (fx.unique_name("from"), fx.unique_name("to"));
    let (rf, rt) = (format!("cluster:{from}"), format!("cluster:{to}"));
    let _cleanup = Cleanup {
        fx: &fx,
        cfg: cfg.clone(),
        refs: vec![rf.clone(), rt.clone()],
    };
    ok(create(&fx, &cfg, &from, &["--target", "member2"]));
    ok(fx
        .nox(&cfg)
        .args([
            "exec",
            &rf,
            "--",
            "sh",
            "-c",
            "echo 'point in time' > /root/marker",
        ])
        .output()
        .unwrap());
    let out = ok(fx.nox(&cfg).args(["backup", &rf]).output().unwrap());
    assert!(
        text(&out.stdout).contains("full backup"),
        "{}",
        text(&out.stdout)
    );
    let out = ok(fx.nox(&cfg).args(["backups", "--json"]).output().unwrap());
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["instance"], rf);
    // Changed after the backup: the restore must not have it.
    ok(fx
        .nox(&cfg)
        .args(["exec", &rf, "--", "sh", "-c", "echo later > /root/marker"])
        .output()
        .unwrap());
    ok(fx
        .nox(&cfg)
        .args(["restore", &rf, "--name", &to, "--target", "member3"])
        .output()
        .unwrap());
    let out = ok(fx
        .nox(&cfg)
        .args(["status", &rt, "--json"])
        .output()
        .unwrap());
    let inst: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(inst["location"], "member3", "{inst}");
    assert_eq!(inst["state"], "running");
    let out = ok(fx
        .nox(&cfg)
        .args(["exec", &rt, "--", "cat", "/root/marker"])
        .output()
        .unwrap());
    assert_eq!(text(&out.stdout), "point in time\n");
    let out = ok(fx
        .nox(&cfg)
        .args(["exec", &rt, "--", "hostname"])
        .output()
        .unwrap());
    assert_eq!(text(&out.stdout).trim(), to);
    // A new identity: its own address.
    let all = list(&fx, &cfg);
    let ip = |n: &str| find(&all, n).unwrap()["ipv4"].clone();
    assert_ne!(ip(&from), ip(&to), "{all:?}");
    // The export is nox's: private files, checksummed.
    use std::os::unix::fs::PermissionsExt;
    let dir = backups.join(&rf);
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
}

#[test]
fn remote_add_by_token_over_https() {
    let Some(cluster) = Cluster::get("remote_add_by_token_over_https") else {
        return;
    };
    let _shared = GATE.read().unwrap_or_else(|p| p.into_inner());
    let fx = Fixture::new("remote-add");
    // A config without the remote, as a user starts.
    let cfg = fx.dir.join("nox.toml");
    std::fs::write(&cfg, "[defaults]\nuser = \"nox\"\n").unwrap();
    let admin = nox_incus::Client::unix(cluster.socket(1)).unwrap();
    let client_name = fx.unique_name("client");
    let token = admin.create_trust_token(&client_name).unwrap().encode();

    // A malformed token: bad input, nothing written.
    let out = fx
        .nox(&cfg)
        .args([
            "remote",
            "add",
            "lab",
            &cluster.url(2),
            "--token",
            "not-a-token",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(!std::fs::read_to_string(&cfg).unwrap().contains("remotes"));

    let out = ok(fx
        .nox(&cfg)
        .args(["remote", "add", "lab", &cluster.url(2), "--token", &token])
        .output()
        .unwrap());
    // The fingerprint is shown, and it is the one pinned.
    assert!(
        text(&out.stderr).contains(&cluster.fingerprint()),
        "{}",
        text(&out.stderr)
    );
    let written = std::fs::read_to_string(&cfg).unwrap();
    assert!(
        written.starts_with("[defaults]\nuser = \"nox\"\n"),
        "{written}"
    );
    assert!(
        written.contains(&format!("fingerprint = \"{}\"", cluster.fingerprint())),
        "{written}"
    );
    let key = fx.dir.join("remotes/lab/client.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let out = ok(fx
        .nox(&cfg)
        .args(["remote", "list", "--json"])
        .output()
        .unwrap());
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["name"], "lab");
    assert_eq!(rows[0]["reachable"], true, "{rows:?}");
    assert!(rows[0]["status"].as_str().unwrap().contains("cluster of 3"));
    // nox talks to it with the new certificate.
    ok(fx.nox(&cfg).args(["list", "--json"]).output().unwrap());

    // The token is spent.
    let out = fx
        .nox(&cfg)
        .args(["remote", "add", "lab2", &cluster.url(2), "--token", &token])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("did not trust"),
        "{}",
        text(&out.stderr)
    );

    // Removed: the entry and the certificate; the cluster forgets it too (test hygiene).
    let cert = std::fs::read_to_string(fx.dir.join("remotes/lab/client.crt")).unwrap();
    ok(fx.nox(&cfg).args(["remote", "rm", "lab"]).output().unwrap());
    assert!(!std::fs::read_to_string(&cfg)
        .unwrap()
        .contains("[remotes.lab]"));
    assert!(!key.exists());
    let fp = nox_incus::Fingerprint::of_pem(&cert).unwrap();
    admin.delete_certificate(fp.as_str()).unwrap();
}

/// A remote create or delete killed with SIGKILL at each fault point (nox built with
/// `fault-points`): the next command on the name says in one line what it undid or finished,
/// and nothing is left, neither on the cluster nor in nox's state dir.
#[test]
fn a_remote_create_or_delete_killed_anywhere_is_put_right_by_the_next_command() {
    let Some(cluster) =
        Cluster::get("a_remote_create_or_delete_killed_anywhere_is_put_right_by_the_next_command")
    else {
        return;
    };
    let _shared = GATE.read().unwrap_or_else(|p| p.into_inner());
    let fx = Fixture::new("remote-crash");
    let state = fx.dir.join("state");
    let cfg = cluster.config_in(&fx.dir, &format!("[state]\ndir = \"{}\"", state.display()));
    let killed = |point: &str, args: &[&str]| {
        let out = fx
            .nox(&cfg)
            .args(args)
            .env("NOX_FAULT_POINT", point)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&out.status),
            Some(9),
            "`nox {}` was to be killed at {point}: {}",
            args.join(" "),
            text(&out.stderr)
        );
    };
    let put_right = |r: &str, what: &str, after: &str| {
        let out = ok(fx
            .nox(&cfg)
            .args(["delete", "--force", r])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap());
        let err = text(&out.stderr);
        let notes: Vec<&str> = err.lines().filter(|l| l.contains("interrupted")).collect();
        assert_eq!(
            notes.len(),
            1,
            "after {after}, one recovery line expected:\n{err}"
        );
        assert!(
            notes[0].starts_with(&format!("note: {r}: {what} an interrupted `nox ")),
            "{}",
            notes[0]
        );
        let name = r.trim_start_matches("cluster:");
        assert!(
            find(&list(&fx, &cfg), name).is_none(),
            "after {after}, {r} is still on the cluster"
        );
        for left in [
            state.join(format!("locks/remotes/cluster/{name}.lock")),
            state.join(format!("intents/remotes/cluster/{name}.json")),
        ] {
            assert!(!left.exists(), "after {after}, left: {}", left.display());
        }
    };

    // Every point at once, each on its own name: the cluster takes them in parallel.
    let creates = ["create.begun", "incus.create.made", "create.made"];
    let deletes = ["delete.begun", "incus.delete.stopped"];
    std::thread::scope(|s| {
        for point in creates {
            let (killed, put_right, fx, cfg) = (&killed, &put_right, &fx, &cfg);
            s.spawn(move || {
                let name = fx.unique_name("kc");
                let r = format!("cluster:{name}");
                let _cleanup = Cleanup {
                    fx,
                    cfg: cfg.clone(),
                    refs: vec![r.clone()],
                };
                killed(
                    point,
                    &[
                        "create",
                        &name,
                        "--remote",
                        "cluster",
                        "--backend",
                        "lxc",
                        "--image",
                        IMAGE,
                    ],
                );
                put_right(&r, "undid", &format!("create killed at {point}"));
            });
        }
        for point in deletes {
            let (killed, put_right, fx, cfg) = (&killed, &put_right, &fx, &cfg);
            s.spawn(move || {
                let name = fx.unique_name("kd");
                let r = format!("cluster:{name}");
                let _cleanup = Cleanup {
                    fx,
                    cfg: cfg.clone(),
                    refs: vec![r.clone()],
                };
                ok(create(fx, cfg, &name, &[]));
                killed(point, &["delete", "--force", &r]);
                put_right(&r, "finished", &format!("delete killed at {point}"));
            });
        }
    });
}
