//! Instance names. A name becomes a hostname, a libvirt domain name, an LXC container
//! directory and part of file paths, so it is checked once, here, before it reaches any of them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A validated instance name: `^[a-z][a-z0-9-]{0,62}$`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InstanceName(String);

pub const NAME_RULE: &str =
    "names are 1 to 63 characters: a lowercase letter, then lowercase letters, digits or '-'";

impl InstanceName {
    pub fn new(name: &str) -> Result<Self> {
        let invalid = |reason| Error::InvalidName {
            name: name.to_string(),
            reason,
        };
        let bytes = name.as_bytes();
        match bytes.first() {
            Some(b'a'..=b'z') => {}
            // Every rejection states the same rule, so users learn it from any mistake.
            None | Some(_) => return Err(invalid(NAME_RULE)),
        }
        let allowed = |b: &u8| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-');
        if bytes.len() > 63 || !bytes.iter().all(allowed) {
            return Err(invalid(NAME_RULE));
        }
        Ok(InstanceName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
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
                reason: "remote names are 1 to 63 characters: a lowercase letter, then lowercase letters, digits or '-'",
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
}
