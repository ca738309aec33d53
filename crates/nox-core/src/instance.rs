//! The instance model: what `create` is asked for, and what `list` and `status` report.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::name::InstanceName;

/// Which technology runs an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// A libvirt virtual machine: its own kernel, the default.
    Vm,
    /// An LXC system container.
    Lxc,
}

impl BackendKind {
    pub const ALL: [BackendKind; 2] = [BackendKind::Vm, BackendKind::Lxc];

    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Vm => "vm",
            BackendKind::Lxc => "lxc",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BackendKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "vm" => Ok(BackendKind::Vm),
            "lxc" => Ok(BackendKind::Lxc),
            other => Err(Error::Usage(format!(
                "unknown backend {other:?}: use `vm` (a virtual machine) or `lxc` (a system container)"
            ))),
        }
    }
}

/// How an instance is networked. The string forms are what `--network` and
/// `[defaults] network` accept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum NetworkSpec {
    /// The backend's NAT network: libvirt's `default`, or LXC's `[lxc] bridge`.
    Default,
    /// An existing host bridge.
    Bridge(String),
    /// A direct (macvtap) interface on a host NIC; VMs only.
    Macvtap(String),
    /// User-mode networking (passt) with guest port 22 forwarded to 127.0.0.1; VMs only.
    User,
    /// Pick interactively; never without a TTY.
    Ask,
}

impl FromStr for NetworkSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let iface = |kind: &str, name: &str| {
            if is_interface_name(name) {
                Ok(name.to_string())
            } else {
                Err(Error::Usage(format!(
                    "invalid network {s:?}: {kind} needs a host interface name (1 to 15 letters, digits, '-', '_' or '.')"
                )))
            }
        };
        match s.split_once(':') {
            None if s == "default" => Ok(NetworkSpec::Default),
            None if s == "user" => Ok(NetworkSpec::User),
            None if s == "ask" => Ok(NetworkSpec::Ask),
            Some(("bridge", name)) => iface("bridge", name).map(NetworkSpec::Bridge),
            Some(("macvtap", name)) => iface("macvtap", name).map(NetworkSpec::Macvtap),
            _ => Err(Error::Usage(format!(
                "invalid network {s:?}: use default, user, ask, bridge:NAME or macvtap:IFACE"
            ))),
        }
    }
}

impl fmt::Display for NetworkSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetworkSpec::Default => f.write_str("default"),
            NetworkSpec::User => f.write_str("user"),
            NetworkSpec::Ask => f.write_str("ask"),
            NetworkSpec::Bridge(n) => write!(f, "bridge:{n}"),
            NetworkSpec::Macvtap(n) => write!(f, "macvtap:{n}"),
        }
    }
}

impl TryFrom<String> for NetworkSpec {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        s.parse()
    }
}

impl From<NetworkSpec> for String {
    fn from(n: NetworkSpec) -> String {
        n.to_string()
    }
}

/// Whether `name` can be a host network interface: the kernel's rule (`dev_valid_name`: 1 to
/// 15 bytes, not `.` or `..`, no '/', ':' or whitespace), narrowed to letters, digits, '-',
/// '_' and '.'. Interface names end up in libvirt XML, LXC config lines and /sys paths, so
/// nothing else may get through.
pub fn is_interface_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Everything a backend needs to create one instance, fully resolved: no shares, no defaults
/// left to look up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceSpec {
    pub name: InstanceName,
    pub backend: BackendKind,
    /// The name of an `[images.NAME]` entry.
    pub image: String,
    pub cpus: u32,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
    pub network: NetworkSpec,
    pub autostart: bool,
    /// The login user created in the guest.
    pub user: String,
    /// Public keys (the key text, not paths) authorised for `user`.
    pub ssh_keys: Vec<String>,
    /// Containers only: run as host root. Only ever true after explicit confirmation.
    pub privileged: bool,
    /// Containers only: allow containers inside (Docker). Set by `--nesting` or the docker
    /// launch script; VMs need nothing for it.
    #[serde(default)]
    pub nesting: bool,
    /// Unprivileged containers only: `/dev/net/tun` passed through (`[lxc] tun`, `--no-tun`).
    /// Records and backups from before this field say it in their own `tun`.
    #[serde(default)]
    pub tun: bool,
    /// Shared folders (`--mount`, `nox mount add`), host directories canonical.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<crate::mounts::Mount>,
}

