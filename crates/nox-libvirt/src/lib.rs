//! nox's VM backend: libvirt virtual machines, driven through the libvirt API (the `virt`
//! crate), never by parsing `virsh` output.
//!
//! Each VM is a persistent libvirt domain whose `<metadata>` holds nox's record of it, a qcow2
//! overlay on a cached base image, and a cloud-init seed, all in
//! `[vm] storage_dir/instances/NAME/`.
//!
//! Where things live:
//! - `create.rs` makes a VM (disk, seed, domain, boot), `lifecycle.rs` starts, stops and
//!   deletes it, `list.rs` reads records and states, `readiness.rs` waits for a booted guest,
//!   `recover.rs` removes or settles what a killed nox command left;
//! - `domain.rs` renders domain XML and `network_xml.rs` libvirt's `default` network, both
//!   from typed structs pinned by golden files; `record.rs` is nox's record in `<metadata>`;
//! - `snapshot/` keeps snapshots (libvirt external snapshots, with memory on request);
//! - `seed.rs` writes the cloud-init seed, `images.rs` keeps the image cache, `image_verbs.rs`
//!   lists it and decides what `nox image rm|prune` take (bases and templates together),
//!   `qemu_img.rs` holds every qemu-img call;
//! - `agent.rs` talks to the QEMU guest agent, which `exec.rs`, `access.rs` (ssh, console,
//!   passwd) and `resize.rs` use;
//! - `backup/` backs VMs up through libvirt's backup API and restores them;
//! - `accel.rs` and `kvm_probe.rs` decide between KVM and software emulation,
//!   `host_checks.rs` is what `nox doctor` asks of this backend;
//! - `network.rs` turns `--network` into a NIC, `connection.rs` opens libvirt;
//! - `shares.rs` holds shared folders (virtiofs): the devices, hot-plug and the guest's mounts;
//! - `template.rs` keeps saved, booted templates and restores clones of them, with
//!   `save_image.rs` (libvirt's save image format), `clone_xml.rs` (the clone's saved XML) and
//!   `identity.rs` (the clone's own machine-id, keys, hostname, MAC and so on); `warm.rs`
//!   makes one ahead of time (`nox image warm`).
//! - `forwards.rs` keeps `nox forward`s as passt port forwards of `--network user` VMs.
//!
//! Programs run through the host's [`Runner`](nox_core::host::Runner), and what the backend
//! reads of the host (interfaces, randomness) through its
//! [`HostFacts`](nox_core::host::HostFacts).

mod accel;
mod access;
pub mod agent;
pub mod backup;
mod clone_account;
mod clone_xml;
mod connection;
mod create;
pub mod domain;
pub mod error;
mod exec;
pub mod file_copy;
mod forwards;
pub mod host_checks;
mod identity;
pub mod image_verbs;
pub mod images;
pub mod kvm_probe;
mod lifecycle;
pub mod list;
mod network;
mod network_xml;
mod qemu_img;
mod readiness;
pub mod record;
mod recover;
mod resize;
mod save_image;
pub mod seed;
pub mod shares;
mod snapshot;
pub mod template;
mod warm;

use std::path::PathBuf;
use std::time::Duration;

use nox_core::backend::{CreateOptions, ExecIo, Handoff, Resize};
use nox_core::config::Config;
use nox_core::host::Host;
use nox_core::image::{CachedImage, ImageCache, TemplateRequest, Warmed};
use nox_core::instance::{Instance, InstanceSpec};
use nox_core::state::Operation;
use nox_core::{Backend, BackendKind, Check, Error, InstanceName, Progress};
use virt::connect::Connect;

/// The VM backend, bound to one libvirt URI and storage directory.
#[derive(Debug, Clone)]
pub struct LibvirtBackend {
    config: Config,
    host: Host,
}

impl LibvirtBackend {
    pub fn new(config: Config, host: Host) -> Self {
        LibvirtBackend { config, host }
    }

