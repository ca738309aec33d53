//! `nox backup`, `nox backups`, `nox restore`: the local store and retention come from
//! nox-core, the data from each backend.

use std::process::ExitCode;

use comfy_table::{presets, Table};
use nox_core::backup::{self, BackupBackend, BackupRef, BackupRequest, LocalBackup, Store};
use nox_core::{BackendKind, Config, Error, InstanceName, Progress};
use nox_libvirt::LibvirtBackend;
use nox_lxc::LxcBackend;
use nox_s3::Remote;
use serde::Serialize;

use crate::cli::{BackupArgs, RestoreArgs};
use crate::progress::Terminal;

/// The backend that backs up and restores instances of `kind`.
fn backup_backend(kind: BackendKind, config: &Config) -> Box<dyn BackupBackend> {
    match kind {
        BackendKind::Vm => Box::new(LibvirtBackend::new(config.clone())),
        BackendKind::Lxc => Box::new(LxcBackend::new(config.clone())),
    }
}

fn store(config: &Config) -> Store {
    Store::new(&config.backup.dir)
}

pub fn backup(a: &BackupArgs) -> anyhow::Result<ExitCode> {
    let config = super::load_config(&[])?.config;
    let keep = a.keep.unwrap_or(config.backup.keep).max(1) as usize;
    let store = store(&config);
    if a.prune {
        let names: Vec<String> = if a.names.is_empty() {
            let mut n: Vec<String> = store
                .list()
                .into_iter()
                .map(|b| b.manifest.instance)
                .collect();
            n.dedup();
            n
        } else {
            a.names.iter().map(|n| n.to_string()).collect()
        };
        for name in names {
            let _lock = store.lock(&name)?;
            report_pruned(&name, &store.prune(&name, keep)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    // Credentials and bucket settings are checked before anything is backed up.
    let remote = match a.to {
        Some(crate::cli::BackupRemote::S3) => {
            let r = Remote::new(&config.s3)?;
            r.check()?;
            Some(r)
        }
        None => None,
    };
    super::for_each(&a.names, |name| {
        let b = backup_one(&config, &store, name, a, keep)?;
        if let Some(r) = &remote {
            // An incremental is useless in S3 without the backups it builds on: upload every
            // member of its chain the bucket does not have yet, oldest first.
            let present: Vec<String> = r
                .list()?
                .into_iter()
                .filter(|x| x.manifest.instance == b.manifest.instance)
                .map(|x| x.manifest.id)
                .collect();
            // Oldest first, so a parent is always in the bucket before its child.
            let chain = store.chain(&b)?;
            for member in chain.iter().filter(|m| !present.contains(&m.manifest.id)) {
                let progress = Terminal::default();
                r.upload(member, &progress)?;
                progress.done();
                println!(
                    "{}/{}: uploaded to {}",
                    member.manifest.instance, member.manifest.id, r.label
                );
            }
        }
        let m = &b.manifest;
        let size: u64 = m.files.iter().map(|f| f.size).sum();
        println!(
            "{}/{}: {}, {}, {}",
            m.instance,
            m.id,
            kind_label(m),
            human(size),
            consistency_label(m)
        );
        report_pruned(name.as_str(), &store.prune(name.as_str(), keep)?);
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn report_pruned(name: &str, ids: &[String]) {
    for id in ids {
        eprintln!("removed {name}/{id} (retention)");
    }
}

fn backup_one(
    config: &Config,
    store: &Store,
    name: &InstanceName,
    a: &BackupArgs,
    keep: usize,
) -> Result<LocalBackup, Error> {
    let kind = super::find(config, name)?.kind();
    let progress = Terminal::default();
    // One backup of an instance at a time; this also clears what a killed one left.
    let _lock = store.lock(name.as_str())?;
    let existing = store.list_instance(name.as_str());
    let manifests: Vec<_> = existing.iter().map(|b| b.manifest.clone()).collect();
    let chain_len = backup::chain_len(&manifests);
    let previous = existing
        .last()
        .map(|b| (&b.manifest, chain_len))
        .filter(|(m, _)| m.backend == kind);
    let id = store.next_id(name.as_str());
    let staging = store.stage(name.as_str(), &id)?;
    let request = BackupRequest {
        id: &id,
        previous,
        // Chains are cut at the retention count, so retention can remove whole old chains.
        incremental: !a.full && chain_len < keep,
        stop: a.stop,
    };
    let manifest = backup_backend(kind, config).backup(name, &request, &staging.dir, &progress)?;
    progress.done();
    if let Some(note) = manifest
        .note
        .as_ref()
        .filter(|_| manifest.consistency == backup::Consistency::Crash)
    {
        progress.warn(&format!("{name}: crash-consistent backup: {note}"));
    }
    staging.commit(&manifest)
}

fn kind_label(m: &backup::Manifest) -> String {
    match (&m.kind, &m.parent) {
        (backup::BackupKind::Incremental, Some(p)) => format!("incremental backup (on {p})"),
        (backup::BackupKind::Incremental, None) => "incremental backup".into(),
        (backup::BackupKind::Full, _) => "full backup".into(),
    }
}

fn consistency_label(m: &backup::Manifest) -> &'static str {
    match m.consistency {
        backup::Consistency::Application => "consistent",
        backup::Consistency::Crash => "crash-consistent",
    }
}

/// Sizes as people read them (format_bytes prints exact units only).
fn human(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// One row of `nox backups --json` (see docs/cli.md).
#[derive(Debug, Serialize)]
struct Row {
    /// What `nox restore` takes: `NAME/ID`, or `s3:NAME/ID` when only in S3.
    backup: String,
    instance: String,
    id: String,
    backend: BackendKind,
    kind: backup::BackupKind,
    parent: Option<String>,
    consistency: backup::Consistency,
    size_bytes: u64,
    created_at: String,
    /// Where copies are: `local`, `s3`.
    locations: Vec<&'static str>,
}

/// Local and S3 backups together, each marked with where it is. An S3 that cannot be asked is
/// a warning: the local backups are still listed.
fn rows(config: &Config) -> Result<Vec<Row>, Error> {
    let mut rows: Vec<Row> = store(config)
        .list()
        .into_iter()
        .map(|b| row(&b.manifest, "local"))
        .collect();
    if Remote::configured(&config.s3) {
        match Remote::new(&config.s3).and_then(|r| r.list()) {
            Ok(remote) => {
                for rb in remote {
                    let m = rb.manifest;
                    match rows
                        .iter_mut()
                        .find(|r| r.instance == m.instance && r.id == m.id)
                    {
                        Some(r) => r.locations.push("s3"),
                        None => {
                            let mut r = row(&m, "s3");
                            r.backup = format!("s3:{}", r.backup);
                            rows.push(r);
                        }
                    }
                }
            }
            Err(e) => match e.hint() {
                Some(h) => eprintln!("warning: S3 not listed: {e} (hint: {h})"),
                None => eprintln!("warning: S3 not listed: {e}"),
            },
        }
    }
    rows.sort_by(|a, b| (&a.instance, &a.id).cmp(&(&b.instance, &b.id)));
    Ok(rows)
}

/// Brings an S3 backup and every backup its chain needs into the local store.
fn fetch_from_s3(
    config: &Config,
    which: &BackupRef,
    progress: &dyn Progress,
) -> Result<BackupRef, Error> {
    let remote = Remote::new(&config.s3)?;
    let all: Vec<backup::Manifest> = remote
        .list()?
        .into_iter()
        .map(|r| r.manifest)
        .filter(|m| m.instance == which.instance.as_str())
        .collect();
    let wanted = match &which.id {
        Some(id) => all.iter().find(|m| &m.id == id),
        None => all.last(),
    }
    .ok_or_else(|| Error::Refused {
        message: format!("no backup {which} in {}", remote.label),
        hint: "`nox backups` lists the backups".into(),
    })?;
    let store = store(config);
    let mut next = Some(wanted.clone());
    let mut seen = std::collections::HashSet::new();
    while let Some(m) = next.take() {
        // Manifests in a bucket are not trusted: a parent cycle must not loop forever.
        if !seen.insert(m.id.clone()) {
            return Err(Error::failed(
                format!("backup {}/{} has a parent cycle in S3", m.instance, m.id),
                "the bucket's manifests were tampered with; do not restore from them",
            ));
        }
        remote.download(&store, &m, progress)?;
        if let Some(p) = &m.parent {
            next = Some(all.iter().find(|x| &x.id == p).cloned().ok_or_else(|| {
                Error::failed(
                    format!(
                        "backup {}/{} needs {}/{p}, which is not in S3",
                        m.instance, m.id, m.instance
                    ),
                    "an incremental backup restores only with every backup before it",
                )
            })?);
        }
    }
    Ok(BackupRef {
        s3: false,
        instance: which.instance.clone(),
        id: Some(wanted.id.clone()),
    })
}

fn row(m: &backup::Manifest, location: &'static str) -> Row {
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

pub fn list(json: bool) -> anyhow::Result<ExitCode> {
    let config = super::load_config(&[])?.config;
    let rows = rows(&config)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        eprintln!("no backups; make one with `nox backup NAME`");
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = Table::new();
    t.load_preset(presets::NOTHING);
    t.set_header([
        "BACKUP",
        "BACKEND",
        "KIND",
        "CONSISTENCY",
        "SIZE",
        "CREATED",
        "WHERE",
    ]);
    for r in &rows {
        t.add_row([
            r.backup.clone(),
            r.backend.to_string(),
            match r.kind {
                backup::BackupKind::Full => "full".into(),
                backup::BackupKind::Incremental => "incremental".to_string(),
            },
            match r.consistency {
                backup::Consistency::Application => "consistent".into(),
                backup::Consistency::Crash => "crash-consistent".to_string(),
            },
            human(r.size_bytes),
            r.created_at.clone(),
            r.locations.join(","),
        ]);
    }
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}

pub fn restore(a: &RestoreArgs) -> anyhow::Result<ExitCode> {
    let config = super::load_config(&[])?.config;
    let which: BackupRef = match &a.backup {
        Some(s) => s.parse()?,
        None => pick(&config)?,
    };
    let store = store(&config);
    let progress = Terminal::default();
    let which = if which.s3 {
        fetch_from_s3(&config, &which, &progress)?
    } else {
        which
    };
    let b = store.find(&which)?;
    let chain = store.chain(&b)?;
    // Every file of the whole chain is checked before anything is touched.
    backup::verify(&chain, &progress)?;
    let m = &b.manifest;
    let target = match &a.name {
        Some(n) => n.clone(),
        None => m.instance.parse::<InstanceName>()?,
    };
    // A backup is not a confirmation: a privileged container (host root) is restored only
    // after the same warning and explicit yes as creating one.
    if m.spec.privileged {
        super::create::confirm_privileged(a.yes)?;
    }
    if let (Some(existing), _) = super::locate(&config, &target) {
        if !a.force {
            return Err(Error::Refused {
                message: format!("an instance named {target} exists"),
                hint: format!(
                    "restore under another name with --name NEW, or replace {target} with --force"
                ),
            }
            .into());
        }
        progress.step(&format!("deleting the existing {target}"));
        existing.delete(&target, true)?;
        progress.done();
    }
    let options = backup::RestoreOptions {
        start: !a.no_start,
        new_identity: target.as_str() != m.instance,
        timeout: a.timeout,
    };
    let inst = backup_backend(m.backend, &config).restore(&chain, &target, options, &progress)?;
    progress.done();
    println!(
        "restored {}/{} as {} ({})",
        m.instance, m.id, inst.name, inst.state
    );
    Ok(ExitCode::SUCCESS)
}

/// The interactive picker: only on a terminal, never a prompt without one.
fn pick(config: &Config) -> Result<BackupRef, Error> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        return Err(Error::Usage(
            "no BACKUP given and no terminal to pick one on: give NAME/ID (`nox backups` lists them)"
                .into(),
        ));
    }
    let rows = rows(config)?;
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
                human(r.size_bytes),
                r.created_at,
                r.locations.join(",")
            )
        })
        .collect();
    let i = dialoguer::Select::new()
        .with_prompt("Restore which backup?")
        .items(&items)
        .default(items.len() - 1)
        .interact_opt()
        .map_err(|e| Error::Backend(format!("reading your choice: {e}")))?
        .ok_or_else(|| Error::Usage("no backup picked".into()))?;
    rows[i].backup.parse()
}
