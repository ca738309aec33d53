//! nox's container backend: LXC system containers, driven through liblxc.
//!
//! The default container is unprivileged (mapped into root's subordinate id ranges) and gets
//! `/dev/net/tun`, so Tailscale and other VPNs work without handing the container the host.
//! Each container is an overlay on a base unpacked once per image, in `[lxc] lxcpath/NAME/`.
//!
//! Where things live:
//! - `create.rs` makes a container (base, overlay, seed, config), `lifecycle.rs` starts, stops
//!   and deletes it, `list.rs` reads records and states, `ready.rs` waits for systemd and
//!   cloud-init and provisions images without cloud-init;
//! - `config.rs` renders the LXC config from typed structs (golden files), `record.rs` is
//!   nox's record beside it, `cgroup.rs` reads the host's cgroup layout, `subid.rs` root's
//!   subordinate ids;
//! - `images.rs` unpacks and caches base root filesystems, each named by a note
//!   (`base_note.rs`); `image_cache.rs` finds them on disk, with the containers using each,
//!   and `image_verbs.rs` is `nox image` on them (list, pull, rm, prune);
//! - `liblxc.rs` is the safe face of liblxc (`lxc-sys`); `access.rs` (ssh, console, passwd,
//!   resize, nesting) and `exec_io.rs` (exec with pipes) use it;
//! - `backup.rs` backs containers up (frozen tar + zstd) and restores them; `recover.rs`
//!   removes or thaws what a killed nox command left;
//! - `forwards.rs` makes port forwards real with nftables DNAT while the container runs;
//! - `host_checks.rs` is what `nox doctor` asks of this backend;
//! - `mounts.rs` adds and removes shared folders (idmapped bind mounts);
//! - `snapshot.rs` keeps snapshots (a frozen copy of the overlay's upper layer);
//! - `docker_volume.rs` is the host directory a container with nesting gets as
//!   `/var/lib/docker`, so Docker uses overlay2 there.
//!
//! Programs (tar, lxc-usernsexec) run through the host's
//! [`Runner`](nox_core::host::Runner); bridges and randomness come from its
//! [`HostFacts`](nox_core::host::HostFacts).

mod access;
pub mod backup;
pub mod base_note;
pub mod cgroup;
pub mod config;
mod create;
pub mod docker_volume;
pub mod error;
mod exec_io;
mod file_copy;
mod forwards;
mod freezer;
pub mod host_checks;
pub mod image_cache;
mod image_verbs;
pub mod images;
pub mod liblxc;
mod lifecycle;
pub mod list;
pub mod mounts;
mod ready;
pub mod record;
mod recover;
mod snapshot;
pub mod subid;
mod trash;

use std::time::Duration;

use nox_core::backend::{CreateOptions, ExecIo, Handoff, Resize};
use nox_core::config::Config;
use nox_core::host::Host;
use nox_core::image::ImageCache;
use nox_core::instance::{Instance, InstanceSpec};
use nox_core::secret::Password;
use nox_core::state::Operation;
use nox_core::{Backend, BackendKind, Check, Error, InstanceName, Progress};

/// The LXC backend, bound to one lxcpath.
#[derive(Debug, Clone)]
pub struct LxcBackend {
    config: Config,
    host: Host,
}

impl LxcBackend {
    pub fn new(config: Config, host: Host) -> Self {
        LxcBackend { config, host }
    }

    /// The base rootfs for `[images.NAME]` under `mapping`, from the first of its sources
    /// that works.
    fn base(
        &self,
        name: &str,
        mapping: images::Mapping,
        progress: &dyn Progress,
    ) -> Result<std::path::PathBuf, Error> {
        let sources = self.config.image_sources(name, BackendKind::Lxc)?;
        nox_core::image_build::first_working(
            name,
            BackendKind::Lxc,
            sources,
            &*self.host.builder,
            progress,
            |source| self.base_from(name, source, mapping, progress),
        )
    }

    /// The base rootfs for `source`, the `[images]` entry `name`, under `mapping`.
    fn base_from(
        &self,
        name: &str,
        source: &nox_core::config::ImageSource,
        mapping: images::Mapping,
        progress: &dyn Progress,
    ) -> Result<std::path::PathBuf, Error> {
        images::ensure_base(
            &*self.host.runner,
            &self.config.lxc.lxcpath,
            &self.config.lxc.image_server,
            name,
            source,
            mapping,
            progress,
        )
    }
}

