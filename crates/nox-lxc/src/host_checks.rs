//! What the LXC backend needs of the host, checked live for `nox doctor`.

use std::os::unix::fs::FileTypeExt;

use nox_core::config::LxcConfig;
use nox_core::host::HostFacts;
use nox_core::{BackendKind, Check};

use crate::cgroup::CgroupLayout;
use crate::{liblxc, subid};

const LXC: Option<BackendKind> = Some(BackendKind::Lxc);

pub fn run(config: &LxcConfig, host: &dyn HostFacts) -> Vec<Check> {
    vec![
        Check::pass("liblxc", LXC, format!("liblxc {}", liblxc::version())),
        bridge(host, &config.bridge),
        privileged_bridge(host, &config.privileged_bridge),
        subids(),
        cgroup(),
        tun(config.tun),
    ]
}

fn bridge(host: &dyn HostFacts, name: &str) -> Check {
    if host.is_bridge(name) {
        Check::pass(
            "bridge",
            LXC,
            format!("bridge {name} exists ([lxc] bridge)"),
        )
    } else {
        Check::fail(
            "bridge",
            LXC,
            format!("bridge {name} does not exist ([lxc] bridge)"),
            "start LXC's NAT bridge (`/usr/libexec/lxc/lxc-net start`, or `cargo xtask setup`), or set [lxc] bridge",
        )
    }
}

fn privileged_bridge(host: &dyn HostFacts, name: &str) -> Check {
    if host.is_bridge(name) {
        Check::pass(
            "privileged-bridge",
            LXC,
            format!("bridge {name} exists (for --privileged)"),
        )
    } else {
        // Only privileged containers need it, so its absence limits nox but doesn't break it.
        Check::warn(
            "privileged-bridge",
            LXC,
            format!("bridge {name} does not exist: --privileged containers cannot be created"),
            "create the bridge, or point [lxc] privileged_bridge at an existing one",
        )
    }
}

fn subids() -> Check {
    let (uid, gid) = (
        subid::root_range("/etc/subuid"),
        subid::root_range("/etc/subgid"),
    );
    match (uid, gid) {
        (Some(u), Some(g)) => Check::pass(
            "subids",
            LXC,
            format!(
                "root has subordinate ids: uids {}+{}, gids {}+{}",
                u.start, u.count, g.start, g.count
            ),
        ),
        _ => Check::fail(
            "subids",
            LXC,
            format!(
                "root has no range of {} ids in /etc/subuid and /etc/subgid: unprivileged containers cannot start",
                subid::NEEDED
            ),
            "add `root:100000:65536` to both /etc/subuid and /etc/subgid",
        ),
    }
}

fn cgroup() -> Check {
    match CgroupLayout::detect() {
        Ok(layout) => match layout.devices_allow_key() {
            Some(key) => Check::pass(
                "cgroup",
                LXC,
                format!("{}: device rules use {key}", layout.describe()),
            ),
            None => Check::fail(
                "cgroup",
                LXC,
                format!("{} without the devices controller: containers cannot be given /dev/net/tun safely", layout.describe()),
                "mount the v1 devices controller at /sys/fs/cgroup/devices, or boot with cgroup v2",
            ),
        },
        Err(e) => Check::fail(
            "cgroup",
            LXC,
            format!("cannot read /sys/fs/cgroup: {e}"),
            "mount cgroups at /sys/fs/cgroup",
        ),
    }
}

fn tun(wanted: bool) -> Check {
    let ok = std::fs::metadata("/dev/net/tun")
        .map(|m| m.file_type().is_char_device())
        .unwrap_or(false);
    match (ok, wanted) {
        (true, _) => Check::pass("tun", LXC, "/dev/net/tun present (passed into containers)"),
        (false, true) => Check::fail(
            "tun",
            LXC,
            "/dev/net/tun is missing but [lxc] tun = true",
            "load the tun module (`modprobe tun`), or set [lxc] tun = false",
        ),
        (false, false) => Check::warn(
            "tun",
            LXC,
            "/dev/net/tun is missing ([lxc] tun = false, so containers don't need it)",
            "load the tun module (`modprobe tun`) to offer TUN to containers",
        ),
    }
}
