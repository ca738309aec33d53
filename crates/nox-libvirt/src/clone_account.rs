//! The template's placeholder account becomes the clone's user.
//!
//! A template is built with one account, [`crate::identity::TEMPLATE_USER`], in group `sudo`,
//! with an empty `~/.ssh/authorized_keys`. A clone renames it in the account files rather
//! than running `userdel` and `useradd` in the guest: under software emulation those two take
//! half a second, where the edit is done here on the host, on the files read through the guest
//! agent, and the guest only writes the results back with its shell's builtins.
//!
//! The rename is what `usermod -l USER -d /home/USER -m` and `groupmod -n USER` would do: the
//! same uid and gid, so every file the account owns stays its own.
//! If the image already has an account named USER, that account is kept, the placeholder is
//! removed instead, and USER is put in group `sudo`.

/// An account file: where it lives in the guest and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountFile {
    pub path: &'static str,
    pub text: String,
}

/// The files an account is written in. subuid and subgid are optional in images.
pub const FILES: [&str; 6] = [
    "/etc/passwd",
    "/etc/shadow",
    "/etc/group",
    "/etc/gshadow",
    "/etc/subuid",
    "/etc/subgid",
];

/// What the guest does besides writing the files back.
#[derive(Debug, PartialEq, Eq)]
pub struct Handover {
    /// The edited files, each to be written back whole.
    pub files: Vec<AccountFile>,
    /// The user's home directory.
    pub home: String,
    /// The placeholder's home, to be renamed to `home` (`Some` only when the account was
    /// renamed and its home moves), or removed when the user already existed.
    pub old_home: Option<String>,
    /// Whether the user's account already existed in the image (and the placeholder is gone).
    pub existing: bool,
}

/// Hands the placeholder `template` over to `user` in `files` (each as read from the guest;
/// missing optional files are simply absent).
pub fn hand_over(files: &[AccountFile], template: &str, user: &str) -> Result<Handover, String> {
    let passwd = files
        .iter()
        .find(|f| f.path == "/etc/passwd")
        .ok_or("the template has no /etc/passwd")?;
    let entry = |name: &str| {
        passwd
            .text
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() == 7 && f[0] == name)
    };
    let placeholder = entry(template)
        .ok_or_else(|| format!("the template has no account {template:?}"))?
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>();
    let existing = user != template && entry(user).is_some();
    let placeholder_home = placeholder[5].clone();

    let (home, old_home) = if existing {
        let home = entry(user).map(|f| f[5].to_string()).unwrap_or_default();
        (
            home,
            Some(placeholder_home).filter(|h| h.starts_with("/home/")),
        )
    } else if placeholder_home == format!("/home/{template}") && user != template {
        (format!("/home/{user}"), Some(placeholder_home))
    } else {
        (placeholder_home, None)
    };

    let edited = files
        .iter()
        .map(|f| {
            let text = f
                .text
                .lines()
                .filter_map(|line| edit_line(f.path, line, template, user, existing, &home))
                .map(|l| l + "\n")
                .collect();
            AccountFile { path: f.path, text }
        })
        .collect();
    Ok(Handover {
        files: edited,
        home,
        old_home,
        existing,
    })
}

/// One line of an account file, edited: `None` drops it.
fn edit_line(
    path: &str,
    line: &str,
    template: &str,
    user: &str,
    existing: bool,
    home: &str,
) -> Option<String> {
    let mut f: Vec<String> = line.split(':').map(str::to_string).collect();
    let named = f[0] == template;
    match path {
        "/etc/passwd" if named => {
            if existing {
                return None;
            }
            f[0] = user.into();
            if f.len() == 7 {
                f[5] = home.into();
            }
        }
        "/etc/group" | "/etc/gshadow" => {
            // The placeholder's own group (useradd names it after the account) goes with
            // it or is renamed; other groups list it as a member (and in gshadow, as an
            // administrator).
            if named && existing {
                return None;
            }
            if named {
                f[0] = user.into();
            }
            let lists: &[usize] = if path == "/etc/group" { &[3] } else { &[2, 3] };
            for &i in lists {
                if let Some(list) = f.get_mut(i) {
                    *list = members(list, template, user, existing);
                }
            }
            // Existing users join sudo, which the placeholder was in.
            if existing && f[0] == "sudo" {
                let last = f.len() - 1;
                if f.len() >= 4 && !f[last].split(',').any(|m| m == user) {
                    f[last] = if f[last].is_empty() {
                        user.to_string()
                    } else {
                        format!("{},{user}", f[last])
                    };
                }
            }
        }
        // shadow, subuid, subgid: the name is the first field, nothing else names it.
        _ if named => {
            if existing {
                return None;
            }
            f[0] = user.into();
        }
        _ => {}
    }
    Some(f.join(":"))
}

