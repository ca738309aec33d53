//! nox's third backend: instances on an Incus server or cluster (`[remotes.NAME]`, driver
//! `incus`), through the client in this crate.
//!
//! One remote gives two backends, one per kind (containers and VMs), sharing one client.
//! nox's record of an instance lives in the instance's own config (`user.nox.spec`), so what
//! Incus holds is the whole truth: nothing is kept on the host that created it, and any host
//! with the remote configured sees the same instances. Instances without that record are not
//! nox's and are left alone.
//!
//! - `request.rs`: the `POST /1.0/instances` body from an `InstanceSpec` (golden files);
//! - `image.rs`: an `[images]` source as an Incus image (imported once, keyed by checksum, or
//!   Incus's own simplestreams remote for `images:`);
//! - `ready.rs`: readiness (systemd, cloud-init) and provisioning images without cloud-init;
//! - `status.rs`: what `list` and `status` report;
//! - `backup.rs`: backups as Incus exports, restored anywhere in the cluster;
//! - `trust.rs`: `nox remote add`, trusting nox's certificate through a token;
//! - `recover.rs`: what the next command does about one that was killed half-way.

mod backup;
mod error;
mod image;
mod ready;
mod recover;
mod request;
mod status;
pub mod trust;

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use nox_core::backend::{CreateOptions, ExecIo, Handoff, Resize};
use nox_core::config::{Config, RemoteConfig};
use nox_core::host::{Host, HostFacts};
use nox_core::instance::{Instance, InstanceSpec, NetworkSpec};
use nox_core::secret::{Password, Zeroizing};
use nox_core::state::Operation;
use nox_core::{Backend, BackendKind, Check, Error, InstanceName, Progress, Result};

use self::error::BackendError;
use crate::api::{InstancePatch, InstanceType};
use crate::{Client, ExecCommand, Options, Stdin};

/// The config key that holds nox's record of an instance (its spec, as JSON).
pub const RECORD_KEY: &str = "user.nox.spec";
/// Set once an image without cloud-init has had its user made by nox.
pub const PROVISIONED_KEY: &str = "user.nox.provisioned";

/// One remote's connection, made on first use and shared by its backends.
#[derive(Debug)]
pub struct Remote {
    pub name: String,
    pub config: RemoteConfig,
    client: OnceLock<std::result::Result<Client, String>>,
    quick: OnceLock<std::result::Result<Client, String>>,
    /// The remote's instances as last listed, and when: its two backends (containers and
    /// VMs) list together in `nox list`, and one request serves both.
    listing: std::sync::Mutex<Option<(std::time::Instant, Vec<crate::api::InstanceFull>)>>,
}

impl Remote {
    pub fn new(name: &str, config: RemoteConfig) -> Remote {
        Remote {
            name: name.into(),
            config,
            client: OnceLock::new(),
            quick: OnceLock::new(),
            listing: std::sync::Mutex::new(None),
        }
    }

    /// Every instance with its state, in one request (Incus asks each member), shared by
    /// the calls of the next second. The lock is held while asking, so a second caller waits
    /// for the first's answer instead of asking again.
    pub fn instances(&self) -> Result<Vec<crate::api::InstanceFull>> {
        let mut cached = self.listing.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, all)) = cached.as_ref() {
            if at.elapsed() < std::time::Duration::from_secs(1) {
                return Ok(all.clone());
            }
        }
        let all = self
            .quick()?
            .instances_full()
            .map_err(|e| err(&self.name, "listing instances", e))?;
        *cached = Some((std::time::Instant::now(), all.clone()));
        Ok(all)
    }

    /// The client, connecting lazily (reading the certificate and key, no I/O to the server).
    pub fn client(&self) -> Result<&Client> {
        self.made(&self.client, Options::default())
    }

    /// A client for questions that must be answered quickly or not at all (`list`, `remote
    /// list`): a remote that accepts the connection and then stalls fails in seconds.
    pub fn quick(&self) -> Result<&Client> {
        self.made(
            &self.quick,
            Options {
                connect_timeout: std::time::Duration::from_secs(3),
                request_timeout: std::time::Duration::from_secs(5),
                ..Options::default()
            },
        )
    }

    fn made<'a>(
        &self,
        slot: &'a OnceLock<std::result::Result<Client, String>>,
        options: Options,
    ) -> Result<&'a Client> {
        slot.get_or_init(|| connect(&self.config, options).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| {
                Error::failed(
                    format!("remote {}: {e}", self.name),
                    format!(
                        "check [remotes.{}] (url, client_cert, client_key, fingerprint)",
                        self.name
                    ),
                )
            })
    }
}

