//! `nox forward add|list|rm`.

use std::process::ExitCode;

use comfy_table::{presets, Table};
use nox_core::forward::{Forward, ForwardKey};

use crate::cli::ForwardCommand;
use crate::ui::TerminalUi;

pub fn run(cmd: ForwardCommand) -> anyhow::Result<ExitCode> {
    let ctx = super::context(&[])?;
    let ui = TerminalUi::default();
    match cmd {
        ForwardCommand::Add {
            name,
            forward,
            address,
        } => {
            let f = Forward::parse(&forward, address)?;
            let note = nox_ops::forward::add(&ctx, &name, f, &ui)?;
            println!("{name}: forwarding {f}");
            if let Some(note) = note {
                eprintln!("note: {note}");
            }
        }
        ForwardCommand::List { name, json } => {
            let forwards = nox_ops::forward::list(&ctx, &name)?;
            if json.json {
                println!("{}", serde_json::to_string_pretty(&forwards)?);
            } else if forwards.is_empty() {
                eprintln!("{name} has no forwards; add one with `nox forward add {name} 8080:80`");
            } else {
                let mut t = Table::new();
                t.load_preset(presets::NOTHING);
                t.set_header(["HOST", "GUEST PORT", "PROTO"]);
                for f in forwards {
                    t.add_row([
                        format!("{}:{}", f.address, f.host_port),
                        f.guest_port.to_string(),
                        f.proto.to_string(),
                    ]);
                }
                println!("{t}");
            }
        }
        ForwardCommand::Rm {
            name,
            forward,
            address,
        } => {
            let key = ForwardKey::parse(&forward, address)?;
            let (gone, note) = nox_ops::forward::remove(&ctx, &name, key, &ui)?;
            for f in gone {
                println!("{name}: removed forward {f}");
            }
            if let Some(note) = note {
                eprintln!("note: {note}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
