//! Port forwards for VMs on passt user networking (`--network user`): each forward is one more
//! `<portForward>` on the VM's passt interface, beside the SSH one.
//!
//! passt reads its forwards when QEMU starts it and cannot change them while it runs, so a
//! change reaches a running VM at its next start (`nox restart NAME`, which stops and starts
//! it), and nox says so. Hot-unplugging and replugging the NIC would apply it at once but
//! takes the guest's network away under it (open connections, DHCP, cloud-init's view of the
//! NIC), which a port forward should never cost.
//!
//! The forwards are kept in nox's record and in the interface's persistent definition
//! (`virDomainUpdateDeviceFlags` with `AFFECT_CONFIG`), so they survive restarts, host reboots
//! and libvirt's autostart without nox.
//!
//! VMs on a libvirt network or a bridge are refused for now (docs/backends.md says why).

use nox_core::forward::{Forward, ForwardKey};
use nox_core::instance::NetworkSpec;
use nox_core::{Error, InstanceName};
use virt::domain::Domain;
use virt::sys;

use crate::domain::{interface_xml, Nic};
use crate::list::find;
use crate::record::VmRecord;
use crate::resize::save_record;
use crate::LibvirtBackend;

pub fn list(b: &LibvirtBackend, name: &InstanceName) -> Result<Vec<Forward>, Error> {
    let conn = b.conn()?;
    Ok(find(&conn, name)?.1.forwards)
}

fn passt_only(name: &InstanceName, rec: &VmRecord) -> Result<u16, Error> {
    match (&rec.spec.network, rec.ssh_port) {
        (NetworkSpec::User, Some(port)) => Ok(port),
        (other, _) => Err(Error::Refused {
            message: format!(
                "{name} is on network {other}: nox forwards ports only to VMs on --network user (passt) and to containers"
            ),
            hint: "create the VM with --network user, or reach it through its own address".into(),
        }),
    }
}

/// Rewrites the interface's persistent definition and nox's record to hold `forwards`.
fn save(
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
    let ssh_port = passt_only(name, &rec)?;
    if forward.clashes_with(&Forward {
        proto: nox_core::forward::Proto::Tcp,
        address: std::net::Ipv4Addr::LOCALHOST,
        host_port: ssh_port,
        guest_port: 22,
    }) {
        return Err(Error::Usage(format!(
            "host port {} is {name}'s SSH forward: pick another port",
            forward.host_port
        )));
    }
    let mut forwards = rec.forwards.clone();
    forwards.push(forward);
    save(&dom, &mut rec, ssh_port, forwards)?;
    Ok(later(name, &dom))
}

pub fn remove(
    b: &LibvirtBackend,
    name: &InstanceName,
    key: ForwardKey,
) -> Result<(Vec<Forward>, Option<String>), Error> {
    let conn = b.conn()?;
    let (dom, mut rec) = find(&conn, name)?;
    let ssh_port = passt_only(name, &rec)?;
    let (gone, kept): (Vec<Forward>, Vec<Forward>) =
        rec.forwards.iter().partition(|f| f.matches(&key));
    if gone.is_empty() {
        return Err(nox_core::forward::no_such_forward(name, key));
    }
    save(&dom, &mut rec, ssh_port, kept)?;
    Ok((gone, later(name, &dom)))
}
