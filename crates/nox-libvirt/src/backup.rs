//! VM backups through libvirt's backup API (push mode) with checkpoints and QEMU's persistent
//! dirty bitmaps: the first backup is full, later ones copy only the clusters written since the
//! previous backup's checkpoint. No external snapshot or overlay is ever put on the VM's disk,
//! so nothing can be left behind on it; only one checkpoint (the newest backup's) is kept.
//!
//! The point in time: the guest's filesystems are frozen through the guest agent, the backup
//! job starts (QEMU copies before write from then on), and they are thawed at once, typically
//! within a second. Without an agent the backup is crash-consistent, and its manifest says so.
//!
//! QEMU writes the job's output (a qcow2, only changed clusters for an incremental) next to
//! the VM's disk, where it can reach; nox then compresses it into the backup (`qemu-img
//! convert -c`) and removes it. A restore reads the chain through one `json:` image spec that
//! stacks every incremental on its parent, and writes a standalone qcow2: the restored VM
//! needs neither the backups nor the base image it was created from.

use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nox_core::backup::{
    BackupKind, BackupRequest, Consistency, LocalBackup, Manifest, RestoreOptions, VmBackup, FORMAT,
};
use nox_core::instance::{Instance, InstanceState};
use nox_core::{interrupt, BackendKind, Error, InstanceName, Progress};
use serde::Serialize;
use virt::domain::Domain;
use virt::sys;

use crate::{accel, images, LibvirtBackend};

/// The disk nox backs up: the VM's one data disk. The seed CD-ROM is regenerated on restore.
const DISK: &str = "vda";
const SEED: &str = "sda";
const DISK_FILE: &str = "vda.qcow2";
/// Checkpoints nox makes are named `nox-ID`; others are the user's and never touched.
const CHECKPOINT_PREFIX: &str = "nox-";
/// QEMU's job output beside the VM's disk: `backup-ID.qcow2`, removed after compression.
const PUSH_PREFIX: &str = "backup-";
const POLL: Duration = Duration::from_millis(200);

mod xml {
    //! libvirt's `domaincheckpoint` and `domainbackup` schemas, as much as nox uses.
    use serde::Serialize;

    #[derive(Serialize)]
    #[serde(rename = "domaincheckpoint")]
    pub struct Checkpoint<'a> {
        pub name: &'a str,
        pub description: &'a str,
        pub disks: CheckpointDisks,
    }

    #[derive(Serialize)]
    pub struct CheckpointDisks {
        pub disk: Vec<CheckpointDisk>,
    }

    #[derive(Serialize)]
    pub struct CheckpointDisk {
        #[serde(rename = "@name")]
        pub name: &'static str,
        /// `bitmap`: track writes in a persistent dirty bitmap; `no`: not at all.
        #[serde(rename = "@checkpoint")]
        pub checkpoint: &'static str,
    }

    #[derive(Serialize)]
    #[serde(rename = "domainbackup")]
    pub struct Backup<'a> {
        #[serde(rename = "@mode")]
        pub mode: &'static str,
        /// The checkpoint an incremental backup copies the changes since.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub incremental: Option<&'a str>,
        pub disks: BackupDisks<'a>,
    }

    #[derive(Serialize)]
    pub struct BackupDisks<'a> {
        pub disk: Vec<BackupDisk<'a>>,
    }

    #[derive(Serialize)]
    pub struct BackupDisk<'a> {
        #[serde(rename = "@name")]
        pub name: &'static str,
        #[serde(rename = "@backup")]
        pub backup: &'static str,
        #[serde(rename = "@type", skip_serializing_if = "Option::is_none")]
        pub kind: Option<&'static str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub target: Option<Target<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub driver: Option<Driver>,
    }

    #[derive(Serialize)]
    pub struct Target<'a> {
        #[serde(rename = "@file")]
        pub file: &'a str,
    }

    #[derive(Serialize)]
    pub struct Driver {
        #[serde(rename = "@type")]
        pub format: &'static str,
    }
}

