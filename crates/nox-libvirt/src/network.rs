//! Turning `--network` into the VM's NIC, and the host-side pieces that go with it.

use std::net::TcpListener;

use nox_core::host::{Cmd, Host, InterfaceKind};
use nox_core::instance::NetworkSpec;
use nox_core::Error;
use virt::connect::Connect;

use crate::connection::err;
use crate::domain::Nic;
use crate::network_xml::NatNetwork;

/// What `--network` needs of the host, checked before anything is made.
pub fn preflight(host: &Host, spec: &NetworkSpec) -> Result<(), Error> {
    match spec {
        NetworkSpec::Default => Ok(()),
        NetworkSpec::Bridge(name) => {
            if !host.facts.is_bridge(name) {
                return Err(Error::Refused {
                    message: format!("bridge {name} does not exist on this host"),
                    hint: "create the bridge first, or use --network default".into(),
                });
            }
            Ok(())
        }
        NetworkSpec::Macvtap(dev) => {
            if host.facts.interface(dev)?.is_none() {
                return Err(Error::Refused {
                    message: format!("network interface {dev} does not exist on this host"),
                    hint: "`ip link` lists the host's interfaces".into(),
                });
            }
            Ok(())
        }
        NetworkSpec::User => {
            if host.runner.find_program("passt").is_none() {
                return Err(Error::failed(
                    "--network user needs passt, which is not installed",
                    "install the passt package",
                ));
            }
            Ok(())
        }
        NetworkSpec::Ask => Err(Error::Usage(
            "--network ask needs an interactive terminal; pick a network with --network".into(),
        )),
    }
}

/// The NIC for `spec`. `used_ports` are forwards other nox VMs already own (running or not).
pub fn resolve(
    conn: &Connect,
    host: &Host,
    spec: &NetworkSpec,
    used_ports: &[u16],
) -> Result<Nic, Error> {
    preflight(host, spec)?;
    Ok(match spec {
        NetworkSpec::Default => {
            ensure_default_network(conn)?;
            Nic::Network {
                network: "default".into(),
            }
        }
        NetworkSpec::Bridge(name) => Nic::Bridge {
            bridge: name.clone(),
        },
        NetworkSpec::Macvtap(dev) => Nic::Macvtap {
            device: dev.clone(),
        },
        NetworkSpec::User => Nic::User {
            ssh_port: free_port(used_ports)?,
            forwards: Vec::new(),
        },
        // Refused by preflight.
        NetworkSpec::Ask => return Err(Error::Usage("--network ask needs a terminal".into())),
    })
}

