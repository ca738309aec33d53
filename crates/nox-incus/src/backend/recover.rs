//! What the next command does about a remote command that was killed half-way (see
//! `nox_core::state::intent`). Incus finishes what it was asked even when nox is gone, so
//! recovery first waits for the operations still running on the instance, then removes or
//! thaws what they left.

use nox_core::state::Operation;
use nox_core::{InstanceName, Result};

use super::{IncusBackend, RECORD_KEY};
use crate::api::InstanceStatePut;

impl IncusBackend {
    pub(super) fn recover_instance(
        &self,
        name: &InstanceName,
        operation: Operation,
    ) -> Result<Vec<String>> {
        let client = self.client()?;
        let mut done = Vec::new();
        // A create or an import the killed command started is still running on the server:
        // wait for it, or the instance would appear after recovery removed nothing.
        let path = format!("/1.0/instances/{name}");
        let ops = client
            .operations()
            .map_err(|e| self.err("listing operations", e))?;
        for op in ops.iter().filter(|o| !o.is_final()) {
            let on_it = op
                .resources
                .get("instances")
                .is_some_and(|r| r.iter().any(|p| p.split('?').next() == Some(path.as_str())));
            if on_it {
                // Its own failure is no concern of ours: what it left is looked at below.
                let _ = client.wait_operation(&op.id);
                done.push(format!("waited for Incus to finish: {}", op.description));
            }
        }
        let instance = match client.instance(name.as_str()) {
            Ok(i) => i,
            Err(e) if e.is_not_found() => return Ok(done),
            Err(e) => return Err(self.err("reading the instance", e)),
        };
        if !instance.config.contains_key(RECORD_KEY) {
            done.push(format!(
                "left {} alone: nox did not create it",
                self.qualified(name)
            ));
            return Ok(done);
        }
        match operation {
            Operation::Create | Operation::Restore | Operation::Delete => {
                if instance.status != "Stopped" {
                    client
                        .stop_instance(name.as_str(), -1, true)
                        .map_err(|e| self.err(&format!("forcing {name} off"), e))?;
                }
                client
                    .delete_instance(name.as_str())
                    .map_err(|e| self.err(&format!("deleting {name}"), e))?;
                done.push(format!("deleted {}", self.qualified(name)));
            }
            Operation::Backup => {
                if instance.status == "Frozen" {
                    let thaw = InstanceStatePut {
                        action: "unfreeze".into(),
                        timeout: -1,
                        force: false,
                        stateful: false,
                    };
                    client
                        .set_instance_state(name.as_str(), &thaw)
                        .map_err(|e| self.err(&format!("thawing {name}"), e))?;
                    done.push(format!("thawed {}", self.qualified(name)));
                }
                // The export the killed backup asked for (`nox-ID`) would otherwise stay on
                // the server until it expires.
                let exports = client
                    .backups(name.as_str())
                    .map_err(|e| self.err("listing backups", e))?;
                for b in exports.iter().filter(|b| b.name.starts_with("nox-")) {
                    client
                        .delete_backup(name.as_str(), &b.name)
                        .map_err(|e| self.err(&format!("deleting export {}", b.name), e))?;
                    done.push(format!("deleted the export {} on the server", b.name));
                }
            }
            Operation::Run => {}
            // nox takes no snapshots of remote instances.
            Operation::Snapshot => {}
        }
        Ok(done)
    }
}
