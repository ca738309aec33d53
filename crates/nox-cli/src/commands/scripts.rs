//! Launch scripts: `nox run`, and `nox create --script` once the instance is ready.
//!
//! Each script is copied into the guest's /run (root only, tmpfs) through exec_with's stdin,
//! run as root with its output streamed to the terminal and to a 0600 log on the host, then
//! removed. The Tailscale auth key travels the same way into its own root-only file, so it is
//! never on a command line, in a seed, or in a log (it is redacted from the output too).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;
use std::process::ExitCode;

use nox_core::backend::ExecIo;
use nox_core::script::{self, Redacting, Script, Secret};
use nox_core::{Backend, Config, Error, InstanceName};

use crate::progress::Terminal;

/// Writes stdin to the file named by $1, creating its directory, readable by root only. A
/// constant: the path arrives as a positional parameter, never as shell text.
const UPLOAD: &str = r#"umask 077; mkdir -p "${1%/*}" && cat >"$1" && chmod "$2" "$1""#;

/// Everything a set of scripts needs, checked before an instance is created or touched.
#[derive(Debug)]
pub struct Plan {
    pub scripts: Vec<Script>,
    pub authkey: Option<Secret>,
}

impl Plan {
    pub fn resolve(args: &[String], config: &Config) -> Result<Plan, Error> {
        let scripts = args
            .iter()
            .map(|a| Script::resolve(a))
            .collect::<Result<Vec<_>, _>>()?;
        let authkey = if scripts.iter().any(Script::is_tailscale) {
            script::tailscale_authkey(&config.tailscale, std::env::var("TS_AUTHKEY").ok())?
        } else {
            None
        };
        Ok(Plan { scripts, authkey })
    }

    pub fn needs_nesting(&self) -> bool {
        self.scripts.iter().any(Script::needs_nesting)
    }
}

/// `nox run NAME SCRIPT...`
pub fn run(name: &InstanceName, args: &[String]) -> anyhow::Result<ExitCode> {
    let config = super::load_config(&[])?.config;
    let plan = Plan::resolve(args, &config)?;
    let backend = super::find(&config, name)?;
    let user = backend_user(&*backend, name)?;
    if plan.needs_nesting() {
        if let Some(note) = backend.enable_nesting(name, &Terminal::default())? {
            eprintln!("note: {note}");
        }
    }
    run_plan(&*backend, name, &user, &plan, false)?;
    Ok(ExitCode::SUCCESS)
}

fn backend_user(backend: &dyn Backend, name: &InstanceName) -> Result<String, Error> {
    let inst = backend.status(name)?;
    if inst.state != nox_core::instance::InstanceState::Running {
        return Err(Error::not_running(name.as_str()));
    }
    Ok(inst.ssh.map(|s| s.user).unwrap_or_default())
}

/// Runs the plan's scripts in order; the first failure stops the rest and is the error.
/// With `json`, their output goes to stderr so stdout stays one JSON document.
pub fn run_plan(
    backend: &dyn Backend,
    name: &InstanceName,
    user: &str,
    plan: &Plan,
    json: bool,
) -> Result<(), Error> {
    // Docker in a container: nesting is enabled by now; if the probe still finds what Docker
    // needs missing (no cgroup delegation, say), refuse with its reason instead of failing
    // halfway through an install.
    if plan.needs_nesting() && backend.kind() == nox_core::BackendKind::Lxc {
        let report = super::check::probe(backend, name)?;
        if report.docker_verdict.verdict == nox_core::compat::DockerVerdict::No {
            return Err(Error::failed(
                format!(
                    "refusing to install Docker in container {name}: {}",
                    report.docker_verdict.reason
                ),
                format!("`nox check {name}` shows the details; a VM (--backend vm) runs Docker anywhere"),
            ));
        }
    }
    for s in &plan.scripts {
        run_one(backend, name, user, s, plan.authkey.as_ref(), json)?;
    }
    Ok(())
}

