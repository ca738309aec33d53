//! Live tests against the real three-member Incus cluster of `cargo xtask incus up`, over both
//! the unix socket and HTTPS (pinned fingerprint, client certificate).
//!
//! They run when NOX_IT=1 and the cluster is up; otherwise each prints
//! `SKIPPED live test ...` on stderr and returns.
//!
//! ```sh
//! cargo xtask incus up
//! NOX_IT=1 cargo test -p nox-incus --test live
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nox_incus::api::{
    ImageMetadata, InstanceBackupsPost, InstancePatch, InstanceSource, InstanceType, InstancesPost,
};
use nox_incus::{
    Client, ClientIdentity, Endpoint, Error, ExecCommand, FileOwnership, Fingerprint, ImageImport,
    Options, Stdin,
};
use serde_json::Value;

const CLUSTER_JSON: &str = "/var/lib/nox-incus-cluster/cluster.json";
const IMAGE_ALIAS: &str = "nox-live-minimal";

/// Tests share the cluster; the one that stops a member runs alone.
static CLUSTER_GATE: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// The cluster as `cargo xtask incus up` describes it, or None (and a skip notice).
fn cluster(test: &str) -> Option<Value> {
    let skip = |why: &str| {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED live test `{test}`: {why}. Run `cargo xtask incus up`, then NOX_IT=1 cargo test -p nox-incus --test live."
        );
        None
    };
    if std::env::var("NOX_IT").as_deref() != Ok("1") {
        return skip("NOX_IT=1 is not set");
    }
    let path = std::env::var("NOX_INCUS_CLUSTER_JSON").unwrap_or_else(|_| CLUSTER_JSON.into());
    // Under NOX_IT=1 (cargo xtask ci and it, which bring the cluster up) a missing cluster
    // is a failure, never a skip.
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("the Incus test cluster is not up ({path}: {e}): run `cargo xtask incus up`")
    });
    let doc: Value = serde_json::from_str(&text).expect("cluster.json parses");
    let socket = doc["members"][0]["unix_socket"].as_str().unwrap();
    if let Err(e) = Client::unix(socket).and_then(|c| c.server()) {
        panic!("the Incus test cluster does not answer on member1's socket: {e}");
    }
    Some(doc)
}

fn s(v: &Value) -> &str {
    v.as_str().expect("a string in cluster.json")
}

fn unix_client(doc: &Value, member: usize) -> Client {
    Client::unix(s(&doc["members"][member]["unix_socket"])).unwrap()
}

fn identity(doc: &Value) -> ClientIdentity {
    ClientIdentity::from_pem_files(
        Path::new(s(&doc["client_cert"])),
        Path::new(s(&doc["client_key"])),
    )
    .unwrap()
}

fn https_client(doc: &Value, member: usize) -> Client {
    Client::https(
        s(&doc["members"][member]["url"]).parse().unwrap(),
        identity(doc),
        s(&doc["fingerprint"]).parse().unwrap(),
    )
    .unwrap()
}

/// The minimal test rootfs from the test image's nox.toml.
fn test_rootfs(doc: &Value) -> PathBuf {
    let text = std::fs::read_to_string(s(&doc["test_image_config"])).unwrap();
    let toml: toml::Value = text.parse().unwrap();
    PathBuf::from(
        toml["images"]["debian-12-test-minimal"]["lxc"]["url"]
            .as_str()
            .unwrap(),
    )
}

