//! start, stop, delete for containers.

use std::time::Duration;

use nox_core::{Error, InstanceName, Progress};

use crate::list::find;
use crate::{forwards, ready, LxcBackend};

pub fn start(
    b: &LxcBackend,
    name: &InstanceName,
    wait: Option<Duration>,
    progress: &dyn Progress,
) -> Result<(), Error> {
    let (c, mut rec) = find(b, name)?;
    // A backup killed while it had the container frozen leaves it so; start thaws it.
    if c.state() == "FROZEN" {
        c.unfreeze().map_err(Error::from)?;
    }
    if !c.is_running() {
        c.start().map_err(Error::from)?;
    }
    if let Some(t) = wait {
        ready::wait(&c, t, rec.cloud_init, progress)?;
    }
    if !rec.provisioned {
        ready::provision_directly(&c, &rec.spec)?;
        rec.provisioned = true;
        rec.write(&b.config.lxc.lxcpath.join(name.as_str()))
            .map_err(|e| Error::io("writing nox's record", e))?;
    }
    // The address may differ from the last boot's: forwards point at this one.
    forwards::apply(b, &c, &rec, progress)
}

pub fn stop(
    b: &LxcBackend,
    name: &InstanceName,
    force: bool,
    timeout: Duration,
    progress: &dyn Progress,
) -> Result<(), Error> {
    let (c, rec) = find(b, name)?;
    // The forwards go first: a stopped container's address may go to another guest.
    forwards::withdraw(b, &rec)?;
    if !c.is_running() {
        return Ok(());
    }
    if !force {
        progress.step(&format!("shutting {name} down"));
        let clean = c.shutdown(timeout.as_secs().clamp(1, i32::MAX as u64) as i32);
        progress.done();
        if clean {
            return Ok(());
        }
        progress.warn(&format!(
            "{name} did not shut down within {}s: killing it",
            timeout.as_secs()
        ));
    }
    c.stop().map_err(Error::from)
}

pub fn delete(b: &LxcBackend, name: &InstanceName, force: bool) -> Result<(), Error> {
    let (c, rec) = find(b, name)?;
    if c.is_running() {
        if !force {
            return Err(Error::Refused {
                message: format!("{name} is running"),
                hint: format!("stop it first (`nox stop {name}`), or `nox delete --force {name}`"),
            });
        }
        c.stop().map_err(Error::from)?;
        nox_core::fault::point("lxc.delete.stopped");
    }
    forwards::withdraw(b, &rec)?;
    // liblxc removes the overlay delta with the container; the directory holds the rest of
    // what nox wrote (config, record, log), so it goes whole.
    if c.is_defined() {
        c.destroy().map_err(Error::from)?;
    }
    nox_core::fault::point("lxc.delete.destroyed");
    let dir = b.config.lxc.lxcpath.join(name.as_str());
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("removing {}", dir.display()), e)),
    }
}
