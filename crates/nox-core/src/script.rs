//! Launch scripts: what `nox create --script` and `nox run` put in a new instance.
//!
//! Built-ins (docker, tailscale, claude) are shell scripts embedded in the binary from
//! `scripts/`; anything else is a path to the user's own script. This module resolves them,
//! finds the Tailscale auth key, and builds the sinks that stream a script's output to the
//! terminal and its log at once, with the key redacted from both. Running them is nox-ops'
//! job (`scripts.rs`), through `Backend::exec_with`.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::config::TailscaleConfig;
use crate::error::{Error, Result};
use crate::secret::Zeroizing;

/// A script that ships inside nox.
#[derive(Debug)]
pub struct Builtin {
    pub name: &'static str,
    pub about: &'static str,
    pub body: &'static str,
    /// Containers must allow nesting before it runs.
    pub needs_nesting: bool,
}

pub const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "docker",
        about: "Docker Engine: the distribution's docker.io, else Docker's apt repository (signing key checked)",
        body: include_str!("../scripts/docker.sh"),
        needs_nesting: true,
    },
    Builtin {
        name: "tailscale",
        about: "Tailscale from its package repository (signing key checked); joins the tailnet with an auth key",
        body: include_str!("../scripts/tailscale.sh"),
        needs_nesting: false,
    },
    Builtin {
        name: "claude",
        about: "Claude Code through Anthropic's official installer, for the instance's user",
        body: include_str!("../scripts/claude.sh"),
        needs_nesting: false,
    },
];

/// Custom scripts bigger than this are surely not scripts.
const MAX_SCRIPT: u64 = 1 << 20;

/// A resolved launch script.
#[derive(Debug, Clone)]
pub struct Script {
    /// What the user sees and the log file is named after: `docker`, or the file's name.
    pub name: String,
    pub builtin: Option<&'static str>,
    pub path: Option<PathBuf>,
    pub body: Vec<u8>,
}

impl Script {
    /// `NAME` of a built-in, else a path to a script file. A path is read now, so a missing
    /// file is reported before anything is created.
    pub fn resolve(arg: &str) -> Result<Script> {
        if let Some(b) = BUILTINS.iter().find(|b| b.name == arg) {
            return Ok(Script {
                name: b.name.into(),
                builtin: Some(b.name),
                path: None,
                body: b.body.as_bytes().to_vec(),
            });
        }
        let path = Path::new(arg);
        let meta = std::fs::metadata(path).map_err(|e| {
            Error::Usage(format!(
                "--script {arg:?} is neither a built-in ({}) nor a readable file: {e}",
                builtin_names()
            ))
        })?;
        if !meta.is_file() || meta.len() > MAX_SCRIPT {
            return Err(Error::Usage(format!(
                "--script {arg:?} is not a script file (a regular file of at most 1 MiB)"
            )));
        }
        let body = std::fs::read(path)
            .map_err(|e| Error::Usage(format!("cannot read script {arg:?}: {e}")))?;
        let file = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| "script".into());
        Ok(Script {
            name: safe_name(&file),
            builtin: None,
            path: Some(path.to_path_buf()),
            body,
        })
    }

    /// The program line that runs the script from `path`, as the kernel would read its `#!`
    /// line (the interpreter and at most one argument), else `/bin/sh`. nox runs it this way
    /// because /run, where the script waits, is often mounted noexec.
    pub fn command(&self, path: &str) -> Vec<String> {
        let first = self.body.split(|&b| b == b'\n').next().unwrap_or_default();
        let mut argv: Vec<String> = match first.strip_prefix(b"#!") {
            Some(rest) => {
                let line = String::from_utf8_lossy(rest).trim().to_string();
                match line.split_once([' ', '\t']) {
                    Some((prog, arg)) => vec![prog.to_string(), arg.trim().to_string()],
                    None if !line.is_empty() => vec![line],
                    None => vec!["/bin/sh".into()],
                }
            }
            None => vec!["/bin/sh".into()],
        };
        argv.push(path.to_string());
        argv
    }

    pub fn needs_nesting(&self) -> bool {
        self.builtin
            .and_then(|n| BUILTINS.iter().find(|b| b.name == n))
            .is_some_and(|b| b.needs_nesting)
    }

    pub fn is_tailscale(&self) -> bool {
        self.builtin == Some("tailscale")
    }
}