fn run_one(
    backend: &dyn Backend,
    name: &InstanceName,
    user: &str,
    s: &Script,
    authkey: Option<&Secret>,
    json: bool,
) -> Result<(), Error> {
    let (log_path, log) = open_log(name, &s.name)?;
    eprintln!(
        "==> {name}: running script {} as root (log: {})",
        s.name,
        log_path.display()
    );
    let id = uuid::Uuid::new_v4().simple().to_string();
    let guest_script = format!("/run/nox/scripts/{id}-{}", s.name);
    let guest_key = format!("/run/nox/secrets/{id}-tailscale-authkey");
    let mut argv = vec![
        "/usr/bin/env".to_string(),
        format!("NOX_INSTANCE={name}"),
        format!("NOX_HOSTNAME={name}"),
        format!("NOX_USER={user}"),
    ];
    let key = authkey.filter(|_| s.is_tailscale());
    let result = (|| {
        upload(backend, name, &guest_script, &s.body, "700")?;
        if let Some(k) = key {
            upload(backend, name, &guest_key, k.expose().as_bytes(), "600")?;
            argv.push(format!("NOX_TAILSCALE_AUTHKEY_FILE={guest_key}"));
        }
        argv.extend(s.command(&guest_script));
        let term_err = log
            .try_clone()
            .map_err(|e| Error::io("opening the log", e))?;
        let term_out: Box<dyn Write + Send> = if json {
            Box::new(std::io::stderr())
        } else {
            Box::new(std::io::stdout())
        };
        let mut out = Redacting::new(term_out, log, key);
        let mut err = Redacting::new(std::io::stderr(), term_err, key);
        let code = backend.exec_with(
            name,
            &argv,
            ExecIo {
                stdin: &[],
                stdout: &mut out,
                stderr: &mut err,
            },
        );
        let _ = out.finish();
        let _ = err.finish();
        code
    })();
    // The script and the key leave the guest whatever happened.
    let _ = backend.exec_with(
        name,
        &["/bin/rm".into(), "-f".into(), guest_script, guest_key],
        ExecIo {
            stdin: &[],
            stdout: &mut std::io::sink(),
            stderr: &mut std::io::sink(),
        },
    );
    match result? {
        0 => {
            eprintln!("==> {name}: script {} done", s.name);
            Ok(())
        }
        code => Err(Error::failed(
            format!("script {} failed in {name} with exit code {code}", s.name),
            format!(
                "full log: {}; {name} is kept for inspection (`nox ssh {name}`)",
                log_path.display()
            ),
        )),
    }
}

/// Copies `bytes` into the guest at `path` (root only, mode `mode`) through stdin.
fn upload(
    backend: &dyn Backend,
    name: &InstanceName,
    path: &str,
    bytes: &[u8],
    mode: &str,
) -> Result<(), Error> {
    let mut err = Vec::new();
    let code = backend.exec_with(
        name,
        &[
            "/bin/sh".into(),
            "-c".into(),
            UPLOAD.into(),
            "nox-upload".into(),
            path.into(),
            mode.into(),
        ],
        ExecIo {
            stdin: bytes,
            stdout: &mut std::io::sink(),
            stderr: &mut err,
        },
    )?;
    if code != 0 {
        return Err(Error::failed(
            format!(
                "could not copy a launch script into {name}: {}",
                String::from_utf8_lossy(&err).trim()
            ),
            format!("is /run writable in {name}? `nox exec {name} -- df -h /run`"),
        ));
    }
    Ok(())
}

/// A new 0600 log in a 0700 directory: `~/.local/state/nox/logs/NAME/SCRIPT-TIME.log`.
fn open_log(name: &InstanceName, script: &str) -> Result<(PathBuf, File), Error> {
    let dir = script::log_dir(name.as_str()).ok_or_else(|| {
        Error::Usage("neither XDG_STATE_HOME nor HOME is set: nowhere to keep script logs".into())
    })?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(':', "");
    let path = dir.join(format!("{script}-{stamp}.log"));
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    Ok((path, file))
}

/// Removes an instance's script logs (after `nox delete`).
pub fn remove_logs(name: &InstanceName) {
    if let Some(dir) = script::log_dir(name.as_str()) {
        let _ = std::fs::remove_dir_all(dir);
    }
}
