//! Backups, as both backends and the CLI share them: the manifest every backup carries, the
//! local store (`[backup] dir`), atomic commits, checksum verification, incremental chains and
//! retention. What a backend writes into a backup, and how it restores one, is the backend's
//! business ([`BackupBackend`]); everything here is pure files and JSON.
//!
//! Layout: `DIR/INSTANCE/ID/` holds `manifest.json` and the data files. A backup is written in
//! a hidden `DIR/INSTANCE/.tmp-ID` directory, every file fsynced, then renamed into place:
//! a backup is either complete and visible, or not there at all. Leftover `.tmp-*` directories
//! (a killed run) are removed by the next backup of that instance, under its lock.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::instance::{BackendKind, Instance, InstanceSpec};
use crate::name::InstanceName;
use crate::progress::Progress;

pub const MANIFEST: &str = "manifest.json";
/// The manifest format this nox writes and reads.
pub const FORMAT: u32 = 1;
const TMP_PREFIX: &str = ".tmp-";
const LOCK_FILE: &str = ".lock";

/// What every backup says about itself. Credentials never appear here: nox never has any
/// for the instances it backs up, and S3 credentials stay out of backups entirely.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    pub nox_version: String,
    /// `YYYYMMDDTHHMMSSZ`, UTC; unique per instance.
    pub id: String,
    pub instance: String,
    pub backend: BackendKind,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub kind: BackupKind,
    /// For an incremental backup: the backup (of the same instance) it applies on top of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    pub consistency: Consistency,
    /// Why a backup is only crash-consistent, or how it was made consistent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The instance's spec as it was backed up.
    pub spec: InstanceSpec,
    /// Whether the instance started with the host, when it was backed up.
    pub autostart: bool,
    /// Whether it was running when it was backed up.
    pub was_running: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<VmBackup>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lxc: Option<LxcBackup>,
    /// Every data file, with its size and SHA-256; the manifest itself is not listed.
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupKind {
    Full,
    Incremental,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    /// Filesystems were frozen (guest agent) or every process stopped (container freezer,
    /// `--stop`) at the point in time: what a clean shutdown would have left.
    Application,
    /// What a power cut at that point would have left; journaling filesystems recover.
    Crash,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub name: String,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
}

/// The VM part of a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmBackup {
    /// The domain's UUID and MAC, kept when restoring under the same name.
    pub uuid: String,
    pub mac: String,
    /// The libvirt checkpoint this backup's point in time is, which the next incremental
    /// backup starts from.
    pub checkpoint: String,
    /// The backed-up disk: its target (`vda`), its file in the backup, its size in the guest.
    pub disk_target: String,
    pub disk_file: String,
    pub virtual_size: u64,
    pub image_checksum: String,
}

/// The container part of a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LxcBackup {
    /// The id map ids in the tarball are shifted by (host ids as on disk), or `None` for a
    /// privileged container (ids as they are).
    pub idmap: Option<IdMap>,
    pub tun: bool,
    pub mac: String,
    pub cloud_init: bool,
    pub provisioned: bool,
    /// The rootfs tarball (tar, zstd).
    pub rootfs_file: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdMap {
    pub uid_start: u32,
    pub gid_start: u32,
    pub count: u32,
}

impl Manifest {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("manifest serializes") + "\n"
    }

    pub fn read(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST);
        let bytes = std::fs::read(&path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
            Error::failed(
                format!("{} is not a nox backup manifest: {e}", path.display()),
                "the backup is damaged or from an incompatible nox",
            )
        })?;
        if m.format != FORMAT {
            return Err(Error::failed(
                format!(
                    "{} has manifest format {}, this nox reads {FORMAT}",
                    path.display(),
                    m.format
                ),
                "restore it with the nox version that made it",
            ));
        }
        Ok(m)
    }
}

/// What the backend is asked to back up.
#[derive(Debug, Clone)]
pub struct BackupRequest<'a> {
    pub id: &'a str,
    /// The newest complete backup of this instance and how long its chain is (1 for a full
    /// backup), when there is one: a VM backs up incrementally on top of it when it can.
    pub previous: Option<(&'a Manifest, usize)>,
    /// Incremental backups allowed (chains are cut at the retention count, see [`Store::prune`]).
    pub incremental: bool,
    /// Containers: stop the container for the backup instead of freezing it.
    pub stop: bool,
}

/// How a restore is to finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoreOptions {
    pub start: bool,
    /// The target name differs from the backed-up instance's: give it a new identity.
    pub new_identity: bool,
    pub timeout: std::time::Duration,
}

