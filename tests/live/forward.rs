//! Port forwards end to end: `nox forward add|list|rm` through the real `nox` binary, nftables
//! and liblxc (and passt for a `user`-network VM). The test talks only to 127.0.0.1: a
//! forwarded port reaches a small HTTP server in the guest, never the guest's own address.
//!
//! One container and one VM, each booted once; the restart each needs is the point of the
//! test (forwards survive it, pointed at the guest's address of the new boot).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use nox_tests::fixture::{lxcpath, Fixture, NAT_SHAPE, USER_SHAPE};
use nox_tests::image::TestImage;
use nox_tests::{live, ok, text};
use serde_json::Value;

fn nox(fx: &Fixture, cfg: &Path, args: &[&str]) -> Output {
    fx.nox(cfg)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// A port nothing on 127.0.0.1 uses now (the kernel's pick), so parallel tests never collide.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    l.local_addr().unwrap().port()
}

/// Starts `python3 -m http.server GUEST_PORT` serving /etc in the guest, as a transient
/// systemd unit (so it outlives the exec; a reboot ends it).
fn serve_http(fx: &Fixture, cfg: &Path, name: &str, port: u16) {
    ok(nox(
        fx,
        cfg,
        &[
            "exec",
            name,
            "--",
            "systemd-run",
            "--unit",
            "nox-it-http",
            "python3",
            "-m",
            "http.server",
            &port.to_string(),
            "--directory",
            "/etc",
        ],
    ));
}

