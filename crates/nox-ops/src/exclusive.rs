//! One changing command per instance at a time, and recovery from one that was killed.
//!
//! Every verb that changes an instance takes its lock here first (`create`, `delete`,
//! `start`, `stop`, `restart`, `resize`, `passwd`, `run`, `backup`, `restore`); `list`,
//! `status`, `exec`, `ssh` and `console` never do. With the lock held, a record left by a
//! command that died is acted on before anything else: the half-done work is finished or
//! undone by the backend, and the user is told in one line.

use nox_core::state::{Held, Holder, Intent, IntentGuard, Operation, StateDir, Wait};
use nox_core::{Error, InstanceRef, Result};

use crate::context::Context;
use crate::ui::Ui;

/// The instance lock, held, and what recovery found.
#[derive(Debug)]
pub struct Exclusive {
    held: Held,
    /// The operation a killed command left that was just put right, if any.
    pub recovered: Option<Operation>,
}

impl Exclusive {
    /// Records `operation` before its first side effect; the record goes with the guard.
    pub fn begin(&self, intent: &Intent) -> Result<IntentGuard> {
        self.held.begin(intent)
    }
}

fn state(ctx: &Context) -> StateDir {
    StateDir::new(&ctx.config.state.dir)
}

/// Takes `r`'s lock for `verb`, waiting (and saying so) while another command holds it, then
/// recovers from a killed one.
pub fn lock(ctx: &Context, r: &InstanceRef, verb: &str, ui: &dyn Ui) -> Result<Exclusive> {
    let mut waiting = |h: &Holder| ui.note(&format!("{r}: waiting for {h} to finish"));
    let held = state(ctx)
        .lock(r, verb, Wait::Yes(&mut waiting))?
        .map_err(|h| Error::failure(format!("{r} is locked by {h}")))?;
    recover(ctx, r, held, ui)
}

/// Takes `r`'s lock for a command that makes the instance (`create`): never waits. A held
/// lock means another command is making or changing an instance of that name, so the name is
/// taken: bad input, said at once.
pub fn lock_new(ctx: &Context, r: &InstanceRef, verb: &str, ui: &dyn Ui) -> Result<Exclusive> {
    match state(ctx).lock(r, verb, Wait::No)? {
        Ok(held) => recover(ctx, r, held, ui),
        Err(holder) => Err(Error::Refused {
            message: format!("an instance named {r} already exists: {holder} is working on it"),
            hint: "pick another name, or wait for that command to finish".into(),
        }),
    }
}

/// Puts right what a killed command left of `r`, if it left anything.
fn recover(ctx: &Context, r: &InstanceRef, held: Held, ui: &dyn Ui) -> Result<Exclusive> {
    let Some(intent) = held.interrupted()? else {
        return Ok(Exclusive {
            held,
            recovered: None,
        });
    };
    let backend = ctx.backends.get(r.remote(), intent.backend).map_err(|e| {
        Error::failed(
            format!(
                "{r}: an interrupted `nox {}` left work this nox cannot finish: {e}",
                intent.operation
            ),
            format!(
                "run a nox that has the {} backend, or remove {} once the instance is as you want it",
                intent.backend,
                state(ctx).intent_path(r).display()
            ),
        )
    })?;
    let mut done = match intent.operation {
        Operation::Snapshot => crate::snapshot::recover(backend, r, intent.was_running)?,
        _ => backend.recover(&r.name, intent.operation)?,
    };
    match intent.operation {
        Operation::Run => done.extend(crate::scripts::remove_guest_files(backend, r)),
        Operation::Backup => {
            done.extend(remove_partial_backups(ctx, r)?);
            if intent.was_running {
                restart_after_backup(backend, r, ui, &mut done)?;
            }
        }
        _ => {}
    }
    held.clear_interrupted()?;
    let what = match intent.operation {
        Operation::Delete => "finished",
        _ => "undid",
    };
    let outcome = if done.is_empty() {
        "it had left nothing".to_string()
    } else {
        done.join("; ")
    };
    ui.note(&format!(
        "note: {r}: {what} an interrupted `nox {}` (pid {}, started {}): {outcome}",
        intent.operation,
        intent.pid,
        started(intent.started)
    ));
    Ok(Exclusive {
        held,
        recovered: Some(intent.operation),
    })
}

