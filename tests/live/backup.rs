//! Backup and restore end to end, through the real `nox` binary: a live VM backed up full then
//! incrementally and restored at both points in time; an unprivileged container backed up and
//! restored with its owners; corruption refused; a backup killed with SIGKILL leaving nothing;
//! S3 uploads encrypted with age, and uploads through a proxy that cuts the connection.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use nox_tests::fixture::{lxcpath, Fixture};
use nox_tests::image::TestImage;
use nox_tests::{live, ok, text};
use serde_json::Value;

fn json(out: Output) -> Value {
    serde_json::from_slice(&ok(out).stdout).unwrap()
}

fn exec(fx: &Fixture, cfg: &Path, name: &str, script: &str) -> String {
    text(
        &ok(fx
            .nox(cfg)
            .args(["exec", name, "--", "sh", "-c", script])
            .output()
            .unwrap())
        .stdout,
    )
}

fn backups(fx: &Fixture, cfg: &Path) -> Vec<Value> {
    json(fx.nox(cfg).args(["backups", "--json"]).output().unwrap())
        .as_array()
        .unwrap()
        .clone()
}

fn backup_dir(fx: &Fixture) -> PathBuf {
    fx.dir.join("backups")
}

/// Flips one byte in the middle of `file`.
fn flip_byte(file: &Path) {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(file)
        .unwrap();
    let mid = f.metadata().unwrap().len() / 2;
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(mid)).unwrap();
    f.read_exact(&mut b).unwrap();
    f.seek(SeekFrom::Start(mid)).unwrap();
    f.write_all(&[b[0] ^ 0xff]).unwrap();
}

fn config(fx: &Fixture, image: &TestImage) -> PathBuf {
    fx.nox_config(
        image,
        &format!(
            "[backup]\ndir = \"{}\"\nkeep = 5\n",
            backup_dir(fx).display()
        ),
    )
}

/// The test config plus `[s3]` for `server`, with a 0600 credentials file.
fn s3_config(fx: &Fixture, image: &TestImage, server: &nox_tests::s3::S3Server) -> PathBuf {
    s3_config_with(fx, image, server, &server.endpoint, "")
}

