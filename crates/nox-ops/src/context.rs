//! What every workflow runs with.

use std::path::PathBuf;

use nox_core::host::Host;
use nox_core::remote::RemoteDriverOps;
use nox_core::Config;

use crate::backends::Backends;

/// The configuration, the backends built from it, the host, and where the user's files are.
#[derive(Debug)]
pub struct Context {
    pub config: Config,
    pub backends: Backends,
    pub host: Host,
    /// The user's home: `~/.ssh/*.pub` are the default keys for new instances.
    pub home: Option<PathBuf>,
    /// nox's data directory (`$XDG_DATA_HOME/nox`), where nox's own SSH key lives; `None`
    /// when neither XDG_DATA_HOME nor HOME is set.
    pub data_dir: Option<PathBuf>,
    /// Where launch-script logs go (`$XDG_STATE_HOME/nox/logs`).
    pub log_dir: Option<PathBuf>,
    /// The config file `nox remote add|rm` edits (`NOX_CONFIG`, else the user file).
    pub config_file: Option<PathBuf>,
    /// The remote drivers this nox has (trusting a remote, saying what answers there).
    pub drivers: Vec<Box<dyn RemoteDriverOps>>,
}

impl Context {
    /// A context with the user's directories read from the environment.
    pub fn new(config: Config, backends: Backends, host: Host) -> Context {
        Context {
            config,
            backends,
            host,
            home: std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(PathBuf::from),
            data_dir: nox_core::ssh_identity::data_dir(),
            log_dir: nox_core::ssh_identity::xdg_dir("XDG_STATE_HOME", ".local/state")
                .map(|d| d.join("nox/logs")),
            config_file: nox_core::config::ConfigFiles::from_env()
                .writable()
                .map(PathBuf::from),
            drivers: Vec::new(),
        }
    }

    /// The same context with these remote drivers.
    pub fn with_drivers(mut self, drivers: Vec<Box<dyn RemoteDriverOps>>) -> Context {
        self.drivers = drivers;
        self
    }
}
