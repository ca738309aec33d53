//! Port forwards: a port on a host address that reaches a port of an instance.
//!
//! `HOST_PORT:GUEST_PORT[/tcp|/udp]` is what `nox forward add` takes; the host address is
//! 127.0.0.1 unless `--address` says otherwise. A forward is stored with its instance (a VM's
//! record in its domain XML, a container's record file) and made real by the backend: passt's
//! own port forwards for `user`-network VMs, nftables DNAT ([`nft`]) for instances on a bridge.

pub mod nft;

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The transport a forward carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Proto {
    type Err = Error;
    fn from_str(s: &str) -> Result<Proto, Error> {
        match s {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            other => Err(Error::Usage(format!(
                "unknown protocol {other:?}: use tcp or udp (e.g. 8080:80/udp)"
            ))),
        }
    }
}

/// One forward: `address:host_port/proto` on the host reaches `guest_port/proto` in the guest.
/// This is also its `--json` shape (in `status --json` and `nox forward list --json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Forward {
    pub proto: Proto,
    /// The host address it listens on; 0.0.0.0 means every address of the host.
    pub address: Ipv4Addr,
    pub host_port: u16,
    pub guest_port: u16,
}

impl Forward {
    /// Parses `HOST_PORT:GUEST_PORT[/tcp|/udp]` on `address`.
    pub fn parse(spec: &str, address: Ipv4Addr) -> Result<Forward, Error> {
        let bad = |why: &str| {
            Error::Usage(format!(
                "invalid forward {spec:?}: {why}; write HOST_PORT:GUEST_PORT[/tcp|/udp], e.g. 8080:80"
            ))
        };
        let (ports, proto) = match spec.split_once('/') {
            Some((ports, proto)) => (ports, proto.parse::<Proto>()?),
            None => (spec, Proto::Tcp),
        };
        let (host, guest) = ports
            .split_once(':')
            .ok_or_else(|| bad("no ':' between the ports"))?;
        Ok(Forward {
            proto,
            address,
            host_port: port(host).ok_or_else(|| bad("the host port is not 1-65535"))?,
            guest_port: port(guest).ok_or_else(|| bad("the guest port is not 1-65535"))?,
        })
    }

    /// Whether both forwards would claim the same host socket: same protocol and port, and
    /// addresses that overlap (equal, or either is 0.0.0.0).
    pub fn clashes_with(&self, other: &Forward) -> bool {
        self.proto == other.proto
            && self.host_port == other.host_port
            && (self.address == other.address
                || self.address.is_unspecified()
                || other.address.is_unspecified())
    }

    /// Whether `key` names this forward (see [`ForwardKey`]).
    pub fn matches(&self, key: &ForwardKey) -> bool {
        self.proto == key.proto
            && self.host_port == key.host_port
            && key.address.is_none_or(|a| a == self.address)
    }
}

impl fmt::Display for Forward {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{} -> {}/{}",
            self.address, self.host_port, self.guest_port, self.proto
        )
    }
}

/// How `nox forward rm` names a forward: `HOST_PORT[/PROTO]`, optionally on one address
/// (for two forwards of one port on different host addresses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardKey {
    pub proto: Proto,
    pub host_port: u16,
    pub address: Option<Ipv4Addr>,
}

impl ForwardKey {
    pub fn parse(spec: &str, address: Option<Ipv4Addr>) -> Result<ForwardKey, Error> {
        let (p, proto) = match spec.split_once('/') {
            Some((p, proto)) => (p, proto.parse::<Proto>()?),
            None => (spec, Proto::Tcp),
        };
        let host_port = port(p).ok_or_else(|| {
            Error::Usage(format!(
                "invalid forward {spec:?}: write the host port as HOST_PORT[/tcp|/udp], e.g. 8080"
            ))
        })?;
        Ok(ForwardKey {
            proto,
            host_port,
            address,
        })
    }
}

impl fmt::Display for ForwardKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.address {
            Some(a) => write!(f, "{a}:{}/{}", self.host_port, self.proto),
            None => write!(f, "{}/{}", self.host_port, self.proto),
        }
    }
}

/// `nox forward rm` of a forward the instance does not have (bad input: exit 2).
pub fn no_such_forward(name: &crate::InstanceName, key: ForwardKey) -> Error {
    Error::Usage(format!(
        "{name} has no forward on host port {key}; `nox forward list {name}` shows its forwards"
    ))
}

fn port(s: &str) -> Option<u16> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u16>().ok().filter(|p| *p != 0)
}

/// Whether something on this host already has `forward`'s socket: binds it for a moment.
/// `None` when free; otherwise the OS's words.
pub fn host_socket_taken(forward: &Forward) -> Option<String> {
    let addr = std::net::SocketAddr::from((forward.address, forward.host_port));
    let result = match forward.proto {
        Proto::Tcp => std::net::TcpListener::bind(addr).map(drop),
        Proto::Udp => std::net::UdpSocket::bind(addr).map(drop),
    };
    result.err().map(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LO: Ipv4Addr = Ipv4Addr::LOCALHOST;

    #[test]
    fn parses_ports_and_protocols() {
        let f = Forward::parse("8080:80", LO).unwrap();
        assert_eq!(
            f,
            Forward {
                proto: Proto::Tcp,
                address: LO,
                host_port: 8080,
                guest_port: 80
            }
        );
        assert_eq!(Forward::parse("53:5353/udp", LO).unwrap().proto, Proto::Udp);
        assert_eq!(f.to_string(), "127.0.0.1:8080 -> 80/tcp");
    }

    #[test]
    fn refuses_bad_specs_as_usage_errors() {
        for bad in [
            "8080",
            "0:80",
            "8080:0",
            "70000:80",
            "a:80",
            "8080:80/sctp",
            "+1:2",
            ":80",
            "8080:",
        ] {
            let err = Forward::parse(bad, LO).unwrap_err();
            assert!(err.is_bad_input(), "{bad}: {err}");
        }
    }

    #[test]
    fn clashes_on_overlapping_addresses_only() {
        let a = Forward::parse("8080:80", LO).unwrap();
        let any = Forward::parse("8080:81", Ipv4Addr::UNSPECIFIED).unwrap();
        let other = Forward::parse("8080:80", Ipv4Addr::new(127, 0, 0, 2)).unwrap();
        let udp = Forward::parse("8080:80/udp", LO).unwrap();
        assert!(a.clashes_with(&any) && any.clashes_with(&a));
        assert!(!a.clashes_with(&other));
        assert!(!a.clashes_with(&udp));
    }

    #[test]
    fn keys_match_by_port_protocol_and_optional_address() {
        let a = Forward::parse("8080:80", LO).unwrap();
        assert!(a.matches(&ForwardKey::parse("8080", None).unwrap()));
        assert!(a.matches(&ForwardKey::parse("8080/tcp", Some(LO)).unwrap()));
        assert!(!a.matches(&ForwardKey::parse("8080/udp", None).unwrap()));
        assert!(!a.matches(&ForwardKey::parse("8080", Some(Ipv4Addr::new(127, 0, 0, 2))).unwrap()));
        assert!(ForwardKey::parse("x", None).unwrap_err().is_bad_input());
    }

    #[test]
    fn a_listening_socket_is_seen_as_taken() {
        let l = std::net::TcpListener::bind((LO, 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        let f = Forward::parse(&format!("{port}:80"), LO).unwrap();
        assert!(host_socket_taken(&f).is_some());
        drop(l);
    }
}
