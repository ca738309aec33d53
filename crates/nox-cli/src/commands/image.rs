//! `nox image list|pull|rm|prune|build`: the VM image cache and the container bases, and
//! images built here.

use std::process::ExitCode;

use comfy_table::{presets, Table};
use nox_core::image::CachedImage;
use nox_core::resources::human_bytes;
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
                println!("{}", table(list));
            }
        }
        ImageCommand::Pull { name, backend } => {
            let progress = Terminal::default();
            let img = images::pull(&ctx, &name, backend.map(Into::into), &progress)?;
            nox_core::Progress::done(&progress);
            print_line(&img);
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
                    print_line(img);
                }
            }
            if !ctx.config.images.contains_key(&name) {
                eprintln!(
                    "note: [images] has no {name:?}: add [images.{name}] with a build: source to create from it"
                );
            }
        }
        ImageCommand::Rm { image, backend } => {
            images::remove(&ctx, &image, backend.map(Into::into), &mut |img| {
                println!("removed {}", describe(img));
            })?;
        }
        ImageCommand::Prune(json) => {
            let pruned = images::prune(&ctx)?;
            if json.json {
                println!("{}", serde_json::to_string_pretty(&pruned)?);
            } else {
                for img in &pruned.removed {
                    println!("removed {}", describe(img));
                }
                // Decimal megabytes, as `df -H` and disk vendors count them.
                println!("freed {:.1} MB", pruned.freed_bytes as f64 / 1e6);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `lxc debian-12 (sha256:…, 1.2 GiB)`: a base without a recorded name shows its path.
fn describe(img: &CachedImage) -> String {
    let what = if img.name.is_empty() {
        img.path.display().to_string()
    } else {
        img.name.clone()
    };
    format!(
        "{} {what} ({}, {})",
        img.backend,
        shorten(&img.checksum),
        human_bytes(img.size_bytes)
    )
}

fn shorten(checksum: &str) -> String {
    if checksum.chars().count() <= 20 {
        return checksum.into();
    }
    checksum.chars().take(19).collect::<String>() + "…"
}

fn table(list: Vec<CachedImage>) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING);
    t.set_header(["NAME", "BACKEND", "SIZE", "VIRTUAL", "CHECKSUM", "URL"]);
    for i in list {
        t.add_row([
            if i.name.is_empty() {
                "-".into()
            } else {
                i.name
            },
            i.backend.to_string(),
            human_bytes(i.size_bytes),
            human_bytes(i.virtual_size_bytes),
            shorten(&i.checksum),
            i.url,
        ]);
    }
    t
}

/// One cached image on one line, for scripts that read words: backend, name, checksum, path.
fn print_line(img: &nox_core::image::CachedImage) {
    println!(
        "{} {} {} {}",
        img.backend,
        img.name,
        img.checksum,
        img.path.display()
    );
}
