//! What a remote driver does besides running instances (those it offers as [`Backend`]s):
//! trusting this host (`nox remote add`) and saying what answers (`nox remote list`).
//!
//! [`Backend`]: crate::Backend

use std::path::Path;

use crate::config::{RemoteConfig, RemoteDriver};
use crate::error::Result;
use crate::name::RemoteName;

pub trait RemoteDriverOps: Send + Sync + std::fmt::Debug {
    fn driver(&self) -> RemoteDriver;

    /// Trusts this host on the server at `url` (with `token` where the server needs one),
    /// keeping credentials under `dir`, and returns the `[remotes.NAME]` entry to write.
    /// `note` shows the user what they should see (the server's certificate fingerprint).
    fn add(
        &self,
        name: &RemoteName,
        url: &str,
        token: Option<&str>,
        dir: &Path,
        note: &dyn Fn(&str),
    ) -> Result<RemoteConfig>;

    /// One line on what answers at the remote (version, cluster members and their state).
    fn describe(&self, name: &RemoteName, config: &RemoteConfig) -> Result<String>;
}