/// What a backend does for backups. Separate from [`crate::Backend`] so the backends' core
/// trait stays as it is.
pub trait BackupBackend {
    /// Writes the instance's data into `staging` and returns its manifest, `files` filled.
    fn backup(
        &self,
        name: &InstanceName,
        request: &BackupRequest<'_>,
        staging: &Path,
        progress: &dyn Progress,
    ) -> Result<Manifest>;

    /// Creates instance `target` from a verified chain (full backup first, the backup to
    /// restore last). Nothing named `target` exists when this is called.
    fn restore(
        &self,
        chain: &[LocalBackup],
        target: &InstanceName,
        options: RestoreOptions,
        progress: &dyn Progress,
    ) -> Result<Instance>;
}

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

/// Which backup the user means: `NAME/ID`, or `NAME` for its newest; `s3:` for the remote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupRef {
    pub s3: bool,
    pub instance: InstanceName,
    pub id: Option<String>,
}

impl std::str::FromStr for BackupRef {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let (s3, rest) = match s.strip_prefix("s3:") {
            Some(r) => (true, r),
            None => (false, s),
        };
        let (name, id) = match rest.split_once('/') {
            Some((n, id)) => (n, Some(id)),
            None => (rest, None),
        };
        let bad = || {
            Error::Usage(format!(
                "invalid backup {s:?}: give NAME/ID or NAME (its newest backup), with s3: in front for one in S3; `nox backups` lists them"
            ))
        };
        let instance: InstanceName = name.parse().map_err(|_| bad())?;
        if let Some(id) = id {
            if !is_id(id) {
                return Err(bad());
            }
        }
        Ok(BackupRef {
            s3,
            instance,
            id: id.map(String::from),
        })
    }
}

impl std::fmt::Display for BackupRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.s3 {
            f.write_str("s3:")?;
        }
        write!(f, "{}", self.instance)?;
        if let Some(id) = &self.id {
            write!(f, "/{id}")?;
        }
        Ok(())
    }
}

/// `YYYYMMDDTHHMMSSZ`, optionally `-N`: the only shape of a backup id, so an id is safe as a
/// path component and an S3 key part.
pub fn is_id(s: &str) -> bool {
    let (stamp, n) = match s.split_once('-') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    let b = stamp.as_bytes();
    b.len() == 16
        && b[8] == b'T'
        && b[15] == b'Z'
        && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit)
        && n.is_none_or(|n| !n.is_empty() && n.len() <= 4 && n.bytes().all(|c| c.is_ascii_digit()))
}

/// A new backup id for `now`: `YYYYMMDDTHHMMSSZ`.
pub fn new_id(now: SystemTime) -> String {
    let stamp = crate::backup::rfc3339(now);
    // 2026-11-25T22:50:12Z -> 20261125T225012Z
    stamp.chars().filter(|c| *c != '-' && *c != ':').collect()
}

/// RFC 3339 seconds, UTC.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
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

/// The size and SHA-256 of a file, reporting bytes to `progress`.
pub fn hash_file(path: &Path, progress: &dyn Progress) -> Result<(u64, String)> {
    let mut f =
        File::open(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let total = f.metadata().map(|m| m.len()).ok();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        done += n as u64;
        progress.bytes(done, total);
        crate::interrupt::check()?;
    }
    Ok((done, hex(&h.finalize())))
}

