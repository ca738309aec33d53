//! `list` and `status`: every nox domain in one libvirt call, its state, and its addresses.
//!
//! Addresses come from the guest agent, then libvirt's DHCP leases, then the host's ARP table.
//! The agent is asked with a short response timeout, and all guests are asked at once, so
//! stuck guests cost that timeout once in total, never once per VM.

use nox_core::instance::{Instance, InstanceState, NetworkSpec, SshEndpoint};
use nox_core::{BackendKind, Error, InstanceName};
use virt::connect::Connect;
use virt::domain::Domain;

use crate::domain::{record_from_metadata, METADATA_NS};
use crate::record::VmRecord;
use crate::LibvirtBackend;

/// VIR_DOMAIN_METADATA_ELEMENT
const METADATA_ELEMENT: i32 = 2;
/// Seconds the agent may take to list addresses before we fall back to leases.
const AGENT_ADDR_TIMEOUT: i32 = 1;

/// The nox record of `dom`, if it is a nox VM.
pub fn record(dom: &Domain) -> Option<VmRecord> {
    let xml = dom.metadata(METADATA_ELEMENT, Some(METADATA_NS), 0).ok()?;
    VmRecord::from_json(&record_from_metadata(&xml)?)
}

/// Every nox domain with its record.
pub fn records(conn: &Connect) -> Vec<(Domain, VmRecord)> {
    conn.list_all_domains(0)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|d| record(&d).map(|r| (d, r)))
        .collect()
}

pub fn find(conn: &Connect, name: &InstanceName) -> Result<(Domain, VmRecord), Error> {
    let dom = conn
        .lookup_domain_by_name(name.as_str())
        .map_err(|_| Error::NotFound {
            name: name.to_string(),
        })?;
    let rec = record(&dom).ok_or_else(|| Error::Refused {
        message: format!("domain {name} was not created by nox"),
        hint: "nox manages only the VMs it created; use virsh for others".into(),
    })?;
    Ok((dom, rec))
}

