//! Instance names. A name becomes a hostname, a libvirt domain name, an LXC container
//! directory and part of file paths, so it is checked once, here, before it reaches any of them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A validated instance name: an RFC 1123 hostname label that starts with a letter,
/// `^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$`.
///
/// Read back from nox's own records and manifests (serde), a name may also end in '-', as
/// nox allowed before: such an instance stays listed (and its backups readable) instead of
/// vanishing, while every name the user gives is held to the hostname rule.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(into = "String")]
pub struct InstanceName(String);

pub const NAME_RULE: &str =
    "names are 1 to 63 characters: a lowercase letter, then lowercase letters, digits or '-', not ending in '-'";

/// Whether `name` is a hostname label as nox takes it (RFC 1123, starting with a letter, as
/// nox has always required): 1 to 63 of `[a-z0-9-]`, a letter first, no '-' last.
fn is_label(name: &str) -> bool {
    let b = name.as_bytes();
    let allowed = |c: &u8| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'-');
    matches!(b.first(), Some(b'a'..=b'z'))
        && b.last() != Some(&b'-')
        && b.len() <= 63
        && b.iter().all(allowed)
}

impl InstanceName {
    pub fn new(name: &str) -> Result<Self> {
        if !is_label(name) {
            // Every rejection states the same rule, so users learn it from any mistake.
            return Err(Error::InvalidName {
                name: name.to_string(),
                reason: NAME_RULE,
            });
        }
        Ok(InstanceName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A name as nox's records hold it: the hostname rule, or the older one that allowed a
    /// trailing '-' (`^[a-z][a-z0-9-]{0,62}$`), still safe as a path and a domain name.
    pub fn from_record(name: &str) -> Result<Self> {
        match InstanceName::new(name) {
            Ok(n) => Ok(n),
            Err(_)
                if name.len() <= 63
                    && name.ends_with('-')
                    && is_label(name.trim_end_matches('-')) =>
            {
                Ok(InstanceName(name.to_string()))
            }
            Err(e) => Err(e),
        }
    }
}

impl<'de> Deserialize<'de> for InstanceName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        InstanceName::from_record(&s).map_err(serde::de::Error::custom)
    }
}

impl FromStr for InstanceName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        InstanceName::new(s)
    }
}

impl TryFrom<String> for InstanceName {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        InstanceName::new(&s)
    }
}

impl From<InstanceName> for String {
    fn from(n: InstanceName) -> String {
        n.0
    }
}

impl fmt::Display for InstanceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for InstanceName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The name of a `[remotes.NAME]` entry: the same rule as instance names, so `REMOTE:NAME`
/// splits at its only colon.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RemoteName(String);

impl RemoteName {
    pub fn new(name: &str) -> Result<Self> {
        if name == "s3" {
            return Err(Error::InvalidName {
                name: name.into(),
                reason: "\"s3\" is reserved: backups in S3 are named s3:NAME",
            });
        }
        InstanceName::new(name)
            .map(|n| RemoteName(n.0))
            .map_err(|_| Error::InvalidName {
                name: name.to_string(),
                reason: "remote names are 1 to 63 characters: a lowercase letter, then lowercase letters, digits or '-', not ending in '-'",
            })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for RemoteName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        RemoteName::new(s)
    }
}

impl TryFrom<String> for RemoteName {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        RemoteName::new(&s)
    }
}

impl From<RemoteName> for String {
    fn from(n: RemoteName) -> String {
        n.0
    }
}

impl fmt::Display for RemoteName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An instance as the user names it: `NAME` on this host, or `REMOTE:NAME` on a configured
/// remote (`[remotes.REMOTE]`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InstanceRef {
    pub remote: Option<RemoteName>,
    pub name: InstanceName,
}

impl InstanceRef {
    /// An instance on this host.
    pub fn local(name: InstanceName) -> InstanceRef {
        InstanceRef { remote: None, name }
    }

    pub fn remote(&self) -> Option<&str> {
        self.remote.as_ref().map(RemoteName::as_str)
    }

    pub fn name(&self) -> &InstanceName {
        &self.name
    }
}

impl FromStr for InstanceRef {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.split_once(':') {
            None => Ok(InstanceRef::local(s.parse()?)),
            Some((remote, name)) => Ok(InstanceRef {
                remote: Some(remote.parse()?),
                name: name.parse()?,
            }),
        }
    }
}

