//! The safe face of liblxc. Only this module touches `lxc_sys`; it grows with the backend.

use std::ffi::CStr;

/// liblxc's version string, e.g. `5.0.2`.
pub fn version() -> String {
    // SAFETY: lxc_get_version returns a pointer to a static, NUL-terminated string owned by
    // liblxc (or NULL in a broken build, which we check).
    let ptr = unsafe { lxc_sys::lxc_get_version() };
    if ptr.is_null() {
        return "unknown".into();
    }
    // SAFETY: non-null and NUL-terminated as above; we copy it out immediately.
    unsafe { CStr::from_ptr(ptr) }
        .to_string_lossy()
        .into_owned()
}
