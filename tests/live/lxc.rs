//! The LXC backend end to end through the real `nox` binary and liblxc. Together the TUN
//! checks are the seed analysis's compatibility table, measured: an unprivileged container
//! gets TUN by default, loses it with --no-tun, and a privileged one has it too.

use std::path::Path;
use std::process::{Output, Stdio};

use nox_tests::fixture::{lxcpath, Fixture};
use nox_tests::image::TestImage;
use nox_tests::{live, ok, on_a_terminal, text};
use serde_json::Value;

/// The image with cloud-init (the VM's tree): nox hands it a NoCloud seed.
const CLOUD_INIT_IMAGE: &str = "debian-12-test";
/// Shaped like LXC's own images, without cloud-init: nox provisions the user itself.
const MINIMAL_IMAGE: &str = "debian-12-test-minimal";

fn create(fx: &Fixture, cfg: &Path, name: &str, extra: &[&str]) -> Output {
    create_from(fx, cfg, name, CLOUD_INIT_IMAGE, extra)
}

fn create_from(fx: &Fixture, cfg: &Path, name: &str, image: &str, extra: &[&str]) -> Output {
    fx.own_container(name);
    fx.nox(cfg)
        .args([
            "create",
            name,
            "--backend",
            "lxc",
            "--image",
            image,
            "--json",
        ])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn tuntap(fx: &Fixture, cfg: &Path, name: &str) -> Output {
    fx.nox(cfg)
        .args([
            "exec", name, "--", "ip", "tuntap", "add", "dev", "tun0", "mode", "tun",
        ])
        .output()
        .unwrap()
}

fn nothing_left(name: &str) {
    let dir = lxcpath().join(name);
    assert!(
        !dir.join("config").exists()
            && !dir.join("nox.json").exists()
            && !dir.join("delta").exists(),
        "container files left in {}",
        dir.display()
    );
}

#[test]
fn unprivileged_container_with_tun_by_default() {
    if !live("unprivileged_container_with_tun_by_default") {
        return;
    }
    let image = TestImage::get();
    let fx = Fixture::new("lxc-default");
    let cfg = fx.nox_config(&image, "");
    let name = fx.unique_name("ct");
    let created: Value =
        serde_json::from_slice(&ok(create_from(&fx, &cfg, &name, MINIMAL_IMAGE, &[])).stdout)
            .unwrap();
    assert_eq!(created["state"], "running");
    assert_eq!(created["backend"], "lxc");
    assert_eq!(created["privileged"], false);

    // Ready means systemd is running; with no cloud-init in the image, nox made the user,
    // its key file and its sudo rule itself, owned as they must be inside.
    let state = ok(fx
        .nox(&cfg)
        .args(["exec", &name, "--", "systemctl", "is-system-running"])
        .output()
        .unwrap());
    assert_eq!(text(&state.stdout).trim(), "running");
    let id = ok(fx
        .nox(&cfg)
        .args(["exec", &name, "--", "id", "-u", "nox"])
        .output()
        .unwrap());
    assert!(text(&id.stdout).trim().parse::<u32>().unwrap() >= 1000);
    let keys = ok(fx
        .nox(&cfg)
        .args([
            "exec",
            &name,
            "--",
            "stat",
            "-c",
            "%a %U",
            "/home/nox/.ssh/authorized_keys",
        ])
        .output()
        .unwrap());
    assert_eq!(text(&keys.stdout).trim(), "600 nox");
    let sudo = ok(fx
        .nox(&cfg)
        .args(["exec", &name, "--", "sudo", "-l", "-U", "nox"])
        .output()
        .unwrap());
    assert!(
        text(&sudo.stdout).contains("NOPASSWD: ALL"),
        "{}",
        text(&sudo.stdout)
    );
    assert_eq!(
        text(
            &ok(fx
                .nox(&cfg)
                .args(["exec", &name, "--", "hostname"])
                .output()
                .unwrap())
            .stdout
        )
        .trim(),
        name
    );

    // Unprivileged: container root is root's first subordinate uid on the host.
    let map = ok(fx
        .nox(&cfg)
        .args(["exec", &name, "--", "cat", "/proc/self/uid_map"])
        .output()
        .unwrap());
    let start = nox_lxc::subid::root_range("/etc/subuid")
        .unwrap()
        .start
        .to_string();
    assert_eq!(
        text(&map.stdout).split_whitespace().collect::<Vec<_>>(),
        ["0", start.as_str(), "65536"]
    );

    // TUN works by default: the analysis said an unprivileged container cannot have it.
    ok(tuntap(&fx, &cfg, &name));

    // passwd: shown once, applied through chpasswd on stdin. Under `-vv` every liblxc call
    // and program is logged, and the password never is.
    let pw = ok(fx
        .nox(&cfg)
        .args(["-vv", "passwd", &name])
        .output()
        .unwrap());
    let password = text(&pw.stdout).trim().to_string();
    assert_eq!(password.len(), 20);
    let log = text(&pw.stderr);
    assert!(log.contains("liblxc is_running"), "{log}");
    assert!(log.contains("took="), "{log}");
    assert!(
        !log.contains(&password),
        "the password leaked into the log: {log}"
    );
    let st = ok(fx
        .nox(&cfg)
        .args(["exec", &name, "--", "passwd", "-S", "nox"])
        .output()
        .unwrap());
    assert_eq!(
        text(&st.stdout).split_whitespace().nth(1),
        Some("P"),
        "{}",
        text(&st.stdout)
    );

    // exec: exit codes and argv pass through.
    let code = fx
        .nox(&cfg)
        .args(["exec", &name, "--", "sh", "-c", "exit 5"])
        .output()
        .unwrap();
    assert_eq!(code.status.code(), Some(5));
    let argv = ok(fx
        .nox(&cfg)
        .args(["exec", &name, "--", "printf", "%s|", "a b", "$x;y", "it's"])
        .output()
        .unwrap());
    assert_eq!(text(&argv.stdout), "a b|$x;y|it's|");

    // list marks it, stop/start work, disk resize is refused with the reason.
    let list: Value =
        serde_json::from_slice(&ok(fx.nox(&cfg).args(["list", "--json"]).output().unwrap()).stdout)
            .unwrap();
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["name"] == name.as_str() && i["backend"] == "lxc"));
    ok(fx
        .nox(&cfg)
        .args(["resize", &name, "--memory", "512M"])
        .output()
        .unwrap());
    let disk = fx
        .nox(&cfg)
        // Small enough for any host's free space, which `--disk` is checked against first:
        // the refusal under test is the storage's.
        .args(["resize", &name, "--disk", "2G"])
        .output()
        .unwrap();
    assert_eq!(disk.status.code(), Some(2));
    assert!(
        text(&disk.stderr).contains("not possible on this storage"),
        "{}",
        text(&disk.stderr)
    );
    ok(fx.nox(&cfg).args(["stop", &name]).output().unwrap());
    let st: Value = serde_json::from_slice(
        &ok(fx
            .nox(&cfg)
            .args(["status", &name, "--json"])
            .output()
            .unwrap())
        .stdout,
    )
    .unwrap();
    assert_eq!(st["state"], "stopped");
    // `-v` logs decisions only; `-vv` adds each wait with where and how long.
    let start = ok(fx.nox(&cfg).args(["-vv", "start", &name]).output().unwrap());
    let log = text(&start.stderr);
    assert!(log.contains("liblxc start"), "{log}");
    assert!(
        log.contains("wait done") && log.contains("waited="),
        "{log}"
    );

    // delete refuses a running container, then leaves nothing.
    assert_eq!(
        fx.nox(&cfg)
            .args(["delete", &name])
            .output()
            .unwrap()
            .status
            .code(),
        Some(2)
    );
    ok(fx
        .nox(&cfg)
        .args(["delete", "--force", &name])
        .output()
        .unwrap());
    nothing_left(&name);
}

