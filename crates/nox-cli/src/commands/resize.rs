//! `nox resize`.

use std::process::ExitCode;

use nox_core::backend::Resize;
use nox_core::host::HostFacts;
use nox_core::Error;

use crate::cli::ResizeArgs;
use crate::progress::Terminal;

pub fn run(a: &ResizeArgs) -> anyhow::Result<ExitCode> {
    if a.resources.cpus.is_none() && a.resources.memory.is_none() && a.resources.disk.is_none() {
        return Err(
            Error::Usage("nothing to resize: give --cpus, --memory or --disk".into()).into(),
        );
    }
    let config = super::load_config(&[])?.config;
    let b = super::find(&config, &a.name)?;
    let mut host = HostFacts::probe(&config.vm.storage_dir)?;
    // Growing a disk needs only the growth in free space, not its whole new size.
    host.disk_free_bytes += b.status(&a.name)?.disk_bytes.unwrap_or(0);
    let r = Resize {
        cpus: a.resources.cpus.map(|c| c.resolve(&host)).transpose()?,
        memory_bytes: a.resources.memory.map(|m| m.resolve(&host)).transpose()?,
        disk_bytes: a.resources.disk.map(|d| d.resolve(&host)).transpose()?,
    };
    let note = b.resize(&a.name, r, &Terminal::default())?;
    if a.restart && (r.cpus.is_some() || r.memory_bytes.is_some()) {
        super::lifecycle::restart_one(&config, &a.name)?;
        println!("resized {} and restarted it", a.name);
    } else if note.is_empty() {
        println!("resized {}", a.name);
    } else {
        println!("resized {}: {note}", a.name);
    }
    Ok(ExitCode::SUCCESS)
}
