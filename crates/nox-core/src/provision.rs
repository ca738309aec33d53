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

fn step(argv: &[&str], stdin: Option<String>) -> Step {
    Step {
        argv: argv.iter().map(|a| a.to_string()).collect(),
        stdin,
    }
}

/// A file the guest's root creates with `mode` and `owner`, holding `content`: `install`
/// makes it empty with the right owner and mode, then `dd` fills it from stdin. Neither
/// reopens /dev/stdin, which a user-namespaced guest may not do when stdin is the host's
/// pipe (Incus exec).
fn file(path: &str, mode: &str, owner: &str, content: String) -> [Step; 2] {
    [
        step(
            &[
                "install",
                "-m",
                mode,
                "-o",
                owner,
                "-g",
                owner,
                "/dev/null",
                path,
            ],
            None,
        ),
        step(&["dd", &format!("of={path}"), "status=none"], Some(content)),
    ]
}

/// The steps that give a guest `user` (in group sudo, passwordless sudo) with `keys`.
pub fn user_steps(user: &str, keys: &[String]) -> Vec<Step> {
    let home = format!("/home/{user}");
    let ssh = format!("{home}/.ssh");
    let mut steps = vec![
        step(
            &[
                "useradd",
                "--create-home",
                "--shell",
                "/bin/bash",
                "--groups",
                "sudo",
                user,
            ],
            None,
        ),
        step(
            &["install", "-d", "-m", "0700", "-o", user, "-g", user, &ssh],
            None,
        ),
    ];
    steps.extend(file(
        &format!("{ssh}/authorized_keys"),
        "0600",
        user,
        keys.join("\n") + "\n",
    ));
    steps.extend(file(
        "/etc/sudoers.d/90-nox",
        "0440",
        "root",
        format!("{user} ALL=(ALL) NOPASSWD:ALL\n"),
    ));
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_its_keys_and_sudo_in_order_with_files_on_stdin() {
        let steps = user_steps(
            "nox",
            &["ssh-ed25519 AAAA a".into(), "ssh-rsa BBBB b".into()],
        );
        assert_eq!(steps.len(), 6);
        assert_eq!(steps[0].argv[0], "useradd");
        assert_eq!(steps[0].argv.last().unwrap(), "nox");
        assert_eq!(
            steps[2].argv,
            [
                "install",
                "-m",
                "0600",
                "-o",
                "nox",
                "-g",
                "nox",
                "/dev/null",
                "/home/nox/.ssh/authorized_keys"
            ]
        );
        assert_eq!(
            steps[3].argv,
            ["dd", "of=/home/nox/.ssh/authorized_keys", "status=none"]
        );
        assert_eq!(
            steps[3].stdin.as_deref(),
            Some("ssh-ed25519 AAAA a\nssh-rsa BBBB b\n")
        );
        assert_eq!(
            steps[5].stdin.as_deref(),
            Some("nox ALL=(ALL) NOPASSWD:ALL\n")
        );
        // Nothing is a shell line: every argument is one argv entry.
        assert!(steps
            .iter()
            .all(|s| s.argv.iter().all(|a| !a.contains(' '))));
    }
}