fn connect(cfg: &RemoteConfig, options: Options) -> std::result::Result<Client, crate::Error> {
    let identity = match (&cfg.client_cert, &cfg.client_key) {
        (Some(cert), Some(key)) => {
            refuse_readable_key(key)?;
            Some(crate::ClientIdentity::from_pem_files(cert, key)?)
        }
        _ => None,
    };
    let pin = cfg
        .fingerprint
        .as_deref()
        .map(str::parse::<crate::Fingerprint>)
        .transpose()?;
    Ok(Client::connect(&cfg.url, identity, pin, options)?.with_project(&cfg.project))
}

/// A client key others can read is a leaked key: refused, as nox refuses such S3 and Tailscale
/// credentials.
fn refuse_readable_key(key: &std::path::Path) -> std::result::Result<(), crate::Error> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(key)
        .map_err(|e| crate::Error::io(format!("reading {}", key.display()), e))?;
    if meta.mode() & 0o077 != 0 {
        return Err(crate::Error::Identity {
            path: key.to_path_buf(),
            message: format!(
                "readable by others (mode {:o}): run chmod 600 {}",
                meta.mode() & 0o777,
                key.display()
            ),
        });
    }
    Ok(())
}

/// The backends of remote `name`: containers and VMs, sharing one connection.
pub fn backends(
    name: &str,
    remote: &RemoteConfig,
    nox: &Config,
    host: &Host,
) -> Vec<Box<dyn Backend>> {
    let shared = Arc::new(Remote::new(name, remote.clone()));
    [BackendKind::Lxc, BackendKind::Vm]
        .into_iter()
        .map(|kind| {
            Box::new(IncusBackend {
                kind,
                remote: shared.clone(),
                nox: nox.clone(),
                host: host.clone(),
            }) as Box<dyn Backend>
        })
        .collect()
}

/// `nox remote add` and `nox remote list` for Incus remotes.
#[derive(Debug, Default, Clone, Copy)]
pub struct IncusDriver;

impl nox_core::remote::RemoteDriverOps for IncusDriver {
    fn driver(&self) -> nox_core::config::RemoteDriver {
        nox_core::config::RemoteDriver::Incus
    }

    fn add(
        &self,
        name: &nox_core::RemoteName,
        url: &str,
        token: Option<&str>,
        dir: &std::path::Path,
        note: &dyn Fn(&str),
    ) -> Result<RemoteConfig> {
        trust::add(name.as_str(), url, token, dir, note)
    }

    fn describe(&self, name: &nox_core::RemoteName, config: &RemoteConfig) -> Result<String> {
        trust::describe(&Remote::new(name.as_str(), config.clone()))
    }
}

/// Instances of one kind on one Incus remote.
#[derive(Debug, Clone)]
pub struct IncusBackend {
    kind: BackendKind,
    remote: Arc<Remote>,
    nox: Config,
    host: Host,
}

impl IncusBackend {
    fn client(&self) -> Result<&Client> {
        self.remote.client()
    }

    fn quick(&self) -> Result<&Client> {
        self.remote.quick()
    }

    fn instance_type(&self) -> InstanceType {
        match self.kind {
            BackendKind::Lxc => InstanceType::Container,
            BackendKind::Vm => InstanceType::VirtualMachine,
        }
    }

    /// An Incus error as nox reports it: what failed, on which remote, and Incus's words.
    fn err(&self, what: &str, e: crate::Error) -> Error {
        err(&self.remote.name, what, e)
    }

    /// The instance, if it is nox's and of this backend's kind.
    fn ours(&self, name: &InstanceName) -> Result<crate::api::Instance> {
        let i = self.client()?.instance(name.as_str()).map_err(|e| {
            if e.is_not_found() {
                Error::NotFound {
                    name: format!("{}:{name}", self.remote.name),
                }
            } else {
                self.err("reading the instance", e)
            }
        })?;
        if !i.config.contains_key(RECORD_KEY) || i.kind != self.instance_type().as_str() {
            return Err(Error::Refused {
                message: format!(
                    "{}:{name} was not created by nox (or is not a {})",
                    self.remote.name, self.kind
                ),
                hint: "nox manages only the instances it created; use the incus CLI for others"
                    .into(),
            });
        }
        Ok(i)
    }

