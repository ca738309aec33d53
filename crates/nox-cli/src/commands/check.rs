//! `nox check NAME`: the compatibility probe, run inside the instance.

use std::process::ExitCode;

use nox_core::compat::{self, Probe};
use nox_core::InstanceRef;

pub fn run(name: &InstanceRef, json: bool) -> anyhow::Result<ExitCode> {
    let ctx = super::context(&[])?;
    let report = nox_ops::check::check(&ctx, name)?;
    print(name, &report, json)?;
    Ok(ExitCode::SUCCESS)
}

fn print(name: &InstanceRef, report: &compat::Report, json: bool) -> anyhow::Result<()> {
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
        (
            "overlayfs",
            format!(
                "{} (on {})",
                yn(&report.docker.overlayfs),
                report.docker.overlayfs_dir
            ),
        ),
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
