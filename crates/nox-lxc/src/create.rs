//! `create` for containers: base image, overlay delta, seed, config, in that order, removed
//! whole on any failure or Ctrl-C.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nox_core::backend::CreateOptions;
use nox_core::cloud_init::Provisioning;
use nox_core::host::HostFacts;
use nox_core::instance::{Instance, InstanceSpec, NetworkSpec};
use nox_core::{interrupt, Error, Progress};

use crate::cgroup::CgroupLayout;
use crate::config::{ContainerConfig, Limits, Mode};
use crate::images::Mapping;
use crate::liblxc::{Container, LOG_FILE};
use crate::record::CtRecord;
use crate::{ready, subid, LxcBackend};

/// Removes the container directory (delta, config, record) unless committed.
struct Undo {
    dir: PathBuf,
    name: String,
    lxcpath: PathBuf,
    committed: bool,
}

impl Drop for Undo {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        if let Ok(c) = Container::new(&self.name, &self.lxcpath) {
            if c.is_running() {
                let _ = c.stop();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What the checks before create decide: refused here, nothing has been made yet. Returns
/// the mode and the bridge the container joins.
pub fn preflight(b: &LxcBackend, spec: &InstanceSpec) -> Result<(Mode, String), Error> {
    let bridge = match &spec.network {
        NetworkSpec::Bridge(name) => {
            if !b.host.facts.is_bridge(name) {
                return Err(Error::Refused {
                    message: format!("bridge {name} does not exist on this host"),
                    hint: "create the bridge first, or use --network default".into(),
                });
            }
            Some(name.clone())
        }
        NetworkSpec::Default => None,
        other => {
            return Err(Error::Usage(format!(
                "--network {other} applies to VMs; containers join a bridge: use default or bridge:NAME"
            )))
        }
    };
    if spec.privileged {
        let bridge = bridge.unwrap_or_else(|| b.config.lxc.privileged_bridge.clone());
        if !b.host.facts.is_bridge(&bridge) {
            // The host lacks what nox's config names, as for `[lxc] bridge` below: a host
            // failure (exit 1). Only a bridge named by --network is the user's mistake.
            return Err(Error::failed(
                format!("the bridge for privileged containers, {bridge} ([lxc] privileged_bridge), does not exist"),
                "create it, or set [lxc] privileged_bridge to an existing bridge",
            ));
        }
        return Ok((Mode::Privileged, bridge));
    }
    let bridge = bridge.unwrap_or_else(|| b.config.lxc.bridge.clone());
    if !b.host.facts.is_bridge(&bridge) {
        return Err(Error::failed(
            format!("bridge {bridge} ([lxc] bridge) does not exist"),
            "start it (`/usr/libexec/lxc/lxc-net start`, or `cargo xtask setup`), or set [lxc] bridge",
        ));
    }
    let (uid, gid) = subid::root_ranges()?;
    Ok((
        Mode::Unprivileged {
            uid_start: uid.start,
            gid_start: gid.start,
            tun: spec.tun,
        },
        bridge,
    ))
}

pub fn create(
    b: &LxcBackend,
    spec: &InstanceSpec,
    options: CreateOptions,
    progress: &dyn Progress,
) -> Result<Instance, Error> {
    let name = spec.name.as_str();
    let lxcpath = &b.config.lxc.lxcpath;
    let dir = lxcpath.join(name);
    if dir.join("config").exists() {
        return Err(Error::AlreadyExists {
            name: name.into(),
            backend: "lxc".into(),
        });
    }
    let (mode, bridge) = preflight(b, spec)?;
    let mapping = match mode {
        Mode::Unprivileged {
            uid_start,
            gid_start,
            ..
        } => Mapping::Shifted {
            uid: uid_start,
            gid: gid_start,
        },
        Mode::Privileged => Mapping::Host,
    };
    let base = b.base(&spec.image, mapping, progress)?;
    let layout = CgroupLayout::detect().map_err(|e| Error::io("reading /sys/fs/cgroup", e))?;
    let limits = limits(layout, spec, progress);
    interrupt::check()?;

    let mut undo = Undo {
        dir: dir.clone(),
        name: name.into(),
        lxcpath: lxcpath.clone(),
        committed: false,
    };
    // The overlay's upper and work directories belong to the container's root: LXC mounts
    // the overlay as that user.
    let owner = match mapping {
        Mapping::Shifted { uid, gid } => Some((uid, gid)),
        Mapping::Host => None,
    };
    let delta = dir.join("delta");
    for d in [&delta, &dir.join("work")] {
        std::fs::create_dir_all(d)
            .map_err(|e| Error::io(format!("creating {}", d.display()), e))?;
        chown(d, owner)?;
    }

    nox_core::fault::point("lxc.create.overlay");
    let mac = random_mac(&*b.host.facts)?;
    let cloud_init = base.join("usr/bin/cloud-init").exists();
    if !cloud_init {
        // systemd sets the hostname from /etc/hostname at boot; cloud-init would otherwise.
        write_file(
            &delta,
            &["etc"],
            "hostname",
            &format!("{name}\n"),
            0o644,
            owner,
        )?;
    }
    if cloud_init {
        write_seed(
            &delta,
            owner,
            &Provisioning {
                instance_id: instance_id(&*b.host.facts)?,
                hostname: name.into(),
                user: spec.user.clone(),
                ssh_keys: spec.ssh_keys.clone(),
                password_hash: None,
                mac: Some(mac.clone()),
                mounts: Vec::new(),
            },
        )?;
    }
    let docker_volume = if spec.nesting {
        Some(make_docker_volume(b, &spec.name, owner, progress)?)
    } else {
        None
    };
    let config = ContainerConfig {
        name: name.into(),
        rootfs: format!("overlay:{}:{}", base.display(), delta.display()),
        mode: mode.clone(),
        bridge,
        mac: mac.clone(),
        limits,
        autostart: spec.autostart,
        nesting: spec.nesting,
        docker_volume,
        layout,
        log_file: dir.join(LOG_FILE),
        mounts: spec.mounts.clone(),
    };
    // Images with cloud-init provision themselves at first boot; the others are provisioned
    // by nox after their first start (now, or at `nox start` after --no-start).
    let mut record = CtRecord {
        version: 1,
        spec: spec.clone(),
        tun: matches!(mode, Mode::Unprivileged { tun: true, .. }),
        mac,
        cloud_init,
        provisioned: cloud_init,
        created_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        forwards: Vec::new(),
    };
    // The record goes before the config: a config without nox's record is someone else's
    // container, which recovery after a killed create or restore never touches.
    record
        .write(&dir)
        .map_err(|e| Error::io("writing nox's record", e))?;
    nox_core::fault::point("lxc.create.record");
    std::fs::write(dir.join("config"), config.render())
        .map_err(|e| Error::io("writing the container config", e))?;
    nox_core::fault::point("lxc.create.config");
    interrupt::check()?;

    if options.start {
        let c = Container::new(name, lxcpath).map_err(Error::from)?;
        progress.done();
        c.start().map_err(Error::from)?;
        nox_core::fault::point("lxc.create.started");
        if options.wait {
            ready::wait(&c, options.timeout, cloud_init, progress)?;
        }
        if !cloud_init {
            ready::provision_directly(&c, spec)?;
            record.provisioned = true;
            record
                .write(&dir)
                .map_err(|e| Error::io("writing nox's record", e))?;
        }
    }
    undo.committed = true;
    crate::list::status(b, &spec.name)
}

/// The container's Docker volume (docker_volume.rs), made and owned by its root; warns when
/// the host's filesystem would still leave Docker on vfs.
pub(crate) fn make_docker_volume(
    b: &LxcBackend,
    name: &nox_core::InstanceName,
    owner: Option<(u32, u32)>,
    progress: &dyn Progress,
) -> Result<PathBuf, Error> {
    let volume = crate::docker_volume::host_path(&b.config.lxc.lxcpath, name);
    crate::docker_volume::create(&volume, owner)?;
    if let Some(why) = crate::docker_volume::unsuitable_host_fs(&volume) {
        progress.warn(&why);
    }
    Ok(volume)
}

/// CPU and memory limits with the keys this host has; a missing controller is skipped with
/// a warning (some ARM boards have no memory controller).
pub(crate) fn limits(layout: CgroupLayout, spec: &InstanceSpec, progress: &dyn Progress) -> Limits {
    let has = |controller: &str| match layout {
        CgroupLayout::V2 => std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
            .map(|c| c.split_whitespace().any(|x| x == controller))
            .unwrap_or(false),
        CgroupLayout::V1 { .. } => Path::new("/sys/fs/cgroup").join(controller).is_dir(),
    };
    let mut l = Limits {
        cpus: Some(spec.cpus),
        memory_bytes: Some(spec.memory_bytes),
    };
    if !has("cpu") {
        progress
            .warn("this host has no cpu cgroup controller: the container's CPUs are not limited");
        l.cpus = None;
    }
    if !has("memory") {
        progress.warn(
            "this host has no memory cgroup controller: the container's memory is not limited",
        );
        l.memory_bytes = None;
    }
    l
}

pub(crate) fn chown(p: &Path, owner: Option<(u32, u32)>) -> Result<(), Error> {
    if let Some((u, g)) = owner {
        nix::unistd::chown(p, Some(u.into()), Some(g.into()))
            .map_err(|e| Error::io(format!("chowning {}", p.display()), e.into()))?;
    }
    Ok(())
}

/// Writes `dirs/name` into the container's delta (its own layer over the shared base), with
/// directories 0755 and the file owned by the container's root.
pub(crate) fn write_file(
    delta: &Path,
    dirs: &[&str],
    name: &str,
    text: &str,
    mode: u32,
    owner: Option<(u32, u32)>,
) -> Result<(), Error> {
    // `delta` may be a restored root filesystem, whose symlinks its old root chose: every
    // call below follows links as host root, so none may be on the way (`/etc -> /`).
    let refuse_link = |p: &Path| -> Result<(), Error> {
        match std::fs::symlink_metadata(p) {
            Ok(m) if m.file_type().is_symlink() => Err(Error::failed(
                format!("refusing to write through the symlink {}", p.display()),
                "the container's filesystem points outside itself there; fix or remove that link inside it",
            )),
            _ => Ok(()),
        }
    };
    let mut dir = delta.to_path_buf();
    for part in dirs {
        dir.push(part);
        refuse_link(&dir)?;
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755));
        chown(&dir, owner)?;
    }
    let f = dir.join(name);
    // A link in the file's own place is replaced by the file, as writing it inside would.
    if std::fs::symlink_metadata(&f).is_ok_and(|m| m.file_type().is_symlink()) {
        std::fs::remove_file(&f).map_err(|e| Error::io(format!("removing {}", f.display()), e))?;
    }
    std::fs::write(&f, text).map_err(|e| Error::io(format!("writing {}", f.display()), e))?;
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io(format!("setting the mode of {}", f.display()), e))?;
    chown(&f, owner)
}

