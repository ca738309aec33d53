//! `nox restore`: a backup (local, or fetched from S3 with every backup its chain needs),
//! verified whole before anything is touched, restored as an instance.

use std::time::Duration;

use nox_core::backup::{self, BackupRef, Manifest, RestoreOptions, Store};
use nox_core::instance::Instance;
use nox_core::state::{Intent, Operation};
use nox_core::{Error, InstanceName, InstanceRef, Progress, Result};

use crate::backup::store;
use crate::context::Context;
use crate::remote::{self, RemoteStore};
use crate::ui::Ui;

/// What `nox restore` was asked.
#[derive(Debug, Clone)]
pub struct RestoreRequest {
    /// `None`: pick one interactively.
    pub backup: Option<BackupRef>,
    /// Restore under this name (a new identity) instead of the backed-up one, on the same
    /// host or remote as the backup's instance.
    pub name: Option<InstanceName>,
    /// Remotes that are clusters: the member to restore onto.
    pub target: Option<String>,
    /// Replace an existing instance of the target name.
    pub force: bool,
    pub start: bool,
    /// Confirms restoring a privileged container without the prompt.
    pub yes: bool,
    pub timeout: Duration,
}

/// What was restored from which backup.
#[derive(Debug, Clone)]
pub struct Restored {
    /// `NAME/ID` of the backup.
    pub from: String,
    pub instance: Instance,
}

pub fn restore(ctx: &Context, req: &RestoreRequest, ui: &dyn Ui) -> Result<Restored> {
    let which = match &req.backup {
        Some(b) => b.clone(),
        None => pick(ctx, ui)?,
    };
    let remote = if which.s3 {
        Some(remote::s3(&ctx.config.s3)?)
    } else {
        None
    };
    restore_from(ctx, req, which, remote.as_deref(), ui)
}

/// The restore, with the S3 store given (a fake in tests).
pub fn restore_from(
    ctx: &Context,
    req: &RestoreRequest,
    which: BackupRef,
    remote: Option<&dyn RemoteStore>,
    ui: &dyn Ui,
) -> Result<Restored> {
    let store = store(ctx);
    let progress = ui.progress();
    let which = match (which.s3, remote) {
        (true, Some(r)) => fetch(
            r,
            &store,
            &which,
            &ctx.config.backup.identity_file,
            progress,
        )?,
        (true, None) => return Err(Error::failure("no S3 store to restore from")),
        (false, _) => which,
    };
    let b = store.find(&which)?;
    let chain = store.chain(&b)?;
    // Every file of the whole chain is checked before anything is touched.
    backup::verify(&chain, progress)?;
    let m = &b.manifest;
    let original: InstanceRef = m.instance.parse()?;
    let target = InstanceRef {
        remote: original.remote.clone(),
        name: req.name.clone().unwrap_or(original.name.clone()),
    };
    let x = crate::exclusive::lock(ctx, &target, "restore", ui)?;
    let backend = ctx.backends.get(target.remote(), m.backend)?;
    if req.target.is_some() && backend.remote().is_none() {
        return Err(Error::Usage(
            "--target restores onto a cluster member: this backup is of an instance on this host"
                .into(),
        ));
    }
    // A backup is not a confirmation: a privileged container (host root) is restored only
    // after the same warning and explicit yes as creating one.
    if m.spec.privileged {
        crate::create::confirm_privileged(ui, req.yes)?;
    }
    let existing = ctx.backends.locate(&target).0;
    if existing.is_some() && !req.force {
        return Err(Error::Refused {
            message: format!("an instance named {target} exists"),
            hint: format!(
                "restore under another name with --name NEW, or replace {target} with --force"
            ),
        });
    }
    if let Some(existing) = existing {
        // Replacing is deleting first: killed during it, the next command finishes it.
        let _intent = x.begin(&Intent::new(Operation::Delete, existing.kind()))?;
        progress.step(&format!("deleting the existing {target}"));
        existing.delete(&target.name, true)?;
        progress.done();
    }
    // Killed from here on, the restore is undone: the instance it was making goes.
    let _intent = x.begin(&Intent::new(Operation::Restore, m.backend))?;
    let options = RestoreOptions {
        start: req.start,
        new_identity: target != original,
        timeout: req.timeout,
        target: req.target.clone(),
    };
    nox_core::fault::point("restore.begun");
    let instance = backend.restore(&chain, &target.name, options, progress)?;
    progress.done();
    Ok(Restored {
        from: format!("{}/{}", m.instance, m.id),
        instance,
    })
}

