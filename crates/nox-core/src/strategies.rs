//! proptest strategies for nox's vocabulary, shared by the round-trip properties of the
//! modules that write and read each value. Test builds only.

use proptest::prelude::*;

use crate::name::{InstanceName, InstanceRef, RemoteName};

/// Any valid instance name: 1 to 63 characters, a letter first, no '-' last.
pub fn instance_name() -> impl Strategy<Value = InstanceName> {
    "[a-z]([a-z0-9-]{0,61}[a-z0-9])?".prop_map(|s| InstanceName::new(&s).unwrap())
}

/// Any valid remote name (an instance name other than the reserved `s3`).
pub fn remote_name() -> impl Strategy<Value = RemoteName> {
    "[a-z]([a-z0-9-]{0,61}[a-z0-9])?"
        .prop_filter("s3 is reserved", |s| s != "s3")
        .prop_map(|s| RemoteName::new(&s).unwrap())
}

/// `NAME` or `REMOTE:NAME`.
pub fn instance_ref() -> impl Strategy<Value = InstanceRef> {
    (proptest::option::of(remote_name()), instance_name())
        .prop_map(|(remote, name)| InstanceRef { remote, name })
}

/// A backup id, `YYYYMMDDTHHMMSSZ[-N]`.
pub fn backup_id() -> impl Strategy<Value = String> {
    "[0-9]{8}T[0-9]{6}Z(-[0-9]{1,4})?"
}
