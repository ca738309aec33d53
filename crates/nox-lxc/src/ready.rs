//! A container is ready when systemd inside says `running` (and cloud-init, where the image
//! has it, is done). systemctl can only answer once systemd has its socket, which we watch for
//! from the host through /proc, polling every 20 ms: no fixed sleeps.

use std::path::Path;
use std::time::{Duration, Instant};

use nox_core::instance::InstanceSpec;
use nox_core::{interrupt, Error, Progress};

use crate::liblxc::Container;

const POLL: Duration = Duration::from_millis(20);

fn timeout(name: &str, what: &str, t: Duration) -> Error {
    Error::failed(
        format!("timed out after {}s waiting for {what} in {name}", t.as_secs()),
        format!("the container is left running: `nox console {name}` shows it, `nox delete --force {name}` removes it"),
    )
}

pub fn wait(c: &Container, limit: Duration, progress: &dyn Progress) -> Result<(), Error> {
    let name = c.name().to_string();
    let start = Instant::now();
    progress.step(&format!("booting {name}"));
    loop {
        if let Some(pid) = c.init_pid() {
            if Path::new(&format!("/proc/{pid}/root/run/systemd/private")).exists() {
                break;
            }
        }
        if start.elapsed() > limit {
            progress.done();
            return Err(timeout(&name, "systemd to start", limit));
        }
        interrupt::check()?;
        std::thread::sleep(POLL);
    }
    progress.done();
    // Answers as soon as boot is over; prints the final state.
    let out = c
        .attach_run(&["systemctl", "is-system-running", "--wait"])
        .map_err(|e| Error::Backend(e.to_string()))?;
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
    // cloud-init's last stage is part of boot, so it has written result.json by now; read it
    // from the host, without starting Python in the container.
    let root = format!("/proc/{}/root", c.init_pid().unwrap_or(0));
    if Path::new(&root).join("usr/bin/cloud-init").exists() {
        let result = Path::new(&root).join("run/cloud-init/result.json");
        while !result.exists() {
            if start.elapsed() > limit {
                return Err(timeout(&name, "cloud-init to finish", limit));
            }
            interrupt::check()?;
            std::thread::sleep(POLL);
        }
        let text =
            std::fs::read(&result).map_err(|e| Error::io("reading cloud-init's result", e))?;
        if let Some(errors) = nox_core::cloud_init::result_errors(&text) {
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
        Error::Backend(format!(
            "provisioning {}: `{}` failed (exit {code}): {}",
            c.name(),
            argv.join(" "),
            String::from_utf8_lossy(stderr).trim()
        ))
    };
    let run = |argv: &[&str]| -> Result<(), Error> {
        let out = c
            .attach_run(argv)
            .map_err(|e| Error::Backend(e.to_string()))?;
        if out.code != 0 {
            return Err(fail(argv, out.code, &out.stderr));
        }
        Ok(())
    };
    let install = |path: &str, mode: &str, owner: &str, content: &str| -> Result<(), Error> {
        use std::io::{Seek, Write};
        use std::os::fd::AsRawFd;
        let mut f = tempfile::tempfile().map_err(|e| Error::io("creating a temp file", e))?;
        f.write_all(content.as_bytes())
            .and_then(|_| f.rewind())
            .map_err(|e| Error::io("writing a temp file", e))?;
        let argv = [
            "install",
            "-m",
            mode,
            "-o",
            owner,
            "-g",
            owner,
            "/dev/stdin",
            path,
        ];
        let code = c
            .attach_with_fds(&argv, f.as_raw_fd(), 1, 2)
            .map_err(|e| Error::Backend(e.to_string()))?;
        if code != 0 {
            return Err(fail(&argv, code, b""));
        }
        Ok(())
    };
    run(&[
        "useradd",
        "--create-home",
        "--shell",
        "/bin/bash",
        "--groups",
        "sudo",
        user,
    ])?;
    let home = format!("/home/{user}");
    run(&[
        "install",
        "-d",
        "-m",
        "0700",
        "-o",
        user,
        "-g",
        user,
        &format!("{home}/.ssh"),
    ])?;
    install(
        &format!("{home}/.ssh/authorized_keys"),
        "0600",
        user,
        &(spec.ssh_keys.join("\n") + "\n"),
    )?;
    install(
        "/etc/sudoers.d/90-nox",
        "0440",
        "root",
        &format!("{user} ALL=(ALL) NOPASSWD:ALL\n"),
    )?;
    Ok(())
}
