//! `nox start|stop|restart|delete`, one instance at a time.

use std::time::Duration;

use nox_core::{InstanceRef, Result};

use crate::context::Context;
use crate::ui::Ui;

/// Starts `r`; with `wait`, returns when the guest is ready.
pub fn start(ctx: &Context, r: &InstanceRef, wait: Option<Duration>, ui: &dyn Ui) -> Result<()> {
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
    let b = ctx.backends.find(r)?;
    b.stop(&r.name, force, timeout, ui.progress())?;
    b.start(&r.name, wait, ui.progress())
}

/// Deletes `r` and every file nox made for it, its launch-script logs included.
pub fn delete(ctx: &Context, r: &InstanceRef, force: bool) -> Result<()> {
    ctx.backends.find(r)?.delete(&r.name, force)?;
    crate::scripts::remove_logs(ctx, r);
    Ok(())
}