fn render<T: Serialize>(value: &T) -> String {
    let mut out = String::new();
    let mut ser = quick_xml::se::Serializer::new(&mut out);
    ser.indent(' ', 2);
    value.serialize(ser).expect("backup XML serializes");
    out.push('\n');
    out
}

/// The checkpoint a backup creates: a dirty bitmap on the data disk, none on the seed.
pub fn checkpoint_xml(name: &str) -> String {
    render(&xml::Checkpoint {
        name,
        description: "nox backup point; the next incremental backup starts here",
        disks: xml::CheckpointDisks {
            disk: vec![
                xml::CheckpointDisk {
                    name: DISK,
                    checkpoint: "bitmap",
                },
                xml::CheckpointDisk {
                    name: SEED,
                    checkpoint: "no",
                },
            ],
        },
    })
}

/// A push-mode backup of the data disk into `target` (qcow2), incremental since `since`.
pub fn backup_xml(target: &str, since: Option<&str>) -> String {
    render(&xml::Backup {
        mode: "push",
        incremental: since,
        disks: xml::BackupDisks {
            disk: vec![
                xml::BackupDisk {
                    name: DISK,
                    backup: "yes",
                    kind: Some("file"),
                    target: Some(xml::Target { file: target }),
                    driver: Some(xml::Driver { format: "qcow2" }),
                },
                xml::BackupDisk {
                    name: SEED,
                    backup: "no",
                    kind: None,
                    target: None,
                    driver: None,
                },
            ],
        },
    })
}

/// The image spec qemu-img reads a chain through: each backup over its parent, the full
/// backup at the bottom, no backing file names taken from the files themselves.
#[derive(Debug, Serialize)]
struct ImageSpec {
    driver: &'static str,
    file: FileSpec,
    /// `null` at the bottom: the full backup stands alone.
    backing: Option<Box<ImageSpec>>,
}

#[derive(Debug, Serialize)]
struct FileSpec {
    driver: &'static str,
    filename: String,
}

fn chain_spec(files: &[PathBuf]) -> Option<ImageSpec> {
    let mut spec: Option<ImageSpec> = None;
    for f in files {
        spec = Some(ImageSpec {
            driver: "qcow2",
            file: FileSpec {
                driver: "file",
                filename: f.display().to_string(),
            },
            backing: spec.map(Box::new),
        });
    }
    spec
}

fn last_error(context: &str) -> Error {
    Error::Backend(format!(
        "{context}: {}",
        virt::error::Error::last_error().message()
    ))
}

/// The names of the domain's checkpoints.
fn checkpoints(dom: &Domain) -> Result<Vec<String>, Error> {
    let mut list: *mut sys::virDomainCheckpointPtr = std::ptr::null_mut();
    // SAFETY: libvirt fills `list` with `n` checkpoint references, which we free below.
    let n = unsafe { sys::virDomainListAllCheckpoints(dom.as_ptr(), &mut list, 0) };
    if n < 0 {
        return Err(last_error("listing checkpoints"));
    }
    let mut names = Vec::with_capacity(n as usize);
    for i in 0..n as usize {
        // SAFETY: i < n; each element is a valid checkpoint until freed.
        unsafe {
            let cp = *list.add(i);
            let name = sys::virDomainCheckpointGetName(cp);
            if !name.is_null() {
                names.push(CStr::from_ptr(name).to_string_lossy().into_owned());
            }
            sys::virDomainCheckpointFree(cp);
        }
    }
    if !list.is_null() {
        // SAFETY: the array was allocated by libvirt with malloc.
        unsafe { libc::free(list.cast()) };
    }
    Ok(names)
}

