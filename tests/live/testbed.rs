//! The test bed itself, proved live: the test image boots as a VM under libvirt (cloud-init
//! from a NoCloud seed, the guest agent, SSH through a 127.0.0.1 passt forward) and runs as an
//! unprivileged LXC container with systemd reaching `running`.
//!
//! These use nox's crates where they exist (domain XML, seed, guest agent, liblxc wrapper)
//! and libvirt/liblxc directly for the rest, until the backends' verbs land.

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use nox_core::cloud_init::Provisioning;
use nox_libvirt::agent::GuestAgent;
use nox_libvirt::domain::{Accel, DomainSpec, Nic};
use nox_libvirt::kvm_probe::{self, KvmVerdict};
use nox_lxc::liblxc::Container;
use nox_tests::fixture::{lxcpath, Fixture};
use nox_tests::image::TestImage;
use nox_tests::live;

/// Boot under software emulation takes about a minute here; allow for a loaded machine.
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut buf)
        .unwrap();
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn ssh_keypair(dir: &Path) -> (std::path::PathBuf, String) {
    let key = dir.join("id_ed25519");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "nox-it", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(st.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    (key, public.trim().to_string())
}

fn free_loopback_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn vm_boots_with_cloud_init_agent_and_ssh_on_loopback() {
    if !live("vm_boots_with_cloud_init_agent_and_ssh_on_loopback") {
        return;
    }
    let image = TestImage::get();
    let fx = Fixture::new("vm-boot");
    let name = fx.unique_name("vm");
    let (key, public) = ssh_keypair(&fx.dir);

    let disk = fx.dir.join("disk.qcow2");
    let st = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(&image.qcow2)
        .arg(&disk)
        .arg("4G")
        .status()
        .unwrap();
    assert!(st.success(), "qemu-img create failed");

    let mac = format!(
        "52:54:00:{}:{}:{}",
        &random_hex(1),
        &random_hex(1),
        &random_hex(1)
    );
    let seed = fx.dir.join("seed.img");
    let uuid = std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .unwrap()
        .trim()
        .to_string();
    nox_libvirt::seed::write_seed(
        &Provisioning {
            instance_id: uuid.clone(),
            hostname: name.clone(),
            user: "nox".into(),
            ssh_keys: vec![public.clone()],
            password_hash: None,
            mac: Some(mac.clone()),
            mounts: Vec::new(),
        },
        &seed,
    )
    .unwrap();

    // The domain type doctor would choose: kvm only if the probe guest ran under KVM.
    let accel = match kvm_probe::probe(&nox_core::host::SystemRunner) {
        KvmVerdict::Usable { .. } => Accel::Kvm,
        KvmVerdict::Unusable(_) => Accel::Qemu,
    };
    let ssh_port = free_loopback_port();
    let spec = DomainSpec {
        name: name.clone(),
        uuid,
        accel,
        vcpus: 1,
        memory_mib: 1024,
        disk: disk.display().to_string(),
        seed: Some(seed.display().to_string()),
        mac,
        nic: Nic::User {
            ssh_port,
            forwards: Vec::new(),
        },
        console_log: fx.dir.join("console.log").display().to_string(),
        metadata_json: fx.vm_record(),
        shares: Vec::new(),
        genid: None,
    };
    virt::error::clear_error_callback();
    let conn = virt::connect::Connect::open(Some(fx.uri())).unwrap();
    fx.own_domain(&name);
    let dom = conn
        .create_domain_xml(&spec.to_xml(), 0)
        .unwrap_or_else(|e| panic!("libvirt refused the domain: {}", e.message()));

    let agent = GuestAgent::new(&dom);
    let started = Instant::now();
    agent
        .wait_ready(BOOT_TIMEOUT, &|_| {
            Ok::<(), nox_libvirt::agent::AgentError>(())
        })
        .unwrap_or_else(|e| panic!("{e}; console log: {}", fx.dir.join("console.log").display()));
    eprintln!("guest agent answered after {:?}", started.elapsed());

    let status = agent
        .run(
            &["/usr/bin/cloud-init", "status", "--wait"],
            None,
            BOOT_TIMEOUT,
        )
        .unwrap();
    assert!(
        status.stdout_text().contains("status: done"),
        "cloud-init: {} {}",
        status.stdout_text(),
        String::from_utf8_lossy(&status.stderr)
    );
    eprintln!("cloud-init done after {:?}", started.elapsed());

    let hostname = agent
        .run(&["/usr/bin/hostname"], None, Duration::from_secs(30))
        .unwrap();
    assert_eq!(hostname.stdout_text().trim(), name);
    let keys = agent
        .run(
            &["/usr/bin/cat", "/home/nox/.ssh/authorized_keys"],
            None,
            Duration::from_secs(30),
        )
        .unwrap();
    assert_eq!(keys.code, 0);
    assert!(
        keys.stdout_text().contains(&public),
        "{}",
        keys.stdout_text()
    );

    // SSH through passt's forward on 127.0.0.1: the only network path a test may use.
    let ssh = Command::new("ssh")
        .args(["-i"])
        .arg(&key)
        .args(["-p", &ssh_port.to_string()])
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "ConnectTimeout=20",
            "-o",
            "LogLevel=ERROR",
            "nox@127.0.0.1",
            "--",
            "hostname",
        ])
        .output()
        .unwrap();
    assert!(
        ssh.status.success(),
        "ssh failed: {}",
        String::from_utf8_lossy(&ssh.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&ssh.stdout).trim(), name);
}

