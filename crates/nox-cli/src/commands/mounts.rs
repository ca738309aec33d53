//! `nox mount add|rm|list`.

use std::process::ExitCode;

use comfy_table::{presets, Table};

use crate::cli::MountCommand;
use crate::ui::TerminalUi;

pub fn run(cmd: MountCommand) -> anyhow::Result<ExitCode> {
    let ctx = super::context(&[])?;
    let ui = TerminalUi::default();
    match cmd {
        MountCommand::Add { name, mount } => {
            println!("{}", nox_ops::mounts::add(&ctx, &name, &mount, &ui)?);
        }
        MountCommand::Rm { name, guest_dir } => {
            println!("{}", nox_ops::mounts::remove(&ctx, &name, &guest_dir, &ui)?);
        }
        MountCommand::List { name, json } => {
            let mounts = nox_ops::mounts::list(&ctx, &name)?;
            if json.json {
                println!("{}", serde_json::to_string_pretty(&mounts)?);
            } else if mounts.is_empty() {
                eprintln!("{name} has no shared folders; add one with `nox mount add {name} HOST_DIR:GUEST_DIR`");
            } else {
                let mut t = Table::new();
                t.load_preset(presets::NOTHING);
                t.set_header(["HOST", "GUEST", "MODE"]);
                for m in mounts {
                    let mode = if m.readonly { "ro" } else { "rw" };
                    t.add_row([
                        m.host.display().to_string(),
                        m.guest.display().to_string(),
                        mode.to_string(),
                    ]);
                }
                println!("{t}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
