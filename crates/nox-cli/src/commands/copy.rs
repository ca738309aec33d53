//! `nox cp`.

use std::process::ExitCode;

use nox_ops::Ui;

use crate::ui::TerminalUi;

pub fn run(src: &str, dst: &str, recursive: bool) -> anyhow::Result<ExitCode> {
    let ctx = super::context(&[])?;
    let ui = TerminalUi::default();
    let copied = nox_ops::copy::copy(&ctx, src, dst, recursive, &ui)?;
    for s in copied.skipped.iter().chain(&copied.warnings) {
        ui.progress().warn(s);
    }
    // On stderr: stdout stays empty, as `cp`'s does.
    eprintln!(
        "copied {} file{} ({})",
        copied.files,
        if copied.files == 1 { "" } else { "s" },
        nox_core::resources::human_bytes(copied.bytes)
    );
    Ok(ExitCode::SUCCESS)
}
