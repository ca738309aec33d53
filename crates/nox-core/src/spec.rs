//! From "what the user asked for" to a fully resolved [`InstanceSpec`]: config defaults under
//! flags, resources checked against the host, SSH keys read, and the backend rules applied.

use std::path::{Path, PathBuf};

use crate::config::Defaults;
use crate::error::{Error, Result};
use crate::host::Capacity;
use crate::instance::{BackendKind, InstanceSpec};
use crate::name::InstanceName;

/// Picks the backend. `--privileged` without `--backend` means a container; with
/// `--backend vm` it is a contradiction.
pub fn choose_backend(
    flag: Option<BackendKind>,
    privileged: bool,
    default: BackendKind,
) -> Result<BackendKind> {
    match (flag, privileged) {
        (Some(BackendKind::Vm), true) => Err(Error::Usage(
            "VMs are isolated by design; --privileged applies to containers (use --backend lxc)"
                .into(),
        )),
        (Some(b), _) => Ok(b),
        (None, true) => Ok(BackendKind::Lxc),
        (None, false) => Ok(default),
    }
}

/// Login names: what `useradd` accepts by default on Debian.
pub fn check_user(user: &str) -> Result<()> {
    let ok = user.len() <= 32
        && user.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && user
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok && user != "root" {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "invalid user {user:?}: use 1 to 32 lowercase letters, digits, '_' or '-', starting with a letter, and not root"
        )))
    }
}

/// True when `entry` is key text rather than a path.
fn is_key_text(entry: &str) -> bool {
    let e = entry.trim_start();
    e.starts_with("ssh-") || e.starts_with("ecdsa-") || e.starts_with("sk-")
}

/// The public keys for the guest user: each entry of `ssh_keys` is key text or a path (`~/`
/// expands to `home`); with none, every `home/.ssh/*.pub`.
pub fn read_ssh_keys(entries: &[String], home: Option<&Path>) -> Result<Vec<String>> {
    let mut keys = Vec::new();
    if entries.is_empty() {
        let Some(home) = home else {
            return Ok(keys);
        };
        let mut pubs: Vec<PathBuf> = std::fs::read_dir(home.join(".ssh"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "pub"))
                    .collect()
            })
            .unwrap_or_default();
        pubs.sort();
        for p in pubs {
            keys.extend(read_key_file(&p)?);
        }
        return Ok(keys);
    }
    for entry in entries {
        if is_key_text(entry) {
            keys.push(entry.trim().to_string());
            continue;
        }
        let path = match (entry.strip_prefix("~/"), home) {
            (Some(rest), Some(h)) => h.join(rest),
            _ => PathBuf::from(entry),
        };
        keys.extend(read_key_file(&path)?);
    }
    Ok(keys)
}

fn read_key_file(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::Usage(format!(
            "cannot read SSH public key {}: {e}",
            path.display()
        ))
    })?;
    if text.contains("PRIVATE KEY") {
        return Err(Error::Usage(format!(
            "{} is a private key: give the .pub file",
            path.display()
        )));
    }
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| is_key_text(l))
        .map(String::from)
        .collect())
}

/// What kind of instance, beyond `[defaults]`: the backend, and the container choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    pub backend: BackendKind,
    pub privileged: bool,
    /// `/dev/net/tun` for an unprivileged container (`[lxc] tun` and `--no-tun`).
    pub tun: bool,
    pub nesting: bool,
}

/// Resolves the effective `[defaults]` (flags already layered on top) into a spec.
pub fn resolve(
    name: InstanceName,
    kind: Kind,
    d: &Defaults,
    host: &Capacity,
    home: Option<&Path>,
) -> Result<InstanceSpec> {
    check_user(&d.user)?;
    let container = kind.backend == BackendKind::Lxc;
    Ok(InstanceSpec {
        name,
        backend: kind.backend,
        image: d.image.clone(),
        cpus: d.cpus.resolve(host)?,
        memory_bytes: d.memory.resolve(host)?,
        disk_bytes: d.disk.resolve(host)?,
        network: d.network.clone(),
        autostart: d.autostart,
        user: d.user.clone(),
        ssh_keys: read_ssh_keys(&d.ssh_keys, home)?,
        privileged: container && kind.privileged,
        nesting: container && kind.nesting,
        // A privileged container sees the host's /dev/net; a VM has its own TUN.
        tun: container && !kind.privileged && kind.tun,
        // Set by create from --mount, checked against the host there.
        mounts: Vec::new(),
    })
}

