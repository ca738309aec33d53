//! The trait every backend implements. The CLI picks a backend and calls it; nothing in a
//! backend knows about the command line.
//!
//! A backend joins the CLI's `--backend` choices when it implements this trait for real, so
//! there is never a method that answers "not implemented".

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use crate::backup::BackupBackend;
use crate::check::Check;
use crate::error::Result;
use crate::image::ImageCache;
use crate::instance::{BackendKind, Instance, InstanceSpec};
use crate::name::InstanceName;
use crate::progress::Progress;
use crate::secret::Password;
use crate::state::Operation;

/// How `create` should finish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateOptions {
    /// Start the instance after creating it.
    pub start: bool,
    /// Return only when the guest is ready (agent answering, cloud-init done).
    pub wait: bool,
    /// How long to wait for readiness.
    pub timeout: Duration,
    /// The cluster member to place the instance on (`--target`); `None` lets a remote
    /// cluster place it. Local backends refuse one.
    pub target: Option<String>,
    /// Boot a VM cold even where a template of its shape could be restored (`--cold-boot`).
    pub cold_boot: bool,
}

/// What `resize` changes; `None` leaves a resource as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Resize {
    pub cpus: Option<u32>,
    pub memory_bytes: Option<u64>,
    pub disk_bytes: Option<u64>,
}

/// A program the CLI should run in the user's terminal (replacing itself): `ssh`, a console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handoff {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Said on stderr before handing over (why a fallback was chosen, how to detach).
    pub note: Option<String>,
}

/// What `exec_with` feeds a command and where its output goes.
pub struct ExecIo<'a> {
    /// The command's whole standard input (a launch script, a secret); empty for none.
    pub stdin: &'a [u8],
    pub stdout: &'a mut (dyn Write + Send),
    pub stderr: &'a mut (dyn Write + Send),
}

impl std::fmt::Debug for ExecIo<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecIo")
            .field("stdin_bytes", &self.stdin.len())
            .finish_non_exhaustive()
    }
}

/// One technology that runs instances. Backups are part of it ([`BackupBackend`]): every
/// backend can back up and restore what it runs.
pub trait Backend: BackupBackend + std::fmt::Debug + Send + Sync {
    /// Which kind of instance this backend runs.
    fn kind(&self) -> BackendKind;

    /// The `[remotes]` entry this backend drives; `None` for this host (the default).
    fn remote(&self) -> Option<&str> {
        None
    }

    /// What this backend needs of the host, checked live (`nox doctor`).
    fn host_checks(&self) -> Vec<Check>;

    /// The checks `create` makes before anything exists (networks, bridges, id ranges), so
    /// a question asked afterwards (the privileged warning) never meets an error the user
    /// could have been told first. `create` makes them again itself.
    fn preflight(&self, spec: &InstanceSpec) -> Result<()>;

    /// The image cache this backend keeps, if it keeps one `nox image` manages.
    fn image_cache(&self) -> Option<&dyn ImageCache> {
        None
    }

    /// Creates an instance. On any failure, everything made so far is removed.
    fn create(
        &self,
        spec: &InstanceSpec,
        options: CreateOptions,
        progress: &dyn Progress,
    ) -> Result<Instance>;

    /// Whether this backend holds an instance called `name`: a cheap lookup, no guest asked.
    fn owns(&self, name: &InstanceName) -> Result<bool>;

    /// Every instance of this backend, in one pass: never a timeout per instance.
    fn list(&self) -> Result<Vec<Instance>>;

    fn status(&self, name: &InstanceName) -> Result<Instance>;

    /// Starts a stopped instance; with `wait`, returns when the guest is ready.
    fn start(
        &self,
        name: &InstanceName,
        wait: Option<Duration>,
        progress: &dyn Progress,
    ) -> Result<()>;

    /// Asks the guest to shut down, then forces it off after `timeout` (at once with `force`).
    fn stop(
        &self,
        name: &InstanceName,
        force: bool,
        timeout: Duration,
        progress: &dyn Progress,
    ) -> Result<()>;

    /// Removes the instance and every file nox made for it. Refuses a running one unless
    /// `force`.
    fn delete(&self, name: &InstanceName, force: bool) -> Result<()>;

    /// Puts right what a nox command killed while doing `operation` to `name` left behind
    /// (see [`crate::state::intent`]). After a create, restore or delete: removes whatever
    /// this backend holds of `name` that nox made (a domain or container and its files, in any
    /// state, with or without its record), and nothing nox did not make. After a backup: ends
    /// the backup's job and thaws the guest. Returns what it did, one short line each; empty
    /// when there was nothing left.
    fn recover(&self, name: &InstanceName, operation: Operation) -> Result<Vec<String>>;

    /// Runs `argv` in the guest as root, streaming its output to ours; returns its exit code.
    fn exec(&self, name: &InstanceName, argv: &[String]) -> Result<i32>;

