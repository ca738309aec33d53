//! Port forwards for VMs (`nox forward`), by the VM's network:
//! - **`--network user` (passt):** each forward is one more `<portForward>` on the VM's passt
//!   interface, beside the SSH one. passt reads its forwards when QEMU starts it and cannot
//!   change them while it runs, so a change reaches a running VM at its next start (`nox
//!   restart NAME`), and nox says so. Hot-unplugging and replugging the NIC would apply it at
//!   once but takes the guest's network away under it (open connections, DHCP, cloud-init's
//!   view of the NIC), which a port forward should never cost. The forwards are kept in the
//!   interface's persistent definition (`virDomainUpdateDeviceFlags` with `AFFECT_CONFIG`), so
//!   they survive restarts, host reboots and libvirt's autostart without nox.
//! - **libvirt's NAT network or a host bridge:** nftables DNAT in nox's own table, as for
//!   containers ([`nox_core::forward::nft`]), pointed at the address the guest has in this
//!   boot (the agent's, else its DHCP lease). The elements exist only while the VM runs:
//!   `start` applies them once the guest has an address, `stop` and `delete` remove them.
//!   On a libvirt network only loopback host addresses are taken: libvirt's own firewall
//!   (`LIBVIRT_FWI`) rejects connections from other hosts to its guests, and nox does not
//!   edit another program's rules.
//!   A VM started without nox (libvirt's autostart at boot, `virsh start`) gets them from a
//!   libvirt hook (`/etc/libvirt/hooks/qemu.d/nox-forwards`), present while any VM has such a
//!   forward, which runs `nox forward follow` at the domain's `started` event. libvirt looks
//!   for hooks when its daemon starts, so it takes effect from the next start of libvirtd:
//!   a host reboot, which is when autostart starts VMs.
//! - **macvtap** is refused: the host cannot reach a macvtap guest at all.
//!
//! Every forward is also in nox's record, which `list` and `status --json` show.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nox_core::forward::{nft, Forward, ForwardKey};
use nox_core::instance::NetworkSpec;
use nox_core::{Error, InstanceName, Progress};
use virt::connect::Connect;
use virt::domain::Domain;
use virt::sys;

use crate::domain::{interface_xml, Nic};
use crate::list::find;
use crate::record::VmRecord;
use crate::resize::save_record;
use crate::LibvirtBackend;

/// How long a started VM may take to get its address before its forwards give up: a cold
/// boot under software emulation reaches DHCP in about a minute.
const ADDRESS_WAIT: Duration = Duration::from_secs(240);

/// How a VM's forwards are made, from its network.
enum Mechanism {
    /// passt's own `<portForward>`s; the VM's SSH forward is on this host port.
    Passt { ssh_port: u16 },
    /// nftables DNAT to the guest on this host bridge; `libvirt_network` when the bridge is
    /// a libvirt network's, whose firewall admits only this host's own connections.
    Dnat {
        bridge: String,
        libvirt_network: Option<String>,
    },
}

fn mechanism(conn: &Connect, name: &InstanceName, rec: &VmRecord) -> Result<Mechanism, Error> {
    let network = |net: &str| -> Result<Mechanism, Error> {
        let bridge = conn
            .lookup_network_by_name(net)
            .and_then(|n| n.bridge_name())
            .map_err(|e| {
                crate::connection::err(&format!("finding libvirt network {net}'s bridge"), e)
            })?;
        Ok(Mechanism::Dnat {
            bridge,
            libvirt_network: Some(net.to_string()),
        })
    };
    match (&rec.spec.network, rec.ssh_port) {
        (NetworkSpec::User, Some(ssh_port)) => Ok(Mechanism::Passt { ssh_port }),
        (NetworkSpec::Default, _) => network("default"),
        (NetworkSpec::Bridge(bridge), _) => Ok(Mechanism::Dnat {
            bridge: bridge.clone(),
            libvirt_network: None,
        }),
        (other, _) => Err(Error::Refused {
            message: format!(
                "{name} is on network {other}, which this host cannot reach: nox forwards ports to VMs on default, user or bridge:NAME networks"
            ),
            hint: "reach it through its own address on the network it is attached to".into(),
        }),
    }
}

pub fn list(b: &LibvirtBackend, name: &InstanceName) -> Result<Vec<Forward>, Error> {
    let conn = b.conn()?;
    Ok(find(&conn, name)?.1.forwards)
}

