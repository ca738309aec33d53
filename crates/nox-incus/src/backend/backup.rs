//! Backups of instances on a remote: Incus's own export (`incus export`'s tarball), frozen at
//! one point in time, kept in nox's store (and S3) with nox's manifest and checksums like any
//! other backup; restored by importing it on the remote, on any member (`--target`).
//!
//! Incus exports are whole: every backup here is full. Incus keeps no copy once nox has it.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use nox_core::backup::{
    private_file, BackupBackend, BackupKind, BackupRequest, Consistency, HashingWriter,
    IncusBackup, LocalBackup, Manifest, RestoreOptions, FORMAT,
};
use nox_core::instance::Instance;
use nox_core::{Backend, Error, InstanceName, Progress, Result};

use super::{request, status, IncusBackend, RECORD_KEY};
use crate::api::{InstanceBackupsPost, InstanceStatePut};
use crate::{Client, FileOwnership};

const EXPORT_FILE: &str = "incus-export.tar.zst";

fn freeze_action(action: &str) -> InstanceStatePut {
    InstanceStatePut {
        action: action.into(),
        timeout: -1,
        force: false,
        stateful: false,
    }
}

/// Unfreezes the instance however the export ends.
struct Thaw<'c> {
    client: &'c Client,
    name: &'c str,
    frozen: bool,
}

impl Drop for Thaw<'_> {
    fn drop(&mut self) {
        if self.frozen {
            let _ = self
                .client
                .set_instance_state(self.name, &freeze_action("unfreeze"));
        }
    }
}

/// Starts an instance `--stop` shut down for its export again, however the export ends.
struct Restart<'b> {
    backend: &'b IncusBackend,
    name: &'b InstanceName,
    armed: bool,
    progress: &'b dyn Progress,
}

impl Drop for Restart<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.backend.start(self.name, None, self.progress);
        }
    }
}

