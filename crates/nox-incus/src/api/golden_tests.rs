//! Every request body nox sends, pinned: a change to what nox asks of Incus shows in review.

use std::collections::BTreeMap;

use super::*;
use crate::exec::ExecCommand;
use crate::golden::assert_golden;

fn pinned(name: &str, body: &impl serde::Serialize) {
    let json = serde_json::to_string_pretty(body).unwrap() + "\n";
    assert_golden(name, &json);
}

fn dev(pairs: &[(&str, &str)]) -> Device {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// An unprivileged container with /dev/net/tun as a unix-char device, placed on member2.
#[test]
fn create_container_with_tun() {
    let mut req = InstancesPost::new(
        "web",
        InstanceType::Container,
        InstanceSource::image_fingerprint(
            "86d360958faeb896f66ce138cbe19cbc8042b937711e5f631a13c7cf1562a616",
        ),
    );
    req.config = BTreeMap::from([
        ("limits.cpu".into(), "2".into()),
        ("limits.memory".into(), "1GiB".into()),
        ("boot.autostart".into(), "false".into()),
    ]);
    req.devices = BTreeMap::from([(
        "tun".into(),
        dev(&[
            ("type", "unix-char"),
            ("path", "/dev/net/tun"),
            ("source", "/dev/net/tun"),
        ]),
    )]);
    req.start = true;
    pinned("instances-post-container.json", &req);
}

/// A VM (not booted on this machine kind: Incus VMs need vhost_vsock and working KVM).
#[test]
fn create_vm() {
    let mut req = InstancesPost::new(
        "vm1",
        InstanceType::VirtualMachine,
        InstanceSource::image_alias("debian-12-test"),
    );
    req.config = BTreeMap::from([
        ("limits.cpu".into(), "1".into()),
        ("limits.memory".into(), "512MiB".into()),
    ]);
    req.devices = BTreeMap::from([(
        "root".into(),
        dev(&[
            ("type", "disk"),
            ("path", "/"),
            ("pool", "default"),
            ("size", "10GiB"),
        ]),
    )]);
    req.profiles = Some(vec!["default".into()]);
    pinned("instances-post-vm.json", &req);
}

#[test]
fn create_from_simplestreams() {
    let req = InstancesPost::new(
        "c1",
        InstanceType::Container,
        InstanceSource::simplestreams("https://images.linuxcontainers.org", "debian/12"),
    );
    pinned("instances-post-simplestreams.json", &req);
}

#[test]
fn state_changes() {
    pinned("state-start.json", &InstanceStatePut::start());
    pinned("state-stop.json", &InstanceStatePut::stop(30, false));
    pinned("state-stop-force.json", &InstanceStatePut::stop(-1, true));
    pinned("state-restart.json", &InstanceStatePut::restart(30, false));
}

#[test]
fn resize_patch() {
    let patch = InstancePatch {
        config: Some(BTreeMap::from([
            ("limits.cpu".into(), "4".into()),
            ("limits.memory".into(), "2GiB".into()),
        ])),
        ..Default::default()
    };
    pinned("instance-patch-resize.json", &patch);
}

#[test]
fn exec_requests() {
    let mut cmd = ExecCommand::new([
        "sh",
        "-c",
        "printf '%s' \"$1\"",
        "sh",
        "a b 'q' \"d\" $HOME\n",
    ]);
    cmd.environment = BTreeMap::from([("LANG".into(), "C.UTF-8".into())]);
    pinned("exec-websocket.json", &cmd.request(false));
    pinned("exec-record-output.json", &cmd.request(true));
}

#[test]
fn certificate_requests() {
    pinned(
        "certificates-post-token.json",
        &CertificatesPost::token("nox-laptop"),
    );
    pinned(
        "certificates-post-trust-token.json",
        &CertificatesPost::with_trust_token("eyJjbGllbnRfbmFtZSI6Im5veCJ9"),
    );
    pinned(
        "certificates-post-add.json",
        &CertificatesPost::add("nox-xtask", "MIIBkTCB+w=="),
    );
}

#[test]
fn backup_and_alias_requests() {
    pinned(
        "backups-post.json",
        &InstanceBackupsPost {
            name: "nox-20261126".into(),
            instance_only: true,
            compression_algorithm: Some("zstd".into()),
            ..Default::default()
        },
    );
    pinned(
        "image-aliases-post.json",
        &ImageAliasesPost {
            name: "debian-12-test-minimal".into(),
            description: "nox test image".into(),
            target: "86d360958faeb896f66ce138cbe19cbc8042b937711e5f631a13c7cf1562a616".into(),
            kind: String::new(),
        },
    );
}

/// Responses as Incus 6.0 writes them, Go's nulls included, read leniently.
#[test]
fn responses_with_go_nulls_parse() {
    let inst: InstanceFull = serde_json::from_str(
        r#"{"name":"c1","status":"Running","status_code":103,"type":"container","location":"member2",
            "profiles":null,"config":null,"devices":{"tun":{"type":"unix-char","path":"/dev/net/tun"}},
            "backups":null,"state":{"status":"Running","pid":1234,"network":null,"disk":null},
            "snapshots":null,"some_future_field":{"x":1}}"#,
    )
    .unwrap();
    assert_eq!(inst.instance.location, "member2");
    assert!(inst.instance.is_running());
    assert!(inst.instance.profiles.is_empty());
    assert_eq!(inst.instance.devices["tun"]["type"], "unix-char");
    assert_eq!(inst.state.unwrap().pid, 1234);
    let op: Operation = serde_json::from_str(
        r#"{"id":"x","class":"task","status":"Failure","status_code":400,"err":"boom","metadata":null,"resources":null}"#,
    )
    .unwrap();
    assert!(op.is_final() && !op.succeeded());
}