/// Rewrites the passt interface's persistent definition and nox's record to hold `forwards`.
fn save_passt(
    dom: &Domain,
    rec: &mut VmRecord,
    ssh_port: u16,
    forwards: Vec<Forward>,
) -> Result<(), Error> {
    let nic = Nic::User {
        ssh_port,
        forwards: forwards.clone(),
    };
    let xml = interface_xml(&rec.mac, &nic);
    dom.update_device_flags(&xml, sys::VIR_DOMAIN_AFFECT_CONFIG)
        .map_err(|e| crate::connection::err("changing the VM's passt port forwards", e))?;
    save_forwards(dom, rec, forwards)
}

fn save_forwards(dom: &Domain, rec: &mut VmRecord, forwards: Vec<Forward>) -> Result<(), Error> {
    rec.forwards = forwards;
    let running = dom.is_active().unwrap_or(false);
    save_record(dom, rec, running)
}

fn later(name: &InstanceName, dom: &Domain) -> Option<String> {
    dom.is_active().unwrap_or(false).then(|| {
        format!(
            "passt cannot change a running VM's forwards: this takes effect at {name}'s next start (`nox restart {name}`)"
        )
    })
}

pub fn add(
    b: &LibvirtBackend,
    name: &InstanceName,
    forward: Forward,
) -> Result<Option<String>, Error> {
    let conn = b.conn()?;
    let (dom, mut rec) = find(&conn, name)?;
    let mut forwards = rec.forwards.clone();
    forwards.push(forward);
    match mechanism(&conn, name, &rec)? {
        Mechanism::Passt { ssh_port } => {
            if forward.clashes_with(&Forward {
                proto: nox_core::forward::Proto::Tcp,
                address: Ipv4Addr::LOCALHOST,
                host_port: ssh_port,
                guest_port: 22,
            }) {
                return Err(Error::Usage(format!(
                    "host port {} is {name}'s SSH forward: pick another port",
                    forward.host_port
                )));
            }
            save_passt(&dom, &mut rec, ssh_port, forwards)?;
            Ok(later(name, &dom))
        }
        Mechanism::Dnat {
            bridge,
            libvirt_network,
        } => {
            reachable(name, libvirt_network.as_deref(), &forward)?;
            sync_hook(b, &conn, true)?;
            if !dom.is_active().unwrap_or(false) {
                save_forwards(&dom, &mut rec, forwards)?;
                return Ok(Some(format!(
                    "{name} is stopped: the forward takes effect when it starts"
                )));
            }
            // The guest must have an address now; the record changes only once the element
            // is in, so a failure leaves nothing half-made.
            let address = guest_address(&dom).ok_or_else(|| no_address(name))?;
            nft::apply(
                &*b.host.runner,
                name.as_str(),
                &bridge,
                &[(forward, address)],
            )?;
            if let Err(e) = save_forwards(&dom, &mut rec, forwards) {
                let _ = nft::remove(&*b.host.runner, name.as_str(), &[forward]);
                return Err(e);
            }
            Ok(None)
        }
    }
}

pub fn remove(
    b: &LibvirtBackend,
    name: &InstanceName,
    key: ForwardKey,
) -> Result<(Vec<Forward>, Option<String>), Error> {
    let conn = b.conn()?;
    let (dom, mut rec) = find(&conn, name)?;
    let (gone, kept): (Vec<Forward>, Vec<Forward>) =
        rec.forwards.iter().partition(|f| f.matches(&key));
    if gone.is_empty() {
        return Err(nox_core::forward::no_such_forward(name, key));
    }
    match mechanism(&conn, name, &rec)? {
        Mechanism::Passt { ssh_port } => {
            save_passt(&dom, &mut rec, ssh_port, kept)?;
            Ok((gone, later(name, &dom)))
        }
        Mechanism::Dnat { .. } => {
            nft::remove(&*b.host.runner, name.as_str(), &gone)?;
            save_forwards(&dom, &mut rec, kept)?;
            unhook(b, &conn);
            Ok((gone, None))
        }
    }
}

/// On a libvirt network only loopback host addresses: its own firewall (`LIBVIRT_FWI`) rejects
/// other hosts' new connections to its guests, so a forward on another address would answer
/// only this host, and nox does not edit libvirt's rules.
fn reachable(
    name: &InstanceName,
    libvirt_network: Option<&str>,
    forward: &Forward,
) -> Result<(), Error> {
    match libvirt_network {
        Some(net) if !forward.address.is_loopback() => Err(Error::Usage(format!(
            "{name} is on libvirt network {net}, whose firewall rejects connections from other hosts: forward on a 127.x.x.x address (the default), or use a VM on --network user or bridge:NAME"
        ))),
        _ => Ok(()),
    }
}

