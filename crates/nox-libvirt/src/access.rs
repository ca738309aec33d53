//! `ssh`, `console` and `passwd`.

use std::path::PathBuf;

use nox_core::backend::Handoff;
use nox_core::instance::NetworkSpec;
use nox_core::secret::Password;
use nox_core::{Error, InstanceName};

use crate::list::{addresses, find};
use crate::LibvirtBackend;

pub fn ssh(b: &LibvirtBackend, name: &InstanceName, command: &[String]) -> Result<Handoff, Error> {
    let conn = b.conn()?;
    let (dom, rec) = find(&conn, name)?;
    if !dom.is_active().unwrap_or(false) {
        return Err(Error::not_running(name.as_str()));
    }
    let (host, port) = match (&rec.spec.network, rec.ssh_port) {
        (NetworkSpec::User, Some(port)) => ("127.0.0.1".to_string(), port),
        (NetworkSpec::Macvtap(dev), _) => {
            // The host cannot talk to its own macvtap guests: fall back to the console.
            let mut h = console(b, name)?;
            h.note = Some(format!(
                "{name} is on macvtap ({dev}), which this host cannot reach: opening its console instead (detach with Ctrl+])"
            ));
            return Ok(h);
        }
        _ => match addresses(&dom).into_iter().next() {
            Some(ip) => (ip, 22),
            None => {
                return Err(Error::failed(
                    format!("{name} has no IPv4 address yet"),
                    format!(
                    "wait for it to boot (`nox start --wait {name}`), or use `nox console {name}`"
                ),
                ))
            }
        },
    };
    // Ports and addresses get reused by other VMs: keep this VM's host key apart.
    let known_hosts = rec.dir.join("known_hosts");
    let mut args = vec!["-p".to_string(), port.to_string()];
    if let Some(key) =
        nox_core::ssh_identity::data_dir().map(|d| nox_core::ssh_identity::key_path(&d))
    {
        if key.is_file() {
            args.extend(["-i".into(), key.display().to_string()]);
        }
    }
    // Without a terminal nobody can answer a prompt: fail instead of hanging.
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        args.extend(["-o".into(), "BatchMode=yes".into()]);
    }
    args.extend([
        "-o".into(),
        format!("UserKnownHostsFile={}", known_hosts.display()),
        "-o".into(),
        "StrictHostKeyChecking=accept-new".into(),
        "-o".into(),
        "LogLevel=ERROR".into(),
        format!("{}@{host}", rec.spec.user),
    ]);
    if !command.is_empty() {
        args.push("--".into());
        for a in command {
            args.push(nox_core::spec::sh_quote(a)?);
        }
    }
    Ok(Handoff {
        program: PathBuf::from("ssh"),
        args,
        note: None,
    })
}

pub fn console(b: &LibvirtBackend, name: &InstanceName) -> Result<Handoff, Error> {
    let conn = b.conn()?;
    find(&conn, name)?;
    Ok(Handoff {
        program: PathBuf::from("virsh"),
        args: vec![
            "-c".into(),
            b.config.vm.uri.clone(),
            "console".into(),
            name.to_string(),
        ],
        note: Some(format!(
            "connecting to {name}'s serial console; detach with Ctrl+]"
        )),
    })
}

pub fn passwd(b: &LibvirtBackend, name: &InstanceName, user: &str) -> Result<Password, Error> {
    let conn = b.conn()?;
    let (dom, _) = find(&conn, name)?;
    let facts: &dyn nox_core::host::HostFacts = &*b.host.facts;
    let password = facts.random_password()?;
    // The one copy nox cannot wipe: the `virt` crate's C string and libvirt's RPC buffers,
    // inside the libraries, freed by them.
    dom.set_user_password(user, &password, 0).map_err(|e| {
        Error::failed(
            format!("setting the password of {user} in {name}: {}", e.message()),
            format!("the guest agent must be running: `nox start --wait {name}`"),
        )
    })?;
    Ok(password)
}
