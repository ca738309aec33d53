//! When an instance on a remote is ready, and making its user where the image has no
//! cloud-init: the same rules as local containers (systemd `running` or `degraded`,
//! cloud-init's result), asked through Incus's exec API.

use std::time::{Duration, Instant};

use nox_core::instance::InstanceSpec;
use nox_core::wait::wait_until;
use nox_core::{interrupt, Error, InstanceName, Progress, Result};

use super::{IncusBackend, PROVISIONED_KEY};

const POLL: Duration = Duration::from_millis(250);

/// systemd's state once boot is over (`$1` seconds at most), then whether the image has
/// cloud-init: both in one round trip. A constant; the limit is a positional parameter.
const BOOTED: &str = r#"s=$(timeout "$1" systemctl is-system-running --wait); rc=$?
echo "$s"
if [ -x /usr/bin/cloud-init ]; then echo cloud-init; fi
exit $rc"#;

/// Waits until systemd in `name` has finished booting (and cloud-init, where there is one);
/// returns whether the image has cloud-init.
pub fn wait(
    b: &IncusBackend,
    name: &InstanceName,
    limit: Duration,
    progress: &dyn Progress,
) -> Result<bool> {
    let start = Instant::now();
    let q = b.qualified(name);
    progress.step(&format!("booting {q}"));
    // The first exec can come before the container's init is up; exec then fails at once.
    let booted = wait_until(limit, POLL, |_| {
        interrupt::check()?;
        let left = limit
            .saturating_sub(start.elapsed())
            .as_secs()
            .max(1)
            .to_string();
        let mut out = Vec::new();
        let code = b.exec_io(
            name,
            &[
                "/bin/sh".into(),
                "-c".into(),
                BOOTED.into(),
                "nox-ready".into(),
                left,
            ],
            crate::Stdin::Null,
            &mut out,
            &mut std::io::sink(),
        );
        let text = String::from_utf8_lossy(&out);
        let mut lines = text.lines().map(str::trim);
        let state = lines.next().unwrap_or("").to_string();
        let cloud_init = lines.any(|l| l == "cloud-init");
        match (code, state.as_str()) {
            (Ok(124), _) => Err(Error::timed_out(&q, "systemd to finish booting", limit)),
            // Asked before systemd is init (an exec right after start) it answers nothing
            // or `offline`: ask again.
            (Ok(_), "running" | "degraded" | "maintenance" | "stopping") => {
                Ok(Some((state, cloud_init)))
            }
            (Ok(_), _) => Ok(None),
            // Before init is up an exec can fail; a remote or member that does not answer
            // will not start answering in the meantime.
            (Err(Error::Backend(_)), _) if start.elapsed() < limit => Ok(None),
            (Err(e), _) => Err(e),
        }
    });
    progress.done();
    let (state, cloud_init) =
        booted?.ok_or_else(|| Error::timed_out(&q, "systemd to start", limit))?;
    match state.as_str() {
        "running" => {}
        "degraded" => progress.warn(&format!(
            "{q} booted degraded; `nox exec {q} -- systemctl --failed` lists the failed units"
        )),
        other => {
            return Err(Error::failed(
                format!("systemd in {q} did not finish booting: {other:?}"),
                format!("`nox exec {q} -- journalctl -b` shows the boot"),
            ))
        }
    }
    if cloud_init {
        progress.step(&format!("waiting for cloud-init in {q}"));
        let left = limit.saturating_sub(start.elapsed());
        let result = wait_until(left, POLL, |_| {
            interrupt::check()?;
            Ok::<_, Error>(
                b.run(
                    name,
                    &["head", "-c", "1048576", "/run/cloud-init/result.json"],
                    None,
                )
                .ok(),
            )
        });
        progress.done();
        let result = result?.ok_or_else(|| Error::timed_out(&q, "cloud-init to finish", limit))?;
        if let Some(errors) = nox_core::cloud_init::result_errors(&result) {
            return Err(Error::failed(
                format!("cloud-init reported errors in {q}: {errors}"),
                format!("`nox exec {q} -- cloud-init status --long` says more"),
            ));
        }
    }
    Ok(cloud_init)
}

/// For an image without cloud-init (`cloud_init` as [`wait`] found): the user, keys and sudo
/// rule, once (recorded in the instance's config, so a restart does not do it again).
pub fn provision(
    b: &IncusBackend,
    spec: &InstanceSpec,
    cloud_init: bool,
    progress: &dyn Progress,
) -> Result<()> {
    let name = &spec.name;
    if cloud_init {
        return Ok(());
    }
    let i = b.ours(name)?;
    if i.config.get(PROVISIONED_KEY).map(String::as_str) == Some("true") {
        return Ok(());
    }
    progress.step(&format!(
        "creating user {} in {}",
        spec.user,
        b.qualified(name)
    ));
    // Incus named the container's kernel, but systemd took the image's /etc/hostname at
    // boot: the name is set here too.
    let hostname = spec.name.to_string();
    for step in nox_core::provision::user_steps(&spec.user, &spec.ssh_keys, Some(&hostname)) {
        let argv: Vec<&str> = step.argv.iter().map(String::as_str).collect();
        b.run(name, &argv, step.stdin.as_deref())?;
    }
    b.set_config(name, &[(PROVISIONED_KEY, "true".into())])?;
    progress.done();
    Ok(())
}