/// GET /hostname on 127.0.0.1:PORT; the response, or the error that ended the attempt.
fn get(port: u16) -> std::io::Result<String> {
    let mut s =
        TcpStream::connect_timeout(&(Ipv4Addr::LOCALHOST, port).into(), Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(b"GET /hostname HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body)
}

/// The guest's hostname through the forward, retried while the server starts.
#[track_caller]
fn reaches(port: u16, hostname: &str, within: Duration) {
    let start = Instant::now();
    loop {
        let got = get(port);
        match &got {
            Ok(body) if body.starts_with("HTTP/1.0 200") && body.contains(hostname) => return,
            _ if start.elapsed() > within => {
                panic!("127.0.0.1:{port} did not serve {hostname}'s /etc/hostname: {got:?}")
            }
            _ => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

fn forwards_in_status(fx: &Fixture, cfg: &Path, name: &str) -> Vec<Value> {
    let out = ok(nox(fx, cfg, &["status", name, "--json"]));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["forwards"].as_array().cloned().unwrap_or_default()
}

/// Removes the DNAT element of a forward on 127.0.0.1:PORT/tcp if the test ends early (a
/// panic), so a later test that gets the same port from the kernel is not sent to a dead guest.
/// The fixture removes containers and domains directly, past nox.
struct NftGuard(u16);

impl Drop for NftGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("nft")
            .args(["delete", "element", "ip", "nox", "tcp_local"])
            .args(["{", &format!("127.0.0.1 . {}", self.0), "}"])
            .stderr(Stdio::null())
            .status();
    }
}

#[track_caller]
fn refused(out: Output, words: &str) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains(words), "{err}");
}

#[test]
fn container_forward_survives_restart_and_goes_with_rm() {
    if !live("container_forward_survives_restart_and_goes_with_rm") {
        return;
    }
    let image = TestImage::get();
    let fx = Fixture::new("forward-ct");
    let cfg = fx.nox_config(&image, "");
    let name = fx.unique_name("ct");
    fx.own_container(&name);
    ok(nox(
        &fx,
        &cfg,
        &[
            "create",
            &name,
            "--backend",
            "lxc",
            "--image",
            "debian-12-test",
        ],
    ));
    let host_port = free_port();
    let _guard = NftGuard(host_port);
    let spec = format!("{host_port}:8000");
    serve_http(&fx, &cfg, &name, 8000);

    let added = ok(nox(&fx, &cfg, &["forward", "add", &name, &spec]));
    assert!(text(&added.stdout).contains(&format!("127.0.0.1:{host_port} -> 8000/tcp")));
    reaches(host_port, &name, Duration::from_secs(30));

    // Listed, and in status --json.
    let listed: Value =
        serde_json::from_slice(&ok(nox(&fx, &cfg, &["forward", "list", &name, "--json"])).stdout)
            .unwrap();
    let expected = serde_json::json!([{
        "proto": "tcp", "address": "127.0.0.1", "host_port": host_port, "guest_port": 8000
    }]);
    assert_eq!(listed, expected);
    assert_eq!(Value::Array(forwards_in_status(&fx, &cfg, &name)), expected);

    // The same host port again, or one a program listens on: refused in one line.
    refused(
        nox(
            &fx,
            &cfg,
            &["forward", "add", &name, &format!("{host_port}:22")],
        ),
        "is taken by",
    );
    let busy = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let busy_port = busy.local_addr().unwrap().port();
    refused(
        nox(
            &fx,
            &cfg,
            &["forward", "add", &name, &format!("{busy_port}:22")],
        ),
        "is taken on this host",
    );
    drop(busy);
    refused(
        nox(&fx, &cfg, &["forward", "add", &name, "8080"]),
        "invalid forward",
    );
    refused(
        nox(&fx, &cfg, &["forward", "rm", &name, "1/udp"]),
        "has no forward",
    );

    // Stopped: the DNAT goes (nothing answers), the forward stays in the record.
    ok(nox(&fx, &cfg, &["stop", &name]));
    assert!(
        get(host_port).is_err(),
        "a stopped container's forward still answers"
    );
    assert_eq!(forwards_in_status(&fx, &cfg, &name).len(), 1);
    // Started again: pointed at this boot's address.
    ok(nox(&fx, &cfg, &["start", &name]));
    serve_http(&fx, &cfg, &name, 8000);
    reaches(host_port, &name, Duration::from_secs(30));

    // A start that does not come through nox, as liblxc's autostart at host boot (where nox's
    // table starts empty): the start-host hook nox put in the config re-points the forward.
    let config = lxcpath().join(&name).join("config");
    let hook = |config: &str| {
        config.lines().any(|l| {
            l.starts_with("lxc.hook.start-host = ") && l.contains("forward follow --detach")
        })
    };
    assert!(hook(&std::fs::read_to_string(&config).unwrap()));
    let lxc = |args: &[&str]| {
        let out = std::process::Command::new(args[0])
            .args(["-P", lxcpath().to_str().unwrap(), "-n", &name])
            .args(&args[1..])
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    };
    lxc(&["lxc-stop"]);
    drop(NftGuard(host_port));
    assert!(get(host_port).is_err(), "the element was not removed");
    lxc(&["lxc-start"]);
    // lxc-start returns before the guest's systemd answers: the server starts once it does.
    let start = Instant::now();
    loop {
        let out = nox(
            &fx,
            &cfg,
            &[
                "exec",
                &name,
                "--",
                "systemctl",
                "is-system-running",
                "--wait",
            ],
        );
        let state = text(&out.stdout);
        if matches!(state.trim(), "running" | "degraded") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{name} did not boot: {state} {}",
            text(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    serve_http(&fx, &cfg, &name, 8000);
    reaches(host_port, &name, Duration::from_secs(90));
    let log = std::fs::read_to_string(fx.state_dir().join("forwards-follow.log")).unwrap();
    assert!(log.contains("forwards follow this boot's address"), "{log}");

    // rm: nothing answers on the port any more, the record forgets it, and with no forward
    // left the hook goes too.
    let removed = ok(nox(
        &fx,
        &cfg,
        &["forward", "rm", &name, &host_port.to_string()],
    ));
    assert!(text(&removed.stdout).contains("removed forward"));
    assert!(!hook(&std::fs::read_to_string(&config).unwrap()));
    let err = get(host_port).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    assert!(forwards_in_status(&fx, &cfg, &name).is_empty());

    // Deleting a container with a forward removes its DNAT too.
    ok(nox(&fx, &cfg, &["forward", "add", &name, &spec]));
    reaches(host_port, &name, Duration::from_secs(30));
    ok(nox(&fx, &cfg, &["delete", "--force", &name]));
    assert!(
        get(host_port).is_err(),
        "a deleted container's forward still answers"
    );
}

#[test]
fn user_network_vm_forward_applies_at_next_start() {
    if !live("user_network_vm_forward_applies_at_next_start") {
        return;
    }
    let image = TestImage::get();
    let fx = Fixture::new("forward-vm");
    let cfg = fx.nox_config(&image, "");
    let name = fx.unique_name("vm");
    fx.own_domain(&name);
    // The run's shared passt shape: a clone of its template, not a cold boot.
    let create = [
        &["create", &name, "--image", "debian-12-test"][..],
        USER_SHAPE,
    ]
    .concat();
    ok(nox(&fx, &cfg, &create));
    let host_port = free_port();
    let spec = format!("{host_port}:8000");

    // passt cannot change a running VM's forwards: stored now, said so, live after a restart.
    let added = ok(nox(&fx, &cfg, &["forward", "add", &name, &spec]));
    assert!(
        text(&added.stderr).contains("next start"),
        "{}",
        text(&added.stderr)
    );
    assert_eq!(forwards_in_status(&fx, &cfg, &name).len(), 1);
    ok(nox(&fx, &cfg, &["restart", &name]));
    serve_http(&fx, &cfg, &name, 8000);
    reaches(host_port, &name, Duration::from_secs(60));
    // A forward that would take the VM's SSH port is refused.
    let ssh_port = {
        let out = ok(nox(&fx, &cfg, &["status", &name, "--json"]));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["ssh"]["port"].as_u64().unwrap()
    };
    refused(
        nox(
            &fx,
            &cfg,
            &["forward", "add", &name, &format!("{ssh_port}:80")],
        ),
        "taken",
    );

    // rm: stored at once, passt stops answering at the next start.
    let removed = ok(nox(
        &fx,
        &cfg,
        &["forward", "rm", &name, &host_port.to_string()],
    ));
    assert!(text(&removed.stderr).contains("next start"));
    assert!(forwards_in_status(&fx, &cfg, &name).is_empty());
    ok(nox(&fx, &cfg, &["stop", &name]));
    ok(nox(&fx, &cfg, &["start", &name]));
    let err = get(host_port).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    ok(nox(&fx, &cfg, &["delete", "--force", &name]));
}

#[test]
fn nat_network_vm_forward_works_at_once_and_after_restart() {
    if !live("nat_network_vm_forward_works_at_once_and_after_restart") {
        return;
    }
    let image = TestImage::get();
    let fx = Fixture::new("forward-nat");
    let cfg = fx.nox_config(&image, "");
    let name = fx.unique_name("vm");
    fx.own_domain(&name);
    // The run's shared NAT shape: a clone of its template, with an address at once.
    let create = [
        &["create", &name, "--image", "debian-12-test"][..],
        NAT_SHAPE,
    ]
    .concat();
    ok(nox(&fx, &cfg, &create));
    let host_port = free_port();
    let spec = format!("{host_port}:8000");
    let _guard = NftGuard(host_port);

    // libvirt's firewall rejects other hosts' connections to its guests: only loopback.
    refused(
        nox(
            &fx,
            &cfg,
            &["forward", "add", &name, &spec, "--address", "0.0.0.0"],
        ),
        "firewall",
    );
    assert!(forwards_in_status(&fx, &cfg, &name).is_empty());

    // Running: DNAT at once, with no "next start" note.
    serve_http(&fx, &cfg, &name, 8000);
    let added = ok(nox(&fx, &cfg, &["forward", "add", &name, &spec]));
    assert!(
        !text(&added.stderr).contains("next start"),
        "{}",
        text(&added.stderr)
    );
    reaches(host_port, &name, Duration::from_secs(60));
    let nft = |what: &str| {
        let out = std::process::Command::new("nft")
            .args(["list", "map", "ip", "nox", "tcp_local"])
            .output()
            .unwrap();
        text(&out.stdout).contains(&format!("127.0.0.1 . {host_port}")) == (what == "there")
    };
    assert!(nft("there"));

    // Stopped: the element goes first; started again (a cold boot): back, at this boot's
    // address.
    ok(nox(&fx, &cfg, &["stop", &name]));
    assert!(nft("gone"), "a stopped VM's DNAT element is still there");
    assert_eq!(forwards_in_status(&fx, &cfg, &name).len(), 1);
    ok(nox(&fx, &cfg, &["start", &name]));
    serve_http(&fx, &cfg, &name, 8000);
    reaches(host_port, &name, Duration::from_secs(60));

    // A start without nox (libvirt's autostart at boot) gets the forward from nox's libvirt
    // hook, there while the forward is. libvirt looks for hooks when its daemon starts, which
    // this run must not do to the other tests' VMs: the test runs the hook as libvirt would at
    // the domain's `started` event, with its XML on stdin, after taking the element away as
    // such a start finds it.
    let hook = Path::new("/etc/libvirt/hooks/qemu.d/nox-forwards");
    let mode = std::fs::metadata(hook)
        .expect("no libvirt hook")
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o755
    );
    let nft_delete = std::process::Command::new("nft")
        .args(["delete", "element", "ip", "nox", "tcp_local"])
        .args(["{", &format!("127.0.0.1 . {host_port}"), "}"])
        .status()
        .unwrap();
    assert!(nft_delete.success() && nft("gone"));
    let xml = std::process::Command::new("virsh")
        .args(["-c", "qemu:///system", "dumpxml", &name])
        .output()
        .unwrap();
    assert!(xml.status.success());
    let mut libvirt = std::process::Command::new(hook)
        .args([name.as_str(), "started", "begin", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut libvirt.stdin.take().unwrap(), &xml.stdout).unwrap();
    // It returns at once; the forward follows shortly after.
    assert!(libvirt.wait().unwrap().success());
    reaches(host_port, &name, Duration::from_secs(60));

    // rm: nothing answers any more, at once.
    ok(nox(
        &fx,
        &cfg,
        &["forward", "rm", &name, &host_port.to_string()],
    ));
    let err = get(host_port).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    assert!(forwards_in_status(&fx, &cfg, &name).is_empty());
    // The hook went with the last forward (no other test adds a VM forward meanwhile).
    assert!(!hook.exists(), "the libvirt hook outlived the last forward");

    // delete removes a forward's element too, and the hook.
    ok(nox(&fx, &cfg, &["forward", "add", &name, &spec]));
    assert!(nft("there") && hook.exists());
    ok(nox(&fx, &cfg, &["delete", "--force", &name]));
    assert!(nft("gone"), "a deleted VM's DNAT element is still there");
    assert!(
        !hook.exists(),
        "the libvirt hook outlived the last forward's VM"
    );
}
