//! `nox list` and `nox status`.

use std::process::ExitCode;

use comfy_table::{presets, Table};
use nox_core::instance::{Instance, InstanceState};
use nox_core::resources::format_bytes;
use nox_core::InstanceRef;

pub fn list(json: bool) -> anyhow::Result<ExitCode> {
    let ctx = super::context(&[])?;
    let listing = nox_ops::list::list(&ctx)?;
    // One backend down still lists the other's instances, with the reason on stderr.
    for e in &listing.unreachable {
        eprintln!("warning: {e}");
    }
    let all = listing.instances;
    if json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(ExitCode::SUCCESS);
    }
    if all.is_empty() {
        eprintln!("no instances; create one with `nox create NAME`");
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = Table::new();
    t.load_preset(presets::NOTHING);
    // The tailnet column appears once any instance has joined one; REMOTE and LOCATION once
    // any instance is on a remote.
    let tailnet = all.iter().any(|i| i.tailnet_ipv4.is_some());
    let remote = all.iter().any(|i| i.remote.is_some());
    let mut header = vec!["NAME"];
    if remote {
        header.extend(["REMOTE", "LOCATION"]);
    }
    header.extend(["BACKEND", "STATE", "IPV4"]);
    if tailnet {
        header.push("TAILNET");
    }
    header.extend(["CPUS", "MEMORY", "DISK", "NETWORK", "IMAGE"]);
    t.set_header(header);
    for i in &all {
        let mut row = vec![i.name.clone()];
        if remote {
            row.push(i.remote.clone().unwrap_or_else(|| "-".into()));
            row.push(i.location.clone().unwrap_or_else(|| "-".into()));
        }
        row.extend([backend_label(i), i.state.to_string(), local_ipv4(i)]);
        if tailnet {
            row.push(i.tailnet_ipv4.clone().unwrap_or_default());
        }
        if i.state == InstanceState::Unreachable {
            // Nothing is known of it but its name and where it is.
            row.extend(["-", "-", "-", "-", "-"].map(String::from));
        } else {
            row.extend([
                i.cpus.to_string(),
                format_bytes(i.memory_bytes),
                i.disk_bytes.map(format_bytes).unwrap_or_default(),
                i.network.clone(),
                i.image.clone(),
            ]);
        }
        t.add_row(row);
    }
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}

pub fn status(name: &InstanceRef, json: bool) -> anyhow::Result<ExitCode> {
    let ctx = super::context(&[])?;
    let i = nox_ops::list::status(&ctx, name)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&i)?);
        return Ok(ExitCode::SUCCESS);
    }
    let rows = [
        ("name", i.name.clone()),
        ("remote", i.remote.clone().unwrap_or_else(|| "-".into())),
        ("location", i.location.clone().unwrap_or_else(|| "-".into())),
        ("backend", backend_label(&i)),
        ("state", i.state.to_string()),
        ("ipv4", local_ipv4(&i)),
        (
            "tailnet",
            i.tailnet_ipv4.clone().unwrap_or_else(|| "-".into()),
        ),
        ("cpus", i.cpus.to_string()),
        ("memory", format_bytes(i.memory_bytes)),
        ("disk", i.disk_bytes.map(format_bytes).unwrap_or_default()),
        ("autostart", i.autostart.to_string()),
        ("image", i.image.clone()),
        ("network", i.network.clone()),
        (
            "ssh",
            i.ssh
                .as_ref()
                .map(|s| format!("{}@{} port {}", s.user, s.host, s.port))
                .unwrap_or_else(|| "-".into()),
        ),
        ("created", i.created_at.clone()),
    ];
    for (k, v) in rows {
        println!("{k:<10} {v}");
    }
    // One line per shared folder, as `nox mount add` takes it.
    for m in &i.mounts {
        println!("{:<10} {m}", "mount");
    }
    Ok(ExitCode::SUCCESS)
}

/// The instance's addresses other than its tailnet one (which has its own column).
fn local_ipv4(i: &Instance) -> String {
    i.ipv4
        .iter()
        .filter(|ip| Some(*ip) != i.tailnet_ipv4.as_ref())
        .cloned()
        .collect::<Vec<_>>()
        .join(",")
}

/// `lxc (privileged)` for containers that run as host root: visible wherever they are listed.
fn backend_label(i: &Instance) -> String {
    if i.privileged {
        format!("{} (privileged)", i.backend)
    } else {
        i.backend.to_string()
    }
}
