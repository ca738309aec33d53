//! `nox backup`, `nox backup --prune` and `nox backups`: when a backup is full or
//! incremental, how long chains grow, retention, and the S3 copy. What goes into a backup is
//! each backend's business ([`nox_core::backup::BackupBackend`]).

use nox_core::backup::{
    self, BackupKind, BackupRef, BackupRequest, Consistency, LocalBackup, Manifest, Store,
};
use nox_core::state::{Intent, Operation};
use nox_core::{BackendKind, Error, InstanceRef, Result};
use serde::Serialize;

use crate::context::Context;
use crate::remote::{self, RemoteStore};
use crate::ui::Ui;

/// How `nox backup` was asked to run.
#[derive(Debug, Clone, Copy, Default)]
pub struct BackupOptions {
    /// Backups to keep per instance; `None` for `[backup] keep`.
    pub keep: Option<u32>,
    /// A full backup even when an incremental one is possible.
    pub full: bool,
    /// Containers: stop rather than freeze.
    pub stop: bool,
    /// Also upload to the `[s3]` bucket.
    pub to_s3: bool,
}

/// One instance's backup, for the user.
#[derive(Debug, Clone)]
pub struct BackupOutcome {
    pub backup: LocalBackup,
    /// The backups uploaded to S3 (this one and any of its chain the bucket lacked), oldest
    /// first, and the bucket's label.
    pub uploaded: Vec<String>,
    pub remote_label: Option<String>,
    /// Backups of this instance retention removed.
    pub pruned: Vec<String>,
}

pub fn store(ctx: &Context) -> Store {
    Store::new(&ctx.config.backup.dir)
}

fn keep(ctx: &Context, opts: &BackupOptions) -> usize {
    opts.keep.unwrap_or(ctx.config.backup.keep).max(1) as usize
}

/// Backs up each of `names` in turn, going on past failures (each said on its own line),
/// calling `done` after each success; the first error is returned at the end.
pub fn backup(
    ctx: &Context,
    names: &[InstanceRef],
    opts: BackupOptions,
    ui: &dyn Ui,
    done: &mut dyn FnMut(&BackupOutcome),
) -> Result<()> {
    // Credentials, bucket settings and the encryption keys are checked before anything is
    // backed up.
    let remote = if opts.to_s3 {
        remote::recipients(&ctx.config.backup)?;
        let r = remote::s3(&ctx.config.s3)?;
        r.check()?;
        Some(r)
    } else {
        None
    };
    crate::for_each(names, ui, |name| {
        let outcome = backup_one(ctx, name, opts, remote.as_deref(), ui)?;
        done(&outcome);
        Ok(())
    })
}

/// Backs up `name`, uploads its chain where `remote` lacks it, and applies retention.
pub fn backup_one(
    ctx: &Context,
    r: &InstanceRef,
    opts: BackupOptions,
    remote: Option<&dyn RemoteStore>,
    ui: &dyn Ui,
) -> Result<BackupOutcome> {
    let x = crate::exclusive::lock(ctx, r, "backup", ui)?;
    let backend = ctx.backends.find(r)?;
    // The store keys backups by the reference (`web`, `cluster:web`): the same name on this
    // host and on a remote are two instances.
    let key = r.to_string();
    let name = &r.name;
    let kind = backend.kind();
    let store = store(ctx);
    let keep = keep(ctx, &opts);
    let progress = ui.progress();
    let b = {
        // One backup of an instance at a time; this also clears what a killed one left.
        let _lock = store.lock(&key)?;
        let existing: Vec<Manifest> = store
            .list_instance(&key)
            .into_iter()
            .map(|b| b.manifest)
            .collect();
        let (previous, incremental) = plan(&existing, kind, keep, opts.full)?;
        tracing::info!(
            instance = %key,
            incremental,
            parent = previous.map(|(m, _)| m.id.as_str()).unwrap_or("-"),
            "backup planned"
        );
        let id = store.next_id(&key);
        let staging = store.stage(&key, &id).map_err(|e| store.explain_full(e))?;
        let mut intent = Intent::new(Operation::Backup, kind);
        intent.was_running =
            opts.stop && backend.status(name)?.state == nox_core::instance::InstanceState::Running;
        let _intent = x.begin(&intent)?;
        nox_core::fault::point("backup.begun");
        let request = BackupRequest {
            id: &id,
            previous,
            incremental,
            stop: opts.stop,
        };
        let mut manifest = backend
            .backup(name, &request, &staging.dir, progress)
            .map_err(|e| store.explain_full(e))?;
        manifest.instance = key.clone();
        progress.done();
        if let Some(note) = manifest
            .note
            .as_ref()
            .filter(|_| manifest.consistency == Consistency::Crash)
        {
            progress.warn(&format!("{name}: crash-consistent backup: {note}"));
        }
        nox_core::fault::point("backup.copied");
        staging
            .commit(&manifest)
            .map_err(|e| store.explain_full(e))?
    };
    let mut uploaded = Vec::new();
    if let Some(r) = remote {
        let recipients = remote::recipients(&ctx.config.backup)?;
        // Held while uploading: no prune removes a member of the chain being read, and no
        // other lock of the store removes the scratch directory of the encryption.
        let _lock = store.lock(&key)?;
        // An incremental is useless in S3 without the backups it builds on: upload every
        // member of its chain the bucket does not have yet, oldest first, so a parent is
        // always in the bucket before its child. The bucket lists a backup only once all
        // of it is there, so one whose upload was cut off is sent again, whole.
        let present: Vec<String> = r
            .list()?
            .into_iter()
            .filter(|m| m.instance == b.manifest.instance)
            .map(|m| m.id)
            .collect();
        for member in missing_from(&store.chain(&b)?, &present) {
            remote::upload(r, &store, member, recipients.as_ref(), progress)?;
            progress.done();
            uploaded.push(member.manifest.id.clone());
        }
    }
    let pruned = {
        let _lock = store.lock(&key)?;
        store.prune(&key, keep)?
    };
    Ok(BackupOutcome {
        backup: b,
        uploaded,
        remote_label: remote.map(|r| r.label().to_string()),
        pruned,
    })
}

