//! "Ready" means the guest agent answers and cloud-init has finished. No fixed sleeps: we poll
//! the agent every 100 ms, so create returns within a poll of the guest being ready.

use std::time::{Duration, Instant};

use nox_core::wait::wait_until;
use nox_core::{interrupt, Error, Progress};
use virt::domain::Domain;

use crate::agent::GuestAgent;
use crate::error::is_agent_timeout;

/// How often readiness is polled: within the 100 to 250 ms the spec allows.
const POLL: Duration = Duration::from_millis(100);

/// Waits until `dom` is ready, reporting progress; fails naming what it was waiting for.
pub fn wait(
    dom: &Domain,
    name: &str,
    timeout: Duration,
    progress: &dyn Progress,
) -> Result<(), Error> {
    let start = Instant::now();
    let agent = GuestAgent::new(dom);
    progress.step(&format!("booting {name}"));
    let tick = |_: Duration| -> Result<(), Error> {
        progress.waiting("the guest agent", start.elapsed());
        interrupt::check()?;
        still_running(dom, name)
    };
    agent.wait_ready(timeout, &tick).map_err(|e| match e {
        e if is_agent_timeout(&e) => Error::timed_out(name, "the guest agent", timeout),
        other => other,
    })?;
    progress.done();
    progress.step(&format!("waiting for cloud-init in {name}"));
    // cloud-init writes result.json when its last stage ends. Reading it through the agent is
    // cheaper and quicker than `cloud-init status --wait`, which starts Python and polls at 250 ms.
    let left = timeout.saturating_sub(start.elapsed());
    let result = wait_until(left, POLL, |_| {
        if let Some(result) = agent.read_small(RESULT_JSON)? {
            return Ok(Some(result));
        }
        progress.waiting("cloud-init", start.elapsed());
        interrupt::check()?;
        still_running(dom, name).map(|_| None)
    });
    progress.done();
    let result = result?.ok_or_else(|| Error::timed_out(name, "cloud-init to finish", timeout))?;
    match nox_core::cloud_init::result_errors(&result) {
        None => Ok(()),
        Some(errors) => Err(Error::failed(
            format!("cloud-init reported errors in {name}: {errors}"),
            format!("`nox exec {name} -- cloud-init status --long` says more"),
        )),
    }
}

/// A guest that powered off, crashed or was destroyed while we waited will never be ready:
/// say so now rather than at the timeout.
fn still_running(dom: &Domain, name: &str) -> Result<(), Error> {
    if dom.is_active().unwrap_or(false) {
        return Ok(());
    }
    Err(Error::failed(
        format!("{name} stopped while booting"),
        format!("its log is /var/log/libvirt/qemu/{name}.log; `nox start {name}` boots it again"),
    ))
}

const RESULT_JSON: &str = "/run/cloud-init/result.json";
