//! Changing a config file the way a person would: one `[remotes.NAME]` table added or
//! removed, every other line, comment and key order left as it was (toml_edit). The result is
//! checked against the schema before it replaces the file, so nox never writes a config it
//! would refuse to read.

use std::path::Path;

use crate::config::{parse_file, RemoteConfig};
use crate::error::{Error, Result};
use crate::name::RemoteName;

fn read(path: &Path) -> Result<toml_edit::DocumentMut> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(Error::ConfigRead {
                file: path.to_path_buf(),
                source,
            })
        }
    };
    // Checked first: a file nox cannot read is not one to edit.
    parse_file(path, &text)?;
    text.parse::<toml_edit::DocumentMut>()
        .map_err(|e| Error::Usage(format!("{}: {e}", path.display())))
}

fn write(path: &Path, doc: &toml_edit::DocumentMut) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let text = doc.to_string();
    parse_file(path, &text)?;
    // A symlinked config (dotfiles) is edited where it points, and keeps its mode.
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    }
    let mode = std::fs::metadata(&path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o644);
    // Written beside and renamed: a crash never leaves half a config.
    let tmp = path.with_extension(format!("toml.tmp-{}", std::process::id()));
    let io = |e| Error::io(format!("writing {}", tmp.display()), e);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .and_then(|_| f.write_all(text.as_bytes()))
        .and_then(|_| f.sync_all())
        .map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(format!("replacing {}", path.display()), e))
}

/// Whether `path` defines `[remotes.NAME]`.
pub fn has_remote(path: &Path, name: &RemoteName) -> Result<bool> {
    let doc = read(path)?;
    Ok(doc
        .get("remotes")
        .and_then(|r| r.as_table_like())
        .is_some_and(|t| t.contains_key(name.as_str())))
}

/// Adds (or replaces) `[remotes.NAME]` in `path`.
pub fn set_remote(path: &Path, name: &RemoteName, remote: &RemoteConfig) -> Result<()> {
    let mut doc = read(path)?;
    let value = toml_edit::ser::to_document(remote)
        .map_err(|e| Error::encode(format!("writing [remotes.{name}]"), e))?;
    let mut table = value.as_table().clone();
    table.set_implicit(false);
    let remotes = doc
        .entry("remotes")
        .or_insert_with(|| {
            let mut t = toml_edit::Table::new();
            t.set_implicit(true);
            toml_edit::Item::Table(t)
        })
        .as_table_mut()
        .ok_or_else(|| Error::Usage(format!("{}: `remotes` is not a table", path.display())))?;
    remotes.insert(name.as_str(), toml_edit::Item::Table(table));
    write(path, &doc)
}

/// Removes `[remotes.NAME]` from `path`; `false` when it was not there.
pub fn remove_remote(path: &Path, name: &RemoteName) -> Result<bool> {
    let mut doc = read(path)?;
    let removed = doc
        .get_mut("remotes")
        .and_then(|r| r.as_table_like_mut())
        .and_then(|t| t.remove(name.as_str()))
        .is_some();
    if removed {
        write(path, &doc)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RemoteDriver;
    use proptest::strategy::Strategy as _;

    fn remote() -> RemoteConfig {
        RemoteConfig {
            driver: RemoteDriver::Incus,
            url: "https://192.0.2.10:8443".into(),
            project: "default".into(),
            client_cert: Some("/root/.config/nox/remotes/c/client.crt".into()),
            client_key: Some("/root/.config/nox/remotes/c/client.key".into()),
            fingerprint: Some("ab".repeat(32)),
            privileged_network: None,
            storage_pool: "default".into(),
        }
    }

    #[test]
    fn a_remote_is_added_and_removed_leaving_the_rest_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nox.toml");
        let before = "# my settings\n[defaults]\ncpus = 2  # enough\n";
        std::fs::write(&path, before).unwrap();
        let c: RemoteName = "cluster".parse().unwrap();
        set_remote(&path, &c, &remote()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(before), "{text}");
        assert!(text.contains("[remotes.cluster]"), "{text}");
        assert!(has_remote(&path, &c).unwrap());
        let loaded = crate::config::load(
            &crate::config::ConfigFiles {
                host: dir.path().join("none"),
                user: Some(path.clone()),
                explicit: None,
            },
            &[],
        )
        .unwrap();
        assert_eq!(loaded.config.remotes[&c], remote());
        assert!(remove_remote(&path, &c).unwrap());
        assert!(!remove_remote(&path, &c).unwrap());
        let after = std::fs::read_to_string(&path).unwrap();
        assert!(
            after.starts_with(before) && !after.contains("cluster"),
            "{after}"
        );
        // A missing file is created.
        let fresh = dir.path().join("sub/nox.toml");
        set_remote(&fresh, &c, &remote()).unwrap();
        assert!(has_remote(&fresh, &c).unwrap());
    }

    #[test]
    fn a_private_or_symlinked_config_stays_so() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("dotfiles-nox.toml");
        std::fs::write(&real, "[defaults]\n").unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o600)).unwrap();
        let link = dir.path().join("nox.toml");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        set_remote(&link, &"c".parse().unwrap(), &remote()).unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert!(std::fs::read_to_string(&real)
            .unwrap()
            .contains("[remotes.c]"));
        assert_eq!(
            std::fs::metadata(&real).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn a_file_nox_cannot_read_is_not_edited() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nox.toml");
        std::fs::write(&path, "[defaults]\ncpu = 2\n").unwrap();
        let e = set_remote(&path, &"c".parse().unwrap(), &remote()).unwrap_err();
        assert!(e.is_bad_input(), "{e}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "[defaults]\ncpu = 2\n"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// `nox remote add` then `nox remote rm` of the same name leaves the file byte for byte
        /// as it was (comments, order, other remotes), and what was added reads back as given.
        #[test]
        fn adding_then_removing_a_remote_leaves_the_file_as_it_was(
            before in proptest::sample::select(vec![
                "",
                "# mine\n[defaults]\ncpus = 2 # two\n",
                "[remotes.other]\ndriver = \"incus\"\nurl = \"unix:///x\"\n\n# after\n[lxc]\nbridge = \"br1\"\n",
                "[defaults]\nmemory = \"2G\"\n[remotes]\n",
            ]),
            name in crate::strategies::remote_name().prop_filter("not the file's own", |n| n.as_str() != "other"),
            url in ".*",
            project in "[a-z0-9_-]{1,20}",
            fingerprint in proptest::option::of("[0-9a-f]{64}"),
            client_cert in proptest::option::of("/[a-z/]{1,30}"),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("nox.toml");
            std::fs::write(&path, before).unwrap();
            let remote = RemoteConfig {
                url,
                project,
                fingerprint,
                client_cert: client_cert.map(Into::into),
                ..remote()
            };
            if remote.url.contains('\0') {
                // Nothing nox passes on may hold a NUL: refused, the file untouched.
                proptest::prop_assert!(set_remote(&path, &name, &remote).unwrap_err().is_bad_input());
                proptest::prop_assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
                return Ok(());
            }
            set_remote(&path, &name, &remote).unwrap();
            let text = std::fs::read_to_string(&path).unwrap();
            let read = crate::config::load_texts(vec![(path.clone(), text)], &[]).unwrap();
            proptest::prop_assert_eq!(read.config.remotes.get(&name), Some(&remote));
            proptest::prop_assert!(remove_remote(&path, &name).unwrap());
            proptest::prop_assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
        }
    }
}
