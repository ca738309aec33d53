//! Naming backups: ids (`YYYYMMDDTHHMMSSZ[-N]`) and what the user types to mean one
//! (`NAME/ID`, `NAME`, `s3:NAME/ID`).

use std::time::SystemTime;

use crate::error::{Error, Result};
use crate::name::InstanceRef;

/// Which backup the user means: `NAME/ID`, or `NAME` for its newest; `s3:` for the remote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupRef {
    pub s3: bool,
    /// The instance, on this host or `REMOTE:NAME`.
    pub instance: InstanceRef,
    pub id: Option<String>,
}

impl std::str::FromStr for BackupRef {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let (s3, rest) = match s.strip_prefix("s3:") {
            Some(r) => (true, r),
            None => (false, s),
        };
        let (name, id) = match rest.split_once('/') {
            Some((n, id)) => (n, Some(id)),
            None => (rest, None),
        };
        let bad = || {
            Error::Usage(format!(
                "invalid backup {s:?}: give [REMOTE:]NAME/ID or [REMOTE:]NAME (its newest backup), with s3: in front for one in S3; `nox backups` lists them"
            ))
        };
        let instance: InstanceRef = name.parse().map_err(|_| bad())?;
        if let Some(id) = id {
            if !is_id(id) {
                return Err(bad());
            }
        }
        Ok(BackupRef {
            s3,
            instance,
            id: id.map(String::from),
        })
    }
}

impl std::fmt::Display for BackupRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.s3 {
            f.write_str("s3:")?;
        }
        write!(f, "{}", self.instance)?;
        if let Some(id) = &self.id {
            write!(f, "/{id}")?;
        }
        Ok(())
    }
}

/// `YYYYMMDDTHHMMSSZ`, optionally `-N`: the only shape of a backup id, so an id is safe as a
/// path component and an S3 key part.
pub fn is_id(s: &str) -> bool {
    let (stamp, n) = match s.split_once('-') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    let b = stamp.as_bytes();
    b.len() == 16
        && b[8] == b'T'
        && b[15] == b'Z'
        && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit)
        && n.is_none_or(|n| !n.is_empty() && n.len() <= 4 && n.bytes().all(|c| c.is_ascii_digit()))
}

/// A new backup id for `now`: `YYYYMMDDTHHMMSSZ`.
pub fn new_id(now: SystemTime) -> String {
    let stamp = crate::backup::rfc3339(now);
    // 2026-11-25T22:50:12Z -> 20261125T225012Z
    stamp.chars().filter(|c| *c != '-' && *c != ':').collect()
}

/// RFC 3339 seconds, UTC.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Sort key of an id: its time stamp, then its counter.
pub(super) fn order(id: &str) -> (String, u32) {
    match id.split_once('-') {
        Some((s, n)) => (s.to_string(), n.parse().unwrap_or(0)),
        None => (id.to_string(), 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_refs() {
        assert!(is_id("20261125T225012Z"));
        assert!(is_id("20261125T225012Z-2"));
        for bad in [
            "",
            "2026",
            "20261125T225012",
            "20261125X225012Z",
            "../x",
            "20261125T225012Z-",
            "20261125T22501aZ",
        ] {
            assert!(!is_id(bad), "{bad}");
        }
        let id = new_id(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_795_000_000));
        assert!(is_id(&id), "{id}");
        let r: BackupRef = "s3:web/20261125T225012Z".parse().unwrap();
        assert!(r.s3);
        assert_eq!(r.instance.to_string(), "web");
        assert_eq!(r.to_string(), "s3:web/20261125T225012Z");
        let r: BackupRef = "web".parse().unwrap();
        assert_eq!((r.s3, r.id), (false, None));
        let r: BackupRef = "s3:cluster:web/20261125T225012Z".parse().unwrap();
        assert!(r.s3);
        assert_eq!(r.instance.to_string(), "cluster:web");
        assert_eq!(r.to_string(), "s3:cluster:web/20261125T225012Z");
        for bad in ["", "Web", "web/../../etc", "web/", "s3:", "web/x/y"] {
            let e = bad.parse::<BackupRef>().unwrap_err();
            assert!(e.is_bad_input(), "{bad}");
        }
    }

    proptest::proptest! {
        /// `[s3:][REMOTE:]NAME[/ID]` prints as it was parsed and reads back equal.
        #[test]
        fn references_read_back_as_written(
            s3: bool,
            instance in crate::strategies::instance_ref(),
            id in proptest::option::of(crate::strategies::backup_id()),
        ) {
            let r = BackupRef { s3, instance, id };
            proptest::prop_assert_eq!(r.to_string().parse::<BackupRef>().unwrap(), r);
        }
    }
}