impl Backend for LxcBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Lxc
    }

    fn host_checks(&self) -> Vec<Check> {
        host_checks::run(&self.config.lxc, &*self.host.facts)
    }

    /// The bridge, and for an unprivileged container root's subordinate ids.
    fn preflight(&self, spec: &InstanceSpec) -> Result<(), Error> {
        create::preflight(self, spec).map(|_| ())
    }

    fn image_cache(&self) -> Option<&dyn ImageCache> {
        Some(self)
    }

    fn create(
        &self,
        spec: &InstanceSpec,
        options: CreateOptions,
        progress: &dyn Progress,
    ) -> Result<Instance, Error> {
        create::create(self, spec, options, progress)
    }

    fn owns(&self, name: &InstanceName) -> Result<bool, Error> {
        Ok(self
            .config
            .lxc
            .lxcpath
            .join(name.as_str())
            .join(record::FILE)
            .is_file())
    }

    fn list(&self) -> Result<Vec<Instance>, Error> {
        list::list(self)
    }

    fn status(&self, name: &InstanceName) -> Result<Instance, Error> {
        list::status(self, name)
    }

    fn start(
        &self,
        name: &InstanceName,
        wait: Option<Duration>,
        progress: &dyn Progress,
    ) -> Result<(), Error> {
        lifecycle::start(self, name, wait, progress)
    }

    fn stop(
        &self,
        name: &InstanceName,
        force: bool,
        timeout: Duration,
        progress: &dyn Progress,
    ) -> Result<(), Error> {
        lifecycle::stop(self, name, force, timeout, progress)
    }

    fn delete(&self, name: &InstanceName, force: bool) -> Result<(), Error> {
        lifecycle::delete(self, name, force)
    }

    fn recover(&self, name: &InstanceName, operation: Operation) -> Result<Vec<String>, Error> {
        recover::recover(self, name, operation)
    }

    fn exec(&self, name: &InstanceName, argv: &[String]) -> Result<i32, Error> {
        access::exec(self, name, argv)
    }

    fn exec_with(
        &self,
        name: &InstanceName,
        argv: &[String],
        io: ExecIo<'_>,
    ) -> Result<i32, Error> {
        exec_io::exec_with(self, name, argv, io)
    }

    fn enable_nesting(
        &self,
        name: &InstanceName,
        progress: &dyn Progress,
    ) -> Result<Option<String>, Error> {
        access::enable_nesting(self, name, progress)
    }

    fn ssh(&self, name: &InstanceName, command: &[String]) -> Result<Handoff, Error> {
        access::ssh(self, name, command)
    }

    fn console(&self, name: &InstanceName) -> Result<Handoff, Error> {
        access::console(self, name)
    }

    fn passwd(&self, name: &InstanceName, user: &str) -> Result<Password, Error> {
        let facts: &dyn nox_core::host::HostFacts = &*self.host.facts;
        let password = facts.random_password()?;
        access::passwd(self, name, user, &password)?;
        Ok(password)
    }

    fn resize(
        &self,
        name: &InstanceName,
        resize: Resize,
        progress: &dyn Progress,
    ) -> Result<String, Error> {
        access::resize(self, name, resize, progress)
    }

    fn read_guest_file(
        &self,
        name: &InstanceName,
        path: &str,
        sink: &mut dyn std::io::Write,
    ) -> Result<(), Error> {
        file_copy::read(self, name, path, sink)
    }

    fn write_guest_file(
        &self,
        name: &InstanceName,
        path: &str,
        source: &mut dyn std::io::Read,
    ) -> Result<(), Error> {
        file_copy::write(self, name, path, source)
    }

    fn add_mount(
        &self,
        name: &InstanceName,
        mount: &nox_core::mounts::Mount,
    ) -> Result<String, Error> {
        mounts::add(self, name, mount)
    }

    fn remove_mount(&self, name: &InstanceName, guest: &std::path::Path) -> Result<String, Error> {
        mounts::remove(self, name, guest)
    }

    fn snapshots(&self) -> Option<&dyn nox_core::snapshot::SnapshotBackend> {
        Some(self)
    }

    fn forwards(&self, name: &InstanceName) -> Result<Vec<nox_core::forward::Forward>, Error> {
        forwards::list(self, name)
    }

    fn reapply_forwards(&self, name: &InstanceName, progress: &dyn Progress) -> Result<(), Error> {
        forwards::reapply(self, name, progress)
    }

    fn add_forward(
        &self,
        name: &InstanceName,
        forward: nox_core::forward::Forward,
    ) -> Result<Option<String>, Error> {
        forwards::add(self, name, forward)
    }

    fn remove_forward(
        &self,
        name: &InstanceName,
        key: nox_core::forward::ForwardKey,
    ) -> Result<(Vec<nox_core::forward::Forward>, Option<String>), Error> {
        forwards::remove(self, name, key)
    }
}

impl nox_core::backup::BackupBackend for LxcBackend {
    fn backup(
        &self,
        name: &InstanceName,
        request: &nox_core::backup::BackupRequest<'_>,
        staging: &std::path::Path,
        progress: &dyn Progress,
    ) -> Result<nox_core::backup::Manifest, Error> {
        backup::backup(self, name, request, staging, progress)
    }

    fn restore(
        &self,
        chain: &[nox_core::backup::LocalBackup],
        target: &InstanceName,
        options: nox_core::backup::RestoreOptions,
        progress: &dyn Progress,
    ) -> Result<Instance, Error> {
        backup::restore(self, chain, target, options, progress)
    }
}
