//! A container is ready when systemd inside says `running` (and cloud-init, where the image
//! has it, is done). systemctl can only answer once systemd has its socket, which we watch for
//! from the host through /proc, polling every 20 ms: no fixed sleeps.

use std::path::Path;
use std::time::{Duration, Instant};

use nox_core::instance::InstanceSpec;
use nox_core::wait::wait_until;
use nox_core::{interrupt, Error, Progress};

use crate::liblxc::Container;

const POLL: Duration = Duration::from_millis(20);

/// `cloud_init`: whether the image has cloud-init (from nox's record, not from the container's
/// filesystem, which the container controls).
pub fn wait(
    c: &Container,
    limit: Duration,
    cloud_init: bool,
    progress: &dyn Progress,
) -> Result<(), Error> {
    let name = c.name().to_string();
    let start = Instant::now();
    progress.step(&format!("booting {name}"));
    let started = wait_until(limit, POLL, |_| {
        let up = c.init_pid().is_some_and(|pid| {
            Path::new(&format!("/proc/{pid}/root/run/systemd/private")).exists()
        });
        interrupt::check().map(|_| up.then_some(()))
    });
    progress.done();
    started?.ok_or_else(|| Error::timed_out(&name, "systemd to start", limit))?;
    // Answers as soon as boot is over and prints the final state; `timeout` bounds it by
    // what is left of --timeout, so a unit stuck activating cannot hang create.
    let left = limit
        .saturating_sub(start.elapsed())
        .as_secs()
        .max(1)
        .to_string();
    let out = c
        .attach_run(&["timeout", &left, "systemctl", "is-system-running", "--wait"])
        .map_err(Error::from)?;
    if out.code == 124 {
        return Err(Error::timed_out(&name, "systemd to finish booting", limit));
    }
    let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
    match state.as_str() {
        "running" => {}
        "degraded" => {
            let failed = c
                .attach_run(&["systemctl", "--failed", "--no-legend", "--plain"])
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .split_whitespace()
                        .next()
                        .unwrap_or("")
                        .to_string()
                })
                .unwrap_or_default();
            progress.warn(&format!(
                "{name} booted degraded (first failed unit: {failed}); `nox exec {name} -- systemctl --failed` lists them"
            ));
        }
        other => {
            return Err(Error::failed(
                format!("systemd in {name} did not finish booting: {other:?}"),
                format!("`nox console {name}` shows the boot"),
            ))
        }
    }
    // cloud-init's last stage is part of boot, so it has written result.json by now. Read it
    // as the container's root (paths inside are the container's to point anywhere), capped,
    // and with no Python started.
    if cloud_init {
        let result = wait_until(limit.saturating_sub(start.elapsed()), POLL, |_| {
            let out = c
                .attach_run(&["head", "-c", "1048576", "/run/cloud-init/result.json"])
                .map_err(Error::from)?;
            interrupt::check()?;
            Ok::<_, Error>((out.code == 0).then_some(out.stdout))
        })?
        .ok_or_else(|| Error::timed_out(&name, "cloud-init to finish", limit))?;
        if let Some(errors) = nox_core::cloud_init::result_errors(&result) {
            return Err(Error::failed(
                format!("cloud-init reported errors in {name}: {errors}"),
                format!("`nox exec {name} -- cloud-init status --long` says more"),
            ));
        }
    }
    Ok(())
}

/// For images without cloud-init: the user, sudo and keys, applied through attach with argv
/// only. Files go in through `install` reading stdin, so they are created by the container's
/// own root with the right owner (a write from the host would belong to nobody inside).
pub fn provision_directly(c: &Container, spec: &InstanceSpec) -> Result<(), Error> {
    let user = spec.user.as_str();
    let fail = |argv: &[&str], code: i32, stderr: &[u8]| {
        Error::failure(format!(
            "provisioning {}: `{}` failed (exit {code}): {}",
            c.name(),
            argv.join(" "),
            String::from_utf8_lossy(stderr).trim()
        ))
    };
    for step in nox_core::provision::user_steps(user, &spec.ssh_keys, None) {
        let argv: Vec<&str> = step.argv.iter().map(String::as_str).collect();
        match &step.stdin {
            None => {
                let out = c.attach_run(&argv).map_err(Error::from)?;
                if out.code != 0 {
                    return Err(fail(&argv, out.code, &out.stderr));
                }
            }
            Some(content) => {
                use std::io::{Seek, Write};
                use std::os::fd::AsRawFd;
                let mut f =
                    tempfile::tempfile().map_err(|e| Error::io("creating a temp file", e))?;
                f.write_all(content.as_bytes())
                    .and_then(|_| f.rewind())
                    .map_err(|e| Error::io("writing a temp file", e))?;
                let code = c
                    .attach_with_fds(&argv, f.as_raw_fd(), 1, 2)
                    .map_err(Error::from)?;
                if code != 0 {
                    return Err(fail(&argv, code, b""));
                }
            }
        }
    }
    Ok(())
}