    fn running(&self, name: &InstanceName) -> Result<crate::api::Instance> {
        let i = self.ours(name)?;
        if !i.is_running() {
            return Err(Error::not_running(&format!("{}:{name}", self.remote.name)));
        }
        Ok(i)
    }

    fn qualified(&self, name: &InstanceName) -> String {
        format!("{}:{name}", self.remote.name)
    }

    fn set_config(&self, name: &InstanceName, pairs: &[(&str, String)]) -> Result<()> {
        let patch = InstancePatch {
            config: Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect(),
            ),
            ..Default::default()
        };
        self.client()?
            .patch_instance(name.as_str(), &patch)
            .map_err(|e| self.err("changing the instance's config", e))
    }

    /// Refuses a `--target` that is not a member of the cluster (bad input, exit 2).
    pub(crate) fn check_member(&self, member: &str) -> Result<()> {
        let members = self
            .quick()?
            .cluster_members()
            .map_err(|e| self.err("listing the cluster's members", e))?;
        if members.iter().any(|m| m.server_name == member) {
            return Ok(());
        }
        let names: Vec<&str> = members.iter().map(|m| m.server_name.as_str()).collect();
        Err(Error::Usage(format!(
            "remote {} has no member {member:?}{}",
            self.remote.name,
            if names.is_empty() {
                " (it is not a cluster)".to_string()
            } else {
                format!(": its members are {}", names.join(", "))
            }
        )))
    }

    /// `/etc/hostname` in the (stopped) instance: systemd sets the hostname from it at boot,
    /// over the one Incus gives the container (images without cloud-init keep their own).
    fn write_hostname(&self, name: &InstanceName, hostname: &InstanceName) -> Result<()> {
        self.client()?
            .push_file(
                name.as_str(),
                "/etc/hostname",
                format!("{hostname}\n").as_bytes(),
                crate::FileOwnership {
                    uid: Some(0),
                    gid: Some(0),
                    mode: Some(0o644),
                },
            )
            .map_err(|e| self.err("writing /etc/hostname", e))
    }

    /// Runs `argv` as root, its input `stdin`, its output into the sinks. A command that does
    /// not exist exits 127, as a shell says it.
    fn exec_io(
        &self,
        name: &InstanceName,
        argv: &[String],
        stdin: Stdin,
        stdout: &mut dyn Write,
        stderr: &mut dyn Write,
    ) -> Result<i32> {
        let cmd = ExecCommand::new(argv.iter().cloned());
        match self
            .client()?
            .exec(name.as_str(), &cmd, stdin, stdout, stderr)
        {
            Ok(code) => Ok(code),
            Err(crate::Error::Operation { message, .. })
                if message.contains("Command not found") =>
            {
                let _ = writeln!(
                    stderr,
                    "nox: {}: command not found in {}",
                    argv.first().map(String::as_str).unwrap_or(""),
                    self.qualified(name)
                );
                Ok(127)
            }
            Err(e) => Err(self.err("running a command", e)),
        }
    }

    /// Runs a command whose whole output is wanted, and fails unless it exits 0.
    fn run(&self, name: &InstanceName, argv: &[&str], stdin: Option<&str>) -> Result<Vec<u8>> {
        let (mut out, mut errs) = (Vec::new(), Vec::new());
        let argv: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
        let input = stdin.map_or(Stdin::Null, |s| Stdin::Bytes(s.as_bytes().to_vec()));
        let code = self.exec_io(name, &argv, input, &mut out, &mut errs)?;
        if code != 0 {
            return Err(BackendError::Command {
                command: argv.join(" "),
                instance: self.qualified(name),
                code,
                stderr: String::from_utf8_lossy(&errs).trim().to_string(),
            }
            .into());
        }
        Ok(out)
    }
}

/// An Incus error as nox reports it.
pub(crate) fn err(remote: &str, what: &str, e: crate::Error) -> Error {
    if e.is_unreachable() {
        return Error::failed(
            format!("remote {remote} did not answer ({what}): {e}"),
            format!("check that it is up; `nox remote list` shows [remotes.{remote}]"),
        );
    }
    if member_down(&e) {
        return Error::failed(
            format!("remote {remote}: the cluster member holding it does not answer ({what}): {e}"),
            format!(
                "`nox list` shows where each instance is; `nox remote list` shows which members of {remote} are online"
            ),
        );
    }
    BackendError::Remote {
        remote: remote.into(),
        what: what.into(),
        source: e,
    }
    .into()
}

