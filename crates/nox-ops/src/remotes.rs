//! `nox remote add|list|rm`: the servers and clusters in `[remotes]`.

use std::path::PathBuf;

use nox_core::config::{config_dir_of, RemoteConfig};
use nox_core::config_edit;
use nox_core::{Error, RemoteName, Result};
use serde::Serialize;

use crate::context::Context;
use crate::ui::Ui;

/// Trusts nox on the remote at `url` and writes `[remotes.NAME]` into the config file.
/// Returns the entry and the file it went into.
pub fn add(
    ctx: &Context,
    name: &RemoteName,
    url: &str,
    token: Option<&str>,
    ui: &dyn Ui,
) -> Result<(RemoteConfig, PathBuf)> {
    let file = writable(ctx)?;
    if ctx.config.remotes.contains_key(name) {
        return Err(Error::Refused {
            message: format!("a remote named {name} exists"),
            hint: format!("pick another name, or `nox remote rm {name}` first"),
        });
    }
    let driver = ctx.drivers.first().ok_or_else(|| {
        Error::Usage("this nox was built without a remote driver (cargo feature `incus`)".into())
    })?;
    let dir = config_dir_of(&file).join("remotes").join(name.as_str());
    let entry = driver.add(name, url, token, &dir, &|line| ui.note(line))?;
    config_edit::set_remote(&file, name, &entry)?;
    Ok((entry, file))
}

/// One row of `nox remote list --json`.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub name: String,
    pub driver: nox_core::config::RemoteDriver,
    pub url: String,
    pub project: String,
    pub fingerprint: Option<String>,
    /// Whether it answered just now.
    pub reachable: bool,
    /// What answered (version, members and their state), or why nothing did.
    pub status: String,
}

/// Every remote, each asked at once what answers there (a few seconds at most each).
pub fn list(ctx: &Context) -> Vec<Row> {
    let driver = ctx.drivers.first();
    std::thread::scope(|s| {
        let handles: Vec<_> = ctx
            .config
            .remotes
            .iter()
            .map(|(name, cfg)| {
                s.spawn(move || {
                    let answer = match driver {
                        Some(d) => d.describe(name, cfg),
                        None => Err(Error::Usage("no remote driver built in".into())),
                    };
                    Row {
                        name: name.to_string(),
                        driver: cfg.driver,
                        url: cfg.url.clone(),
                        project: cfg.project.clone(),
                        fingerprint: cfg.fingerprint.clone(),
                        reachable: answer.is_ok(),
                        status: answer.unwrap_or_else(|e| e.to_string()),
                    }
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    })
}

/// Removes `[remotes.NAME]` from the config file, and the client certificate nox made for it.
/// The instances on the remote are not touched.
pub fn remove(ctx: &Context, name: &RemoteName) -> Result<PathBuf> {
    let file = writable(ctx)?;
    if !config_edit::has_remote(&file, name)? {
        return Err(if ctx.config.remotes.contains_key(name) {
            Error::Refused {
                message: format!("[remotes.{name}] is not in {}", file.display()),
                hint: "it comes from another config file (`nox config show --origin`): remove it there".into(),
            }
        } else {
            Error::Refused {
                message: format!("there is no remote named {name}"),
                hint: "`nox remote list` shows the remotes".into(),
            }
        });
    }
    config_edit::remove_remote(&file, name)?;
    let dir = config_dir_of(&file).join("remotes").join(name.as_str());
    if dir.is_dir() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(file)
}

fn writable(ctx: &Context) -> Result<PathBuf> {
    ctx.config_file.clone().ok_or_else(|| {
        Error::Usage("neither NOX_CONFIG, XDG_CONFIG_HOME nor HOME is set: no config file to write the remote into".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{context, FakeUi};
    use nox_core::config::RemoteDriver;
    use nox_core::remote::RemoteDriverOps;
    use std::path::Path;

    #[derive(Debug)]
    struct FakeDriver;

    impl RemoteDriverOps for FakeDriver {
        fn driver(&self) -> RemoteDriver {
            RemoteDriver::Incus
        }
        fn add(
            &self,
            _: &RemoteName,
            url: &str,
            token: Option<&str>,
            dir: &Path,
            note: &dyn Fn(&str),
        ) -> Result<RemoteConfig> {
            if token != Some("good") {
                return Err(Error::failed("refused", "make a token"));
            }
            note("certificate fingerprint abcd");
            std::fs::create_dir_all(dir).unwrap();
            Ok(RemoteConfig {
                driver: RemoteDriver::Incus,
                url: url.into(),
                project: "default".into(),
                client_cert: Some(dir.join("client.crt")),
                client_key: Some(dir.join("client.key")),
                fingerprint: Some("ab".repeat(32)),
                privileged_network: None,
                storage_pool: "default".into(),
            })
        }
        fn describe(&self, name: &RemoteName, _: &RemoteConfig) -> Result<String> {
            Ok(format!("{name} answers"))
        }
    }

    #[test]
    fn add_writes_the_entry_and_rm_takes_it_and_its_certificate_away() {
        let dir = tempfile::tempdir().unwrap();
        let mut ctx = context(dir.path(), vec![]).with_drivers(vec![Box::new(FakeDriver)]);
        let name: RemoteName = "c1".parse().unwrap();
        let ui = FakeUi::default();
        let e = add(&ctx, &name, "https://192.0.2.1:8443", Some("bad"), &ui).unwrap_err();
        assert!(e.to_string().contains("refused"));
        let (entry, file) = add(&ctx, &name, "https://192.0.2.1:8443", Some("good"), &ui).unwrap();
        assert_eq!(ui.notes(), ["certificate fingerprint abcd"]);
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.contains("[remotes.c1]") && text.contains("192.0.2.1"),
            "{text}"
        );
        let cert_dir = entry.client_cert.unwrap().parent().unwrap().to_path_buf();
        assert!(cert_dir.starts_with(dir.path().join("config/remotes")));
        ctx.config.remotes.insert(name.clone(), {
            let loaded = nox_core::config::load(
                &nox_core::config::ConfigFiles {
                    host: dir.path().join("none"),
                    user: Some(file.clone()),
                    explicit: None,
                },
                &[],
            )
            .unwrap();
            loaded.config.remotes[&name].clone()
        });
        let e = add(&ctx, &name, "https://x", Some("good"), &ui).unwrap_err();
        assert!(e.is_bad_input() && e.to_string().contains("exists"), "{e}");
        let rows = list(&ctx);
        assert_eq!(rows.len(), 1);
        assert!(rows[0].reachable && rows[0].status == "c1 answers");
        remove(&ctx, &name).unwrap();
        assert!(!std::fs::read_to_string(&file).unwrap().contains("c1"));
        assert!(!cert_dir.exists());
        ctx.config.remotes.clear();
        let e = remove(&ctx, &name).unwrap_err();
        assert!(e.to_string().contains("no remote named c1"), "{e}");
    }
}
