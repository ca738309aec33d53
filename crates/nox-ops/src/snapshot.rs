//! `nox snapshot`, `nox snapshots`, `nox snapshot restore|rm`: each under the instance's lock
//! with an intent record, so a killed one is put right by the next command (see
//! [`recover`]); the backend's [`SnapshotBackend`] does the work.

use nox_core::instance::InstanceState;
use nox_core::snapshot::{next_name, Snapshot, SnapshotBackend, SnapshotRequest, SnapshotRestored};
use nox_core::state::{Intent, Operation};
use nox_core::{Backend, Error, InstanceName, InstanceRef, Result};

use crate::context::Context;
use crate::exclusive;
use crate::ui::Ui;

/// The snapshot side of the backend holding `r`, or a one-line refusal.
fn snapshots<'a>(
    ctx: &'a Context,
    r: &InstanceRef,
) -> Result<(&'a dyn Backend, &'a dyn SnapshotBackend)> {
    let b = ctx.backends.find(r)?;
    match b.snapshots() {
        Some(s) => Ok((b, s)),
        None => Err(Error::Refused {
            message: format!("{r}: nox does not snapshot remote (Incus) instances yet"),
            hint: format!(
                "back it up instead (`nox backup {r}`), or use `incus snapshot create` on the remote"
            ),
        }),
    }
}

/// Takes a snapshot of `r`, named `name` or the next free `snapN`.
pub fn take(
    ctx: &Context,
    r: &InstanceRef,
    name: Option<InstanceName>,
    memory: bool,
    ui: &dyn Ui,
) -> Result<Snapshot> {
    let x = exclusive::lock(ctx, r, "snapshot", ui)?;
    let (b, s) = snapshots(ctx, r)?;
    let name = match name {
        Some(n) => n,
        None => next_name(&s.list(&r.name)?)?,
    };
    let _intent = x.begin(&Intent::new(Operation::Snapshot, b.kind()))?;
    nox_core::fault::point("snapshot.begun");
    s.take(&r.name, &SnapshotRequest { name, memory }, ui.progress())
}

/// `r`'s snapshots, oldest first. Takes no lock, as `list` does not.
pub fn list(ctx: &Context, r: &InstanceRef) -> Result<Vec<Snapshot>> {
    let (_, s) = snapshots(ctx, r)?;
    s.list(&r.name)
}

/// Puts `r` back to `snapshot`.
pub fn restore(
    ctx: &Context,
    r: &InstanceRef,
    snapshot: &InstanceName,
    ui: &dyn Ui,
) -> Result<SnapshotRestored> {
    let x = exclusive::lock(ctx, r, "snapshot restore", ui)?;
    let (b, s) = snapshots(ctx, r)?;
    let mut intent = Intent::new(Operation::Snapshot, b.kind());
    intent.was_running = b.status(&r.name)?.state == InstanceState::Running;
    let _intent = x.begin(&intent)?;
    nox_core::fault::point("snapshot.restore.begun");
    s.restore(&r.name, snapshot.as_str(), ui.progress())
}

/// Removes one snapshot of `r`.
pub fn remove(ctx: &Context, r: &InstanceRef, snapshot: &InstanceName, ui: &dyn Ui) -> Result<()> {
    let x = exclusive::lock(ctx, r, "snapshot rm", ui)?;
    let (b, s) = snapshots(ctx, r)?;
    let _intent = x.begin(&Intent::new(Operation::Snapshot, b.kind()))?;
    s.remove(&r.name, snapshot.as_str())
}

/// What a killed snapshot command left of `r` (called by [`exclusive`] under the lock).
pub(crate) fn recover(b: &dyn Backend, r: &InstanceRef, was_running: bool) -> Result<Vec<String>> {
    match b.snapshots() {
        Some(s) => s.recover(&r.name, was_running),
        None => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{context, FakeBackend, FakeUi};
    use nox_core::BackendKind;

    #[test]
    fn a_backend_without_snapshots_is_refused_in_one_line_and_nothing_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let b = FakeBackend::new(BackendKind::Lxc);
        b.add_instance("web");
        let ctx = context(dir.path(), vec![Box::new(b.clone())]);
        let r: InstanceRef = "web".parse().unwrap();
        let e = take(&ctx, &r, None, false, &FakeUi::default()).unwrap_err();
        assert!(e.is_bad_input(), "{e}");
        assert!(e.to_string().contains("does not snapshot"), "{e}");
        assert!(!e.to_string().contains('\n'));
        // No intent record was left for the next command to "recover".
        let ui = FakeUi::default();
        let x = exclusive::lock(&ctx, &r, "start", &ui).unwrap();
        assert_eq!(x.recovered, None);
        assert!(b.calls().iter().all(|c| !c.starts_with("recover")));
    }
}
