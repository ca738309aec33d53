//! Where an Incus server listens: `unix:///path/unix.socket` or `https://host[:port]`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::Error;

/// Incus's default HTTPS port.
pub const DEFAULT_PORT: u16 = 8443;
/// The socket `unix://` (with no path) means, as for the `incus` CLI.
pub const DEFAULT_SOCKET: &str = "/var/lib/incus/unix.socket";

/// An Incus server address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// The local unix socket: no TLS, and root (or `incus-admin`) is trusted by the kernel.
    Unix(PathBuf),
    /// HTTPS, with a client certificate and the server's certificate pinned by fingerprint.
    /// `host` is a name, an IPv4 address, or an IPv6 address without brackets.
    Https { host: String, port: u16 },
}

impl Endpoint {
    /// An `address` as Incus lists them (in trust tokens, `core.https_address`, cluster
    /// members): `host:port`, `[v6]:port`, or a bare host.
    pub fn from_address(address: &str) -> Result<Endpoint, Error> {
        let address = address.trim();
        if address.contains("://") {
            return address.parse();
        }
        format!("https://{address}").parse()
    }

    /// `host:port` (IPv6 in brackets) for HTTPS; the socket path for unix.
    pub fn authority(&self) -> String {
        match self {
            Endpoint::Unix(path) => path.display().to_string(),
            Endpoint::Https { host, port } if host.contains(':') => format!("[{host}]:{port}"),
            Endpoint::Https { host, port } => format!("{host}:{port}"),
        }
    }

    pub fn is_unix(&self) -> bool {
        matches!(self, Endpoint::Unix(_))
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(path) => write!(f, "unix://{}", path.display()),
            Endpoint::Https { .. } => write!(f, "https://{}", self.authority()),
        }
    }
}

impl FromStr for Endpoint {
    type Err = Error;

    fn from_str(url: &str) -> Result<Self, Error> {
        let bad = |reason: &str| Error::InvalidUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let trimmed = url.trim();
        if let Some(path) = trimmed.strip_prefix("unix://") {
            if path.is_empty() {
                return Ok(Endpoint::Unix(PathBuf::from(DEFAULT_SOCKET)));
            }
            if !path.starts_with('/') {
                return Err(bad(
                    "a unix socket URL needs an absolute path: unix:///path/unix.socket",
                ));
            }
            if path.contains('?') || path.contains('#') {
                return Err(bad("a unix socket URL has no query or fragment"));
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        let Some(rest) = trimmed.strip_prefix("https://") else {
            return Err(bad(
                "expected unix:///path/unix.socket or https://host[:port] (Incus speaks only HTTPS over the network)",
            ));
        };
        let authority = match rest.find('/') {
            Some(i) if rest[i..].trim_end_matches('/').is_empty() => &rest[..i],
            Some(_) => return Err(bad("an Incus URL has no path: https://host[:port]")),
            None => rest,
        };
        if authority.contains(['?', '#', '@']) {
            return Err(bad("an Incus URL has no user, query or fragment"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("unclosed [ in an IPv6 address"))?;
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| bad("expected :port after ]"))?,
                ),
            };
            (host, port)
        } else if authority.matches(':').count() > 1 {
            return Err(bad(
                "an IPv6 address must be in brackets: https://[::1]:8443",
            ));
        } else {
            match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| bad("the port is not a number from 1 to 65535"))?,
        };
        Ok(Endpoint::Https {
            host: host.to_string(),
            port,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn https(host: &str, port: u16) -> Endpoint {
        Endpoint::Https {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn parses_unix_urls() {
        assert_eq!(
            "unix:///var/lib/nox-incus-cluster/member1/incus/unix.socket"
                .parse::<Endpoint>()
                .unwrap(),
            Endpoint::Unix("/var/lib/nox-incus-cluster/member1/incus/unix.socket".into())
        );
        assert_eq!(
            "unix://".parse::<Endpoint>().unwrap(),
            Endpoint::Unix(DEFAULT_SOCKET.into())
        );
        assert!("unix://relative/unix.socket".parse::<Endpoint>().is_err());
    }

    #[test]
    fn parses_https_urls() {
        assert_eq!(
            "https://100.64.73.11:8443".parse::<Endpoint>().unwrap(),
            https("100.64.73.11", 8443)
        );
        assert_eq!(
            "https://incus.example".parse::<Endpoint>().unwrap(),
            https("incus.example", 8443)
        );
        assert_eq!(
            "https://incus.example:9443/".parse::<Endpoint>().unwrap(),
            https("incus.example", 9443)
        );
        assert_eq!(
            "https://[fd00::1]:8443".parse::<Endpoint>().unwrap(),
            https("fd00::1", 8443)
        );
        assert_eq!(
            "https://[fd00::1]".parse::<Endpoint>().unwrap(),
            https("fd00::1", 8443)
        );
    }

    #[test]
    fn refuses_what_incus_does_not_speak() {
        for url in [
            "http://host:8443",
            "host:8443",
            "https://",
            "https://host:0",
            "https://host:99999",
            "https://host:port",
            "https://host/1.0",
            "https://user@host",
            "https://fd00::1:8443",
            "https://[fd00::1:8443",
        ] {
            assert!(url.parse::<Endpoint>().is_err(), "{url} should be refused");
        }
    }

    #[test]
    fn addresses_from_tokens_and_members() {
        assert_eq!(
            Endpoint::from_address("100.64.73.12:8443").unwrap(),
            https("100.64.73.12", 8443)
        );
        assert_eq!(
            Endpoint::from_address("[fd00::2]:8443").unwrap(),
            https("fd00::2", 8443)
        );
        assert_eq!(
            Endpoint::from_address("https://100.64.73.13:8443").unwrap(),
            https("100.64.73.13", 8443)
        );
    }

    #[test]
    fn displays_round_trip() {
        for url in [
            "https://100.64.73.11:8443",
            "https://[fd00::1]:8443",
            "unix:///run/incus/unix.socket",
        ] {
            assert_eq!(url.parse::<Endpoint>().unwrap().to_string(), url);
        }
    }
}