fn delete_checkpoint(dom: &Domain, name: &str) -> Result<(), Error> {
    let cname = CString::new(name).map_err(|_| Error::Backend("bad checkpoint name".into()))?;
    // SAFETY: plain calls on a live domain; the checkpoint reference is freed.
    unsafe {
        let cp = sys::virDomainCheckpointLookupByName(dom.as_ptr(), cname.as_ptr(), 0);
        if cp.is_null() {
            return Ok(());
        }
        let rc = sys::virDomainCheckpointDelete(cp, 0);
        sys::virDomainCheckpointFree(cp);
        if rc < 0 {
            return Err(last_error(&format!("deleting checkpoint {name}")));
        }
    }
    Ok(())
}

/// Freezes the guest's filesystems; `Err` says why not (no agent, say).
fn freeze(dom: &Domain) -> Result<i32, String> {
    // SAFETY: NULL mountpoints with count 0 means all filesystems.
    let n = unsafe { sys::virDomainFSFreeze(dom.as_ptr(), std::ptr::null_mut(), 0, 0) };
    if n < 0 {
        Err(virt::error::Error::last_error().message().to_string())
    } else {
        Ok(n)
    }
}

fn thaw(dom: &Domain) {
    // SAFETY: as in freeze.
    unsafe {
        sys::virDomainFSThaw(dom.as_ptr(), std::ptr::null_mut(), 0, 0);
    }
}

/// Thaws the guest however the start of the backup ends.
struct Thaw<'d>(Option<&'d Domain>);

impl Drop for Thaw<'_> {
    fn drop(&mut self) {
        if let Some(d) = self.0.take() {
            thaw(d);
        }
    }
}

/// The type of the domain's active job (`VIR_DOMAIN_JOB_NONE` when there is none).
fn active_job(dom: &Domain) -> (i32, u64, u64) {
    match dom.job_info() {
        Ok(j) => (
            j.r#type,
            j.data_processed.unwrap_or(0),
            j.data_total.unwrap_or(0),
        ),
        Err(_) => (sys::VIR_DOMAIN_JOB_NONE as i32, 0, 0),
    }
}

/// How the last job ended: `VIR_DOMAIN_JOB_COMPLETED`, `_FAILED` or `_CANCELLED`.
fn completed_job(dom: &Domain) -> i32 {
    let mut kind: libc::c_int = 0;
    let mut params: sys::virTypedParameterPtr = std::ptr::null_mut();
    let mut n: libc::c_int = 0;
    // SAFETY: libvirt allocates params; virTypedParamsFree releases them.
    unsafe {
        let rc = sys::virDomainGetJobStats(
            dom.as_ptr(),
            &mut kind,
            &mut params,
            &mut n,
            sys::VIR_DOMAIN_JOB_STATS_COMPLETED,
        );
        if !params.is_null() {
            sys::virTypedParamsFree(params, n);
        }
        if rc < 0 {
            return sys::VIR_DOMAIN_JOB_FAILED as i32;
        }
    }
    kind
}

