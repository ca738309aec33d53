//! Launch scripts: `nox run`, and `nox create --script` once the instance is ready.
//!
//! Each script is copied into the guest's /run (root only, tmpfs) through `exec_with`'s stdin,
//! run as root by its `#!` line (the guest's /run may be noexec) with its output streamed to
//! the terminal and to a 0600 log on the host, then removed. The Tailscale auth key travels
//! the same way into its own root-only file, so it is never on a command line, in a seed, or
//! in a log (it is redacted from the output too).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nox_core::backend::ExecIo;
use nox_core::compat::DockerVerdict;
use nox_core::host::HostFacts;
use nox_core::instance::InstanceState;
use nox_core::script::{self, Redacting, Script, Secret};
use nox_core::state::{Intent, Operation};
use nox_core::{Backend, BackendKind, Config, Error, InstanceRef, Result};

use crate::context::Context;
use crate::ui::Ui;

/// Writes stdin to the file named by $1, creating its directory, readable by root only. A
/// constant: the path arrives as a positional parameter, never as shell text.
const UPLOAD: &str = r#"umask 077; mkdir -p "${1%/*}" && cat >"$1" && chmod "$2" "$1""#;
const GUEST_SCRIPTS: &str = "/run/nox/scripts";
const GUEST_SECRETS: &str = "/run/nox/secrets";

/// Everything a set of scripts needs, checked before an instance is created or touched.
#[derive(Debug)]
pub struct Plan {
    pub scripts: Vec<Script>,
    pub authkey: Option<Secret>,
}

impl Plan {
    /// Resolves `args` (built-in names or paths); `ts_authkey` is `TS_AUTHKEY` from the
    /// environment, which wins over `[tailscale] authkey_file`.
    pub fn resolve(args: &[String], config: &Config, ts_authkey: Option<Secret>) -> Result<Plan> {
        let scripts = args
            .iter()
            .map(|a| Script::resolve(a))
            .collect::<Result<Vec<_>>>()?;
        let authkey = if scripts.iter().any(Script::is_tailscale) {
            script::tailscale_authkey(&config.tailscale, ts_authkey)?
        } else {
            None
        };
        Ok(Plan { scripts, authkey })
    }

    pub fn needs_nesting(&self) -> bool {
        self.scripts.iter().any(Script::needs_nesting)
    }

    pub fn is_empty(&self) -> bool {
        self.scripts.is_empty()
    }
}

/// `nox run NAME SCRIPT...`: the scripts in order in a running instance; Docker first gets
/// nesting (a container is restarted for it, and the user is told).
pub fn run(
    ctx: &Context,
    r: &InstanceRef,
    args: &[String],
    ts_authkey: Option<Secret>,
    ui: &dyn Ui,
) -> Result<()> {
    let plan = Plan::resolve(args, &ctx.config, ts_authkey)?;
    let x = crate::exclusive::lock(ctx, r, "run", ui)?;
    let backend = ctx.backends.find(r)?;
    let inst = backend.status(&r.name)?;
    if inst.state != InstanceState::Running {
        return Err(Error::not_running(&r.to_string()));
    }
    let user = inst.user.unwrap_or_default();
    let _intent = x.begin(&Intent::new(Operation::Run, backend.kind()))?;
    if plan.needs_nesting() {
        if let Some(note) = backend.enable_nesting(&r.name, ui.progress())? {
            ui.note(&format!("note: {note}"));
        }
    }
    run_plan(ctx, backend, r, &user, &plan, false, ui)
}

