//! A container's LXC config, rendered from typed structs and pinned by golden files (one per
//! mode on a v1 and a v2 host), so a reviewer sees exactly what a change does to a container.

use std::path::PathBuf;

use nox_core::mounts::Mount;

use crate::cgroup::CgroupLayout;

/// How privileged the container is, and so what it may touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Root in the container is `uid_start` on the host (root's subordinate range).
    Unprivileged {
        uid_start: u32,
        gid_start: u32,
        /// Pass /dev/net/tun through (the default).
        tun: bool,
    },
    /// Root in the container is root on the host. Only after explicit confirmation.
    Privileged,
}

/// Resource limits; `None` where the host lacks the controller (nox warns and skips).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub cpus: Option<u32>,
    pub memory_bytes: Option<u64>,
}

/// Everything that decides a nox container's config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerConfig {
    pub name: String,
    /// `overlay:BASE:DELTA`, or a directory.
    pub rootfs: String,
    pub mode: Mode,
    pub bridge: String,
    pub mac: String,
    pub limits: Limits,
    pub autostart: bool,
    /// Allow containers inside (Docker).
    pub nesting: bool,
    /// With nesting: the host directory bound at `/var/lib/docker` (docker_volume.rs).
    pub docker_volume: Option<PathBuf>,
    pub layout: CgroupLayout,
    pub log_file: PathBuf,
    /// Shared folders, bind-mounted from the host (see [`crate::mounts`]).
    pub mounts: Vec<Mount>,
}

/// `c 10:200 rwm`: the TUN character device, read, write and mknod.
const TUN_DEVICE: &str = "c 10:200 rwm";

/// One `key = value` line; an ordered list keeps the file stable for golden tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: &'static str,
    pub value: String,
    /// Why the line is there, rendered as a comment above it.
    pub why: Option<&'static str>,
}

fn e(key: &'static str, value: impl Into<String>) -> Entry {
    Entry {
        key,
        value: value.into(),
        why: None,
    }
}

fn why(key: &'static str, value: impl Into<String>, why: &'static str) -> Entry {
    Entry {
        key,
        value: value.into(),
        why: Some(why),
    }
}

impl ContainerConfig {
    pub fn entries(&self) -> Vec<Entry> {
        let mut out = vec![
            e("lxc.include", "/usr/share/lxc/config/common.conf"),
            e("lxc.arch", arch()),
            e("lxc.uts.name", &self.name),
            e("lxc.rootfs.path", &self.rootfs),
            e("lxc.net.0.type", "veth"),
            e("lxc.net.0.link", &self.bridge),
            e("lxc.net.0.flags", "up"),
            e("lxc.net.0.hwaddr", &self.mac),
            e("lxc.start.auto", if self.autostart { "1" } else { "0" }),
            e("lxc.log.file", self.log_file.display().to_string()),
            e("lxc.log.level", "WARN"),
        ];
        let devices = self.layout.devices_allow_key();
        match &self.mode {
            Mode::Unprivileged {
                uid_start,
                gid_start,
                tun,
            } => {
                out.push(e("lxc.include", "/usr/share/lxc/config/userns.conf"));
                out.push(why(
                    "lxc.idmap",
                    format!("u 0 {uid_start} 65536"),
                    "container root is an unprivileged host uid",
                ));
                out.push(e("lxc.idmap", format!("g 0 {gid_start} 65536")));
                if self.rootfs.starts_with("overlay:") {
                    out.push(why(
                        "lxc.rootfs.options",
                        "userxattr",
                        "the overlay is mounted in the container's user namespace, which may not set trusted.* xattrs: without user.* ones, deleting or renaming a base file fails (apt cannot install)",
                    ));
                }
                if *tun {
                    out.push(why(
                        "lxc.mount.entry",
                        "/dev/net/tun dev/net/tun none bind,create=file 0 0",
                        "TUN for Tailscale and VPNs: interfaces it creates live in the container's own network namespace",
                    ));
                    if let Some(key) = devices {
                        out.push(e(key, TUN_DEVICE));
                    }
                }
            }
            Mode::Privileged => {
                out.push(why(
                    "lxc.mount.entry",
                    "/dev/net dev/net none bind,create=dir 0 0",
                    "privileged: the host's /dev/net, as the seed analysis configured it",
                ));
                if let Some(key) = devices {
                    out.push(e(key, TUN_DEVICE));
                }
                out.push(why(
                    "lxc.cap.drop",
                    "",
                    "privileged: keep every capability (container root is host root)",
                ));
            }
        }
        if self.nesting {
            out.extend(nesting_entries());
            if let Some(v) = &self.docker_volume {
                out.push(crate::docker_volume::mount_entry(v));
            }
        }
        let privileged = self.mode == Mode::Privileged;
        out.extend(
            self.mounts
                .iter()
                .map(|m| crate::mounts::entry(m, privileged)),
        );
        let v2 = self.layout == CgroupLayout::V2;
        if let Some(cpus) = self.limits.cpus {
            // A CFS quota of N CPUs' worth of time per 100 ms period.
            if v2 {
                out.push(e(
                    "lxc.cgroup2.cpu.max",
                    format!("{} 100000", cpus as u64 * 100_000),
                ));
            } else {
                out.push(e("lxc.cgroup.cpu.cfs_period_us", "100000"));
                out.push(e(
                    "lxc.cgroup.cpu.cfs_quota_us",
                    (cpus as u64 * 100_000).to_string(),
                ));
            }
        }
        if let Some(mem) = self.limits.memory_bytes {
            out.push(if v2 {
                e("lxc.cgroup2.memory.max", mem.to_string())
            } else {
                e("lxc.cgroup.memory.limit_in_bytes", mem.to_string())
            });
        }
        out
    }

