//! Trust: listing and adding certificates, making trust tokens, and the token flow of
//! `incus remote add` (cmd/incus/remote.go in Incus 6.0):
//!
//! 1. decode the token: the server's certificate fingerprint, its addresses, a secret;
//! 2. connect to an address over HTTPS with that fingerprint pinned and our client
//!    certificate presented;
//! 3. `POST /1.0/certificates` with `trust_token` set to the whole token (Incus decodes it
//!    and finds the pending token operation by its secret); Incus then trusts the certificate
//!    the connection presented.

use http::Method;

use crate::api::{Certificate, CertificatesPost};
use crate::client::{enc, operation_of, Client, Options};
use crate::endpoint::Endpoint;
use crate::error::{Error, Result};
use crate::tls::{self, ClientIdentity, Fingerprint, Pin};
use crate::token::TrustToken;
use crate::transport::{Call, Connector};

impl Client {
    /// `GET /1.0/certificates?recursion=1`.
    pub fn certificates(&self) -> Result<Vec<Certificate>> {
        self.get("/1.0/certificates?recursion=1".into())
    }

    /// As an admin: trust `identity`'s certificate as client `name`.
    pub fn add_certificate(&self, name: &str, identity: &ClientIdentity) -> Result<()> {
        let body = CertificatesPost::add(name, &identity.certificate_base64());
        self.call(Call::new(Method::POST, "/1.0/certificates".into()).json(&body))?;
        Ok(())
    }

    /// Presents this client's certificate with a trust token to the server this client talks
    /// to (its fingerprint pinned), as `incus remote add URL --token` does; the server then
    /// trusts the certificate.
    pub fn trust_token(&self, token: &str) -> Result<()> {
        let body = CertificatesPost::with_trust_token(token.trim());
        self.call(Call::new(Method::POST, "/1.0/certificates".into()).json(&body))?;
        if !self.server()?.is_trusted() {
            return Err(Error::protocol(
                "trusting by token",
                "the token was accepted but the server still does not trust this certificate",
            ));
        }
        Ok(())
    }

    /// `DELETE /1.0/certificates/FINGERPRINT`.
    pub fn delete_certificate(&self, fingerprint: &str) -> Result<()> {
        let path = format!("/1.0/certificates/{}", enc(fingerprint));
        self.call(Call::new(Method::DELETE, path))?;
        Ok(())
    }

    /// As an admin: a trust token for a client to be called `name` (`incus config trust add
    /// NAME`). The server must listen on the network. The token stays valid until used or
    /// revoked: its operation is not waited for.
    pub fn create_trust_token(&self, name: &str) -> Result<TrustToken> {
        let env = self.call(
            Call::new(Method::POST, "/1.0/certificates".into())
                .json(&CertificatesPost::token(name)),
        )?;
        let op = operation_of(&env)?;
        let field = |key: &str| {
            op.metadata_str(key)
                .map(String::from)
                .ok_or_else(|| Error::protocol("a trust token operation", format!("no `{key}`")))
        };
        let addresses = op
            .metadata
            .get("addresses")
            .and_then(|a| a.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let client_name = op
            .metadata
            .get("request")
            .and_then(|r| r.get("name"))
            .and_then(|n| n.as_str())
            .unwrap_or(name)
            .to_string();
        Ok(TrustToken {
            client_name,
            fingerprint: field("fingerprint")?,
            addresses,
            secret: field("secret")?,
            expires_at: op
                .metadata_str("expiresAt")
                .unwrap_or("0001-01-01T00:00:00Z")
                .to_string(),
        })
    }

    /// `incus remote add` with a token: trusts `identity` on the server the token names, and
    /// returns a client of it (HTTPS, the token's fingerprint pinned, project `default`).
    ///
    /// Tries the token's addresses in order; one that cannot be reached is skipped, any other
    /// failure (a wrong fingerprint, a refused or spent token) stops there.
    pub fn trust_with_token(
        token: &str,
        identity: &ClientIdentity,
        options: Options,
    ) -> Result<Client> {
        let decoded = TrustToken::decode(token)?;
        let pin = decoded.server_fingerprint();
        let mut unreachable = Vec::new();
        for address in &decoded.addresses {
            let endpoint = Endpoint::from_address(address)?;
            let client = Client::build(
                endpoint,
                Some(identity.clone()),
                Some(pin.clone()),
                options.clone(),
            )?;
            let body = CertificatesPost::with_trust_token(token.trim());
            match client.call(Call::new(Method::POST, "/1.0/certificates".into()).json(&body)) {
                Ok(_) => {
                    let server = client.server()?;
                    if !server.is_trusted() {
                        return Err(Error::protocol(
                            "trusting by token",
                            "the token was accepted but the server still does not trust this certificate",
                        ));
                    }
                    return Ok(client);
                }
                Err(e) if e.is_unreachable() => unreachable.push(e.to_string()),
                Err(e) => return Err(e),
            }
        }
        Err(Error::Connect {
            endpoint: decoded.addresses.join(", "),
            message: format!(
                "no address in the token answered: {}",
                unreachable.join("; ")
            ),
        })
    }
}

/// Connects to an HTTPS endpoint only to read its certificate's fingerprint, trusting nothing
/// and sending no request: for showing the user what to pin when no token vouches for it.
pub fn probe_fingerprint(endpoint: &Endpoint, options: &Options) -> Result<Fingerprint> {
    let slot = std::sync::Arc::new(std::sync::Mutex::new(None));
    let config = tls::client_config(Pin::Record(slot.clone()), None)?;
    let connector = Connector::new(endpoint.clone(), Some(config), options.connect_timeout);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting a runtime", e))?;
    rt.block_on(async {
        // The handshake completes or fails after the certificate is seen; either way the
        // connection is dropped unused.
        let _ = connector.connect().await?;
        Ok::<_, Error>(())
    })?;
    let seen = slot.lock().unwrap_or_else(|p| p.into_inner()).clone();
    seen.ok_or_else(|| Error::Connect {
        endpoint: endpoint.to_string(),
        message: "the server presented no certificate".into(),
    })
}