/// Incus's answer when a request must go to a cluster member that is down.
fn member_down(e: &crate::Error) -> bool {
    matches!(e, crate::Error::Api { status: 500 | 503, message, .. }
        if message.contains("cluster member") || message.contains("isn't ready") || message.contains("offline"))
}

impl Backend for IncusBackend {
    fn kind(&self) -> BackendKind {
        self.kind
    }

    fn remote(&self) -> Option<&str> {
        Some(&self.remote.name)
    }

    fn host_checks(&self) -> Vec<Check> {
        // A remote is not this host's business; `nox remote list` says whether it answers.
        Vec::new()
    }

    fn preflight(&self, spec: &InstanceSpec) -> Result<()> {
        request::check(spec, &self.remote.name, &self.remote.config)?;
        self.nox.image_sources(&spec.image, self.kind).map(|_| ())
    }

    fn create(
        &self,
        spec: &InstanceSpec,
        options: CreateOptions,
        progress: &dyn Progress,
    ) -> Result<Instance> {
        self.preflight(spec)?;
        let client = self.client()?;
        let name = spec.name.as_str();
        if client.instance(name).is_ok() {
            return Err(Error::AlreadyExists {
                name: self.qualified(&spec.name),
                backend: format!("{} on {}", self.kind, self.remote.name),
            });
        }
        let sources = self.nox.image_sources(&spec.image, self.kind)?;
        let image = nox_core::image_build::first_working(
            &spec.image,
            self.kind,
            sources,
            &*self.host.builder,
            progress,
            |source| image::ensure(client, &self.remote.name, source, self.kind, progress),
        )?;
        let created_at =
            humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        // Created and started in one operation, as `incus launch` does; an image without
        // cloud-init gets its hostname with its user (ready.rs).
        let body = request::instance(spec, &self.remote.config, image, options.start, &created_at)?;
        progress.step(&format!(
            "creating {} on {}{}",
            spec.name,
            self.remote.name,
            options
                .target
                .as_deref()
                .map(|t| format!(" ({t})"))
                .unwrap_or_default()
        ));
        if let Some(t) = &options.target {
            self.check_member(t)?;
        }
        if let Err(e) = client.create_instance(&body, options.target.as_deref()) {
            // A create that failed (or timed out) may still have made the instance: it is
            // this create's to remove.
            if client.instance(name).is_ok() {
                let _ = client.stop_instance(name, 0, true);
                let _ = client.delete_instance(name);
            }
            return Err(self.err(&format!("creating {name}"), e));
        }
        progress.done();
        nox_core::fault::point("incus.create.made");
        // From here on a failure removes the instance again.
        let finish = || -> Result<()> {
            nox_core::interrupt::check()?;
            if options.start && options.wait {
                let cloud_init = ready::wait(self, &spec.name, options.timeout, progress)?;
                ready::provision(self, spec, cloud_init, progress)?;
            }
            Ok(())
        };
        if let Err(e) = finish() {
            let _ = client.stop_instance(name, 0, true);
            let _ = client.delete_instance(name);
            return Err(e);
        }
        self.status(&spec.name)
    }

