//! The command line, as clap types. This file depends only on clap, clap_complete and
//! nox-core: xtask compiles it in by path to generate man pages without building backends.
//!
//! Only verbs and flags that work are here; planned ones join when their backend work lands,
//! never as stubs.

use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use clap_complete::Shell;
use nox_core::instance::NetworkSpec;
use nox_core::resources::{CpuRequest, DiskRequest, MemoryRequest};
use nox_core::{InstanceName, InstanceRef, RemoteName};

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
    /// Create an instance (a VM by default) and start it
    ///
    /// Flags override the config's [defaults]; `nox config show` prints those.
    /// Example: nox create web --cpus 2 --memory 2G --disk 20G
    Create(Box<CreateArgs>),

    /// List instances
    #[command(visible_alias = "ls")]
    List(JsonFlag),

    /// Show one instance
    Status {
        name: Name,
        #[command(flatten)]
        json: JsonFlag,
    },

    /// Start instances
    Start {
        #[arg(required = true)]
        names: Vec<Name>,
        #[command(flatten)]
        wait: WaitArgs,
    },

    /// Stop instances: a clean shutdown, forced off after --timeout
    Stop(StopArgs),

    /// Stop, then start instances
    Restart {
        #[command(flatten)]
        stop: StopArgs,
        #[command(flatten)]
        wait: WaitArgs,
    },

    /// Delete instances and every file nox made for them
    #[command(visible_alias = "rm")]
    Delete {
        #[arg(required = true)]
        names: Vec<Name>,
        /// Delete running instances too (they are forced off first)
        #[arg(short, long)]
        force: bool,
    },

    /// Run a command in an instance as root; its exit code becomes nox's
    ///
    /// Arguments are passed as they are, without a shell: nox exec web -- ls -l /
    Exec {
        name: Name,
        /// The command and its arguments
        #[arg(last = true, required = true, num_args = 1..)]
        command: Vec<String>,
    },

    /// Open an SSH session in an instance, or run a command there
    Ssh {
        name: Name,
        /// A command to run instead of a shell
        #[arg(last = true, num_args = 0..)]
        command: Vec<String>,
    },

    /// Attach to an instance's serial console (detach with Ctrl+])
    Console { name: Name },

    /// Set a new random password for the instance's user, shown once and stored nowhere
    Passwd {
        name: Name,
        /// The user (default: the instance's user)
        #[arg(long)]
        user: Option<String>,
    },

    /// Run launch scripts in a running instance, as root, output streamed and logged
    ///
    /// SCRIPT is a built-in (docker, tailscale, claude) or a path to your own script.
    /// Example: nox run web docker ./setup.sh
    Run {
        name: Name,
        /// Built-in names or script paths, run in order; the first failure stops the rest
        #[arg(required = true, value_name = "SCRIPT")]
        scripts: Vec<String>,
    },

    /// Probe what an instance can do from the inside: TUN, Docker, user namespace, kernel
    ///
    /// Ends with verdicts for Tailscale (kernel mode / userspace-only / no) and Docker.
    Check {
        name: Name,
        #[command(flatten)]
        json: JsonFlag,
    },

    /// Change an instance's CPUs, memory or disk
    ///
    /// CPU and memory take effect at the next boot; the disk grows at once (never shrinks).
    Resize(ResizeArgs),

    /// Manage the image caches (VM images, container bases)
    #[command(subcommand)]
    Image(ImageCommand),

    /// Manage remotes: Incus servers and clusters whose instances are REMOTE:NAME
    #[command(subcommand)]
    Remote(RemoteCommand),

    /// Back up instances: VMs live (incremental after the first), containers frozen
    ///
    /// Each backup appears only when complete, with a manifest of SHA-256 sums; older ones
    /// beyond --keep ([backup] keep) are removed. Example: nox backup web db
    Backup(BackupArgs),

    /// List backups
    Backups(JsonFlag),

    /// Restore a backup as an instance (verifying every checksum first)
    ///
    /// BACKUP is NAME/ID, or NAME for its newest backup (see `nox backups`). Without BACKUP on
    /// a terminal, pick one from a list.
    Restore(RestoreArgs),

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

    /// Copy files between the host and an instance, either way
    ///
    /// A path in an instance is NAME:/ABSOLUTE/PATH (REMOTE:NAME:/PATH on a remote); any other
    /// path is on the host (write ./a:b for a host file whose name holds a colon). Modes and
    /// owners are kept as far as the target allows, like `cp -a` as root.
    ///
    /// Examples: nox cp ./app.tar web:/opt/   nox cp -r web:/var/log ./logs
    Cp {
        /// What to copy: a host path or NAME:/PATH
        #[arg(value_name = "SRC")]
        src: String,
        /// Where to: a host path or NAME:/PATH (into it when it is a directory)
        #[arg(value_name = "DST")]
        dst: String,
        /// Copy directories with everything in them
        #[arg(short, long)]
        recursive: bool,
    },
    /// Shared folders: host directories seen inside an instance
    #[command(subcommand)]
    Mount(MountCommand),

    /// Snapshot an instance: a point to go back to, kept beside it
    ///
    /// SNAP defaults to the next free snapN. A running VM is quiesced through its guest agent;
    /// a running container is frozen while its changes are copied. Snapshots go with the
    /// instance on `nox delete`. Examples: nox snapshot web before-upgrade;
    /// nox snapshot restore web before-upgrade; nox snapshot rm web snap0.
    /// An instance named `rm` or `restore`: nox snapshot -- rm
    Snapshot(SnapshotArgs),

    /// List an instance's snapshots, oldest first
    Snapshots {
        name: Name,
        #[command(flatten)]
        json: JsonFlag,
    },

    /// Forward host ports to an instance's ports (kept across restarts)
    ///
    /// Containers, and VMs on libvirt's network or a bridge, get nftables DNAT (table `ip nox`),
    /// applied while they run; `--network user` VMs get passt's own forwards, applied at the
    /// VM's next start.
    /// Example: nox forward add web 8080:80
    #[command(subcommand)]
    Forward(ForwardCommand),
}