/// The guest's IPv4 address in this boot: the agent's, else its DHCP lease.
fn guest_address(dom: &Domain) -> Option<Ipv4Addr> {
    crate::list::addresses(dom)
        .iter()
        .filter(|ip| !nox_core::instance::is_tailnet(ip))
        .find_map(|ip| ip.parse().ok())
}

fn no_address(name: &InstanceName) -> Error {
    Error::failed(
        format!("{name} has no IPv4 address yet, so a port forward would point nowhere"),
        format!("wait until it is up (`nox start --wait {name}`), then try again"),
    )
}

/// Points a started VM's nftables forwards at the address it has in this boot, waiting for
/// one (`start`, `restart`). passt VMs carry theirs in the domain already.
pub fn apply(
    b: &LibvirtBackend,
    conn: &Connect,
    dom: &Domain,
    rec: &VmRecord,
    progress: &dyn Progress,
) -> Result<(), Error> {
    if rec.forwards.is_empty() {
        return Ok(());
    }
    let name = &rec.spec.name;
    let Mechanism::Dnat { bridge, .. } = mechanism(conn, name, rec)? else {
        return Ok(());
    };
    nft::apply_when_addressed(
        &*b.host.runner,
        name.as_str(),
        &bridge,
        &rec.forwards,
        ADDRESS_WAIT,
        &format!("`nox console {name}`"),
        progress,
        || {
            if !dom.is_active().unwrap_or(false) {
                return Err(Error::failed(
                    format!("{name} stopped before it had an address for its port forwards"),
                    format!("see why with `nox console {name}`, then `nox start {name}`"),
                ));
            }
            Ok(guest_address(dom))
        },
    )
}

/// [`apply`] for a VM started outside nox: nothing when it is not running.
pub fn reapply(
    b: &LibvirtBackend,
    name: &InstanceName,
    progress: &dyn Progress,
) -> Result<(), Error> {
    let conn = b.conn()?;
    let (dom, rec) = find(&conn, name)?;
    if !dom.is_active().unwrap_or(false) {
        return Ok(());
    }
    apply(b, &conn, &dom, &rec, progress)
}

/// Removes a VM's nftables elements (stop, delete); passt's go with its process.
pub fn withdraw(b: &LibvirtBackend, rec: &VmRecord) -> Result<(), Error> {
    if rec.spec.network == NetworkSpec::User {
        return Ok(());
    }
    nft::remove(&*b.host.runner, rec.spec.name.as_str(), &rec.forwards)
}

/// libvirt's directory of hooks for QEMU domains: each executable file in it runs at every
/// domain event, with the domain's name and the event as arguments and its XML on stdin.
const HOOK_DIR: &str = "/etc/libvirt/hooks/qemu.d";
const HOOK_FILE: &str = "nox-forwards";