/// Imports the test rootfs once per cluster (keyed by fingerprint), with an alias. Returns the
/// fingerprint. Serialized within this test binary; the upload always goes over HTTPS.
fn ensure_image(doc: &Value) -> String {
    let client = &https_client(doc, 0);
    static LOCK: OnceLock<std::sync::Mutex<Option<String>>> = OnceLock::new();
    let mut done = LOCK.get_or_init(Default::default).lock().unwrap();
    if let Some(fp) = done.as_ref() {
        return fp.clone();
    }
    let dir = tempfile::tempdir().unwrap();
    let meta = dir.path().join("metadata.tar");
    std::fs::write(
        &meta,
        nox_incus::metadata_tarball(&ImageMetadata {
            architecture: "x86_64".into(),
            // Fixed, so the fingerprint (and the imported image) is the same every run.
            creation_date: 1_764_000_000,
            properties: BTreeMap::from([
                (
                    "description".into(),
                    "nox test image (Debian 12 minimal)".into(),
                ),
                ("os".into(), "debian".into()),
                ("release".into(), "bookworm".into()),
            ]),
        }),
    )
    .unwrap();
    let rootfs = test_rootfs(doc);
    let fp = nox_incus::split_image_fingerprint(&meta, &rootfs).unwrap();
    if client.find_image(&fp).unwrap().is_none() {
        let t = Instant::now();
        let got = client
            .import_image(
                &meta,
                &rootfs,
                &ImageImport {
                    aliases: vec![],
                    properties: vec![("nox.test".into(), "1".into())],
                    public: false,
                    virtual_machine: false,
                },
            )
            .unwrap();
        assert_eq!(got, fp);
        eprintln!("imported the test image {fp} in {:?}", t.elapsed());
    }
    if client.image_alias(IMAGE_ALIAS).unwrap().is_none() {
        client
            .create_image_alias(IMAGE_ALIAS, &fp, "nox live tests")
            .unwrap();
    }
    assert_eq!(client.image_alias(IMAGE_ALIAS).unwrap().unwrap().target, fp);
    *done = Some(fp.clone());
    fp
}

/// Deletes the instance when dropped, panics included.
struct Cleanup<'a>(&'a Client, String);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = self.0.stop_instance(&self.1, -1, true);
        let _ = self.0.delete_instance(&self.1);
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", std::process::id())
}

#[test]
fn live_members_over_unix_and_https() {
    let Some(doc) = cluster("live_members_over_unix_and_https") else {
        return;
    };
    let _shared = CLUSTER_GATE.read().unwrap_or_else(|p| p.into_inner());
    for client in [unix_client(&doc, 0), https_client(&doc, 0)] {
        let server = client.server().unwrap();
        assert!(server.is_trusted(), "{} must trust us", client.endpoint());
        assert!(server.environment.server_clustered);
        assert!(server.environment.server_version.starts_with("6.0"));
        let mut members = client.cluster_members().unwrap();
        members.sort_by(|a, b| a.server_name.cmp(&b.server_name));
        let names: Vec<_> = members.iter().map(|m| m.server_name.as_str()).collect();
        assert_eq!(names, ["member1", "member2", "member3"]);
        for (m, expected) in members.iter().zip(doc["members"].as_array().unwrap()) {
            assert!(m.is_online(), "{} is {}", m.server_name, m.status);
            assert_eq!(m.url, s(&expected["url"]));
        }
    }
    // The HTTPS pin is the cluster certificate's, the same on every member.
    let https = https_client(&doc, 0);
    let m3 = https.for_member("member3").unwrap();
    assert_eq!(m3.server().unwrap().environment.server_name, "member3");
}

#[test]
fn live_container_lifecycle_over_unix_socket() {
    let Some(doc) = cluster("live_container_lifecycle_over_unix_socket") else {
        return;
    };
    let _shared = CLUSTER_GATE.read().unwrap_or_else(|p| p.into_inner());
    lifecycle(&doc, &unix_client(&doc, 0), &unique("nox-it-unix"));
}

#[test]
fn live_container_lifecycle_over_https() {
    let Some(doc) = cluster("live_container_lifecycle_over_https") else {
        return;
    };
    let _shared = CLUSTER_GATE.read().unwrap_or_else(|p| p.into_inner());
    lifecycle(&doc, &https_client(&doc, 0), &unique("nox-it-https"));
}

