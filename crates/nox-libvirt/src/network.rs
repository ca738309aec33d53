//! Turning `--network` into the VM's NIC, and the host-side pieces that go with it.

use std::net::TcpListener;
use std::path::Path;

use nox_core::instance::NetworkSpec;
use nox_core::Error;
use virt::connect::Connect;

use crate::connection::err;
use crate::domain::Nic;

/// libvirt's stock NAT network, as Debian's libvirt-daemon-config-network defines it; nox
/// defines it only where it is missing.
const DEFAULT_NETWORK_XML: &str = "<network>
  <name>default</name>
  <forward mode='nat'/>
  <bridge name='virbr0' stp='on' delay='0'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp><range start='192.168.122.2' end='192.168.122.254'/></dhcp>
  </ip>
</network>";

/// The NIC for `spec`. `used_ports` are forwards other nox VMs already own (running or not).
pub fn resolve(conn: &Connect, spec: &NetworkSpec, used_ports: &[u16]) -> Result<Nic, Error> {
    match spec {
        NetworkSpec::Default => {
            ensure_default_network(conn)?;
            Ok(Nic::Network {
                network: "default".into(),
            })
        }
        NetworkSpec::Bridge(name) => {
            if !Path::new("/sys/class/net")
                .join(name)
                .join("bridge")
                .is_dir()
            {
                return Err(Error::Refused {
                    message: format!("bridge {name} does not exist on this host"),
                    hint: "create the bridge first, or use --network default".into(),
                });
            }
            Ok(Nic::Bridge {
                bridge: name.clone(),
            })
        }
        NetworkSpec::Macvtap(dev) => {
            if !Path::new("/sys/class/net").join(dev).exists() {
                return Err(Error::Refused {
                    message: format!("network interface {dev} does not exist on this host"),
                    hint: "`ip link` lists the host's interfaces".into(),
                });
            }
            Ok(Nic::Macvtap {
                device: dev.clone(),
            })
        }
        NetworkSpec::User => {
            if crate::programs::find("passt").is_none() {
                return Err(Error::failed(
                    "--network user needs passt, which is not installed",
                    "install the passt package",
                ));
            }
            Ok(Nic::User {
                ssh_port: free_port(used_ports)?,
            })
        }
        NetworkSpec::Ask => Err(Error::Usage(
            "--network ask needs an interactive terminal; pick a network with --network".into(),
        )),
    }
}

/// Creates and starts libvirt's `default` NAT network if it is missing or inactive.
pub fn ensure_default_network(conn: &Connect) -> Result<(), Error> {
    let net = match conn.lookup_network_by_name("default") {
        Ok(n) => n,
        Err(_) => {
            let n = conn
                .define_network_xml(DEFAULT_NETWORK_XML)
                .map_err(|e| err("defining libvirt's default network", e))?;
            let _ = n.set_autostart(true);
            n
        }
    };
    if !net.is_active().unwrap_or(false) {
        net.create()
            .map_err(|e| err("starting libvirt's default network", e))?;
    }
    Ok(())
}

/// A free TCP port on 127.0.0.1 that no other nox VM has claimed.
fn free_port(used: &[u16]) -> Result<u16, Error> {
    for _ in 0..64 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| Error::io("finding a free port on 127.0.0.1", e))?
            .port();
        if !used.contains(&port) {
            return Ok(port);
        }
    }
    Err(Error::Backend("no free port on 127.0.0.1".into()))
}

/// Removes a macvtap device left for `mac` (libvirt normally removes it with the domain).
/// Matched by the VM's MAC, never by a name pattern.
pub fn remove_macvtap_for(mac: &str) {
    let Ok(entries) = std::fs::read_dir("/sys/class/net") else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let is_macvtap = p.join("macvtap").exists();
        let addr = std::fs::read_to_string(p.join("address")).unwrap_or_default();
        if is_macvtap && addr.trim().eq_ignore_ascii_case(mac) {
            let name = e.file_name().to_string_lossy().into_owned();
            let _ = std::process::Command::new("ip")
                .args(["link", "delete", &name])
                .status();
        }
    }
}