/// Runs the plan's scripts in order; the first failure stops the rest and is the error.
/// With `json`, their output goes to stderr so stdout stays one JSON document.
pub fn run_plan(
    ctx: &Context,
    backend: &dyn Backend,
    r: &InstanceRef,
    user: &str,
    plan: &Plan,
    json: bool,
    ui: &dyn Ui,
) -> Result<()> {
    let name = r;
    // Docker in a container: nesting is enabled by now; if the probe still finds what Docker
    // needs missing (no cgroup delegation, say), refuse with its reason instead of failing
    // halfway through an install.
    if plan.needs_nesting() && backend.kind() == BackendKind::Lxc {
        let report = crate::check::probe(backend, &r.name)?;
        if report.docker_verdict.verdict == DockerVerdict::No {
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
        run_one(ctx, backend, r, user, s, plan.authkey.as_ref(), json, ui)?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn run_one(
    ctx: &Context,
    backend: &dyn Backend,
    r: &InstanceRef,
    user: &str,
    s: &Script,
    authkey: Option<&Secret>,
    json: bool,
    ui: &dyn Ui,
) -> Result<()> {
    let name = r;
    let (log_path, log) = open_log(ctx, r, &s.name)?;
    ui.note(&format!(
        "==> {name}: running script {} as root (log: {})",
        s.name,
        log_path.display()
    ));
    let facts: &dyn HostFacts = &*ctx.host.facts;
    let id = facts.random_uuid()?.replace('-', "");
    let guest_script = format!("{GUEST_SCRIPTS}/{id}-{}", s.name);
    let guest_key = format!("{GUEST_SECRETS}/{id}-tailscale-authkey");
    let mut argv = vec![
        "/usr/bin/env".to_string(),
        format!("NOX_INSTANCE={name}"),
        format!("NOX_HOSTNAME={}", r.name),
        format!("NOX_USER={user}"),
    ];
    let key = authkey.filter(|_| s.is_tailscale());
    let result = (|| {
        upload(backend, r, &guest_script, &s.body, "700")?;
        if let Some(k) = key {
            upload(backend, r, &guest_key, k.expose().as_bytes(), "600")?;
            argv.push(format!("NOX_TAILSCALE_AUTHKEY_FILE={guest_key}"));
        }
        argv.extend(s.command(&guest_script));
        let term_err = log
            .try_clone()
            .map_err(|e| Error::io("opening the log", e))?;
        let mut out = Redacting::new(ui.output(json), log, key);
        let mut err = Redacting::new(ui.errors(), term_err, key);
        let code = backend.exec_with(
            &r.name,
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
        &r.name,
        &["/bin/rm".into(), "-f".into(), guest_script, guest_key],
        ExecIo {
            stdin: &[],
            stdout: &mut std::io::sink(),
            stderr: &mut std::io::sink(),
        },
    );
    match result? {
        0 => {
            ui.note(&format!("==> {name}: script {} done", s.name));
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

/// After a `nox run` (or create's scripts) was killed: the scripts and any secret it had put
/// in the guest go. Both directories live in the guest's /run, a tmpfs, so a stopped guest
/// has lost them already.
pub fn remove_guest_files(backend: &dyn Backend, r: &InstanceRef) -> Vec<String> {
    let running = backend
        .status(&r.name)
        .is_ok_and(|i| i.state == InstanceState::Running);
    if !running {
        return Vec::new();
    }
    let argv: Vec<String> = ["/bin/rm", "-rf", "--", GUEST_SCRIPTS, GUEST_SECRETS]
        .map(String::from)
        .to_vec();
    let removed = backend.exec_with(
        &r.name,
        &argv,
        ExecIo {
            stdin: &[],
            stdout: &mut std::io::sink(),
            stderr: &mut std::io::sink(),
        },
    );
    match removed {
        Ok(0) => vec![format!(
            "removed the launch scripts and secrets it left in the guest ({GUEST_SCRIPTS}, {GUEST_SECRETS})"
        )],
        Ok(code) => vec![format!(
            "could not remove {GUEST_SCRIPTS} and {GUEST_SECRETS} in the guest (rm exited with {code})"
        )],
        Err(e) => vec![format!(
            "could not remove {GUEST_SCRIPTS} and {GUEST_SECRETS} in the guest: {e}"
        )],
    }
}

/// Copies `bytes` into the guest at `path` (root only, mode `mode`) through stdin.
fn upload(
    backend: &dyn Backend,
    name: &InstanceRef,
    path: &str,
    bytes: &[u8],
    mode: &str,
) -> Result<()> {
    let mut err = Vec::new();
    let code = backend.exec_with(
        &name.name,
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

/// The directory of an instance's script logs.
fn instance_log_dir(ctx: &Context, name: &InstanceRef) -> Result<PathBuf> {
    ctx.log_dir
        .as_deref()
        .map(|d| d.join(name.to_string()))
        .ok_or_else(|| {
            Error::Usage(
                "neither XDG_STATE_HOME nor HOME is set: nowhere to keep script logs".into(),
            )
        })
}

/// A new 0600 log in a 0700 directory: `~/.local/state/nox/logs/NAME/SCRIPT-TIME.log`.
fn open_log(ctx: &Context, name: &InstanceRef, script: &str) -> Result<(PathBuf, File)> {
    let dir = instance_log_dir(ctx, name)?;
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
pub fn remove_logs(ctx: &Context, name: &InstanceRef) {
    if let Ok(dir) = instance_log_dir(ctx, name) {
        if Path::new(&dir).exists() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{context, FakeBackend, FakeUi};

    #[test]
    fn a_script_is_uploaded_on_stdin_run_by_its_interpreter_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let vm = FakeBackend::new(BackendKind::Vm);
        vm.add_instance("web");
        let ctx = context(dir.path(), vec![Box::new(vm.clone())]);
        let script = dir.path().join("setup.sh");
        std::fs::write(&script, "#!/bin/bash\necho hi\n").unwrap();
        let ui = FakeUi::default();
        run(
            &ctx,
            &"web".parse().unwrap(),
            &[script.display().to_string()],
            None,
            &ui,
        )
        .unwrap();
        let execs = vm.execs();
        // Upload (body on stdin, path as a positional parameter), run, clean up.
        assert_eq!(execs.len(), 3, "{execs:?}");
        assert_eq!(execs[0].0[..3], ["/bin/sh", "-c", UPLOAD]);
        assert_eq!(execs[0].1, b"#!/bin/bash\necho hi\n");
        let guest = &execs[0].0[4];
        assert!(guest.starts_with("/run/nox/scripts/") && guest.ends_with("-setup.sh"));
        assert_eq!(execs[1].0.last().unwrap(), guest);
        assert!(execs[1].0.contains(&"/bin/bash".to_string()));
        assert_eq!(execs[2].0[..2], ["/bin/rm", "-f"]);
        // The log is private.
        let logs: Vec<_> = std::fs::read_dir(ctx.log_dir.as_ref().unwrap().join("web"))
            .unwrap()
            .flatten()
            .collect();
        assert_eq!(logs.len(), 1);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            logs[0].metadata().unwrap().permissions().mode() & 0o777,
            0o600
        );
        remove_logs(&ctx, &"web".parse().unwrap());
        assert!(!ctx.log_dir.as_ref().unwrap().join("web").exists());
    }

    #[test]
    fn a_failing_script_names_its_exit_code_and_log_and_stops_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let vm = FakeBackend::new(BackendKind::Vm);
        vm.add_instance("web");
        vm.exit_code_for("/bin/sh", 0);
        vm.exit_code_for("/usr/bin/env", 7);
        let ctx = context(dir.path(), vec![Box::new(vm.clone())]);
        let e = run(
            &ctx,
            &"web".parse().unwrap(),
            &["docker".into(), "claude".into()],
            None,
            &FakeUi::default(),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("script docker failed in web with exit code 7"),
            "{e}"
        );
        assert!(e.hint().unwrap().contains("full log:"));
        // docker was uploaded and run, then cleaned up; claude never ran.
        assert_eq!(vm.execs().len(), 3);
    }

    #[test]
    fn the_tailscale_key_goes_in_as_a_file_never_as_an_argument() {
        let dir = tempfile::tempdir().unwrap();
        let vm = FakeBackend::new(BackendKind::Vm);
        vm.add_instance("web");
        let ctx = context(dir.path(), vec![Box::new(vm.clone())]);
        run(
            &ctx,
            &"web".parse().unwrap(),
            &["tailscale".into()],
            Some(Secret::new("tskey-auth-SECRET".into())),
            &FakeUi::default(),
        )
        .unwrap();
        let execs = vm.execs();
        assert_eq!(execs[1].1, b"tskey-auth-SECRET");
        assert!(execs[1].0[4].starts_with("/run/nox/secrets/"));
        for (argv, _) in &execs {
            assert!(
                !argv.iter().any(|a| a.contains("tskey-auth-SECRET")),
                "{argv:?}"
            );
        }
        assert!(execs[2]
            .0
            .iter()
            .any(|a| a.starts_with("NOX_TAILSCALE_AUTHKEY_FILE=/run/nox/secrets/")));
    }

    #[test]
    fn a_stopped_instance_or_a_bad_script_is_refused_before_anything_runs() {
        let dir = tempfile::tempdir().unwrap();
        let vm = FakeBackend::new(BackendKind::Vm);
        vm.add_instance("web");
        vm.set_state("web", InstanceState::Stopped);
        let ctx = context(dir.path(), vec![Box::new(vm.clone())]);
        let e = run(
            &ctx,
            &"web".parse().unwrap(),
            &["docker".into()],
            None,
            &FakeUi::default(),
        )
        .unwrap_err();
        assert!(
            e.is_bad_input() && e.to_string().contains("not running"),
            "{e}"
        );
        let e = run(
            &ctx,
            &"web".parse().unwrap(),
            &["dokker".into()],
            None,
            &FakeUi::default(),
        )
        .unwrap_err();
        assert!(e.is_bad_input());
        assert!(vm.execs().is_empty());
    }
}
