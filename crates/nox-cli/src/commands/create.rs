//! `nox create`.

use std::process::ExitCode;

use nox_core::backend::CreateOptions;
use nox_core::config::Override;
use nox_core::host::HostFacts;
use nox_core::instance::NetworkSpec;
use nox_core::{spec, ssh_identity, BackendKind, Error};

use crate::cli::CreateArgs;
use crate::progress::Terminal;

/// Flags become the highest config layer, so `[defaults]` and flags resolve in one place.
fn overrides(a: &CreateArgs) -> Vec<Override> {
    let mut o = Vec::new();
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
    if let Some(v) = &a.resources.cpus {
        set("defaults.cpus", v.to_string().into(), "--cpus");
    }
    if let Some(v) = &a.resources.memory {
        set("defaults.memory", v.to_string().into(), "--memory");
    }
    if let Some(v) = &a.resources.disk {
        set("defaults.disk", v.to_string().into(), "--disk");
    }
    if let Some(v) = &a.network {
        set("defaults.network", v.to_string().into(), "--network");
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
    let loaded = super::load_config(&overrides(&a))?;
    let mut config = loaded.config;
    let kind = spec::choose_backend(
        a.backend.map(Into::into),
        a.privileged,
        config.defaults.backend,
    )?;
    if kind == BackendKind::Vm && a.no_tun {
        return Err(Error::Usage(
            "--no-tun applies to containers; VMs always have their own TUN".into(),
        )
        .into());
    }
    if kind == BackendKind::Lxc && a.resources.disk.is_some() {
        return Err(Error::Usage(
            "--disk applies to VMs; a container's root is an overlay on the host's filesystem, with no size of its own".into(),
        )
        .into());
    }
    if a.privileged && a.no_tun {
        return Err(Error::Usage(
            "--no-tun applies to unprivileged containers; privileged ones see the host's /dev/net"
                .into(),
        )
        .into());
    }
    if kind == BackendKind::Vm && a.nesting {
        return Err(Error::Usage(
            "--nesting applies to containers; a VM runs Docker as it is".into(),
        )
        .into());
    }
    if !a.scripts.is_empty() && (a.no_start || a.wait.no_wait) {
        return Err(Error::Usage(
            "--script runs in a ready instance: leave out --no-start and --no-wait, or use `nox run` later".into(),
        )
        .into());
    }
    // Scripts and the Tailscale key are checked before anything exists.
    let plan = super::scripts::Plan::resolve(&a.scripts, &config)?;
    if config.defaults.network == NetworkSpec::Ask {
        config.defaults.network = ask_network(kind)?;
    }
    let host = HostFacts::probe(&config.vm.storage_dir)?;
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let mut spec = spec::resolve(
        a.name.clone(),
        kind,
        a.privileged,
        &config.defaults,
        &host,
        home.as_deref(),
    )?;
    // Names are unique across backends: `nox exec NAME` must find one instance. A backend
    // that cannot be asked (libvirtd down) must not stop a container from being created.
    if let (Some(other), _) = super::locate(&config, &spec.name) {
        return Err(Error::AlreadyExists {
            name: spec.name.to_string(),
            backend: other.kind().to_string(),
        }
        .into());
    }
    if kind == BackendKind::Lxc {
        spec.nesting = a.nesting || plan.needs_nesting();
        if spec.nesting && !a.nesting {
            eprintln!(
                "note: enabling nesting in container {} for Docker (LXC's nesting.conf lines)",
                spec.name
            );
        }
    }
    // nox's own key, so `nox ssh` logs in whatever the user's ~/.ssh holds.
    if let Some(data) = ssh_identity::data_dir() {
        spec.ssh_keys.push(ssh_identity::ensure(&data)?);
    }
    let backend: Box<dyn nox_core::Backend> = match kind {
        BackendKind::Lxc => {
            let lxc =
                nox_lxc::LxcBackend::new(config.clone()).with_tun(config.lxc.tun && !a.no_tun);
            if a.privileged {
                // Everything checkable is checked before the question, so a "yes" never
                // meets an error the user could have been told first.
                lxc.preflight(&spec)?;
                confirm_privileged(a.yes)?;
            }
            Box::new(lxc)
        }
        BackendKind::Vm => super::backend(kind, &config)?,
    };
    let progress = Terminal::default();
    let instance = backend.create(
        &spec,
        CreateOptions {
            start: !a.no_start,
            wait: a.wait.wait_for().is_some(),
            timeout: a.wait.timeout,
        },
        &progress,
    )?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&instance)?);
    } else {
        let state = instance.state;
        println!("created {} ({kind}, {state})", instance.name);
        if let Some(ssh) = &instance.ssh {
            println!(
                "  ssh: nox ssh {} ({}@{}:{})",
                instance.name, ssh.user, ssh.host, ssh.port
            );
        }
    }
    // A failing script leaves the instance as it is, for inspection; the error says where the
    // log is.
    super::scripts::run_plan(&*backend, &spec.name, &spec.user, &plan, a.json)?;
    Ok(ExitCode::SUCCESS)
}

