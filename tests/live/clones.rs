//! VMs restored from a saved template (issue 15), through the real `nox`, libvirtd and QEMU.
//!
//! The templates are the run's shared ones (tests/src/fixture.rs): the shapes here are those
//! vm.rs, backup.rs, scripts.rs and crash.rs use, so a run boots each template once, whichever
//! test comes first.
//! Everything is read through the guest agent, libvirt and 127.0.0.1 forwards: nothing is sent
//! to a guest's address.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use nox_tests::fixture::{templates_dir, Fixture, NAT_SHAPE, USER_SHAPE};
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

fn read(fx: &Fixture, cfg: &Path, name: &str, argv: &[&str]) -> String {
    text(&ok(exec(fx, cfg, name, argv)).stdout)
        .trim()
        .to_string()
}

fn domain_xml(name: &str) -> String {
    virt::error::clear_error_callback();
    let conn = virt::connect::Connect::open(Some("qemu:///system")).unwrap();
    conn.lookup_domain_by_name(name)
        .unwrap()
        .xml_desc(0)
        .unwrap()
}

fn between<'a>(s: &'a str, open: &str, close: &str) -> &'a str {
    let start = s.find(open).unwrap_or_else(|| panic!("no {open} in {s}")) + open.len();
    let end = s[start..].find(close).unwrap() + start;
    &s[start..end]
}

/// The template a clone was restored from, by the key in its record.
fn template_of(name: &str) -> (PathBuf, Value) {
    // The record is JSON text in an XML element: its quotes may come back escaped.
    let xml = domain_xml(name).replace("&quot;", "\"");
    let key = between(&xml, "\"template\":\"", "\"").to_string();
    let dir = templates_dir().join(&key);
    let note = std::fs::read(dir.join("template.json"))
        .unwrap_or_else(|e| panic!("{name} names template {key}, which is missing: {e}"));
    (dir, serde_json::from_slice(&note).unwrap())
}

/// Succeeds when no account file names the template's placeholder and its home is gone.
const NO_PLACEHOLDER: &str = "! grep -q noxtemplate /etc/passwd /etc/shadow /etc/group \
    /etc/gshadow /etc/subuid /etc/subgid /etc/sudoers.d/90-cloud-init-users \
    && [ ! -e /home/noxtemplate ]";

/// Everything that must be a clone's own, read from inside it and from libvirt.
fn identity(fx: &Fixture, cfg: &Path, name: &str) -> BTreeMap<&'static str, String> {
    let xml = domain_xml(name);
    let mut id = BTreeMap::new();
    id.insert(
        "machine-id",
        read(fx, cfg, name, &["cat", "/etc/machine-id"]),
    );
    id.insert(
        "host key",
        read(fx, cfg, name, &["cat", "/etc/ssh/ssh_host_ed25519_key.pub"]),
    );
    id.insert(
        "boot_id",
        read(fx, cfg, name, &["cat", "/proc/sys/kernel/random/boot_id"]),
    );
    id.insert("hostname", read(fx, cfg, name, &["hostname"]));
    id.insert(
        "authorized keys",
        read(fx, cfg, name, &["cat", "/home/nox/.ssh/authorized_keys"]),
    );
    id.insert(
        "mac",
        read(fx, cfg, name, &["cat", "/sys/class/net/eth0/address"]),
    );
    id.insert(
        "instance-id",
        read(fx, cfg, name, &["cat", "/var/lib/cloud/data/instance-id"]),
    );
    id.insert(
        "random",
        read(
            fx,
            cfg,
            name,
            &["od", "-An", "-tx1", "-N32", "/dev/urandom"],
        ),
    );
    id.insert("genid", between(&xml, "<genid>", "</genid>").to_string());
    id.insert("uuid", between(&xml, "<uuid>", "</uuid>").to_string());
    id
}

