//! Background operations (shared/api/operation.go): every asynchronous request returns one,
//! and the client waits on `/1.0/operations/ID/wait`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::null_default;

/// An operation's status codes (shared/api/status_code.go).
pub mod status {
    pub const CREATED: i64 = 100;
    pub const STARTED: i64 = 101;
    pub const STOPPED: i64 = 102;
    pub const RUNNING: i64 = 103;
    pub const CANCELLING: i64 = 104;
    pub const PENDING: i64 = 105;
    pub const STARTING: i64 = 106;
    pub const STOPPING: i64 = 107;
    pub const ABORTING: i64 = 108;
    pub const FREEZING: i64 = 109;
    pub const FROZEN: i64 = 110;
    pub const THAWED: i64 = 111;
    pub const ERROR: i64 = 112;
    pub const READY: i64 = 113;
    pub const SUCCESS: i64 = 200;
    pub const FAILURE: i64 = 400;
    pub const CANCELLED: i64 = 401;
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Operation {
    pub id: String,
    /// `task`, `websocket` or `token`.
    pub class: String,
    pub description: String,
    pub created_at: String,
    pub updated_at: String,
    pub status: String,
    pub status_code: i64,
    #[serde(deserialize_with = "null_default")]
    pub resources: BTreeMap<String, Vec<String>>,
    #[serde(deserialize_with = "null_default")]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub may_cancel: bool,
    /// The error, when it failed.
    pub err: String,
    /// The cluster member running it.
    pub location: String,
}

impl Operation {
    /// Done, one way or the other.
    pub fn is_final(&self) -> bool {
        self.status_code >= status::SUCCESS
    }

    pub fn succeeded(&self) -> bool {
        self.status_code == status::SUCCESS
    }

    /// A string in the operation's metadata.
    pub fn metadata_str(&self, key: &str) -> Option<&str> {
        self.metadata.get(key)?.as_str()
    }
}