    fn conn(&self) -> Result<Connect, Error> {
        connection::open(&self.config.vm.uri)
    }

    /// The cached base for `[images.NAME]`, from the first of its sources that works.
    fn image(&self, name: &str, progress: &dyn Progress) -> Result<CachedImage, Error> {
        let sources = self.config.image_sources(name, BackendKind::Vm)?;
        nox_core::image_build::first_working(
            name,
            BackendKind::Vm,
            sources,
            &*self.host.builder,
            progress,
            |source| images::ensure(self, name, source, progress),
        )
    }

    pub(crate) fn instance_dir(&self, name: &str) -> PathBuf {
        self.config.vm.storage_dir.join("instances").join(name)
    }

    /// Refuses while a VM create runs: it may hold an image no domain records yet. Called
    /// with the cache's lock held, so a create starting later waits for it to fetch.
    fn refuse_beside_creates(&self) -> Result<(), Error> {
        let state = nox_core::state::StateDir::new(&self.config.state.dir);
        nox_core::image::refuse_beside_creates(&state.creating(BackendKind::Vm)?)
    }
}

impl Backend for LibvirtBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Vm
    }

    fn host_checks(&self) -> Vec<Check> {
        host_checks::run(&self.config.vm, &*self.host.runner)
    }

    fn preflight(&self, spec: &InstanceSpec) -> Result<(), Error> {
        network::preflight(&self.host, &spec.network)
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
        let conn = self.conn()?;
        Ok(conn
            .lookup_domain_by_name(name.as_str())
            .ok()
            .and_then(|d| list::record(&d))
            .is_some())
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
        exec::exec(self, name, argv)
    }

    fn exec_with(
        &self,
        name: &InstanceName,
        argv: &[String],
        io: ExecIo<'_>,
    ) -> Result<i32, Error> {
        exec::exec_with(self, name, argv, io)
    }

    /// A VM runs its own kernel: Docker needs nothing from the host.
    fn enable_nesting(
        &self,
        name: &InstanceName,
        _progress: &dyn Progress,
    ) -> Result<Option<String>, Error> {
        self.status(name).map(|_| None)
    }

    fn ssh(&self, name: &InstanceName, command: &[String]) -> Result<Handoff, Error> {
        access::ssh(self, name, command)
    }

    fn console(&self, name: &InstanceName) -> Result<Handoff, Error> {
        access::console(self, name)
    }

    fn passwd(&self, name: &InstanceName, user: &str) -> Result<nox_core::secret::Password, Error> {
        access::passwd(self, name, user)
    }

    fn resize(
        &self,
        name: &InstanceName,
        resize: Resize,
        progress: &dyn Progress,
    ) -> Result<String, Error> {
        resize::resize(self, name, resize, progress)
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
        shares::add(self, name, mount)
    }

    fn remove_mount(&self, name: &InstanceName, guest: &std::path::Path) -> Result<String, Error> {
        shares::remove(self, name, guest)
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

impl ImageCache for LibvirtBackend {
    fn list(&self) -> Result<Vec<CachedImage>, Error> {
        Ok(image_verbs::list(self))
    }

    fn pull(&self, name: &str, progress: &dyn Progress) -> Result<CachedImage, Error> {
        self.image(name, progress)
    }

    fn add(
        &self,
        name: &str,
        source: &nox_core::config::ImageSource,
        progress: &dyn Progress,
    ) -> Result<CachedImage, Error> {
        images::ensure(self, name, source, progress)
    }

    fn remove(&self, which: &str) -> Result<Vec<CachedImage>, Error> {
        image_verbs::remove(self, which)
    }

    fn prune(&self) -> Result<Vec<CachedImage>, Error> {
        image_verbs::prune(self)
    }

    fn warm(&self, request: &TemplateRequest, progress: &dyn Progress) -> Result<Warmed, Error> {
        warm::warm(self, request, progress)
    }
}

impl nox_core::backup::BackupBackend for LibvirtBackend {
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
