//! `nox start|stop|restart|delete`: each takes several names.

use std::process::ExitCode;

use nox_core::InstanceRef;
use nox_ops::lifecycle;

use crate::cli::{StopArgs, WaitArgs};
use crate::ui::TerminalUi;

pub fn start(names: &[InstanceRef], wait: WaitArgs) -> anyhow::Result<ExitCode> {
    let ctx = super::context(&[])?;
    let ui = TerminalUi::default();
    nox_ops::for_each(names, &ui, |n| {
        lifecycle::start(&ctx, n, wait.wait_for(), &ui)
    })?;
    Ok(ExitCode::SUCCESS)
}

pub fn stop(a: &StopArgs) -> anyhow::Result<ExitCode> {
    let ctx = super::context(&[])?;
    let ui = TerminalUi::default();
    nox_ops::for_each(&a.names, &ui, |n| {
        lifecycle::stop(&ctx, n, a.force, a.stop_timeout, &ui)
    })?;
    Ok(ExitCode::SUCCESS)
}

pub fn restart(a: &StopArgs, wait: WaitArgs) -> anyhow::Result<ExitCode> {
    let ctx = super::context(&[])?;
    let ui = TerminalUi::default();
    nox_ops::for_each(&a.names, &ui, |n| {
        lifecycle::restart(&ctx, n, a.force, a.stop_timeout, wait.wait_for(), &ui)
    })?;
    Ok(ExitCode::SUCCESS)
}

pub fn delete(names: &[InstanceRef], force: bool) -> anyhow::Result<ExitCode> {
    let ctx = super::context(&[])?;
    let ui = TerminalUi::default();
    nox_ops::for_each(names, &ui, |n| lifecycle::delete(&ctx, n, force, &ui))?;
    Ok(ExitCode::SUCCESS)
}
