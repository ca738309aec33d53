//! `nox forward add|list|rm`.

use std::process::ExitCode;

use comfy_table::{presets, Table};
use nox_core::forward::{Forward, ForwardKey};

use std::path::Path;
use std::process::{Command, Stdio};

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
        ForwardCommand::Follow { name, detach } => {
            if detach {
                return detach_follow(&ctx.config.state.dir, &name.to_string());
            }
            nox_ops::forward::follow(&ctx, &name, &ui)?;
            eprintln!("{name}: forwards follow this boot's address");
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

/// Runs `nox forward follow NAME` again as a child in its own process group, with its output
/// appended to STATE_DIR/forwards-follow.log, and returns without waiting: liblxc holds the
/// container's start until its hook exits, and the address comes only after the start.
fn detach_follow(state_dir: &Path, name: &str) -> anyhow::Result<ExitCode> {
    use std::os::unix::process::CommandExt;
    std::fs::create_dir_all(state_dir)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state_dir.join("forwards-follow.log"))?;
    Command::new(std::env::current_exe()?)
        .args(["forward", "follow", name])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()?;
    Ok(ExitCode::SUCCESS)
}