/// The [`FileEntry`] of `dir/name`.
pub fn file_entry(dir: &Path, name: &str, progress: &dyn Progress) -> Result<FileEntry> {
    let (size, sha256) = hash_file(&dir.join(name), progress)?;
    Ok(FileEntry {
        name: name.into(),
        size,
        sha256,
    })
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A writer that hashes and counts what passes through it (a stream written once, hashed
/// on the way, never read back).
#[derive(Debug)]
pub struct HashingWriter<W> {
    pub inner: W,
    hasher: Sha256,
    pub written: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }
    pub fn finish(self) -> (W, u64, String) {
        (self.inner, self.written, hex(&self.hasher.finalize()))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
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
    pub fn lock(&self, name: &str) -> Result<nix::fcntl::Flock<File>> {
        let dir = self.instance_dir(name);
        private_dir(&self.root)?;
        private_dir(&dir)?;
        let path = dir.join(LOCK_FILE);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        let lock = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| Error::io(format!("locking {}", path.display()), e.into()))?;
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        Ok(lock)
    }

    /// A hidden directory for backup `id` of `name`. Call with the instance's lock held.
    pub fn stage(&self, name: &str, id: &str) -> Result<Staging> {
        let dir = self.instance_dir(name).join(format!("{TMP_PREFIX}{id}"));
        let final_dir = self.instance_dir(name).join(id);
        if final_dir.exists() {
            return Err(Error::Backend(format!("backup {name}/{id} already exists")));
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
        let base = new_id(SystemTime::now());
        let dir = self.instance_dir(name);
        if !dir.join(&base).exists() {
            return base;
        }
        (2..)
            .map(|n| format!("{base}-{n}"))
            .find(|id| !dir.join(id).exists())
            .expect("a free id")
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
            .filter(|n| n.parse::<InstanceName>().is_ok())
            .collect();
        names.sort();
        names.iter().flat_map(|n| self.list_instance(n)).collect()
    }

    /// The backup `r` names (local), or a refusal that says what exists.
    pub fn find(&self, r: &BackupRef) -> Result<LocalBackup> {
        let all = self.list_instance(r.instance.as_str());
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
        );
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

/// Sort key of an id: its time stamp, then its counter.
fn order(id: &str) -> (String, u32) {
    match id.split_once('-') {
        Some((s, n)) => (s.to_string(), n.parse().unwrap_or(0)),
        None => (id.to_string(), 0),
    }
}

/// `b`'s chain among `all` (one instance's backups).
pub fn chain_of(all: &[LocalBackup], b: &LocalBackup) -> Result<Vec<LocalBackup>> {
    let mut chain = vec![b.clone()];
    while let Some(parent) = chain.last().and_then(|c| c.manifest.parent.clone()) {
        let p = all.iter().find(|x| x.manifest.id == parent).ok_or_else(|| {
            Error::failed(
                format!(
                    "backup {}/{} needs {}/{parent}, which is missing",
                    b.manifest.instance, b.manifest.id, b.manifest.instance
                ),
                "an incremental backup restores only with every backup before it back to its full backup",
            )
        })?;
        if chain.len() > 10_000 {
            return Err(Error::Backend("backup chain loops".into()));
        }
        chain.push(p.clone());
    }
    chain.reverse();
    Ok(chain)
}

/// How many backups the chain ending at the newest of `all` has (1 for a full backup).
pub fn chain_len(all: &[Manifest]) -> usize {
    let Some(mut cur) = all.last() else {
        return 0;
    };
    let mut n = 1;
    while let Some(p) = &cur.parent {
        match all.iter().find(|m| &m.id == p) {
            Some(m) => {
                cur = m;
                n += 1;
            }
            None => break,
        }
    }
    n
}

/// The ids of the backups (oldest first in `all`) that retention removes: all but the newest
/// `keep`, except those a kept backup's chain needs. Pure, so it is unit-tested.
pub fn prunable(all: &[Manifest], keep: usize) -> Vec<String> {
    let keep = keep.max(1);
    if all.len() <= keep {
        return Vec::new();
    }
    let kept = &all[all.len() - keep..];
    let mut needed: std::collections::BTreeSet<String> =
        kept.iter().map(|m| m.id.clone()).collect();
    for m in kept {
        let mut cur = m;
        while let Some(p) = &cur.parent {
            needed.insert(p.clone());
            match all.iter().find(|x| &x.id == p) {
                Some(x) => cur = x,
                None => break,
            }
        }
    }
    all.iter()
        .filter(|m| !needed.contains(&m.id))
        .map(|m| m.id.clone())
        .collect()
}

/// Checks every file of every backup in `chain` against its manifest (size, then SHA-256)
/// before anything is touched. A mismatch names the file.
pub fn verify(chain: &[LocalBackup], progress: &dyn Progress) -> Result<()> {
    for b in chain {
        // The file a restore reads must be one that is checked below, never a path of its own.
        let data = [
            b.manifest.vm.as_ref().map(|v| &v.disk_file),
            b.manifest.lxc.as_ref().map(|l| &l.rootfs_file),
        ];
        for name in data.into_iter().flatten() {
            if !b.manifest.files.iter().any(|f| &f.name == name) {
                return Err(Error::failed(
                    format!(
                        "backup {}/{} restores from {name:?}, which its file list does not cover",
                        b.manifest.instance, b.manifest.id
                    ),
                    "the manifest was tampered with; do not restore this backup",
                ));
            }
        }
        for f in &b.manifest.files {
            if f.name.contains('/') || f.name.starts_with('.') {
                return Err(Error::failed(
                    format!(
                        "backup {}/{} lists a file outside it: {:?}",
                        b.manifest.instance, b.manifest.id, f.name
                    ),
                    "the manifest was tampered with; do not restore this backup",
                ));
            }
            let path = b.file(&f.name);
            progress.step(&format!(
                "verifying {}/{}/{}",
                b.manifest.instance, b.manifest.id, f.name
            ));
            let corrupt = |why: String| Error::Failed {
                message: format!("backup file {} is corrupt: {why}", path.display()),
                hint: Some("restore another backup (`nox backups`); nothing was changed".into()),
            };
            let meta = std::fs::metadata(&path).map_err(|e| corrupt(e.to_string()))?;
            if meta.len() != f.size {
                return Err(corrupt(format!(
                    "{} bytes, the manifest says {}",
                    meta.len(),
                    f.size
                )));
            }
            let (_, sum) = hash_file(&path, progress)?;
            if sum != f.sha256 {
                return Err(corrupt(format!(
                    "SHA-256 {sum}, the manifest says {}",
                    f.sha256
                )));
            }
            progress.done();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Quiet;

    fn manifest(id: &str, parent: Option<&str>) -> Manifest {
        Manifest {
            format: FORMAT,
            nox_version: "0.1.0".into(),
            id: id.into(),
            instance: "web".into(),
            backend: BackendKind::Lxc,
            created_at: "2026-11-25T22:50:12Z".into(),
            kind: if parent.is_some() {
                BackupKind::Incremental
            } else {
                BackupKind::Full
            },
            parent: parent.map(String::from),
            consistency: Consistency::Application,
            note: None,
            spec: InstanceSpec {
                name: "web".parse().unwrap(),
                backend: BackendKind::Lxc,
                image: "debian-12".into(),
                cpus: 1,
                memory_bytes: 1 << 30,
                disk_bytes: 10 << 30,
                network: crate::instance::NetworkSpec::Default,
                autostart: true,
                user: "nox".into(),
                ssh_keys: vec![],
                privileged: false,
                nesting: false,
            },
            autostart: true,
            was_running: true,
            vm: None,
            lxc: None,
            files: vec![],
        }
    }

    fn id(n: u32) -> String {
        format!("20261125T2250{n:02}Z")
    }

    #[test]
    fn ids_and_refs() {
        assert!(is_id("20261125T225012Z"));
        assert!(is_id("20261125T225012Z-2"));
        for bad in [
            "",
            "2026",
            "20261125T225012",
            "20261125X225012Z",
            "../x",
            "20261125T225012Z-",
            "20261125T22501aZ",
        ] {
            assert!(!is_id(bad), "{bad}");
        }
        let id = new_id(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_795_000_000));
        assert!(is_id(&id), "{id}");
        let r: BackupRef = "s3:web/20261125T225012Z".parse().unwrap();
        assert!(r.s3);
        assert_eq!(r.instance.as_str(), "web");
        assert_eq!(r.to_string(), "s3:web/20261125T225012Z");
        let r: BackupRef = "web".parse().unwrap();
        assert_eq!((r.s3, r.id), (false, None));
        for bad in ["", "Web", "web/../../etc", "web/", "s3:", "web/x/y"] {
            let e = bad.parse::<BackupRef>().unwrap_err();
            assert!(e.is_bad_input(), "{bad}");
        }
    }

    #[test]
    fn retention_keeps_what_kept_backups_need() {
        // full 0, inc 1 (of 0), inc 2 (of 1), full 3, inc 4 (of 3)
        let all = vec![
            manifest(&id(0), None),
            manifest(&id(1), Some(&id(0))),
            manifest(&id(2), Some(&id(1))),
            manifest(&id(3), None),
            manifest(&id(4), Some(&id(3))),
        ];
        assert_eq!(prunable(&all, 5), Vec::<String>::new());
        assert_eq!(prunable(&all, 2), vec![id(0), id(1), id(2)]);
        // Keeping 3 keeps inc 2, which needs 1 and 0.
        assert_eq!(prunable(&all, 3), Vec::<String>::new());
        assert_eq!(prunable(&all, 1), vec![id(0), id(1), id(2)]);
        assert_eq!(prunable(&all, 0), vec![id(0), id(1), id(2)]);
        assert_eq!(chain_len(&all), 2);
        assert_eq!(chain_len(&all[..3]), 3);
        assert_eq!(chain_len(&[]), 0);
    }

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
}
