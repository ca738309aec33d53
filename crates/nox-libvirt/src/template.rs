//! VM templates: a booted, idle guest of one shape, saved with libvirt's save API beside its
//! frozen disk overlay, so a new VM of that shape starts by restoring a copy instead of
//! booting. `identity.rs` then makes the copy its own machine.
//!
//! A shape is the base image, CPUs, memory, disk size, network and accelerator: everything a
//! saved machine's devices depend on. Each template lives in `TEMPLATES_DIR/KEY/`:
//! - `base.qcow2`, a hard link to the cached base image (a copy across filesystems), so the
//!   template does not depend on the cache entry it came from;
//! - `disk.qcow2`, the template's overlay on it, never written again: every clone's overlay
//!   sits on it;
//! - `state.sav`, the saved machine (root-only, 0600): its memory;
//! - `template.json`, written last, so a template without it is a build that did not finish.
//!
//! The template's guest is made to hold nothing a clone must not share: no SSH host keys on
//! its disk (sshd keeps them in memory until the clone replaces them), no account with keys
//! or a password, and a generation ID the clone replaces.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nox_core::cloud_init::Provisioning;
use nox_core::image::CachedImage;
use nox_core::instance::{InstanceSpec, NetworkSpec};
use nox_core::{interrupt, Error, Progress};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use virt::connect::Connect;
use virt::domain::Domain;

use crate::clone_xml::{self, CloneEdits};
use crate::connection::{err, logged};
use crate::create::{create_dir, Define, Undo, QEMU_OUI};
use crate::domain::{Accel, DomainSpec};
use crate::identity::{self, Identity, TEMPLATE_USER};
use crate::save_image::SaveImage;
use crate::{images, network, qemu_img, readiness, LibvirtBackend};

/// Bumped whenever what a template holds changes: older ones are then never restored.
const TEMPLATE_VERSION: u32 = 3;
/// Template domains are transient and named so no instance name can take it (instance names
/// have no dots); see [`domain_name`].
const DOMAIN_PREFIX: &str = "nox.template.";
const NOTE: &str = "template.json";
const STATE: &str = "state.sav";
const DISK: &str = "disk.qcow2";
/// A hard link to (or, across filesystems, a copy of) the cached base image.
const BASE: &str = "base.qcow2";

/// What a template is, as `nox image list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateNote {
    pub version: u32,
    pub key: String,
    /// The `[images]` entry its base was pulled as.
    pub image: String,
    pub image_checksum: String,
    pub cpus: u32,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
    pub network: String,
    pub accel: String,
    /// The MAC the saved NIC has; each clone's guest is told its own.
    pub mac: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// The saved state and the disk overlay, on disk.
    #[serde(default)]
    pub size_bytes: u64,
}

/// A template ready to clone.
#[derive(Debug, Clone)]
pub struct Template {
    pub dir: PathBuf,
    pub note: TemplateNote,
}

impl Template {
    fn state(&self) -> PathBuf {
        self.dir.join(STATE)
    }

    fn disk(&self) -> PathBuf {
        self.dir.join(DISK)
    }

    /// The template in `dir`, if it was finished by this version of nox.
    pub fn load(dir: &Path) -> Option<Template> {
        let note: TemplateNote =
            serde_json::from_slice(&std::fs::read(dir.join(NOTE)).ok()?).ok()?;
        if note.version != TEMPLATE_VERSION || !dir.join(STATE).is_file() {
            return None;
        }
        Some(Template {
            dir: dir.to_path_buf(),
            note,
        })
    }
}

/// The shape of a VM: what must match for one saved machine to become another.
#[derive(Debug, Clone, Copy)]
pub struct Shape<'a> {
    pub image: &'a CachedImage,
    pub cpus: u32,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
    pub network: &'a NetworkSpec,
    pub accel: Accel,
}

impl Shape<'_> {
    pub fn key(&self) -> String {
        let text = format!(
            "{TEMPLATE_VERSION}\n{}\n{}\n{}\n{}\n{}\n{:?}",
            self.image.checksum,
            self.cpus,
            self.memory_bytes,
            self.disk_bytes,
            self.network,
            self.accel
        );
        let digest = Sha256::digest(text.as_bytes());
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Why a VM is booted cold rather than cloned, or `None` if it can be cloned.
pub fn cold_reason(spec: &InstanceSpec) -> Option<&'static str> {
    if !spec.mounts.is_empty() {
        return Some("shared folders are set up at boot");
    }
    network_cold_reason(&spec.network)
}

