//! Which cgroup layout the host has, and so which LXC keys take effect on it.
//!
//! On a pure cgroup v2 host, device rules go under `lxc.cgroup2.devices.allow`. On a v1 or
//! hybrid host (v1 controllers plus a v2 hierarchy at `/sys/fs/cgroup/unified`) the devices
//! controller is v1, and only `lxc.cgroup.devices.allow` takes effect: writing the v2 key
//! there is silently useless, which is how TUN "doesn't work" in containers.

use std::path::Path;

/// statfs magic of a cgroup2 filesystem.
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupLayout {
    /// Only the unified hierarchy.
    V2,
    /// v1 controllers (possibly beside a v2 hierarchy); `devices` says whether the v1 devices
    /// controller is mounted.
    V1 { devices: bool },
}

impl CgroupLayout {
    /// Reads the layout of `/sys/fs/cgroup`.
    pub fn detect() -> std::io::Result<Self> {
        Self::detect_at(Path::new("/sys/fs/cgroup"))
    }

    pub fn detect_at(root: &Path) -> std::io::Result<Self> {
        let fs = nix::sys::statfs::statfs(root).map_err(std::io::Error::from)?;
        let is_v2 = fs.filesystem_type().0 as i64 == CGROUP2_SUPER_MAGIC;
        Ok(Self::from_facts(is_v2, root.join("devices").is_dir()))
    }

    pub fn from_facts(root_is_cgroup2: bool, v1_devices_dir: bool) -> Self {
        if root_is_cgroup2 {
            CgroupLayout::V2
        } else {
            CgroupLayout::V1 {
                devices: v1_devices_dir,
            }
        }
    }

    /// The LXC key that allows a device on this host, or `None` if no devices controller can
    /// enforce one.
    pub fn devices_allow_key(self) -> Option<&'static str> {
        match self {
            CgroupLayout::V2 => Some("lxc.cgroup2.devices.allow"),
            CgroupLayout::V1 { devices: true } => Some("lxc.cgroup.devices.allow"),
            CgroupLayout::V1 { devices: false } => None,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            CgroupLayout::V2 => "cgroup v2",
            CgroupLayout::V1 { .. } => "cgroup v1",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_key_follows_the_layout() {
        let cases = [
            ((true, false), Some("lxc.cgroup2.devices.allow")),
            ((true, true), Some("lxc.cgroup2.devices.allow")),
            ((false, true), Some("lxc.cgroup.devices.allow")),
            ((false, false), None),
        ];
        for ((v2, devices), key) in cases {
            assert_eq!(
                CgroupLayout::from_facts(v2, devices).devices_allow_key(),
                key,
                "v2={v2} devices={devices}"
            );
        }
    }
}