pub fn builtin_names() -> String {
    BUILTINS
        .iter()
        .map(|b| b.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A file name reduced to characters that are safe in a guest path and a log file name.
fn safe_name(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let trimmed = cleaned.trim_start_matches('.');
    if trimmed.is_empty() {
        "script".into()
    } else {
        trimmed.chars().take(64).collect()
    }
}

/// A secret that never prints itself, and is wiped from memory when dropped (clones too).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Takes `s` over: no copy of it is left behind.
    pub fn new(s: String) -> Secret {
        Secret(Zeroizing::new(s))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The Tailscale auth key: `TS_AUTHKEY` from the environment (given as `env`), else the
/// config's `authkey_file`, which must be a regular file its owner alone can read. Every
/// copy made on the way (the file's text, the untrimmed key) is wiped when dropped.
pub fn tailscale_authkey(cfg: &TailscaleConfig, env: Option<Secret>) -> Result<Option<Secret>> {
    if let Some(k) = env.filter(|k| !k.expose().trim().is_empty()) {
        return check_key(k.expose(), "TS_AUTHKEY").map(Some);
    }
    if cfg.authkey_file.is_empty() {
        return Ok(None);
    }
    let path = Path::new(&cfg.authkey_file);
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::Usage(format!("[tailscale] authkey_file {}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(Error::Usage(format!(
            "[tailscale] authkey_file {} is not a regular file",
            path.display()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(Error::Refused {
            message: format!(
                "[tailscale] authkey_file {} is readable by others (mode {:o}); refusing to use a leaked key",
                path.display(),
                meta.mode() & 0o777
            ),
            hint: format!("chmod 600 {}", path.display()),
        });
    }
    let text = std::fs::read_to_string(path)
        .map(Zeroizing::new)
        .map_err(|e| Error::Usage(format!("reading {}: {e}", path.display())))?;
    check_key(&text, "[tailscale] authkey_file").map(Some)
}

/// The key in `k`, trimmed, if it is one word.
fn check_key(k: &str, from: &str) -> Result<Secret> {
    let k = k.trim();
    if k.is_empty() || k.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::Usage(format!(
            "the Tailscale auth key from {from} is empty or not one word"
        )));
    }
    Ok(Secret::new(k.to_string()))
}

const REDACTED: &[u8] = b"[redacted]";

/// Writes to two places at once (the terminal and the log), replacing a secret in the stream
/// with `[redacted]` even when it arrives split across writes: the last `len - 1` bytes wait
/// until the next write or [`Redacting::finish`] shows they are not the secret's start.
#[derive(Debug)]
pub struct Redacting<A: Write, B: Write> {
    term: A,
    log: B,
    secret: Option<Vec<u8>>,
    held: Vec<u8>,
}

impl<A: Write, B: Write> Redacting<A, B> {
    pub fn new(term: A, log: B, secret: Option<&Secret>) -> Self {
        Redacting {
            term,
            log,
            secret: secret.map(|s| s.0.as_bytes().to_vec()),
            held: Vec::new(),
        }
    }

    fn emit(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        // The terminal may be gone (a closed pipe); the log still gets everything.
        let _ = self.term.write_all(bytes);
        self.log.write_all(bytes)
    }

    /// Writes what was held back; call once the stream has ended.
    pub fn finish(&mut self) -> std::io::Result<()> {
        let held = std::mem::take(&mut self.held);
        self.emit(&held)?;
        self.flush()
    }
}

impl<A: Write, B: Write> Write for Redacting<A, B> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let Some(secret) = self.secret.clone() else {
            self.emit(buf)?;
            return Ok(buf.len());
        };
        self.held.extend_from_slice(buf);
        loop {
            match find(&self.held, &secret) {
                Some(i) => {
                    let before: Vec<u8> = self.held.drain(..i + secret.len()).take(i).collect();
                    self.emit(&before)?;
                    self.emit(REDACTED)?;
                }
                None => {
                    let keep = (secret.len() - 1).min(self.held.len());
                    let out: Vec<u8> = self.held.drain(..self.held.len() - keep).collect();
                    self.emit(&out)?;
                    return Ok(buf.len());
                }
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = self.term.flush();
        self.log.flush()
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn builtins_resolve_and_paths_are_read() {
        let d = Script::resolve("docker").unwrap();
        assert!(d.needs_nesting() && !d.is_tailscale());
        assert!(String::from_utf8(d.body).unwrap().starts_with("#!/bin/sh"));
        assert!(Script::resolve("tailscale").unwrap().is_tailscale());

        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("my setup.sh");
        std::fs::write(&p, "#!/bin/sh\necho hi\n").unwrap();
        let s = Script::resolve(p.to_str().unwrap()).unwrap();
        assert_eq!(s.name, "my_setup.sh");
        assert!(s.builtin.is_none() && !s.needs_nesting());

        let err = Script::resolve("dokker").unwrap_err();
        assert!(err.is_bad_input());
        assert!(
            err.to_string().contains("docker, tailscale, claude"),
            "{err}"
        );
        assert!(Script::resolve(dir.path().to_str().unwrap())
            .unwrap_err()
            .is_bad_input());
    }

    #[test]
    fn scripts_run_by_their_interpreter_line() {
        let s = |body: &str| Script {
            name: "s".into(),
            builtin: None,
            path: None,
            body: body.as_bytes().to_vec(),
        };
        assert_eq!(
            s("#!/bin/bash\necho").command("/run/x"),
            ["/bin/bash", "/run/x"]
        );
        assert_eq!(
            s("#! /usr/bin/env python3 -u\n").command("/run/x"),
            ["/usr/bin/env", "python3 -u", "/run/x"]
        );
        assert_eq!(s("echo hi\n").command("/run/x"), ["/bin/sh", "/run/x"]);
        assert_eq!(s("#!\n").command("/run/x"), ["/bin/sh", "/run/x"]);
    }

    #[test]
    fn the_auth_key_comes_from_env_first_and_a_private_file_only() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("key");
        std::fs::write(&f, "tskey-auth-file\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        let cfg = TailscaleConfig {
            authkey_file: f.display().to_string(),
        };
        let from_file = tailscale_authkey(&cfg, None).unwrap().unwrap();
        assert_eq!(from_file.expose(), "tskey-auth-file");
        assert_eq!(format!("{from_file:?}"), "Secret(..)");
        let from_env = tailscale_authkey(&cfg, Some(Secret::new("tskey-env".into()))).unwrap();
        assert_eq!(from_env.unwrap().expose(), "tskey-env");

        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = tailscale_authkey(&cfg, None).unwrap_err();
        assert!(err.is_bad_input() && err.to_string().contains("readable by others"));
        assert!(!err.to_string().contains("tskey"));

        assert!(tailscale_authkey(&TailscaleConfig::default(), None)
            .unwrap()
            .is_none());
        assert!(
            tailscale_authkey(&TailscaleConfig::default(), Some(Secret::new("a b".into())))
                .is_err()
        );
    }

    #[test]
    fn the_secret_is_redacted_even_when_split_across_writes() {
        let secret = Secret::new("tskey-SECRET".into());
        let (mut term, mut log) = (Vec::new(), Vec::new());
        {
            let mut r = Redacting::new(&mut term, &mut log, Some(&secret));
            for chunk in [
                "key: tskey-SE",
                "CRET and ",
                "again tskey-SECRET",
                " end tsk",
            ] {
                r.write_all(chunk.as_bytes()).unwrap();
            }
            r.finish().unwrap();
        }
        let want = "key: [redacted] and again [redacted] end tsk";
        assert_eq!(String::from_utf8(term).unwrap(), want);
        assert_eq!(String::from_utf8(log).unwrap(), want);
    }
}
