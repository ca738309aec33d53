//! `nox exec|ssh|console|passwd`.

use std::process::ExitCode;

use nox_core::InstanceRef;
use nox_ops::access;

use crate::ui::TerminalUi;

pub fn exec(name: &InstanceRef, argv: &[String]) -> anyhow::Result<ExitCode> {
    let ctx = super::context(&[])?;
    Ok(ExitCode::from(access::exec(&ctx, name, argv)?))
}

/// Replaces nox with ssh; returns only when that failed.
pub fn ssh(name: &InstanceRef, command: &[String]) -> anyhow::Result<ExitCode> {
    let ctx = super::context(&[])?;
    Err(access::ssh(&ctx, name, command, &TerminalUi::default()).into())
}

/// Replaces nox with the console; returns only when that failed.
pub fn console(name: &InstanceRef) -> anyhow::Result<ExitCode> {
    let ctx = super::context(&[])?;
    Err(access::console(&ctx, name, &TerminalUi::default()).into())
}

pub fn passwd(name: &InstanceRef, user: Option<&str>) -> anyhow::Result<ExitCode> {
    let ctx = super::context(&[])?;
    let (user, password) = access::passwd(&ctx, name, user, &TerminalUi::default())?;
    // Shown once, on stdout only; nox keeps no copy. The one it cannot wipe is in the standard
    // library's stdout buffer (a static, reused by the next line printed).
    println!("{}", password.as_str());
    eprintln!("new password for {user} in {name}; nox does not store it");
    Ok(ExitCode::SUCCESS)
}
