//! `nox image list|pull|rm|build`: the image caches, and images built here.

use std::process::ExitCode;

use comfy_table::{presets, Table};
use nox_core::resources::format_bytes;
use nox_ops::images;

use crate::cli::ImageCommand;
use crate::progress::Terminal;

pub fn run(cmd: ImageCommand) -> anyhow::Result<ExitCode> {
    let ctx = super::context(&[])?;
    match cmd {
        ImageCommand::List(json) => {
            let list = images::list(&ctx)?;
            if json.json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if list.is_empty() {
                eprintln!("no cached images; `nox image pull NAME` or `nox create` fetches one");
            } else {
                let mut t = Table::new();
                t.load_preset(presets::NOTHING);
                t.set_header(["NAME", "SIZE", "VIRTUAL", "CHECKSUM", "URL"]);
                for i in list {
                    t.add_row([
                        i.name,
                        format_bytes(i.size_bytes),
                        format_bytes(i.virtual_size_bytes),
                        i.checksum.chars().take(19).collect::<String>() + "…",
                        i.url,
                    ]);
                }
                println!("{t}");
            }
        }
        ImageCommand::Pull { name } => {
            let progress = Terminal::default();
            let img = images::pull(&ctx, &name, &progress)?;
            nox_core::Progress::done(&progress);
            println!("{} {} {}", img.name, img.checksum, img.path.display());
        }
        ImageCommand::Build {
            name,
            release,
            backend,
            json,
        } => {
            let kinds = match backend {
                Some(b) => vec![b.into()],
                None => vec![nox_core::BackendKind::Vm, nox_core::BackendKind::Lxc],
            };
            let progress = Terminal::default();
            let built = images::build(&ctx, &name, release.as_deref(), &kinds, &progress)?;
            nox_core::Progress::done(&progress);
            if json.json {
                println!("{}", serde_json::to_string_pretty(&built)?);
            } else {
                for img in &built {
                    println!("{} {} {}", img.name, img.checksum, img.path.display());
                }
            }
            if !ctx.config.images.contains_key(&name) {
                eprintln!(
                    "note: [images] has no {name:?}: add [images.{name}] with a build: source to create from it"
                );
            }
        }
        ImageCommand::Rm { image } => {
            for img in images::remove(&ctx, &image)? {
                println!("removed {} ({})", img.name, img.checksum);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