#[test]
fn no_tun_container_cannot_create_tun() {
    if !live("no_tun_container_cannot_create_tun") {
        return;
    }
    let image = TestImage::get();
    let fx = Fixture::new("lxc-no-tun");
    let cfg = fx.nox_config(&image, "");
    let name = fx.unique_name("notun");
    ok(create(&fx, &cfg, &name, &["--no-tun"]));
    // This image has cloud-init: the NoCloud seed nox wrote made the user.
    ok(fx
        .nox(&cfg)
        .args(["exec", &name, "--", "id", "nox"])
        .output()
        .unwrap());
    let out = tuntap(&fx, &cfg, &name);
    assert_ne!(
        out.status.code(),
        Some(0),
        "TUN worked without it being passed through"
    );
    ok(fx
        .nox(&cfg)
        .args(["delete", "--force", &name])
        .output()
        .unwrap());
    nothing_left(&name);
}

#[test]
fn privileged_container_with_yes_has_tun() {
    if !live("privileged_container_with_yes_has_tun") {
        return;
    }
    let image = TestImage::get();
    let fx = Fixture::new("lxc-privileged");
    // This host has no br0; a privileged test container joins LXC's NAT bridge instead.
    let cfg = fx.nox_config_lxc(&image, "privileged_bridge = \"lxcbr0\"", "");
    let name = fx.unique_name("priv");
    let out = ok(create(&fx, &cfg, &name, &["--privileged", "--yes"]));
    assert!(
        text(&out.stderr).contains("root in the container is root on the host"),
        "{}",
        text(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(created["privileged"], true);
    assert_eq!(created["backend"], "lxc");
    let map = ok(fx
        .nox(&cfg)
        .args(["exec", &name, "--", "cat", "/proc/self/uid_map"])
        .output()
        .unwrap());
    assert_eq!(
        text(&map.stdout)
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>(),
        ["0", "0"]
    );
    ok(tuntap(&fx, &cfg, &name));
    ok(fx
        .nox(&cfg)
        .args(["delete", "--force", &name])
        .output()
        .unwrap());
    nothing_left(&name);
}

#[test]
fn privileged_without_a_terminal_or_bridge_is_refused_and_leaves_nothing() {
    if !live("privileged_without_a_terminal_or_bridge_is_refused_and_leaves_nothing") {
        return;
    }
    let image = TestImage::get();
    let fx = Fixture::new("lxc-refused");
    let cfg = fx.nox_config_lxc(&image, "privileged_bridge = \"lxcbr0\"", "");
    let name = fx.unique_name("refused");
    let out = create(&fx, &cfg, &name, &["--privileged"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("WARNING: a privileged container"), "{err}");
    assert!(err.contains("without confirmation"), "{err}");
    nothing_left(&name);

    // A bridge the config names but the host lacks is the host's failure (exit 1), as a
    // missing `[lxc] bridge` is: docs/cli.md, exit codes.
    let cfg = fx.nox_config_lxc(&image, "privileged_bridge = \"noxnobr0\"", "");
    let out = create(&fx, &cfg, &name, &["--privileged", "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("noxnobr0") && err.contains("[lxc] privileged_bridge"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    nothing_left(&name);

    // --privileged with --backend vm is a contradiction.
    let out = fx
        .nox(&cfg)
        .args(["create", &name, "--backend", "vm", "--privileged"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("VMs are isolated by design"));
}

#[test]
fn privileged_prompt_answered_no_exits_1_and_creates_nothing() {
    if !live("privileged_prompt_answered_no_exits_1_and_creates_nothing") {
        return;
    }
    let image = TestImage::get();
    let fx = Fixture::new("lxc-prompt");
    let cfg = fx.nox_config_lxc(&image, "privileged_bridge = \"lxcbr0\"", "");
    let name = fx.unique_name("prompt");
    fx.own_container(&name);
    let mut cmd = fx.nox(&cfg);
    cmd.args(["create", &name, "--privileged", "--image", "debian-12-test"]);
    let (code, out) = on_a_terminal(cmd, "Continue?", b"n");
    assert!(
        out.contains("root in the container is root on the host"),
        "{out}"
    );
    assert!(out.contains("[y/N]"), "the default must be No: {out}");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("nothing was created"), "{out}");
    nothing_left(&name);
}

#[test]
fn container_created_without_starting_is_provisioned_at_first_start() {
    if !live("container_created_without_starting_is_provisioned_at_first_start") {
        return;
    }
    let image = TestImage::get();
    let fx = Fixture::new("lxc-first-start");
    let cfg = fx.nox_config(&image, "");
    let name = fx.unique_name("later");
    // No cloud-init in this image: nox itself must add the user, at the first start.
    ok(create_from(
        &fx,
        &cfg,
        &name,
        MINIMAL_IMAGE,
        &["--no-start"],
    ));
    ok(fx.nox(&cfg).args(["start", &name]).output().unwrap());
    ok(fx
        .nox(&cfg)
        .args(["exec", &name, "--", "id", "nox"])
        .output()
        .unwrap());
    let host = ok(fx
        .nox(&cfg)
        .args(["exec", &name, "--", "hostname"])
        .output()
        .unwrap());
    assert_eq!(text(&host.stdout).trim(), name);
    ok(fx
        .nox(&cfg)
        .args(["delete", "--force", &name])
        .output()
        .unwrap());
    nothing_left(&name);
}
