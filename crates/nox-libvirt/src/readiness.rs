//! "Ready" means the guest agent answers and cloud-init has finished. No fixed sleeps: we poll
//! the agent every 200 ms, so create returns within a poll of the guest being ready.

use std::time::{Duration, Instant};

use nox_core::{interrupt, Error, Progress};
use virt::domain::Domain;

use crate::agent::{AgentError, GuestAgent};

const POLL: Duration = Duration::from_millis(200);

impl From<AgentError> for Error {
    fn from(e: AgentError) -> Self {
        Error::Backend(e.to_string())
    }
}

fn timeout_error(name: &str, what: &str, timeout: Duration) -> Error {
    Error::failed(
        format!("timed out after {}s waiting for {what} in {name}", timeout.as_secs()),
        format!("the VM is left running: `nox console {name}` shows its boot, `nox delete --force {name}` removes it"),
    )
}

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
        interrupt::check()
    };
    agent.wait_ready(timeout, &tick).map_err(|e| match e {
        Error::Backend(m) if m.contains("timed out") => {
            timeout_error(name, "the guest agent", timeout)
        }
        other => other,
    })?;
    progress.done();
    progress.step(&format!("waiting for cloud-init in {name}"));
    let pid = agent.spawn(&["cloud-init", "status", "--wait"], None, true)?;
    loop {
        if let Some(out) = agent.exec_status(pid)? {
            progress.done();
            let text = out.stdout_text();
            if text.contains("status: done") {
                return Ok(());
            }
            return Err(Error::failed(
                format!(
                    "cloud-init did not finish cleanly in {name}: {}",
                    text.trim()
                ),
                format!("`nox exec {name} -- cloud-init status --long` says more"),
            ));
        }
        if start.elapsed() > timeout {
            progress.done();
            return Err(timeout_error(name, "cloud-init to finish", timeout));
        }
        progress.waiting("cloud-init", start.elapsed());
        interrupt::check()?;
        std::thread::sleep(POLL);
    }
}