pub fn list(b: &LibvirtBackend) -> Result<Vec<Instance>, Error> {
    let conn = b.conn()?;
    let all = records(&conn);
    let mut out: Vec<Instance> = std::thread::scope(|s| {
        let handles: Vec<_> = all
            .iter()
            .map(|(d, r)| s.spawn(move || instance(d, r, true)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("listing a domain does not panic"))
            .collect()
    });
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

pub fn status(b: &LibvirtBackend, name: &InstanceName) -> Result<Instance, Error> {
    let conn = b.conn()?;
    let (dom, rec) = find(&conn, name)?;
    Ok(instance(&dom, &rec, true))
}

pub fn state(dom: &Domain) -> InstanceState {
    use virt::domain::DomainState as S;
    use virt::enumutil::Enum;
    match dom.state().map(|(s, _)| s) {
        Ok(Enum::Known(S::Running | S::Blocked)) => InstanceState::Running,
        Ok(Enum::Known(S::Paused | S::PMSuspended)) => InstanceState::Paused,
        Ok(Enum::Known(S::Shutdown)) => InstanceState::Stopping,
        Ok(Enum::Known(S::Shutoff | S::Crashed)) => InstanceState::Stopped,
        _ => InstanceState::Unknown,
    }
}

fn instance(dom: &Domain, rec: &VmRecord, with_addresses: bool) -> Instance {
    let st = state(dom);
    let ipv4 = if with_addresses && st == InstanceState::Running {
        addresses(dom)
    } else {
        Vec::new()
    };
    let spec = &rec.spec;
    let ssh = match (&spec.network, rec.ssh_port) {
        (NetworkSpec::User, Some(port)) => Some(SshEndpoint {
            user: spec.user.clone(),
            host: "127.0.0.1".into(),
            port,
        }),
        (NetworkSpec::Macvtap(_), _) => None,
        _ => ipv4
            .iter()
            .find(|ip| !nox_core::instance::is_tailnet(ip))
            .map(|ip| SshEndpoint {
                user: spec.user.clone(),
                host: ip.clone(),
                port: 22,
            }),
    };
    Instance {
        name: spec.name.to_string(),
        backend: BackendKind::Vm,
        state: st,
        ipv4: ipv4.clone(),
        cpus: spec.cpus,
        memory_bytes: spec.memory_bytes,
        disk_bytes: Some(spec.disk_bytes),
        autostart: dom.autostart().unwrap_or(spec.autostart),
        image: spec.image.clone(),
        network: spec.network.to_string(),
        privileged: false,
        nesting: false,
        tailnet_ipv4: nox_core::instance::tailnet_ipv4(&ipv4),
        ssh,
        created_at: rec.created_at.clone(),
        user: Some(spec.user.clone()),
        remote: None,
        location: None,
        mounts: rec.spec.mounts.clone(),
        forwards: rec.forwards.clone(),
    }
}

/// IPv4 addresses from the first source that has any: agent, DHCP lease, ARP.
pub fn addresses(dom: &Domain) -> Vec<String> {
    use virt::sys;
    // SAFETY: the domain pointer is valid for the call; the timeout is a plain int.
    unsafe {
        sys::virDomainAgentSetResponseTimeout(dom.as_ptr(), AGENT_ADDR_TIMEOUT, 0);
    }
    // Lazy: a later source is asked only when the earlier ones had nothing.
    let ips = first_addresses(
        [
            sys::VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT,
            sys::VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE,
            sys::VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_ARP,
        ]
        .into_iter()
        .map(|source| dom.interface_addresses(source, 0).unwrap_or_default()),
    );
    // The short limit was for listing; later agent calls (passwd, exec) get libvirt's default.
    // SAFETY: as above.
    unsafe {
        sys::virDomainAgentSetResponseTimeout(
            dom.as_ptr(),
            sys::VIR_DOMAIN_AGENT_RESPONSE_TIMEOUT_DEFAULT,
            0,
        );
    }
    ips
}

/// The IPv4 addresses of the first source, in order, that has any.
pub fn first_addresses(
    sources: impl IntoIterator<Item = Vec<virt::domain::Interface>>,
) -> Vec<String> {
    sources
        .into_iter()
        .map(ipv4_from)
        .find(|ips| !ips.is_empty())
        .unwrap_or_default()
}

/// IPv4 addresses, loopback excluded. Pure, so the source fallback is unit-tested.
pub fn ipv4_from(ifaces: Vec<virt::domain::Interface>) -> Vec<String> {
    ifaces
        .into_iter()
        .filter(|i| i.name != "lo")
        .flat_map(|i| i.addrs)
        .filter(|a| {
            a.typed == virt::sys::VIR_IP_ADDR_TYPE_IPV4 as i64 && !a.addr.starts_with("127.")
        })
        .map(|a| a.addr)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use virt::domain::{IPAddress, Interface};

    fn iface(name: &str, addrs: &[(i64, &str)]) -> Interface {
        Interface {
            name: name.into(),
            hwaddr: Some("52:54:00:00:00:01".into()),
            naddrs: addrs.len() as u64,
            addrs: addrs
                .iter()
                .map(|(typed, addr)| IPAddress {
                    typed: *typed,
                    addr: addr.to_string(),
                    prefix: 24,
                })
                .collect(),
        }
    }

    const V4: i64 = virt::sys::VIR_IP_ADDR_TYPE_IPV4 as i64;
    const V6: i64 = virt::sys::VIR_IP_ADDR_TYPE_IPV6 as i64;

    #[test]
    fn first_source_with_an_ipv4_wins() {
        let agent = vec![
            iface("lo", &[(V4, "127.0.0.1")]),
            iface("eth0", &[(V6, "fe80::1")]),
        ];
        let lease = vec![iface("vnet0", &[(V4, "192.168.122.10")])];
        let arp = vec![iface("vnet0", &[(V4, "192.168.122.99")])];
        // The agent saw only loopback and IPv6: fall back to the lease, never reach ARP.
        assert_eq!(
            first_addresses([agent, lease.clone(), arp.clone()]),
            ["192.168.122.10"]
        );
        let agent = vec![iface("eth0", &[(V4, "10.0.0.5"), (V6, "fe80::2")])];
        assert_eq!(first_addresses([agent, lease, arp.clone()]), ["10.0.0.5"]);
        assert_eq!(first_addresses([vec![], vec![], arp]), ["192.168.122.99"]);
        assert!(first_addresses([vec![], vec![], vec![]]).is_empty());
    }
}