/// Create on member2 from the imported image, start, exec every way, files, resize, stop,
/// delete.
fn lifecycle(doc: &Value, client: &Client, name: &str) {
    let fp = ensure_image(doc);
    let _cleanup = Cleanup(client, name.to_string());
    let mut req = InstancesPost::new(
        name,
        InstanceType::Container,
        InstanceSource::image_alias(IMAGE_ALIAS),
    );
    req.devices.insert(
        "tun".into(),
        BTreeMap::from([
            ("type".into(), "unix-char".into()),
            ("path".into(), "/dev/net/tun".into()),
        ]),
    );
    let t = Instant::now();
    client.create_instance(&req, Some("member2")).unwrap();
    let created = t.elapsed();
    let inst = client.instance(name).unwrap();
    assert_eq!(inst.location, "member2");
    assert_eq!(inst.status, "Stopped");
    assert_eq!(
        inst.config.get("volatile.base_image").map(String::as_str),
        Some(fp.as_str())
    );
    client.start_instance(name).unwrap();
    eprintln!(
        "{}: created in {created:?}, running after {:?}",
        client.endpoint(),
        t.elapsed()
    );
    let full = client.instance_full(name).unwrap();
    assert!(full.instance.is_running());
    assert!(full.state.unwrap().pid > 0);
    assert!(client
        .instances_full()
        .unwrap()
        .iter()
        .any(|i| i.instance.name == name && i.instance.location == "member2"));

    // Byte-exact argv: spaces, quotes, $, newlines, tabs, an empty argument, UTF-8.
    let args = [
        "a b",
        "'single'",
        "\"double\"",
        "$HOME $(id) `id`",
        "line1\nline2\n",
        "",
        "tab\there",
        "ünïcödé ✓",
        "back\\slash",
    ];
    let mut argv = vec!["printf", "%s\\0"];
    argv.extend(args);
    let expected: Vec<u8> = args
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = client
        .exec(
            name,
            &ExecCommand::new(argv.clone()),
            Stdin::Null,
            &mut out,
            &mut err,
        )
        .unwrap();
    assert_eq!(code, 0, "stderr: {}", String::from_utf8_lossy(&err));
    assert_eq!(
        out, expected,
        "argv must arrive byte for byte (websocket exec)"
    );
    let rec = client.exec_recorded(name, &ExecCommand::new(argv)).unwrap();
    assert_eq!(rec.exit_code, 0);
    assert_eq!(
        rec.stdout, expected,
        "argv must arrive byte for byte (recorded exec)"
    );

    // Exit codes, and stdout and stderr kept apart.
    let split = ExecCommand::new(["sh", "-c", "echo out; echo err >&2; exit 42"]);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    assert_eq!(
        client
            .exec(name, &split, Stdin::Null, &mut out, &mut err)
            .unwrap(),
        42
    );
    assert_eq!(
        (out.as_slice(), err.as_slice()),
        (&b"out\n"[..], &b"err\n"[..])
    );
    let rec = client.exec_recorded(name, &split).unwrap();
    assert_eq!(
        (rec.exit_code, rec.stdout.as_slice(), rec.stderr.as_slice()),
        (42, &b"out\n"[..], &b"err\n"[..])
    );

    // stdin, binary and larger than one websocket chunk, echoed back exactly.
    let input: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = client
        .exec(
            name,
            &ExecCommand::new(["cat"]),
            Stdin::Bytes(input.clone()),
            &mut out,
            &mut err,
        )
        .unwrap();
    assert_eq!(code, 0);
    assert!(
        out == input,
        "stdin must round-trip ({} bytes back of {})",
        out.len(),
        input.len()
    );
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let reader = Box::new(std::io::Cursor::new(b"from a reader\n".to_vec()));
    let code = client
        .exec(
            name,
            &ExecCommand::new(["sh", "-c", "read l; echo \"got: $l\""]),
            Stdin::Reader(reader),
            &mut out,
            &mut err,
        )
        .unwrap();
    assert_eq!((code, out.as_slice()), (0, &b"got: from a reader\n"[..]));

    // A missing command: Incus fails the operation ("Command not found"), both ways.
    let missing = ExecCommand::new(["/nonexistent"]);
    let err = client.exec_recorded(name, &missing).unwrap_err();
    assert!(
        matches!(&err, Error::Operation { message, .. } if message == "Command not found"),
        "{err:?}"
    );
    let (mut out, mut err_out) = (Vec::new(), Vec::new());
    let err = client
        .exec(name, &missing, Stdin::Null, &mut out, &mut err_out)
        .unwrap_err();
    assert!(err.to_string().contains("Command not found"), "{err}");

    // Environment, user, cwd.
    let mut cmd = ExecCommand::new(["sh", "-c", "echo \"$NOX_X\" $(id -u) $(pwd)"]);
    cmd.environment.insert("NOX_X".into(), "x y".into());
    cmd.uid = 65534;
    cmd.cwd = "/tmp".into();
    let rec = client.exec_recorded(name, &cmd).unwrap();
    assert_eq!(String::from_utf8_lossy(&rec.stdout), "x y 65534 /tmp\n");

    // TUN works inside (the unix-char device).
    let rec = client
        .exec_recorded(
            name,
            &ExecCommand::new(["ip", "tuntap", "add", "dev", "tun0", "mode", "tun"]),
        )
        .unwrap();
    assert_eq!(
        rec.exit_code,
        0,
        "tun: {}",
        String::from_utf8_lossy(&rec.stderr)
    );

    // Files in and out, owner and mode applied.
    let blob: Vec<u8> = (0..70_000u32).map(|i| (i % 256) as u8).collect();
    client
        .push_file(
            name,
            "/root/blob with space",
            &blob,
            FileOwnership {
                uid: Some(1000),
                gid: Some(1000),
                mode: Some(0o640),
            },
        )
        .unwrap();
    assert_eq!(
        client.pull_file(name, "/root/blob with space").unwrap(),
        blob
    );
    let rec = client
        .exec_recorded(
            name,
            &ExecCommand::new(["stat", "-c", "%u %g %a", "/root/blob with space"]),
        )
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&rec.stdout), "1000 1000 640\n");

    // Resize (PATCH), seen in the instance's config.
    client
        .patch_instance(
            name,
            &InstancePatch {
                config: Some(BTreeMap::from([("limits.memory".into(), "256MiB".into())])),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(
        client.instance(name).unwrap().config["limits.memory"],
        "256MiB"
    );
    // PUT round trip.
    let mut put = client.instance(name).unwrap().writable();
    put.config.insert("user.nox".into(), "yes".into());
    client.update_instance(name, &put).unwrap();
    assert_eq!(client.instance(name).unwrap().config["user.nox"], "yes");

    // A refusal carries Incus's message.
    let err = client.delete_instance(name).unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("running"),
        "deleting a running instance must be refused by Incus, with its reason: {err}"
    );

    client.stop_instance(name, 30, false).unwrap();
    assert_eq!(client.instance(name).unwrap().status, "Stopped");
    client.delete_instance(name).unwrap();
    assert!(client.instance(name).unwrap_err().is_not_found());
}

