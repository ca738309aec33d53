//! `create`: image, overlay disk, seed, domain, in that order, undone in reverse on any
//! failure or Ctrl-C.

use std::path::{Path, PathBuf};

use nox_core::backend::CreateOptions;
use nox_core::cloud_init::Provisioning;
use nox_core::fetch::io_or_disk_full;
use nox_core::host::{Host, HostFacts};
use nox_core::instance::{Instance, InstanceSpec};
use nox_core::{interrupt, Error, Progress};
use virt::connect::Connect;

use crate::connection::{err, logged};
use crate::domain::{DomainSpec, Nic};
use crate::record::{VmRecord, RECORD_VERSION};
use crate::template::{self, CloneError, Shape};
use crate::{accel, images, network, qemu_img, readiness, LibvirtBackend};

/// What create (or a restore) has made so far; dropped uncommitted, it removes all of it.
pub(crate) struct Undo<'c> {
    pub conn: &'c Connect,
    pub dir: Option<PathBuf>,
    pub domain: Option<String>,
    pub committed: bool,
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        if let Some(name) = &self.domain {
            let _ = crate::lifecycle::remove_domain(self.conn, name);
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

pub fn create(
    b: &LibvirtBackend,
    spec: &InstanceSpec,
    options: CreateOptions,
    progress: &dyn Progress,
) -> Result<Instance, Error> {
    let conn = b.conn()?;
    let name = spec.name.as_str();
    if conn.lookup_domain_by_name(name).is_ok() {
        return Err(Error::AlreadyExists {
            name: name.into(),
            backend: "vm".into(),
        });
    }
    // Checked before the download: a wrong --network fails at once.
    network::preflight(&b.host, &spec.network)?;
    let image = base_for(b, &spec.image, spec.disk_bytes, progress)?;
    // Chosen once the inputs are known good, so a refused create prints only its error.
    let accel = accel::choose(b.config.vm.domain_type, &*b.host.runner, progress)?;
    if options.start && options.wait && !options.cold_boot && b.config.vm.templates {
        match template::cold_reason(spec) {
            None => {
                if let Some(instance) =
                    from_template(b, &conn, spec, &image, accel, &options, progress)?
                {
                    return Ok(instance);
                }
            }
            Some(why) => tracing::info!(name, why, "booting cold"),
        }
    }
    // Everything the VM owns lives in one directory, removed whole by delete.
    let dir = b.instance_dir(name);
    // A directory without a domain is what a killed create left: nothing else uses it.
    let _ = std::fs::remove_dir_all(&dir);
    let mut undo = Undo {
        conn: &conn,
        dir: Some(dir.clone()),
        domain: None,
        committed: false,
    };
    create_dir(&dir, &b.config.vm.storage_dir)?;

    progress.step("creating the disk");
    let disk = dir.join("disk.qcow2");
    qemu_img::create_overlay(&*b.host.runner, &image.path, &disk, spec.disk_bytes)?;
    // The guest's data is nobody else's: libvirt hands the file to QEMU's user itself.
    images::set_mode(&disk, 0o600);
    nox_core::fault::point("vm.create.disk");
    interrupt::check()?;

    let facts: &dyn HostFacts = &*b.host.facts;
    let mac = facts.random_mac(QEMU_OUI)?;
    let uuid = facts.random_uuid()?;

    define_and_boot(
        &conn,
        &b.host,
        Define {
            spec,
            uuid,
            mac,
            image_checksum: image.checksum.clone(),
            dir: dir.clone(),
            disk,
            accel,
            genid: None,
            template: None,
        },
        &mut undo.domain,
        options
            .start
            .then_some(options.wait.then_some(options.timeout)),
        progress,
    )?;
    undo.committed = true;
    crate::list::status(b, &spec.name)
}

/// The cached base of `[images.NAME]` for a disk of `disk_bytes`, fetched if need be;
/// refused when the disk is smaller than the image (create and `nox image warm` alike).
pub(crate) fn base_for(
    b: &LibvirtBackend,
    image_name: &str,
    disk_bytes: u64,
    progress: &dyn Progress,
) -> Result<nox_core::image::CachedImage, Error> {
    let image = b.image(image_name, progress)?;
    if disk_bytes < image.virtual_size_bytes {
        return Err(Error::Refused {
            message: format!(
                "--disk {} is smaller than image {image_name} ({})",
                nox_core::resources::format_bytes(disk_bytes),
                nox_core::resources::format_bytes(image.virtual_size_bytes)
            ),
            hint: format!(
                "give --disk {} or more",
                nox_core::resources::format_bytes(image.virtual_size_bytes.div_ceil(1 << 30) << 30)
            ),
        });
    }
    Ok(image)
}

/// Creates `spec` by restoring a clone of its shape's template, building the template first
/// if there is none. A template that no longer restores is discarded and built again once;
/// `None` when that fails too, and the caller boots the VM cold.
fn from_template(
    b: &LibvirtBackend,
    conn: &Connect,
    spec: &InstanceSpec,
    image: &nox_core::image::CachedImage,
    accel: crate::domain::Accel,
    options: &CreateOptions,
    progress: &dyn Progress,
) -> Result<Option<Instance>, Error> {
    let shape = Shape {
        image,
        cpus: spec.cpus,
        memory_bytes: spec.memory_bytes,
        disk_bytes: spec.disk_bytes,
        network: &spec.network,
        accel,
    };
    let name = spec.name.as_str();
    for attempt in 0..2 {
        let t = template::ensure(b, conn, &spec.image, &shape, options.timeout, progress)?;
        let Some(hold) = template::hold(b, &t)? else {
            // `image rm` took it in between: the next round builds it again.
            continue;
        };
        let cloned = template::clone(b, conn, spec, &t, accel, options.timeout, progress);
        drop(hold);
        match cloned {
            Ok(()) => return crate::list::status(b, &spec.name).map(Some),
            Err(CloneError::Other(e)) => return Err(e),
            Err(CloneError::Restore(why)) => {
                progress.done();
                template::discard(b, &t.note.key, progress)?;
                progress.warn(&if attempt == 0 {
                    format!("restoring {name} from its template failed ({why}); building the template again")
                } else {
                    format!("restoring {name} from a new template failed too ({why}); booting it cold")
                });
            }
        }
    }
    Ok(None)
}

/// The MAC prefix QEMU's own NICs use.
pub(crate) const QEMU_OUI: [u8; 3] = [0x52, 0x54, 0x00];

/// What a new domain is made of once its disk and seed exist (create and restore alike).
pub(crate) struct Define<'s> {
    pub spec: &'s InstanceSpec,
    pub uuid: String,
    pub mac: String,
    pub image_checksum: String,
    pub dir: PathBuf,
    pub disk: PathBuf,
    pub accel: crate::domain::Accel,
    /// The VM generation ID, for clones (see [`DomainSpec::genid`]).
    pub genid: Option<String>,
    /// The template a clone's disk overlays.
    pub template: Option<String>,
}

