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

//!
//! Files: `libvirt_api.rs` (the libvirt calls the `virt` crate lacks), `xml.rs` (checkpoint
//! and backup XML), `restore.rs`, `identity.rs` (a copy's machine identity reset in its
//! disk); this file decides and runs a backup.

mod identity;
mod libvirt_api;
mod restore;
mod xml;

use std::path::Path;
use std::time::Duration;

use nox_core::backup::{BackupKind, BackupRequest, Consistency, Manifest, VmBackup, FORMAT};
use nox_core::host::Runner;
use nox_core::instance::InstanceState;
use nox_core::wait::wait_until;
use nox_core::{interrupt, BackendKind, Error, InstanceName, Progress};
use virt::domain::Domain;
use virt::sys;

use crate::qemu_img::{self, Output};
use crate::LibvirtBackend;
use libvirt_api::{
    abort_job, active_job, begin_backup, checkpoints, completed_job, delete_checkpoint, freeze,
    thaw, Thaw,
};

pub use restore::restore;
pub use xml::{backup_xml, checkpoint_xml};

/// The disk nox backs up: the VM's one data disk. The seed CD-ROM is regenerated on restore.
pub(crate) const DISK: &str = "vda";
pub(crate) const SEED: &str = "sda";
const DISK_FILE: &str = "vda.qcow2";
/// Checkpoints nox makes are named `nox-ID`; others are the user's and never touched.
const CHECKPOINT_PREFIX: &str = "nox-";
/// QEMU's job output beside the VM's disk: `backup-ID.qcow2`, removed after compression.
const PUSH_PREFIX: &str = "backup-";
const POLL: Duration = Duration::from_millis(200);

/// The checkpoint backup `id` makes: `nox-ID`.
fn checkpoint_name(id: &str) -> String {
    format!("{CHECKPOINT_PREFIX}{id}")
}

fn no_job(dom: &Domain) -> bool {
    active_job(dom).0 == sys::VIR_DOMAIN_JOB_NONE as i32
}

/// Aborts the domain's active job and waits (30 s at most) until libvirt says it is gone.
fn abort_and_wait(dom: &Domain) {
    abort_job(dom);
    let _ = wait_until(Duration::from_secs(30), POLL, |_| {
        Ok::<_, ()>(no_job(dom).then_some(()))
    });
}

/// What a killed backup left that must not wait for the next backup: a running job (it
/// keeps writing beside the disk), a frozen guest, the job's output. Checkpoints stay: the
/// next backup knows which one its incremental needs and removes the rest.
pub fn after_interrupted_backup(dom: &Domain, instance_dir: &Path) -> Vec<String> {
    let mut done = Vec::new();
    if !no_job(dom) {
        abort_and_wait(dom);
        done.push("aborted the backup job it left running".to_string());
    }
    if dom.is_active().unwrap_or(false) && thaw(dom) {
        done.push("thawed the guest's filesystems".to_string());
    }
    if let Ok(entries) = std::fs::read_dir(instance_dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(PUSH_PREFIX) {
                let _ = std::fs::remove_file(e.path());
                done.push(format!("removed {}", e.path().display()));
            }
        }
    }
    done
}