/// The NoCloud seed directory cloud-init reads, in the container's delta. Files are 0600: a
/// password hash may be among them.
pub(crate) fn write_seed(
    delta: &Path,
    owner: Option<(u32, u32)>,
    p: &Provisioning,
) -> Result<(), Error> {
    let dirs = ["var", "lib", "cloud", "seed", "nocloud"];
    write_file(delta, &dirs, "user-data", &p.user_data(), 0o600, owner)?;
    write_file(delta, &dirs, "meta-data", &p.meta_data(), 0o600, owner)?;
    if let Some(net) = p.network_config() {
        write_file(delta, &dirs, "network-config", &net, 0o600, owner)?;
    }
    Ok(())
}

/// A MAC in the 00:16:3e prefix LXC uses.
pub(crate) fn random_mac(host: &dyn HostFacts) -> Result<String, Error> {
    host.random_mac([0x00, 0x16, 0x3e])
}

/// A new cloud-init instance id: a new one makes cloud-init treat the guest as a new machine.
pub(crate) fn instance_id(host: &dyn HostFacts) -> Result<String, Error> {
    host.random_uuid()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use nox_core::host::fake::{FakeHost, FakeRunner};
    use nox_core::host::{Host, Interface, InterfaceKind};
    use nox_core::instance::{BackendKind, InstanceSpec, NetworkSpec};

    use super::*;

    fn backend_on(bridges: &[&str]) -> LxcBackend {
        let interfaces = bridges
            .iter()
            .map(|name| Interface {
                name: (*name).into(),
                kind: InterfaceKind::Bridge,
                mac: None,
            })
            .collect();
        let host = Host {
            facts: Arc::new(FakeHost::with_interfaces(interfaces)),
            runner: Arc::new(FakeRunner::default()),
            builder: Arc::new(nox_core::image_build::NoBuilder),
        };
        LxcBackend::new(nox_core::Config::default(), host)
    }

    fn spec(network: NetworkSpec, privileged: bool) -> InstanceSpec {
        InstanceSpec {
            name: "web".parse().unwrap(),
            backend: BackendKind::Lxc,
            image: "debian-12".into(),
            cpus: 1,
            memory_bytes: 1 << 30,
            disk_bytes: 10 << 30,
            network,
            autostart: true,
            user: "nox".into(),
            ssh_keys: vec![],
            privileged,
            nesting: false,
            tun: !privileged,
            mounts: Vec::new(),
        }
    }

    /// The exit-code rule (docs/cli.md): a bridge the user named with --network is bad input
    /// (2); a bridge nox's config expects on the host, missing, is a host failure (1), the
    /// same for `[lxc] bridge` and `[lxc] privileged_bridge`.
    #[test]
    fn a_missing_bridge_is_bad_input_only_when_the_user_named_it() {
        let none = backend_on(&[]);
        let named = NetworkSpec::Bridge("br7".into());
        for privileged in [false, true] {
            let e = preflight(&none, &spec(named.clone(), privileged)).unwrap_err();
            assert!(e.is_bad_input(), "{e}");
            assert!(e.to_string().contains("br7"), "{e}");
        }
        let e = preflight(&none, &spec(NetworkSpec::Default, false)).unwrap_err();
        assert!(!e.is_bad_input(), "{e}");
        assert!(e.to_string().contains("lxcbr0"), "{e}");
        let e = preflight(&none, &spec(NetworkSpec::Default, true)).unwrap_err();
        assert!(!e.is_bad_input(), "{e}");
        assert!(e.to_string().contains("privileged_bridge"), "{e}");

        let both = backend_on(&["lxcbr0", "br0"]);
        let (mode, bridge) = preflight(&both, &spec(NetworkSpec::Default, true)).unwrap();
        assert!(matches!(mode, Mode::Privileged));
        assert_eq!(bridge, "br0");
    }
}
