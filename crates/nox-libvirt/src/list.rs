//! `list` and `status`: every nox domain in one libvirt call, its state, and its addresses.
//!
//! Addresses come from the guest agent, then libvirt's DHCP leases, then the host's ARP table.
//! The agent is asked with a short response timeout, so a stuck guest costs at most that.

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
    let mut out: Vec<Instance> = records(&conn)
        .iter()
        .map(|(d, r)| instance(d, r, true))
        .collect();
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
        _ => ipv4.first().map(|ip| SshEndpoint {
            user: spec.user.clone(),
            host: ip.clone(),
            port: 22,
        }),
    };
    Instance {
        name: spec.name.to_string(),
        backend: BackendKind::Vm,
        state: st,
        ipv4,
        cpus: spec.cpus,
        memory_bytes: spec.memory_bytes,
        disk_bytes: Some(spec.disk_bytes),
        autostart: dom.autostart().unwrap_or(spec.autostart),
        image: spec.image.clone(),
        network: spec.network.to_string(),
        privileged: false,
        ssh,
        created_at: rec.created_at.clone(),
    }
}

/// IPv4 addresses from the first source that has any: agent, DHCP lease, ARP.
pub fn addresses(dom: &Domain) -> Vec<String> {
    use virt::sys;
    // SAFETY: the domain pointer is valid for the call; the timeout is a plain int.
    unsafe {
        sys::virDomainAgentSetResponseTimeout(dom.as_ptr(), AGENT_ADDR_TIMEOUT, 0);
    }
    for source in [
        sys::VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT,
        sys::VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE,
        sys::VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_ARP,
    ] {
        let ips = ipv4_from(dom.interface_addresses(source, 0).unwrap_or_default());
        if !ips.is_empty() {
            return ips;
        }
    }
    Vec::new()
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
