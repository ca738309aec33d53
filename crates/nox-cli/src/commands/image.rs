//! `nox image list|pull|rm|prune|build|warm`: the VM image cache and its templates, the
//! container bases, and images built here.

use std::process::ExitCode;

use comfy_table::{presets, Table};
use nox_core::image::{CachedImage, ImageKind};
use nox_core::resources::human_bytes;
use nox_ops::images;

use crate::cli::{ImageCommand, WarmArgs};
use crate::progress::Terminal;
use crate::ui::TerminalUi;

pub fn run(cmd: ImageCommand) -> anyhow::Result<ExitCode> {
    // `warm`'s shape flags are the top config layer, as `nox create`'s are.
    let overrides = match &cmd {
        ImageCommand::Warm(a) => super::create::shape_overrides(&a.resources, a.network.as_ref()),
        _ => Vec::new(),
    };
    let ctx = super::context(&overrides)?;
    match cmd {
        ImageCommand::Warm(a) => warm(&ctx, &a)?,
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

/// `nox image warm`: what it built, or that the template was there.
fn warm(ctx: &nox_ops::Context, a: &WarmArgs) -> anyhow::Result<()> {
    let ui = TerminalUi::default();
    let warmed = images::warm(ctx, &a.name, &ui)?;
    if a.json.json {
        println!("{}", serde_json::to_string_pretty(&warmed)?);
    } else if warmed.built {
        println!("built {}", describe(&warmed.template));
    } else {
        println!(
            "{} exists already; nothing to do",
            describe(&warmed.template)
        );
    }
    Ok(())
}

/// `lxc debian-12 (sha256:…, 1.2 GiB)`, or for a VM template
/// `vm template debian-12 KEY (2 CPU, 1G memory, 10G disk, network user; 1.1 GiB)`. An image
/// without a recorded name shows its path.
fn describe(img: &CachedImage) -> String {
    let what = if img.name.is_empty() {
        img.path.display().to_string()
    } else {
        img.name.clone()
    };
    if img.kind == ImageKind::Template {
        return match &img.shape {
            Some(shape) => format!(
                "{} template {what} {} ({shape}; {})",
                img.backend,
                shape.key,
                human_bytes(img.size_bytes)
            ),
            None => format!(
                "{} template {what} (unfinished; {})",
                img.backend,
                human_bytes(img.size_bytes)
            ),
        };
    }
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
    t.set_header([
        "NAME", "BACKEND", "KIND", "SIZE", "VIRTUAL", "CHECKSUM", "CREATED", "SHAPE", "URL",
    ]);
    let or_dash = |s: String| if s.is_empty() { "-".into() } else { s };
    for i in list {
        let template = i.kind == ImageKind::Template;
        t.add_row([
            or_dash(i.name),
            i.backend.to_string(),
            i.kind.to_string(),
            human_bytes(i.size_bytes),
            human_bytes(i.virtual_size_bytes),
            shorten(&i.checksum),
            or_dash(i.created_at.unwrap_or_default()),
            or_dash(
                i.shape
                    .map(|s| format!("{s} ({})", s.key))
                    .unwrap_or_default(),
            ),
            // A template's base, with its URL, is the row above it.
            if template { "-".into() } else { or_dash(i.url) },
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
