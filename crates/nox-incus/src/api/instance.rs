//! Instances and their state (shared/api/instance.go, instance_state.go).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{null_default, InstanceBackup};

/// A device: its type and options, all strings (`{"type": "unix-char", "path": "/dev/net/tun"}`).
pub type Device = BTreeMap<String, String>;

/// Container or VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum InstanceType {
    #[serde(rename = "container")]
    Container,
    #[serde(rename = "virtual-machine")]
    VirtualMachine,
}

impl InstanceType {
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceType::Container => "container",
            InstanceType::VirtualMachine => "virtual-machine",
        }
    }
}

/// Where a new instance's root filesystem comes from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstanceSource {
    /// `image` (or `none` for an empty instance).
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// For an image on another server: `pull`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// For an image on another server: its URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// For an image on another server: `simplestreams` or `incus`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

impl InstanceSource {
    fn image() -> Self {
        InstanceSource {
            kind: "image".into(),
            fingerprint: None,
            alias: None,
            mode: None,
            server: None,
            protocol: None,
        }
    }

    /// An image already on the server, by fingerprint (a unique prefix will do).
    pub fn image_fingerprint(fingerprint: &str) -> Self {
        InstanceSource {
            fingerprint: Some(fingerprint.into()),
            ..Self::image()
        }
    }

    /// An image already on the server, by alias.
    pub fn image_alias(alias: &str) -> Self {
        InstanceSource {
            alias: Some(alias.into()),
            ..Self::image()
        }
    }

    /// An image the server pulls from a simplestreams server (`images:debian/12` is
    /// `https://images.linuxcontainers.org` with alias `debian/12`).
    pub fn simplestreams(server: &str, alias: &str) -> Self {
        InstanceSource {
            alias: Some(alias.into()),
            mode: Some("pull".into()),
            server: Some(server.into()),
            protocol: Some("simplestreams".into()),
            ..Self::image()
        }
    }

    /// No root filesystem (for an instance to be filled by other means).
    pub fn none() -> Self {
        InstanceSource {
            kind: "none".into(),
            ..Self::image()
        }
    }
}

/// `POST /1.0/instances`: create an instance. Placement (`target`) is a query parameter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstancesPost {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: InstanceType,
    pub source: InstanceSource,
    pub config: BTreeMap<String, String>,
    pub devices: BTreeMap<String, Device>,
    /// `None` means Incus's default (the `default` profile); `Some(vec![])` means none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profiles: Option<Vec<String>>,
    pub ephemeral: bool,
    /// Start it once created.
    pub start: bool,
    pub description: String,
}

impl InstancesPost {
    pub fn new(name: &str, kind: InstanceType, source: InstanceSource) -> Self {
        InstancesPost {
            name: name.into(),
            kind,
            source,
            config: BTreeMap::new(),
            devices: BTreeMap::new(),
            profiles: None,
            ephemeral: false,
            start: false,
            description: String::new(),
        }
    }
}

/// `PUT /1.0/instances/NAME`: the instance's whole writable configuration (read it, change it,
/// write it back). Also what `GET` returns, within [`Instance`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstancePut {
    pub architecture: String,
    #[serde(deserialize_with = "null_default")]
    pub config: BTreeMap<String, String>,
    #[serde(deserialize_with = "null_default")]
    pub devices: BTreeMap<String, Device>,
    pub ephemeral: bool,
    #[serde(deserialize_with = "null_default")]
    pub profiles: Vec<String>,
    pub stateful: bool,
    pub description: String,
}

