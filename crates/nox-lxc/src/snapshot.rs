//! Container snapshots: a copy of the overlay's upper layer (`delta`, everything the container
//! changed over its base image), made with `cp -a --reflink=auto` so owners (shifted ids
//! included), modes, xattrs (the overlay's whiteouts and opaque markers, ACLs) and device
//! nodes are kept, and blocks are shared where the filesystem can (btrfs, XFS).
//!
//! A running container is frozen (cgroup freezer) while its upper layer is copied, so the
//! copy is one point in time; a stopped one is copied as it is. Processes are not saved: a
//! restored container boots afresh.
//!
//! Layout, in the container's directory (so `nox delete` removes snapshots with it):
//! ```text
//! nox-snapshots/NAME/delta           the copied upper layer
//! nox-snapshots/NAME/snapshot.json   what `nox snapshots` lists
//! nox-snapshots/.tmp-NAME/           a snapshot being made or removed: never listed
//! .nox-restore-delta, .nox-old-delta a restore swapping the upper layer
//! ```
//! The layer a restore replaced goes to the lxcpath's trash ([`crate::trash`]): the command
//! returns without waiting for its files to be unlinked.
//! The directory is not liblxc's `snaps/`, which would make liblxc refuse to destroy the
//! container.

use std::path::{Path, PathBuf};

use nox_core::backup::{private_dir, rfc3339, Consistency};
use nox_core::host::Cmd;
use nox_core::snapshot::{Snapshot, SnapshotBackend, SnapshotRequest, SnapshotRestored};
use nox_core::{Error, InstanceName, Progress};

use crate::liblxc::Container;
use crate::LxcBackend;

const DIR: &str = "nox-snapshots";
const TMP_PREFIX: &str = ".tmp-";
const META: &str = "snapshot.json";
const RESTORE_NEW: &str = ".nox-restore-delta";
const RESTORE_OLD: &str = ".nox-old-delta";

fn io(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::io(what, e)
}

impl LxcBackend {
    fn container_dir(&self, name: &InstanceName) -> PathBuf {
        self.config.lxc.lxcpath.join(name.as_str())
    }

    /// The overlay's upper layer, from the config nox wrote.
    fn upper(&self, name: &InstanceName) -> Result<PathBuf, Error> {
        let on_disk = crate::backup::read_config(&self.container_dir(name))?;
        let rest = on_disk.rootfs.strip_prefix("overlay:").ok_or_else(|| {
            Error::failure(format!(
                "{name} is not an overlay container ({}): nox snapshots only overlay containers",
                on_disk.rootfs
            ))
        })?;
        let (_, upper) = rest
            .split_once(':')
            .ok_or_else(|| Error::failure(format!("cannot read the overlay rootfs {rest:?}")))?;
        Ok(PathBuf::from(upper))
    }

    fn snapshot_dir(&self, name: &InstanceName, snap: &str) -> PathBuf {
        self.container_dir(name).join(DIR).join(snap)
    }

    /// `cp -a --reflink=auto FROM TO`: TO must not exist; it becomes a copy of FROM.
    fn copy_tree(&self, from: &Path, to: &Path) -> Result<(), Error> {
        let cmd = Cmd::new("cp")
            .package("coreutils")
            .args(["-a", "--reflink=auto", "--no-target-directory"])
            .arg(from)
            .arg(to);
        self.host.runner.run(&cmd).map(|_| ())
    }

    fn existing(&self, name: &InstanceName, snap: &str) -> Result<PathBuf, Error> {
        let dir = self.snapshot_dir(name, snap);
        if !dir.join(META).is_file() {
            return Err(Error::Refused {
                message: format!("{name} has no snapshot named {snap:?}"),
                hint: format!("`nox snapshots {name}` lists them"),
            });
        }
        Ok(dir)
    }
}

fn remove_if_there(p: &Path) -> Result<bool, Error> {
    match std::fs::remove_dir_all(p) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(format!("removing {}", p.display()), e)),
    }
}