#[derive(Debug, Subcommand)]
pub enum ForwardCommand {
    /// Forward HOST_PORT on the host (127.0.0.1 unless --address) to GUEST_PORT
    ///
    /// Refused when the host port is taken, by another forward or a listening program.
    /// Example: nox forward add web 8080:80, nox forward add dns 5353:53/udp
    Add {
        name: Name,
        /// HOST_PORT:GUEST_PORT[/tcp|/udp] (tcp when not said)
        forward: String,
        /// The host IPv4 address to listen on; 0.0.0.0 for every address of the host
        #[arg(long, default_value = "127.0.0.1")]
        address: std::net::Ipv4Addr,
    },
    /// List an instance's forwards
    List {
        name: Name,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Point the instance's forwards at its address after a start outside nox (internal)
    ///
    /// liblxc's start-host hook runs it (nox puts the hook in a container's config while it
    /// has forwards), so a container autostarted at host boot gets its forwards back.
    #[command(hide = true)]
    Follow {
        name: Name,
        /// Return at once and do it in the background, its output appended to
        /// STATE_DIR/forwards-follow.log (a hook must not hold the start)
        #[arg(long)]
        detach: bool,
    },
    /// Remove a forward, named by its host port: HOST_PORT[/tcp|/udp]
    ///
    /// Example: nox forward rm web 8080
    Rm {
        name: Name,
        /// HOST_PORT[/tcp|/udp] (tcp when not said)
        forward: String,
        /// Only the forward on this host address (when one port is forwarded on several)
        #[arg(long)]
        address: Option<std::net::Ipv4Addr>,
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

/// An instance: `NAME` on this host or `REMOTE:NAME` on a remote, checked when parsed
/// (names are `^[a-z][a-z0-9-]{0,62}$`).
pub type Name = InstanceRef;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    /// A libvirt/KVM virtual machine
    Vm,
    /// An LXC system container
    Lxc,
}

impl From<BackendArg> for nox_core::BackendKind {
    fn from(b: BackendArg) -> Self {
        match b {
            BackendArg::Vm => nox_core::BackendKind::Vm,
            BackendArg::Lxc => nox_core::BackendKind::Lxc,
        }
    }
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    pub name: Name,

    /// What runs the instance [default: [defaults] backend]
    #[arg(long, value_enum)]
    pub backend: Option<BackendArg>,

    /// Create it on this [remotes] entry (the same as REMOTE:NAME)
    #[arg(long, value_name = "REMOTE")]
    pub remote: Option<RemoteName>,

    /// With --remote on a cluster: the member to place it on [default: the cluster decides]
    #[arg(long, value_name = "MEMBER")]
    pub target: Option<String>,

    /// Image name from [images] [default: [defaults] image]
    #[arg(long)]
    pub image: Option<String>,

    #[command(flatten)]
    pub resources: ResourceArgs,

    /// default (NAT), user (passt, SSH on 127.0.0.1), bridge:NAME, macvtap:IFACE, or ask
    #[arg(long)]
    pub network: Option<NetworkSpec>,

    /// A public key file or key text for the guest user (repeatable) [default: ~/.ssh/*.pub]
    #[arg(long = "ssh-key", value_name = "KEY")]
    pub ssh_keys: Vec<String>,

    /// The login user created in the guest [default: [defaults] user]
    #[arg(long)]
    pub user: Option<String>,

    /// A privileged container (root in it is root on the host); implies --backend lxc.
    /// Asks for confirmation after a warning.
    #[arg(long)]
    pub privileged: bool,

    /// Confirm --privileged without a prompt (for scripts that have made that decision)
    #[arg(long, short = 'y')]
    pub yes: bool,

    /// Containers: do not pass /dev/net/tun through [default: [lxc] tun]
    #[arg(long)]
    pub no_tun: bool,

    /// Containers: allow containers inside (Docker); `--script docker` implies it
    #[arg(long)]
    pub nesting: bool,

    /// Run a launch script once the instance is ready (repeatable, in order): a built-in
    /// (docker, tailscale, claude) or a path to your own script
    #[arg(long = "script", value_name = "NAME|PATH")]
    pub scripts: Vec<String>,

    /// Create only; do not start
    #[arg(long)]
    pub no_start: bool,

    /// VMs: boot cold instead of restoring a saved template of this shape (see `[vm] templates`)
    #[arg(long)]
    pub cold_boot: bool,

    /// Do not start the instance when the host boots
    #[arg(long)]
    pub no_autostart: bool,

    #[command(flatten)]
    pub wait: WaitArgs,

    /// Print the created instance as JSON
    #[arg(long)]
    pub json: bool,

    /// Share a host directory with the instance (repeatable); containers only, see
    /// `nox mount add`
    #[arg(long = "mount", value_name = "HOST_DIR:GUEST_DIR[:ro]")]
    pub mounts: Vec<String>,
}

#[derive(Debug, Args, Clone, Copy)]
pub struct WaitArgs {
    /// Return once the guest is ready: agent answering, cloud-init done (the default)
    #[arg(long, overrides_with = "no_wait")]
    pub wait: bool,

    /// Return as soon as the instance is started
    #[arg(long)]
    pub no_wait: bool,

    /// How long to wait for readiness, e.g. 90s or 10m
    #[arg(long, value_parser = parse_duration, default_value = "10m")]
    pub timeout: Duration,
}

impl WaitArgs {
    pub fn wait_for(&self) -> Option<Duration> {
        (!self.no_wait).then_some(self.timeout)
    }
}

#[derive(Debug, Args)]
pub struct StopArgs {
    #[arg(required = true)]
    pub names: Vec<Name>,
    /// Force the instance off at once, without a clean shutdown
    #[arg(short, long)]
    pub force: bool,
    /// How long a clean shutdown may take before the instance is forced off
    #[arg(long = "stop-timeout", value_parser = parse_duration, default_value = "60s")]
    pub stop_timeout: Duration,
}

#[derive(Debug, Args)]
pub struct ResizeArgs {
    pub name: Name,
    #[command(flatten)]
    pub resources: ResourceArgs,
    /// Restart the instance so new CPU and memory take effect now
    #[arg(long)]
    pub restart: bool,
}

/// CPU, memory and disk, as create and resize take them. Values may start with `-` so a
/// negative number gets nox's own message rather than clap's "unexpected argument".
#[derive(Debug, Args)]
pub struct ResourceArgs {
    /// CPUs: a count (2) or a share of the host (50%, 0.5)
    #[arg(long, allow_hyphen_values = true)]
    pub cpus: Option<CpuRequest>,

    /// Memory: 2G, 512M, 1024 (MiB), or a share of the host (50%)
    #[arg(long, allow_hyphen_values = true)]
    pub memory: Option<MemoryRequest>,

    /// Disk: 20G, 20 (GiB), or a share of the free space (50%); disks only grow
    #[arg(long, allow_hyphen_values = true)]
    pub disk: Option<DiskRequest>,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// List cached images: VM images, their templates, and container bases
    List(JsonFlag),
    /// Download and verify an image from [images] into a cache (a container base is
    /// unpacked too, for unprivileged containers)
    Pull {
        /// An [images] name
        name: String,
        /// Which cache [default: [defaults] backend]
        #[arg(long, value_enum)]
        backend: Option<BackendArg>,
    },
    /// Remove a cached image (by name or checksum) and its VM templates, or one template (by
    /// key), that no instance uses
    Rm {
        /// An image's name or checksum, or a template's key (`nox image list --json`)
        image: String,
        /// Only from this cache [default: every cache that has it]
        #[arg(long, value_enum)]
        backend: Option<BackendArg>,
    },
    /// Remove every cached image no instance uses, and the VM templates of removed images (or
    /// that no create would restore), and say how much space that freed
    Prune(JsonFlag),
    /// Make the VM template of one shape now, so the first create of it restores instead of
    /// booting
    ///
    /// Boots a VM of image NAME in the shape `nox create` would give it (the [defaults], with
    /// these flags on top), saves it once booted, and keeps it as a template. If that template
    /// exists already, says so and does nothing. Needs `[vm] templates = true` (the default).
    /// Example: nox image warm debian-12 --cpus 2 --memory 2G
    Warm(WarmArgs),
    /// Build an image here from its distribution's package archive (debootstrap)
    ///
    /// Makes a cloud-init-ready qcow2 for VMs and a container rootfs shaped like the LXC
    /// images, from one debootstrap tree, and takes them into the image caches as NAME. apt
    /// checks every package against the archive's signed Release file. Builds are kept in
    /// [build] dir, so a second build of the same recipe costs seconds. Example:
    /// nox image build debian-12
    Build {
        /// The [images] name to cache it as (debian-12, debian-13, ubuntu-24.04, or yours)
        name: String,
        /// The release, when [images.NAME] has no build: source: debian/12, debian/13, ubuntu/24.04
        #[arg(long)]
        release: Option<String>,
        /// Build for this backend only (default: both, from one tree)
        #[arg(long, value_enum)]
        backend: Option<BackendArg>,
        #[command(flatten)]
        json: JsonFlag,
    },
}

#[derive(Debug, Args)]
pub struct WarmArgs {
    /// An [images] name
    pub name: String,

    #[command(flatten)]
    pub resources: ResourceArgs,

    /// default (NAT), user (passt, SSH on 127.0.0.1), bridge:NAME, or ask (VMs on macvtap
    /// boot cold and have no template)
    #[arg(long)]
    pub network: Option<NetworkSpec>,

    #[command(flatten)]
    pub json: JsonFlag,
}

#[derive(Debug, Subcommand)]
pub enum RemoteCommand {
    /// Trust nox on an Incus server or cluster and add it as [remotes.NAME]
    ///
    /// Make the token on the server with `incus config trust add NAME`. nox makes its own
    /// client certificate, shows the server's certificate fingerprint, checks it against the
    /// one the token vouches for, and pins it. Example:
    /// nox remote add cluster https://192.0.2.10:8443 --token eyJjbGllbnRfbmFtZSI6...
    Add {
        /// The remote's name: instances there are NAME:INSTANCE
        name: RemoteName,
        /// https://HOST[:8443], or unix:///var/lib/incus/unix.socket for a local server
        url: String,
        /// The trust token (needed for https://)
        #[arg(long)]
        token: Option<String>,
    },
    /// List the remotes and whether each answers
    #[command(visible_alias = "ls")]
    List(JsonFlag),
    /// Remove a remote from the config (its instances stay where they are)
    #[command(visible_alias = "rm")]
    Remove { name: RemoteName },
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Instances to back up
    #[arg(required_unless_present = "prune")]
    pub names: Vec<Name>,

    /// Backups to keep per instance [default: [backup] keep]
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub keep: Option<u32>,

    /// Only apply retention (--keep or [backup] keep) to the backups of NAMES, or of every
    /// instance when none is given; back nothing up
    #[arg(long)]
    pub prune: bool,

    /// Containers: stop the container for the backup (and start it again), instead of
    /// freezing it
    #[arg(long)]
    pub stop: bool,

    /// VMs: a full backup even when an incremental one is possible
    #[arg(long)]
    pub full: bool,

    /// Also upload each backup to the [s3] bucket (the local copy stays, for fast restores
    /// and incremental chains)
    #[arg(long, value_enum, value_name = "REMOTE")]
    pub to: Option<BackupRemote>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackupRemote {
    /// The S3-compatible bucket of [s3]
    S3,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// NAME/ID, or NAME for its newest backup; s3:NAME/ID (or s3:NAME) for one in S3
    pub backup: Option<String>,

    /// Restore under this name, with a new identity (UUID, MAC, hostname, cloud-init instance),
    /// where the backed-up instance was (this host or its remote)
    #[arg(long)]
    pub name: Option<InstanceName>,

    /// Remote clusters: the member to restore onto [default: where Incus places it]
    #[arg(long, value_name = "MEMBER")]
    pub target: Option<String>,

    /// Replace an existing instance of that name (deleted only after the backup is verified)
    #[arg(short, long)]
    pub force: bool,

    /// Do not start the restored instance
    #[arg(long)]
    pub no_start: bool,

    /// Confirm restoring a privileged container without the prompt
    #[arg(long, short = 'y')]
    pub yes: bool,

    /// How long to wait for the restored instance to be ready, e.g. 90s or 10m
    #[arg(long, value_parser = parse_duration, default_value = "10m")]
    pub timeout: Duration,
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s)
        .or_else(|_| s.parse::<u64>().map(Duration::from_secs))
        .map_err(|_| format!("{s:?} is not a duration: use e.g. 90s, 5m or 1h"))?;
    if d.is_zero() {
        return Err("the timeout must be more than zero".into());
    }
    Ok(d)
}

#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Print JSON for scripts instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum MountCommand {
    /// Share a host directory with an instance
    ///
    /// HOST_DIR must exist; it is stored with its symlinks resolved. A container sees it
    /// with ownership mapped (uid N inside is uid N on the host) from its next start.
    /// Example: nox mount add web ~/code:/home/nox/code
    Add {
        name: Name,
        /// HOST_DIR:GUEST_DIR, or HOST_DIR:GUEST_DIR:ro for read-only, both absolute
        #[arg(value_name = "HOST_DIR:GUEST_DIR[:ro]")]
        mount: String,
    },
    /// Stop sharing the directory mounted on GUEST_DIR
    #[command(visible_alias = "remove")]
    Rm {
        name: Name,
        /// The guest path, as `nox mount list` shows it
        guest_dir: String,
    },
    /// List an instance's shared folders
    #[command(visible_alias = "ls")]
    List {
        name: Name,
        #[command(flatten)]
        json: JsonFlag,
    },
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct SnapshotArgs {
    #[command(subcommand)]
    pub command: Option<SnapshotCommand>,

    /// The instance to snapshot
    #[arg(required = true)]
    pub name: Option<Name>,

    /// The snapshot's name [default: the next free snapN]
    pub snapshot: Option<InstanceName>,

    /// VMs: also save the running machine's memory, so a restore resumes it where it was
    #[arg(long)]
    pub memory: bool,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Put an instance back as it was at a snapshot (stopping and restarting it if it runs)
    Restore { name: Name, snapshot: InstanceName },
    /// Remove a snapshot
    Rm { name: Name, snapshot: InstanceName },
}
