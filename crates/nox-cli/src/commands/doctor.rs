//! `nox doctor`: every backend's host checks, live, with a fix for each problem.

use std::process::ExitCode;

use nox_core::{Backend, BackendKind, Check, CheckStatus};
use nox_libvirt::LibvirtBackend;
use nox_lxc::LxcBackend;

pub fn run(json: bool) -> anyhow::Result<ExitCode> {
    let config = super::load_config(&[])?.config;
    let default = config.defaults.backend;
    let mut checks: Vec<Check> = LibvirtBackend::new(config.clone()).host_checks();
    checks.extend(LxcBackend::new(config.clone()).host_checks());
    let ready = |kind: BackendKind| !checks.iter().any(|c| c.blocks(kind));

    if json {
        let doc = serde_json::json!({
            "default_backend": default,
            "ready": { "vm": ready(BackendKind::Vm), "lxc": ready(BackendKind::Lxc) },
            "checks": checks,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        let id_width = checks.iter().map(|c| c.id.len()).max().unwrap_or(0);
        for c in &checks {
            let status = match c.status {
                CheckStatus::Pass => "PASS",
                CheckStatus::Warn => "WARN",
                CheckStatus::Fail => "FAIL",
            };
            let backend = c.backend.map(|b| b.as_str()).unwrap_or("all");
            println!("{status}  {backend:<3}  {:<id_width$}  {}", c.id, c.detail);
            if let Some(hint) = &c.hint {
                println!("      {:<3}  {:<id_width$}  fix: {hint}", "", "");
            }
        }
        println!();
        for kind in BackendKind::ALL {
            let marker = if kind == default { " (default)" } else { "" };
            let verdict = if ready(kind) { "ready" } else { "NOT ready" };
            println!("{kind}{marker}: {verdict}");
        }
    }
    Ok(if ready(default) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
