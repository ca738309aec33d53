//! VM snapshots: libvirt external snapshots on the VM's qcow2 chain. Taking one freezes the
//! disk's current file and puts a new qcow2 overlay on top for the guest's writes (about a
//! quarter of a second); with `--memory` the running machine's RAM is saved too, and a restore
//! resumes it. External, not internal: internal snapshots are refused with UEFI (pflash)
//! firmware and do not survive beside the dirty bitmaps backups keep; libvirt (9.9 and
//! later) reverts and deletes external ones itself.
//!
//! Consistency: a running VM's filesystems are frozen through the guest agent for the
//! instant of the switch (libvirt's quiesce). Without an answering agent the snapshot is
//! crash-consistent, and nox says so. A memory snapshot is not quiesced: it keeps the whole
//! machine, and a restore must not resume a frozen guest.
//!
//! Backups: snapshots leave the incremental chain alone (libvirt carries the dirty bitmaps
//! onto the new overlay). A restore puts back a disk the checkpoints' bitmaps no longer
//! describe, so it ends the chain: the next backup is full, and nox says so.
//!
//! Files, all in the instance's directory (removed with it by `nox delete`, whose undefine
//! drops libvirt's snapshot metadata): `disk.SNAP.qcow2`, the overlay started by snapshot
//! SNAP; `SNAP.mem`, its memory; libvirt names the overlays a restore makes `disk….NUMBER`.

mod xml;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nox_core::backup::{rfc3339, Consistency};
use nox_core::snapshot::{Snapshot, SnapshotBackend, SnapshotRequest, SnapshotRestored};
use nox_core::{Error, InstanceName, Progress};
use virt::domain::Domain;
use virt::domain_snapshot::DomainSnapshot;
use virt::sys;

use crate::connection::{err, logged};
use crate::list::find;
use crate::LibvirtBackend;

pub use xml::snapshot_xml;

const QUIESCED: &str =
    "nox: consistent: the guest's filesystems were frozen through its agent for the snapshot";
const STOPPED: &str = "nox: consistent: the VM was stopped";
const WITH_MEMORY: &str = "nox: consistent: the running machine's memory was saved with its disk";
const CRASH: &str = "nox: crash-consistent: the guest agent did not answer, so the guest's filesystems were not frozen (as after a power cut)";

/// How long a restored VM that ran before gets to be ready again.
const READY: std::time::Duration = std::time::Duration::from_secs(600);

/// The file the VM's data disk is on now: the newest overlay once snapshots exist.
pub(crate) fn active_disk(dom: &Domain) -> Result<PathBuf, Error> {
    let live = dom.is_active().unwrap_or(false);
    let flags = if live {
        0
    } else {
        sys::VIR_DOMAIN_XML_INACTIVE
    };
    let text = dom
        .xml_desc(flags)
        .map_err(|e| err("reading the domain's XML", e))?;
    disk_source(&text).ok_or_else(|| {
        Error::failure(format!(
            "the domain has no file-backed {} disk",
            crate::backup::DISK
        ))
    })
}

/// The `<source file>` of the disk whose target is `vda`, read with an XML reader.
fn disk_source(text: &str) -> Option<PathBuf> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(text);
    let (mut in_disk, mut depth, mut source, mut target) = (false, 0, None, None);
    let attr = |e: &quick_xml::events::BytesStart<'_>, key: &[u8]| {
        e.attributes()
            .flatten()
            .find(|a| a.key.as_ref() == key)
            .and_then(|a| a.unescape_value().ok().map(|v| v.into_owned()))
    };
    loop {
        match reader.read_event().ok()? {
            Event::Start(e) if e.name().as_ref() == b"disk" && !in_disk => {
                (in_disk, depth, source, target) = (true, 0, None, None);
            }
            Event::Start(e) if in_disk => {
                depth += 1;
                if depth == 1 && e.name().as_ref() == b"source" {
                    source = attr(&e, b"file");
                }
            }
            Event::Empty(e) if in_disk && depth == 0 => match e.name().as_ref() {
                b"source" => source = attr(&e, b"file"),
                b"target" => target = attr(&e, b"dev"),
                _ => {}
            },
            Event::End(e) if in_disk => {
                if depth == 0 && e.name().as_ref() == b"disk" {
                    in_disk = false;
                    if target.as_deref() == Some(crate::backup::DISK) {
                        return source.map(PathBuf::from);
                    }
                } else {
                    depth -= 1;
                }
            }
            Event::Eof => return None,
            _ => {}
        }
    }
}

