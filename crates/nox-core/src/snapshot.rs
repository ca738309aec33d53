//! Snapshots: a point in an instance's life kept beside it, to go back to (`nox snapshot`).
//!
//! Unlike a backup, a snapshot lives with the instance (a VM's disk chain, a container's
//! directory), is taken in about a second and goes when the instance is deleted. A backend
//! that keeps snapshots returns a [`SnapshotBackend`] from `Backend::snapshots`.

use serde::{Deserialize, Serialize};

use crate::backup::Consistency;
use crate::error::Result;
use crate::name::InstanceName;
use crate::progress::Progress;

/// What `nox snapshot` asks of a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRequest {
    /// Checked like an instance name: it becomes part of file and libvirt names.
    pub name: InstanceName,
    /// Also keep the running machine's memory, so a restore resumes it where it was.
    pub memory: bool,
}

/// One snapshot, as `nox snapshots` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub name: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// The instance was running when it was taken.
    pub was_running: bool,
    /// The machine's memory was kept (`--memory`): a restore resumes it running.
    pub memory: bool,
    pub consistency: Consistency,
    /// How the point in time was made (frozen, quiesced, stopped), for the user.
    pub note: String,
}

/// What a restore did, for the user.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SnapshotRestored {
    /// The instance runs after the restore.
    pub running: bool,
    /// Lines to say (a backup chain cut, the instance stopped and started again).
    pub notes: Vec<String>,
}

/// Snapshots of one backend's instances. Every method runs under the instance's lock, with
/// an intent record written first (nox-ops), so a killed one is put right by [`recover`].
///
/// [`recover`]: SnapshotBackend::recover
pub trait SnapshotBackend {
    /// Takes a snapshot. It is listed only once complete: a failed or killed one never is.
    fn take(
        &self,
        name: &InstanceName,
        request: &SnapshotRequest,
        progress: &dyn Progress,
    ) -> Result<Snapshot>;

    /// The instance's snapshots, oldest first.
    fn list(&self, name: &InstanceName) -> Result<Vec<Snapshot>>;

    /// Puts the instance back as it was at `snapshot`, stopping it first if needed and
    /// leaving it running if it was (or, with memory kept, as the snapshot was).
    fn restore(
        &self,
        name: &InstanceName,
        snapshot: &str,
        progress: &dyn Progress,
    ) -> Result<SnapshotRestored>;

    /// Removes one snapshot; the instance is untouched.
    fn remove(&self, name: &InstanceName, snapshot: &str) -> Result<()>;

    /// Finishes or undoes what a killed snapshot, restore or removal left of `name`'s
    /// snapshots (`was_running`: the instance ran before the restore stopped it). Returns
    /// what it did, one short line each.
    fn recover(&self, name: &InstanceName, was_running: bool) -> Result<Vec<String>>;
}

/// The name `nox snapshot NAME` picks when given none: `snapN`, one past the highest `snapN`
/// already there, as Incus does, so names never come back after a removal.
pub fn next_name(existing: &[Snapshot]) -> Result<InstanceName> {
    let n = existing
        .iter()
        .filter_map(|s| s.name.strip_prefix("snap")?.parse::<u64>().ok())
        .map(|n| n + 1)
        .max()
        .unwrap_or(0);
    InstanceName::new(&format!("snap{n}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(name: &str) -> Snapshot {
        Snapshot {
            name: name.into(),
            created_at: String::new(),
            was_running: false,
            memory: false,
            consistency: Consistency::Application,
            note: String::new(),
        }
    }

    #[test]
    fn generated_names_go_one_past_the_highest_and_skip_others() {
        assert_eq!(next_name(&[]).unwrap().as_str(), "snap0");
        assert_eq!(
            next_name(&[snap("snap0"), snap("snap3")]).unwrap().as_str(),
            "snap4"
        );
        assert_eq!(
            next_name(&[snap("before-upgrade"), snap("snapx")])
                .unwrap()
                .as_str(),
            "snap0"
        );
        assert_eq!(next_name(&[snap("snap41")]).unwrap().as_str(), "snap42");
    }
}