/// Removes what a killed backup left on the VM: its running job, a frozen guest, the job's
/// output beside the disk, and every nox checkpoint but `keep`.
fn clean_up(dom: &Domain, instance_dir: &Path, keep: Option<&str>, progress: &dyn Progress) {
    let (job, _, _) = active_job(dom);
    if job != sys::VIR_DOMAIN_JOB_NONE as i32 {
        progress.warn("aborting a backup job an interrupted backup left running");
        // SAFETY: plain call on a live domain.
        unsafe {
            sys::virDomainAbortJob(dom.as_ptr());
        }
        let start = Instant::now();
        while active_job(dom).0 != sys::VIR_DOMAIN_JOB_NONE as i32
            && start.elapsed() < Duration::from_secs(30)
        {
            std::thread::sleep(POLL);
        }
    }
    if dom.is_active().unwrap_or(false) {
        thaw(dom);
    }
    if let Ok(entries) = std::fs::read_dir(instance_dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(PUSH_PREFIX) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    for cp in checkpoints(dom).unwrap_or_default() {
        if cp.starts_with(CHECKPOINT_PREFIX) && Some(cp.as_str()) != keep {
            if let Err(e) = delete_checkpoint(dom, &cp) {
                progress.warn(&e.to_string());
            }
        }
    }
}

pub fn backup(
    b: &LibvirtBackend,
    name: &InstanceName,
    req: &BackupRequest<'_>,
    staging: &Path,
    progress: &dyn Progress,
) -> Result<Manifest, Error> {
    let conn = b.conn()?;
    let (dom, rec) = crate::list::find(&conn, name)?;
    let instance_dir = b.instance_dir(name.as_str());
    let running = crate::list::state(&dom) == InstanceState::Running;
    let created_at = nox_core::backup::rfc3339(std::time::SystemTime::now());
    // Incremental only on top of the newest backup, made from this VM's checkpoint.
    let parent = req
        .previous
        .filter(|_| req.incremental && running)
        .and_then(|(m, _)| m.vm.as_ref().map(|v| (m, v)))
        .filter(|(_, v)| v.uuid == dom.uuid_string().unwrap_or_default())
        .filter(|(_, v)| {
            checkpoints(&dom)
                .map(|c| c.contains(&v.checkpoint))
                .unwrap_or(false)
        });
    // The newest backup's checkpoint survives the clean-up even when this backup is full:
    // should this one fail or be killed, the next can still be incremental.
    let newest_checkpoint = req
        .previous
        .and_then(|(m, _)| m.vm.as_ref())
        .map(|v| v.checkpoint.as_str());
    clean_up(&dom, &instance_dir, newest_checkpoint, progress);
    let checkpoint = format!("{CHECKPOINT_PREFIX}{}", req.id);
    let out = staging.join(DISK_FILE);
    let (consistency, note) = if running {
        live_backup(
            &dom,
            &instance_dir,
            &checkpoint,
            parent.map(|(m, v)| (m, v, req.previous)),
            req,
            staging,
            progress,
        )?
    } else {
        // A stopped VM's disk does not change: read it directly. Its checkpoints are gone
        // (clean_up), so the next live backup is full.
        progress.step(&format!("compressing {name}'s disk"));
        convert(
            &["convert", "-c", "-O", "qcow2", "-m", "8", "-W", "-p"],
            &[instance_dir.join("disk.qcow2").as_os_str(), out.as_os_str()],
            progress,
        )?;
        progress.done();
        (
            Consistency::Application,
            "the VM was stopped: its disk was copied as the last shutdown left it".to_string(),
        )
    };
    progress.step("checksumming the backup");
    let entry = nox_core::backup::file_entry(staging, DISK_FILE, progress)?;
    progress.done();
    let virtual_size = qemu_img_virtual_size(&out)?;
    Ok(Manifest {
        format: FORMAT,
        nox_version: env!("CARGO_PKG_VERSION").into(),
        id: req.id.into(),
        instance: name.to_string(),
        backend: BackendKind::Vm,
        created_at,
        kind: if parent.is_some() {
            BackupKind::Incremental
        } else {
            BackupKind::Full
        },
        parent: parent.map(|(m, _)| m.id.clone()),
        consistency,
        note: Some(note),
        spec: rec.spec.clone(),
        autostart: dom.autostart().unwrap_or(rec.spec.autostart),
        was_running: running,
        vm: Some(VmBackup {
            uuid: dom.uuid_string().unwrap_or_default(),
            mac: rec.mac.clone(),
            checkpoint: if running { checkpoint } else { String::new() },
            disk_target: DISK.into(),
            disk_file: DISK_FILE.into(),
            virtual_size,
            image_checksum: rec.image_checksum.clone(),
        }),
        lxc: None,
        files: vec![entry],
    })
}

type Parent<'a> = (&'a Manifest, &'a VmBackup, Option<(&'a Manifest, usize)>);