/// `--network ask`: a picker on a terminal, never a prompt without one.
fn ask_network(kind: BackendKind) -> Result<NetworkSpec, Error> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        return Err(Error::Usage(
            "--network ask needs an interactive terminal; give --network default, user, bridge:NAME or macvtap:IFACE".into(),
        ));
    }
    let mut choices: Vec<(String, NetworkSpec)> =
        vec![("default: NAT behind the host".into(), NetworkSpec::Default)];
    if kind == BackendKind::Vm {
        choices.push((
            "user: passt, SSH forwarded on 127.0.0.1".into(),
            NetworkSpec::User,
        ));
    }
    let mut ifaces: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    ifaces.sort();
    for i in ifaces.iter().filter(|i| *i != "lo") {
        let is_bridge = std::path::Path::new("/sys/class/net")
            .join(i)
            .join("bridge")
            .is_dir();
        if is_bridge {
            choices.push((format!("bridge:{i}"), NetworkSpec::Bridge(i.clone())));
        } else if kind == BackendKind::Vm
            && std::path::Path::new("/sys/class/net")
                .join(i)
                .join("device")
                .exists()
        {
            choices.push((
                format!("macvtap:{i} (LAN; the host cannot reach the guest)"),
                NetworkSpec::Macvtap(i.clone()),
            ));
        }
    }
    let labels: Vec<&str> = choices.iter().map(|(l, _)| l.as_str()).collect();
    let pick = dialoguer::Select::new()
        .with_prompt("Network")
        .items(&labels)
        .default(0)
        .interact()
        .map_err(|e| Error::Usage(format!("no network chosen: {e}")))?;
    Ok(choices.swap_remove(pick).1)
}

const PRIVILEGED_WARNING: &str = "\
WARNING: a privileged container is not isolated from this host.
  - root in the container is root on the host, with full capabilities;
  - it can reach host devices;
  - software in it can escape to the host;
  - it belongs only with trusted software on a dedicated host.
An unprivileged container (the default) also gets /dev/net/tun, so Tailscale works there too.";

/// The warning, then `Continue? [y/N]`; never a prompt without a terminal.
pub(crate) fn confirm_privileged(yes: bool) -> Result<(), Error> {
    use std::io::IsTerminal;
    eprintln!("{PRIVILEGED_WARNING}");
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        return Err(Error::Usage(
            "refusing to create a privileged container without confirmation: run nox on a terminal to answer, or pass --yes".into(),
        ));
    }
    let go = dialoguer::Confirm::new()
        .with_prompt("Continue?")
        .default(false)
        .interact()
        .map_err(|e| Error::Usage(format!("no answer: {e}")))?;
    if go {
        Ok(())
    } else {
        Err(Error::failed(
            "not confirmed: nothing was created",
            "leave out --privileged for an unprivileged container",
        ))
    }
}