/// A comma-separated member list with the placeholder renamed (or dropped, when `user` is
/// already listed or already had an account).
fn members(list: &str, template: &str, user: &str, existing: bool) -> String {
    let mut out: Vec<&str> = Vec::new();
    for m in list.split(',').filter(|m| !m.is_empty()) {
        let m = if m == template {
            if existing {
                continue;
            }
            user
        } else {
            m
        };
        if !out.contains(&m) {
            out.push(m);
        }
    }
    out.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "noxtemplate";

    fn files() -> Vec<AccountFile> {
        let f = |path, text: &str| AccountFile {
            path,
            text: text.into(),
        };
        vec![
            f(
                "/etc/passwd",
                "root:x:0:0:root:/root:/bin/bash\n\
                 noxtemplate:x:1000:1000::/home/noxtemplate:/bin/bash\n",
            ),
            f(
                "/etc/shadow",
                "root:*:19000:0:99999:7:::\nnoxtemplate:!:19000:0:99999:7:::\n",
            ),
            f(
                "/etc/group",
                "root:x:0:\nsudo:x:27:noxtemplate\nadm:x:4:syslog,noxtemplate\n\
                 noxtemplate:x:1000:\n",
            ),
            f(
                "/etc/gshadow",
                "root:*::\nsudo:*::noxtemplate\nadm:*:noxtemplate:syslog,noxtemplate\n\
                 noxtemplate:!::\n",
            ),
            f("/etc/subuid", "noxtemplate:100000:65536\n"),
        ]
    }

    fn text<'a>(h: &'a Handover, path: &str) -> &'a str {
        &h.files.iter().find(|f| f.path == path).unwrap().text
    }

    #[test]
    fn the_placeholder_is_renamed_everywhere_with_its_ids_kept() {
        let h = hand_over(&files(), T, "alice").unwrap();
        assert_eq!(
            text(&h, "/etc/passwd"),
            "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/bash\n"
        );
        assert_eq!(
            text(&h, "/etc/shadow"),
            "root:*:19000:0:99999:7:::\nalice:!:19000:0:99999:7:::\n"
        );
        assert_eq!(
            text(&h, "/etc/group"),
            "root:x:0:\nsudo:x:27:alice\nadm:x:4:syslog,alice\nalice:x:1000:\n"
        );
        assert_eq!(
            text(&h, "/etc/gshadow"),
            "root:*::\nsudo:*::alice\nadm:*:alice:syslog,alice\nalice:!::\n"
        );
        assert_eq!(text(&h, "/etc/subuid"), "alice:100000:65536\n");
        assert_eq!(h.home, "/home/alice");
        assert_eq!(h.old_home.as_deref(), Some("/home/noxtemplate"));
        assert!(!h.existing);
        for f in &h.files {
            assert!(
                !f.text.contains(T),
                "{} still names the placeholder",
                f.path
            );
        }
    }

    #[test]
    fn an_existing_account_is_kept_the_placeholder_removed_and_sudo_joined() {
        let mut fs = files();
        fs[0].text.push_str("bob:x:1001:1001::/srv/bob:/bin/sh\n");
        fs[1].text.push_str("bob:$y$hash:19000:0:99999:7:::\n");
        fs[2].text.push_str("bob:x:1001:\n");
        fs[3].text.push_str("bob:!::\n");
        let h = hand_over(&fs, T, "bob").unwrap();
        assert!(h.existing);
        assert_eq!(h.home, "/srv/bob");
        assert_eq!(h.old_home.as_deref(), Some("/home/noxtemplate"));
        assert_eq!(
            text(&h, "/etc/passwd"),
            "root:x:0:0:root:/root:/bin/bash\nbob:x:1001:1001::/srv/bob:/bin/sh\n"
        );
        // bob's password hash is the image's, untouched.
        assert_eq!(
            text(&h, "/etc/shadow"),
            "root:*:19000:0:99999:7:::\nbob:$y$hash:19000:0:99999:7:::\n"
        );
        assert_eq!(
            text(&h, "/etc/group"),
            "root:x:0:\nsudo:x:27:bob\nadm:x:4:syslog\nbob:x:1001:\n"
        );
        assert_eq!(
            text(&h, "/etc/gshadow"),
            "root:*::\nsudo:*::bob\nadm:*::syslog\nbob:!::\n"
        );
        assert_eq!(text(&h, "/etc/subuid"), "");
    }

    #[test]
    fn the_placeholders_own_name_changes_nothing() {
        let h = hand_over(&files(), T, T).unwrap();
        assert_eq!(h.files, files());
        assert_eq!(h.old_home, None);
        assert_eq!(h.home, "/home/noxtemplate");
    }

    #[test]
    fn a_user_already_in_a_member_list_is_listed_once() {
        let mut fs = files();
        fs[2].text = fs[2]
            .text
            .replace("sudo:x:27:noxtemplate", "sudo:x:27:alice,noxtemplate");
        let h = hand_over(&fs, T, "alice").unwrap();
        assert!(text(&h, "/etc/group").contains("sudo:x:27:alice\n"));
    }

    #[test]
    fn a_template_without_its_account_is_refused() {
        let mut fs = files();
        fs[0].text = "root:x:0:0:root:/root:/bin/bash\n".into();
        let e = hand_over(&fs, T, "alice").unwrap_err();
        assert!(e.contains("no account"), "{e}");
    }
}