/// What the next backup of an instance of `kind` builds on: the newest backup and its chain's
/// length, when it is this backend's; and whether it may be incremental. Chains are cut at
/// `keep` backups, so retention can remove whole old chains.
pub fn plan(
    existing: &[Manifest],
    kind: BackendKind,
    keep: usize,
    full: bool,
) -> Result<(Option<(&Manifest, usize)>, bool)> {
    let chain_len = backup::chain_len(existing)?;
    let previous = existing
        .last()
        .map(|m| (m, chain_len))
        .filter(|(m, _)| m.backend == kind);
    Ok((previous, !full && chain_len < keep))
}

/// The members of `chain` (oldest first) whose ids are not in `present`, in order.
pub fn missing_from<'a>(chain: &'a [LocalBackup], present: &[String]) -> Vec<&'a LocalBackup> {
    chain
        .iter()
        .filter(|m| !present.contains(&m.manifest.id))
        .collect()
}

/// Applies retention to the backups of `names`, or of every instance in the store when none
/// is given; returns what was removed, per instance.
pub fn prune(
    ctx: &Context,
    names: &[InstanceRef],
    keep: Option<u32>,
) -> Result<Vec<(String, Vec<String>)>> {
    let store = store(ctx);
    let keep = keep.unwrap_or(ctx.config.backup.keep).max(1) as usize;
    let names: Vec<String> = if names.is_empty() {
        let mut n: Vec<String> = store
            .list()
            .into_iter()
            .map(|b| b.manifest.instance)
            .collect();
        n.dedup();
        n
    } else {
        names.iter().map(|n| n.to_string()).collect()
    };
    let mut out = Vec::new();
    for name in names {
        let _lock = store.lock(&name)?;
        let removed = store.prune(&name, keep)?;
        out.push((name, removed));
    }
    Ok(out)
}

/// One row of `nox backups --json` (see docs/cli.md).
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// What `nox restore` takes: `NAME/ID`, or `s3:NAME/ID` when only in S3.
    pub backup: String,
    pub instance: String,
    pub id: String,
    pub backend: BackendKind,
    pub kind: BackupKind,
    pub parent: Option<String>,
    pub consistency: Consistency,
    pub size_bytes: u64,
    pub created_at: String,
    /// Where copies are: `local`, `s3`.
    pub locations: Vec<&'static str>,
}

impl Row {
    fn new(m: &Manifest, location: &'static str) -> Row {
        Row {
            backup: format!("{}/{}", m.instance, m.id),
            instance: m.instance.clone(),
            id: m.id.clone(),
            backend: m.backend,
            kind: m.kind,
            parent: m.parent.clone(),
            consistency: m.consistency,
            size_bytes: m.files.iter().map(|f| f.size).sum(),
            created_at: m.created_at.clone(),
            locations: vec![location],
        }
    }

    /// What restore takes for this row.
    pub fn reference(&self) -> Result<BackupRef> {
        self.backup.parse()
    }
}

