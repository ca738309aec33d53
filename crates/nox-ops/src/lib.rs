//! nox's workflows: what each verb does, written once over the [`Backend`] trait, so every
//! backend (libvirt, LXC, and the next) gets the same behaviour and the CLI only parses and
//! renders.
//!
//! Where things live:
//! - `context.rs`: [`Context`], what every workflow runs with (config, backends, host);
//! - `backends.rs`: [`Backends`], the backends this nox was built with, and finding the one
//!   that holds an instance;
//! - `ui.rs`: [`Ui`], how a workflow asks the user something or tells them something;
//! - one file per verb or family: `create.rs`, `lifecycle.rs` (start, stop, restart, delete),
//!   `access.rs` (exec, ssh, console, passwd, resize), `list.rs` (list, status), `check.rs`,
//!   `images.rs`, `doctor.rs`;
//! - `scripts.rs`: launch scripts (upload into the guest, secrets, logs, redaction);
//! - `backup.rs`: backups (full or incremental, retention, S3 upload) and the backup list;
//!   `restore.rs`: restores (S3 download, verification, replacing an instance);
//!   `remote.rs`: the S3 store behind a trait, so the policies are tested without a bucket;
//! - `remotes.rs`: `nox remote add|list|rm`, servers and clusters in `[remotes]`;
//! - `mounts.rs`: shared folders, `create --mount` and `nox mount add|rm|list`;
//! - `snapshot.rs`: snapshots (take, list, restore, remove) through `Backend::snapshots`;
//! - `forward.rs`: `nox forward add|list|rm` (port forwards, checked against every
//!   instance's and the host's sockets);
//! - `exclusive.rs`: the instance lock every changing verb takes first, and the recovery of
//!   what a killed command left half-done.
//!
//! Nothing here names a backend crate, runs a program or reads `/sys` directly: programs and
//! host facts come through [`nox_core::host::Host`].
//!
//! [`Backend`]: nox_core::Backend

pub mod access;
pub mod backends;
pub mod backup;
pub mod check;
pub mod context;
pub mod copy;
pub mod create;
pub mod doctor;
pub mod exclusive;
pub mod forward;
pub mod images;
pub mod lifecycle;
pub mod list;
pub mod mounts;
pub mod remote;
pub mod remotes;
pub mod restore;
pub mod scripts;
pub mod snapshot;
pub mod ui;

#[cfg(test)]
mod testing;

pub use backends::Backends;
pub use context::Context;
pub use ui::Ui;

use nox_core::{InstanceRef, Result};

/// Runs `f` for each name, going on past failures; with several names each failure is said
/// on its own line, and the first error is returned at the end.
pub fn for_each(
    names: &[InstanceRef],
    ui: &dyn Ui,
    mut f: impl FnMut(&InstanceRef) -> Result<()>,
) -> Result<()> {
    let mut first = None;
    let many = names.len() > 1;
    for n in names {
        if let Err(e) = f(n) {
            if many {
                ui.note(&format!("error: {n}: {e}"));
            }
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}