    /// Runs `argv` in the guest as root with `io.stdin` as its input, copying its output to
    /// `io`'s sinks as it is produced; returns its exit code. Launch scripts, `nox check` and
    /// secrets travel this way: through the agent or attach, never a network path or a seed.
    fn exec_with(&self, name: &InstanceName, argv: &[String], io: ExecIo<'_>) -> Result<i32>;

    /// Lets the instance run containers itself (Docker). Returns what changed, for the user,
    /// or `None` when nothing had to (a VM, or a container that already allows it). A running
    /// container is restarted for the change to take effect.
    fn enable_nesting(
        &self,
        name: &InstanceName,
        progress: &dyn Progress,
    ) -> Result<Option<String>>;

    /// How to open an interactive SSH session (or `command`) in the guest.
    fn ssh(&self, name: &InstanceName, command: &[String]) -> Result<Handoff>;

    /// How to attach to the guest's console.
    fn console(&self, name: &InstanceName) -> Result<Handoff>;

    /// Sets a new random password for `user` and returns it; nox stores it nowhere, and its
    /// buffer is wiped when dropped.
    fn passwd(&self, name: &InstanceName, user: &str) -> Result<Password>;

    /// Changes resources. Disk grows only. Returns a note for the user (what takes effect when).
    fn resize(
        &self,
        name: &InstanceName,
        resize: Resize,
        progress: &dyn Progress,
    ) -> Result<String>;

    /// Streams the guest file `path` (absolute, resolved inside the guest: its symlinks lead
    /// only to its own files) into `sink`, in pieces, never the whole file in memory. Backends
    /// that cannot copy files refuse in one line.
    fn read_guest_file(&self, name: &InstanceName, path: &str, sink: &mut dyn Write) -> Result<()> {
        let _ = (path, sink);
        Err(crate::copy::unsupported(self.remote(), name))
    }

    /// Creates or truncates the guest file `path` (absolute, resolved inside the guest) and
    /// streams `source` into it, in pieces. Its directory must exist; modes and owners are
    /// set afterwards by the caller (through `exec_with`).
    fn write_guest_file(
        &self,
        name: &InstanceName,
        path: &str,
        source: &mut dyn std::io::Read,
    ) -> Result<()> {
        let _ = (path, source);
        Err(crate::copy::unsupported(self.remote(), name))
    }

    /// Shares a host directory with the instance (`nox mount add`), stored with it. Returns a
    /// note for the user (what takes effect when). A backend that cannot share this host's
    /// directories (a remote) refuses in one line.
    fn add_mount(&self, name: &InstanceName, mount: &crate::mounts::Mount) -> Result<String> {
        let _ = mount;
        Err(crate::Error::Usage(format!(
            "{name}: {} instances cannot share this host's directories",
            self.kind()
        )))
    }

    /// Stops sharing the directory mounted on `guest` (`nox mount rm`). Returns a note for
    /// the user, as [`Backend::add_mount`] does.
    fn remove_mount(&self, name: &InstanceName, guest: &std::path::Path) -> Result<String> {
        let _ = guest;
        Err(crate::Error::Usage(format!(
            "{name}: {} instances have no shared folders",
            self.kind()
        )))
    }

    /// The snapshots this backend keeps of its instances (`nox snapshot`), if it keeps any;
    /// a backend without them returns `None` and nox refuses the verb for its instances.
    fn snapshots(&self) -> Option<&dyn crate::snapshot::SnapshotBackend> {
        None
    }

    /// Points the instance's forwards at the address it has in this boot, waiting for one:
    /// what `start` does, for a start that did not come through nox (an engine's start hook:
    /// liblxc's at host boot). Backends whose forwards need no address (passt, none) do nothing.
    fn reapply_forwards(&self, name: &InstanceName, progress: &dyn crate::Progress) -> Result<()> {
        let _ = (name, progress);
        Ok(())
    }

    /// The instance's port forwards, as stored with it.
    fn forwards(&self, name: &InstanceName) -> Result<Vec<crate::forward::Forward>> {
        Err(no_forwards(self, name))
    }

    /// Stores `forward` with the instance and makes it real when the backend can do so now.
    /// The caller has checked it against every other forward and the host's sockets. Returns
    /// a note for the user when it takes effect only later (a running passt VM).
    fn add_forward(
        &self,
        name: &InstanceName,
        forward: crate::forward::Forward,
    ) -> Result<Option<String>> {
        let _ = forward;
        Err(no_forwards(self, name))
    }

    /// Removes the forwards `key` names (the host side stops answering at once where the
    /// backend can; else the note says when) and returns them with a note.
    fn remove_forward(
        &self,
        name: &InstanceName,
        key: crate::forward::ForwardKey,
    ) -> Result<(Vec<crate::forward::Forward>, Option<String>)> {
        let _ = key;
        Err(no_forwards(self, name))
    }
}

/// A backend without port forwards (Incus remotes) refuses in one line.
fn no_forwards<B: Backend + ?Sized>(backend: &B, name: &InstanceName) -> crate::Error {
    crate::Error::Refused {
        message: format!(
            "{} has no port forwards: nox manages forwards only for instances on this host",
            match backend.remote() {
                Some(r) => format!("{r}:{name}"),
                None => name.to_string(),
            }
        ),
        hint: "on an Incus remote, add a proxy device with `incus config device add`".into(),
    }
}
