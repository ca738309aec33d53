//! `nox forward add|list|rm`: port forwards from a host socket to an instance's port.
//!
//! nox-ops checks what no single backend can see: a host port is free only when no instance
//! of any local backend forwards it and no program on the host listens on it. Adding takes the
//! instance's lock and, so two adds never both see a port free, a host-wide forwards lock
//! (`STATE_DIR/forwards.lock`) for the check and the write together.

use nox_core::forward::{Forward, ForwardKey};
use nox_core::{Error, InstanceRef, Result};

use crate::context::Context;
use crate::exclusive;
use crate::ui::Ui;

/// Adds `forward` to `r`. Returns a note when it takes effect only later.
pub fn add(
    ctx: &Context,
    r: &InstanceRef,
    forward: Forward,
    ui: &dyn Ui,
) -> Result<Option<String>> {
    let _x = exclusive::lock(ctx, r, "forward add", ui)?;
    let backend = ctx.backends.find(r)?;
    // An Incus remote refuses here, before any host port is looked at.
    backend.forwards(&r.name)?;
    let _all = lock_forwards(ctx)?;
    for b in ctx.backends.at(None) {
        for i in b.list()? {
            if let Some(f) = i.forwards.iter().find(|f| f.clashes_with(&forward)) {
                return Err(Error::Usage(format!(
                    "host port {}:{}/{} is taken by {}'s forward {f}: pick another port",
                    forward.address, forward.host_port, forward.proto, i.name
                )));
            }
        }
    }
    if let Some(why) = nox_core::forward::host_socket_taken(&forward) {
        return Err(Error::Usage(format!(
            "host port {}:{}/{} is taken on this host ({why}): pick another port",
            forward.address, forward.host_port, forward.proto
        )));
    }
    backend.add_forward(&r.name, forward)
}

/// `r`'s forwards.
pub fn list(ctx: &Context, r: &InstanceRef) -> Result<Vec<Forward>> {
    ctx.backends.find(r)?.forwards(&r.name)
}

/// Removes the forwards `key` names from `r`; returns them and a note.
pub fn remove(
    ctx: &Context,
    r: &InstanceRef,
    key: ForwardKey,
    ui: &dyn Ui,
) -> Result<(Vec<Forward>, Option<String>)> {
    let _x = exclusive::lock(ctx, r, "forward rm", ui)?;
    ctx.backends.find(r)?.remove_forward(&r.name, key)
}

/// Points `r`'s forwards at the address it has in this boot, after a start that did not come
/// through nox (`nox forward follow`, run by liblxc's start-host hook). Waits for the
/// instance's lock, so a `nox start` that is still running finishes first.
pub fn follow(ctx: &Context, r: &InstanceRef, ui: &dyn Ui) -> Result<()> {
    let _x = exclusive::lock(ctx, r, "forward follow", ui)?;
    ctx.backends
        .find(r)?
        .reapply_forwards(&r.name, ui.progress())
}

fn lock_forwards(ctx: &Context) -> Result<nox_core::lock::LockGuard> {
    let dir = &ctx.config.state.dir;
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    nox_core::lock::lock(&dir.join("forwards.lock"))
}