/// Why VMs on `network` are booted cold rather than cloned, or `None` if they can be cloned.
pub fn network_cold_reason(network: &NetworkSpec) -> Option<&'static str> {
    if matches!(network, NetworkSpec::Macvtap(_)) {
        return Some("a macvtap NIC belongs to one MAC");
    }
    None
}

/// Every finished template under `dir`.
pub fn list(dir: &Path) -> Vec<Template> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<Template> = entries
        .flatten()
        .filter_map(|e| Template::load(&e.path()))
        .collect();
    out.sort_by(|a, b| {
        a.note
            .image
            .cmp(&b.note.image)
            .then(a.note.key.cmp(&b.note.key))
    });
    out
}

/// A directory under the templates directory, finished or not, as `nox image rm|prune` see
/// it: one a build left half-made, or an older nox made, is an entry too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub dir: PathBuf,
    /// Its note, when one is there and reads (an older version's may).
    pub note: Option<TemplateNote>,
    /// Finished by this version of nox: creates restore it.
    pub usable: bool,
}

/// Every template directory under `dir`, by key.
pub fn entries(dir: &Path) -> Vec<Entry> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<Entry> = read
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| {
            let dir = e.path();
            let note = std::fs::read(dir.join(NOTE))
                .ok()
                .and_then(|b| serde_json::from_slice::<TemplateNote>(&b).ok());
            Entry {
                key: e.file_name().to_string_lossy().into_owned(),
                usable: Template::load(&dir).is_some(),
                note,
                dir,
            }
        })
        .collect();
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

/// Removes a template's files. Clones overlay its disk, so callers check none is left, and
/// hold its lock ([`lock_path`]), so no build or restore of it is cut under.
pub fn remove(dir: &Path) -> Result<(), Error> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::io(format!("removing template {}", dir.display()), e))
        }
        _ => Ok(()),
    }
}

/// The lock a template's build, load and removal hold. Lock files stay when their template
/// goes: removing one another process has open would let two holders in at once.
pub fn lock_path(templates_dir: &Path, key: &str) -> PathBuf {
    templates_dir.join(format!("{key}.lock"))
}

fn lock(
    templates_dir: &Path,
    key: &str,
    progress: &dyn Progress,
) -> Result<nox_core::lock::LockGuard, Error> {
    nox_core::lock::lock_saying(&lock_path(templates_dir, key), || {
        progress.warn("another nox is building this template; waiting for it")
    })
}

/// The finished template of `shape`, if there is one now (`nox image warm` says so).
pub fn existing(b: &LibvirtBackend, shape: &Shape<'_>) -> Option<Template> {
    Template::load(&b.config.vm.templates_dir().join(shape.key()))
}

/// The transient domain a template is built in: `nox.template.KEY.DIR`, DIR a short hash of
/// the templates dir, so two templates dirs on one host (two storage dirs, or test runs) never
/// build, or clean up, each other's template of the same shape.
fn domain_name(templates_dir: &Path, key: &str) -> String {
    let digest = Sha256::digest(templates_dir.as_os_str().as_encoded_bytes());
    let dir: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("{DOMAIN_PREFIX}{key}.{dir}")
}

