//! `nox check`: what an instance can do, probed from the inside, with verdicts for Tailscale
//! and Docker. The probe is a shell script (scripts/check-instance.sh) that the backend runs in
//! the guest; this module parses its `key=value` lines and decides. Parsing and deciding are
//! pure, so every verdict rule has a unit test.

use std::collections::BTreeMap;

use serde::Serialize;

/// The probe nox runs inside the instance.
pub const PROBE: &str = include_str!("../scripts/check-instance.sh");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TailscaleVerdict {
    /// A TUN device can be created: tailscaled routes the guest's traffic.
    Kernel,
    /// No TUN: tailscaled runs with --tun=userspace-networking (the node joins; the guest's own
    /// traffic does not route over the tailnet).
    UserspaceOnly,
    /// Tailscale cannot work here at all.
    No,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DockerVerdict {
    Yes,
    /// Works, with a cost (say, the vfs storage driver without overlayfs).
    Limited,
    No,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Probe {
    pub ok: bool,
    /// Why not, as the guest said it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserNamespace {
    /// Whether root in the instance is another uid outside it.
    pub mapped: bool,
    pub uid_map: String,
    pub gid_map: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DockerProbes {
    /// A fresh proc mounts in new mount and PID namespaces (what runc does).
    pub nesting_proc: Probe,
    /// A fresh sysfs mounts in a new network namespace.
    pub nesting_sys: Probe,
    /// overlayfs mounts where Docker keeps its layers (its overlay2 storage driver).
    pub overlayfs: Probe,
    /// Where that was measured: `/var/lib/docker`, or `/var/lib` when it does not exist yet.
    pub overlayfs_dir: String,
    /// `v1` or `v2`.
    pub cgroup: String,
    /// The instance may create cgroups of its own.
    pub cgroup_delegated: Probe,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict<T> {
    pub verdict: T,
    pub reason: String,
}

/// The report `nox check` prints (and its `--json` shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub name: String,
    pub backend: crate::BackendKind,
    pub kernel: String,
    pub arch: String,
    /// What systemd-detect-virt says inside: `kvm`, `qemu`, `lxc`, ...
    pub virt: String,
    /// Containers: root inside is root on the host. Always false for VMs.
    pub privileged: bool,
    pub user_namespace: UserNamespace,
    /// Whether /dev/net/tun exists in the instance.
    pub tun_device_node: bool,
    /// Whether a TUN interface can be created.
    pub tun: Probe,
    pub default_route: bool,
    pub docker: DockerProbes,
    pub tailscale_verdict: Verdict<TailscaleVerdict>,
    pub docker_verdict: Verdict<DockerVerdict>,
}

/// Parses the probe's output and decides. `None` when the output is not the probe's (an
/// unexpected guest): the caller reports the raw text.
pub fn report(name: &str, backend: crate::BackendKind, output: &str) -> Option<Report> {
    let kv: BTreeMap<&str, &str> = output
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    let get = |k: &str| kv.get(k).copied().unwrap_or("").to_string();
    let probe = |k: &str| -> Option<Probe> {
        let ok = match *kv.get(k)? {
            "yes" => true,
            "no" => false,
            _ => return None,
        };
        let error = kv
            .get(format!("{k}_error").as_str())
            .map(|s| s.to_string())
            .filter(|s| !s.is_empty() && !ok);
        Some(Probe { ok, error })
    };
    let uid_map = get("uid_map").trim_end_matches(';').trim().to_string();
    let gid_map = get("gid_map").trim_end_matches(';').trim().to_string();
    if get("kernel").is_empty() || uid_map.is_empty() {
        return None;
    }
    let mapped = !is_identity(&uid_map);
    let container = backend == crate::BackendKind::Lxc;
    let tun = probe("tun")?;
    let default_route = probe("default_route")?.ok;
    let docker = DockerProbes {
        nesting_proc: probe("nesting_proc")?,
        nesting_sys: probe("nesting_sys")?,
        overlayfs: probe("overlayfs")?,
        overlayfs_dir: Some(get("overlayfs_dir"))
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| "/var/lib".into()),
        cgroup: get("cgroup"),
        cgroup_delegated: probe("cgroup_delegated")?,
    };
    Some(Report {
        name: name.into(),
        backend,
        kernel: get("kernel"),
        arch: get("arch"),
        virt: get("virt"),
        privileged: container && !mapped,
        user_namespace: UserNamespace {
            mapped,
            uid_map,
            gid_map,
        },
        tun_device_node: probe("tun_node")?.ok,
        tailscale_verdict: tailscale_verdict(&tun, default_route),
        docker_verdict: docker_verdict(&docker, container),
        tun,
        default_route,
        docker,
    })
}

/// `0 0 4294967295`: the initial user namespace, or one that maps every id to itself.
fn is_identity(map: &str) -> bool {
    let f: Vec<&str> = map.split_whitespace().collect();
    f.len() == 3 && f[0] == "0" && f[1] == "0" && f[2] == "4294967295"
}

fn tailscale_verdict(tun: &Probe, default_route: bool) -> Verdict<TailscaleVerdict> {
    if !default_route {
        return Verdict {
            verdict: TailscaleVerdict::No,
            reason: "no default route: the instance cannot reach Tailscale's coordination server"
                .into(),
        };
    }
    if tun.ok {
        Verdict {
            verdict: TailscaleVerdict::Kernel,
            reason: "a TUN interface can be created".into(),
        }
    } else {
        Verdict {
            verdict: TailscaleVerdict::UserspaceOnly,
            reason: format!(
                "no TUN interface ({}): tailscaled needs --tun=userspace-networking, and the instance's own traffic does not use the tailnet",
                tun.error.as_deref().unwrap_or("creating one failed")
            ),
        }
    }
}

fn docker_verdict(d: &DockerProbes, container: bool) -> Verdict<DockerVerdict> {
    let mut missing = Vec::new();
    if !d.nesting_proc.ok {
        missing.push("cannot mount proc in new namespaces (nesting)");
    }
    if !d.nesting_sys.ok {
        missing.push("cannot mount sysfs in a new network namespace (nesting)");
    }
    if !d.cgroup_delegated.ok {
        missing.push("cannot create cgroups");
    }
    if !missing.is_empty() {
        return Verdict {
            verdict: DockerVerdict::No,
            reason: missing.join("; "),
        };
    }
    if d.overlayfs.ok {
        Verdict {
            verdict: DockerVerdict::Yes,
            reason: "nesting, cgroups and overlayfs all work".into(),
        }
    } else {
        // A nox container without nesting has no /var/lib/docker of its own yet: the docker
        // launch script (or --nesting) gives it one on the host's filesystem.
        let fix = if container && d.overlayfs_dir != "/var/lib/docker" {
            "; `nox run NAME docker` (or create with --nesting) puts /var/lib/docker on the host's filesystem, where overlay2 works"
        } else {
            ""
        };
        Verdict {
            verdict: DockerVerdict::Limited,
            reason: format!(
                "no overlayfs on {}: Docker falls back to the vfs storage driver (full copies, slow and large){fix}",
                d.overlayfs_dir
            ),
        }
    }
}

impl std::fmt::Display for TailscaleVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TailscaleVerdict::Kernel => "kernel mode",
            TailscaleVerdict::UserspaceOnly => "userspace-only",
            TailscaleVerdict::No => "no",
        })
    }
}