    /// The config file's text.
    pub fn render(&self) -> String {
        let mut s = String::from("# Written by nox; `nox status` and `nox delete` rely on it.\n");
        s.push_str(&render_entries(&self.entries()));
        s
    }
}

/// What a container needs to run containers itself, as LXC's own nesting.conf has it (written
/// out so the golden files show it): a profile that lets it mount, and /proc and /sys mounted
/// whole somewhere, because the kernel lets an unprivileged user mount a fresh proc or sysfs
/// (as runc does) only where one is already fully visible.
pub fn nesting_entries() -> Vec<Entry> {
    vec![
        why(
            "lxc.apparmor.profile",
            "lxc-container-default-with-nesting",
            "nesting (Docker): AppArmor, where the host has it, lets the container mount proc and sysfs",
        ),
        why(
            "lxc.mount.entry",
            "proc dev/.lxc/proc proc create=dir,optional 0 0",
            "nesting: an uncovered proc and sysfs, so runc may mount new ones",
        ),
        e(
            "lxc.mount.entry",
            "sys dev/.lxc/sys sysfs create=dir,optional 0 0",
        ),
    ]
}

/// Config lines, each after the comment that says why it is there.
pub fn render_entries(entries: &[Entry]) -> String {
    let mut s = String::new();
    for entry in entries {
        if let Some(w) = entry.why {
            s.push_str(&format!("# {w}\n"));
        }
        s.push_str(&format!("{} = {}\n", entry.key, entry.value));
    }
    s
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "x86_64",
        "aarch64" => "aarch64",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(mode: Mode, layout: CgroupLayout) -> ContainerConfig {
        ContainerConfig {
            name: "web".into(),
            rootfs: "overlay:/var/lib/nox/lxc/images/base/rootfs:/var/lib/lxc/web/delta".into(),
            bridge: if mode == Mode::Privileged {
                "br0"
            } else {
                "lxcbr0"
            }
            .into(),
            mode,
            mac: "00:16:3e:12:34:56".into(),
            limits: Limits {
                cpus: Some(2),
                memory_bytes: Some(1 << 30),
            },
            autostart: true,
            nesting: false,
            docker_volume: None,
            layout,
            log_file: "/var/lib/lxc/web/nox-lxc.log".into(),
            mounts: Vec::new(),
        }
    }

    #[test]
    fn golden_configs_for_each_mode_on_v1_and_v2_hosts() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("golden");
        let unpriv = |tun| Mode::Unprivileged {
            uid_start: 100000,
            gid_start: 100000,
            tun,
        };
        for (host, layout) in [
            ("v1", CgroupLayout::V1 { devices: true }),
            ("v2", CgroupLayout::V2),
        ] {
            for (mode_name, mode) in [
                ("default", unpriv(true)),
                ("no-tun", unpriv(false)),
                ("privileged", Mode::Privileged),
            ] {
                let text = config(mode, layout).render();
                nox_core::golden::assert_golden(
                    &dir,
                    &format!("lxc-{mode_name}-{host}.conf"),
                    &text,
                );
            }
            let mut nesting = config(unpriv(true), layout);
            nesting.nesting = true;
            nesting.docker_volume = Some("/var/lib/lxc/web/docker".into());
            nox_core::golden::assert_golden(
                &dir,
                &format!("lxc-nesting-{host}.conf"),
                &nesting.render(),
            );
        }
        // Shared folders: idmapped for an unprivileged container, plain for a privileged one.
        let shares = vec![
            "/srv/code:/home/nox/code".parse().unwrap(),
            "/srv/data:/mnt/data:ro".parse().unwrap(),
        ];
        for (mode_name, mode) in [
            ("mounts", unpriv(true)),
            ("privileged-mounts", Mode::Privileged),
        ] {
            let mut c = config(mode, CgroupLayout::V1 { devices: true });
            c.mounts = shares.clone();
            nox_core::golden::assert_golden(&dir, &format!("lxc-{mode_name}-v1.conf"), &c.render());
        }
    }

    #[test]
    fn tun_lines_follow_the_mode_and_the_host() {
        let tun_keys = |c: &ContainerConfig| -> Vec<String> {
            c.entries()
                .into_iter()
                .filter(|e| e.value.contains("10:200") || e.value.contains("dev/net"))
                .map(|e| format!("{} = {}", e.key, e.value))
                .collect()
        };
        let unpriv = |tun| Mode::Unprivileged {
            uid_start: 1,
            gid_start: 1,
            tun,
        };
        let v1 = CgroupLayout::V1 { devices: true };
        assert_eq!(
            tun_keys(&config(unpriv(true), v1)),
            [
                "lxc.mount.entry = /dev/net/tun dev/net/tun none bind,create=file 0 0",
                "lxc.cgroup.devices.allow = c 10:200 rwm"
            ]
        );
        assert!(tun_keys(&config(unpriv(false), v1)).is_empty());
        assert_eq!(
            tun_keys(&config(unpriv(true), CgroupLayout::V2))[1],
            "lxc.cgroup2.devices.allow = c 10:200 rwm"
        );
        let privileged = config(Mode::Privileged, v1);
        assert!(privileged
            .entries()
            .iter()
            .any(|e| e.key == "lxc.cap.drop" && e.value.is_empty()));
        assert!(!privileged.entries().iter().any(|e| e.key == "lxc.idmap"));
    }
}