/// Template builds a killed nox left: the running transient domain (`nox.template.KEY.DIR`) and
/// the unfinished directory, for every template whose lock nobody holds. Says what it removed.
pub fn remove_abandoned_builds(b: &LibvirtBackend, conn: &Connect) -> Result<Vec<String>, Error> {
    let templates_dir = b.config.vm.templates_dir();
    let mut done = Vec::new();
    let domains = conn
        .list_all_domains(virt::sys::VIR_CONNECT_LIST_DOMAINS_TRANSIENT)
        .unwrap_or_default();
    for dom in domains {
        let Some((name, key)) = dom.name().ok().and_then(|n| {
            let key = n
                .strip_prefix(DOMAIN_PREFIX)?
                .split('.')
                .next()?
                .to_string();
            (n == domain_name(&templates_dir, &key)).then_some((n, key))
        }) else {
            continue;
        };
        let dir = templates_dir.join(&key);
        let ours = dom
            .xml_desc(0)
            .map(|x| x.contains(&*dir.to_string_lossy()))
            .unwrap_or(false);
        if !ours || !dir.is_dir() {
            continue;
        }
        let Some(_lock) = nox_core::lock::try_lock(&templates_dir.join(format!("{key}.lock")))?
        else {
            continue;
        };
        crate::lifecycle::remove_domain(conn, &name)?;
        if Template::load(&dir).is_none() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        done.push(format!("removed the unfinished template build {name}"));
    }
    Ok(done)
}

/// The template for `shape`, built now (a cold boot) if there is none.
pub fn ensure(
    b: &LibvirtBackend,
    conn: &Connect,
    image_name: &str,
    shape: &Shape<'_>,
    timeout: Duration,
    progress: &dyn Progress,
) -> Result<Template, Error> {
    let templates_dir = b.config.vm.templates_dir();
    create_dir(&templates_dir, &b.config.vm.storage_dir)?;
    let key = shape.key();
    let _lock = lock(&templates_dir, &key, progress)?;
    let dir = templates_dir.join(&key);
    if let Some(t) = Template::load(&dir) {
        return Ok(t);
    }
    build(b, conn, image_name, shape, &key, &dir, timeout, progress)
}

/// Holds `t` (its lock, shared) while a clone is made from its files, so `image rm` and
/// `prune`, which take the lock exclusively, never remove it under the clone. `None` when it
/// was removed between [`ensure`] and now.
pub fn hold(b: &LibvirtBackend, t: &Template) -> Result<Option<nox_core::lock::LockGuard>, Error> {
    let guard = nox_core::lock::lock_shared(&lock_path(&b.config.vm.templates_dir(), &t.note.key))?;
    Ok(Template::load(&t.dir).map(|_| guard))
}

/// Removes the template of `key` (a restore of it failed), under its lock.
pub fn discard(b: &LibvirtBackend, key: &str, progress: &dyn Progress) -> Result<(), Error> {
    let templates_dir = b.config.vm.templates_dir();
    let _lock = lock(&templates_dir, key, progress)?;
    match std::fs::remove_dir_all(templates_dir.join(key)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::io(format!("removing template {key}"), e))
        }
        _ => Ok(()),
    }
}