fn lookup(dom: &Domain, name: &InstanceName, snap: &str) -> Result<DomainSnapshot, Error> {
    Domain::lookup_snapshot_by_name(dom, snap, 0).map_err(|_| Error::Refused {
        message: format!("{name} has no snapshot named {snap:?}"),
        hint: format!("`nox snapshots {name}` lists them"),
    })
}

fn describe(s: &DomainSnapshot) -> Option<Snapshot> {
    let d = xml::read(&s.xml_desc(0).ok()?)?;
    let memory = d.memory.as_ref().is_some_and(|m| m.snapshot == "external");
    let crash = d.description.starts_with("nox: crash-consistent");
    let note = d
        .description
        .split_once(": ")
        .and_then(|(_, rest)| rest.split_once(": "))
        .map(|(_, how)| how.to_string())
        .unwrap_or(d.description.clone());
    Some(Snapshot {
        name: d.name,
        created_at: rfc3339(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(d.creation_time),
        ),
        was_running: d.state != "shutoff",
        memory,
        consistency: if crash {
            Consistency::Crash
        } else {
            Consistency::Application
        },
        note,
    })
}

/// Files a restore made: libvirt creates them with its own umask; the guest's disk is root's
/// alone, as every other file nox keeps there.
fn keep_private(dir: &Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if let Ok(m) = e.metadata() {
            if m.is_file() && m.permissions().mode() & 0o077 != 0 {
                let _ = std::fs::set_permissions(
                    e.path(),
                    std::fs::Permissions::from_mode(m.permissions().mode() & 0o700),
                );
            }
        }
    }
}

impl SnapshotBackend for LibvirtBackend {
    fn take(
        &self,
        name: &InstanceName,
        request: &SnapshotRequest,
        progress: &dyn Progress,
    ) -> Result<Snapshot, Error> {
        let conn = self.conn()?;
        let (dom, _) = find(&conn, name)?;
        let snap = request.name.as_str();
        if Domain::lookup_snapshot_by_name(&dom, snap, 0).is_ok() {
            return Err(Error::Refused {
                message: format!("{name} already has a snapshot named {snap:?}"),
                hint: format!("pick another name, or `nox snapshot rm {name} {snap}` first"),
            });
        }
        let running = dom.is_active().unwrap_or(false);
        if request.memory && !running {
            return Err(Error::Refused {
                message: format!("{name} is stopped: --memory saves a running machine"),
                hint: format!("snapshot its disk alone (`nox snapshot {name}`), or start it first"),
            });
        }
        let dir = self.instance_dir(name.as_str());
        let overlay = dir.join(format!("disk.{snap}.qcow2"));
        let memory = request.memory.then(|| dir.join(format!("{snap}.mem")));
        for f in [Some(&overlay), memory.as_ref()].into_iter().flatten() {
            if f.exists() {
                return Err(Error::failure(format!(
                    "{} is in the way of snapshot {snap}: remove it if nothing uses it",
                    f.display()
                )));
            }
        }
        let overlay_s = overlay.to_string_lossy();
        let memory_s = memory.as_ref().map(|m| m.to_string_lossy().into_owned());
        let base_flags = sys::VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC
            | if request.memory {
                0
            } else {
                sys::VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY
            };
        let create = |description: &str, flags: u32| {
            let x = snapshot_xml(snap, description, &overlay_s, memory_s.as_deref());
            logged("snapshotCreateXML", name.as_str(), || {
                dom.create_snapshot_xml(&x, flags)
            })
        };
        // libvirt 11 cannot put an overlay on a stopped VM's disk while a backup checkpoint
        // exists ("not yet implemented"). A stopped VM's next backup would be full anyway
        // (it reads the disk, not a bitmap), so the chain ends here, said.
        if !running && crate::backup::end_chain(&dom)? > 0 {
            progress.warn(&format!(
                "the next backup of {name} is full: libvirt cannot snapshot a stopped VM's disk while it keeps a backup checkpoint"
            ));
        }
        progress.step(&format!("snapshotting {name}"));
        let made =
            if request.memory {
                create(WITH_MEMORY, base_flags)
            } else if running {
                create(QUIESCED, base_flags | sys::VIR_DOMAIN_SNAPSHOT_CREATE_QUIESCE).or_else(|e| {
                tracing::info!(error = %e, "quiescing failed: taking a crash-consistent snapshot");
                create(CRASH, base_flags)
            })
            } else {
                create(STOPPED, base_flags)
            };
        let made = made.map_err(|e| err(&format!("snapshotting {name}"), e))?;
        progress.done();
        describe(&made).ok_or_else(|| Error::failure(format!("cannot read back snapshot {snap}")))
    }

