//! `nox run NAME SCRIPT...`.

use std::process::ExitCode;

use nox_core::InstanceRef;

use crate::ui::TerminalUi;

pub fn run(name: &InstanceRef, scripts: &[String]) -> anyhow::Result<ExitCode> {
    let ctx = super::context(&[])?;
    nox_ops::scripts::run(
        &ctx,
        name,
        scripts,
        super::ts_authkey(),
        &TerminalUi::default(),
    )?;
    Ok(ExitCode::SUCCESS)
}