/// The live part: freeze, start the job with its checkpoint, thaw, wait, compress.
fn live_backup(
    dom: &Domain,
    instance_dir: &Path,
    checkpoint: &str,
    parent: Option<Parent<'_>>,
    req: &BackupRequest<'_>,
    staging: &Path,
    progress: &dyn Progress,
) -> Result<(Consistency, String), Error> {
    let push = instance_dir.join(format!("{PUSH_PREFIX}{}.qcow2", req.id));
    let _ = std::fs::remove_file(&push);
    let backup_xml = backup_xml(
        &push.display().to_string(),
        parent.map(|(_, v, _)| v.checkpoint.as_str()),
    );
    let cp_xml = checkpoint_xml(checkpoint);
    progress.step("freezing the guest's filesystems");
    let frozen = freeze(dom);
    let guard = Thaw(frozen.is_ok().then_some(dom));
    let (consistency, note) = match &frozen {
        Ok(n) => (
            Consistency::Application,
            format!("{n} filesystems frozen through the guest agent at the point in time"),
        ),
        Err(why) => (
            Consistency::Crash,
            format!("the guest agent could not freeze the filesystems ({why})"),
        ),
    };
    let (bx, cx) = (
        CString::new(backup_xml).expect("no NUL in XML"),
        CString::new(cp_xml).expect("no NUL in XML"),
    );
    // SAFETY: both strings outlive the call.
    let rc = unsafe { sys::virDomainBackupBegin(dom.as_ptr(), bx.as_ptr(), cx.as_ptr(), 0) };
    // The point in time is fixed once the job has started: thaw at once.
    drop(guard);
    progress.done();
    if rc < 0 {
        let e = last_error("starting the backup job");
        let _ = std::fs::remove_file(&push);
        return Err(e);
    }
    // From here on a failure must not leave the new checkpoint: the next backup would take
    // it for a backup that exists.
    let fail = |e: Error| {
        let _ = delete_checkpoint(dom, checkpoint);
        let _ = std::fs::remove_file(&push);
        e
    };
    progress.step("copying the disk");
    loop {
        let (job, done, total) = active_job(dom);
        if job == sys::VIR_DOMAIN_JOB_NONE as i32 {
            break;
        }
        if total > 0 {
            progress.bytes(done, Some(total));
        }
        if interrupt::requested() {
            // SAFETY: plain call on a live domain.
            unsafe {
                sys::virDomainAbortJob(dom.as_ptr());
            }
            while active_job(dom).0 != sys::VIR_DOMAIN_JOB_NONE as i32 {
                std::thread::sleep(POLL);
            }
            return Err(fail(Error::failed(
                "interrupted",
                "nothing was kept of this backup",
            )));
        }
        std::thread::sleep(POLL);
    }
    progress.done();
    let result = completed_job(dom);
    if result != sys::VIR_DOMAIN_JOB_COMPLETED as i32 {
        return Err(fail(Error::Backend(format!(
            "the backup job ended without completing (job state {result}); see libvirtd's log"
        ))));
    }
    // The new checkpoint is the base of the next incremental; older ones are done with.
    for cp in checkpoints(dom).unwrap_or_default() {
        if cp.starts_with(CHECKPOINT_PREFIX) && cp != checkpoint {
            let _ = delete_checkpoint(dom, &cp);
        }
    }
    progress.step("compressing the backup");
    let out = staging.join(DISK_FILE);
    let r = match parent {
        None => convert(
            &["convert", "-c", "-O", "qcow2", "-m", "8", "-W", "-p"],
            &[push.as_os_str(), out.as_os_str()],
            progress,
        ),
        Some((pm, _, _)) => {
            // Only the clusters QEMU wrote (changed ones, zeroes included) are copied: the
            // output's backing is the parent backup for the duration of the convert, which
            // tells qemu-img what is unchanged; it is stripped after.
            let parent_file = staging
                .parent()
                .expect("staging is in the instance's backup dir")
                .join(&pm.id)
                .join(DISK_FILE);
            qemu_img(&[
                "rebase".as_ref(),
                "-u".as_ref(),
                "-F".as_ref(),
                "qcow2".as_ref(),
                "-b".as_ref(),
                parent_file.as_os_str(),
                push.as_os_str(),
            ])
            .and_then(|_| {
                convert(
                    &[
                        "convert", "-c", "-O", "qcow2", "-m", "8", "-W", "-p", "-F", "qcow2",
                    ],
                    &[
                        "-B".as_ref(),
                        parent_file.as_os_str(),
                        push.as_os_str(),
                        out.as_os_str(),
                    ],
                    progress,
                )
            })
            .and_then(|_| {
                qemu_img(&[
                    "rebase".as_ref(),
                    "-u".as_ref(),
                    "-b".as_ref(),
                    "".as_ref(),
                    out.as_os_str(),
                ])
            })
        }
    };
    let _ = std::fs::remove_file(&push);
    if let Err(e) = r {
        return Err(fail(e));
    }
    progress.done();
    Ok((consistency, note))
}

