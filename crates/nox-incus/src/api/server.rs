//! `GET /1.0` and the cluster members (shared/api/server.go, cluster.go).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::null_default;

/// `GET /1.0`: the server, and whether it trusts us.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Server {
    #[serde(deserialize_with = "null_default")]
    pub config: BTreeMap<String, serde_json::Value>,
    #[serde(deserialize_with = "null_default")]
    pub api_extensions: Vec<String>,
    pub api_status: String,
    pub api_version: String,
    /// `trusted` or `untrusted`.
    pub auth: String,
    pub public: bool,
    #[serde(deserialize_with = "null_default")]
    pub auth_methods: Vec<String>,
    pub auth_user_name: String,
    pub auth_user_method: String,
    pub environment: ServerEnvironment,
}

impl Server {
    pub fn is_trusted(&self) -> bool {
        self.auth == "trusted"
    }

    pub fn has_extension(&self, name: &str) -> bool {
        self.api_extensions.iter().any(|e| e == name)
    }
}

/// The server's environment (only for trusted clients).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ServerEnvironment {
    #[serde(deserialize_with = "null_default")]
    pub addresses: Vec<String>,
    #[serde(deserialize_with = "null_default")]
    pub architectures: Vec<String>,
    /// The server (cluster) certificate, PEM.
    pub certificate: String,
    pub certificate_fingerprint: String,
    pub driver: String,
    pub driver_version: String,
    pub firewall: String,
    pub kernel: String,
    pub kernel_architecture: String,
    pub kernel_version: String,
    pub os_name: String,
    pub os_version: String,
    pub project: String,
    pub server: String,
    pub server_clustered: bool,
    pub server_event_mode: String,
    /// This member's name in a cluster.
    pub server_name: String,
    pub server_pid: i64,
    pub server_version: String,
    pub storage: String,
    pub storage_version: String,
}

/// `GET /1.0/cluster/members?recursion=1`: one member.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ClusterMember {
    pub server_name: String,
    /// `https://address:port`.
    pub url: String,
    pub database: bool,
    /// `Online`, `Offline`, `Evacuated`, `Blocked`.
    pub status: String,
    pub message: String,
    pub architecture: String,
    #[serde(deserialize_with = "null_default")]
    pub roles: Vec<String>,
    pub failure_domain: String,
    pub description: String,
    #[serde(deserialize_with = "null_default")]
    pub config: BTreeMap<String, String>,
    #[serde(deserialize_with = "null_default")]
    pub groups: Vec<String>,
}

impl ClusterMember {
    pub fn is_online(&self) -> bool {
        self.status == "Online"
    }
}
