//! Port forwards for containers: nftables DNAT from a host socket to the container's address
//! on its bridge (see [`nox_core::forward::nft`]).
//!
//! The forwards live in nox's record (`nox.json`). The DNAT elements exist only while the
//! container runs, pointing at the address it has now: `start` (re)applies them once the
//! container has an IPv4 address (its DHCP lease can change between boots), `stop` and
//! `delete` remove them. A container liblxc autostarts at boot without nox gets its forwards
//! at the next `nox start`/`nox restart` or `nox forward add`.

use std::net::Ipv4Addr;
use std::time::Duration;

use nox_core::forward::{nft, Forward, ForwardKey};
use nox_core::instance::NetworkSpec;
use nox_core::{Error, InstanceName, Progress};

use crate::liblxc::Container;
use crate::list::find;
use crate::record::CtRecord;
use crate::LxcBackend;

/// How long a started container may take to get its address before forwards give up.
const ADDRESS_WAIT: Duration = Duration::from_secs(60);

fn bridge(b: &LxcBackend, rec: &CtRecord) -> String {
    match &rec.spec.network {
        NetworkSpec::Bridge(name) => name.clone(),
        _ if rec.spec.privileged => b.config.lxc.privileged_bridge.clone(),
        _ => b.config.lxc.bridge.clone(),
    }
}

fn guest_address(c: &Container) -> Option<Ipv4Addr> {
    c.ipv4()
        .iter()
        .filter(|ip| !nox_core::instance::is_tailnet(ip))
        .find_map(|ip| ip.parse().ok())
}

/// Points the record's forwards at the running container's current address, waiting for the
/// address if it has none yet.
pub fn apply(
    b: &LxcBackend,
    c: &Container,
    rec: &CtRecord,
    progress: &dyn Progress,
) -> Result<(), Error> {
    if rec.forwards.is_empty() {
        return Ok(());
    }
    let name = rec.spec.name.as_str();
    let address = match guest_address(c) {
        Some(a) => a,
        None => {
            progress.step(&format!(
                "waiting for {name}'s address for its port forwards"
            ));
            let got = nox_core::wait::wait_until(ADDRESS_WAIT, Duration::from_millis(250), |_| {
                nox_core::interrupt::check()?;
                Ok::<_, Error>(guest_address(c))
            });
            progress.done();
            got?.ok_or_else(|| {
                Error::failed(
                    format!(
                        "{name} has no IPv4 address after {}s, so its port forwards point nowhere",
                        ADDRESS_WAIT.as_secs()
                    ),
                    format!("check its network (`nox exec {name} -- ip addr`), then `nox restart {name}`"),
                )
            })?
        }
    };
    let targets: Vec<(Forward, Ipv4Addr)> = rec.forwards.iter().map(|f| (*f, address)).collect();
    nft::apply(&*b.host.runner, name, &bridge(b, rec), &targets)
}

/// Removes the record's DNAT elements (stop, delete).
pub fn withdraw(b: &LxcBackend, rec: &CtRecord) -> Result<(), Error> {
    nft::remove(&*b.host.runner, rec.spec.name.as_str(), &rec.forwards)
}

pub fn list(b: &LxcBackend, name: &InstanceName) -> Result<Vec<Forward>, Error> {
    Ok(find(b, name)?.1.forwards)
}

pub fn add(b: &LxcBackend, name: &InstanceName, forward: Forward) -> Result<Option<String>, Error> {
    let (c, mut rec) = find(b, name)?;
    let dir = b.config.lxc.lxcpath.join(name.as_str());
    let before = rec.clone();
    rec.forwards.push(forward);
    rec.write(&dir)
        .map_err(|e| Error::io("writing nox's record", e))?;
    if c.is_running() {
        let one = CtRecord {
            forwards: vec![forward],
            ..rec.clone()
        };
        if let Err(e) = apply(b, &c, &one, &nox_core::progress::Quiet) {
            // Leave nothing half-made: the record goes back to what it was.
            let _ = before.write(&dir);
            return Err(e);
        }
        return Ok(None);
    }
    Ok(Some(format!(
        "{name} is stopped: the forward takes effect when it starts"
    )))
}

pub fn remove(
    b: &LxcBackend,
    name: &InstanceName,
    key: ForwardKey,
) -> Result<(Vec<Forward>, Option<String>), Error> {
    let (_, mut rec) = find(b, name)?;
    let (gone, kept): (Vec<Forward>, Vec<Forward>) =
        rec.forwards.iter().partition(|f| f.matches(&key));
    if gone.is_empty() {
        return Err(nox_core::forward::no_such_forward(name, key));
    }
    nft::remove(&*b.host.runner, name.as_str(), &gone)?;
    rec.forwards = kept;
    rec.write(&b.config.lxc.lxcpath.join(name.as_str()))
        .map_err(|e| Error::io("writing nox's record", e))?;
    Ok((gone, None))
}