/// A tiny image over the unix socket: upload with the fingerprint checked, alias, refusal of
/// a duplicate, delete.
#[test]
fn live_images_over_unix_socket() {
    let Some(doc) = cluster("live_images_over_unix_socket") else {
        return;
    };
    let _shared = CLUSTER_GATE.read().unwrap_or_else(|p| p.into_inner());
    let client = unix_client(&doc, 1);
    let dir = tempfile::tempdir().unwrap();
    let (meta, rootfs) = (dir.path().join("meta.tar"), dir.path().join("rootfs.tar"));
    let unique_date = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    std::fs::write(
        &meta,
        nox_incus::metadata_tarball(&ImageMetadata {
            architecture: "x86_64".into(),
            creation_date: unique_date,
            properties: BTreeMap::from([("description".into(), "nox tiny".into())]),
        }),
    )
    .unwrap();
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(6);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "etc/hostname", &b"tiny\n"[..])
        .unwrap();
    std::fs::write(&rootfs, tar.into_inner().unwrap()).unwrap();

    let alias = unique("nox-it-tiny");
    let fp = client
        .import_image(
            &meta,
            &rootfs,
            &ImageImport {
                aliases: vec![alias.clone()],
                properties: vec![],
                public: false,
                virtual_machine: false,
            },
        )
        .unwrap();
    assert_eq!(
        fp,
        nox_incus::split_image_fingerprint(&meta, &rootfs).unwrap()
    );
    let image = client.find_image(&fp).unwrap().expect("imported");
    assert_eq!(image.kind, "container");
    assert_eq!(image.properties["description"], "nox tiny");
    assert!(image.aliases.iter().any(|a| a.name == alias));
    assert!(client.images().unwrap().iter().any(|i| i.fingerprint == fp));
    // The same again: Incus refuses, with its reason.
    let err = client
        .import_image(&meta, &rootfs, &ImageImport::default())
        .unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    client.delete_image_alias(&alias).unwrap();
    assert!(client.image_alias(&alias).unwrap().is_none());
    client.delete_image(&fp).unwrap();
    assert!(client.find_image(&fp).unwrap().is_none());
}

