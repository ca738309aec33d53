//! The `POST /1.0/instances` body for a nox instance, from its spec: what nox decides, in
//! Incus's terms. Pinned by golden files (`golden/nox-*.json`), so a reviewer sees exactly
//! what a change does to a remote's instances.
//!
//! - Unprivileged containers (Incus's default) get `/dev/net/tun` as a `unix-char` device.
//!   Incus bind-mounts the host's /dev/net/tun into every container anyway, so `--no-tun`
//!   denies the device (char 10:200) in the device cgroup through `raw.lxc`, with the key of
//!   each cgroup version (LXC ignores the one the host does not have).
//! - `--privileged` maps to `security.privileged`, `raw.lxc` keeping every capability (the
//!   `lxc.cap.drop =` override the seed analysis used), a NIC bridged to the remote's
//!   `privileged_network`, and the TUN device.
//! - CPUs and memory are `limits.*`; a VM's disk is its root device's `size`.
//! - cloud-init gets the user, keys and hostname through `cloud-init.user-data` (images
//!   without cloud-init are provisioned by nox after the first start, see ready.rs).
//! - nox's record is the spec itself, in `user.nox.spec`.

use std::collections::BTreeMap;

use nox_core::config::RemoteConfig;
use nox_core::instance::{InstanceSpec, NetworkSpec};
use nox_core::{BackendKind, Error, Result};

use super::{network_ok, RECORD_KEY};
use crate::api::{Device, InstanceSource, InstanceType, InstancesPost};

/// What `create` refuses before asking Incus anything.
pub fn check(spec: &InstanceSpec, remote: &str, cfg: &RemoteConfig) -> Result<()> {
    if !network_ok(&spec.network) {
        return Err(Error::Usage(format!(
            "--network {} applies to VMs on this host; instances on remote {remote} join a network of the remote: use default or bridge:NAME",
            spec.network
        )));
    }
    if spec.privileged
        && cfg.privileged_network.is_none()
        && !matches!(spec.network, NetworkSpec::Bridge(_))
    {
        return Err(Error::Refused {
            message: format!(
                "remote {remote} has no network for privileged containers ([remotes.{remote}] privileged_network)"
            ),
            hint: format!(
                "set privileged_network in [remotes.{remote}] to a bridge of the remote, or leave out --privileged"
            ),
        });
    }
    Ok(())
}

/// nox's record: the spec as JSON.
pub fn record(spec: &InstanceSpec) -> Result<String> {
    serde_json::to_string(spec).map_err(|e| Error::encode("recording the spec", e))
}

/// The root disk device on the remote's pool, with `size` when given.
pub fn root_disk(cfg: &RemoteConfig, size: Option<u64>) -> Device {
    let mut d = Device::from([
        ("type".to_string(), "disk".to_string()),
        ("path".to_string(), "/".to_string()),
        ("pool".to_string(), cfg.storage_pool.clone()),
    ]);
    if let Some(bytes) = size {
        d.insert("size".into(), format!("{}MiB", bytes >> 20));
    }
    d
}

