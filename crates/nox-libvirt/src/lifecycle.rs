//! start, stop, delete.

use std::time::Duration;

use nox_core::instance::{InstanceState, NetworkSpec};
use nox_core::wait::wait_until;
use nox_core::{interrupt, Error, InstanceName, Progress};
use virt::connect::Connect;

use crate::connection::logged;
use crate::list::{find, state};
use crate::{forwards, network, readiness, LibvirtBackend};

const POLL: Duration = Duration::from_millis(200);

pub fn start(
    b: &LibvirtBackend,
    name: &InstanceName,
    wait: Option<Duration>,
    progress: &dyn Progress,
) -> Result<(), Error> {
    let conn = b.conn()?;
    let (dom, rec) = find(&conn, name)?;
    if !dom.is_active().unwrap_or(false) {
        progress.step(&format!("starting {name}"));
        logged("create", name.as_str(), || dom.create())
            .map_err(|e| crate::connection::err(&format!("starting {name}"), e))?;
        progress.done();
    }
    if let Some(timeout) = wait {
        readiness::wait(&dom, name.as_str(), timeout, progress)?;
    }
    // The guest's address can change between boots: forwards follow it.
    forwards::apply(b, &conn, &dom, &rec, progress)
}

pub fn stop(
    b: &LibvirtBackend,
    name: &InstanceName,
    force: bool,
    timeout: Duration,
    progress: &dyn Progress,
) -> Result<(), Error> {
    let conn = b.conn()?;
    let (dom, rec) = find(&conn, name)?;
    // First, so an address the guest gives up never carries its forwards to another guest.
    forwards::withdraw(b, &rec)?;
    if !dom.is_active().unwrap_or(false) {
        return Ok(());
    }
    if !force {
        progress.step(&format!("shutting {name} down"));
        // ACPI power button: the guest shuts down cleanly if it listens.
        let _ = logged("shutdown", name.as_str(), || dom.shutdown());
        let stopped = wait_until(timeout, POLL, |waited| {
            if state(&dom) == InstanceState::Stopped || !dom.is_active().unwrap_or(false) {
                return Ok(Some(()));
            }
            progress.waiting("the guest to shut down", waited);
            interrupt::check().map(|_| None)
        })?;
        progress.done();
        if stopped.is_some() {
            return Ok(());
        }
        progress.warn(&format!(
            "{name} did not shut down within {}s: forcing it off",
            timeout.as_secs()
        ));
    }
    logged("destroy", name.as_str(), || dom.destroy())
        .map_err(|e| crate::connection::err(&format!("forcing {name} off"), e))?;
    Ok(())
}

pub fn delete(b: &LibvirtBackend, name: &InstanceName, force: bool) -> Result<(), Error> {
    let conn = b.conn()?;
    let (dom, rec) = find(&conn, name)?;
    if dom.is_active().unwrap_or(false) && !force {
        return Err(Error::Refused {
            message: format!("{name} is running"),
            hint: format!("stop it first (`nox stop {name}`), or `nox delete --force {name}`"),
        });
    }
    forwards::withdraw(b, &rec)?;
    remove_domain(&conn, name.as_str())?;
    nox_core::fault::point("vm.delete.undefined");
    if !rec.forwards.is_empty() {
        forwards::unhook(b, &conn);
    }
    if matches!(rec.spec.network, NetworkSpec::Macvtap(_)) {
        network::remove_macvtap_for(&b.host, &rec.mac);
    }
    // Only nox's own directory for this VM: the record must name exactly the directory nox
    // would have made, whatever the metadata was edited to say.
    if rec.dir == b.instance_dir(name.as_str()) {
        std::fs::remove_dir_all(&rec.dir)
            .or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .map_err(|e| Error::io(format!("removing {}", rec.dir.display()), e))?;
    }
    Ok(())
}

/// Stops and undefines a domain with everything libvirt keeps for it.
pub fn remove_domain(conn: &Connect, name: &str) -> Result<(), Error> {
    use virt::sys;
    let Ok(dom) = conn.lookup_domain_by_name(name) else {
        return Ok(());
    };
    let err = |what: &'static str| {
        move |e: virt::error::Error| crate::connection::err(&format!("{what} {name}"), e)
    };
    if dom.is_active().unwrap_or(false) {
        logged("destroy", name, || dom.destroy()).map_err(err("forcing off"))?;
    }
    if dom.is_persistent().unwrap_or(false) {
        let flags = sys::VIR_DOMAIN_UNDEFINE_NVRAM
            | sys::VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
            | sys::VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
            | sys::VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA;
        logged("undefine", name, || dom.undefine_flags(flags)).map_err(err("undefining"))?;
    }
    Ok(())
}