    fn owns(&self, name: &InstanceName) -> Result<bool> {
        match self.ours(name) {
            Ok(_) => Ok(true),
            Err(Error::NotFound { .. }) | Err(Error::Refused { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn list(&self) -> Result<Vec<Instance>> {
        let all = self.remote.instances()?;
        let kind = self.instance_type().as_str();
        // An instance on a member that does not answer comes back as `Error` with no config:
        // whose it is cannot be read, so it is listed, unreachable, rather than hidden.
        let mut out: Vec<Instance> = all
            .iter()
            .filter(|i| i.instance.kind == kind)
            .filter(|i| i.instance.config.contains_key(RECORD_KEY) || status::unreachable(i))
            .map(|i| status::instance(&self.remote.name, self.kind, i))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn status(&self, name: &InstanceName) -> Result<Instance> {
        self.ours(name)?;
        let full = self
            .client()?
            .instance_full(name.as_str())
            .map_err(|e| self.err("reading the instance", e))?;
        Ok(status::instance(&self.remote.name, self.kind, &full))
    }

    fn start(
        &self,
        name: &InstanceName,
        wait: Option<Duration>,
        progress: &dyn Progress,
    ) -> Result<()> {
        let i = self.ours(name)?;
        if !i.is_running() {
            progress.step(&format!("starting {}", self.qualified(name)));
            self.client()?
                .start_instance(name.as_str())
                .map_err(|e| self.err(&format!("starting {name}"), e))?;
            progress.done();
        }
        if let Some(timeout) = wait {
            let cloud_init = ready::wait(self, name, timeout, progress)?;
            let spec = status::spec(&i)?;
            ready::provision(self, &spec, cloud_init, progress)?;
        }
        Ok(())
    }

    fn stop(
        &self,
        name: &InstanceName,
        force: bool,
        timeout: Duration,
        progress: &dyn Progress,
    ) -> Result<()> {
        let i = self.ours(name)?;
        if !i.is_running() {
            return Ok(());
        }
        progress.step(&format!("shutting {} down", self.qualified(name)));
        let client = self.client()?;
        let clean = if force {
            Err(crate::Error::Protocol {
                what: "stop".into(),
                message: "forced".into(),
            })
        } else {
            client.stop_instance(name.as_str(), timeout.as_secs().max(1) as i64, false)
        };
        if clean.is_err() {
            if !force {
                progress.warn(&format!(
                    "{} did not shut down within {}s: forcing it off",
                    self.qualified(name),
                    timeout.as_secs()
                ));
            }
            client
                .stop_instance(name.as_str(), -1, true)
                .map_err(|e| self.err(&format!("forcing {name} off"), e))?;
        }
        progress.done();
        Ok(())
    }

    fn delete(&self, name: &InstanceName, force: bool) -> Result<()> {
        let i = self.ours(name)?;
        let client = self.client()?;
        if i.is_running() {
            if !force {
                return Err(Error::Refused {
                    message: format!("{} is running", self.qualified(name)),
                    hint: format!(
                        "stop it first (`nox stop {q}`), or `nox delete --force {q}`",
                        q = self.qualified(name)
                    ),
                });
            }
            client
                .stop_instance(name.as_str(), -1, true)
                .map_err(|e| self.err(&format!("forcing {name} off"), e))?;
            nox_core::fault::point("incus.delete.stopped");
        }
        client
            .delete_instance(name.as_str())
            .map_err(|e| self.err(&format!("deleting {name}"), e))
    }

    fn recover(&self, name: &InstanceName, operation: Operation) -> Result<Vec<String>> {
        self.recover_instance(name, operation)
    }

    fn exec(&self, name: &InstanceName, argv: &[String]) -> Result<i32> {
        self.running(name)?;
        let (mut out, mut errs) = (std::io::stdout(), std::io::stderr());
        // stdin goes in as it comes, so `nox exec NAME -- cat <file` works as locally.
        let stdin = Stdin::Reader(Box::new(std::io::stdin()));
        self.exec_io(name, argv, stdin, &mut out, &mut errs)
    }

    fn exec_with(&self, name: &InstanceName, argv: &[String], io: ExecIo<'_>) -> Result<i32> {
        self.running(name)?;
        let stdin = if io.stdin.is_empty() {
            Stdin::Null
        } else {
            Stdin::Bytes(io.stdin.to_vec())
        };
        self.exec_io(name, argv, stdin, io.stdout, io.stderr)
    }

    fn enable_nesting(
        &self,
        name: &InstanceName,
        progress: &dyn Progress,
    ) -> Result<Option<String>> {
        let i = self.ours(name)?;
        if self.kind == BackendKind::Vm
            || i.config.get("security.nesting").map(String::as_str) == Some("true")
        {
            return Ok(None);
        }
        let mut spec = status::spec(&i)?;
        spec.nesting = true;
        self.set_config(
            name,
            &[
                ("security.nesting", "true".into()),
                (RECORD_KEY, request::record(&spec)?),
            ],
        )?;
        if !i.is_running() {
            return Ok(Some(format!(
                "enabled nesting in {} (takes effect when it starts)",
                self.qualified(name)
            )));
        }
        progress.step(&format!("restarting {} for nesting", self.qualified(name)));
        self.client()?
            .restart_instance(name.as_str(), 60, false)
            .map_err(|e| self.err(&format!("restarting {name}"), e))?;
        progress.done();
        ready::wait(self, name, Duration::from_secs(600), progress)?;
        Ok(Some(format!(
            "enabled nesting in {} and restarted it",
            self.qualified(name)
        )))
    }

    fn ssh(&self, name: &InstanceName, _command: &[String]) -> Result<Handoff> {
        self.ours(name)?;
        Err(Error::Refused {
            message: format!(
                "nox ssh does not reach instances on remote {}: their addresses are the remote's own",
                self.remote.name
            ),
            hint: format!(
                "`nox exec {} -- COMMAND` runs a command there",
                self.qualified(name)
            ),
        })
    }

    fn console(&self, name: &InstanceName) -> Result<Handoff> {
        self.ours(name)?;
        Err(Error::Refused {
            message: format!(
                "nox console does not attach to instances on remote {}",
                self.remote.name
            ),
            hint: format!(
                "`nox exec {} -- COMMAND` runs a command there; `incus console` attaches",
                self.qualified(name)
            ),
        })
    }

    fn passwd(&self, name: &InstanceName, user: &str) -> Result<Password> {
        self.running(name)?;
        let facts: &dyn HostFacts = &*self.host.facts;
        let password = facts.random_password()?;
        // chpasswd reads `user:password` on stdin: the password is on no command line. The
        // line is wiped too; the websocket's frame buffers (inside the client) are not ours.
        let line = Zeroizing::new(format!("{user}:{}\n", password.as_str()));
        self.run(name, &["chpasswd"], Some(&line))?;
        Ok(password)
    }

    fn resize(&self, name: &InstanceName, r: Resize, progress: &dyn Progress) -> Result<String> {
        let i = self.ours(name)?;
        let mut spec = status::spec(&i)?;
        let mut config = Vec::new();
        let mut devices = std::collections::BTreeMap::new();
        if let Some(c) = r.cpus {
            config.push(("limits.cpu", c.to_string()));
            spec.cpus = c;
        }
        if let Some(m) = r.memory_bytes {
            config.push(("limits.memory", format!("{}MiB", m >> 20)));
            spec.memory_bytes = m;
        }
        if let Some(d) = r.disk_bytes {
            if self.kind == BackendKind::Lxc {
                return Err(Error::Refused {
                    message:
                        "a container on an Incus remote has no disk size of its own to grow here"
                            .into(),
                    hint:
                        "resize --cpus or --memory; storage quotas are the remote's pool's business"
                            .into(),
                });
            }
            if d < spec.disk_bytes {
                return Err(Error::Refused {
                    message: format!(
                        "--disk is smaller than {}'s disk: shrinking would destroy data",
                        self.qualified(name)
                    ),
                    hint: "disks only grow; give a larger size".into(),
                });
            }
            devices.insert(
                "root".to_string(),
                request::root_disk(&self.remote.config, Some(d)),
            );
            spec.disk_bytes = d;
        }
        progress.step(&format!("resizing {}", self.qualified(name)));
        let patch = InstancePatch {
            config: Some(
                config
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .chain([(RECORD_KEY.to_string(), request::record(&spec)?)])
                    .collect(),
            ),
            devices: (!devices.is_empty()).then_some(devices),
            ..Default::default()
        };
        self.client()?
            .patch_instance(name.as_str(), &patch)
            .map_err(|e| self.err(&format!("resizing {name}"), e))?;
        progress.done();
        // Incus applies CPU and memory limits to a running container at once.
        Ok(match (self.kind, i.is_running()) {
            (BackendKind::Lxc, true) => "CPU and memory limits apply now".into(),
            (_, false) => String::new(),
            (BackendKind::Vm, true) => {
                "takes effect as Incus applies it (memory and CPUs may need a restart)".into()
            }
        })
    }
}

/// Where nox caches image files it imports into remotes.
pub(crate) fn cache_dir() -> PathBuf {
    nox_core::ssh_identity::xdg_dir("XDG_CACHE_HOME", ".cache")
        .map(|d| d.join("nox/remote-images"))
        .unwrap_or_else(|| PathBuf::from("/var/cache/nox/remote-images"))
}

/// `NetworkSpec`s a remote takes.
pub(crate) fn network_ok(n: &NetworkSpec) -> bool {
    matches!(n, NetworkSpec::Default | NetworkSpec::Bridge(_))
}
