//! The VM backend end to end, through the real `nox` binary, libvirtd and QEMU.
//!
//! One VM is booted and shared by the steps of `vm_lifecycle` (a boot costs about a minute
//! under software emulation); tests that need no boot stand alone.

use std::path::Path;
use std::process::Output;

use nox_tests::fixture::Fixture;
use nox_tests::image::TestImage;
use nox_tests::{live, ok, text};
use serde_json::Value;

fn status(fx: &Fixture, cfg: &Path, name: &str) -> Value {
    let out = ok(fx
        .nox(cfg)
        .args(["status", name, "--json"])
        .output()
        .unwrap());
    serde_json::from_slice(&out.stdout).unwrap()
}

fn exec(fx: &Fixture, cfg: &Path, name: &str, argv: &[&str]) -> Output {
    fx.nox(cfg)
        .args(["exec", name, "--"])
        .args(argv)
        .output()
        .unwrap()
}

fn no_domain(name: &str) -> bool {
    virt::error::clear_error_callback();
    let conn = virt::connect::Connect::open(Some("qemu:///system")).unwrap();
    conn.lookup_domain_by_name(name).is_err()
}

#[test]
fn vm_lifecycle() {
    if !live("vm_lifecycle") {
        return;
    }
    let image = TestImage::get();
    let fx = Fixture::new("vm-lifecycle");
    let cfg = fx.nox_config(&image, "");
    let name = fx.unique_name("vm");
    fx.own_domain(&name);

    // create on passt user networking: SSH forwarded on 127.0.0.1 only.
    let out = ok(fx
        .nox(&cfg)
        .args([
            "create",
            &name,
            "--image",
            "debian-12-test",
            "--network",
            "user",
        ])
        .args(["--cpus", "1", "--memory", "1G", "--disk", "4G", "--json"])
        .output()
        .unwrap());
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(created["state"], "running");
    assert_eq!(created["backend"], "vm");
    assert_eq!(created["network"], "user");
    assert_eq!(created["ssh"]["host"], "127.0.0.1");
    assert_eq!(created["disk_bytes"], 4u64 << 30);

    // The base image is cached once, by checksum. (This VM is a clone: its disk overlays its
    // template, which links its own base; the NAT test below checks that a VM booted cold keeps
    // its base from `image rm`.)
    let images: Value = serde_json::from_slice(
        &ok(fx
            .nox(&cfg)
            .args(["image", "list", "--json"])
            .output()
            .unwrap())
        .stdout,
    )
    .unwrap();
    // The list shows the container bases too (the live tests share an lxcpath): the VM
    // cache is this test's own and holds exactly this one image.
    let vm_images: Vec<&Value> = images
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["backend"] == "vm" && i["kind"] == "base")
        .collect();
    assert_eq!(vm_images.len(), 1, "{images}");
    assert_eq!(vm_images[0]["name"], "debian-12-test");
    // A second create with the same name is refused, and the first VM is untouched.
    let again = fx
        .nox(&cfg)
        .args(["create", &name, "--image", "debian-12-test"])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2), "{}", text(&again.stderr));
    assert!(text(&again.stderr).contains("already exists"));
    assert_eq!(status(&fx, &cfg, &name)["state"], "running");

    // exec: output and exit code come back.
    let uname = ok(exec(&fx, &cfg, &name, &["uname", "-r"]));
    assert!(
        text(&uname.stdout)
            .trim()
            .starts_with(|c: char| c.is_ascii_digit()),
        "{}",
        text(&uname.stdout)
    );
    let seven = exec(
        &fx,
        &cfg,
        &name,
        &["sh", "-c", "echo out; echo err >&2; exit 7"],
    );
    assert_eq!(seven.status.code(), Some(7));
    assert_eq!(text(&seven.stdout), "out\n");
    assert_eq!(text(&seven.stderr), "err\n");

    // exec passes argv as argv: quotes, $, ;, newlines and globs arrive byte for byte.
    let args = [
        "it's",
        "\"double\"",
        "$HOME",
        "a;b",
        "line1\nline2",
        "  spaced  ",
        "*",
        "`id`",
        "$(id)",
        "\\",
    ];
    let mut argv = vec!["printf", "%s\\0"];
    argv.extend(args);
    let echoed = ok(exec(&fx, &cfg, &name, &argv));
    let expected: Vec<u8> = args.iter().flat_map(|a| a.bytes().chain([0])).collect();
    assert_eq!(echoed.stdout, expected);

    // ssh through the 127.0.0.1 forward, with nox's own key.
    let ssh = ok(fx
        .nox(&cfg)
        .args(["ssh", &name, "--", "hostname"])
        .output()
        .unwrap());
    assert_eq!(text(&ssh.stdout).trim(), name);
    let quoted = ok(fx
        .nox(&cfg)
        .args(["ssh", &name, "--", "printf", "%s|", "a b", "c'd"])
        .output()
        .unwrap());
    assert_eq!(text(&quoted.stdout), "a b|c'd|");

    // passwd: a new random password, shown once; the account goes from locked to usable.
    let locked = ok(exec(&fx, &cfg, &name, &["passwd", "-S", "nox"]));
    assert_eq!(
        text(&locked.stdout).split_whitespace().nth(1),
        Some("L"),
        "{}",
        text(&locked.stdout)
    );
    let pw = ok(fx.nox(&cfg).args(["passwd", &name]).output().unwrap());
    let password = text(&pw.stdout).trim().to_string();
    assert_eq!(password.len(), 20, "{password}");
    let usable = ok(exec(&fx, &cfg, &name, &["passwd", "-S", "nox"]));
    assert_eq!(
        text(&usable.stdout).split_whitespace().nth(1),
        Some("P"),
        "{}",
        text(&usable.stdout)
    );
    // nox keeps no copy: not in its record, its state dir or its output beyond that one line.
    let record = ok(fx
        .nox(&cfg)
        .args(["status", &name, "--json"])
        .output()
        .unwrap());
    assert!(!text(&record.stdout).contains(&password));
    assert!(!text(&pw.stderr).contains(&password));

    // list sees it, with an address from the guest agent.
    let list = ok(fx.nox(&cfg).args(["list", "--json"]).output().unwrap());
    let list: Value = serde_json::from_slice(&list.stdout).unwrap();
    let me = list
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == name.as_str())
        .unwrap();
    assert!(!me["ipv4"].as_array().unwrap().is_empty(), "{me}");

    // Grow the disk live: the guest's root filesystem grows with it; shrinking is refused.
    let size = |fx: &Fixture| -> u64 {
        let df = ok(exec(fx, &cfg, &name, &["df", "-B1", "--output=size", "/"]));
        text(&df.stdout)
            .lines()
            .nth(1)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let before = size(&fx);
    ok(fx
        .nox(&cfg)
        .args(["resize", &name, "--disk", "6G"])
        .output()
        .unwrap());
    let after = size(&fx);
    assert!(after > before + (1u64 << 30), "root fs {before} -> {after}");
    let shrink = fx
        .nox(&cfg)
        .args(["resize", &name, "--disk", "5G"])
        .output()
        .unwrap();
    assert_eq!(shrink.status.code(), Some(2));
    assert!(
        text(&shrink.stderr).contains("shrinking"),
        "{}",
        text(&shrink.stderr)
    );
    assert_eq!(status(&fx, &cfg, &name)["disk_bytes"], 6u64 << 30);

    // stop (clean ACPI shutdown), start (waits for readiness), exec works again.
    // Under `-vv`, each libvirt call and each wait is logged with its time.
    let stop = ok(fx.nox(&cfg).args(["-vv", "stop", &name]).output().unwrap());
    let log = text(&stop.stderr);
    assert!(log.contains("libvirt shutdown"), "{log}");
    assert!(
        log.contains("wait done") && log.contains("waited="),
        "{log}"
    );
    assert_eq!(status(&fx, &cfg, &name)["state"], "stopped");
    ok(fx.nox(&cfg).args(["start", &name]).output().unwrap());
    assert_eq!(status(&fx, &cfg, &name)["state"], "running");
    ok(exec(&fx, &cfg, &name, &["true"]));

    // delete refuses a running VM without --force, then removes everything.
    let refused = fx.nox(&cfg).args(["delete", &name]).output().unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(text(&refused.stderr).contains("--force"));
    ok(fx
        .nox(&cfg)
        .args(["delete", "--force", &name])
        .output()
        .unwrap());
    assert!(no_domain(&name), "domain {name} is left");
    let instances = fx.dir.join("vm/instances");
    let left: Vec<_> = std::fs::read_dir(&instances)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "files left: {left:?}");
    let gone = fx.nox(&cfg).args(["status", &name]).output().unwrap();
    assert_eq!(gone.status.code(), Some(2));
    // With no VM left on it, the cached image can go. Only from this test's own VM cache:
    // the container bases in the shared lxcpath, and the templates in the run's shared
    // templates dir, belong to the other tests too (so this rm looks at a templates dir of its
    // own; templates_verbs.rs covers rm of templates).
    let own_templates = fx.with_own_templates(&cfg);
    ok(fx
        .nox(&own_templates)
        .args(["image", "rm", "debian-12-test", "--backend", "vm"])
        .output()
        .unwrap());
    let left: Vec<_> = std::fs::read_dir(fx.dir.join("vm/images"))
        .unwrap()
        .flatten()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn failed_create_leaves_nothing() {
    if !live("failed_create_leaves_nothing") {
        return;
    }
    let image = TestImage::get();
    let fx = Fixture::new("vm-bad-checksum");
    // The same qcow2, declared with a wrong checksum.
    let cfg = fx.nox_config(
        &image,
        &format!(
            "[images.corrupt.vm]\nurl = \"{}\"\nchecksum = \"sha256:{}\"\n",
            image.qcow2.display(),
            "0".repeat(64)
        ),
    );
    let name = fx.unique_name("bad");
    fx.own_domain(&name);
    let out = fx
        .nox(&cfg)
        .args(["create", &name, "--image", "corrupt", "--network", "user"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("checksum mismatch"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(no_domain(&name));
    for dir in ["vm/instances", "vm/images"] {
        let left: Vec<_> = std::fs::read_dir(fx.dir.join(dir))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{dir} holds {left:?}");
    }
}

#[test]
fn unknown_image_and_missing_file_are_clear_errors() {
    if !live("unknown_image_and_missing_file_are_clear_errors") {
        return;
    }
    let image = TestImage::get();
    let fx = Fixture::new("vm-missing-image");
    let cfg = fx.nox_config(
        &image,
        &format!(
            "[images.gone.vm]\nurl = \"/nonexistent/gone.qcow2\"\nchecksum = \"sha256:{}\"\n",
            "a".repeat(64)
        ),
    );
    let name = fx.unique_name("missing");
    fx.own_domain(&name);
    let unknown = fx
        .nox(&cfg)
        .args(["create", &name, "--image", "nope"])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        text(&unknown.stderr).contains("no image named \"nope\""),
        "{}",
        text(&unknown.stderr)
    );
    let missing = fx
        .nox(&cfg)
        .args(["create", &name, "--image", "gone"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        text(&missing.stderr).contains("does not exist"),
        "{}",
        text(&missing.stderr)
    );
    assert!(no_domain(&name));
}

#[test]
fn vm_on_the_default_nat_network_gets_an_address() {
    if !live("vm_on_the_default_nat_network_gets_an_address") {
        return;
    }
    let image = TestImage::get();
    let fx = Fixture::new("vm-nat");
    let cfg = fx.nox_config(&image, "");
    let name = fx.unique_name("nat");
    fx.own_domain(&name);
    // Only the guest talks on the NAT network (DHCP from libvirt's dnsmasq); the test reads the
    // address through nox and sends nothing to it. Booted cold (`--cold-boot`): the suite's
    // one create that boots, where every other restores a template (clones.rs checks clones on
    // this network).
    let out = ok(fx
        .nox(&cfg)
        .args([
            "create",
            &name,
            "--image",
            "debian-12-test",
            "--network",
            "default",
            "--cold-boot",
            "--json",
        ])
        .output()
        .unwrap());
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(created["network"], "default");
    let ip = created["ipv4"][0].as_str().unwrap_or_default().to_string();
    assert!(
        ip.starts_with("192.168.122."),
        "no address on libvirt's default network: {created}"
    );
    assert_eq!(created["ssh"]["host"], ip.as_str());
    assert_eq!(created["ssh"]["port"], 22);
    // No template: the record names none, and nothing of the disk chain is in the run's
    // templates dir.
    virt::error::clear_error_callback();
    let conn = virt::connect::Connect::open(Some("qemu:///system")).unwrap();
    let xml = conn
        .lookup_domain_by_name(&name)
        .unwrap()
        .xml_desc(0)
        .unwrap()
        .replace("&quot;", "\"");
    assert!(xml.contains("\"image_checksum\""), "{xml}");
    assert!(!xml.contains("\"template\""), "{xml}");
    let templates = nox_tests::fixture::templates_dir();
    assert!(!xml.contains(&*templates.to_string_lossy()), "{xml}");

    // Its base cannot be removed while it exists; then it can. With a templates dir of this
    // test's own: the run's shared one holds other tests' templates of this image.
    let own = fx.with_own_templates(&cfg);
    let rm = || {
        fx.nox(&own)
            .args(["image", "rm", "debian-12-test", "--backend", "vm"])
            .output()
            .unwrap()
    };
    let in_use = rm();
    assert_eq!(in_use.status.code(), Some(2), "{}", text(&in_use.stderr));
    assert!(
        text(&in_use.stderr).contains("is the base of the VMs")
            && text(&in_use.stderr).contains(&name),
        "{}",
        text(&in_use.stderr)
    );
    ok(fx
        .nox(&cfg)
        .args(["delete", "--force", &name])
        .output()
        .unwrap());
    assert!(no_domain(&name));
    ok(rm());
    let left: Vec<_> = std::fs::read_dir(fx.dir.join("vm/images"))
        .unwrap()
        .flatten()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