/// `PATCH /1.0/instances/NAME`: only what changes. Config keys are merged into the instance's
/// (a key set to "" is removed); a device given replaces that device.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct InstancePatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub devices: Option<BTreeMap<String, Device>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profiles: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// An instance, as `GET /1.0/instances/NAME` and `?recursion=1` return it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Instance {
    pub name: String,
    pub description: String,
    /// `Running`, `Stopped`, `Frozen`, `Error`...
    pub status: String,
    pub status_code: i64,
    /// `container` or `virtual-machine`.
    #[serde(rename = "type")]
    pub kind: String,
    pub architecture: String,
    /// The cluster member it lives on.
    pub location: String,
    pub project: String,
    pub created_at: String,
    pub last_used_at: String,
    pub ephemeral: bool,
    pub stateful: bool,
    #[serde(deserialize_with = "null_default")]
    pub profiles: Vec<String>,
    #[serde(deserialize_with = "null_default")]
    pub config: BTreeMap<String, String>,
    #[serde(deserialize_with = "null_default")]
    pub devices: BTreeMap<String, Device>,
    #[serde(deserialize_with = "null_default")]
    pub expanded_config: BTreeMap<String, String>,
    #[serde(deserialize_with = "null_default")]
    pub expanded_devices: BTreeMap<String, Device>,
}

impl Instance {
    pub fn is_running(&self) -> bool {
        self.status == "Running"
    }

    /// Its writable part, for a read-modify-write `PUT`.
    pub fn writable(&self) -> InstancePut {
        InstancePut {
            architecture: self.architecture.clone(),
            config: self.config.clone(),
            devices: self.devices.clone(),
            ephemeral: self.ephemeral,
            profiles: self.profiles.clone(),
            stateful: self.stateful,
            description: self.description.clone(),
        }
    }
}

/// An instance with its state, as `?recursion=2` returns it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct InstanceFull {
    #[serde(flatten)]
    pub instance: Instance,
    /// Absent when the member holding the instance could not be asked.
    pub state: Option<InstanceState>,
    #[serde(deserialize_with = "null_default")]
    pub backups: Vec<InstanceBackup>,
}

/// `PUT /1.0/instances/NAME/state`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstanceStatePut {
    /// `start`, `stop`, `restart`, `freeze`, `unfreeze`.
    pub action: String,
    /// Seconds to wait for a clean shutdown before failing (stop/restart); -1: forever.
    pub timeout: i64,
    /// Kill rather than shut down.
    pub force: bool,
    pub stateful: bool,
}

impl InstanceStatePut {
    pub fn start() -> Self {
        Self::action("start", -1, false)
    }

    /// A clean shutdown, waiting `timeout` seconds (-1: forever); or a kill when `force`.
    pub fn stop(timeout: i64, force: bool) -> Self {
        Self::action("stop", timeout, force)
    }

    pub fn restart(timeout: i64, force: bool) -> Self {
        Self::action("restart", timeout, force)
    }

    fn action(action: &str, timeout: i64, force: bool) -> Self {
        InstanceStatePut {
            action: action.into(),
            timeout,
            force,
            stateful: false,
        }
    }
}

/// `GET /1.0/instances/NAME/state`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct InstanceState {
    pub status: String,
    pub status_code: i64,
    /// The init process's pid on its member's host (0 when stopped).
    pub pid: i64,
    pub processes: i64,
    pub started_at: String,
    #[serde(deserialize_with = "null_default")]
    pub disk: BTreeMap<String, InstanceStateDisk>,
    pub memory: InstanceStateMemory,
    #[serde(deserialize_with = "null_default")]
    pub network: BTreeMap<String, InstanceStateNetwork>,
    pub cpu: InstanceStateCpu,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct InstanceStateDisk {
    pub usage: i64,
    pub total: i64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct InstanceStateMemory {
    pub usage: i64,
    pub usage_peak: i64,
    pub total: i64,
    pub swap_usage: i64,
    pub swap_usage_peak: i64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct InstanceStateCpu {
    pub usage: i64,
    pub allocated_time: i64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct InstanceStateNetwork {
    #[serde(deserialize_with = "null_default")]
    pub addresses: Vec<InstanceStateNetworkAddress>,
    pub hwaddr: String,
    pub host_name: String,
    pub mtu: i64,
    pub state: String,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct InstanceStateNetworkAddress {
    /// `inet` or `inet6`.
    pub family: String,
    pub address: String,
    pub netmask: String,
    /// `global`, `link`, `local`.
    pub scope: String,
}
