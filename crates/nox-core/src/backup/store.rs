//! The local backup store (`[backup] dir`): `DIR/INSTANCE/ID/` holds `manifest.json` and the
//! data files. A backup is written in a hidden `DIR/INSTANCE/.tmp-ID` directory, every file
//! fsynced, then renamed into place: it is either complete and visible, or not there at all.
//! Leftover `.tmp-*` directories (a killed run) are removed by the next lock of the instance.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::chain::{chain_of, prunable};
use super::manifest::{Manifest, MANIFEST};
use super::reference::{is_id, new_id, order, BackupRef};
use crate::error::{Error, Result};
use crate::name::InstanceRef;

const TMP_PREFIX: &str = ".tmp-";
const LOCK_FILE: &str = ".lock";

/// A complete backup in the local store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalBackup {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl LocalBackup {
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// The local backup store, `[backup] dir`.
#[derive(Debug, Clone)]
pub struct Store {
    pub root: PathBuf,
}

/// A backup being written; dropped without [`Staging::commit`], it is removed.
#[derive(Debug)]
pub struct Staging {
    pub dir: PathBuf,
    final_dir: PathBuf,
    committed: bool,
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The id for a backup made at `stamp`: the stamp itself, or with a counter past every
/// backup of that same second, so a new backup always sorts after the existing ones (even
/// when retention has just removed the first of that second).
fn next_id_after(stamp: String, existing: &[LocalBackup]) -> String {
    let same_second = existing
        .iter()
        .map(|b| order(&b.manifest.id))
        .filter(|(s, _)| *s == stamp)
        .map(|(_, n)| n.max(1))
        .max();
    match same_second {
        None => stamp,
        Some(n) => format!("{stamp}-{}", n + 1),
    }
}

/// Creates `dir` (and parents) with mode 0700: backups hold guest data.
pub fn private_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io(format!("setting the mode of {}", dir.display()), e))
}

/// Creates `path` for writing, mode 0600 from the start.
pub fn private_file(path: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(format!("creating {}", path.display()), e))
}

fn fsync_path(p: &Path) -> Result<()> {
    File::open(p)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(format!("syncing {}", p.display()), e))
}

impl Staging {
    /// Writes the manifest, syncs every file and the directory, and renames it into place.
    pub fn commit(mut self, manifest: &Manifest) -> Result<LocalBackup> {
        let path = self.dir.join(MANIFEST);
        let mut f = private_file(&path)?;
        f.write_all(manifest.to_json().as_bytes())
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        drop(f);
        for entry in &manifest.files {
            std::fs::set_permissions(
                self.dir.join(&entry.name),
                std::fs::Permissions::from_mode(0o600),
            )
            .map_err(|e| Error::io(format!("setting the mode of {}", entry.name), e))?;
            fsync_path(&self.dir.join(&entry.name))?;
        }
        fsync_path(&path)?;
        fsync_path(&self.dir)?;
        std::fs::rename(&self.dir, &self.final_dir)
            .map_err(|e| Error::io(format!("renaming {}", self.dir.display()), e))?;
        if let Some(parent) = self.final_dir.parent() {
            fsync_path(parent)?;
        }
        self.committed = true;
        Ok(LocalBackup {
            dir: self.final_dir.clone(),
            manifest: manifest.clone(),
        })
    }
}