fn qemu_img(args: &[&std::ffi::OsStr]) -> Result<(), Error> {
    let out = Command::new("qemu-img")
        .args(args)
        .output()
        .map_err(|e| Error::io("running qemu-img (install qemu-utils)", e))?;
    if !out.status.success() {
        return Err(Error::Backend(format!(
            "qemu-img {}: {}",
            args.first()
                .map(|a| a.to_string_lossy())
                .unwrap_or_default(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Runs `qemu-img` with `-p` and turns its percentages into progress.
fn convert(
    flags: &[&str],
    rest: &[&std::ffi::OsStr],
    progress: &dyn Progress,
) -> Result<(), Error> {
    use std::io::Read;
    let mut child = Command::new("qemu-img")
        .args(flags)
        .args(rest)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io("running qemu-img (install qemu-utils)", e))?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut buf = [0u8; 256];
    let mut line = String::new();
    loop {
        let n = stdout.read(&mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        for ch in String::from_utf8_lossy(&buf[..n]).chars() {
            if ch == '\r' || ch == '\n' {
                // "    (42.50/100%)"
                if let Some(p) = line
                    .trim()
                    .strip_prefix('(')
                    .and_then(|l| l.split('/').next())
                    .and_then(|p| p.parse::<f64>().ok())
                {
                    progress.bytes((p * 100.0) as u64, Some(10_000));
                }
                line.clear();
            } else {
                line.push(ch);
            }
        }
        if interrupt::requested() {
            let _ = child.kill();
        }
    }
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    let status = child
        .wait()
        .map_err(|e| Error::io("waiting for qemu-img", e))?;
    interrupt::check()?;
    if !status.success() {
        return Err(Error::Backend(format!(
            "qemu-img convert failed: {}",
            stderr.trim()
        )));
    }
    Ok(())
}

fn qemu_img_virtual_size(path: &Path) -> Result<u64, Error> {
    let out = Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(path)
        .output()
        .map_err(|e| Error::io("running qemu-img (install qemu-utils)", e))?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| Error::Backend(format!("qemu-img info {}: {e}", path.display())))?;
    v["virtual-size"]
        .as_u64()
        .ok_or_else(|| Error::Backend(format!("qemu-img info {}: no virtual size", path.display())))
}

/// Removes a half-restored VM unless committed.
struct Undo<'c> {
    conn: &'c virt::connect::Connect,
    dir: PathBuf,
    domain: Option<String>,
    committed: bool,
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        if let Some(name) = &self.domain {
            let _ = crate::lifecycle::remove_domain(self.conn, name);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn restore(
    b: &LibvirtBackend,
    chain: &[LocalBackup],
    target: &InstanceName,
    options: RestoreOptions,
    progress: &dyn Progress,
) -> Result<Instance, Error> {
    let last = chain
        .last()
        .ok_or_else(|| Error::Backend("empty backup chain".into()))?;
    let m = &last.manifest;
    let info = m.vm.as_ref().ok_or_else(|| {
        Error::failed(
            format!("backup {}/{} has no VM section", m.instance, m.id),
            "the manifest is damaged",
        )
    })?;
    let conn = b.conn()?;
    let name = target.as_str();
    let _lock = crate::create::NameLock::take(&b.config.vm.storage_dir, name)?;
    if conn.lookup_domain_by_name(name).is_ok() {
        return Err(Error::AlreadyExists {
            name: name.into(),
            backend: "vm".into(),
        });
    }
    let accel = accel::choose(b.config.vm.domain_type, progress)?;
    let dir = b.instance_dir(name);
    let _ = std::fs::remove_dir_all(&dir);
    let mut undo = Undo {
        conn: &conn,
        dir: dir.clone(),
        domain: None,
        committed: false,
    };
    crate::create::create_dir(&dir, &b.config.vm.storage_dir)?;

    progress.step(&format!(
        "rebuilding the disk from {} backup{}",
        chain.len(),
        if chain.len() == 1 { "" } else { "s" }
    ));
    let files: Vec<PathBuf> = chain
        .iter()
        .map(|c| {
            let f = c
                .manifest
                .vm
                .as_ref()
                .map(|v| v.disk_file.clone())
                .unwrap_or_else(|| DISK_FILE.into());
            c.file(&f)
        })
        .collect();
    let spec = chain_spec(&files).expect("a chain has a backup");
    let source = format!(
        "json:{}",
        serde_json::to_string(&spec).expect("image spec serializes")
    );
    let disk = dir.join("disk.qcow2");
    convert(
        &["convert", "-O", "qcow2", "-m", "8", "-W", "-p"],
        &[source.as_ref(), disk.as_os_str()],
        progress,
    )?;
    images::set_mode(&disk, 0o600);
    progress.done();
    interrupt::check()?;

    let mut spec = m.spec.clone();
    spec.name = target.clone();
    spec.autostart = m.autostart;
    let (uuid, mac) = if options.new_identity {
        (
            uuid::Uuid::new_v4().to_string(),
            crate::create::random_mac(),
        )
    } else {
        (info.uuid.clone(), info.mac.clone())
    };
    // cloud-init keys its per-instance work on the instance id, which is the UUID: a new one
    // makes the restored guest take its new hostname and new SSH host keys.
    crate::create::define_and_boot(
        &conn,
        crate::create::Define {
            spec: &spec,
            uuid,
            mac,
            image_checksum: info.image_checksum.clone(),
            dir: dir.clone(),
            disk,
            accel,
        },
        &mut undo.domain,
        options.start.then_some(Some(options.timeout)),
        progress,
    )?;
    undo.committed = true;
    crate::list::status(b, target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn golden(name: &str, actual: &str) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("golden");
        nox_core::golden::assert_golden(&dir, name, actual);
    }

    #[test]
    fn golden_backup_and_checkpoint_xml() {
        golden("checkpoint.xml", &checkpoint_xml("nox-20261125T225012Z"));
        golden(
            "backup-full.xml",
            &backup_xml(
                "/var/lib/nox/vm/instances/web/backup-20261125T225012Z.qcow2",
                None,
            ),
        );
        golden(
            "backup-incremental.xml",
            &backup_xml(
                "/var/lib/nox/vm/instances/web/backup-20261125T230000Z.qcow2",
                Some("nox-20261125T225012Z"),
            ),
        );
    }

    #[test]
    fn a_chain_reads_each_backup_over_its_parent() {
        let spec = chain_spec(&[
            "/b/full.qcow2".into(),
            "/b/inc1.qcow2".into(),
            "/b/inc2.qcow2".into(),
        ])
        .unwrap();
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["file"]["filename"], "/b/inc2.qcow2");
        assert_eq!(json["backing"]["file"]["filename"], "/b/inc1.qcow2");
        assert_eq!(
            json["backing"]["backing"]["file"]["filename"],
            "/b/full.qcow2"
        );
        // The bottom names no backing: never the one written in the file's header.
        assert!(json["backing"]["backing"]["backing"].is_null());
        assert!(json["backing"]["backing"]
            .as_object()
            .unwrap()
            .contains_key("backing"));
    }
}
