//! Secrets in memory: auth keys, passwords and S3 keys are held in [`Zeroizing`] buffers,
//! overwritten with zeros when dropped, so a core dump, swap or a later bug reading freed
//! memory does not find them once they are used.
//!
//! What this cannot cover, and why (each place says so too): a copy a library makes for
//! itself (libvirt's RPC buffers, rust-s3's credentials, the standard library's stdout
//! buffer), the process environment a secret came from, and a copy the kernel holds in a
//! pipe until the other end reads it.

pub use zeroize::{Zeroize, Zeroizing};

/// A password nox made (`nox passwd`): printed once, never stored, wiped when dropped.
pub type Password = Zeroizing<String>;