#[test]
fn live_backup_on_member2_restored_on_member3() {
    let Some(doc) = cluster("live_backup_on_member2_restored_on_member3") else {
        return;
    };
    let _shared = CLUSTER_GATE.read().unwrap_or_else(|p| p.into_inner());
    let client = https_client(&doc, 0);
    ensure_image(&doc);
    let (name, copy) = (unique("nox-it-bk"), unique("nox-it-rs"));
    let _c1 = Cleanup(&client, name.clone());
    let _c2 = Cleanup(&client, copy.clone());
    let mut req = InstancesPost::new(
        &name,
        InstanceType::Container,
        InstanceSource::image_alias(IMAGE_ALIAS),
    );
    req.start = true;
    client.create_instance(&req, Some("member2")).unwrap();
    client
        .push_file(
            &name,
            "/root/marker",
            b"backed up on member2\n",
            FileOwnership::default(),
        )
        .unwrap();
    client.stop_instance(&name, -1, true).unwrap();
    let backup = InstanceBackupsPost {
        name: "b1".into(),
        instance_only: true,
        ..Default::default()
    };
    client.create_backup(&name, &backup).unwrap();
    assert!(client
        .backups(&name)
        .unwrap()
        .iter()
        .any(|b| b.name == "b1"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("backup.tar");
    let mut out = std::fs::File::create(&file).unwrap();
    let bytes = client.download_backup(&name, "b1", &mut out).unwrap();
    drop(out);
    assert!(
        bytes > 1_000_000,
        "a real export, not an error page: {bytes} bytes"
    );
    client.delete_backup(&name, "b1").unwrap();

    // Import through member3: Incus creates the instance where the upload lands.
    let m3 = client.for_member("member3").unwrap();
    let len = std::fs::metadata(&file).unwrap().len();
    m3.import_backup(
        Box::new(std::fs::File::open(&file).unwrap()),
        Some(len),
        Some(&copy),
        None,
    )
    .unwrap();
    let restored = client.instance(&copy).unwrap();
    assert_eq!(restored.location, "member3");
    client.start_instance(&copy).unwrap();
    let rec = client
        .exec_recorded(&copy, &ExecCommand::new(["cat", "/root/marker"]))
        .unwrap();
    assert_eq!(rec.stdout, b"backed up on member2\n");
}

#[test]
fn live_trust_by_token_over_https() {
    let Some(doc) = cluster("live_trust_by_token_over_https") else {
        return;
    };
    let _shared = CLUSTER_GATE.read().unwrap_or_else(|p| p.into_inner());
    let admin = unix_client(&doc, 0);
    let token = admin.create_trust_token(&unique("nox-it-token")).unwrap();
    assert_eq!(token.fingerprint, s(&doc["fingerprint"]));
    assert!(!token.addresses.is_empty());
    // The fingerprint Incus puts in the token is what the server presents.
    let probed = nox_incus::probe_fingerprint(
        &Endpoint::from_address(&token.addresses[0]).unwrap(),
        &Options::default(),
    )
    .unwrap();
    assert_eq!(probed.as_str(), token.fingerprint);

    let (fresh, _pem) = ClientIdentity::generate("nox-it-fresh").unwrap();
    // Before: not trusted.
    let before = Client::https(
        Endpoint::from_address(&token.addresses[0]).unwrap(),
        fresh.clone(),
        token.server_fingerprint(),
    )
    .unwrap();
    assert!(!before.server().unwrap().is_trusted());
    let err = before.instances().unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");

    // A token for another fingerprint: refused by our pin before anything is sent.
    let mut forged = token.clone();
    forged.fingerprint = "00".repeat(32);
    let err = Client::trust_with_token(&forged.encode(), &fresh, Options::default()).unwrap_err();
    assert!(matches!(err, Error::FingerprintMismatch { .. }), "{err:?}");

    let trusted = Client::trust_with_token(&token.encode(), &fresh, Options::default()).unwrap();
    assert!(trusted.server().unwrap().is_trusted());
    assert!(trusted.cluster_members().unwrap().len() == 3);
    let listed = admin.certificates().unwrap();
    assert!(listed
        .iter()
        .any(|c| c.fingerprint == fresh.fingerprint().as_str()));

    // A token is spent once used.
    let (other, _) = ClientIdentity::generate("nox-it-other").unwrap();
    let err = Client::trust_with_token(&token.encode(), &other, Options::default()).unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");

    admin
        .delete_certificate(fresh.fingerprint().as_str())
        .unwrap();
    assert!(!before.server().unwrap().is_trusted());
}

#[test]
fn live_unreachable_and_wrong_pin_fail_fast() {
    let Some(doc) = cluster("live_unreachable_and_wrong_pin_fail_fast") else {
        return;
    };
    let _shared = CLUSTER_GATE.read().unwrap_or_else(|p| p.into_inner());
    // An address on the cluster's bridge where nothing listens: ARP goes unanswered.
    let host = s(&doc["host_address"])
        .rsplit_once('.')
        .unwrap()
        .0
        .to_string();
    let nobody = Client::connect(
        &format!("https://{host}.99:8443"),
        Some(identity(&doc)),
        Some(s(&doc["fingerprint"]).parse().unwrap()),
        Options {
            connect_timeout: Duration::from_secs(2),
            ..Options::default()
        },
    )
    .unwrap();
    let t = Instant::now();
    let err = nobody.instances().unwrap_err();
    assert!(err.is_unreachable(), "{err:?}");
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "took {:?}",
        t.elapsed()
    );

    let wrong: Fingerprint = "ab".repeat(32).parse().unwrap();
    let client = Client::https(
        s(&doc["members"][1]["url"]).parse().unwrap(),
        identity(&doc),
        wrong,
    )
    .unwrap();
    let err = client.server().unwrap_err();
    match &err {
        Error::FingerprintMismatch { actual, .. } => assert_eq!(actual, s(&doc["fingerprint"])),
        other => panic!("expected a fingerprint mismatch, got {other:?}"),
    }
}

/// A member's incusd killed and started again, by what cluster.json documents: the rest of the
/// cluster keeps answering at once, the dead member fails fast, and it recovers.
#[test]
fn live_member_down_and_back() {
    let Some(doc) = cluster("live_member_down_and_back") else {
        return;
    };
    let _alone = CLUSTER_GATE.write().unwrap_or_else(|p| p.into_inner());
    ensure_image(&doc);
    let fast = Options {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        ..Options::default()
    };
    let client = https_client(&doc, 0).with_options(fast.clone()).unwrap();
    let name = unique("nox-it-down");
    let _cleanup = Cleanup(&client, name.clone());
    let mut req = InstancesPost::new(
        &name,
        InstanceType::Container,
        InstanceSource::image_alias(IMAGE_ALIAS),
    );
    req.start = true;
    client.create_instance(&req, Some("member3")).unwrap();

    let m3 = &doc["members"][2];
    let pid_file = s(&m3["incusd_pid_file"]);
    let pid = std::fs::read_to_string(pid_file)
        .unwrap()
        .trim()
        .to_string();
    let mut restart = Restart(m3, false);
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    while !is_gone(&pid) {
        std::thread::sleep(Duration::from_millis(50));
    }

    // The others answer at once; Incus shows the dead member's instance as Error.
    let t = Instant::now();
    let list = client.instances().unwrap();
    eprintln!("list with member3 dead: {:?}", t.elapsed());
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "list took {:?}",
        t.elapsed()
    );
    let mine = list.iter().find(|i| i.name == name).unwrap();
    assert_eq!(
        (mine.location.as_str(), mine.status.as_str()),
        ("member3", "Error")
    );
    let full = client.instances_full().unwrap();
    assert!(full
        .iter()
        .any(|i| i.instance.name == name && i.state.is_none()));
    assert_eq!(
        https_client(&doc, 1)
            .server()
            .unwrap()
            .environment
            .server_name,
        "member2"
    );
    // The dead member itself: refused at once.
    let direct = client.for_endpoint(s(&m3["url"]).parse().unwrap()).unwrap();
    let t = Instant::now();
    let err = direct.server().unwrap_err();
    assert!(err.is_unreachable(), "{err:?}");
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
    // Through member1, an exec on it fails within the request timeout, never hangs.
    let t = Instant::now();
    assert!(client
        .exec_recorded(&name, &ExecCommand::new(["true"]))
        .is_err());
    assert!(
        t.elapsed() < Duration::from_secs(7),
        "took {:?}",
        t.elapsed()
    );

    // Start it again exactly as cluster.json says, and wait for the cluster to notice.
    restart.now();
    let t = Instant::now();
    loop {
        let ok = client
            .exec_recorded(&name, &ExecCommand::new(["true"]))
            .map(|o| o.exit_code == 0)
            .unwrap_or(false);
        if ok {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(90),
            "member3 did not recover in 90 s"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!(
        "member3 back and serving its instance {:?} after restart",
        t.elapsed()
    );
    // A member's `online` status changes at the cluster's next heartbeat, which can come some
    // seconds after it serves its instances again: wait for it, within a bound.
    let t = Instant::now();
    while !client
        .cluster_members()
        .unwrap()
        .iter()
        .all(|m| m.is_online())
    {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "a member is still not online 60 s after member3 served its instance again"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(client.instance(&name).unwrap().is_running());
}

/// Starts a member's incusd as cluster.json documents it (`incusd_argv`, `incusd_env`, stdio
/// to `stdio_log`, pid to `incusd_pid_file`), now or, if the test fails first, on drop.
struct Restart<'a>(&'a Value, bool);

impl Restart<'_> {
    fn now(&mut self) {
        if self.1 {
            return;
        }
        self.1 = true;
        let m = self.0;
        let argv: Vec<&str> = m["incusd_argv"].as_array().unwrap().iter().map(s).collect();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(s(&m["stdio_log"]))
            .unwrap();
        let mut cmd = std::process::Command::new("setsid");
        cmd.args(&argv)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (k, v) in m["incusd_env"].as_object().unwrap() {
            cmd.env(k, s(v));
        }
        // The daemon outlives the test on purpose (setsid); after the test exits, init reaps it.
        let mut child = cmd.spawn().unwrap();
        std::fs::write(s(&m["incusd_pid_file"]), format!("{}\n", child.id())).unwrap();
        // Until then, a thread reaps it if it dies (see `is_gone`).
        std::thread::spawn(move || child.wait());
    }
}

impl Drop for Restart<'_> {
    fn drop(&mut self) {
        self.now();
    }
}

/// Whether a killed process is gone: no /proc entry, or a zombie. A daemon whose parent is
/// still running and does not reap it stays a zombie, with its /proc entry, indefinitely; it
/// no longer runs or holds a socket, which is all a member-down test needs.
fn is_gone(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Err(_) => true,
        Ok(status) => status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains("zombie")),
    }
}