/// Unfreezes the container however the copy ends.
struct Thaw<'c>(&'c Container);

impl Drop for Thaw<'_> {
    fn drop(&mut self) {
        let _ = self.0.unfreeze();
    }
}

impl SnapshotBackend for LxcBackend {
    fn take(
        &self,
        name: &InstanceName,
        request: &SnapshotRequest,
        progress: &dyn Progress,
    ) -> Result<Snapshot, Error> {
        let (c, _) = crate::list::find(self, name)?;
        if request.memory {
            return Err(Error::Refused {
                message: "--memory is for VMs: nox cannot save a container's processes".into(),
                hint: format!("snapshot the filesystem alone: `nox snapshot {name}`"),
            });
        }
        let snap = request.name.as_str();
        let final_dir = self.snapshot_dir(name, snap);
        if final_dir.exists() {
            return Err(Error::Refused {
                message: format!("{name} already has a snapshot named {snap:?}"),
                hint: format!("pick another name, or `nox snapshot rm {name} {snap}` first"),
            });
        }
        let upper = self.upper(name)?;
        let root = self.container_dir(name).join(DIR);
        private_dir(&root)?;
        let tmp = root.join(format!("{TMP_PREFIX}{snap}"));
        remove_if_there(&tmp)?;
        std::fs::create_dir(&tmp).map_err(io(format!("creating {}", tmp.display())))?;
        // A frozen container is what a killed command left: it must run again.
        if c.state() == "FROZEN" {
            c.unfreeze().map_err(Error::from)?;
        }
        let was_running = c.is_running();
        let note;
        {
            let _thaw = if was_running {
                progress.step(&format!("freezing {name}"));
                crate::freezer::freeze(&c)?;
                note = "every process frozen (cgroup freezer) while the filesystem was copied";
                Some(Thaw(&c))
            } else {
                note = "the container was stopped";
                None
            };
            nox_core::fault::point("lxc.snapshot.frozen");
            progress.step(&format!("copying {name}'s changes over its image"));
            self.copy_tree(&upper, &tmp.join("delta"))?;
        }
        progress.done();
        let s = Snapshot {
            name: snap.to_string(),
            created_at: rfc3339(std::time::SystemTime::now()),
            was_running,
            memory: false,
            consistency: Consistency::Application,
            note: note.into(),
        };
        let json = serde_json::to_vec_pretty(&s)
            .map_err(|e| Error::encode("encoding a snapshot's record", e))?;
        std::fs::write(tmp.join(META), json).map_err(io(format!("writing {}", tmp.display())))?;
        nox_core::fault::point("lxc.snapshot.copied");
        // Listed from here on: the rename is the one step that makes it a snapshot.
        std::fs::rename(&tmp, &final_dir)
            .map_err(io(format!("renaming {} to {snap}", tmp.display())))?;
        Ok(s)
    }