/// Creates and starts libvirt's `default` NAT network if it is missing or inactive.
pub fn ensure_default_network(conn: &Connect) -> Result<(), Error> {
    let net = match conn.lookup_network_by_name("default") {
        Ok(n) => n,
        Err(_) => {
            let n = conn
                .define_network_xml(&NatNetwork::libvirt_default().to_xml())
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
    Err(Error::failure("no free port on 127.0.0.1"))
}

/// Removes a macvtap device left for `mac` (libvirt normally removes it with the domain).
/// Matched by the VM's MAC, never by a name pattern.
pub fn remove_macvtap_for(host: &Host, mac: &str) {
    let Ok(ifaces) = host.facts.interfaces() else {
        return;
    };
    for i in ifaces {
        let ours = i.kind == InterfaceKind::Macvtap
            && i.mac
                .as_deref()
                .is_some_and(|m| m.eq_ignore_ascii_case(mac));
        if ours {
            let cmd = Cmd::new("ip")
                .args(["link", "delete"])
                .arg(&i.name)
                .package("iproute2");
            if let Err(e) = host.runner.run(&cmd) {
                tracing::warn!("removing {}: {e}", i.name);
            }
        }
    }
}

/// A random address of libvirt network `network`'s DHCP range that no lease holds now, for a
/// clone to ask for straight away (identity.rs): dnsmasq acknowledges such a request at once,
/// where a DISCOVER waits three seconds on its ping check. The leases are read from libvirt's
/// dnsmasq status file; when it cannot be read the clone asks as usual. A race with another
/// new guest costs nothing but that wait: the server refuses a taken address, and the client
/// starts over with a DISCOVER.
pub fn free_address(
    conn: &Connect,
    network: &str,
    facts: &dyn nox_core::host::HostFacts,
) -> Option<std::net::Ipv4Addr> {
    let net = conn.lookup_network_by_name(network).ok()?;
    let (start, end) = dhcp_range(&net.xml_desc(0).ok()?)?;
    let bridge = net.bridge_name().ok()?;
    let status = std::fs::read(format!("/var/lib/libvirt/dnsmasq/{bridge}.status")).ok()?;
    let leases: Vec<serde_json::Value> = if status.iter().all(u8::is_ascii_whitespace) {
        Vec::new()
    } else {
        serde_json::from_slice(&status).ok()?
    };
    let leased: Vec<std::net::Ipv4Addr> = leases
        .iter()
        .filter_map(|l| l["ip-address"].as_str()?.parse().ok())
        .collect();
    let mut random = [0u8; 4];
    facts.fill_random(&mut random).ok()?;
    pick_free(start, end, &leased, u32::from_le_bytes(random))
}

/// Waits, up to `limit`, until the host's bridge forwards what the running domain's NIC sends
/// (at once when the NIC is on no bridge, as with `user` networking). A restored clone's NIC
/// is a new bridge port, which on an STP bridge such as libvirt's `default` network drops
/// frames for about four seconds: a DHCP request sent then is lost, and the client asks again
/// only seconds later.
pub fn wait_nic_forwarding(
    dom: &virt::domain::Domain,
    facts: &dyn nox_core::host::HostFacts,
    limit: std::time::Duration,
) {
    let Some(dev) = dom.xml_desc(0).ok().and_then(|x| nic_device(&x)) else {
        return;
    };
    let _ = nox_core::wait::wait_until(limit, std::time::Duration::from_millis(20), |_| {
        Ok::<_, std::convert::Infallible>(match facts.bridge_port_forwarding(&dev) {
            Some(false) => None,
            _ => Some(()),
        })
    });
}

/// The host device of a live domain's (first) NIC: `<interface><target dev=…/>`.
fn nic_device(xml: &str) -> Option<String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut in_interface = false;
    loop {
        match reader.read_event().ok()? {
            Event::Start(e) if e.local_name().as_ref() == b"interface" => in_interface = true,
            Event::End(e) if e.local_name().as_ref() == b"interface" => in_interface = false,
            Event::Empty(e) | Event::Start(e)
                if in_interface && e.local_name().as_ref() == b"target" =>
            {
                let dev = e.try_get_attribute(b"dev").ok()??;
                return Some(dev.unescape_value().ok()?.into_owned());
            }
            Event::Eof => return None,
            _ => {}
        }
    }
}

/// The first `<range start= end=>` of a libvirt network's `<dhcp>`.
fn dhcp_range(xml: &str) -> Option<(std::net::Ipv4Addr, std::net::Ipv4Addr)> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    loop {
        match reader.read_event().ok()? {
            Event::Empty(e) | Event::Start(e) if e.local_name().as_ref() == b"range" => {
                let attr = |name: &[u8]| -> Option<std::net::Ipv4Addr> {
                    let a = e.try_get_attribute(name).ok()??;
                    a.unescape_value().ok()?.parse().ok()
                };
                return Some((attr(b"start")?, attr(b"end")?));
            }
            Event::Eof => return None,
            _ => {}
        }
    }
}