/// The backups in `all` (one bucket's manifests) that restoring `which` needs: it, then its
/// parent, back to its full backup. Manifests in a bucket are not trusted: a missing parent
/// or a parent cycle is refused, never followed forever.
pub fn s3_chain<'a>(
    all: &'a [Manifest],
    which: &BackupRef,
    label: &str,
) -> Result<Vec<&'a Manifest>> {
    let mine: Vec<&Manifest> = all
        .iter()
        .filter(|m| m.instance == which.instance.to_string())
        .collect();
    let wanted = match &which.id {
        Some(id) => mine.iter().find(|m| &m.id == id),
        None => mine.last(),
    }
    .copied()
    .ok_or_else(|| Error::Refused {
        message: format!("no backup {which} in {label}"),
        hint: "`nox backups` lists the backups".into(),
    })?;
    let mut chain = vec![wanted];
    while let Some(p) = &chain[chain.len() - 1].parent {
        if chain.iter().any(|m| &m.id == p) {
            return Err(backup::cycle(wanted, p));
        }
        let parent = mine.iter().find(|x| &x.id == p).copied().ok_or_else(|| {
            let last = chain[chain.len() - 1];
            Error::failed(
                format!(
                    "backup {}/{} needs {}/{p}, which is not in S3",
                    last.instance, last.id, last.instance
                ),
                "an incremental backup restores only with every backup before it",
            )
        })?;
        chain.push(parent);
    }
    Ok(chain)
}

/// Brings an S3 backup and every backup its chain needs into the local store, decrypted.
/// An encrypted chain needs the identity in `identity_file`: without it, or with another
/// key, the restore is refused before anything is downloaded.
fn fetch(
    remote: &dyn RemoteStore,
    store: &Store,
    which: &BackupRef,
    identity_file: &std::path::Path,
    progress: &dyn Progress,
) -> Result<BackupRef> {
    let all = remote.list()?;
    let chain = s3_chain(&all, which, remote.label())?;
    let identity = backup::crypt::identity_for(&chain, identity_file)?;
    for m in &chain {
        remote.download(store, m, identity.as_ref(), progress)?;
    }
    Ok(BackupRef {
        s3: false,
        instance: which.instance.clone(),
        id: Some(chain[0].id.clone()),
    })
}