/// Removes what a killed backup left on the VM: its running job, a frozen guest, the job's
/// output beside the disk, and every nox checkpoint but `keep`.
fn clean_up(dom: &Domain, instance_dir: &Path, keep: Option<&str>, progress: &dyn Progress) {
    if !no_job(dom) {
        progress.warn("aborting a backup job an interrupted backup left running");
        abort_and_wait(dom);
    }
    if dom.is_active().unwrap_or(false) {
        let _ = thaw(dom);
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
    let checkpoint = checkpoint_name(req.id);
    let out = staging.join(DISK_FILE);
    let (consistency, note) = if running {
        live_backup(
            &*b.host.runner,
            &dom,
            &instance_dir,
            parent.map(|(m, v)| (m, v, req.previous)),
            req,
            staging,
            progress,
        )?
    } else {
        // A stopped VM's disk does not change: read it directly. Its checkpoints are gone
        // (clean_up), so the next live backup is full.
        progress.step(&format!("compressing {name}'s disk"));
        // The newest overlay, once snapshots exist: it holds what the guest wrote last.
        let disk = crate::snapshot::active_disk(&dom)?;
        qemu_img::convert(
            &*b.host.runner,
            disk.as_os_str(),
            &out,
            Output::Compressed,
            None,
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
    let virtual_size = qemu_img::info(&*b.host.runner, &out)?.virtual_size;
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
        incus: None,
        files: vec![entry],
        encryption: None,
    })
}

type Parent<'a> = (&'a Manifest, &'a VmBackup, Option<(&'a Manifest, usize)>);

/// The live part: freeze, start the job with its checkpoint, thaw, wait, compress.
fn live_backup(
    runner: &dyn Runner,
    dom: &Domain,
    instance_dir: &Path,
    parent: Option<Parent<'_>>,
    req: &BackupRequest<'_>,
    staging: &Path,
    progress: &dyn Progress,
) -> Result<(Consistency, String), Error> {
    let checkpoint = checkpoint_name(req.id);
    let checkpoint = checkpoint.as_str();
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
    let begun = begin_backup(dom, &backup_xml, &cp_xml);
    nox_core::fault::point("vm.backup.frozen");
    // The point in time is fixed once the job has started: thaw at once.
    drop(guard);
    progress.done();
    if let Err(e) = begun {
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
    // The job has no time limit of its own: a big disk takes what it takes.
    let copied = wait_until(Duration::MAX, POLL, |_| {
        let (job, done, total) = active_job(dom);
        if job == sys::VIR_DOMAIN_JOB_NONE as i32 {
            return Ok(Some(()));
        }
        if total > 0 {
            progress.bytes(done, Some(total));
        }
        interrupt::check().map(|_| None)
    });
    if let Err(e) = copied {
        abort_and_wait(dom);
        return Err(fail(e));
    }
    progress.done();
    let result = completed_job(dom);
    if result != sys::VIR_DOMAIN_JOB_COMPLETED as i32 {
        return Err(fail(Error::failure(format!(
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
        None => qemu_img::convert(
            runner,
            push.as_os_str(),
            &out,
            Output::Compressed,
            None,
            progress,
        ),
        Some((pm, _, _)) => {
            // Only the clusters QEMU wrote (changed ones, zeroes included) are copied: the
            // output's backing is the parent backup for the duration of the convert, which
            // tells qemu-img what is unchanged; it is stripped after.
            let parent_file = staging
                .parent()
                .unwrap_or(staging)
                .join(&pm.id)
                .join(DISK_FILE);
            qemu_img::rebase_unsafe(runner, &push, Some(&parent_file))
                .and_then(|_| {
                    qemu_img::convert(
                        runner,
                        push.as_os_str(),
                        &out,
                        Output::Compressed,
                        Some(&parent_file),
                        progress,
                    )
                })
                .and_then(|_| qemu_img::rebase_unsafe(runner, &out, None))
        }
    };
    let _ = std::fs::remove_file(&push);
    if let Err(e) = r {
        return Err(fail(e));
    }
    progress.done();
    Ok((consistency, note))
}

/// Ends the incremental chain: removes every nox checkpoint of the VM, so its next backup is
/// full. A snapshot restore does this, since the disk it puts back is not the one the
/// checkpoints' dirty bitmaps describe. Returns how many there were.
pub(crate) fn end_chain(dom: &Domain) -> Result<usize, Error> {
    let mut n = 0;
    for cp in checkpoints(dom)? {
        if cp.starts_with(CHECKPOINT_PREFIX) {
            if delete_checkpoint(dom, &cp).is_err() {
                libvirt_api::forget_checkpoint(dom, &cp)?;
            }
            n += 1;
        }
    }
    Ok(n)
}
