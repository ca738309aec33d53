//! Restoring a VM from a verified chain: one `qemu-img convert` reads every backup over its
//! parent through a `json:` image spec and writes a standalone disk; the domain is then
//! defined as `create` defines one, with a new identity when restored under a new name (a new
//! UUID and MAC, and nox-core's identity files reset in the disk, see `identity.rs`).

use std::path::PathBuf;

use nox_core::backup::{LocalBackup, RestoreOptions};
use nox_core::host::HostFacts;
use nox_core::instance::Instance;
use nox_core::{interrupt, Error, InstanceName, Progress};
use serde::Serialize;

use super::DISK_FILE;
use crate::{accel, images, qemu_img, LibvirtBackend};

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

pub fn restore(
    b: &LibvirtBackend,
    chain: &[LocalBackup],
    target: &InstanceName,
    options: RestoreOptions,
    progress: &dyn Progress,
) -> Result<Instance, Error> {
    let last = chain
        .last()
        .ok_or_else(|| Error::failure("empty backup chain"))?;
    let m = &last.manifest;
    let info = m.vm.as_ref().ok_or_else(|| {
        Error::failed(
            format!("backup {}/{} has no VM section", m.instance, m.id),
            "the manifest is damaged",
        )
    })?;
    let conn = b.conn()?;
    let name = target.as_str();
    if conn.lookup_domain_by_name(name).is_ok() {
        return Err(Error::AlreadyExists {
            name: name.into(),
            backend: "vm".into(),
        });
    }
    let accel = accel::choose(b.config.vm.domain_type, &*b.host.runner, progress)?;
    let dir = b.instance_dir(name);
    let _ = std::fs::remove_dir_all(&dir);
    // A half-restored VM is removed as a half-created one is.
    let mut undo = crate::create::Undo {
        conn: &conn,
        dir: Some(dir.clone()),
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
    let spec = chain_spec(&files).ok_or_else(|| Error::failure("empty backup chain"))?;
    let source = format!(
        "json:{}",
        serde_json::to_string(&spec).map_err(|e| Error::encode("the chain's image spec", e))?
    );
    let disk = dir.join("disk.qcow2");
    let runner = &*b.host.runner;
    if options.new_identity {
        // A copy's identity files are reset before its first boot, which needs the disk as a
        // raw image for a moment (see identity.rs); the raw file goes with the directory if
        // anything fails.
        let raw = dir.join("disk.raw");
        qemu_img::convert(
            runner,
            source.as_ref(),
            &raw,
            qemu_img::Output::Raw,
            None,
            progress,
        )?;
        images::set_mode(&raw, 0o600);
        progress.done();
        interrupt::check()?;
        super::identity::reset_in_image(runner, &raw, name, progress)?;
        progress.step("writing the restored disk");
        qemu_img::convert(
            runner,
            raw.as_ref(),
            &disk,
            qemu_img::Output::Plain,
            None,
            progress,
        )?;
        std::fs::remove_file(&raw)
            .map_err(|e| Error::io(format!("removing {}", raw.display()), e))?;
    } else {
        qemu_img::convert(
            runner,
            source.as_ref(),
            &disk,
            qemu_img::Output::Plain,
            None,
            progress,
        )?;
    }
    images::set_mode(&disk, 0o600);
    progress.done();
    nox_core::fault::point("vm.restore.disk");
    interrupt::check()?;

    let mut spec = m.spec.clone();
    spec.name = target.clone();
    // Shared folders are host directories, not in the backup: restored without them.
    spec.mounts.clear();
    spec.autostart = m.autostart;
    let facts: &dyn HostFacts = &*b.host.facts;
    let (uuid, mac) = if options.new_identity {
        (
            facts.random_uuid()?,
            facts.random_mac(crate::create::QEMU_OUI)?,
        )
    } else {
        (info.uuid.clone(), info.mac.clone())
    };
    // cloud-init keys its per-instance work on the instance id, which is the UUID: a new one
    // makes the restored guest take its new hostname and new SSH host keys.
    crate::create::define_and_boot(
        &conn,
        &b.host,
        crate::create::Define {
            spec: &spec,
            uuid,
            mac,
            image_checksum: info.image_checksum.clone(),
            dir: dir.clone(),
            disk,
            accel,
            genid: None,
            template: None,
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
