//! `nox image list|pull|rm`: the VM image cache.

use std::process::ExitCode;

use comfy_table::{presets, Table};
use nox_core::resources::format_bytes;
use nox_libvirt::{images, LibvirtBackend};

use crate::cli::ImageCommand;
use crate::progress::Terminal;

pub fn run(cmd: ImageCommand) -> anyhow::Result<ExitCode> {
    let config = super::load_config(&[])?.config;
    let dir = &config.vm.storage_dir;
    match cmd {
        ImageCommand::List(json) => {
            let list = images::list(dir);
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
            let source = config.image_source(&name, nox_core::BackendKind::Vm)?;
            let img = images::ensure(dir, &name, source, &Terminal::default())?;
            println!("{} {} {}", img.name, img.checksum, img.path.display());
        }
        ImageCommand::Rm { image } => {
            let in_use = LibvirtBackend::new(config.clone()).images_in_use()?;
            for img in images::remove(dir, &image, &in_use)? {
                println!("removed {} ({})", img.name, img.checksum);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