    fn list(&self, name: &InstanceName) -> Result<Vec<Snapshot>, Error> {
        let conn = self.conn()?;
        let (dom, _) = find(&conn, name)?;
        let all = dom
            .list_all_snapshots(0)
            .map_err(|e| err(&format!("listing {name}'s snapshots"), e))?;
        let mut out: Vec<Snapshot> = all.iter().filter_map(describe).collect();
        out.sort_by(|a, b| (&a.created_at, &a.name).cmp(&(&b.created_at, &b.name)));
        Ok(out)
    }

    fn restore(
        &self,
        name: &InstanceName,
        snapshot: &str,
        progress: &dyn Progress,
    ) -> Result<SnapshotRestored, Error> {
        let conn = self.conn()?;
        let (dom, _) = find(&conn, name)?;
        let s = lookup(&dom, name, snapshot)?;
        let was_running = dom.is_active().unwrap_or(false);
        progress.step(&format!("restoring {name} to snapshot {snapshot}"));
        // A disk-only snapshot's revert leaves the VM off; a memory one resumes it running.
        logged("snapshotRevert", name.as_str(), || s.revert(0))
            .map_err(|e| err(&format!("restoring {name} to snapshot {snapshot}"), e))?;
        nox_core::fault::point("vm.snapshot.reverted");
        keep_private(&self.instance_dir(name.as_str()));
        let mut notes = Vec::new();
        if crate::backup::end_chain(&dom)? > 0 {
            notes.push(format!(
                "the next backup of {name} is full: its disk is no longer the one the last backup's checkpoint describes"
            ));
        }
        let mut running = dom.is_active().unwrap_or(false);
        if was_running && !running {
            crate::lifecycle::start(self, name, Some(READY), progress)?;
            running = true;
            notes.push(format!("{name} was running: started it again"));
        }
        progress.done();
        Ok(SnapshotRestored { running, notes })
    }

    fn remove(&self, name: &InstanceName, snapshot: &str) -> Result<(), Error> {
        let conn = self.conn()?;
        let (dom, _) = find(&conn, name)?;
        let s = lookup(&dom, name, snapshot)?;
        let memory = describe(&s).filter(|d| d.memory).map(|_| {
            self.instance_dir(name.as_str())
                .join(format!("{snapshot}.mem"))
        });
        // libvirt merges the snapshot's overlay into its neighbour (block commit) and drops
        // what nothing needs any more.
        logged("snapshotDelete", name.as_str(), || s.delete(0))
            .map_err(|e| err(&format!("removing snapshot {snapshot} of {name}"), e))?;
        if let Some(m) = memory {
            let _ = std::fs::remove_file(m);
        }
        Ok(())
    }

    fn recover(&self, name: &InstanceName, was_running: bool) -> Result<Vec<String>, Error> {
        let conn = self.conn()?;
        let Ok((dom, _)) = find(&conn, name) else {
            return Ok(Vec::new());
        };
        let mut done = Vec::new();
        // libvirtd finishes or rolls back a snapshot call on its own (atomic), thawing the
        // guest itself; what nox may have left is a restore that did not get to end the
        // backup chain or start the VM again.
        if crate::backup::end_chain(&dom)? > 0 {
            done.push(format!(
                "ended {name}'s backup chain: its next backup is full"
            ));
        }
        keep_private(&self.instance_dir(name.as_str()));
        if was_running && !dom.is_active().unwrap_or(false) {
            crate::lifecycle::start(self, name, None, &nox_core::progress::Quiet)?;
            done.push(format!(
                "started {name} again, which the restore had stopped"
            ));
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_data_disk_not_the_seed_or_a_backing_file() {
        let text = "<domain><devices>\
            <disk type='file' device='cdrom'><source file='/d/seed.img'/><target dev='sda'/></disk>\
            <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>\
            <source file='/d/disk.snap0.qcow2' index='3'/>\
            <backingStore type='file' index='2'><format type='qcow2'/><source file='/d/disk.qcow2'/></backingStore>\
            <target dev='vda' bus='virtio'/></disk></devices></domain>";
        assert_eq!(
            disk_source(text),
            Some(PathBuf::from("/d/disk.snap0.qcow2"))
        );
        assert_eq!(disk_source("<domain/>"), None);
    }
}