#[test]
fn rootfs_runs_as_unprivileged_container_with_systemd_running() {
    if !live("rootfs_runs_as_unprivileged_container_with_systemd_running") {
        return;
    }
    let image = TestImage::get();
    let fx = Fixture::new("lxc-boot");
    let name = fx.unique_name("ct");
    fx.own_container(&name);

    let uid = nox_lxc::subid::root_range("/etc/subuid").expect("root needs a subuid range");
    let gid = nox_lxc::subid::root_range("/etc/subgid").expect("root needs a subgid range");
    let c = Container::new(&name, &lxcpath()).unwrap();
    // The idmap is set before create, so the template unpacks the rootfs already shifted.
    c.set_config_item("lxc.idmap", &format!("u 0 {} 65536", uid.start))
        .unwrap();
    c.set_config_item("lxc.idmap", &format!("g 0 {} 65536", gid.start))
        .unwrap();
    c.set_config_item("lxc.net.0.type", "veth").unwrap();
    c.set_config_item("lxc.net.0.link", "lxcbr0").unwrap();
    c.set_config_item("lxc.net.0.flags", "up").unwrap();
    let meta = image.meta.display().to_string();
    let rootfs = image.rootfs.display().to_string();
    c.create("local", &["--metadata", &meta, "--fstree", &rootfs])
        .unwrap();
    c.save_config().unwrap();

    let started = Instant::now();
    c.start().unwrap();
    assert!(c.wait("RUNNING", 30), "container never reached RUNNING");

    // systemctl can only answer once systemd has its socket: watch for it from the host.
    let pid = c.init_pid().expect("init pid");
    let socket = format!("/proc/{pid}/root/run/systemd/private");
    while !Path::new(&socket).exists() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "systemd never opened its socket"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = c
        .attach_run(&["systemctl", "is-system-running", "--wait"])
        .unwrap();
    let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if state != "running" {
        let failed = c
            .attach_run(&["systemctl", "--failed", "--no-legend"])
            .unwrap();
        panic!(
            "systemd is {state:?} ({}), failed units: {}",
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&failed.stdout)
        );
    }
    eprintln!("systemd running {:?} after start", started.elapsed());

    // Unprivileged: the container's root is the first subordinate uid on the host.
    let uid_map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap();
    let fields: Vec<&str> = uid_map.split_whitespace().collect();
    assert_eq!(fields, ["0", &uid.start.to_string(), "65536"], "{uid_map}");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let host_uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next())
        .unwrap();
    assert_eq!(host_uid, uid.start.to_string());
}
