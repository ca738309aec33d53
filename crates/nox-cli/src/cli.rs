//! The command line, as clap types. This file depends only on clap, clap_complete and
//! nox-core: xtask compiles it in by path to generate man pages without building backends.
//!
//! Only verbs that work are here. Planned ones (create, list, start, ...) join when their
//! backend work lands, never as stubs.

use clap::{ArgAction, Args, Parser, Subcommand};
use clap_complete::Shell;

#[derive(Debug, Parser)]
#[command(
    name = "nox",
    version,
    about = "An isolated machine in one command: a libvirt VM or an LXC container",
    long_about = "nox gives a Linux host owner an isolated machine in one command and manages it \
                  afterwards. VMs (libvirt/KVM) are the default; LXC system containers are \
                  unprivileged, with /dev/net/tun passed through.",
    propagate_version = true,
    disable_help_subcommand = true
)]
pub struct Cli {
    /// More log output on stderr: -v for info, -vv for debug
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the effective configuration, or the files it was read from
    #[command(subcommand)]
    Config(ConfigCommand),

    /// Check that this host can run nox's VMs and containers, with a fix for each problem
    ///
    /// Exits 0 when the default backend can work, 1 when it cannot.
    Doctor(JsonFlag),

    /// Print a shell completion script
    ///
    /// Example: nox completions bash > /etc/bash_completion.d/nox
    Completions {
        /// The shell to complete for
        #[arg(value_enum)]
        shell: Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration (built-in defaults, then the files, then flags)
    Show {
        /// Show which file or flag each value came from
        #[arg(long)]
        origin: bool,

        #[command(flatten)]
        json: JsonFlag,
    },

    /// List the configuration files read, lowest layer first
    Path {
        /// Also list the files nox looks for but did not find
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Print JSON for scripts instead of text
    #[arg(long)]
    pub json: bool,
}
