//! `nox start|stop|restart|delete`: each takes several names.

use std::process::ExitCode;
use std::time::Duration;

use nox_core::InstanceName;

use crate::cli::{StopArgs, WaitArgs};
use crate::progress::Terminal;

pub fn start(names: &[InstanceName], wait: WaitArgs) -> anyhow::Result<ExitCode> {
    let config = super::load_config(&[])?.config;
    super::for_each(names, |n| {
        super::find(&config, n)?.start(n, wait.wait_for(), &Terminal::default())
    })?;
    Ok(ExitCode::SUCCESS)
}

pub fn stop(a: &StopArgs) -> anyhow::Result<ExitCode> {
    let config = super::load_config(&[])?.config;
    super::for_each(&a.names, |n| {
        super::find(&config, n)?.stop(n, a.force, a.stop_timeout, &Terminal::default())
    })?;
    Ok(ExitCode::SUCCESS)
}

pub fn restart(a: &StopArgs, wait: WaitArgs) -> anyhow::Result<ExitCode> {
    let config = super::load_config(&[])?.config;
    super::for_each(&a.names, |n| {
        let b = super::find(&config, n)?;
        let progress = Terminal::default();
        b.stop(n, a.force, a.stop_timeout, &progress)?;
        b.start(n, wait.wait_for(), &progress)
    })?;
    Ok(ExitCode::SUCCESS)
}

pub fn delete(names: &[InstanceName], force: bool) -> anyhow::Result<ExitCode> {
    let config = super::load_config(&[])?.config;
    super::for_each(names, |n| {
        super::find(&config, n)?.delete(n, force)?;
        super::scripts::remove_logs(n);
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Shared by resize --restart.
pub fn restart_one(config: &nox_core::Config, n: &InstanceName) -> Result<(), nox_core::Error> {
    let b = super::find(config, n)?;
    let progress = Terminal::default();
    b.stop(n, false, Duration::from_secs(60), &progress)?;
    b.start(n, Some(Duration::from_secs(600)), &progress)
}
