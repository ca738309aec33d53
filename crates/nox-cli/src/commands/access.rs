//! `nox exec|ssh|console|passwd`.

use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

use nox_core::backend::Handoff;
use nox_core::{Error, InstanceName};

pub fn exec(name: &InstanceName, argv: &[String]) -> anyhow::Result<ExitCode> {
    let config = super::load_config(&[])?.config;
    let code = super::find(&config, name)?.exec(name, argv)?;
    // An exit code the guest could not tell (-1) is a failure, never success.
    Ok(ExitCode::from(if code < 0 {
        1
    } else {
        code.min(255) as u8
    }))
}

pub fn ssh(name: &InstanceName, command: &[String]) -> anyhow::Result<ExitCode> {
    let config = super::load_config(&[])?.config;
    let h = super::find(&config, name)?.ssh(name, command)?;
    hand_off(h)
}

pub fn console(name: &InstanceName) -> anyhow::Result<ExitCode> {
    let config = super::load_config(&[])?.config;
    let h = super::find(&config, name)?.console(name)?;
    hand_off(h)
}

pub fn passwd(name: &InstanceName, user: Option<&str>) -> anyhow::Result<ExitCode> {
    let config = super::load_config(&[])?.config;
    let b = super::find(&config, name)?;
    let user = match user {
        Some(u) => u.to_string(),
        None => b
            .status(name)?
            .ssh
            .map(|s| s.user)
            .unwrap_or(config.defaults.user.clone()),
    };
    nox_core::spec::check_user(&user)?;
    let password = b.passwd(name, &user)?;
    // Shown once, on stdout only; nox keeps no copy.
    println!("{password}");
    eprintln!("new password for {user} in {name}; nox does not store it");
    Ok(ExitCode::SUCCESS)
}

/// Replaces nox with the program (ssh, virsh console) so it owns the terminal.
fn hand_off(h: Handoff) -> anyhow::Result<ExitCode> {
    if let Some(note) = &h.note {
        eprintln!("{note}");
    }
    let err = Command::new(&h.program).args(&h.args).exec();
    Err(Error::failed(
        format!("cannot run {}: {err}", h.program.display()),
        "install it (openssh-client for ssh, libvirt-clients for the console)",
    )
    .into())
}
