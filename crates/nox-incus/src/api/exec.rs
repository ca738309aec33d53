//! `POST /1.0/instances/NAME/exec` (shared/api/instance_exec.go).

use std::collections::BTreeMap;

use serde::Serialize;

/// The exec request, as Incus's Go struct writes every field.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct InstanceExecPost {
    /// argv, passed to execve as is: no shell, no quoting.
    pub command: Vec<String>,
    #[serde(rename = "wait-for-websocket")]
    pub wait_for_websocket: bool,
    pub interactive: bool,
    pub environment: BTreeMap<String, String>,
    pub width: u32,
    pub height: u32,
    #[serde(rename = "record-output")]
    pub record_output: bool,
    pub user: u32,
    pub group: u32,
    pub cwd: String,
}
