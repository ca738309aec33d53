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
//! - `seed.rs` writes the cloud-init seed, `images.rs` keeps the image cache, `qemu_img.rs`
//!   holds every qemu-img call;
//! - `agent.rs` talks to the QEMU guest agent, which `exec.rs`, `access.rs` (ssh, console,
//!   passwd) and `resize.rs` use;
//! - `backup/` backs VMs up through libvirt's backup API and restores them;
//! - `accel.rs` and `kvm_probe.rs` decide between KVM and software emulation,
//!   `host_checks.rs` is what `nox doctor` asks of this backend;
//! - `network.rs` turns `--network` into a NIC, `connection.rs` opens libvirt;
//! - `forwards.rs` keeps `nox forward`s as passt port forwards of `--network user` VMs.
//!
//! Programs run through the host's [`Runner`](nox_core::host::Runner), and what the backend
//! reads of the host (interfaces, randomness) through its
//! [`HostFacts`](nox_core::host::HostFacts).

mod accel;
mod access;
pub mod agent;
pub mod backup;
mod connection;
mod create;
pub mod domain;
pub mod error;
mod exec;
mod forwards;
pub mod host_checks;
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
pub mod seed;

use std::path::PathBuf;
use std::time::Duration;

use nox_core::backend::{CreateOptions, ExecIo, Handoff, Resize};
use nox_core::config::{Config, ImageSource};
use nox_core::host::Host;
use nox_core::image::{CachedImage, ImageCache};
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

    fn image_source(&self, image: &str) -> Result<&ImageSource, Error> {
        self.config.image_source(image, BackendKind::Vm)
    }

    pub(crate) fn instance_dir(&self, name: &str) -> PathBuf {
        self.config.vm.storage_dir.join("instances").join(name)
    }

    /// Checksums of the base images existing VMs use (so `image rm` can refuse them).
    fn images_in_use(&self) -> Result<Vec<String>, Error> {
        let conn = self.conn()?;
        Ok(list::records(&conn)
            .into_iter()
            .map(|(_, r)| r.image_checksum)
            .collect())
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

    fn forwards(&self, name: &InstanceName) -> Result<Vec<nox_core::forward::Forward>, Error> {
        forwards::list(self, name)
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
        Ok(images::list(&self.config.vm.storage_dir))
    }

    fn pull(&self, name: &str, progress: &dyn Progress) -> Result<CachedImage, Error> {
        let source = self.image_source(name)?;
        images::ensure(self, name, source, progress)
    }

    fn remove(&self, which: &str) -> Result<Vec<CachedImage>, Error> {
        images::remove(&self.config.vm.storage_dir, which, &self.images_in_use()?)
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
