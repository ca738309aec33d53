//! `resize`: CPU and memory for the next boot; the disk grows live, guest filesystem included.

use std::time::Duration;

use nox_core::backend::Resize;
use nox_core::resources::format_bytes;
use nox_core::{Error, InstanceName, Progress};
use virt::domain::Domain;
use virt::sys;

use crate::agent::GuestAgent;
use crate::connection::logged;
use crate::domain::{METADATA_NS, METADATA_PREFIX};
use crate::list::find;
use crate::record::VmRecord;
use crate::LibvirtBackend;

pub fn resize(
    b: &LibvirtBackend,
    name: &InstanceName,
    r: Resize,
    progress: &dyn Progress,
) -> Result<String, Error> {
    let conn = b.conn()?;
    let (dom, mut rec) = find(&conn, name)?;
    let running = dom.is_active().unwrap_or(false);
    fn lv(what: &'static str) -> impl Fn(virt::error::Error) -> Error {
        move |e| crate::connection::err(what, e)
    }
    if let Some(disk) = r.disk_bytes {
        if disk < rec.spec.disk_bytes {
            return Err(Error::Refused {
                message: format!(
                    "--disk {} is smaller than {name}'s disk ({}): shrinking would destroy data",
                    format_bytes(disk),
                    format_bytes(rec.spec.disk_bytes)
                ),
                hint: "disks only grow; give a larger size".into(),
            });
        }
    }
    let mut notes = Vec::new();
    let config = sys::VIR_DOMAIN_AFFECT_CONFIG;
    if let Some(cpus) = r.cpus {
        logged("setVcpusFlags", name.as_str(), || {
            dom.set_vcpus_flags(cpus, config | sys::VIR_DOMAIN_VCPU_MAXIMUM)
                .and_then(|_| dom.set_vcpus_flags(cpus, config))
        })
        .map_err(lv("setting the CPU count"))?;
        rec.spec.cpus = cpus;
    }
    if let Some(mem) = r.memory_bytes {
        let kib = mem / 1024;
        logged("setMemoryFlags", name.as_str(), || {
            dom.set_memory_flags(kib, config | sys::VIR_DOMAIN_MEM_MAXIMUM)
                .and_then(|_| dom.set_memory_flags(kib, config))
        })
        .map_err(lv("setting the memory"))?;
        rec.spec.memory_bytes = mem;
    }
    if (r.cpus.is_some() || r.memory_bytes.is_some()) && running {
        notes.push(
            "CPU and memory take effect at the next boot (`nox restart`, or resize with --restart)"
                .to_string(),
        );
    }
    if let Some(disk) = r.disk_bytes.filter(|d| *d > rec.spec.disk_bytes) {
        progress.step(&format!("growing {name}'s disk to {}", format_bytes(disk)));
        if running {
            logged("blockResize", name.as_str(), || {
                dom.block_resize("vda", disk, sys::VIR_DOMAIN_BLOCK_RESIZE_BYTES)
            })
            .map_err(lv("growing the disk"))?;
            // The disk has grown whatever happens inside the guest next: record it now.
            rec.spec.disk_bytes = disk;
            save_record(&dom, &rec, running)?;
            grow_guest_filesystem(&dom)?;
            notes.push(format!(
                "disk grown to {} and the root filesystem with it",
                format_bytes(disk)
            ));
        } else {
            // The newest overlay, once snapshots exist: the guest sees its size.
            let file = crate::snapshot::active_disk(&dom)?;
            crate::qemu_img::resize(&*b.host.runner, &file, disk)?;
            notes.push(format!(
                "disk grown to {}; the guest grows its filesystem at the next boot",
                format_bytes(disk)
            ));
        }
        progress.done();
        rec.spec.disk_bytes = disk;
    }
    save_record(&dom, &rec, running)?;
    Ok(notes.join("; "))
}

/// Grows the root partition and filesystem inside the guest, through the agent.
fn grow_guest_filesystem(dom: &Domain) -> Result<(), Error> {
    let agent = GuestAgent::new(dom);
    let t = Duration::from_secs(120);
    let fail = |what: &str, out: &crate::agent::ExecOutput| {
        Error::failed(
            format!(
                "{what} failed in the guest (exit {}): {}",
                out.code,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            "the disk itself was grown; grow the filesystem by hand (growpart, resize2fs)",
        )
    };
    let src = agent.run(&["findmnt", "-no", "SOURCE,FSTYPE", "/"], None, t)?;
    let text = src.stdout_text();
    let mut parts = text.split_whitespace();
    let (source, fstype) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (disk, number) = split_partition(source)
        .ok_or_else(|| Error::failure(format!("cannot tell the root partition from {source:?}")))?;
    let grow = agent.run(&["growpart", &disk, &number], None, t)?;
    // growpart exits 1 with NOCHANGE when the partition already fills the disk.
    if grow.code != 0 && !grow.stdout_text().contains("NOCHANGE") {
        return Err(fail("growpart", &grow));
    }
    let fs = if fstype == "xfs" {
        agent.run(&["xfs_growfs", "/"], None, t)?
    } else {
        agent.run(&["resize2fs", source], None, t)?
    };
    if fs.code != 0 {
        return Err(fail("growing the filesystem", &fs));
    }
    Ok(())
}

/// `/dev/vda1` -> (`/dev/vda`, `1`); `/dev/nvme0n1p2` -> (`/dev/nvme0n1`, `2`).
pub fn split_partition(source: &str) -> Option<(String, String)> {
    let digits = source.len() - source.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 {
        return None;
    }
    let (head, number) = source.split_at(source.len() - digits);
    let disk =
        if head.ends_with('p') && head[..head.len() - 1].ends_with(|c: char| c.is_ascii_digit()) {
            &head[..head.len() - 1]
        } else {
            head
        };
    Some((disk.to_string(), number.to_string()))
}

/// Rewrites nox's record in the domain's metadata (and the live copy when running).
pub fn save_record(dom: &Domain, rec: &VmRecord, running: bool) -> Result<(), Error> {
    let xml = format!(
        "<instance>{}</instance>",
        quick_xml::escape::escape(rec.to_json().as_str())
    );
    let mut flags = sys::VIR_DOMAIN_AFFECT_CONFIG;
    if running {
        flags |= sys::VIR_DOMAIN_AFFECT_LIVE;
    }
    dom.set_metadata(
        2,
        Some(&xml),
        Some(METADATA_PREFIX),
        Some(METADATA_NS),
        flags,
    )
    .map_err(|e| crate::connection::err("saving nox's record", e))
}

#[cfg(test)]
mod tests {
    use super::split_partition;

    #[test]
    fn partitions_split_into_disk_and_number() {
        let s = split_partition;
        assert_eq!(s("/dev/vda1"), Some(("/dev/vda".into(), "1".into())));
        assert_eq!(s("/dev/sda15"), Some(("/dev/sda".into(), "15".into())));
        assert_eq!(
            s("/dev/nvme0n1p2"),
            Some(("/dev/nvme0n1".into(), "2".into()))
        );
        assert_eq!(s("/dev/mapper/root"), None);
    }
}