/// The half-written backup a killed `nox backup` left in the store (taking the store's lock
/// of the instance removes it).
fn remove_partial_backups(ctx: &Context, r: &InstanceRef) -> Result<Vec<String>> {
    let store = crate::backup::store(ctx);
    let key = r.to_string();
    let partial = std::fs::read_dir(store.instance_dir(&key))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        .count();
    drop(store.lock(&key)?);
    Ok((partial > 0)
        .then(|| "removed the partial backup it was writing".to_string())
        .into_iter()
        .collect())
}

/// A backup with `--stop` shut the instance down: undoing it starts it again.
fn restart_after_backup(
    backend: &dyn nox_core::Backend,
    r: &InstanceRef,
    ui: &dyn Ui,
    done: &mut Vec<String>,
) -> Result<()> {
    let stopped = backend
        .status(&r.name)
        .is_ok_and(|i| i.state == nox_core::instance::InstanceState::Stopped);
    if stopped {
        backend.start(&r.name, None, ui.progress())?;
        done.push(format!("started {r} again, which the backup had stopped"));
    }
    Ok(())
}

/// Seconds since the epoch as RFC 3339 (UTC), for the note.
fn started(secs: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{context, FakeBackend, FakeUi};
    use nox_core::BackendKind;

    #[test]
    fn a_create_race_loser_is_told_at_once_and_nothing_is_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let lxc = FakeBackend::new(BackendKind::Lxc);
        let ctx = context(dir.path(), vec![Box::new(lxc.clone())]);
        let r: InstanceRef = "web".parse().unwrap();
        let first = lock_new(&ctx, &r, "create", &FakeUi::default()).unwrap();
        let t = std::time::Instant::now();
        let e = lock_new(&ctx, &r, "create", &FakeUi::default()).unwrap_err();
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
        assert!(e.is_bad_input(), "{e}");
        assert!(e.to_string().contains("already exists"), "{e}");
        assert!(e.to_string().contains("`nox create`"), "{e}");
        drop(first);
        assert!(lxc.calls().is_empty());
    }

    #[test]
    fn a_killed_create_is_undone_by_the_next_command_and_said_once() {
        let dir = tempfile::tempdir().unwrap();
        let lxc = FakeBackend::new(BackendKind::Lxc);
        let ctx = context(dir.path(), vec![Box::new(lxc.clone())]);
        let r: InstanceRef = "web".parse().unwrap();
        {
            let x = lock_new(&ctx, &r, "create", &FakeUi::default()).unwrap();
            // The process dies after the record is written: its guard never drops.
            std::mem::forget(x.begin(&Intent::new(Operation::Create, BackendKind::Lxc)));
        }
        let ui = FakeUi::default();
        let x = lock(&ctx, &r, "delete", &ui).unwrap();
        assert_eq!(x.recovered, Some(Operation::Create));
        assert_eq!(lxc.calls(), ["recover web create"]);
        assert_eq!(ui.notes().len(), 1);
        assert!(
            ui.notes()[0].starts_with("note: web: undid an interrupted `nox create` (pid "),
            "{:?}",
            ui.notes()
        );
        drop(x);
        // Once put right, it is forgotten.
        let ui = FakeUi::default();
        let x = lock(&ctx, &r, "start", &ui).unwrap();
        assert_eq!(x.recovered, None);
        assert!(ui.notes().is_empty());
    }

    #[test]
    fn a_backup_killed_after_stopping_the_instance_starts_it_again() {
        let dir = tempfile::tempdir().unwrap();
        let vm = FakeBackend::new(BackendKind::Vm);
        vm.add_instance("db");
        vm.set_state("db", nox_core::instance::InstanceState::Stopped);
        let ctx = context(dir.path(), vec![Box::new(vm.clone())]);
        let r: InstanceRef = "db".parse().unwrap();
        {
            let x = lock(&ctx, &r, "backup", &FakeUi::default()).unwrap();
            let mut intent = Intent::new(Operation::Backup, BackendKind::Vm);
            intent.was_running = true;
            std::mem::forget(x.begin(&intent));
        }
        let ui = FakeUi::default();
        lock(&ctx, &r, "stop", &ui).unwrap();
        assert_eq!(vm.calls(), ["recover db backup", "start db"]);
        assert!(
            ui.notes()[0].contains("started db again"),
            "{:?}",
            ui.notes()
        );
    }
}
