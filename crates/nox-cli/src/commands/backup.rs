//! `nox backup`, `nox backups`, `nox restore`: the workflows are nox-ops'; this renders them.

use std::process::ExitCode;

use comfy_table::{presets, Table};
use nox_core::backup::{BackupKind, Consistency, Manifest};
use nox_core::resources::human_bytes;
use nox_ops::backup::{BackupOptions, BackupOutcome};
use nox_ops::restore::RestoreRequest;

use crate::cli::{BackupArgs, RestoreArgs};
use crate::ui::TerminalUi;

pub fn backup(a: &BackupArgs) -> anyhow::Result<ExitCode> {
    let ctx = super::context(&[])?;
    if a.prune {
        for (name, removed) in nox_ops::backup::prune(&ctx, &a.names, a.keep)? {
            report_pruned(&name, &removed);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let opts = BackupOptions {
        keep: a.keep,
        full: a.full,
        stop: a.stop,
        to_s3: a.to.is_some(),
    };
    let ui = TerminalUi::default();
    nox_ops::backup::backup(&ctx, &a.names, opts, &ui, &mut print_backup)?;
    Ok(ExitCode::SUCCESS)
}

fn print_backup(o: &BackupOutcome) {
    let m = &o.backup.manifest;
    for id in &o.uploaded {
        println!(
            "{}/{id}: uploaded to {}",
            m.instance,
            o.remote_label.as_deref().unwrap_or("S3")
        );
    }
    let size: u64 = m.files.iter().map(|f| f.size).sum();
    println!(
        "{}/{}: {}, {}, {}",
        m.instance,
        m.id,
        kind_label(m),
        human_bytes(size),
        consistency_label(m.consistency)
    );
    report_pruned(&m.instance, &o.pruned);
}

fn report_pruned(name: &str, ids: &[String]) {
    for id in ids {
        eprintln!("removed {name}/{id} (retention)");
    }
}

fn kind_label(m: &Manifest) -> String {
    match (&m.kind, &m.parent) {
        (BackupKind::Incremental, Some(p)) => format!("incremental backup (on {p})"),
        (BackupKind::Incremental, None) => "incremental backup".into(),
        (BackupKind::Full, _) => "full backup".into(),
    }
}

fn consistency_label(c: Consistency) -> &'static str {
    match c {
        Consistency::Application => "consistent",
        Consistency::Crash => "crash-consistent",
    }
}

pub fn list(json: bool) -> anyhow::Result<ExitCode> {
    let ctx = super::context(&[])?;
    let rows = nox_ops::backup::list(&ctx, &TerminalUi::default())?;
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
                BackupKind::Full => "full".into(),
                BackupKind::Incremental => "incremental".to_string(),
            },
            consistency_label(r.consistency).to_string(),
            human_bytes(r.size_bytes),
            r.created_at.clone(),
            r.locations.join(","),
        ]);
    }
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}

pub fn restore(a: &RestoreArgs) -> anyhow::Result<ExitCode> {
    let ctx = super::context(&[])?;
    let request = RestoreRequest {
        backup: a.backup.as_deref().map(str::parse).transpose()?,
        name: a.name.clone(),
        target: a.target.clone(),
        force: a.force,
        start: !a.no_start,
        yes: a.yes,
        timeout: a.timeout,
    };
    let r = nox_ops::restore::restore(&ctx, &request, &TerminalUi::default())?;
    println!(
        "restored {} as {} ({})",
        r.from, r.instance.name, r.instance.state
    );
    Ok(ExitCode::SUCCESS)
}