impl Store {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Store { root: root.into() }
    }

    pub fn instance_dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Takes the instance's backup lock (one backup, prune or download of an instance at a
    /// time), then removes what killed runs left: nothing else writes there while we hold it.
    pub fn lock(&self, name: &str) -> Result<crate::lock::LockGuard> {
        let dir = self.instance_dir(name);
        private_dir(&self.root)?;
        private_dir(&dir)?;
        let lock = crate::lock::lock(&dir.join(LOCK_FILE))?;
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        Ok(lock)
    }

    /// `e` as the user should see it when it is a full disk (or quota) under the store: what
    /// failed, that the store's disk is full, and what to do; anything else unchanged. The
    /// half-written backup is already gone by then ([`Staging`] removes itself).
    pub fn explain_full(&self, e: Error) -> Error {
        use nix::errno::Errno;
        let full = match &e {
            Error::Io { source, .. } => source
                .raw_os_error()
                .is_some_and(|c| c == Errno::ENOSPC as i32 || c == Errno::EDQUOT as i32),
            _ => false,
        };
        if !full {
            return e;
        }
        Error::failed(
            format!("{e}: the disk holding the backup store {} is full", self.root.display()),
            "free space there (`nox backup --prune --keep N` removes old backups) or point [backup] dir at a larger disk; nothing of this backup was kept",
        )
    }

    /// A hidden directory for backup `id` of `name`. Call with the instance's lock held.
    pub fn stage(&self, name: &str, id: &str) -> Result<Staging> {
        let dir = self.instance_dir(name).join(format!("{TMP_PREFIX}{id}"));
        let final_dir = self.instance_dir(name).join(id);
        if final_dir.exists() {
            return Err(Error::failure(format!("backup {name}/{id} already exists")));
        }
        let _ = std::fs::remove_dir_all(&dir);
        private_dir(&dir)?;
        Ok(Staging {
            dir,
            final_dir,
            committed: false,
        })
    }

    /// A free id for a new backup of `name` now (a second backup in the same second gets -2).
    pub fn next_id(&self, name: &str) -> String {
        next_id_after(new_id(SystemTime::now()), &self.list_instance(name))
    }

    /// Every complete backup of `name`, oldest first. Directories that are not complete
    /// backups (hidden temp dirs, stray files) are not backups and are skipped.
    pub fn list_instance(&self, name: &str) -> Vec<LocalBackup> {
        let dir = self.instance_dir(name);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut out: Vec<LocalBackup> = entries
            .flatten()
            .filter(|e| is_id(&e.file_name().to_string_lossy()))
            .filter_map(|e| {
                let manifest = Manifest::read(&e.path()).ok()?;
                Some(LocalBackup {
                    dir: e.path(),
                    manifest,
                })
            })
            .collect();
        out.sort_by_key(|b| order(&b.manifest.id));
        out
    }

    /// Every complete backup in the store, by instance, oldest first.
    pub fn list(&self) -> Vec<LocalBackup> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.parse::<InstanceRef>().is_ok())
            .collect();
        names.sort();
        names.iter().flat_map(|n| self.list_instance(n)).collect()
    }

    /// The backup `r` names (local), or a refusal that says what exists.
    pub fn find(&self, r: &BackupRef) -> Result<LocalBackup> {
        let all = self.list_instance(&r.instance.to_string());
        let found = match &r.id {
            Some(id) => all.into_iter().find(|b| &b.manifest.id == id),
            None => all.into_iter().last(),
        };
        found.ok_or_else(|| Error::Refused {
            message: format!("no local backup {r}"),
            hint: "`nox backups` lists the backups".into(),
        })
    }

    /// The chain `b` restores from: its full backup first, `b` last.
    pub fn chain(&self, b: &LocalBackup) -> Result<Vec<LocalBackup>> {
        let all = self.list_instance(&b.manifest.instance);
        chain_of(&all, b)
    }

    /// Removes the oldest backups of `name` beyond the newest `keep`, never one a kept backup
    /// still needs. Returns the ids removed.
    pub fn prune(&self, name: &str, keep: usize) -> Result<Vec<String>> {
        let all = self.list_instance(name);
        let remove = prunable(
            &all.iter().map(|b| b.manifest.clone()).collect::<Vec<_>>(),
            keep,
        )?;
        for id in &remove {
            let dir = self.instance_dir(name).join(id);
            // Renamed out of sight first, so a half-removed backup is never listed.
            let doomed = self.instance_dir(name).join(format!("{TMP_PREFIX}rm-{id}"));
            std::fs::rename(&dir, &doomed)
                .map_err(|e| Error::io(format!("removing {}", dir.display()), e))?;
            std::fs::remove_dir_all(&doomed)
                .map_err(|e| Error::io(format!("removing {}", doomed.display()), e))?;
        }
        Ok(remove)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::testing::manifest;
    use crate::backup::{file_entry, verify};
    use crate::progress::Quiet;

    #[test]
    fn commit_is_atomic_and_verify_names_the_bad_file() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path().join("backups"));
        let _lock = store.lock("web").unwrap();
        let id = store.next_id("web");
        let staging = store.stage("web", &id).unwrap();
        std::fs::write(staging.dir.join("data.bin"), b"hello").unwrap();
        assert!(
            store.list_instance("web").is_empty(),
            "a staged backup is not listed"
        );
        let mut m = manifest(&id, None);
        m.files
            .push(file_entry(&staging.dir, "data.bin", &Quiet).unwrap());
        let b = staging.commit(&m).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&b.dir.join("data.bin")), 0o600);
        assert_eq!(mode(&b.dir.join(MANIFEST)), 0o600);
        assert_eq!(mode(&store.instance_dir("web")), 0o700);
        assert_eq!(store.list_instance("web"), vec![b.clone()]);
        assert_eq!(store.find(&"web".parse().unwrap()).unwrap(), b);
        verify(std::slice::from_ref(&b), &Quiet).unwrap();

        // Flip one byte: refused, naming the file.
        std::fs::write(b.dir.join("data.bin"), b"hellp").unwrap();
        let e = verify(std::slice::from_ref(&b), &Quiet).unwrap_err();
        assert!(e.to_string().contains("data.bin"), "{e}");
        assert!(e.to_string().contains("SHA-256"), "{e}");

        // A staging dropped uncommitted leaves nothing; a killed run's temp dir goes at the
        // next lock.
        let id2 = store.next_id("web");
        assert_ne!(id2, id);
        drop(store.stage("web", &id2).unwrap());
        assert!(!store
            .instance_dir("web")
            .join(format!("{TMP_PREFIX}{id2}"))
            .exists());
        std::fs::create_dir(store.instance_dir("web").join(".tmp-stale")).unwrap();
        drop(_lock);
        let _lock = store.lock("web").unwrap();
        assert!(!store.instance_dir("web").join(".tmp-stale").exists());
    }

    #[test]
    fn a_full_disk_is_explained_and_other_errors_are_kept() {
        let store = Store::new("/srv/backups");
        let full = store.explain_full(Error::io(
            "writing /srv/backups/web/.tmp-1/rootfs.tar.zst",
            std::io::Error::from_raw_os_error(nix::errno::Errno::ENOSPC as i32),
        ));
        let text = full.to_string();
        assert!(
            text.starts_with("writing /srv/backups/web/.tmp-1/rootfs.tar.zst: No space left")
                && text.ends_with("the disk holding the backup store /srv/backups is full"),
            "{text}"
        );
        assert!(full.hint().is_some_and(|h| h.contains("[backup] dir")));
        assert!(!full.is_bad_input());
        let other = store.explain_full(Error::io(
            "writing x",
            std::io::Error::from_raw_os_error(nix::errno::Errno::EIO as i32),
        ));
        assert!(matches!(other, Error::Io { .. }), "{other:?}");
    }

    #[test]
    fn ids_in_one_second_always_sort_after_the_existing_ones() {
        let at = |id: &str| LocalBackup {
            dir: PathBuf::from("/x"),
            manifest: manifest(id, None),
        };
        let s = "20261125T225012Z".to_string();
        assert_eq!(next_id_after(s.clone(), &[]), s);
        assert_eq!(next_id_after(s.clone(), &[at(&s)]), format!("{s}-2"));
        // The first of the second was pruned; -2 and -3 remain: next is -4, not the bare stamp.
        let left = [at(&format!("{s}-2")), at(&format!("{s}-3"))];
        assert_eq!(next_id_after(s.clone(), &left), format!("{s}-4"));
        assert_eq!(next_id_after(s.clone(), &[at("20261125T225011Z")]), s);
    }
}