#[allow(clippy::too_many_arguments)]
fn build(
    b: &LibvirtBackend,
    conn: &Connect,
    image_name: &str,
    shape: &Shape<'_>,
    key: &str,
    dir: &Path,
    timeout: Duration,
    progress: &dyn Progress,
) -> Result<Template, Error> {
    let name = domain_name(dir.parent().unwrap_or(dir), key);
    // What a killed build of this templates dir left: its transient domain, still running,
    // and its files.
    crate::lifecycle::remove_domain(conn, &name)?;
    let _ = std::fs::remove_dir_all(dir);
    // Dropped before it is committed, this removes the directory (the transient domain is
    // destroyed below, on the way out).
    let mut undo = Undo {
        conn,
        dir: Some(dir.to_path_buf()),
        domain: None,
        committed: false,
    };
    create_dir(dir, &b.config.vm.storage_dir)?;
    progress.step(&format!(
        "booting a template of {image_name} ({} CPU, {} memory): once per shape",
        shape.cpus,
        nox_core::resources::format_bytes(shape.memory_bytes)
    ));
    progress.done();
    // The template keeps its own link to its base: it must outlive the image cache entry it
    // came from, which `image rm` (or another storage dir's owner) may remove.
    let base = dir.join(BASE);
    if std::fs::hard_link(&shape.image.path, &base).is_err() {
        std::fs::copy(&shape.image.path, &base).map_err(|e| {
            nox_core::fetch::io_or_disk_full(
                format!(
                    "copying {} to {}",
                    shape.image.path.display(),
                    base.display()
                ),
                e,
                dir,
            )
        })?;
        images::set_mode(&base, 0o644);
    }
    let disk = dir.join(DISK);
    qemu_img::create_overlay(&*b.host.runner, &base, &disk, shape.disk_bytes)?;
    let facts = &*b.host.facts;
    let mac = facts.random_mac(QEMU_OUI)?;
    let seed = dir.join("seed.img");
    crate::seed::write_seed(
        &Provisioning {
            instance_id: format!("nox-template-{key}"),
            hostname: "nox-template".into(),
            user: TEMPLATE_USER.into(),
            ssh_keys: Vec::new(),
            password_hash: None,
            mac: Some(mac.clone()),
            mounts: Vec::new(),
        },
        &seed,
    )?;
    let used_ports: Vec<u16> = crate::list::records(conn)
        .iter()
        .filter_map(|(_, r)| r.ssh_port)
        .collect();
    let nic = network::resolve(conn, &b.host, shape.network, &used_ports)?;
    let xml = DomainSpec {
        name: name.clone(),
        uuid: facts.random_uuid()?,
        accel: shape.accel,
        vcpus: shape.cpus,
        memory_mib: shape.memory_bytes >> 20,
        disk: disk.display().to_string(),
        seed: Some(seed.display().to_string()),
        mac: mac.clone(),
        nic,
        console_log: dir.join("console.log").display().to_string(),
        // Not a VmRecord: nox list never shows a template. The clone's record replaces it.
        metadata_json: serde_json::json!({ "template": key }).to_string(),
        shares: Vec::new(),
        genid: Some(facts.random_uuid()?),
    }
    .to_xml();
    let dom = logged("createXML", &name, || conn.create_domain_xml(&xml, 0))
        .map_err(|e| err(&format!("starting template {name}"), e))?;
    nox_core::fault::point("vm.template.started");
    let saved = (|| -> Result<(), Error> {
        readiness::wait(&dom, &name, timeout, progress)?;
        interrupt::check()?;
        prepare_guest(&dom, timeout)?;
        save(&dom, &name, dir, progress)
    })();
    if let Err(e) = saved {
        let _ = dom.destroy();
        return Err(e);
    }
    // QEMU reads the template's disk as a backing file for every clone, as its own user.
    images::set_mode(&disk, 0o644);
    let size_bytes = [DISK, STATE]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum();
    let note = TemplateNote {
        version: TEMPLATE_VERSION,
        key: key.into(),
        image: image_name.into(),
        image_checksum: shape.image.checksum.clone(),
        cpus: shape.cpus,
        memory_bytes: shape.memory_bytes,
        disk_bytes: shape.disk_bytes,
        network: shape.network.to_string(),
        accel: format!("{:?}", shape.accel).to_lowercase(),
        mac,
        created_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        size_bytes,
    };
    let tmp = dir.join(format!("{NOTE}.part"));
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(&note).expect("note serializes"),
    )
    .and_then(|_| std::fs::rename(&tmp, dir.join(NOTE)))
    .map_err(|e| Error::io(format!("writing {}", dir.join(NOTE).display()), e))?;
    undo.committed = true;
    Ok(Template {
        dir: dir.to_path_buf(),
        note,
    })
}

