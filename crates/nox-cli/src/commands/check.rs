//! `nox check NAME`: the compatibility probe, run inside the instance.

use std::process::ExitCode;

use nox_core::backend::ExecIo;
use nox_core::compat::{self, Probe};
use nox_core::{Backend, Error, InstanceName};

pub fn run(name: &InstanceName, json: bool) -> anyhow::Result<ExitCode> {
    let config = super::load_config(&[])?.config;
    let backend = super::find(&config, name)?;
    let report = probe(&*backend, name)?;
    print(name, &report, json)?;
    Ok(ExitCode::SUCCESS)
}

/// Runs the probe in the instance and decides.
pub fn probe(backend: &dyn Backend, name: &InstanceName) -> Result<compat::Report, Error> {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    // The probe goes in on stdin: `sh -s` reads it, so nothing of it is a command line.
    let code = backend.exec_with(
        name,
        &["/bin/sh".into(), "-s".into()],
        ExecIo {
            stdin: compat::PROBE.as_bytes(),
            stdout: &mut out,
            stderr: &mut err,
        },
    )?;
    let text = String::from_utf8_lossy(&out);
    compat::report(name.as_str(), backend.kind(), &text).ok_or_else(|| {
        Error::failed(
            format!(
                "the check did not run in {name} (exit code {code}): {}",
                String::from_utf8_lossy(&err).trim()
            ),
            "nox check needs a POSIX shell and iproute2 in the guest",
        )
    })
}

fn print(name: &InstanceName, report: &compat::Report, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    let yn = |p: &Probe| match (&p.ok, &p.error) {
        (true, _) => "yes".to_string(),
        (false, Some(e)) => format!("no ({e})"),
        (false, None) => "no".to_string(),
    };
    let kind = match (report.backend, report.privileged) {
        (nox_core::BackendKind::Vm, _) => "VM".to_string(),
        (_, true) => "privileged container".to_string(),
        (_, false) => "unprivileged container".to_string(),
    };
    println!("{name}: {kind}, {} ({})", report.virt, report.arch);
    let rows = [
        ("kernel", report.kernel.clone()),
        ("TUN device", yn(&report.tun)),
        (
            "user namespace",
            if report.user_namespace.mapped {
                format!("mapped (uid {})", report.user_namespace.uid_map)
            } else {
                "none (ids are the host's or the VM's own)".into()
            },
        ),
        (
            "privileged",
            if report.privileged { "yes" } else { "no" }.into(),
        ),
        ("nesting: proc", yn(&report.docker.nesting_proc)),
        ("nesting: sysfs", yn(&report.docker.nesting_sys)),
        ("overlayfs", yn(&report.docker.overlayfs)),
        (
            "cgroups",
            format!(
                "{}, {}",
                report.docker.cgroup,
                if report.docker.cgroup_delegated.ok {
                    "delegated".to_string()
                } else {
                    format!("not delegated: {}", yn(&report.docker.cgroup_delegated))
                }
            ),
        ),
        (
            "default route",
            if report.default_route { "yes" } else { "no" }.into(),
        ),
    ];
    for (k, v) in rows {
        println!("  {k:<16} {v}");
    }
    println!(
        "tailscale: {} ({})",
        report.tailscale_verdict.verdict, report.tailscale_verdict.reason
    );
    println!(
        "docker:    {} ({})",
        report.docker_verdict.verdict, report.docker_verdict.reason
    );
    Ok(())
}
