//! `cargo xtask man [DIR]`: nox's man pages, generated from the same clap definition the binary
//! uses. The definition is compiled in here by path so xtask never has to build the backends
//! (and their C libraries) before `cargo xtask setup` has installed them.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::CommandFactory;

#[allow(dead_code)]
#[path = "../../crates/nox-cli/src/cli.rs"]
mod cli;

pub fn run(dir: Option<&str>) -> Result<()> {
    let dir = dir
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::util::project_root().join("target/man"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let cmd = cli::Cli::command();
    clap_mangen::generate_to(cmd, &dir).with_context(|| format!("writing to {}", dir.display()))?;
    println!("{}", dir.display());
    Ok(())
}