/// The request that creates `spec`'s instance from `source`.
pub fn instance(
    spec: &InstanceSpec,
    cfg: &RemoteConfig,
    source: InstanceSource,
    start: bool,
    created_at: &str,
) -> Result<InstancesPost> {
    let kind = match spec.backend {
        BackendKind::Lxc => InstanceType::Container,
        BackendKind::Vm => InstanceType::VirtualMachine,
    };
    let mut req = InstancesPost::new(spec.name.as_str(), kind, source);
    req.profiles = Some(vec!["default".into()]);
    req.start = start;
    req.description = format!("nox {} instance, created {created_at}", spec.backend);
    let mut config = BTreeMap::from([
        ("limits.cpu".to_string(), spec.cpus.to_string()),
        (
            "limits.memory".to_string(),
            format!("{}MiB", spec.memory_bytes >> 20),
        ),
        ("boot.autostart".to_string(), spec.autostart.to_string()),
        ("user.nox.created_at".to_string(), created_at.to_string()),
        (RECORD_KEY.to_string(), record(spec)?),
        (
            "cloud-init.user-data".to_string(),
            nox_core::cloud_init::Provisioning {
                instance_id: String::new(),
                hostname: spec.name.to_string(),
                user: spec.user.clone(),
                ssh_keys: spec.ssh_keys.clone(),
                password_hash: None,
                mac: None,
                mounts: Vec::new(),
            }
            .user_data(),
        ),
    ]);
    let mut devices: BTreeMap<String, Device> = BTreeMap::new();
    let tun = || {
        Device::from([
            ("type".to_string(), "unix-char".to_string()),
            ("path".to_string(), "/dev/net/tun".to_string()),
        ])
    };
    if spec.nesting {
        config.insert("security.nesting".into(), "true".into());
    }
    if spec.backend == BackendKind::Lxc {
        if spec.privileged {
            config.insert("security.privileged".into(), "true".into());
            // Keep every capability: root in the container is host root anyway, and this is
            // what the seed analysis's privileged container had.
            config.insert("raw.lxc".into(), "lxc.cap.drop =\n".into());
            devices.insert("tun".into(), tun());
        } else if spec.tun {
            devices.insert("tun".into(), tun());
        } else {
            config.insert(
                "raw.lxc".into(),
                "lxc.cgroup.devices.deny = c 10:200 rwm\nlxc.cgroup2.devices.deny = c 10:200 rwm\n"
                    .into(),
            );
        }
    } else {
        devices.insert("root".into(), root_disk(cfg, Some(spec.disk_bytes)));
    }
    // As for local containers: a bridge given is the bridge; a privileged container without
    // one joins the remote's privileged network.
    let bridge = match (&spec.network, spec.privileged) {
        (NetworkSpec::Bridge(b), _) => Some(b.clone()),
        (_, true) => cfg.privileged_network.clone(),
        _ => None,
    };
    if let Some(parent) = bridge {
        devices.insert(
            "eth0".into(),
            Device::from([
                ("type".to_string(), "nic".to_string()),
                ("name".to_string(), "eth0".to_string()),
                ("nictype".to_string(), "bridged".to_string()),
                ("parent".to_string(), parent),
            ]),
        );
    }
    req.config = config;
    req.devices = devices;
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RemoteConfig {
        RemoteConfig {
            driver: nox_core::config::RemoteDriver::Incus,
            url: "https://192.0.2.10:8443".into(),
            project: "default".into(),
            client_cert: None,
            client_key: None,
            fingerprint: None,
            privileged_network: Some("lanbr0".into()),
            storage_pool: "default".into(),
        }
    }

    fn spec(backend: BackendKind) -> InstanceSpec {
        InstanceSpec {
            name: "web".parse().unwrap(),
            backend,
            image: "debian-12".into(),
            cpus: 2,
            memory_bytes: 2 << 30,
            disk_bytes: 20 << 30,
            network: NetworkSpec::Default,
            autostart: true,
            user: "nox".into(),
            ssh_keys: vec!["ssh-ed25519 AAAA nox".into()],
            privileged: false,
            nesting: false,
            tun: backend == BackendKind::Lxc,
            mounts: Vec::new(),
        }
    }

    fn golden(name: &str, req: &InstancesPost) {
        let text = serde_json::to_string_pretty(req).unwrap() + "\n";
        crate::golden::assert_golden(name, &text);
    }

    const AT: &str = "2026-11-26T10:00:00Z";

    #[test]
    fn golden_request_bodies_for_each_kind() {
        let image = || InstanceSource::image_alias("nox-sha256-0123");
        golden(
            "nox-container-default.json",
            &instance(&spec(BackendKind::Lxc), &cfg(), image(), true, AT).unwrap(),
        );
        let mut no_tun = spec(BackendKind::Lxc);
        no_tun.tun = false;
        no_tun.nesting = true;
        golden(
            "nox-container-no-tun-nesting.json",
            &instance(&no_tun, &cfg(), image(), true, AT).unwrap(),
        );
        let mut privileged = spec(BackendKind::Lxc);
        privileged.privileged = true;
        privileged.tun = false;
        golden(
            "nox-container-privileged.json",
            &instance(&privileged, &cfg(), image(), true, AT).unwrap(),
        );
        let mut bridged = spec(BackendKind::Lxc);
        bridged.network = NetworkSpec::Bridge("br1".into());
        golden(
            "nox-container-bridge.json",
            &instance(&bridged, &cfg(), image(), false, AT).unwrap(),
        );
        golden(
            "nox-vm.json",
            &instance(&spec(BackendKind::Vm), &cfg(), image(), true, AT).unwrap(),
        );
        golden(
            "nox-container-images-server.json",
            &instance(
                &spec(BackendKind::Lxc),
                &cfg(),
                InstanceSource::simplestreams(
                    "https://images.linuxcontainers.org",
                    "debian/bookworm",
                ),
                true,
                AT,
            )
            .unwrap(),
        );
    }

    #[test]
    fn what_a_remote_cannot_take_is_refused_first() {
        let mut s = spec(BackendKind::Lxc);
        s.network = NetworkSpec::User;
        assert!(check(&s, "cluster", &cfg()).unwrap_err().is_bad_input());
        s.network = NetworkSpec::Default;
        s.privileged = true;
        let mut c = cfg();
        c.privileged_network = None;
        let e = check(&s, "cluster", &c).unwrap_err();
        assert!(e.to_string().contains("privileged_network"), "{e}");
        assert!(check(&s, "cluster", &cfg()).is_ok());
    }
}
