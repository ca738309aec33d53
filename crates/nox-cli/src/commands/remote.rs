//! `nox remote add|list|rm`.

use std::process::ExitCode;

use comfy_table::{presets, Table};

use crate::cli::RemoteCommand;
use crate::ui::TerminalUi;

pub fn run(cmd: RemoteCommand) -> anyhow::Result<ExitCode> {
    let ctx = super::context(&[])?;
    match cmd {
        RemoteCommand::Add { name, url, token } => {
            let ui = TerminalUi::default();
            let (_, file) = nox_ops::remotes::add(&ctx, &name, &url, token.as_deref(), &ui)?;
            println!("added remote {name} ({url}) to {}", file.display());
            println!("  create there: nox create NAME --remote {name}");
        }
        RemoteCommand::List(json) => {
            let rows = nox_ops::remotes::list(&ctx);
            if json.json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if rows.is_empty() {
                eprintln!("no remotes; add one with `nox remote add NAME URL --token TOKEN`");
            } else {
                let mut t = Table::new();
                t.load_preset(presets::NOTHING);
                t.set_header(["NAME", "URL", "PROJECT", "STATUS"]);
                for r in rows {
                    let status = if r.reachable {
                        r.status
                    } else {
                        format!("unreachable: {}", r.status)
                    };
                    t.add_row([r.name, r.url, r.project, status]);
                }
                println!("{t}");
            }
        }
        RemoteCommand::Remove { name } => {
            let file = nox_ops::remotes::remove(&ctx, &name)?;
            println!("removed remote {name} from {}", file.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