fn pick_free(
    start: std::net::Ipv4Addr,
    end: std::net::Ipv4Addr,
    leased: &[std::net::Ipv4Addr],
    random: u32,
) -> Option<std::net::Ipv4Addr> {
    let free: Vec<u32> = (u32::from(start)..=u32::from(end))
        .filter(|a| !leased.contains(&std::net::Ipv4Addr::from(*a)))
        .collect();
    if free.is_empty() {
        return None;
    }
    Some(std::net::Ipv4Addr::from(free[random as usize % free.len()]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nox_core::host::Interface;
    use std::sync::Arc;

    #[test]
    fn a_live_nic_is_found_by_its_interfaces_target_only() {
        let xml = "<domain><devices><disk><target dev='vda' bus='virtio'/></disk>\
                   <interface type='network'><mac address='52:54:00:00:00:01'/>\
                   <target dev='vnet7'/><model type='virtio'/></interface></devices></domain>";
        assert_eq!(nic_device(xml).as_deref(), Some("vnet7"));
        // A defined domain has no target yet (libvirt names the device at start).
        assert_eq!(
            nic_device("<domain><devices><disk><target dev='vda'/></disk></devices></domain>"),
            None
        );
    }

    #[test]
    fn preflight_checks_what_each_network_needs() {
        let (host, _, _) = Host::fake();
        assert!(preflight(&host, &NetworkSpec::Default).is_ok());
        assert!(preflight(&host, &NetworkSpec::Bridge("br0".into())).is_ok());
        let e = preflight(&host, &NetworkSpec::Bridge("eth0".into())).unwrap_err();
        assert!(e.is_bad_input() && e.to_string().contains("eth0"), "{e}");
        assert!(preflight(&host, &NetworkSpec::Macvtap("eth0".into())).is_ok());
        assert!(preflight(&host, &NetworkSpec::Macvtap("nope0".into())).is_err());
        assert!(preflight(&host, &NetworkSpec::User).is_ok());
        let no_passt = Host {
            runner: Arc::new(nox_core::host::fake::FakeRunner::with_programs(&[])),
            ..host
        };
        let e = preflight(&no_passt, &NetworkSpec::User).unwrap_err();
        assert!(e.hint().unwrap().contains("passt"), "{e}");
    }

    #[test]
    fn only_the_vm_s_own_macvtap_is_removed() {
        let facts = nox_core::host::fake::FakeHost::with_interfaces(vec![
            Interface {
                name: "macvtap0".into(),
                kind: InterfaceKind::Macvtap,
                mac: Some("52:54:00:aa:bb:cc".into()),
            },
            Interface {
                name: "macvtap1".into(),
                kind: InterfaceKind::Macvtap,
                mac: Some("52:54:00:11:22:33".into()),
            },
        ]);
        let runner = Arc::new(nox_core::host::fake::FakeRunner::default());
        let host = Host {
            facts: Arc::new(facts),
            runner: runner.clone(),
            builder: Arc::new(nox_core::image_build::NoBuilder),
        };
        remove_macvtap_for(&host, "52:54:00:AA:BB:CC");
        assert_eq!(
            runner.argvs(),
            vec![vec!["ip", "link", "delete", "macvtap0"]]
        );
    }

    #[test]
    fn a_free_address_comes_from_the_dhcp_range_and_is_never_leased() {
        let xml = "<network><name>default</name><ip address='192.168.122.1' netmask='255.255.255.0'><dhcp><range start='192.168.122.2' end='192.168.122.5'/></dhcp></ip></network>";
        let (start, end) = dhcp_range(xml).unwrap();
        assert_eq!(
            (start.to_string(), end.to_string()),
            ("192.168.122.2".into(), "192.168.122.5".into())
        );
        let leased: Vec<std::net::Ipv4Addr> = ["192.168.122.2", "192.168.122.4"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let picks: std::collections::BTreeSet<String> = (0..8)
            .map(|r| pick_free(start, end, &leased, r).unwrap().to_string())
            .collect();
        assert_eq!(
            picks.into_iter().collect::<Vec<_>>(),
            ["192.168.122.3", "192.168.122.5"]
        );
        let all: Vec<std::net::Ipv4Addr> = (2..=5)
            .map(|n| format!("192.168.122.{n}").parse().unwrap())
            .collect();
        assert_eq!(pick_free(start, end, &all, 7), None);
        assert_eq!(dhcp_range("<network><ip/></network>"), None);
    }
}
