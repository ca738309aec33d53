//! `nox check NAME`: the compatibility probe, run inside the instance, and its verdicts.

use nox_core::backend::ExecIo;
use nox_core::compat;
use nox_core::{Backend, Error, InstanceName, InstanceRef, Result};

use crate::context::Context;

/// Probes the instance called `name`.
pub fn check(ctx: &Context, r: &InstanceRef) -> Result<compat::Report> {
    probe(ctx.backends.find(r)?, &r.name)
}

/// Runs the probe in the instance and decides.
pub fn probe(backend: &dyn Backend, name: &InstanceName) -> Result<compat::Report> {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    // The probe goes in on stdin: `sh -s` reads it, so nothing of it is a command line.
    let code = backend.exec_with(
        name,
        &["/bin/sh".into(), "-s".into()],
        ExecIo {
            stdin: compat::PROBE.as_bytes(),
            stdout: &mut out,
            stderr: &mut err,
        },
    )?;
    let text = String::from_utf8_lossy(&out);
    compat::report(name.as_str(), backend.kind(), &text).ok_or_else(|| {
        Error::failed(
            format!(
                "the check did not run in {name} (exit code {code}): {}",
                String::from_utf8_lossy(&err).trim()
            ),
            "nox check needs a POSIX shell and iproute2 in the guest",
        )
    })
}