/// An instance as `list` and `status` report it. This is the `--json` shape (see docs/cli.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub name: String,
    pub backend: BackendKind,
    pub state: InstanceState,
    /// IPv4 addresses, best source first (guest agent, DHCP lease, ARP for VMs; liblxc for
    /// containers). Empty when stopped or unknown.
    pub ipv4: Vec<String>,
    pub cpus: u32,
    pub memory_bytes: u64,
    /// Provisioned disk size, when the backend has one.
    pub disk_bytes: Option<u64>,
    pub autostart: bool,
    pub image: String,
    pub network: String,
    /// Containers only: whether it runs as host root.
    pub privileged: bool,
    /// Containers only: whether containers may run inside it (Docker).
    #[serde(default)]
    pub nesting: bool,
    /// The guest's Tailscale address (100.64.0.0/10), when it has joined a tailnet.
    #[serde(default)]
    pub tailnet_ipv4: Option<String>,
    /// Where `nox ssh` connects, when the host can reach the guest.
    pub ssh: Option<SshEndpoint>,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// The login user nox created in the guest.
    #[serde(default)]
    pub user: Option<String>,
    /// The `[remotes]` entry holding it; `null` for an instance on this host.
    #[serde(default)]
    pub remote: Option<String>,
    /// The cluster member it runs on, for a remote that is a cluster; `null` otherwise.
    #[serde(default)]
    pub location: Option<String>,
    /// Shared folders: host directories seen in the guest.
    #[serde(default)]
    pub mounts: Vec<crate::mounts::Mount>,
    /// Its port forwards (`nox forward`), stored with the instance.
    #[serde(default)]
    pub forwards: Vec<crate::forward::Forward>,
}

/// Whether `ip` is in 100.64.0.0/10, the shared address space Tailscale gives its nodes.
pub fn is_tailnet(ip: &str) -> bool {
    ip.parse::<std::net::Ipv4Addr>()
        .is_ok_and(|a| a.octets()[0] == 100 && (a.octets()[1] & 0xc0) == 64)
}

/// The guest's tailnet address among its IPv4 addresses.
pub fn tailnet_ipv4(ipv4: &[String]) -> Option<String> {
    ipv4.iter().find(|ip| is_tailnet(ip)).cloned()
}

/// A host-reachable SSH endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshEndpoint {
    pub user: String,
    pub host: String,
    pub port: u16,
}

/// An instance's run state, as the backends report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstanceState {
    Running,
    Stopped,
    Paused,
    Starting,
    Stopping,
    /// The backend reported something nox does not map (a crashed domain, say).
    Unknown,
    /// What holds it does not answer (a cluster member that is down).
    Unreachable,
}

impl fmt::Display for InstanceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            InstanceState::Running => "running",
            InstanceState::Stopped => "stopped",
            InstanceState::Paused => "paused",
            InstanceState::Starting => "starting",
            InstanceState::Stopping => "stopping",
            InstanceState::Unknown => "unknown",
            InstanceState::Unreachable => "unreachable",
        };
        f.write_str(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_specs_parse_and_print() {
        for s in [
            "default",
            "user",
            "ask",
            "bridge:br0",
            "macvtap:eth0",
            "bridge:br-lan.100",
            "bridge:abcdefghijklmno",
            "bridge:a..b",
        ] {
            let n: NetworkSpec = s.parse().unwrap();
            assert_eq!(n.to_string(), s);
        }
        for bad in [
            "",
            "nat",
            "bridge:",
            "bridge:a b",
            "macvtap:waytoolonginterface0",
            "bridge:$(x)",
            "bridge:.",
            "bridge:..",
            "bridge:a/b",
            "bridge:br0\n",
            "macvtap:eth0:1",
            "bridge:16charsxxxxxxxxxx",
        ] {
            let e = bad.parse::<NetworkSpec>().unwrap_err();
            assert!(e.is_bad_input(), "{bad}");
        }
    }

    #[test]
    fn backend_kinds() {
        assert_eq!("vm".parse::<BackendKind>().unwrap(), BackendKind::Vm);
        assert_eq!("lxc".parse::<BackendKind>().unwrap(), BackendKind::Lxc);
        assert!("docker".parse::<BackendKind>().unwrap_err().is_bad_input());
    }
}
