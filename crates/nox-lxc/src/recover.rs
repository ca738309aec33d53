//! What the next command does about a container command that was killed half-way (see
//! `nox_core::state::intent`).

use nox_core::state::Operation;
use nox_core::{Error, InstanceName};

use crate::liblxc::Container;
use crate::{record, LxcBackend};

pub fn recover(
    b: &LxcBackend,
    name: &InstanceName,
    operation: Operation,
) -> Result<Vec<String>, Error> {
    match operation {
        Operation::Create | Operation::Restore | Operation::Delete => purge(b, name),
        Operation::Backup => {
            let dir = b.config.lxc.lxcpath.join(name.as_str());
            if !dir.join(record::FILE).is_file() {
                return Ok(Vec::new());
            }
            let c = Container::new(name.as_str(), &b.config.lxc.lxcpath).map_err(Error::from)?;
            if c.state() == "FROZEN" {
                c.unfreeze().map_err(Error::from)?;
                return Ok(vec![format!("thawed {name}, which the backup had frozen")]);
            }
            Ok(Vec::new())
        }
        // The guest's script files are removed by nox-ops, through exec, as for any backend.
        Operation::Run => Ok(Vec::new()),
        // Snapshots are put right through `SnapshotBackend::recover` (nox-ops).
        Operation::Snapshot => Ok(Vec::new()),
    }
}

/// Removes nox's container `name` in any state: stopped (thawed first), destroyed, its
/// directory gone. A directory whose config has no nox record beside it is someone else's
/// container (nox writes its record before the config): it stays, and is said.
fn purge(b: &LxcBackend, name: &InstanceName) -> Result<Vec<String>, Error> {
    let lxcpath = &b.config.lxc.lxcpath;
    let dir = lxcpath.join(name.as_str());
    if !dir.exists() {
        return Ok(Vec::new());
    }
    if dir.join("config").exists() && !dir.join(record::FILE).exists() {
        return Ok(vec![format!(
            "left {} alone: nox did not create that container (no nox record)",
            dir.display()
        )]);
    }
    let mut done = Vec::new();
    if dir.join("config").exists() {
        let c = Container::new(name.as_str(), lxcpath).map_err(Error::from)?;
        if c.state() == "FROZEN" {
            c.unfreeze().map_err(Error::from)?;
        }
        if c.is_running() {
            c.stop().map_err(Error::from)?;
            done.push(format!("stopped container {name}"));
        }
        if c.is_defined() {
            c.destroy().map_err(Error::from)?;
        }
    }
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("removing {}", dir.display()), e)),
    }
    done.push(format!("removed {}", dir.display()));
    Ok(done)
}
