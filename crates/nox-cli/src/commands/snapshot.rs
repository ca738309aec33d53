//! `nox snapshot`, `nox snapshot restore|rm`, `nox snapshots`: the workflows are nox-ops';
//! this renders them.

use std::process::ExitCode;

use comfy_table::{presets, Table};
use nox_core::backup::Consistency;
use nox_core::InstanceRef;
use nox_ops::Ui;

use crate::cli::{SnapshotArgs, SnapshotCommand};
use crate::ui::TerminalUi;

pub fn run(a: SnapshotArgs) -> anyhow::Result<ExitCode> {
    let ctx = super::context(&[])?;
    let ui = TerminalUi::default();
    match (a.command, a.name) {
        (Some(SnapshotCommand::Restore { name, snapshot }), _) => {
            let done = nox_ops::snapshot::restore(&ctx, &name, &snapshot, &ui)?;
            for n in &done.notes {
                ui.note(n);
            }
            println!(
                "{name}: restored to snapshot {snapshot}{}",
                if done.running { ", running" } else { "" }
            );
        }
        (Some(SnapshotCommand::Rm { name, snapshot }), _) => {
            nox_ops::snapshot::remove(&ctx, &name, &snapshot, &ui)?;
            println!("{name}: removed snapshot {snapshot}");
        }
        (None, Some(name)) => {
            let s = nox_ops::snapshot::take(&ctx, &name, a.snapshot, a.memory, &ui)?;
            if s.consistency == Consistency::Crash {
                ui.note(&format!("warning: {name}/{}: {}", s.name, s.note));
            }
            println!(
                "{name}: snapshot {} taken ({}{})",
                s.name,
                consistency(s.consistency),
                if s.memory { ", with memory" } else { "" }
            );
        }
        // clap requires NAME when no subcommand is given.
        (None, None) => anyhow::bail!("nox snapshot needs an instance name"),
    }
    Ok(ExitCode::SUCCESS)
}

fn consistency(c: Consistency) -> &'static str {
    match c {
        Consistency::Application => "consistent",
        Consistency::Crash => "crash-consistent",
    }
}

pub fn list(name: &InstanceRef, json: bool) -> anyhow::Result<ExitCode> {
    let ctx = super::context(&[])?;
    let snaps = nox_ops::snapshot::list(&ctx, name)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&snaps)?);
        return Ok(ExitCode::SUCCESS);
    }
    if snaps.is_empty() {
        eprintln!("{name} has no snapshots; `nox snapshot {name}` takes one");
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = Table::new();
    t.load_preset(presets::NOTHING);
    t.set_header(["NAME", "TAKEN", "STATE", "CONSISTENCY", "HOW"]);
    for s in &snaps {
        let state = match (s.was_running, s.memory) {
            (true, true) => "running, with memory",
            (true, false) => "running",
            (false, _) => "stopped",
        };
        t.add_row([
            s.name.as_str(),
            s.created_at.as_str(),
            state,
            consistency(s.consistency),
            s.note.as_str(),
        ]);
    }
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}
