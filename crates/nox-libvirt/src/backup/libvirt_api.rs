//! The libvirt calls backups need that the `virt` crate does not wrap (checkpoints, the
//! backup job, filesystem freeze, job statistics), as small safe functions over `virt::sys`.
//! Every `unsafe` block of the backup code is here.

use std::ffi::{CStr, CString};

use nox_core::Error;
use virt::domain::Domain;
use virt::sys;

use crate::connection::logged;

fn domain_name(dom: &Domain) -> String {
    dom.name().unwrap_or_default()
}

/// libvirt's last error, with what nox was doing.
pub fn last_error(context: &str) -> Error {
    crate::connection::err(context, virt::error::Error::last_error())
}

/// The names of the domain's checkpoints.
pub fn checkpoints(dom: &Domain) -> Result<Vec<String>, Error> {
    let mut list: *mut sys::virDomainCheckpointPtr = std::ptr::null_mut();
    // SAFETY: libvirt fills `list` with `n` checkpoint references, which we free below.
    let n = unsafe { sys::virDomainListAllCheckpoints(dom.as_ptr(), &mut list, 0) };
    if n < 0 {
        return Err(last_error("listing checkpoints"));
    }
    let mut names = Vec::with_capacity(n as usize);
    for i in 0..n as usize {
        // SAFETY: i < n; each element is a valid checkpoint until freed.
        unsafe {
            let cp = *list.add(i);
            let name = sys::virDomainCheckpointGetName(cp);
            if !name.is_null() {
                names.push(CStr::from_ptr(name).to_string_lossy().into_owned());
            }
            sys::virDomainCheckpointFree(cp);
        }
    }
    if !list.is_null() {
        // SAFETY: the array was allocated by libvirt with malloc.
        unsafe { libc::free(list.cast()) };
    }
    Ok(names)
}

pub fn delete_checkpoint(dom: &Domain, name: &str) -> Result<(), Error> {
    let cname = CString::new(name).map_err(|_| Error::failure("bad checkpoint name"))?;
    // SAFETY: plain calls on a live domain; the checkpoint reference is freed.
    unsafe {
        let cp = sys::virDomainCheckpointLookupByName(dom.as_ptr(), cname.as_ptr(), 0);
        if cp.is_null() {
            return Ok(());
        }
        let rc = logged("checkpointDelete", name, || {
            sys::virDomainCheckpointDelete(cp, 0)
        });
        sys::virDomainCheckpointFree(cp);
        if rc < 0 {
            return Err(last_error(&format!("deleting checkpoint {name}")));
        }
    }
    Ok(())
}

/// Freezes the guest's filesystems; `Err` says why not (no agent, say).
pub fn freeze(dom: &Domain) -> Result<i32, String> {
    // SAFETY: NULL mountpoints with count 0 means all filesystems.
    let n = logged("FSFreeze", &domain_name(dom), || unsafe {
        sys::virDomainFSFreeze(dom.as_ptr(), std::ptr::null_mut(), 0, 0)
    });
    if n < 0 {
        Err(virt::error::Error::last_error().message().to_string())
    } else {
        Ok(n)
    }
}

/// Thaws the guest's filesystems; true when some were frozen.
pub fn thaw(dom: &Domain) -> bool {
    // SAFETY: as in freeze.
    let thawed = logged("FSThaw", &domain_name(dom), || unsafe {
        sys::virDomainFSThaw(dom.as_ptr(), std::ptr::null_mut(), 0, 0)
    });
    thawed > 0
}

/// Thaws the guest however the start of the backup ends.
pub struct Thaw<'d>(pub Option<&'d Domain>);

impl Drop for Thaw<'_> {
    fn drop(&mut self) {
        if let Some(d) = self.0.take() {
            let _ = thaw(d);
        }
    }
}

/// The type of the domain's active job (`VIR_DOMAIN_JOB_NONE` when there is none).
pub fn active_job(dom: &Domain) -> (i32, u64, u64) {
    match dom.job_info() {
        Ok(j) => (
            j.r#type,
            j.data_processed.unwrap_or(0),
            j.data_total.unwrap_or(0),
        ),
        Err(_) => (sys::VIR_DOMAIN_JOB_NONE as i32, 0, 0),
    }
}

/// How the last job ended: `VIR_DOMAIN_JOB_COMPLETED`, `_FAILED` or `_CANCELLED`.
pub fn completed_job(dom: &Domain) -> i32 {
    let mut kind: libc::c_int = 0;
    let mut params: sys::virTypedParameterPtr = std::ptr::null_mut();
    let mut n: libc::c_int = 0;
    // SAFETY: libvirt allocates params; virTypedParamsFree releases them.
    unsafe {
        let rc = sys::virDomainGetJobStats(
            dom.as_ptr(),
            &mut kind,
            &mut params,
            &mut n,
            sys::VIR_DOMAIN_JOB_STATS_COMPLETED,
        );
        if !params.is_null() {
            sys::virTypedParamsFree(params, n);
        }
        if rc < 0 {
            return sys::VIR_DOMAIN_JOB_FAILED as i32;
        }
    }
    kind
}

/// Starts the push-mode backup job described by `backup_xml`, creating the checkpoint
/// `checkpoint_xml` at the same point in time.
pub fn begin_backup(dom: &Domain, backup_xml: &str, checkpoint_xml: &str) -> Result<(), Error> {
    let nul = |_| Error::failure("backup XML holds a NUL byte");
    let (bx, cx) = (
        CString::new(backup_xml).map_err(nul)?,
        CString::new(checkpoint_xml).map_err(nul)?,
    );
    // SAFETY: both strings outlive the call.
    let rc = logged("backupBegin", &domain_name(dom), || unsafe {
        sys::virDomainBackupBegin(dom.as_ptr(), bx.as_ptr(), cx.as_ptr(), 0)
    });
    if rc < 0 {
        return Err(last_error("starting the backup job"));
    }
    Ok(())
}

/// Asks libvirt to abort the domain's active job.
pub fn abort_job(dom: &Domain) {
    // SAFETY: plain call on a live domain.
    logged("abortJob", &domain_name(dom), || unsafe {
        sys::virDomainAbortJob(dom.as_ptr());
    });
}

/// Forgets checkpoint `name` in libvirt's metadata alone, for one whose bitmaps a snapshot
/// restore took off the disk (a plain delete would fail looking for them).
pub fn forget_checkpoint(dom: &Domain, name: &str) -> Result<(), Error> {
    let cname = CString::new(name).map_err(|_| Error::failure("bad checkpoint name"))?;
    // SAFETY: as in `delete_checkpoint`.
    unsafe {
        let cp = sys::virDomainCheckpointLookupByName(dom.as_ptr(), cname.as_ptr(), 0);
        if cp.is_null() {
            return Ok(());
        }
        let rc = logged("checkpointDelete(metadata only)", name, || {
            sys::virDomainCheckpointDelete(cp, sys::VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY)
        });
        sys::virDomainCheckpointFree(cp);
        if rc < 0 {
            return Err(last_error(&format!("forgetting checkpoint {name}")));
        }
    }
    Ok(())
}
