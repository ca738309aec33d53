//! Shared folders: `nox create --mount`, `nox mount add|rm|list`.
//!
//! The host side of a share is checked here (an existing directory, stored canonical); each
//! backend decides how the guest sees it. Remote instances are refused: the directory is on
//! this host, not on the remote's.

use std::path::PathBuf;

use nox_core::mounts::{self, Mount};
use nox_core::{Error, InstanceRef, Result};

use crate::{Context, Ui};

/// The one-line refusal for a remote instance.
fn refuse_remote(remote: &str) -> Error {
    Error::Usage(format!(
        "shared folders are this host's directories, which remote {remote} cannot reach; copy files with `nox cp` or share them from the remote's own host"
    ))
}

/// `--mount` values for `create`, checked before anything exists.
pub fn for_create(remote: Option<&str>, values: &[String]) -> Result<Vec<Mount>> {
    if values.is_empty() {
        return Ok(Vec::new());
    }
    if let Some(r) = remote {
        return Err(refuse_remote(r));
    }
    mounts::resolve(values)
}

/// `nox mount add NAME HOST_DIR:GUEST_DIR[:ro]`. Returns the note for the user.
pub fn add(ctx: &Context, r: &InstanceRef, value: &str, ui: &dyn Ui) -> Result<String> {
    if let Some(remote) = r.remote() {
        return Err(refuse_remote(remote));
    }
    let m = mounts::resolve_one(value)?;
    let _x = crate::exclusive::lock(ctx, r, "mount add", ui)?;
    let backend = ctx.backends.find(r)?;
    backend.add_mount(&r.name, &m)
}

/// `nox mount rm NAME GUEST_DIR`. Returns the note for the user.
pub fn remove(ctx: &Context, r: &InstanceRef, guest: &str, ui: &dyn Ui) -> Result<String> {
    if let Some(remote) = r.remote() {
        return Err(refuse_remote(remote));
    }
    let guest: PathBuf = mounts::guest_arg(guest)?;
    let _x = crate::exclusive::lock(ctx, r, "mount rm", ui)?;
    let backend = ctx.backends.find(r)?;
    backend.remove_mount(&r.name, &guest)
}

/// `nox mount list NAME`: what `status` reports.
pub fn list(ctx: &Context, r: &InstanceRef) -> Result<Vec<Mount>> {
    let backend = ctx.backends.find(r)?;
    Ok(backend.status(&r.name)?.mounts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_refuses_remotes_in_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let v = vec![format!("{}:/mnt/a", dir.path().display())];
        assert!(for_create(Some("cluster"), &[]).unwrap().is_empty());
        let e = for_create(Some("cluster"), &v).unwrap_err();
        assert!(e.is_bad_input(), "{e}");
        assert!(!e.to_string().contains('\n'), "{e}");
        let ms = for_create(None, &v).unwrap();
        assert_eq!(ms[0].guest, std::path::Path::new("/mnt/a"));
    }
}