/// Quotes one argument for the remote shell that ssh (or `su -c`) hands a command to, so
/// `nox ssh NAME -- ARGS` runs ARGS as argv, like `nox exec`. An argument holding a NUL byte
/// cannot reach a program at all and is refused.
pub fn sh_quote(arg: &str) -> Result<String> {
    shlex::try_quote(arg).map(|q| q.into_owned()).map_err(|_| {
        Error::Usage(format!(
            "argument {arg:?} holds a NUL byte, which no program can receive"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whatever the quoting looks like, a POSIX shell must hand the program the argument
    /// back byte for byte.
    #[test]
    fn quoting_keeps_arguments_whole() {
        let args = [
            "ls",
            "a b",
            "it's",
            "$HOME;rm -rf /",
            "",
            "a\nb",
            "`id`",
            "\"q\"",
            "*",
            "~root",
            "-n",
        ];
        let quoted: Vec<String> = args.iter().map(|a| sh_quote(a).unwrap()).collect();
        let script = format!("printf '%s\\0' {}", quoted.join(" "));
        let out = std::process::Command::new("/bin/sh")
            .args(["-c", &script])
            .output()
            .unwrap();
        let got: Vec<&[u8]> = out.stdout.split(|b| *b == 0).collect();
        let want: Vec<&[u8]> = args
            .iter()
            .map(|a| a.as_bytes())
            .chain([&b""[..]])
            .collect();
        assert_eq!(got, want);
        assert_eq!(sh_quote("ls").unwrap(), "ls");
        assert!(sh_quote("a\0b").unwrap_err().is_bad_input());
    }

    #[test]
    fn backend_rules() {
        use BackendKind::*;
        let cases = [
            ((None, false, Vm), Ok(Vm)),
            ((None, false, Lxc), Ok(Lxc)),
            ((None, true, Vm), Ok(Lxc)),
            ((Some(Lxc), true, Vm), Ok(Lxc)),
            ((Some(Vm), false, Lxc), Ok(Vm)),
            ((Some(Vm), true, Vm), Err("VMs are isolated by design")),
            ((Some(Vm), true, Lxc), Err("VMs are isolated by design")),
        ];
        for ((flag, privileged, default), want) in cases {
            let got = choose_backend(flag, privileged, default);
            match (want, got) {
                (Ok(w), Ok(g)) => assert_eq!(w, g),
                (Err(msg), Err(e)) => {
                    assert!(e.is_bad_input());
                    assert!(e.to_string().contains(msg), "{e}");
                }
                (w, g) => panic!("{flag:?} {privileged} {default:?}: want {w:?} got {g:?}"),
            }
        }
    }

    #[test]
    fn users() {
        for ok in ["nox", "ops", "a_b", "_svc", "x-1"] {
            assert!(check_user(ok).is_ok(), "{ok}");
        }
        for bad in ["", "root", "Nox", "1x", "a b", "a;b", &"a".repeat(33)] {
            assert!(check_user(bad).unwrap_err().is_bad_input(), "{bad}");
        }
    }

    #[test]
    fn ssh_keys_from_text_paths_and_home() {
        let home = tempfile::tempdir().unwrap();
        let ssh = home.path().join(".ssh");
        std::fs::create_dir(&ssh).unwrap();
        std::fs::write(ssh.join("id_ed25519.pub"), "ssh-ed25519 AAAA me@a\n").unwrap();
        std::fs::write(ssh.join("id_rsa.pub"), "ssh-rsa BBBB me@b\n").unwrap();
        std::fs::write(ssh.join("id_rsa"), "-----BEGIN OPENSSH PRIVATE KEY-----\n").unwrap();
        let h = Some(home.path());
        assert_eq!(
            read_ssh_keys(&[], h).unwrap(),
            vec!["ssh-ed25519 AAAA me@a", "ssh-rsa BBBB me@b"]
        );
        assert_eq!(
            read_ssh_keys(
                &["~/.ssh/id_rsa.pub".into(), "ssh-ed25519 CCCC x".into()],
                h
            )
            .unwrap(),
            vec!["ssh-rsa BBBB me@b", "ssh-ed25519 CCCC x"]
        );
        let err = read_ssh_keys(&["~/.ssh/id_rsa".into()], h).unwrap_err();
        assert!(err.to_string().contains("private key"), "{err}");
        let err = read_ssh_keys(&["/nonexistent.pub".into()], h).unwrap_err();
        assert!(err.is_bad_input());
    }
}