/// Runs [`identity::PREPARE`] in the template's guest, then gives the balloon time to report
/// the freed pages.
fn prepare_guest(dom: &Domain, timeout: Duration) -> Result<(), Error> {
    let agent = crate::agent::GuestAgent::new(dom);
    let out = agent.run(
        &[
            "/bin/sh",
            "-c",
            identity::PREPARE,
            "nox-prepare",
            TEMPLATE_USER,
        ],
        None,
        timeout,
    )?;
    if out.code != 0 {
        return Err(Error::failed(
            format!(
                "preparing the template: exited with {}: {}",
                out.code,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            "`nox create --cold-boot` boots without a template",
        ));
    }
    // The guest reports free pages about two seconds after they are freed (Linux's
    // page_reporting delay), in batches.
    std::thread::sleep(FREE_PAGE_REPORTING_DELAY);
    Ok(())
}

const FREE_PAGE_REPORTING_DELAY: Duration = Duration::from_secs(4);

/// Saves the running template to `DIR/state.sav` (through a partial name, so a killed save
/// is never taken for a template). libvirt then removes the transient domain.
fn save(dom: &Domain, name: &str, dir: &Path, progress: &dyn Progress) -> Result<(), Error> {
    progress.step("saving the template");
    let part = dir.join(format!("{STATE}.part"));
    let path = std::ffi::CString::new(part.display().to_string()).map_err(|_| {
        Error::failed(
            "a template path holds a NUL byte",
            "use another storage_dir",
        )
    })?;
    // The virt crate has no binding for virDomainSaveFlags.
    let rc = logged("save", name, || {
        // SAFETY: `dom` is a live domain handle and `path` a NUL-terminated string; both
        // outlive the call, and a null dxml is allowed.
        let rc = unsafe {
            virt::sys::virDomainSaveFlags(
                dom.as_ptr(),
                path.as_ptr(),
                std::ptr::null(),
                virt::sys::VIR_DOMAIN_SAVE_RUNNING,
            )
        };
        if rc < 0 {
            Err(virt::error::Error::last_error())
        } else {
            Ok(())
        }
    });
    rc.map_err(|e| err(&format!("saving template {name}"), e))?;
    std::fs::rename(&part, dir.join(STATE))
        .map_err(|e| Error::io(format!("keeping {}", dir.join(STATE).display()), e))?;
    progress.done();
    Ok(())
}

/// Why a clone could not be made from its template.
#[derive(Debug)]
pub enum CloneError {
    /// The template's saved state did not restore (say, QEMU changed): boot cold instead.
    Restore(String),
    /// Anything else, reported as it is.
    Other(Error),
}

impl From<Error> for CloneError {
    fn from(e: Error) -> Self {
        CloneError::Other(e)
    }
}

/// Makes the VM `spec` by restoring a copy of `t`, gives it its identity, and leaves it
/// running and ready. On failure nothing of it is left.
pub fn clone(
    b: &LibvirtBackend,
    conn: &Connect,
    spec: &InstanceSpec,
    t: &Template,
    accel: Accel,
    timeout: Duration,
    progress: &dyn Progress,
) -> Result<(), CloneError> {
    let name = spec.name.as_str();
    let dir = b.instance_dir(name);
    let _ = std::fs::remove_dir_all(&dir);
    let mut undo = Undo {
        conn,
        dir: Some(dir.clone()),
        domain: None,
        committed: false,
    };
    create_dir(&dir, &b.config.vm.storage_dir)?;
    progress.step(&format!("restoring {name} from its template"));
    let disk = dir.join(DISK);
    qemu_img::create_overlay(&*b.host.runner, &t.disk(), &disk, spec.disk_bytes)?;
    images::set_mode(&disk, 0o600);
    nox_core::fault::point("vm.clone.disk");
    let facts = &*b.host.facts;
    let mac = facts.random_mac(QEMU_OUI)?;
    let uuid = facts.random_uuid()?;
    let genid = facts.random_uuid()?;
    // The persistent definition, as a cold VM's (later starts boot it cold, from this seed).
    crate::create::define_and_boot(
        conn,
        &b.host,
        Define {
            spec,
            uuid: uuid.clone(),
            mac: mac.clone(),
            image_checksum: t.note.image_checksum.clone(),
            dir: dir.clone(),
            disk: disk.clone(),
            accel,
            genid: Some(genid.clone()),
            template: Some(t.note.key.clone()),
        },
        &mut undo.domain,
        None,
        progress,
    )?;
    let dom = conn
        .lookup_domain_by_name(name)
        .map_err(|e| err(&format!("finding {name}"), e))?;
    let record = crate::list::record(&dom)
        .ok_or_else(|| Error::failed(format!("{name} has no record"), "report this as a bug"))?;

    // The clone's own copy of the saved state, carrying its XML (see save_image.rs).
    let restore_err = |what: &dyn std::fmt::Display| CloneError::Restore(what.to_string());
    let saved = SaveImage::read(&t.state()).map_err(|e| restore_err(&e))?;
    let file = |f: &str| {
        (
            t.dir.join(f).display().to_string(),
            dir.join(f).display().to_string(),
        )
    };
    let xml = clone_xml::rewrite(
        &saved.xml,
        &CloneEdits {
            name: name.into(),
            uuid: uuid.clone(),
            genid,
            mac: mac.clone(),
            metadata_json: record.to_json(),
            files: [file(DISK), file("seed.img"), file("console.log")]
                .into_iter()
                .collect(),
            ssh_port: match record.ssh_port {
                Some(p) if matches!(spec.network, NetworkSpec::User) => Some(p),
                _ => None,
            },
        },
    )
    .map_err(|e| restore_err(&e))?;
    let state = dir.join(STATE);
    saved
        .copy_with_xml(&t.state(), &state, &xml)
        .map_err(|e| restore_err(&e))?;
    nox_core::fault::point("vm.clone.state");
    interrupt::check()?;
    let restored = logged("restore", name, || {
        conn.restore_domain_flags(
            &state.display().to_string(),
            None,
            virt::sys::VIR_DOMAIN_SAVE_RUNNING,
        )
    });
    let _ = std::fs::remove_file(&state);
    restored.map_err(|e| restore_err(&e.message()))?;
    progress.done();
    nox_core::fault::point("vm.clone.restored");

    progress.step(&format!("giving {name} its own identity"));
    identity::apply(
        &dom,
        facts,
        &Identity {
            hostname: name,
            user: &spec.user,
            ssh_keys: &spec.ssh_keys,
            instance_id: &uuid,
            template_mac: &t.note.mac,
            mac: &mac,
            dhcp_hint: match &spec.network {
                NetworkSpec::Default => network::free_address(conn, "default", facts),
                _ => None,
            },
        },
        &|| network::wait_nic_forwarding(&dom, facts, NIC_FORWARDING_LIMIT),
        timeout,
    )?;
    progress.done();
    undo.committed = true;
    Ok(())
}

/// Longer than an STP bridge's listening and learning (twice its forward delay, 4 s with
/// libvirt's settings); a bridge set slower than this gets the DHCP client's own retries.
const NIC_FORWARDING_LIMIT: Duration = Duration::from_secs(10);

/// A clone's restore and identity must be quick; a template is given as long as a boot.
pub const CLONE_TIMEOUT: Duration = Duration::from_secs(120);

#[cfg(test)]
mod tests {
    use super::*;

    fn image(checksum: &str) -> CachedImage {
        CachedImage {
            name: "debian-12".into(),
            backend: nox_core::BackendKind::Vm,
            checksum: checksum.into(),
            path: "/x".into(),
            url: "u".into(),
            size_bytes: 1,
            virtual_size_bytes: 1,
            kind: nox_core::image::ImageKind::Base,
            shape: None,
            created_at: None,
        }
    }

    #[test]
    fn every_part_of_a_shape_changes_its_key() {
        let img = image("sha256:aa");
        let net = NetworkSpec::Default;
        let base = Shape {
            image: &img,
            cpus: 1,
            memory_bytes: 1 << 30,
            disk_bytes: 10 << 30,
            network: &net,
            accel: Accel::Qemu,
        };
        let key = base.key();
        assert_eq!(key.len(), 16);
        let other_img = image("sha256:bb");
        let user = NetworkSpec::User;
        let variants = [
            Shape {
                image: &other_img,
                ..base
            },
            Shape { cpus: 2, ..base },
            Shape {
                memory_bytes: 2 << 30,
                ..base
            },
            Shape {
                disk_bytes: 20 << 30,
                ..base
            },
            Shape {
                network: &user,
                ..base
            },
            Shape {
                accel: Accel::Kvm,
                ..base
            },
        ];
        for v in variants {
            assert_ne!(v.key(), key);
        }
    }

    #[test]
    fn shared_folders_and_macvtap_boot_cold() {
        let mut spec: InstanceSpec = serde_json::from_value(serde_json::json!({
            "name": "web", "backend": "vm", "image": "debian-12", "cpus": 1,
            "memory_bytes": 1073741824u64, "disk_bytes": 10737418240u64, "network": "default",
            "autostart": true, "user": "nox", "ssh_keys": [], "privileged": false,
            "nesting": false, "tun": false
        }))
        .unwrap();
        assert_eq!(cold_reason(&spec), None);
        spec.network = NetworkSpec::Macvtap("eth0".into());
        assert!(cold_reason(&spec).is_some());
    }
}
