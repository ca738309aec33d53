//! Provisioning a guest without cloud-init (images like LXC's own): the user, its keys and
//! its sudo rule, as argv steps a backend runs inside the guest as root (LXC through attach,
//! Incus through exec). Files go in through `install` reading stdin, so they are created by the
//! guest's own root with the right owner, never written from the host.

/// One command, and what it reads on stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub argv: Vec<String>,
    pub stdin: Option<String>,
}

/// Names the guest `$2` (where that is given: `/etc/hostname` and the running hostname), makes
/// user `$1` (in group sudo, with passwordless sudo) and installs the public keys read on
/// stdin. A constant: the user's name arrives as a positional parameter, the keys as
/// stdin, never as shell text. Files are created by `install` (owner and mode), then filled by
/// `dd` from stdin: a user-namespaced guest may not reopen /dev/stdin when it is the host's
/// pipe (Incus exec). One command, so a remote guest is provisioned in one round trip.
pub const USER_SCRIPT: &str = r#"set -eu
u=$1
if [ -n "${2:-}" ]; then printf '%s\n' "$2" >/etc/hostname; hostname "$2"; fi
useradd --create-home --shell /bin/bash --groups sudo -- "$u"
install -d -m 0700 -o "$u" -g "$u" "/home/$u/.ssh"
install -m 0600 -o "$u" -g "$u" /dev/null "/home/$u/.ssh/authorized_keys"
dd of="/home/$u/.ssh/authorized_keys" status=none
install -m 0440 -o root -g root /dev/null /etc/sudoers.d/90-nox
printf '%s ALL=(ALL) NOPASSWD:ALL\n' "$u" >/etc/sudoers.d/90-nox
"#;

/// The step that gives a guest `user` (in group sudo, passwordless sudo) with `keys`, and
/// with `hostname` its name too.
pub fn user_steps(user: &str, keys: &[String], hostname: Option<&str>) -> Vec<Step> {
    let mut argv: Vec<String> = vec![
        "/bin/sh".into(),
        "-c".into(),
        USER_SCRIPT.into(),
        "nox-provision".into(),
        user.into(),
    ];
    argv.extend(hostname.map(String::from));
    vec![Step {
        argv,
        stdin: Some(keys.join("\n") + "\n"),
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The script run for real, in a scratch root, with the commands it calls stubbed to
    /// record their argv: the user's name arrives whole, even a hostile one.
    #[test]
    fn the_name_is_an_argument_and_the_keys_are_stdin() {
        let steps = user_steps(
            "nox",
            &["ssh-ed25519 AAAA a".into(), "ssh-rsa BBBB b".into()],
            None,
        );
        assert_eq!(steps.len(), 1);
        let s = &steps[0];
        assert_eq!(s.argv[..2], ["/bin/sh", "-c"]);
        assert_eq!(s.argv[4], "nox");
        assert_eq!(
            s.stdin.as_deref(),
            Some("ssh-ed25519 AAAA a\nssh-rsa BBBB b\n")
        );
        assert!(
            !USER_SCRIPT.contains("nox ALL"),
            "the user is never spliced into the script"
        );

        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let log = dir.path().join("log");
        for cmd in ["useradd", "install", "dd"] {
            let stub = format!(
                "#!/bin/sh\nfor a in \"$@\"; do printf '%s|' \"$a\"; done >>{log}\necho >>{log}\n",
                log = log.display()
            );
            let p = bin.join(cmd);
            std::fs::write(&p, stub).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let script = USER_SCRIPT.replace(
            "/etc/sudoers.d/90-nox",
            &dir.path().join("sudoers").display().to_string(),
        );
        let out = std::process::Command::new("/bin/sh")
            .args(["-c", &script, "nox-provision", "a b;$(id)"])
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let calls = std::fs::read_to_string(&log).unwrap();
        assert!(
            calls.starts_with("--create-home|--shell|/bin/bash|--groups|sudo|--|a b;$(id)|"),
            "{calls}"
        );
        let sudoers = std::fs::read_to_string(dir.path().join("sudoers")).unwrap();
        assert_eq!(sudoers, "a b;$(id) ALL=(ALL) NOPASSWD:ALL\n");
    }
}