/// Writes the cloud-init seed (`DIR/seed.img`; its instance id is the UUID, so a new UUID
/// makes cloud-init treat the guest as a new machine), picks the NIC, puts the record into the
/// typed domain XML, defines the domain (naming it in
/// `undo_domain` only then), sets autostart, and with `boot` starts it, waiting for readiness
/// when `boot` holds a timeout.
pub(crate) fn define_and_boot(
    conn: &Connect,
    host: &Host,
    d: Define<'_>,
    undo_domain: &mut Option<String>,
    boot: Option<Option<std::time::Duration>>,
    progress: &dyn Progress,
) -> Result<(), Error> {
    let name = d.spec.name.as_str();
    let seed = d.dir.join("seed.img");
    crate::seed::write_seed(
        &Provisioning {
            instance_id: d.uuid.clone(),
            hostname: name.into(),
            user: d.spec.user.clone(),
            ssh_keys: d.spec.ssh_keys.clone(),
            password_hash: None,
            mac: Some(d.mac.clone()),
            mounts: d.spec.mounts.clone(),
        },
        &seed,
    )?;
    nox_core::fault::point("vm.define.seed");
    // A stopped VM's passt binds nothing, so its ports are looked up in the records: the SSH
    // port and its `nox forward` ports alike.
    let used_ports: Vec<u16> = crate::list::records(conn)
        .iter()
        .flat_map(|(_, r)| {
            r.ssh_port
                .into_iter()
                .chain(r.forwards.iter().map(|f| f.host_port))
        })
        .collect();
    let nic = network::resolve(conn, host, &d.spec.network, &used_ports)?;
    let ssh_port = match nic {
        Nic::User { ssh_port, .. } => Some(ssh_port),
        _ => None,
    };
    let record = VmRecord {
        version: RECORD_VERSION,
        spec: d.spec.clone(),
        image_checksum: d.image_checksum,
        dir: d.dir.clone(),
        mac: d.mac.clone(),
        ssh_port,
        created_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        labels: Default::default(),
        template: d.template,
        forwards: Vec::new(),
    };
    let xml = DomainSpec {
        name: name.into(),
        uuid: d.uuid,
        accel: d.accel,
        vcpus: d.spec.cpus,
        memory_mib: d.spec.memory_bytes >> 20,
        disk: d.disk.display().to_string(),
        seed: Some(seed.display().to_string()),
        mac: d.mac,
        nic,
        console_log: d.dir.join("console.log").display().to_string(),
        metadata_json: record.to_json(),
        shares: crate::shares::domain_shares(&d.spec.mounts)?,
        genid: d.genid,
    }
    .to_xml();
    let dom = logged("defineXML", name, || conn.define_domain_xml(&xml))
        .map_err(|e| err(&format!("libvirt refused the domain for {name}"), e))?;
    // Only now is the domain ours to remove: a define that failed (the name taken meanwhile by
    // virsh, say) must never make the rollback delete somebody else's domain.
    *undo_domain = Some(name.to_string());
    nox_core::fault::point("vm.define.defined");
    logged("setAutostart", name, || dom.set_autostart(d.spec.autostart))
        .map_err(|e| err("setting autostart", e))?;
    interrupt::check()?;

    if let Some(wait) = boot {
        progress.step(&format!("starting {name}"));
        logged("create", name, || dom.create()).map_err(|e| err(&format!("starting {name}"), e))?;
        nox_core::fault::point("vm.define.started");
        progress.done();
        if let Some(timeout) = wait {
            readiness::wait(&dom, name, timeout, progress)?;
        }
    }
    Ok(())
}

pub(crate) fn create_dir(dir: &Path, storage_dir: &Path) -> Result<(), Error> {
    // QEMU runs as an unprivileged user: it must traverse down to the disk (0711), not list.
    // Only directories nox creates get that mode; an existing one is the owner's business.
    for d in [
        storage_dir.to_path_buf(),
        storage_dir.join("instances"),
        dir.to_path_buf(),
    ] {
        if d.is_dir() {
            continue;
        }
        std::fs::create_dir_all(&d)
            .map_err(|e| io_or_disk_full(format!("creating {}", d.display()), e, storage_dir))?;
        images::set_mode(&d, 0o711);
    }
    Ok(())
}