/// The hook: at a nox domain's `started` event, `nox forward follow --detach NAME`, which
/// returns at once (libvirt holds the domain's start until its hooks exit, and the address
/// comes later) and leaves a child that applies the forwards once the guest has one.
fn hook_script(nox: &Path, config: Option<&Path>) -> Result<String, Error> {
    let quote = |p: &Path| nox_core::spec::sh_quote(&p.to_string_lossy());
    let env = match config {
        Some(c) => format!("{}={} ", nox_core::config::ENV_CONFIG, quote(c)?),
        None => String::new(),
    };
    Ok(format!(
        "#!/bin/sh
# Written by nox while a VM on a libvirt network or bridge has a port forward (`nox forward`),
# removed with the last one: a VM started without nox (libvirt's autostart at boot) gets its
# forwards at this boot's address.
# The domain's XML, read whole (libvirt writes all of it) with the shell's own `read`: nox's
# domains carry its record in their metadata.
ours=
while IFS= read -r line || [ -n \"$line\" ]; do
    case $line in *'{ns}'*) ours=yes ;; esac
done
[ \"$2\" = started ] && [ -n \"$ours\" ] || exit 0
exec env {env}{nox} forward follow --detach \"$1\" < /dev/null > /dev/null 2>&1
",
        ns = crate::domain::METADATA_NS,
        nox = quote(nox)?,
    ))
}

/// Puts the hook in place while any nox VM on this host has a DNAT forward (or `adding` one),
/// and removes it when none has. Nothing for a remote libvirt, whose hooks are not this host's.
pub fn sync_hook(b: &LibvirtBackend, conn: &Connect, adding: bool) -> Result<(), Error> {
    if !b.config.vm.uri.starts_with("qemu:///") {
        return Ok(());
    }
    let needed = adding
        || crate::list::records(conn).iter().any(|(_, r)| {
            !r.forwards.is_empty()
                && matches!(
                    r.spec.network,
                    NetworkSpec::Default | NetworkSpec::Bridge(_)
                )
        });
    let path = Path::new(HOOK_DIR).join(HOOK_FILE);
    if !needed {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io(format!("removing {}", path.display()), e))
            }
            _ => Ok(()),
        };
    }
    let nox = std::env::current_exe().map_err(|e| Error::io("finding nox's own path", e))?;
    let config = std::env::var_os(nox_core::config::ENV_CONFIG).map(PathBuf::from);
    let script = hook_script(&nox, config.as_deref())?;
    if std::fs::read_to_string(&path).ok().as_deref() == Some(script.as_str()) {
        return Ok(());
    }
    let write = || -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(HOOK_DIR)?;
        // Beside qemu.d, not in it (libvirt runs every executable file there), and named for
        // this process: two nox commands may write the hook at once.
        let tmp =
            Path::new(HOOK_DIR).with_file_name(format!(".{HOOK_FILE}.tmp-{}", std::process::id()));
        std::fs::write(&tmp, &script)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// [`sync_hook`] after a forward went: a hook left behind only runs `nox forward follow`,
/// which finds nothing to do, so a failure is logged, not raised.
pub fn unhook(b: &LibvirtBackend, conn: &Connect) {
    if let Err(e) = sync_hook(b, conn, false) {
        tracing::warn!(error = %e, "removing nox's libvirt hook");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hook as libvirt runs it, with a stand-in nox that notes how it was called.
    #[test]
    fn the_hook_follows_nox_domains_at_started_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let calls = dir.path().join("calls");
        let nox = dir.path().join("it's nox");
        std::fs::write(
            &nox,
            format!(
                "#!/bin/sh\nprintf '%s|%s\\n' \"$NOX_CONFIG\" \"$*\" >> '{}'\n",
                calls.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&nox, std::fs::Permissions::from_mode(0o755)).unwrap();
        let config = Path::new("/etc/nox/a 'b'.toml");
        let hook = dir.path().join("hook");
        std::fs::write(&hook, hook_script(&nox, Some(config)).unwrap()).unwrap();
        let run = |event: &str, xml: &str| {
            use std::io::Write;
            let mut child = std::process::Command::new("/bin/sh")
                .arg(&hook)
                .args(["web-1", event, "begin", "-"])
                .stdin(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            // The hook reads all of it, for every event: no broken pipe for libvirt.
            child
                .stdin
                .take()
                .unwrap()
                .write_all(xml.as_bytes())
                .unwrap();
            assert!(child.wait().unwrap().success());
        };
        let ours = format!(
            "<domain><metadata><nox:instance xmlns:nox=\"{}\">{{}}</nox:instance></metadata></domain>",
            crate::domain::METADATA_NS
        );
        run("prepare", &ours);
        run("started", "<domain><name>someone-elses</name></domain>");
        assert!(
            !calls.exists(),
            "the hook ran nox for another event or domain"
        );
        run("started", &ours);
        assert_eq!(
            std::fs::read_to_string(&calls).unwrap(),
            "/etc/nox/a 'b'.toml|forward follow --detach web-1\n"
        );
    }

    #[test]
    fn a_libvirt_network_takes_loopback_forwards_only_and_a_bridge_any() {
        let name: InstanceName = "web".parse().unwrap();
        let on = |addr: &str| Forward::parse("8080:80", addr.parse().unwrap()).unwrap();
        for ok in ["127.0.0.1", "127.0.0.2"] {
            assert!(reachable(&name, Some("default"), &on(ok)).is_ok(), "{ok}");
        }
        for bad in ["0.0.0.0", "192.168.1.5"] {
            let e = reachable(&name, Some("default"), &on(bad)).unwrap_err();
            assert!(e.is_bad_input(), "{e}");
            assert!(e.to_string().contains("firewall"), "{e}");
            assert!(!e.to_string().contains('\n'));
        }
        assert!(reachable(&name, None, &on("0.0.0.0")).is_ok());
    }
}