impl std::fmt::Display for DockerVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DockerVerdict::Yes => "yes",
            DockerVerdict::Limited => "limited",
            DockerVerdict::No => "no",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BackendKind;

    const UNPRIVILEGED_LXC: &str = "kernel=6.1.0\narch=x86_64\nvirt=lxc\nuid_map=0 100000 65536;\ngid_map=0 100000 65536;\ntun_node=yes\ntun=yes\ndefault_route=yes\nnesting_proc=yes\nnesting_sys=yes\noverlayfs=no\noverlayfs_error=mount: wrong fs type\ncgroup=v2\ncgroup_delegated=yes\n";

    fn with(base: &str, key: &str, value: &str) -> String {
        base.lines()
            .map(|l| {
                if l.split('=').next() == Some(key) {
                    format!("{key}={value}")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn unprivileged_container_with_tun() {
        let r = report("web", BackendKind::Lxc, UNPRIVILEGED_LXC).unwrap();
        assert!(!r.privileged);
        assert!(r.user_namespace.mapped);
        assert_eq!(r.user_namespace.uid_map, "0 100000 65536");
        assert_eq!(r.tailscale_verdict.verdict, TailscaleVerdict::Kernel);
        assert_eq!(r.docker_verdict.verdict, DockerVerdict::Limited);
        assert_eq!(
            r.docker.overlayfs.error.as_deref(),
            Some("mount: wrong fs type")
        );
        // No /var/lib/docker yet: the verdict says how to get one.
        assert_eq!(r.docker.overlayfs_dir, "/var/lib");
        assert!(
            r.docker_verdict.reason.contains("nox run NAME docker"),
            "{}",
            r.docker_verdict.reason
        );
    }

    #[test]
    fn overlayfs_is_judged_where_docker_keeps_its_layers() {
        let volume = format!("{UNPRIVILEGED_LXC}overlayfs_dir=/var/lib/docker\n");
        let r = report("c", BackendKind::Lxc, &with(&volume, "overlayfs", "yes")).unwrap();
        assert_eq!(r.docker.overlayfs_dir, "/var/lib/docker");
        assert_eq!(r.docker_verdict.verdict, DockerVerdict::Yes);
        let r = report("c", BackendKind::Lxc, &volume).unwrap();
        assert_eq!(r.docker_verdict.verdict, DockerVerdict::Limited);
        assert!(
            r.docker_verdict
                .reason
                .starts_with("no overlayfs on /var/lib/docker")
                && !r.docker_verdict.reason.contains("nox run"),
            "{}",
            r.docker_verdict.reason
        );
    }

    #[test]
    fn no_tun_means_userspace_only_and_no_route_means_no() {
        let no_tun = with(UNPRIVILEGED_LXC, "tun", "no") + "\ntun_error=open: No such file";
        let r = report("web", BackendKind::Lxc, &no_tun).unwrap();
        assert_eq!(r.tailscale_verdict.verdict, TailscaleVerdict::UserspaceOnly);
        assert!(r.tailscale_verdict.reason.contains("open: No such file"));
        let offline = with(&no_tun, "default_route", "no");
        let r = report("web", BackendKind::Lxc, &offline).unwrap();
        assert_eq!(r.tailscale_verdict.verdict, TailscaleVerdict::No);
    }

    #[test]
    fn identity_map_is_privileged_in_a_container_but_not_in_a_vm() {
        let ident = with(UNPRIVILEGED_LXC, "uid_map", "0 0 4294967295;");
        assert!(report("c", BackendKind::Lxc, &ident).unwrap().privileged);
        let vm = report("v", BackendKind::Vm, &ident).unwrap();
        assert!(!vm.privileged && !vm.user_namespace.mapped);
    }

    #[test]
    fn docker_needs_nesting_and_cgroups() {
        let full = with(UNPRIVILEGED_LXC, "overlayfs", "yes");
        assert_eq!(
            report("c", BackendKind::Lxc, &full)
                .unwrap()
                .docker_verdict
                .verdict,
            DockerVerdict::Yes
        );
        for key in ["nesting_proc", "nesting_sys", "cgroup_delegated"] {
            let r = report("c", BackendKind::Lxc, &with(&full, key, "no")).unwrap();
            assert_eq!(r.docker_verdict.verdict, DockerVerdict::No, "{key}");
        }
    }

    #[test]
    fn output_that_is_not_the_probe_is_rejected() {
        assert!(report("c", BackendKind::Lxc, "sh: 1: syntax error").is_none());
        assert!(report(
            "c",
            BackendKind::Lxc,
            &with(UNPRIVILEGED_LXC, "tun", "maybe")
        )
        .is_none());
    }
}