/// Counts bytes into progress on their way to the backup file.
struct Counting<'p, W> {
    inner: W,
    done: u64,
    progress: &'p dyn Progress,
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.done += n as u64;
        self.progress.bytes(self.done, None);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl BackupBackend for IncusBackend {
    fn backup(
        &self,
        name: &InstanceName,
        req: &BackupRequest<'_>,
        staging: &Path,
        progress: &dyn Progress,
    ) -> Result<Manifest> {
        let i = self.ours(name)?;
        let spec = status::spec(&i)?;
        let client = self.client()?;
        let running = i.is_running();
        let export = format!("nox-{}", req.id);
        // `--stop`: a clean shutdown for the export, started again afterwards.
        let restart = Restart {
            backend: self,
            name,
            armed: running && req.stop,
            progress,
        };
        if restart.armed {
            self.stop(name, false, std::time::Duration::from_secs(60), progress)?;
        }
        let running = running && !req.stop;
        progress.step(&format!("exporting {} on {}", name, self.remote.name));
        // Frozen, every process sees one point in time, as for a local container backup.
        let (consistency, note) = if running {
            match client.set_instance_state(name.as_str(), &freeze_action("freeze")) {
                Ok(()) => (
                    Consistency::Application,
                    "the instance was frozen while Incus exported it".to_string(),
                ),
                Err(e) => (
                    Consistency::Crash,
                    format!("the instance could not be frozen ({e}): exported while running"),
                ),
            }
        } else if req.stop {
            (
                Consistency::Application,
                "the instance was shut down for the export (--stop) and started again".to_string(),
            )
        } else {
            (
                Consistency::Application,
                "the instance was stopped: exported as its last shutdown left it".to_string(),
            )
        };
        let thaw = Thaw {
            client,
            name: name.as_str(),
            frozen: running && consistency == Consistency::Application,
        };
        let made = client.create_backup(
            name.as_str(),
            &InstanceBackupsPost {
                name: export.clone(),
                // Should nox die before it deletes the export, Incus does (in a day).
                expires_at: Some(nox_core::backup::rfc3339(
                    std::time::SystemTime::now() + std::time::Duration::from_secs(24 * 3600),
                )),
                instance_only: true,
                optimized_storage: false,
                compression_algorithm: Some("zstd".into()),
            },
        );
        drop(thaw);
        if let Err(e) = made {
            let _ = client.delete_backup(name.as_str(), &export);
            return Err(self.err("exporting the instance", e));
        }
        progress.done();
        progress.step(&format!("downloading the export of {name}"));
        let path = staging.join(EXPORT_FILE);
        let downloaded = (|| -> Result<(u64, String)> {
            let file = private_file(&path)?;
            let mut sink = Counting {
                inner: HashingWriter::new(file),
                done: 0,
                progress,
            };
            client
                .download_backup(name.as_str(), &export, &mut sink)
                .map_err(|e| self.err("downloading the export", e))?;
            let (file, size, sha256) = sink.inner.finish();
            file.sync_all()
                .map_err(|e| Error::io(format!("syncing {}", path.display()), e))?;
            Ok((size, sha256))
        })();
        // The remote keeps no copy: the backup is nox's from here on.
        let _ = client.delete_backup(name.as_str(), &export);
        let (size, sha256) = downloaded?;
        progress.done();
        drop(restart);
        Ok(Manifest {
            format: FORMAT,
            nox_version: env!("CARGO_PKG_VERSION").into(),
            id: req.id.into(),
            instance: name.to_string(),
            backend: self.kind,
            created_at: nox_core::backup::rfc3339(std::time::SystemTime::now()),
            kind: BackupKind::Full,
            parent: None,
            consistency,
            note: Some(note),
            spec: spec.clone(),
            autostart: spec.autostart,
            was_running: i.is_running(),
            vm: None,
            lxc: None,
            incus: Some(IncusBackup {
                remote: self.remote.name.clone(),
                location: Some(i.location.clone()).filter(|l| !l.is_empty() && l != "none"),
                export_file: EXPORT_FILE.into(),
            }),
            files: vec![nox_core::backup::FileEntry {
                name: EXPORT_FILE.into(),
                size,
                sha256,
            }],
            encryption: None,
        })
    }

    fn restore(
        &self,
        chain: &[LocalBackup],
        target: &InstanceName,
        options: RestoreOptions,
        progress: &dyn Progress,
    ) -> Result<Instance> {
        let b = chain
            .last()
            .ok_or_else(|| Error::failure("empty backup chain"))?;
        let m = &b.manifest;
        let info = m.incus.as_ref().ok_or_else(|| {
            Error::failed(
                format!("backup {}/{} is not an Incus export", m.instance, m.id),
                "restore it with the backend that made it",
            )
        })?;
        let base = self.client()?;
        if let Some(t) = &options.target {
            self.check_member(t)?;
        }
        if base.instance(target.as_str()).is_ok() {
            return Err(Error::AlreadyExists {
                name: self.qualified(target),
                backend: format!("{} on {}", self.kind, self.remote.name),
            });
        }
        // Incus imports on the member that receives the upload.
        let member;
        let client = match &options.target {
            Some(t) => {
                member = base
                    .for_member(t)
                    .map_err(|e| self.err(&format!("reaching member {t}"), e))?;
                &member
            }
            None => base,
        };
        let path = b.file(&info.export_file);
        let file =
            File::open(&path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let len = file.metadata().map(|m| m.len()).ok();
        progress.step(&format!(
            "importing {}/{} as {}{}",
            m.instance,
            m.id,
            self.qualified(target),
            options
                .target
                .as_deref()
                .map(|t| format!(" on {t}"))
                .unwrap_or_default()
        ));
        client
            .import_backup(
                Box::new(file),
                len,
                Some(target.as_str()),
                Some(&self.remote.config.storage_pool),
            )
            .map_err(|e| self.err("importing the backup", e))?;
        progress.done();
        let finish = || -> Result<()> {
            let mut spec = m.spec.clone();
            spec.name = target.clone();
            let mut config = vec![(RECORD_KEY, request::record(&spec)?)];
            if options.new_identity {
                // A new MAC (Incus draws one for an empty key) and a new cloud-init instance:
                // the copy gets its own address, host keys and first-boot work.
                let facts: &dyn nox_core::host::HostFacts = &*self.host.facts;
                config.push(("volatile.eth0.hwaddr", String::new()));
                config.push(("volatile.cloud-init.instance-id", facts.random_uuid()?));
            }
            self.set_config(target, &config)?;
            // A stopped VM's files are out of reach; cloud-init's new instance id gives it
            // its new hostname and machine at first boot.
            if options.new_identity && self.kind == nox_core::BackendKind::Lxc {
                self.reset_identity(client, target, progress)?;
                // Incus gives the instance its new name as hostname itself.
                self.write_hostname(target, target)?;
            }
            if options.start {
                self.start(target, Some(options.timeout), progress)?;
            }
            Ok(())
        };
        if let Err(e) = finish() {
            let _ = base.stop_instance(target.as_str(), -1, true);
            let _ = base.delete_instance(target.as_str());
            return Err(e);
        }
        self.status(target)
    }
}

impl IncusBackend {
    /// Resets nox-core's identity files in a restored, stopped container through Incus's
    /// files API (machine-id emptied, the others removed), as every backend does for a copy.
    fn reset_identity(
        &self,
        client: &Client,
        target: &InstanceName,
        progress: &dyn Progress,
    ) -> Result<()> {
        use nox_core::backup::identity::{self, Reset, IDENTITY_FILES};
        for f in IDENTITY_FILES {
            let what = || format!("resetting {} in {}", f.path, self.qualified(target));
            match f.reset {
                Reset::Empty => client
                    .push_file(
                        target.as_str(),
                        f.path,
                        b"",
                        FileOwnership {
                            uid: Some(0),
                            gid: Some(0),
                            mode: Some(0o444),
                        },
                    )
                    .map_err(|e| self.err(&what(), e))?,
                Reset::Remove => {
                    let removed = client
                        .delete_file(target.as_str(), f.path)
                        .map_err(|e| self.err(&what(), e))?;
                    if removed && f.path == identity::TAILSCALE_STATE {
                        progress.warn(&identity::tailscale_note(&self.qualified(target)));
                    }
                }
            }
        }
        Ok(())
    }
}