/// The interactive picker: only on a terminal, never a prompt without one.
fn pick(ctx: &Context, ui: &dyn Ui) -> Result<BackupRef> {
    if !ui.interactive() {
        return Err(Error::Usage(
            "no BACKUP given and no terminal to pick one on: give NAME/ID (`nox backups` lists them)"
                .into(),
        ));
    }
    let rows = crate::backup::list(ctx, ui)?;
    if rows.is_empty() {
        return Err(Error::Refused {
            message: "there are no backups to restore".into(),
            hint: "make one with `nox backup NAME`".into(),
        });
    }
    let items: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{}  {}  {}  {}  [{}]",
                r.backup,
                r.backend,
                nox_core::resources::human_bytes(r.size_bytes),
                r.created_at,
                r.locations.join(",")
            )
        })
        .collect();
    let picked = ui.select("Restore which backup?", &items, items.len() - 1)?;
    picked
        .and_then(|i| rows.get(i))
        .ok_or_else(|| Error::Usage("no backup picked".into()))?
        .reference()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::tests::FakeBucket;
    use crate::backup::{backup_one, BackupOptions};
    use crate::testing::{context, FakeBackend, FakeUi};
    use nox_core::BackendKind;
    use std::path::PathBuf;

    fn req() -> RestoreRequest {
        RestoreRequest {
            backup: None,
            name: None,
            target: None,
            force: false,
            start: true,
            yes: false,
            timeout: Duration::from_secs(60),
        }
    }

    #[test]
    fn restore_verifies_refuses_an_existing_name_and_replaces_it_with_force() {
        let dir = tempfile::tempdir().unwrap();
        let lxc = FakeBackend::new(BackendKind::Lxc);
        lxc.add_instance("box");
        let ctx = context(dir.path(), vec![Box::new(lxc.clone())]);
        let bx: InstanceRef = "box".parse().unwrap();
        let opts = BackupOptions::default();
        let a = backup_one(&ctx, &bx, opts, None, &FakeUi::default()).unwrap();
        let b = backup_one(&ctx, &bx, opts, None, &FakeUi::default()).unwrap();
        let which: BackupRef = "box".parse().unwrap();
        let ui = FakeUi::default();

        let e = restore_from(&ctx, &req(), which.clone(), None, &ui).unwrap_err();
        assert!(e.is_bad_input() && e.to_string().contains("exists"), "{e}");

        let r = restore_from(
            &ctx,
            &RestoreRequest {
                force: true,
                ..req()
            },
            which.clone(),
            None,
            &ui,
        )
        .unwrap();
        assert_eq!(r.from, format!("box/{}", b.backup.manifest.id));
        assert!(lxc.calls().contains(&"delete box".to_string()));
        // The whole chain, full backup first.
        assert_eq!(
            lxc.restored().pop().unwrap(),
            [a.backup.manifest.id.clone(), b.backup.manifest.id.clone()]
        );

        // A flipped byte is refused by file name, before anything is deleted.
        std::fs::write(a.backup.dir.join("data"), "tampered").unwrap();
        let calls = lxc.calls().len();
        let e = restore_from(
            &ctx,
            &RestoreRequest {
                force: true,
                ..req()
            },
            which,
            None,
            &ui,
        )
        .unwrap_err();
        assert!(e.to_string().contains("corrupt"), "{e}");
        assert_eq!(lxc.calls().len(), calls);
    }

    /// A tampered local manifest (a backup its own parent, or two backups each other's) is
    /// refused as a damaged backup (exit 1) before anything is touched, never walked forever.
    #[test]
    fn a_local_parent_cycle_is_refused_before_anything_is_touched() {
        let dir = tempfile::tempdir().unwrap();
        let lxc = FakeBackend::new(BackendKind::Lxc);
        lxc.add_instance("box");
        let ctx = context(dir.path(), vec![Box::new(lxc.clone())]);
        let bx: InstanceRef = "box".parse().unwrap();
        let opts = BackupOptions::default();
        let a = backup_one(&ctx, &bx, opts, None, &FakeUi::default()).unwrap();
        let b = backup_one(&ctx, &bx, opts, None, &FakeUi::default()).unwrap();
        assert_eq!(
            b.backup.manifest.parent.as_ref(),
            Some(&a.backup.manifest.id)
        );
        let tamper = |backup: &nox_core::backup::LocalBackup, parent: &str| {
            let mut m = backup.manifest.clone();
            m.parent = Some(parent.to_string());
            std::fs::write(backup.dir.join(backup::MANIFEST), m.to_json()).unwrap();
        };
        let force = RestoreRequest {
            force: true,
            ..req()
        };
        let calls = lxc.calls().len();
        let (ida, idb) = (&a.backup.manifest.id, &b.backup.manifest.id);
        let refused = |which: &str| {
            let e = restore_from(
                &ctx,
                &force,
                which.parse().unwrap(),
                None,
                &FakeUi::default(),
            )
            .unwrap_err();
            assert!(e.to_string().contains("parent cycle"), "{which}: {e}");
            assert!(!e.is_bad_input(), "{which}: {e}");
        };
        // b its own parent.
        tamper(&b.backup, idb);
        refused("box");
        refused(&format!("box/{idb}"));
        // a and b each other's parent.
        tamper(&b.backup, ida);
        tamper(&a.backup, idb);
        refused("box");
        refused(&format!("box/{idb}"));
        refused(&format!("box/{ida}"));
        assert_eq!(lxc.calls().len(), calls, "nothing touched");
        assert!(lxc.restored().is_empty());
    }

    #[test]
    fn an_s3_restore_downloads_the_chain_and_refuses_loops_and_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let vm = FakeBackend::new(BackendKind::Vm);
        vm.add_instance("web");
        let ctx = context(dir.path(), vec![Box::new(vm.clone())]);
        let web: InstanceRef = "web".parse().unwrap();
        let opts = BackupOptions::default();
        let up = FakeBucket::default();
        backup_one(&ctx, &web, opts, Some(&up), &FakeUi::default()).unwrap();
        backup_one(&ctx, &web, opts, Some(&up), &FakeUi::default()).unwrap();
        let held = up.held.lock().unwrap().clone();

        // Restore in a second host's store, from the bucket.
        let dir2 = tempfile::tempdir().unwrap();
        let vm2 = FakeBackend::new(BackendKind::Vm);
        let ctx2 = context(dir2.path(), vec![Box::new(vm2.clone())]);
        let bucket = FakeBucket {
            held: std::sync::Mutex::new(held.clone()),
            source: Some(store(&ctx)),
            ..Default::default()
        };
        let r = restore_from(
            &ctx2,
            &req(),
            "s3:web".parse().unwrap(),
            Some(&bucket),
            &FakeUi::default(),
        )
        .unwrap();
        assert_eq!(r.instance.name, "web");
        assert_eq!(bucket.downloads.lock().unwrap().len(), 2);
        assert_eq!(vm2.restored()[0].len(), 2);

        // A loop in the bucket's manifests.
        let mut looped = held.clone();
        looped[0].parent = Some(looped[1].id.clone());
        let e = s3_chain(&looped, &"s3:web".parse().unwrap(), "s3://t").unwrap_err();
        assert!(e.to_string().contains("cycle"), "{e}");
        // A gap.
        let gap = vec![held[1].clone()];
        let e = s3_chain(&gap, &"s3:web".parse().unwrap(), "s3://t").unwrap_err();
        assert!(e.to_string().contains("not in S3"), "{e}");
        let e = s3_chain(&held, &"s3:db".parse().unwrap(), "s3://t").unwrap_err();
        assert!(e.is_bad_input());
    }

    /// A new age key pair in `dir`: (identity file, mode 0600; recipients file; public key).
    fn age_keys(dir: &std::path::Path, name: &str) -> (PathBuf, PathBuf, String) {
        use age::secrecy::ExposeSecret;
        use std::os::unix::fs::PermissionsExt;
        let id = age::x25519::Identity::generate();
        let public = id.to_public().to_string();
        let idf = dir.join(format!("{name}.key"));
        std::fs::write(&idf, format!("{}\n", id.to_string().expose_secret())).unwrap();
        std::fs::set_permissions(&idf, std::fs::Permissions::from_mode(0o600)).unwrap();
        let rf = dir.join(format!("{name}.pub"));
        std::fs::write(&rf, format!("{public}\n")).unwrap();
        (idf, rf, public)
    }

    #[test]
    fn an_encrypted_upload_restores_only_with_its_identity_and_is_refused_before_any_download() {
        let dir = tempfile::tempdir().unwrap();
        let (idf, rf, public) = age_keys(dir.path(), "mine");
        let (other, _, _) = age_keys(dir.path(), "other");
        let vm = FakeBackend::new(BackendKind::Vm);
        vm.add_instance("web");
        let mut ctx = context(&dir.path().join("a"), vec![Box::new(vm.clone())]);
        ctx.config.backup.recipients_file = rf;
        let web: InstanceRef = "web".parse().unwrap();
        let objects = dir.path().join("bucket");
        let up = FakeBucket {
            objects: Some(objects.clone()),
            ..Default::default()
        };
        let opts = BackupOptions::default();
        let a = backup_one(&ctx, &web, opts, Some(&up), &FakeUi::default()).unwrap();
        let b = backup_one(&ctx, &web, opts, Some(&up), &FakeUi::default()).unwrap();

        // In the bucket: encrypted objects, a manifest naming the recipient, nothing in clear.
        let held = up.held.lock().unwrap().clone();
        assert_eq!(held.len(), 2);
        for (m, local) in held.iter().zip([&a.backup, &b.backup]) {
            let e = m.encryption.as_ref().expect("encrypted");
            assert_eq!(e.recipients, vec![public.clone()]);
            assert_eq!(e.plaintext, local.manifest.files);
            assert_eq!(m.files[0].name, "data.age");
            let clear = std::fs::read(local.file("data")).unwrap();
            let sealed = std::fs::read(objects.join("web").join(&m.id).join("data.age")).unwrap();
            assert!(!sealed.windows(clear.len()).any(|w| w == clear.as_slice()));
        }
        // The local store keeps its backups in clear, and no scratch directory.
        assert_eq!(
            std::fs::read_to_string(b.backup.file("data")).unwrap(),
            format!("web {}", b.backup.manifest.id)
        );
        let leftovers: Vec<_> = std::fs::read_dir(a.backup.dir.parent().unwrap())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");

        // Another host, from the bucket.
        let vm2 = FakeBackend::new(BackendKind::Vm);
        let mut ctx2 = context(&dir.path().join("b"), vec![Box::new(vm2.clone())]);
        let bucket = FakeBucket {
            held: std::sync::Mutex::new(held),
            objects: Some(objects),
            ..Default::default()
        };
        let s3web: BackupRef = "s3:web".parse().unwrap();
        for (file, says) in [
            (dir.path().join("none.key"), "does not exist"),
            (other, "not to the key"),
        ] {
            ctx2.config.backup.identity_file = file;
            let e = restore_from(
                &ctx2,
                &req(),
                s3web.clone(),
                Some(&bucket),
                &FakeUi::default(),
            )
            .unwrap_err();
            assert!(e.is_bad_input(), "{e}");
            assert!(
                e.to_string().contains(says) && e.to_string().contains(&public),
                "{e}"
            );
            assert!(bucket.downloads.lock().unwrap().is_empty());
            assert!(store(&ctx2).list().is_empty());
            assert!(vm2.restored().is_empty());
        }
        ctx2.config.backup.identity_file = idf;
        restore_from(&ctx2, &req(), s3web, Some(&bucket), &FakeUi::default()).unwrap();
        assert_eq!(vm2.restored()[0].len(), 2);
        let restored = store(&ctx2).list();
        assert_eq!(restored[1].manifest, b.backup.manifest);
        assert_eq!(
            std::fs::read(restored[1].file("data")).unwrap(),
            std::fs::read(b.backup.file("data")).unwrap()
        );
    }

    #[test]
    fn a_privileged_backup_is_restored_only_after_the_warning() {
        let dir = tempfile::tempdir().unwrap();
        let lxc = FakeBackend::new(BackendKind::Lxc);
        lxc.add_instance("root");
        let ctx = context(dir.path(), vec![Box::new(lxc.clone())]);
        let opts = BackupOptions::default();
        let a = backup_one(
            &ctx,
            &"root".parse().unwrap(),
            opts,
            None,
            &FakeUi::default(),
        )
        .unwrap();
        let mut m = a.backup.manifest.clone();
        m.spec.privileged = true;
        std::fs::write(a.backup.dir.join(backup::MANIFEST), m.to_json()).unwrap();
        let r = RestoreRequest {
            name: Some("root2".parse().unwrap()),
            ..req()
        };
        let e =
            restore_from(&ctx, &r, "root".parse().unwrap(), None, &FakeUi::default()).unwrap_err();
        assert!(e.to_string().contains("without confirmation"), "{e}");
        assert!(lxc.restored().is_empty());
        let ui = FakeUi::interactive(vec![true]);
        restore_from(&ctx, &r, "root".parse().unwrap(), None, &ui).unwrap();
        assert!(ui.notes()[0].contains("WARNING"));
    }

    #[test]
    fn no_backup_and_no_terminal_is_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = context(dir.path(), vec![]);
        let e = restore(&ctx, &req(), &FakeUi::default()).unwrap_err();
        assert!(
            e.is_bad_input() && e.to_string().contains("no terminal"),
            "{e}"
        );
    }
}