fn create(fx: &Fixture, cfg: &Path, name: &str, home: Option<&Path>, args: &[&str]) -> Value {
    fx.own_domain(name);
    let mut cmd = fx.nox(cfg);
    if let Some(home) = home {
        cmd.env("HOME", home)
            .env("XDG_DATA_HOME", home.join(".local/share"));
    }
    let out = ok(cmd
        .args(["create", name, "--image", "debian-12-test", "--json"])
        .args(args)
        .output()
        .unwrap());
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn two_clones_of_one_template_are_each_their_own_machine() {
    if !live("two_clones_of_one_template_are_each_their_own_machine") {
        return;
    }
    let image = TestImage::get();
    let fx = Fixture::new("clones");
    let cfg = fx.nox_config(&image, "");
    let (a, b) = (fx.unique_name("ca"), fx.unique_name("cb"));
    // b's nox runs with another HOME, so it trusts another nox key.
    let home_b = fx.dir.join("home-b");
    std::fs::create_dir_all(&home_b).unwrap();
    create(&fx, &cfg, &a, None, USER_SHAPE);
    let b_json = create(&fx, &cfg, &b, Some(&home_b), USER_SHAPE);
    assert_eq!(b_json["state"], "running");

    let (tdir, note) = template_of(&a);
    assert_eq!(
        template_of(&b).1["key"],
        note["key"],
        "one shape, one template"
    );
    let ia = identity(&fx, &cfg, &a);
    let ib = identity(&fx, &cfg, &b);
    for (field, va) in &ia {
        assert!(!va.is_empty(), "{a} has no {field}");
        assert_ne!(va, &ib[field], "{a} and {b} share their {field}");
    }
    // And neither is the template, as it was saved.
    let saved = std::fs::read(tdir.join("state.sav")).unwrap();
    let saved_xml = String::from_utf8_lossy(&saved[..saved.len().min(256 << 10)]).into_owned();
    let template_genid = between(&saved_xml, "<genid>", "</genid>").to_string();
    let template_uuid = between(&saved_xml, "<uuid>", "</uuid>").to_string();
    for (name, id) in [(&a, &ia), (&b, &ib)] {
        assert_eq!(id["hostname"], *name);
        assert_ne!(id["mac"], note["mac"].as_str().unwrap());
        assert_ne!(id["genid"], template_genid);
        assert_ne!(id["uuid"], template_uuid);
        assert_ne!(
            id["instance-id"],
            format!("nox-template-{}", note["key"].as_str().unwrap())
        );
        // The guest's MAC is the one libvirt gives the NIC; the cloud-init instance is the
        // domain's UUID, as for a VM booted cold.
        assert!(domain_xml(name).contains(&format!("<mac address='{}'/>", id["mac"])));
        assert_eq!(id["instance-id"], id["uuid"]);
        // The template's account became the user's: renamed in every account file, its home
        // moved, the keys file the user's own; in sudo, with no password.
        let users = read(&fx, &cfg, name, &["getent", "passwd"]);
        assert!(!users.contains("noxtemplate"), "{users}");
        assert!(
            users.contains("\nnox:x:1000:1000::/home/nox:/bin/bash"),
            "{users}"
        );
        assert!(exec(&fx, &cfg, name, &["sh", "-c", NO_PLACEHOLDER])
            .status
            .success());
        let groups = read(&fx, &cfg, name, &["id", "-nG", "nox"]);
        assert!(groups.split_whitespace().any(|g| g == "sudo"), "{groups}");
        let keys = read(
            &fx,
            &cfg,
            name,
            &[
                "stat",
                "-c",
                "%U:%G %a",
                "/home/nox/.ssh",
                "/home/nox/.ssh/authorized_keys",
            ],
        );
        assert_eq!(keys, "nox:nox 700\nnox:nox 600");
        let shadow = read(&fx, &cfg, name, &["stat", "-c", "%U:%G %a", "/etc/shadow"]);
        assert_eq!(shadow, "root:shadow 640");
        let hosts = read(&fx, &cfg, name, &["cat", "/etc/hosts"]);
        assert!(hosts.contains(&format!("\n127.0.1.1 {name}")), "{hosts}");
        assert!(!hosts.contains("nox-template"), "{hosts}");
        // The kernel has the generation ID device the reseed goes through.
        let vmgenid = read(&fx, &cfg, name, &["ls", "/sys/bus/acpi/devices"]);
        assert!(vmgenid.contains("QEMUVGID"), "{vmgenid}");
        // The clock is the host's, not the template's.
        let guest: i64 = read(&fx, &cfg, name, &["date", "+%s"]).parse().unwrap();
        let host = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!(
            (guest - host).abs() < 30,
            "{name}'s clock is {guest}, the host's {host}"
        );
    }

    // SSH into each with its own key: a's nox key opens a, b's opens b, and not the other.
    let ssh = |name: &str, home: Option<&Path>| -> Output {
        let mut cmd = fx.nox(&cfg);
        if let Some(home) = home {
            cmd.env("HOME", home)
                .env("XDG_DATA_HOME", home.join(".local/share"));
        }
        cmd.args(["ssh", name, "--", "hostname"]).output().unwrap()
    };
    assert_eq!(text(&ok(ssh(&a, None)).stdout).trim(), a);
    assert_eq!(text(&ok(ssh(&b, Some(&home_b))).stdout).trim(), b);
    let crossed = ssh(&b, None);
    assert!(!crossed.status.success(), "a's key opened {b}");
    // sshd serves the clone's new host key, not the template's it held in memory: `nox ssh`
    // recorded the key it was shown in the VM's own known_hosts (accept-new).
    let known =
        std::fs::read_to_string(fx.dir.join("vm/instances").join(&b).join("known_hosts")).unwrap();
    let key_b = ib["host key"].split_whitespace().nth(1).unwrap();
    assert!(known.contains(key_b), "{b} served another key: {known}");

    // Deleting a clone leaves the template whole: another clone comes from it.
    ok(fx
        .nox(&cfg)
        .args(["delete", "--force", &a])
        .output()
        .unwrap());
    assert!(tdir.join("state.sav").is_file() && tdir.join("disk.qcow2").is_file());
    // Its user is one the image already has (a system account, which is all this image has):
    // that account is kept as it is, joins sudo and gets the keys, and the placeholder goes.
    let c = fx.unique_name("cc");
    create(
        &fx,
        &cfg,
        &c,
        None,
        &[USER_SHAPE, &["--user", "games"]].concat(),
    );
    assert_eq!(template_of(&c).1["key"], note["key"]);
    assert_eq!(read(&fx, &cfg, &c, &["hostname"]), c);
    assert_eq!(
        read(&fx, &cfg, &c, &["getent", "passwd", "games"]),
        "games:x:5:60:games:/usr/games:/usr/sbin/nologin"
    );
    let groups = read(&fx, &cfg, &c, &["id", "-nG", "games"]);
    assert!(groups.split_whitespace().any(|g| g == "sudo"), "{groups}");
    assert!(exec(&fx, &cfg, &c, &["sh", "-c", NO_PLACEHOLDER])
        .status
        .success());
    let keys = read(
        &fx,
        &cfg,
        &c,
        &["stat", "-c", "%U %a", "/usr/games/.ssh/authorized_keys"],
    );
    assert_eq!(keys, "games 600");
    assert_eq!(
        read(&fx, &cfg, &c, &["cat", "/usr/games/.ssh/authorized_keys"]),
        ia["authorized keys"]
    );
    // A clone's disk is an overlay on the template's, and starts nearly empty.
    let disk = fx.dir.join("vm/instances").join(&c).join("disk.qcow2");
    let used = std::fs::metadata(&disk).unwrap();
    assert!(
        std::os::unix::fs::MetadataExt::blocks(&used) * 512 < 64 << 20,
        "{c}'s overlay already takes {} bytes",
        std::os::unix::fs::MetadataExt::blocks(&used) * 512
    );
}

/// scripts.rs's and crash.rs's VM shape, on libvirt's NAT network: its template is the run's
/// already.
#[test]
fn clones_on_the_default_network_each_get_their_own_lease() {
    if !live("clones_on_the_default_network_each_get_their_own_lease") {
        return;
    }
    let image = TestImage::get();
    let fx = Fixture::new("clones-nat");
    let cfg = fx.nox_config(&image, "");
    let names = [fx.unique_name("na"), fx.unique_name("nb")];
    let mut ips = Vec::new();
    for n in &names {
        let created = create(&fx, &cfg, n, None, NAT_SHAPE);
        let ip = created["ipv4"][0].as_str().unwrap_or_default().to_string();
        assert!(ip.starts_with("192.168.122."), "{n}: {created}");
        ips.push(ip);
    }
    assert_ne!(ips[0], ips[1]);
    // libvirt's dnsmasq leased each address to the clone's own MAC (read on the host).
    let leases = std::process::Command::new("virsh")
        .args(["-c", "qemu:///system", "net-dhcp-leases", "default"])
        .output()
        .unwrap();
    let leases = text(&leases.stdout);
    for (n, ip) in names.iter().zip(&ips) {
        let mac = read(&fx, &cfg, n, &["cat", "/sys/class/net/eth0/address"]);
        assert!(
            leases
                .lines()
                .any(|l| l.contains(&mac) && l.contains(&format!("{ip}/"))),
            "no lease of {ip} to {n} ({mac}):\n{leases}"
        );
    }
    let (_, note) = template_of(&names[0]);
    assert!(!ips.iter().any(|ip| leases
        .lines()
        .any(|l| l.contains(note["mac"].as_str().unwrap()) && l.contains(&format!("{ip}/")))));
}

#[test]
fn a_template_that_no_longer_restores_is_rebuilt_and_the_create_still_succeeds() {
    if !live("a_template_that_no_longer_restores_is_rebuilt_and_the_create_still_succeeds") {
        return;
    }
    let image = TestImage::get();
    let fx = Fixture::new("clones-broken");
    // A private templates dir, holding a copy of the run's template of this shape, broken.
    let private = fx.dir.join("templates");
    let shared_cfg = fx.nox_config(&image, "");
    let warm = fx.unique_name("cw");
    create(&fx, &shared_cfg, &warm, None, USER_SHAPE);
    let (tdir, note) = template_of(&warm);
    ok(fx
        .nox(&shared_cfg)
        .args(["delete", "--force", &warm])
        .output()
        .unwrap());
    let cfg = fx.with_own_templates(&shared_cfg);
    let key = note["key"].as_str().unwrap();
    std::fs::create_dir_all(private.join(key)).unwrap();
    for f in ["disk.qcow2", "state.sav", "template.json"] {
        std::fs::copy(tdir.join(f), private.join(key).join(f)).unwrap();
    }
    // QEMU's stream cut short: what a half-written or truncated state looks like.
    let state = std::fs::OpenOptions::new()
        .write(true)
        .open(private.join(key).join("state.sav"))
        .unwrap();
    state.set_len(state.metadata().unwrap().len() / 2).unwrap();
    let before = std::fs::metadata(private.join(key).join("template.json"))
        .unwrap()
        .modified()
        .unwrap();

    let name = fx.unique_name("cr");
    fx.own_domain(&name);
    let out = ok(fx
        .nox(&cfg)
        .args(["create", &name, "--image", "debian-12-test"])
        .args(USER_SHAPE)
        .output()
        .unwrap());
    let err = text(&out.stderr);
    let said: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("from its template failed"))
        .collect();
    assert_eq!(said.len(), 1, "one line says the restore failed: {err}");
    assert!(said[0].contains("building the template again"), "{err}");
    // The VM is up, from the rebuilt template, which is whole again.
    assert_eq!(read(&fx, &cfg, &name, &["hostname"]), name);
    let after = std::fs::metadata(private.join(key).join("template.json"))
        .unwrap()
        .modified()
        .unwrap();
    assert!(after > before, "the template was not rebuilt");
    assert!(
        std::fs::metadata(private.join(key).join("state.sav"))
            .unwrap()
            .len()
            > std::fs::metadata(tdir.join("state.sav")).unwrap().len() / 2
    );
}

/// A VM booted cold (`--cold-boot`) is vm.rs's NAT test; here, the refusal for containers.
#[test]
fn cold_boot_is_refused_for_containers() {
    if !live("cold_boot_is_refused_for_containers") {
        return;
    }
    let image = TestImage::get();
    let fx = Fixture::new("clones-cold");
    let cfg = fx.nox_config(&image, "");
    // Refused before anything is made: containers always start cold.
    let bad = fx
        .nox(&cfg)
        .args(["create", "x", "--backend", "lxc", "--cold-boot"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad.stderr));
    assert_eq!(
        text(&bad.stderr).lines().count(),
        1,
        "{}",
        text(&bad.stderr)
    );
    assert!(
        text(&bad.stderr).contains("--cold-boot"),
        "{}",
        text(&bad.stderr)
    );
}
