//! Opening the libvirt connection, with an error that says what to do.

use nox_core::Error;
use virt::connect::Connect;

pub fn open(uri: &str) -> Result<Connect, Error> {
    // libvirt prints its errors to stderr by default; nox reports them itself, once.
    virt::error::clear_error_callback();
    logged("open", uri, || Connect::open(Some(uri))).map_err(|e| {
        Error::failed(
            format!("cannot connect to libvirtd at {uri}: {}", e.message()),
            "start libvirtd (`libvirtd -d`, or `cargo xtask setup` on Debian 12) and check [vm] uri; `nox doctor` checks the host",
        )
    })
}

/// Makes one libvirt call, logging which, on what, and how long it took (`nox -vv`).
pub(crate) fn logged<T>(call: &str, on: &str, f: impl FnOnce() -> T) -> T {
    let started = std::time::Instant::now();
    let r = f();
    tracing::debug!(on, took = ?started.elapsed(), "libvirt {call}");
    r
}

/// A libvirt error as nox reports it.
pub fn err(context: &str, e: virt::error::Error) -> Error {
    crate::error::LibvirtError::call(context, e).into()
}
