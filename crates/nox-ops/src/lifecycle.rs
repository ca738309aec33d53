//! `nox start|stop|restart|delete`, one instance at a time.

use std::time::Duration;

use nox_core::{InstanceName, Result};

use crate::context::Context;
use crate::ui::Ui;

/// Starts `name`; with `wait`, returns when the guest is ready.
pub fn start(
    ctx: &Context,
    name: &InstanceName,
    wait: Option<Duration>,
    ui: &dyn Ui,
) -> Result<()> {
    ctx.backends.find(name)?.start(name, wait, ui.progress())
}

/// Shuts `name` down cleanly, forced off after `timeout` (at once with `force`).
pub fn stop(
    ctx: &Context,
    name: &InstanceName,
    force: bool,
    timeout: Duration,
    ui: &dyn Ui,
) -> Result<()> {
    ctx.backends
        .find(name)?
        .stop(name, force, timeout, ui.progress())
}

/// Stops, then starts `name`.
pub fn restart(
    ctx: &Context,
    name: &InstanceName,
    force: bool,
    timeout: Duration,
    wait: Option<Duration>,
    ui: &dyn Ui,
) -> Result<()> {
    let b = ctx.backends.find(name)?;
    b.stop(name, force, timeout, ui.progress())?;
    b.start(name, wait, ui.progress())
}

/// Deletes `name` and every file nox made for it, its launch-script logs included.
pub fn delete(ctx: &Context, name: &InstanceName, force: bool) -> Result<()> {
    ctx.backends.find(name)?.delete(name, force)?;
    crate::scripts::remove_logs(ctx, name);
    Ok(())
}
