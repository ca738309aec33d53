//! `nox doctor`: every backend's host checks, live, with a fix for each problem.

use std::process::ExitCode;

use nox_core::CheckStatus;

pub fn run(json: bool) -> anyhow::Result<ExitCode> {
    let ctx = super::context(&[])?;
    let report = nox_ops::doctor::doctor(&ctx);
    let checks = &report.checks;
    let default = report.default_backend;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let id_width = checks.iter().map(|c| c.id.len()).max().unwrap_or(0);
        for c in checks {
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
        for (kind, ready) in &report.ready {
            let marker = if *kind == default { " (default)" } else { "" };
            let verdict = if *ready { "ready" } else { "NOT ready" };
            println!("{kind}{marker}: {verdict}");
        }
    }
    Ok(if report.default_ready() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