impl TryFrom<String> for InstanceRef {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<InstanceRef> for String {
    fn from(r: InstanceRef) -> String {
        r.to_string()
    }
}

impl fmt::Display for InstanceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.remote {
            Some(r) => write!(f, "{r}:{}", self.name),
            None => write!(f, "{}", self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_name_an_instance_here_or_on_a_remote() {
        let r: InstanceRef = "web".parse().unwrap();
        assert_eq!((r.remote(), r.name.as_str()), (None, "web"));
        let r: InstanceRef = "cluster:web".parse().unwrap();
        assert_eq!((r.remote(), r.name.as_str()), (Some("cluster"), "web"));
        assert_eq!(r.to_string(), "cluster:web");
        for bad in [
            "",
            ":web",
            "cluster:",
            "a:b:c",
            "Cluster:web",
            "cluster:Web",
            "c l:web",
        ] {
            let e = bad.parse::<InstanceRef>().unwrap_err();
            assert!(e.is_bad_input(), "{bad}");
        }
        let e = "C:web".parse::<InstanceRef>().unwrap_err();
        assert!(e.to_string().contains("remote names"), "{e}");
        // Remote names follow the hostname rule too, and say so.
        let e = "lab-:web".parse::<InstanceRef>().unwrap_err();
        assert!(e.to_string().contains("not ending in '-'"), "{e}");
        assert!("web-".parse::<RemoteName>().unwrap_err().is_bad_input());
        assert!("s3".parse::<RemoteName>().is_err());
        assert!("s3x".parse::<RemoteName>().is_ok());
    }

    #[test]
    fn names_follow_the_hostname_rule() {
        let long_ok = format!("a{}", "b".repeat(62));
        let too_long = format!("a{}", "b".repeat(63));
        let cases: &[(&str, bool)] = &[
            ("web", true),
            ("a", true),
            ("db-1", true),
            ("x0-9", true),
            (&long_ok, true),
            ("", false),
            (&too_long, false),
            ("Web", false),
            ("1web", false),
            ("-web", false),
            ("web_1", false),
            ("web.example", false),
            ("we b", false),
            ("../etc", false),
            ("web;rm", false),
            ("wéb", false),
            // RFC 1123: a label does not end with a hyphen.
            ("web-", false),
            ("a-", false),
            ("-", false),
            ("a--b", true),
            ("a0", true),
            ("a-0", true),
            (&format!("a{}-", "b".repeat(61)), false),
            ("web\0", false),
            ("web\n", false),
        ];
        for (name, ok) in cases {
            let got = InstanceName::new(name);
            assert_eq!(got.is_ok(), *ok, "{name:?} -> {got:?}");
            if let Err(e) = got {
                assert!(e.is_bad_input());
                assert!(e.to_string().contains("lowercase letter"), "{e}");
            }
        }
    }

    #[test]
    fn records_keep_names_older_nox_allowed_but_users_cannot_give_them() {
        let old: InstanceName = serde_json::from_str("\"web-\"").unwrap();
        assert_eq!(old.as_str(), "web-");
        assert_eq!(serde_json::to_string(&old).unwrap(), "\"web-\"");
        assert!(serde_json::from_str::<InstanceName>("\"web--\"").is_ok());
        for bad in ["\"-\"", "\"1-\"", "\"Web-\"", "\"a/-\"", "\"\""] {
            assert!(serde_json::from_str::<InstanceName>(bad).is_err(), "{bad}");
        }
        let long = format!("\"a{}-\"", "b".repeat(62));
        assert!(serde_json::from_str::<InstanceName>(&long).is_err());
        assert!("web-".parse::<InstanceName>().is_err());
        assert!("web-".parse::<InstanceRef>().is_err());
    }

    proptest::proptest! {
        /// `REMOTE:NAME` and `NAME` print as they were parsed, and read back equal.
        #[test]
        fn references_read_back_as_written(r in crate::strategies::instance_ref()) {
            let text = r.to_string();
            proptest::prop_assert_eq!(text.parse::<InstanceRef>().unwrap(), r.clone());
            // And as JSON, as records and `--json` output hold them.
            let json = serde_json::to_string(&r).unwrap();
            proptest::prop_assert_eq!(serde_json::from_str::<InstanceRef>(&json).unwrap(), r);
        }

        /// A name with anything outside [a-z0-9-] in it is refused as bad input.
        #[test]
        fn names_with_other_characters_are_refused(
            head in "[a-z]{0,5}", bad in "[^a-z0-9-]", tail in "[a-z]{0,5}"
        ) {
            let s = format!("{head}{bad}{tail}");
            proptest::prop_assert!(InstanceName::new(&s).unwrap_err().is_bad_input());
        }
    }
}