/// [`s3_config`], reaching the server at `endpoint` (a proxy in front of it), with `backup`
/// added to `[backup]`.
fn s3_config_with(
    fx: &Fixture,
    image: &TestImage,
    server: &nox_tests::s3::S3Server,
    endpoint: &str,
    backup: &str,
) -> PathBuf {
    let creds = fx.dir.join("s3-credentials.toml");
    std::fs::write(
        &creds,
        format!(
            "access_key_id = \"{}\"\nsecret_access_key = \"{}\"\n",
            server.access_key_id, server.secret_access_key
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600)).unwrap();
    fx.nox_config(
        image,
        &format!(
            "[backup]\ndir = \"{}\"\nkeep = 5\n{backup}\n\n[s3]\nendpoint = \"{}\"\nbucket = \"{}\"\nprefix = \"it\"\npath_style = true\ncredentials_file = \"{}\"\n",
            backup_dir(fx).display(),
            endpoint,
            server.bucket,
            creds.display()
        ),
    )
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn container_backup_and_restore_keep_files_and_owners() {
    if !live("container_backup_and_restore_keep_files_and_owners") {
        return;
    }
    let image = TestImage::get();
    let fx = Fixture::new("backup-lxc");
    let cfg = config(&fx, &image);
    let name = fx.unique_name("ct");
    fx.create_container(&cfg, &name);
    // Files with owners other than root, a set-uid bit, an xattr-free FIFO and a symlink.
    let setup = "set -e; mkdir -p /srv/data; head -c 300000 /dev/urandom > /srv/data/blob; \
                 chown 1234:2345 /srv/data/blob; chmod 4750 /srv/data/blob; \
                 mkfifo /srv/data/fifo; ln -s blob /srv/data/link; \
                 chown -h 7:8 /srv/data/link";
    exec(&fx, &cfg, &name, setup);
    let probe = "cd /srv/data && sha256sum blob && stat -c '%n %u %g %a %F' blob fifo link";
    let before = exec(&fx, &cfg, &name, probe);
    // A Tailscale node as `tailscaled` leaves it (a stand-in: the tailnet is unreachable
    // here), and the machine-id systemd drew at first boot: identities a copy must not share.
    exec(&fx, &cfg, &name, FAKE_TAILSCALE_NODE);
    let node = exec(&fx, &cfg, &name, IDENTITY_PROBE);
    assert!(node.contains(FAKE_NODE_KEY), "{node}");
    let machine_id = exec(&fx, &cfg, &name, "cat /etc/machine-id");
    assert_eq!(machine_id.trim().len(), 32, "{machine_id}");
    // An extended attribute, set from the host through the container's root (the image has no
    // setfattr); the restore must bring it back.
    let pid = init_pid(&name);
    set_xattr(
        &PathBuf::from(format!("/proc/{pid}/root/srv/data/blob")),
        "user.nox-test",
        b"kept",
    );

    // A running container is frozen for the backup, and keeps running.
    let out = ok(fx.nox(&cfg).args(["backup", &name]).output().unwrap());
    assert!(
        text(&out.stdout).contains("full backup"),
        "{}",
        text(&out.stdout)
    );
    let list = backups(&fx, &cfg);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["backend"], "lxc");
    assert_eq!(list[0]["consistency"], "application");
    assert_eq!(list[0]["locations"], serde_json::json!(["local"]));
    let id = list[0]["backup"].as_str().unwrap().to_string();
    let status = json(
        fx.nox(&cfg)
            .args(["status", &name, "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(status["state"], "running");
    // Guest data is not readable by others.
    let dir = backup_dir(&fx).join(&id);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("rootfs.tar.zst")), 0o600);
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["lxc"]["idmap"]["uid_start"], 100000, "{manifest}");
    assert_eq!(manifest["files"][0]["name"], "rootfs.tar.zst");

    // Restored under a new name: same files, same owners inside, still unprivileged, a new
    // MAC and hostname.
    let copy = fx.unique_name("ct");
    fx.own_container(&copy);
    let out = ok(fx
        .nox(&cfg)
        .args(["restore", &id, "--name", &copy])
        .stdin(Stdio::null())
        .output()
        .unwrap());
    assert_eq!(exec(&fx, &cfg, &copy, probe), before);
    assert_eq!(exec(&fx, &cfg, &copy, "hostname").trim(), copy);
    // ...and not the same machine: no Tailscale node (the user is told to join it again), a
    // machine-id of its own.
    assert_eq!(exec(&fx, &cfg, &copy, IDENTITY_PROBE), NO_TAILSCALE_NODE);
    assert!(
        text(&out.stderr).contains("starts logged out"),
        "{}",
        text(&out.stderr)
    );
    let copy_id = exec(&fx, &cfg, &copy, "cat /etc/machine-id");
    assert_eq!(copy_id.trim().len(), 32, "{copy_id}");
    assert_ne!(copy_id, machine_id);
    let restored = json(
        fx.nox(&cfg)
            .args(["status", &copy, "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(restored["privileged"], false);
    assert_eq!(restored["state"], "running");
    let conf = std::fs::read_to_string(lxcpath().join(&copy).join("config")).unwrap();
    assert!(conf.contains("lxc.idmap = u 0 100000 65536"), "{conf}");
    let orig_conf = std::fs::read_to_string(lxcpath().join(&name).join("config")).unwrap();
    let mac = |c: &str| {
        c.lines()
            .find(|l| l.starts_with("lxc.net.0.hwaddr"))
            .unwrap()
            .to_string()
    };
    assert_ne!(mac(&conf), mac(&orig_conf));
    // On the host the files belong to the container's mapped ids.
    use std::os::unix::fs::MetadataExt;
    let blob_path = lxcpath().join(&copy).join("rootfs/srv/data/blob");
    let blob = std::fs::metadata(&blob_path).unwrap();
    assert_eq!((blob.uid(), blob.gid()), (101234, 102345));
    assert_eq!(
        get_xattr(&blob_path, "user.nox-test").as_deref(),
        Some(&b"kept"[..])
    );

    // Restoring over an existing instance needs --force.
    let again = fx
        .nox(&cfg)
        .args(["restore", &id, "--name", &copy])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2), "{}", text(&again.stderr));
    assert!(
        text(&again.stderr).contains("--force"),
        "{}",
        text(&again.stderr)
    );

    // --stop: a clean stop, an archive of the stopped overlay, and a start again; the change
    // made since the first backup is in it. Restored over the copy with --force.
    exec(&fx, &cfg, &name, "echo second > /srv/data/later");
    let out = ok(fx
        .nox(&cfg)
        .args(["backup", &name, "--stop"])
        .output()
        .unwrap());
    assert!(text(&out.stdout).contains("full backup"));
    let status = json(
        fx.nox(&cfg)
            .args(["status", &name, "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(status["state"], "running");
    ok(fx
        .nox(&cfg)
        .args(["restore", &name, "--name", &copy, "--force"])
        .stdin(Stdio::null())
        .output()
        .unwrap());
    assert_eq!(exec(&fx, &cfg, &copy, "cat /srv/data/later"), "second\n");
    assert_eq!(exec(&fx, &cfg, &copy, probe), before);

    // Restored in place (its own name, over itself): the same machine, identities kept.
    exec(&fx, &cfg, &name, "rm -rf /var/lib/tailscale");
    let out = ok(fx
        .nox(&cfg)
        .args(["restore", &name, "--force"])
        .stdin(Stdio::null())
        .output()
        .unwrap());
    assert!(
        !text(&out.stderr).contains("logged out"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(exec(&fx, &cfg, &name, IDENTITY_PROBE), node);
    assert_eq!(exec(&fx, &cfg, &name, "cat /etc/machine-id"), machine_id);
    assert_eq!(exec(&fx, &cfg, &name, "cat /srv/data/later"), "second\n");

    // A flipped byte: refused before anything is touched, naming the file; the copy stays.
    let second = backups(&fx, &cfg)[1]["backup"]
        .as_str()
        .unwrap()
        .to_string();
    flip_byte(&backup_dir(&fx).join(&second).join("rootfs.tar.zst"));
    let bad = fx
        .nox(&cfg)
        .args(["restore", &second, "--name", &copy, "--force"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad.stderr));
    let err = text(&bad.stderr);
    assert!(
        err.contains("rootfs.tar.zst") && err.contains("corrupt"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(exec(&fx, &cfg, &copy, "cat /srv/data/later"), "second\n");

    // Retention: --prune --keep 1 leaves the newest only.
    ok(fx
        .nox(&cfg)
        .args(["backup", "--prune", "--keep", "1"])
        .output()
        .unwrap());
    let left = backups(&fx, &cfg);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["backup"], second.as_str());

    // No BACKUP and no terminal: an error, never a prompt.
    let no_tty = fx
        .nox(&cfg)
        .args(["restore"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(no_tty.status.code(), Some(2));
    assert!(
        text(&no_tty.stderr).contains("no terminal"),
        "{}",
        text(&no_tty.stderr)
    );
}

/// What a fake Tailscale node key file holds.
const FAKE_NODE_KEY: &str = "nox-fake-node-key-5f3a";

/// Writes a Tailscale node's state and log id where `tailscaled` keeps them, 0600 as it does.
const FAKE_TAILSCALE_NODE: &str = "set -e; mkdir -p /var/lib/tailscale; umask 077; \
     printf '{\"_machinekey\":\"nox-fake-node-key-5f3a\"}' > /var/lib/tailscale/tailscaled.state; \
     echo 'log-id-5f3a' > /var/lib/tailscale/tailscaled.log.conf; sync";

/// Prints Tailscale's node state and log id, or that there are none.
const IDENTITY_PROBE: &str = "cd /var/lib/tailscale 2>/dev/null && \
     cat tailscaled.state tailscaled.log.conf 2>/dev/null || echo no-node";

/// What `IDENTITY_PROBE` prints for a machine with no Tailscale node.
const NO_TAILSCALE_NODE: &str = "no-node\n";

fn checkpoints(name: &str) -> Vec<String> {
    let out = std::process::Command::new("virsh")
        .args(["-c", "qemu:///system", "checkpoint-list", name, "--name"])
        .output()
        .unwrap();
    text(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

fn domain_uuid_and_mac(name: &str) -> (String, String) {
    let xml = text(
        &std::process::Command::new("virsh")
            .args(["-c", "qemu:///system", "dumpxml", name])
            .output()
            .unwrap()
            .stdout,
    );
    let between = |start: &str, end: &str| {
        let s = xml.find(start).unwrap() + start.len();
        xml[s..s + xml[s..].find(end).unwrap()].to_string()
    };
    (between("<uuid>", "</uuid>"), between("<mac address='", "'"))
}

#[test]
fn vm_full_and_incremental_backups_restore_each_point_in_time() {
    if !live("vm_full_and_incremental_backups_restore_each_point_in_time") {
        return;
    }
    let image = TestImage::get();
    let fx = Fixture::new("backup-vm");
    let cfg = config(&fx, &image);
    let name = fx.unique_name("vm");
    fx.own_domain(&name);
    ok(fx
        .nox(&cfg)
        .args([
            "create",
            &name,
            "--image",
            "debian-12-test",
            "--network",
            "user",
        ])
        // Not the default, so the restore's copy of it is seen.
        .args([
            "--cpus",
            "1",
            "--memory",
            "1G",
            "--disk",
            "4G",
            "--no-autostart",
        ])
        .output()
        .unwrap());
    let sum = "sha256sum /root/one /root/two 2>/dev/null; true";
    exec(
        &fx,
        &cfg,
        &name,
        "head -c 8000000 /dev/urandom > /root/one && sync",
    );
    let at_full = exec(&fx, &cfg, &name, sum);
    assert!(at_full.contains("/root/one") && !at_full.contains("/root/two"));
    // Identities the copies must not share (reset in their disks before their first boot).
    exec(&fx, &cfg, &name, FAKE_TAILSCALE_NODE);
    assert!(exec(&fx, &cfg, &name, IDENTITY_PROBE).contains(FAKE_NODE_KEY));
    let machine_id = exec(&fx, &cfg, &name, "cat /etc/machine-id");
    assert_eq!(machine_id.trim().len(), 32, "{machine_id}");

    // First backup: full, application-consistent (the agent froze the filesystems).
    let out = ok(fx.nox(&cfg).args(["backup", &name]).output().unwrap());
    assert!(
        text(&out.stdout).contains("full backup"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stdout).contains(", consistent"),
        "{}",
        text(&out.stdout)
    );
    exec(
        &fx,
        &cfg,
        &name,
        "head -c 8000000 /dev/urandom > /root/two && sync",
    );
    let at_incr = exec(&fx, &cfg, &name, sum);

    // Second: incremental, and much smaller than the full one.
    let out = ok(fx.nox(&cfg).args(["backup", &name]).output().unwrap());
    assert!(
        text(&out.stdout).contains("incremental backup"),
        "{}",
        text(&out.stdout)
    );
    let list = backups(&fx, &cfg);
    assert_eq!(list.len(), 2, "{list:?}");
    let (full, incr) = (list[0].clone(), list[1].clone());
    assert_eq!(full["kind"], "full");
    assert_eq!(incr["kind"], "incremental");
    assert_eq!(incr["parent"], full["id"]);
    assert!(
        incr["size_bytes"].as_u64().unwrap() * 4 < full["size_bytes"].as_u64().unwrap(),
        "{list:?}"
    );
    // One checkpoint on the VM: the newest backup's. No job output left beside the disk.
    assert_eq!(
        checkpoints(&name),
        [format!("nox-{}", incr["id"].as_str().unwrap())]
    );

    // kill -9 during a backup: nothing visible, the VM healthy, the next backup works and
    // leaves no stale checkpoint or job output.
    let mut child = fx
        .nox(&cfg)
        .args(["backup", &name, "--full"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let staging = backup_dir(&fx).join(&name);
    // Kill once the backup is under way (its hidden temp dir exists).
    while started.elapsed() < Duration::from_secs(30) {
        let busy = std::fs::read_dir(&staging)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(".tmp-"));
        if busy {
            std::thread::sleep(Duration::from_millis(1500));
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        backups(&fx, &cfg).len(),
        2,
        "a killed backup must not be listed"
    );
    assert_eq!(exec(&fx, &cfg, &name, "echo alive").trim(), "alive");
    let out = ok(fx.nox(&cfg).args(["backup", &name]).output().unwrap());
    assert!(
        text(&out.stdout).contains("incremental backup"),
        "{}",
        text(&out.stdout)
    );
    let list = backups(&fx, &cfg);
    assert_eq!(list.len(), 3);
    let third = list[2]["id"].as_str().unwrap().to_string();
    assert_eq!(checkpoints(&name), [format!("nox-{third}")]);
    let instance_dir = fx.dir.join("vm/instances").join(&name);
    let leftovers: Vec<_> = std::fs::read_dir(&instance_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("backup-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let hidden: Vec<_> = std::fs::read_dir(&staging)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp-"))
        .collect();
    assert!(hidden.is_empty(), "{hidden:?}");

    // Restore both points in time under new names: each has exactly the files of its time,
    // and a new UUID and MAC.
    let (uuid, mac) = domain_uuid_and_mac(&name);
    for (which, expected) in [(&full, &at_full), (&incr, &at_incr)] {
        let copy = fx.unique_name("vm");
        fx.own_domain(&copy);
        let out = ok(fx
            .nox(&cfg)
            .args([
                "restore",
                which["backup"].as_str().unwrap(),
                "--name",
                &copy,
            ])
            .output()
            .unwrap());
        assert_eq!(&exec(&fx, &cfg, &copy, sum), expected, "{which}");
        assert_eq!(exec(&fx, &cfg, &copy, "hostname").trim(), copy);
        assert_eq!(exec(&fx, &cfg, &copy, IDENTITY_PROBE), NO_TAILSCALE_NODE);
        assert!(
            text(&out.stderr).contains("starts logged out"),
            "{}",
            text(&out.stderr)
        );
        let copy_id = exec(&fx, &cfg, &copy, "cat /etc/machine-id");
        assert_eq!(copy_id.trim().len(), 32, "{copy_id}");
        assert_ne!(copy_id, machine_id);
        let (u, m) = domain_uuid_and_mac(&copy);
        assert_ne!(u, uuid);
        assert_ne!(m, mac);
        // Network and autostart as they were.
        let st = json(
            fx.nox(&cfg)
                .args(["status", &copy, "--json"])
                .output()
                .unwrap(),
        );
        assert_eq!(st["network"], "user");
        assert_eq!(st["autostart"], false);
        ok(fx
            .nox(&cfg)
            .args(["delete", "--force", &copy])
            .output()
            .unwrap());
    }

    // --to s3 makes one more incremental and uploads its whole chain, not just itself: an
    // incremental alone in a bucket could never be restored.
    let server = nox_tests::s3::S3Server::start("nox-vm-chain");
    let cfg = s3_config(&fx, &image, &server);
    let out = ok(fx
        .nox(&cfg)
        .args(["backup", &name, "--to", "s3"])
        .output()
        .unwrap());
    assert!(
        text(&out.stdout).contains("incremental"),
        "{}",
        text(&out.stdout)
    );
    let listed = backups(&fx, &cfg);
    assert!(listed.len() >= 3, "{listed:?}");
    for b in &listed {
        assert_eq!(b["locations"], serde_json::json!(["local", "s3"]), "{b}");
    }

    // A flipped byte in the full backup: a restore of the newest (which needs it) is refused,
    // naming the file, and nothing is created.
    let bad_file = backup_dir(&fx)
        .join(full["backup"].as_str().unwrap())
        .join("vda.qcow2");
    flip_byte(&bad_file);
    let copy = fx.unique_name("vm");
    fx.own_domain(&copy);
    let bad = fx
        .nox(&cfg)
        .args(["restore", &name, "--name", &copy])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad.stderr));
    assert!(
        text(&bad.stderr).contains(&bad_file.display().to_string()),
        "{}",
        text(&bad.stderr)
    );
    assert!(!fx.dir.join("vm/instances").join(&copy).exists());

    // Without a guest agent the filesystems cannot be frozen: the backup is still made,
    // crash-consistent, and says so on stderr and in its manifest.
    exec(
        &fx,
        &cfg,
        &name,
        "nohup sh -c 'sleep 2; systemctl stop qemu-guest-agent' >/dev/null 2>&1 &",
    );
    std::thread::sleep(Duration::from_secs(6));
    let out = ok(fx.nox(&cfg).args(["backup", &name]).output().unwrap());
    assert!(
        text(&out.stdout).contains("crash-consistent"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stderr).contains("crash-consistent backup"),
        "{}",
        text(&out.stderr)
    );
    let newest = backups(&fx, &cfg).last().unwrap().clone();
    assert_eq!(newest["consistency"], "crash");
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(
            backup_dir(&fx)
                .join(newest["backup"].as_str().unwrap())
                .join("manifest.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert!(
        manifest["note"]
            .as_str()
            .unwrap()
            .contains("could not freeze"),
        "{manifest}"
    );

    // A stopped VM is backed up from its disk file: full, and consistent.
    ok(fx
        .nox(&cfg)
        .args(["stop", "--force", &name])
        .output()
        .unwrap());
    let out = ok(fx.nox(&cfg).args(["backup", &name]).output().unwrap());
    assert!(
        text(&out.stdout).contains("full backup") && text(&out.stdout).contains(", consistent"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn s3_upload_list_download_restore_and_credential_errors() {
    if !live("s3_upload_list_download_restore_and_credential_errors") {
        return;
    }
    let image = TestImage::get();
    let fx = Fixture::new("backup-s3");
    let server = nox_tests::s3::S3Server::start("nox-backups");
    let creds = fx.dir.join("s3-credentials.toml");
    let cfg = s3_config(&fx, &image, &server);
    let name = fx.unique_name("ct");
    fx.create_container(&cfg, &name);
    exec(
        &fx,
        &cfg,
        &name,
        "echo from-s3 > /root/marker && chown 4321:4321 /root/marker",
    );

    // Upload (the rootfs tarball is far above the 8 MiB multipart chunk), then list: one
    // backup, in both places.
    let out = ok(fx
        .nox(&cfg)
        .args(["backup", &name, "--to", "s3"])
        .output()
        .unwrap());
    assert!(
        text(&out.stdout).contains("uploaded to s3://nox-backups/it"),
        "{}",
        text(&out.stdout)
    );
    let list = backups(&fx, &cfg);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["locations"], serde_json::json!(["local", "s3"]));
    let id = list[0]["id"].as_str().unwrap().to_string();

    // Without the local copy it is listed as s3:NAME/ID, and restores from there: downloaded,
    // verified, restored.
    std::fs::remove_dir_all(backup_dir(&fx).join(&name).join(&id)).unwrap();
    let list = backups(&fx, &cfg);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["locations"], serde_json::json!(["s3"]));
    let remote = format!("s3:{name}/{id}");
    assert_eq!(list[0]["backup"], remote.as_str());
    let copy = fx.unique_name("ct");
    fx.own_container(&copy);
    ok(fx
        .nox(&cfg)
        .args(["restore", &remote, "--name", &copy])
        .stdin(Stdio::null())
        .output()
        .unwrap());
    assert_eq!(
        exec(
            &fx,
            &cfg,
            &copy,
            "cat /root/marker; stat -c %u:%g /root/marker"
        ),
        "from-s3\n4321:4321\n"
    );

    // Credentials never land in a backup.
    for entry in walk(&backup_dir(&fx)) {
        if entry.file_name().is_some_and(|n| n == "manifest.json") {
            let m = std::fs::read_to_string(&entry).unwrap();
            assert!(!m.contains(&server.secret_access_key) && !m.contains(&server.access_key_id));
        }
    }

    // A wrong secret: the server refuses the signature; nox says so clearly, before making a
    // backup, and never prints the secret.
    let before = backups(&fx, &cfg).len();
    let wrong = "WRONGsecretWRONGsecretWRONGsecret0000";
    let out = fx
        .nox(&cfg)
        .args(["backup", &name, "--to", "s3"])
        .env("AWS_ACCESS_KEY_ID", &server.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", wrong)
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("refused the credentials") && err.contains("SignatureDoesNotMatch"),
        "{err}"
    );
    assert!(!err.contains(wrong) && !text(&out.stdout).contains(wrong));
    assert_eq!(backups(&fx, &cfg).len(), before);

    // A credentials file others can read is refused, as bad input.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = fx
        .nox(&cfg)
        .args(["backup", &name, "--to", "s3"])
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("readable by others") && err.contains("chmod 600"),
        "{err}"
    );
    assert!(!err.contains(&server.secret_access_key));
}

/// Whether `needle` occurs in the file at `path`.
fn file_contains(path: &Path, needle: &[u8]) -> bool {
    std::fs::read(path)
        .unwrap()
        .windows(needle.len())
        .any(|w| w == needle)
}

/// An age key pair: the identity written to `identity` (mode 0600), the public key returned.
fn age_key(identity: &Path) -> String {
    use age::secrecy::ExposeSecret;
    use std::os::unix::fs::PermissionsExt;
    let key = age::x25519::Identity::generate();
    let public = key.to_public().to_string();
    std::fs::write(
        identity,
        format!(
            "# public key: {public}\n{}\n",
            key.to_string().expose_secret()
        ),
    )
    .unwrap();
    std::fs::set_permissions(identity, std::fs::Permissions::from_mode(0o600)).unwrap();
    public
}

#[test]
fn s3_encrypted_backup_is_ciphertext_in_the_bucket_and_restores_only_with_its_identity() {
    if !live("s3_encrypted_backup_is_ciphertext_in_the_bucket_and_restores_only_with_its_identity")
    {
        return;
    }
    let image = TestImage::get();
    let fx = Fixture::new("backup-s3-enc");
    let server = nox_tests::s3::S3Server::start("nox-sealed");
    // The key that encrypts, and another one.
    let key = fx.dir.join("mine.key");
    let public = age_key(&key);
    let other = age_key(&fx.dir.join("other.key"));
    let recipients = fx.dir.join("recipients.txt");
    std::fs::write(&recipients, format!("# who may restore\n{public}\n")).unwrap();
    let identity = fx.dir.join("identity.txt");
    let cfg = s3_config_with(
        &fx,
        &image,
        &server,
        &server.endpoint,
        &format!(
            "recipients_file = \"{}\"\nidentity_file = \"{}\"",
            recipients.display(),
            identity.display()
        ),
    );
    let name = fx.unique_name("ct");
    fx.create_container(&cfg, &name);
    // Random bytes: zstd stores them as they are, so in clear they are found in the tarball.
    let marker = ok(fx
        .nox(&cfg)
        .args(["exec", &name, "--", "sh", "-c"])
        .arg("head -c 65536 /dev/urandom | tee /root/marker.bin")
        .output()
        .unwrap())
    .stdout;
    assert_eq!(marker.len(), 65536);
    let windows: Vec<&[u8]> = (0..4)
        .map(|i| &marker[i * 16384..i * 16384 + 256])
        .collect();

    let out = ok(fx
        .nox(&cfg)
        .args(["backup", &name, "--to", "s3"])
        .output()
        .unwrap());
    assert!(
        text(&out.stdout).contains("uploaded to s3://nox-sealed/it"),
        "{}",
        text(&out.stdout)
    );
    let list = backups(&fx, &cfg);
    assert_eq!(list.len(), 1, "{list:?}");
    let id = list[0]["id"].as_str().unwrap().to_string();
    let local = backup_dir(&fx).join(&name).join(&id);
    // The control: the local backup is in clear, and the marker is found in it.
    let tarball = local.join("rootfs.tar.zst");
    assert!(
        windows.iter().any(|w| file_contains(&tarball, w)),
        "the marker is not in the local tarball"
    );

    // In the bucket: only encrypted objects and the manifest, the marker in none of them.
    let fetched = fx.dir.join("bucket");
    let contents = server.contents("it", &fetched);
    let prefix = format!("it/{name}/{id}/");
    assert_eq!(
        contents.keys,
        vec![
            format!("{prefix}manifest.json"),
            format!("{prefix}rootfs.tar.zst.age")
        ]
    );
    for k in &contents.keys {
        let path = fetched.join(k);
        assert!(
            !windows.iter().any(|w| file_contains(&path, w)),
            "{k} holds the marker in clear"
        );
    }
    let sealed = std::fs::read(fetched.join(format!("{prefix}rootfs.tar.zst.age"))).unwrap();
    assert!(sealed.starts_with(b"age-encryption.org/v1\n"));
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(fetched.join(format!("{prefix}manifest.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["encryption"]["scheme"], "age");
    assert_eq!(
        manifest["encryption"]["recipients"],
        serde_json::json!([public])
    );
    assert!(!manifest.to_string().contains("AGE-SECRET-KEY"));

    // Restores from S3 only: without the identity, with another key, or with a key file
    // others may read, refused in one line (exit 2) before anything is downloaded or made.
    std::fs::remove_dir_all(&local).unwrap();
    let copy = fx.unique_name("ct");
    fx.own_container(&copy);
    let remote = format!("s3:{name}/{id}");
    let restore = || {
        fx.nox(&cfg)
            .args(["restore", &remote, "--name", &copy])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let refused = |why: &str, expect: &[&str]| {
        let out = restore();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{why}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{why}: {err}");
        for e in expect {
            assert!(err.contains(e), "{why}: {err}");
        }
        assert!(
            !backup_dir(&fx).join(&name).join(&id).exists(),
            "{why}: downloaded"
        );
        let status = fx.nox(&cfg).args(["status", &copy]).output().unwrap();
        assert!(!status.status.success(), "{why}: {copy} was made");
    };
    let identity_path = identity.display().to_string();
    refused("no identity", &[&public, &identity_path, "does not exist"]);
    std::fs::copy(fx.dir.join("other.key"), &identity).unwrap();
    refused("another key", &[&public, &other, "not to the key"]);
    std::fs::copy(&key, &identity).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&identity, std::fs::Permissions::from_mode(0o644)).unwrap();
    refused(
        "a key others may read",
        &["readable by others", "chmod 600"],
    );

    // With the identity: downloaded, decrypted, verified, restored with the marker.
    std::fs::set_permissions(&identity, std::fs::Permissions::from_mode(0o600)).unwrap();
    ok(restore());
    let back = ok(fx
        .nox(&cfg)
        .args(["exec", &copy, "--", "cat", "/root/marker.bin"])
        .output()
        .unwrap())
    .stdout;
    assert!(back == marker, "the restored marker differs");
    // The local store holds it in clear again, with the manifest in clear.
    let m: Value =
        serde_json::from_slice(&std::fs::read(local.join("manifest.json")).unwrap()).unwrap();
    assert!(m.get("encryption").is_none(), "{m}");
    assert!(windows.iter().any(|w| file_contains(&tarball, w)));
}

#[test]
fn s3_uploads_survive_a_server_that_cuts_the_connection() {
    if !live("s3_uploads_survive_a_server_that_cuts_the_connection") {
        return;
    }
    use nox_tests::proxy::{Cut, CuttingProxy};
    let image = TestImage::get();
    let fx = Fixture::new("backup-s3-cut");
    let server = nox_tests::s3::S3Server::start("nox-cut");
    // Small requests (the access check, listings, manifests) pass; the first 8 MiB part of
    // the rootfs does not.
    let once = CuttingProxy::start(server.addr(), Cut::Once, 1 << 20);
    let cfg = s3_config_with(&fx, &image, &server, &once.endpoint(), "");
    let name = fx.unique_name("ct");
    fx.create_container(&cfg, &name);
    exec(&fx, &cfg, &name, "echo through-the-cut > /root/marker");

    // Cut once: the part is sent again and the upload completes.
    let out = ok(fx
        .nox(&cfg)
        .args(["backup", &name, "--to", "s3"])
        .output()
        .unwrap());
    assert_eq!(
        once.cuts(),
        1,
        "the proxy never cut: the test proves nothing"
    );
    assert!(
        text(&out.stderr).contains("trying again"),
        "{}",
        text(&out.stderr)
    );
    let list = backups(&fx, &cfg);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["locations"], serde_json::json!(["local", "s3"]));
    let first = list[0]["id"].as_str().unwrap().to_string();
    let contents = server.contents("it", &fx.dir.join("bucket-1"));
    assert_eq!(contents.open_uploads, 0, "{contents:?}");

    // What is in S3 verifies and restores: without the local copy, downloaded, checked
    // against the manifest's SHA-256, restored.
    let local = backup_dir(&fx).join(&name).join(&first);
    let saved = fx.dir.join("saved-backup");
    std::fs::rename(&local, &saved).unwrap();
    let copy = fx.unique_name("ct");
    fx.own_container(&copy);
    ok(fx
        .nox(&cfg)
        .args(["restore", &format!("s3:{name}/{first}"), "--name", &copy])
        .stdin(Stdio::null())
        .output()
        .unwrap());
    assert_eq!(
        exec(&fx, &cfg, &copy, "cat /root/marker"),
        "through-the-cut\n"
    );
    for f in ["rootfs.tar.zst", "manifest.json"] {
        assert!(
            std::fs::read(local.join(f)).unwrap() == std::fs::read(saved.join(f)).unwrap(),
            "{f} came back different"
        );
    }

    // A server that always cuts: the backup stays local, the upload fails in one line,
    // after bounded retries, and nothing is listed as uploaded or left open in the bucket.
    let always = CuttingProxy::start(server.addr(), Cut::Always, 1 << 20);
    let cfg = s3_config_with(&fx, &image, &server, &always.endpoint(), "");
    let started = Instant::now();
    let out = fx
        .nox(&cfg)
        .args(["backup", &name, "--to", "s3"])
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(errors[0].contains("uploading rootfs.tar.zst"), "{err}");
    assert!(always.cuts() >= 5, "{} cuts: {err}", always.cuts());
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "{:?}",
        started.elapsed()
    );
    let cfg = s3_config(&fx, &image, &server);
    let list = backups(&fx, &cfg);
    assert_eq!(list.len(), 2, "{list:?}");
    let second = list
        .iter()
        .find(|b| b["id"] != first.as_str())
        .expect("the new local backup");
    assert_eq!(
        second["locations"],
        serde_json::json!(["local"]),
        "{second}"
    );
    let contents = server.contents("it", &fx.dir.join("bucket-2"));
    assert!(
        !contents
            .keys
            .iter()
            .any(|k| k.contains(second["id"].as_str().unwrap())),
        "{contents:?}"
    );
    assert_eq!(contents.open_uploads, 0, "an aborted upload was left open");

    // The server is back: the next backup goes up whole (a container backup is always
    // full, so the one that failed stays local only).
    ok(fx
        .nox(&cfg)
        .args(["backup", &name, "--to", "s3"])
        .output()
        .unwrap());
    let list = backups(&fx, &cfg);
    assert_eq!(list.len(), 3, "{list:?}");
    assert_eq!(
        list[2]["locations"],
        serde_json::json!(["local", "s3"]),
        "{list:?}"
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn init_pid(name: &str) -> u32 {
    nox_lxc::liblxc::Container::new(name, &lxcpath())
        .unwrap()
        .init_pid()
        .expect("the container runs") as u32
}

fn set_xattr(path: &Path, key: &str, value: &[u8]) {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let k = std::ffi::CString::new(key).unwrap();
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let rc = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            k.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(
        rc,
        0,
        "setxattr {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

fn get_xattr(path: &Path, key: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let k = std::ffi::CString::new(key).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: as in set_xattr; the kernel writes at most buf.len() bytes.
    let n = unsafe { libc::lgetxattr(p.as_ptr(), k.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (n >= 0).then(|| {
        buf.truncate(n as usize);
        buf
    })
}
