//! What the next command does about a VM command that was killed half-way (see
//! `nox_core::state::intent`).

use nox_core::instance::NetworkSpec;
use nox_core::state::Operation;
use nox_core::{Error, InstanceName};

use crate::{network, LibvirtBackend};

pub fn recover(
    b: &LibvirtBackend,
    name: &InstanceName,
    operation: Operation,
) -> Result<Vec<String>, Error> {
    match operation {
        Operation::Create => {
            let mut done = purge(b, name)?;
            // A create may have been booting its shape's template.
            done.extend(crate::template::remove_abandoned_builds(b, &b.conn()?)?);
            Ok(done)
        }
        Operation::Restore | Operation::Delete => purge(b, name),
        Operation::Backup => {
            let conn = b.conn()?;
            match conn.lookup_domain_by_name(name.as_str()) {
                Ok(dom) => Ok(crate::backup::after_interrupted_backup(
                    &dom,
                    &b.instance_dir(name.as_str()),
                )),
                Err(_) => Ok(Vec::new()),
            }
        }
        // The guest's script files are removed by nox-ops, through exec, as for any backend.
        Operation::Run => Ok(Vec::new()),
        // Snapshots are put right through `SnapshotBackend::recover` (nox-ops).
        Operation::Snapshot => Ok(Vec::new()),
    }
}

/// Removes nox's domain `name` in any state, its macvtap device and its directory. A domain
/// of that name without nox's record is someone else's: it stays, and is said.
fn purge(b: &LibvirtBackend, name: &InstanceName) -> Result<Vec<String>, Error> {
    let conn = b.conn()?;
    let mut done = Vec::new();
    if let Ok(dom) = conn.lookup_domain_by_name(name.as_str()) {
        match crate::list::record(&dom) {
            Some(rec) => {
                crate::lifecycle::remove_domain(&conn, name.as_str())?;
                if matches!(rec.spec.network, NetworkSpec::Macvtap(_)) {
                    network::remove_macvtap_for(&b.host, &rec.mac);
                }
                done.push(format!("removed domain {name}"));
            }
            None => done.push(format!(
                "left domain {name} alone: nox did not create it (its metadata has no nox record)"
            )),
        }
    }
    // The directory is nox's whatever it holds: create makes it under nox's storage dir.
    let dir = b.instance_dir(name.as_str());
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => done.push(format!("removed {}", dir.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("removing {}", dir.display()), e)),
    }
    Ok(done)
}
