//! `list` and `status` for containers: every directory of the lxcpath holding nox's record.

use nox_core::instance::{Instance, InstanceState, SshEndpoint};
use nox_core::{BackendKind, Error, InstanceName};

use crate::liblxc::Container;
use crate::record::CtRecord;
use crate::LxcBackend;

pub fn state(c: &Container) -> InstanceState {
    match c.state().as_str() {
        "RUNNING" => InstanceState::Running,
        "STOPPED" => InstanceState::Stopped,
        "FROZEN" | "FREEZING" | "THAWED" => InstanceState::Paused,
        "STARTING" => InstanceState::Starting,
        "STOPPING" | "ABORTING" => InstanceState::Stopping,
        _ => InstanceState::Unknown,
    }
}

fn instance(b: &LxcBackend, name: &str, rec: &CtRecord) -> Result<Instance, Error> {
    let c = Container::new(name, &b.config.lxc.lxcpath).map_err(Error::from)?;
    let st = state(&c);
    let ipv4 = if st == InstanceState::Running {
        c.ipv4()
    } else {
        Vec::new()
    };
    let spec = &rec.spec;
    Ok(Instance {
        name: name.into(),
        backend: BackendKind::Lxc,
        state: st,
        ssh: ipv4
            .iter()
            .find(|ip| !nox_core::instance::is_tailnet(ip))
            .map(|ip| SshEndpoint {
                user: spec.user.clone(),
                host: ip.clone(),
                port: 22,
            }),
        tailnet_ipv4: nox_core::instance::tailnet_ipv4(&ipv4),
        ipv4,
        cpus: spec.cpus,
        memory_bytes: spec.memory_bytes,
        disk_bytes: None,
        autostart: spec.autostart,
        image: spec.image.clone(),
        network: spec.network.to_string(),
        privileged: spec.privileged,
        nesting: spec.nesting,
        created_at: rec.created_at.clone(),
        user: Some(spec.user.clone()),
        remote: None,
        location: None,
        mounts: spec.mounts.clone(),
        forwards: rec.forwards.clone(),
    })
}

pub fn list(b: &LxcBackend) -> Result<Vec<Instance>, Error> {
    let Ok(entries) = std::fs::read_dir(&b.config.lxc.lxcpath) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(rec) = CtRecord::read(&e.path()) {
            match instance(b, &name, &rec) {
                Ok(i) => out.push(i),
                // Deleted while we looked (its record is gone): it is simply not there.
                Err(_) if CtRecord::read(&e.path()).is_none() => {}
                Err(err) => return Err(err),
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

pub fn find(b: &LxcBackend, name: &InstanceName) -> Result<(Container, CtRecord), Error> {
    let dir = b.config.lxc.lxcpath.join(name.as_str());
    let rec = CtRecord::read(&dir).ok_or_else(|| Error::NotFound {
        name: name.to_string(),
    })?;
    let c = Container::new(name.as_str(), &b.config.lxc.lxcpath).map_err(Error::from)?;
    Ok((c, rec))
}

pub fn status(b: &LxcBackend, name: &InstanceName) -> Result<Instance, Error> {
    let (_, rec) = find(b, name)?;
    instance(b, name.as_str(), &rec)
}
