//! `ssh`, `console` and `passwd`.

use std::path::PathBuf;

use nox_core::backend::Handoff;
use nox_core::instance::NetworkSpec;
use nox_core::{Error, InstanceName};

use crate::list::{addresses, find};
use crate::LibvirtBackend;

/// Quotes one argument for the remote shell ssh hands its command to, so `nox ssh vm -- ARGS`
/// runs ARGS as argv, like `nox exec`.
pub fn sh_quote(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b))
    {
        return arg.to_string();
    }
    format!("'{}'", arg.replace('\'', r"'\''"))
}

pub fn ssh(b: &LibvirtBackend, name: &InstanceName, command: &[String]) -> Result<Handoff, Error> {
    let conn = b.conn()?;
    let (dom, rec) = find(&conn, name)?;
    if !dom.is_active().unwrap_or(false) {
        return Err(Error::Refused {
            message: format!("{name} is not running"),
            hint: format!("`nox start {name}` first"),
        });
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
        args.extend(command.iter().map(|a| sh_quote(a)));
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

/// 20 characters from [A-Za-z0-9], from the OS's CSPRNG, without modulo bias.
pub fn random_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::new();
    while out.len() < 20 {
        let mut byte = [0u8; 1];
        getrandom(&mut byte);
        // 248 = 4 * 62: reject the top values so every character is equally likely.
        if byte[0] < 248 {
            out.push(ALPHABET[(byte[0] % 62) as usize] as char);
        }
    }
    out
}

fn getrandom(buf: &mut [u8]) {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .expect("/dev/urandom is readable");
}

pub fn passwd(b: &LibvirtBackend, name: &InstanceName, user: &str) -> Result<String, Error> {
    let conn = b.conn()?;
    let (dom, _) = find(&conn, name)?;
    let password = random_password();
    dom.set_user_password(user, &password, 0).map_err(|e| {
        Error::failed(
            format!("setting the password of {user} in {name}: {}", e.message()),
            format!("the guest agent must be running: `nox start --wait {name}`"),
        )
    })?;
    Ok(password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_arguments_whole() {
        assert_eq!(sh_quote("ls"), "ls");
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote("$HOME;rm -rf /"), "'$HOME;rm -rf /'");
        assert_eq!(sh_quote(""), "''");
        assert_eq!(sh_quote("a\nb"), "'a\nb'");
    }

    #[test]
    fn passwords_are_long_and_alphanumeric() {
        let a = random_password();
        assert_eq!(a.len(), 20);
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(a, random_password());
    }
}
