//! Shared folders for containers: a bind mount of the host directory, one `lxc.mount.entry`
//! per share, recorded in nox's record beside the config.
//!
//! An unprivileged container's root is host uid 100000 (root's subordinate range): through a
//! plain bind mount the host's files would show as `nobody` and be read-only to it. So the
//! mount is idmapped with the container's own mapping (`idmap=container`, LXC 5.0 on a kernel
//! with idmapped mounts, 5.12 or later): uid N in the container is uid N on the host's disk,
//! both ways. A privileged container needs no mapping (its root is host root).
//!
//! LXC reads mount entries only at start, so `nox mount add|rm` on a running container takes
//! effect at its next start, and says so.

use std::path::Path;

use nox_core::mounts::Mount;
use nox_core::{Error, InstanceName};

use crate::config::Entry;
use crate::list::find;
use crate::LxcBackend;

const WHY: &str = "shared folder (nox mount): a bind mount of the host directory";
const WHY_MAPPED: &str = "shared folder (nox mount): a bind mount of the host directory, idmapped so container uid N is host uid N";

/// The config line for one share. The target is relative to the rootfs (LXC's form), which
/// LXC resolves inside the container's root, never following a link out of it; `create=dir`
/// makes the mount point.
pub fn entry(m: &Mount, privileged: bool) -> Entry {
    let target = m.guest.to_string_lossy();
    let target = target.trim_start_matches('/');
    let mut options = String::from("bind,create=dir");
    if !privileged {
        options.push_str(",idmap=container");
    }
    if m.readonly {
        options.push_str(",ro");
    }
    Entry {
        key: "lxc.mount.entry",
        value: format!("{} {target} none {options} 0 0", m.host.display()),
        why: Some(if privileged { WHY } else { WHY_MAPPED }),
    }
}

fn rendered(m: &Mount, privileged: bool) -> String {
    let e = entry(m, privileged);
    format!("{} = {}", e.key, e.value)
}

/// Config text with the share's lines (its comment and entry) appended.
fn with_entry(config: &str, m: &Mount, privileged: bool) -> String {
    let mut out = config.to_string();
    if !out.ends_with('\n') && !out.is_empty() {
        out.push('\n');
    }
    out + &crate::config::render_entries(&[entry(m, privileged)])
}

/// Config text without the share's entry and the comment nox wrote above it.
fn without_entry(config: &str, m: &Mount, privileged: bool) -> String {
    let line = rendered(m, privileged);
    let comment = format!("# {}", entry(m, privileged).why.unwrap_or_default());
    let lines: Vec<&str> = config.lines().collect();
    let mut out = String::new();
    for (i, l) in lines.iter().enumerate() {
        if *l == line {
            continue;
        }
        if *l == comment && lines.get(i + 1) == Some(&line.as_str()) {
            continue;
        }
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// Writes `text` to `path` whole or not at all (a temporary file renamed over it).
pub(crate) fn write_atomic(path: &Path, text: &str) -> Result<(), Error> {
    let tmp = path.with_extension("nox-tmp");
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

fn when(running: bool, name: &InstanceName) -> String {
    if running {
        format!("takes effect at the container's next start (LXC mounts only at start): `nox stop {name}` then `nox start {name}`")
    } else {
        "takes effect when it starts".into()
    }
}

/// Adds a share to the container's config and record.
pub fn add(b: &LxcBackend, name: &InstanceName, m: &Mount) -> Result<String, Error> {
    let (c, mut rec) = find(b, name)?;
    if let Some(old) = rec.spec.mounts.iter().find(|o| o.guest == m.guest) {
        return Err(Error::Usage(format!(
            "{name} already has a shared folder on {}: {old}; remove it first (`nox mount rm {name} {}`)",
            m.guest.display(),
            m.guest.display()
        )));
    }
    let dir = b.config.lxc.lxcpath.join(name.as_str());
    let config = dir.join("config");
    let before =
        std::fs::read_to_string(&config).map_err(|e| Error::io("reading the config", e))?;
    write_atomic(&config, &with_entry(&before, m, rec.spec.privileged))?;
    rec.spec.mounts.push(m.clone());
    if let Err(e) = rec.write(&dir) {
        let _ = write_atomic(&config, &before);
        return Err(Error::io("writing nox's record", e));
    }
    Ok(format!(
        "shared {m} with {name}; {}",
        when(c.is_running(), name)
    ))
}

/// Removes the share mounted on `guest` from the container's config and record.
pub fn remove(b: &LxcBackend, name: &InstanceName, guest: &Path) -> Result<String, Error> {
    let (c, mut rec) = find(b, name)?;
    let Some(i) = rec.spec.mounts.iter().position(|o| o.guest == guest) else {
        return Err(Error::Usage(format!(
            "{name} has no shared folder on {}; `nox mount list {name}` shows them",
            guest.display()
        )));
    };
    let m = rec.spec.mounts.remove(i);
    let dir = b.config.lxc.lxcpath.join(name.as_str());
    let config = dir.join("config");
    let before =
        std::fs::read_to_string(&config).map_err(|e| Error::io("reading the config", e))?;
    write_atomic(&config, &without_entry(&before, &m, rec.spec.privileged))?;
    if let Err(e) = rec.write(&dir) {
        let _ = write_atomic(&config, &before);
        return Err(Error::io("writing nox's record", e));
    }
    Ok(format!(
        "removed {m} from {name}; {}",
        when(c.is_running(), name)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_added_and_removed_whole() {
        let a: Mount = "/srv/a:/mnt/a".parse().unwrap();
        let b: Mount = "/srv/b:/mnt/b:ro".parse().unwrap();
        let base = "lxc.uts.name = web\n";
        let both = with_entry(&with_entry(base, &a, false), &b, false);
        assert_eq!(
            both.lines()
                .filter(|l| l.starts_with("lxc.mount.entry"))
                .collect::<Vec<_>>(),
            [
                "lxc.mount.entry = /srv/a mnt/a none bind,create=dir,idmap=container 0 0",
                "lxc.mount.entry = /srv/b mnt/b none bind,create=dir,idmap=container,ro 0 0"
            ]
        );
        let only_b = without_entry(&both, &a, false);
        assert_eq!(only_b, with_entry(base, &b, false));
        assert_eq!(without_entry(&only_b, &b, false), base);
        assert_eq!(
            rendered(&b, true),
            "lxc.mount.entry = /srv/b mnt/b none bind,create=dir,ro 0 0"
        );
    }
}