/// Local and S3 backups together, each marked with where it is. An S3 that cannot be asked is
/// a warning: the local backups are still listed.
pub fn list(ctx: &Context, ui: &dyn Ui) -> Result<Vec<Row>> {
    let remote = if remote::s3_configured(&ctx.config.s3) {
        match remote::s3(&ctx.config.s3) {
            Ok(r) => Some(r),
            Err(e) => {
                warn_s3(ui, &e);
                None
            }
        }
    } else {
        None
    };
    Ok(rows(&store(ctx), remote.as_deref(), ui))
}

fn warn_s3(ui: &dyn Ui, e: &Error) {
    match e.hint() {
        Some(h) => ui.note(&format!("warning: S3 not listed: {e} (hint: {h})")),
        None => ui.note(&format!("warning: S3 not listed: {e}")),
    }
}

pub fn rows(store: &Store, remote: Option<&dyn RemoteStore>, ui: &dyn Ui) -> Vec<Row> {
    let mut rows: Vec<Row> = store
        .list()
        .into_iter()
        .map(|b| Row::new(&b.manifest, "local"))
        .collect();
    if let Some(r) = remote {
        match r.list() {
            Ok(remote) => {
                for m in remote {
                    match rows
                        .iter_mut()
                        .find(|r| r.instance == m.instance && r.id == m.id)
                    {
                        Some(r) => r.locations.push("s3"),
                        None => {
                            let mut r = Row::new(&m, "s3");
                            r.backup = format!("s3:{}", r.backup);
                            rows.push(r);
                        }
                    }
                }
            }
            Err(e) => warn_s3(ui, &e),
        }
    }
    rows.sort_by(|a, b| (&a.instance, &a.id).cmp(&(&b.instance, &b.id)));
    rows
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testing::{context, FakeBackend, FakeUi};
    use nox_core::progress::Quiet;
    use std::sync::Mutex;

    /// A bucket in memory: manifests it holds, and what was uploaded. With `objects`, the
    /// uploaded files themselves are kept there (`INSTANCE/ID/FILE`), as a bucket would.
    #[derive(Debug, Default)]
    pub struct FakeBucket {
        pub held: Mutex<Vec<Manifest>>,
        pub uploads: Mutex<Vec<String>>,
        pub downloads: Mutex<Vec<String>>,
        pub source: Option<Store>,
        pub objects: Option<std::path::PathBuf>,
    }

    impl RemoteStore for FakeBucket {
        fn label(&self) -> &str {
            "s3://test"
        }
        fn check(&self) -> Result<()> {
            Ok(())
        }
        fn list(&self) -> Result<Vec<Manifest>> {
            Ok(self.held.lock().unwrap().clone())
        }
        fn upload(&self, b: &LocalBackup, _: &dyn nox_core::Progress) -> Result<()> {
            if let Some(dir) = &self.objects {
                let to = dir.join(&b.manifest.instance).join(&b.manifest.id);
                std::fs::create_dir_all(&to).unwrap();
                for f in &b.manifest.files {
                    std::fs::copy(b.file(&f.name), to.join(&f.name)).unwrap();
                }
            }
            self.uploads.lock().unwrap().push(b.manifest.id.clone());
            self.held.lock().unwrap().push(b.manifest.clone());
            Ok(())
        }
        fn download(
            &self,
            store: &Store,
            m: &Manifest,
            identity: Option<&nox_core::backup::crypt::Identity>,
            _: &dyn nox_core::Progress,
        ) -> Result<LocalBackup> {
            self.downloads.lock().unwrap().push(m.id.clone());
            // Copies from the bucket's objects, or from the store the test uploaded from.
            let from = match &self.objects {
                Some(dir) => dir.join(&m.instance).join(&m.id),
                None => {
                    let src = self.source.as_ref().expect("a source store");
                    src.find(&format!("{}/{}", m.instance, m.id).parse()?)?.dir
                }
            };
            let _lock = store.lock(&m.instance)?;
            let staging = store.stage(&m.instance, &m.id)?;
            for f in &m.files {
                std::fs::copy(from.join(&f.name), staging.dir.join(&f.name)).unwrap();
            }
            let clear = match identity {
                Some(i) => nox_core::backup::crypt::unseal(&staging.dir, m, i, &Quiet)?,
                None => m.clone(),
            };
            staging.commit(&clear)
        }
    }

    fn ids(v: &[LocalBackup]) -> Vec<String> {
        v.iter().map(|b| b.manifest.id.clone()).collect()
    }

    #[test]
    fn incremental_until_the_chain_reaches_keep_then_full_and_retention_removes_whole_chains() {
        let dir = tempfile::tempdir().unwrap();
        let vm = FakeBackend::new(BackendKind::Vm);
        vm.add_instance("web");
        let ctx = context(dir.path(), vec![Box::new(vm)]);
        let web: InstanceRef = "web".parse().unwrap();
        let opts = BackupOptions {
            keep: Some(2),
            ..Default::default()
        };
        let mut kinds = Vec::new();
        for _ in 0..5 {
            let o = backup_one(&ctx, &web, opts, None, &FakeUi::default()).unwrap();
            kinds.push(o.backup.manifest.kind);
        }
        use BackupKind::*;
        // full, inc, (chain of 2 = keep) full, inc, full
        assert_eq!(kinds, [Full, Incremental, Full, Incremental, Full]);
        let left = store(&ctx).list_instance("web");
        // Keeping 2: the newest full stands alone; the newest pair's chain is kept whole.
        assert_eq!(left.len(), 3, "{:?}", ids(&left));
        assert!(store(&ctx).chain(left.last().unwrap()).is_ok());
        // --full always starts a chain.
        let o = backup_one(
            &ctx,
            &web,
            BackupOptions {
                full: true,
                keep: Some(5),
                ..opts
            },
            None,
            &FakeUi::default(),
        )
        .unwrap();
        assert_eq!(o.backup.manifest.kind, Full);
    }

    #[test]
    fn an_upload_brings_the_whole_chain_the_bucket_lacks_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let vm = FakeBackend::new(BackendKind::Vm);
        vm.add_instance("web");
        let ctx = context(dir.path(), vec![Box::new(vm)]);
        let web: InstanceRef = "web".parse().unwrap();
        let opts = BackupOptions {
            keep: Some(7),
            ..Default::default()
        };
        let a = backup_one(&ctx, &web, opts, None, &FakeUi::default()).unwrap();
        let b = backup_one(&ctx, &web, opts, None, &FakeUi::default()).unwrap();
        let bucket = FakeBucket::default();
        let c = backup_one(&ctx, &web, opts, Some(&bucket), &FakeUi::default()).unwrap();
        let all = [&a, &b, &c].map(|o| o.backup.manifest.id.clone()).to_vec();
        assert_eq!(c.uploaded, all);
        assert_eq!(*bucket.uploads.lock().unwrap(), all);
        let d = backup_one(&ctx, &web, opts, Some(&bucket), &FakeUi::default()).unwrap();
        assert_eq!(d.uploaded, std::slice::from_ref(&d.backup.manifest.id));
        assert_eq!(d.remote_label.as_deref(), Some("s3://test"));
    }

    #[test]
    fn a_looping_local_chain_stops_the_backup_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let vm = FakeBackend::new(BackendKind::Vm);
        vm.add_instance("web");
        let ctx = context(dir.path(), vec![Box::new(vm)]);
        let web: InstanceRef = "web".parse().unwrap();
        let opts = BackupOptions::default();
        let a = backup_one(&ctx, &web, opts, None, &FakeUi::default()).unwrap();
        // Tamper: make the full backup name itself as its parent.
        let path = a.backup.dir.join(backup::MANIFEST);
        let mut m = a.backup.manifest.clone();
        m.parent = Some(m.id.clone());
        std::fs::write(&path, m.to_json()).unwrap();
        let e = backup_one(&ctx, &web, opts, None, &FakeUi::default()).unwrap_err();
        assert!(e.to_string().contains("cycle"), "{e}");
        assert_eq!(store(&ctx).list_instance("web").len(), 1);
    }

    #[test]
    fn a_backup_of_another_backend_is_never_a_parent() {
        let lxc_full = Manifest {
            backend: BackendKind::Lxc,
            ..sample_manifest("20261125T225000Z")
        };
        let existing = vec![lxc_full];
        let (prev, incremental) = plan(&existing, BackendKind::Vm, 7, false).unwrap();
        assert!(prev.is_none());
        assert!(incremental, "allowed, but there is nothing to build on");
        let (prev, _) = plan(&existing, BackendKind::Lxc, 7, false).unwrap();
        assert_eq!(prev.unwrap().1, 1);
        let (_, incremental) = plan(&existing, BackendKind::Lxc, 1, false).unwrap();
        assert!(!incremental, "a chain as long as keep is cut");
    }

    /// A full VM backup manifest with id `id`, as the fake backend writes one.
    fn sample_manifest(id: &str) -> Manifest {
        let dir = tempfile::tempdir().unwrap();
        let vm = FakeBackend::new(BackendKind::Vm);
        vm.add_instance("web");
        let staging = dir.path().join("s");
        std::fs::create_dir(&staging).unwrap();
        use nox_core::backup::BackupBackend;
        vm.backup(
            &"web".parse().unwrap(),
            &BackupRequest {
                id,
                previous: None,
                incremental: false,
                stop: false,
            },
            &staging,
            &Quiet,
        )
        .unwrap()
    }
}
