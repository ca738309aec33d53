//! `nox resize`.

use std::process::ExitCode;

use nox_ops::access::{self, ResizeRequest, Resized};

use crate::cli::ResizeArgs;
use crate::ui::TerminalUi;

pub fn run(a: &ResizeArgs) -> anyhow::Result<ExitCode> {
    let ctx = super::context(&[])?;
    let request = ResizeRequest {
        cpus: a.resources.cpus,
        memory: a.resources.memory,
        disk: a.resources.disk,
        restart: a.restart,
    };
    match access::resize(&ctx, &a.name, request, &TerminalUi::default())? {
        Resized::Restarted => println!("resized {} and restarted it", a.name),
        Resized::Done { note } if note.is_empty() => println!("resized {}", a.name),
        Resized::Done { note } => println!("resized {}: {note}", a.name),
    }
    Ok(ExitCode::SUCCESS)
}
