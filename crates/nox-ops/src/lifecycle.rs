//! `nox start|stop|restart|delete`, one instance at a time, each under the instance's lock.

use std::time::Duration;

use nox_core::state::{Intent, Operation};
use nox_core::{Error, InstanceRef, Result};

use crate::context::Context;
use crate::exclusive;
use crate::ui::Ui;

/// Starts `r`; with `wait`, returns when the guest is ready.
pub fn start(ctx: &Context, r: &InstanceRef, wait: Option<Duration>, ui: &dyn Ui) -> Result<()> {
    let _x = exclusive::lock(ctx, r, "start", ui)?;
    ctx.backends.find(r)?.start(&r.name, wait, ui.progress())
}

/// Shuts `r` down cleanly, forced off after `timeout` (at once with `force`).
pub fn stop(
    ctx: &Context,
    r: &InstanceRef,
    force: bool,
    timeout: Duration,
    ui: &dyn Ui,
) -> Result<()> {
    let _x = exclusive::lock(ctx, r, "stop", ui)?;
    ctx.backends
        .find(r)?
        .stop(&r.name, force, timeout, ui.progress())
}

/// Stops, then starts `r`.
pub fn restart(
    ctx: &Context,
    r: &InstanceRef,
    force: bool,
    timeout: Duration,
    wait: Option<Duration>,
    ui: &dyn Ui,
) -> Result<()> {
    let _x = exclusive::lock(ctx, r, "restart", ui)?;
    let b = ctx.backends.find(r)?;
    b.stop(&r.name, force, timeout, ui.progress())?;
    b.start(&r.name, wait, ui.progress())
}

/// Deletes `r` and every file nox made for it, its launch-script logs included.
pub fn delete(ctx: &Context, r: &InstanceRef, force: bool, ui: &dyn Ui) -> Result<()> {
    let x = exclusive::lock(ctx, r, "delete", ui)?;
    let backend = match ctx.backends.find(r) {
        Ok(b) => b,
        // What the user asked is done: recovery just removed what a killed command left.
        Err(Error::NotFound { .. }) if x.recovered.is_some() => {
            crate::scripts::remove_logs(ctx, r);
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let _intent = x.begin(&Intent::new(Operation::Delete, backend.kind()))?;
    nox_core::fault::point("delete.begun");
    backend.delete(&r.name, force)?;
    crate::scripts::remove_logs(ctx, r);
    Ok(())
}