    fn list(&self, name: &InstanceName) -> Result<Vec<Snapshot>, Error> {
        crate::list::find(self, name)?;
        let root = self.container_dir(name).join(DIR);
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(Error::io(format!("reading {}", root.display()), e)),
        };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                continue;
            }
            let Ok(text) = std::fs::read(e.path().join(META)) else {
                continue;
            };
            if let Ok(s) = serde_json::from_slice::<Snapshot>(&text) {
                out.push(s);
            }
        }
        out.sort_by(|a, b| (&a.created_at, &a.name).cmp(&(&b.created_at, &b.name)));
        Ok(out)
    }

    fn restore(
        &self,
        name: &InstanceName,
        snapshot: &str,
        progress: &dyn Progress,
    ) -> Result<SnapshotRestored, Error> {
        let (c, _) = crate::list::find(self, name)?;
        let snap_dir = self.existing(name, snapshot)?;
        let upper = self.upper(name)?;
        let dir = self.container_dir(name);
        let new = dir.join(RESTORE_NEW);
        let old = dir.join(RESTORE_OLD);
        crate::trash::sweep(&self.config.lxc.lxcpath);
        remove_if_there(&new)?;
        remove_if_there(&old)?;
        // Copied while the container still runs: it is down only for the swap.
        progress.step(&format!("copying snapshot {snapshot}"));
        self.copy_tree(&snap_dir.join("delta"), &new)?;
        if c.state() == "FROZEN" {
            c.unfreeze().map_err(Error::from)?;
        }
        let was_running = c.is_running();
        let mut notes = Vec::new();
        if was_running {
            progress.step(&format!("stopping {name}"));
            if !c.shutdown(60) {
                progress.warn(&format!("{name} did not shut down within 60s: killing it"));
                c.stop().map_err(Error::from)?;
            }
            notes.push(format!(
                "stopped {name} for the restore and started it again"
            ));
        }
        // Two renames: a kill between them leaves `delta` missing and the old one aside,
        // which recovery puts back, so the container is always the old or the new, never a mix.
        std::fs::rename(&upper, &old).map_err(io(format!("moving {} aside", upper.display())))?;
        nox_core::fault::point("lxc.snapshot.restore.swapping");
        std::fs::rename(&new, &upper)
            .map_err(io(format!("putting the snapshot at {}", upper.display())))?;
        // The replaced layer's files are unlinked after the command, not in it; a kill before
        // this leaves `old` to recovery, as above.
        crate::trash::discard(&self.config.lxc.lxcpath, name, &old)?;
        if was_running {
            progress.step(&format!("starting {name}"));
            crate::lifecycle::start(self, name, None, progress)?;
        }
        progress.done();
        Ok(SnapshotRestored {
            running: was_running,
            notes,
        })
    }

    fn remove(&self, name: &InstanceName, snapshot: &str) -> Result<(), Error> {
        crate::list::find(self, name)?;
        let dir = self.existing(name, snapshot)?;
        // Unlisted at once by the rename; a kill during the removal leaves a `.tmp-` that
        // recovery finishes removing.
        let tmp = dir.with_file_name(format!("{TMP_PREFIX}{snapshot}"));
        remove_if_there(&tmp)?;
        std::fs::rename(&dir, &tmp).map_err(io(format!("renaming {}", dir.display())))?;
        remove_if_there(&tmp)?;
        Ok(())
    }

    fn recover(&self, name: &InstanceName, was_running: bool) -> Result<Vec<String>, Error> {
        let dir = self.container_dir(name);
        let mut done = Vec::new();
        let Ok((c, _)) = crate::list::find(self, name) else {
            return Ok(done);
        };
        if c.state() == "FROZEN" {
            c.unfreeze().map_err(Error::from)?;
            done.push(format!("thawed {name}, which the snapshot had frozen"));
        }
        if let Ok(entries) = std::fs::read_dir(dir.join(DIR)) {
            for e in entries.flatten() {
                let file = e.file_name().to_string_lossy().into_owned();
                if let Some(snap) = file.strip_prefix(TMP_PREFIX) {
                    remove_if_there(&e.path())?;
                    done.push(format!("removed the unfinished snapshot {snap}"));
                }
            }
        }
        let upper = self.upper(name)?;
        let old = dir.join(RESTORE_OLD);
        if !upper.exists() && old.exists() {
            std::fs::rename(&old, &upper)
                .map_err(io(format!("putting {} back", upper.display())))?;
            done.push("put back the filesystem the restore had moved aside".into());
        }
        for p in [dir.join(RESTORE_NEW), old] {
            if remove_if_there(&p)? {
                done.push(format!("removed {}", p.display()));
            }
        }
        crate::trash::sweep(&self.config.lxc.lxcpath);
        if was_running && !c.is_running() {
            crate::lifecycle::start(self, name, None, &nox_core::progress::Quiet)?;
            done.push(format!(
                "started {name} again, which the restore had stopped"
            ));
        }
        Ok(done)
    }
}
