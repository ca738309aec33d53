//! `nox remote add NAME URL --token TOKEN`, as `incus remote add` does it: a new client
//! certificate for nox, the server's certificate fingerprint shown and checked against the
//! one the token vouches for, then pinned, and the certificate trusted through the token.

use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use nox_core::config::{RemoteConfig, RemoteDriver};
use nox_core::{Error, Result};

use super::error::BackendError;
use crate::{Client, ClientIdentity, Endpoint, Options, TrustToken};

/// Trusts nox on the remote at `url` and returns its `[remotes.NAME]` entry. The client
/// certificate and key are written under `dir` (the key 0600, in a 0700 directory); `note`
/// tells the user what is happening (the fingerprint, above all).
pub fn add(
    name: &str,
    url: &str,
    token: Option<&str>,
    dir: &Path,
    note: &dyn Fn(&str),
) -> Result<RemoteConfig> {
    let endpoint: Endpoint = url
        .parse()
        .map_err(|e: crate::Error| Error::Usage(format!("{e}")))?;
    let options = Options {
        connect_timeout: std::time::Duration::from_secs(5),
        ..Options::default()
    };
    if endpoint.is_unix() {
        // The socket's own permissions are the trust: nothing to exchange.
        let client =
            Client::connect(url, None, None, options).map_err(|e| Error::Usage(format!("{e}")))?;
        let server = client.server().map_err(|e| {
            Error::failed(
                format!("no Incus server answers at {url}: {e}"),
                "check that incusd runs and that you may use its socket",
            )
        })?;
        note(&format!(
            "{url}: Incus {} ({})",
            server.environment.server_version,
            if server.environment.server_clustered {
                "a cluster"
            } else {
                "one server"
            }
        ));
        return Ok(entry(url, None));
    }
    let token = token.ok_or_else(|| {
        Error::Usage(format!(
            "an HTTPS remote needs --token: make one on the server with `incus config trust add {name}`"
        ))
    })?;
    let decoded = TrustToken::decode(token)
        .map_err(|e| Error::Usage(format!("--token is not an Incus trust token: {e}")))?;
    let vouched = decoded.server_fingerprint();
    let seen = crate::probe_fingerprint(&endpoint, &options).map_err(|e| {
        Error::failed(
            format!("cannot reach {url}: {e}"),
            "check the address and port (Incus listens on 8443 by default)",
        )
    })?;
    note(&format!("{url}: certificate fingerprint {seen}"));
    if seen != vouched {
        return Err(Error::failed(
            format!(
                "{url} presented certificate {seen}, but the token vouches for {vouched}: not pinning it"
            ),
            "make sure the URL is the server that made the token (another server, or someone in between, answered)",
        ));
    }
    let cert = dir.join("client.crt");
    let key = dir.join("client.key");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    // A leftover pair from an earlier, failed attempt is replaced: it was never trusted.
    let _ = std::fs::remove_file(&key);
    let _ = std::fs::remove_file(&cert);
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let (identity, pem) =
        ClientIdentity::generate(&format!("nox@{}", host.trim())).map_err(|source| {
            BackendError::Local {
                what: "making a client certificate",
                source,
            }
        })?;
    pem.write(&cert, &key)
        .map_err(|source| BackendError::Local {
            what: "writing the client certificate",
            source,
        })?;
    let trusted = Client::https(endpoint, identity, seen.clone())
        .and_then(|c| c.trust_token(token).map(|_| c));
    let client = match trusted {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_file(&key);
            let _ = std::fs::remove_file(&cert);
            return Err(Error::failed(
                format!("{url} did not trust nox's certificate: {e}"),
                format!("tokens are single-use and expire: make a new one with `incus config trust add {name}`"),
            ));
        }
    };
    if let Ok(server) = client.server() {
        note(&format!(
            "trusted by {url} (Incus {}{})",
            server.environment.server_version,
            if server.environment.server_clustered {
                ", a cluster"
            } else {
                ""
            }
        ));
    }
    let mut e = entry(url, Some(seen.as_str().to_string()));
    e.client_cert = Some(cert);
    e.client_key = Some(key);
    Ok(e)
}

fn entry(url: &str, fingerprint: Option<String>) -> RemoteConfig {
    RemoteConfig {
        driver: RemoteDriver::Incus,
        url: url.into(),
        project: "default".into(),
        client_cert: None,
        client_key: None,
        fingerprint,
        privileged_network: None,
        storage_pool: "default".into(),
    }
}

/// One line on what answers at a remote: `Incus 6.0.4, cluster of 3 (member1, ...)`.
pub fn describe(remote: &super::Remote) -> Result<String> {
    let client = remote.quick()?;
    let server = client
        .server()
        .map_err(|e| super::err(&remote.name, "asking who it is", e))?;
    let env = &server.environment;
    if !env.server_clustered {
        return Ok(format!("Incus {}, one server", env.server_version));
    }
    let members = client
        .cluster_members()
        .map_err(|e| super::err(&remote.name, "listing members", e))?;
    let names: Vec<String> = members
        .iter()
        .map(|m| format!("{} {}", m.server_name, m.status.to_lowercase()))
        .collect();
    Ok(format!(
        "Incus {}, cluster of {}: {}",
        env.server_version,
        members.len(),
        names.join(", ")
    ))
}
