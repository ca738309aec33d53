//! `nox create`.

use std::process::ExitCode;

use nox_core::config::Override;
use nox_core::instance::{Instance, NetworkSpec};
use nox_core::BackendKind;
use nox_ops::create::CreateRequest;

use crate::cli::{CreateArgs, ResourceArgs};
use crate::ui::TerminalUi;

/// `--cpus --memory --disk --network` as config overrides: the shape of a VM, which
/// `nox image warm` takes the same way.
pub fn shape_overrides(r: &ResourceArgs, network: Option<&NetworkSpec>) -> Vec<Override> {
    let mut o = Vec::new();
    let mut set = |key, value: toml::Value, flag| o.push(Override { key, value, flag });
    if let Some(v) = &r.cpus {
        set("defaults.cpus", v.to_string().into(), "--cpus");
    }
    if let Some(v) = &r.memory {
        set("defaults.memory", v.to_string().into(), "--memory");
    }
    if let Some(v) = &r.disk {
        set("defaults.disk", v.to_string().into(), "--disk");
    }
    if let Some(v) = network {
        set("defaults.network", v.to_string().into(), "--network");
    }
    o
}

/// Flags become the highest config layer, so `[defaults]` and flags resolve in one place.
fn overrides(a: &CreateArgs) -> Vec<Override> {
    let mut o = shape_overrides(&a.resources, a.network.as_ref());
    let mut set = |key, value: toml::Value, flag| o.push(Override { key, value, flag });
    if let Some(b) = a.backend {
        set(
            "defaults.backend",
            BackendKind::from(b).as_str().into(),
            "--backend",
        );
    }
    if let Some(v) = &a.image {
        set("defaults.image", v.clone().into(), "--image");
    }
    if !a.ssh_keys.is_empty() {
        let keys = a
            .ssh_keys
            .iter()
            .cloned()
            .map(toml::Value::from)
            .collect::<Vec<_>>();
        set("defaults.ssh_keys", toml::Value::Array(keys), "--ssh-key");
    }
    if let Some(v) = &a.user {
        set("defaults.user", v.clone().into(), "--user");
    }
    if a.no_autostart {
        set("defaults.autostart", false.into(), "--no-autostart");
    }
    o
}

pub fn run(a: CreateArgs) -> anyhow::Result<ExitCode> {
    let ctx = super::context(&overrides(&a))?;
    let request = CreateRequest {
        name: Some(a.name.clone()),
        remote: a.remote.clone(),
        target: a.target.clone(),
        backend: a.backend.map(Into::into),
        privileged: a.privileged,
        yes: a.yes,
        no_tun: a.no_tun,
        nesting: a.nesting,
        disk_given: a.resources.disk.is_some(),
        scripts: a.scripts.clone(),
        ts_authkey: super::ts_authkey(),
        start: !a.no_start,
        wait: a.wait.wait_for(),
        json: a.json,
        mounts: a.mounts.clone(),
        cold_boot: a.cold_boot,
    };
    let ui = TerminalUi::default();
    let mut printed = Ok(());
    nox_ops::create::create(&ctx, &request, &ui, &mut |instance| {
        printed = print_created(instance, a.json);
    })?;
    printed?;
    Ok(ExitCode::SUCCESS)
}

/// Said as soon as the instance exists, before any launch script runs.
fn print_created(instance: &Instance, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(instance)?);
        return Ok(());
    }
    println!(
        "created {} ({}, {})",
        instance.name, instance.backend, instance.state
    );
    if let Some(ssh) = &instance.ssh {
        println!(
            "  ssh: nox ssh {} ({}@{}:{})",
            instance.name, ssh.user, ssh.host, ssh.port
        );
    }
    Ok(())
}
