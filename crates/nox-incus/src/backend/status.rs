//! What `list` and `status` report of an instance on a remote, from what Incus says of it
//! and nox's record in its config.

use nox_core::instance::{Instance, InstanceSpec, InstanceState};
use nox_core::{BackendKind, Error, Result};

use super::error::BackendError;
use super::RECORD_KEY;
use crate::api::{self, InstanceFull};

/// nox's record of the instance: the spec it was created with (resizes included).
pub fn spec(i: &api::Instance) -> Result<InstanceSpec> {
    let text = i
        .config
        .get(RECORD_KEY)
        .ok_or_else(|| Error::failure(format!("{} has no nox record ({RECORD_KEY})", i.name)))?;
    serde_json::from_str(text).map_err(|source| {
        BackendError::Record {
            instance: i.name.clone(),
            source,
        }
        .into()
    })
}

/// Whether Incus could not reach the member holding `i`: it answers `Error` with neither
/// state nor config.
pub fn unreachable(i: &InstanceFull) -> bool {
    i.instance.status == "Error" && i.state.is_none() && i.instance.config.is_empty()
}

/// Incus's status as nox's state. An instance on a member that does not answer is `Error`
/// with no state: unreachable, not failed.
pub fn state(i: &InstanceFull) -> InstanceState {
    match i.instance.status.as_str() {
        "Running" => InstanceState::Running,
        "Stopped" => InstanceState::Stopped,
        "Frozen" => InstanceState::Paused,
        "Starting" => InstanceState::Starting,
        "Stopping" => InstanceState::Stopping,
        "Error" if i.state.is_none() => InstanceState::Unreachable,
        _ => InstanceState::Unknown,
    }
}

pub fn instance(remote: &str, kind: BackendKind, full: &InstanceFull) -> Instance {
    let i = &full.instance;
    let spec = spec(i).ok();
    let st = state(full);
    let mut ipv4: Vec<String> = full
        .state
        .iter()
        .flat_map(|s| s.network.iter())
        .filter(|(nic, _)| nic.as_str() != "lo")
        .flat_map(|(_, n)| n.addresses.iter())
        .filter(|a| a.family == "inet" && a.scope == "global")
        .map(|a| a.address.clone())
        .collect();
    ipv4.sort();
    let config = |k: &str| i.expanded_config.get(k).or_else(|| i.config.get(k));
    let memory = config("limits.memory")
        .and_then(|m| m.strip_suffix("MiB"))
        .and_then(|m| m.parse::<u64>().ok())
        .map(|m| m << 20);
    Instance {
        name: i.name.clone(),
        backend: kind,
        state: st,
        tailnet_ipv4: nox_core::instance::tailnet_ipv4(&ipv4),
        ipv4,
        cpus: config("limits.cpu")
            .and_then(|c| c.parse().ok())
            .or(spec.as_ref().map(|s| s.cpus))
            .unwrap_or(0),
        memory_bytes: memory
            .or(spec.as_ref().map(|s| s.memory_bytes))
            .unwrap_or(0),
        disk_bytes: match kind {
            BackendKind::Vm => spec.as_ref().map(|s| s.disk_bytes),
            BackendKind::Lxc => None,
        },
        autostart: config("boot.autostart").map(String::as_str) == Some("true"),
        image: spec.as_ref().map(|s| s.image.clone()).unwrap_or_default(),
        network: spec
            .as_ref()
            .map(|s| s.network.to_string())
            .unwrap_or_default(),
        privileged: config("security.privileged").map(String::as_str) == Some("true"),
        nesting: config("security.nesting").map(String::as_str) == Some("true"),
        // The host running nox cannot be assumed to reach a remote instance's address.
        ssh: None,
        created_at: i
            .config
            .get("user.nox.created_at")
            .cloned()
            .unwrap_or_else(|| i.created_at.clone()),
        user: spec.map(|s| s.user),
        remote: Some(remote.into()),
        location: Some(i.location.clone()).filter(|l| !l.is_empty() && l != "none"),
        // nox shares no host directory with a remote instance.
        mounts: Vec::new(),
        forwards: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_on_a_member_that_does_not_answer_is_unreachable() {
        let mut full = InstanceFull::default();
        full.instance.name = "web".into();
        full.instance.status = "Error".into();
        full.instance.location = "member3".into();
        assert_eq!(state(&full), InstanceState::Unreachable);
        let i = instance("cluster", BackendKind::Lxc, &full);
        assert_eq!(i.location.as_deref(), Some("member3"));
        assert_eq!(i.remote.as_deref(), Some("cluster"));
        full.state = Some(Default::default());
        assert_eq!(state(&full), InstanceState::Unknown);
        full.instance.status = "Running".into();
        assert_eq!(state(&full), InstanceState::Running);
    }
}
