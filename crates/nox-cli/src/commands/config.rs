//! `nox config show|path`.

use std::process::ExitCode;

use nox_core::config::ConfigFiles;

use crate::cli::ConfigCommand;

pub fn run(cmd: ConfigCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ConfigCommand::Show { origin, json } => show(origin, json.json),
        ConfigCommand::Path { all } => path(all),
    }
}

fn show(origin: bool, json: bool) -> anyhow::Result<ExitCode> {
    let loaded = super::load_config(&[])?;
    match (json, origin) {
        (true, false) => println!("{}", serde_json::to_string_pretty(&loaded.config)?),
        (true, true) => {
            let origins: serde_json::Map<String, serde_json::Value> = loaded
                .leaves()
                .into_iter()
                .map(|(k, _, o)| (k, serde_json::to_value(o).expect("origin serializes")))
                .collect();
            let doc = serde_json::json!({ "config": loaded.config, "origins": origins });
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        (false, false) => print!("{}", toml::to_string_pretty(&loaded.config)?),
        (false, true) => {
            let leaves = loaded.leaves();
            let width = leaves
                .iter()
                .map(|(k, v, _)| k.len() + v.to_string().len() + 3)
                .max()
                .unwrap_or(0);
            for (key, value, origin) in leaves {
                let line = format!("{key} = {value}");
                println!("{line:<width$}  # {origin}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn path(all: bool) -> anyhow::Result<ExitCode> {
    let files = ConfigFiles::from_env();
    // Load to validate too: `config path` on a broken file should say so, not list it happily.
    let loaded = super::load_config(&[])?;
    for (file, _) in files.candidates() {
        if loaded.files_read.contains(&file) {
            println!("{}", file.display());
        } else if all {
            println!("{} (not found)", file.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
