//! Trust tokens, as `incus config trust add` prints them and `incus remote add` takes them:
//! base64 (standard alphabet) of a JSON object naming the client, the server certificate's
//! fingerprint, the server's addresses and a secret (Incus 6.0 shared/api/certificate.go,
//! `CertificateAddToken`).

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::tls::Fingerprint;

/// Go's zero `time.Time`, which Incus writes for a token that never expires.
const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// A decoded trust token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustToken {
    /// The name the client certificate will be trusted under.
    pub client_name: String,
    /// The server (cluster) certificate's fingerprint: pin it when connecting.
    pub fingerprint: String,
    /// Where the server listens (`host:port`), in the order to try.
    pub addresses: Vec<String>,
    /// The secret that matches the server's pending token operation.
    pub secret: String,
    /// When the token expires (RFC 3339); Go's zero time when it never does.
    #[serde(default = "zero_time")]
    pub expires_at: String,
}

fn zero_time() -> String {
    GO_ZERO_TIME.to_string()
}

impl TrustToken {
    /// Decodes a token and checks it has what the trust flow needs (as Incus's own
    /// `CertificateTokenDecode` does). Whitespace around it (a pasted newline) is ignored.
    pub fn decode(token: &str) -> Result<TrustToken, Error> {
        let token = token.trim();
        let engines = [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::STANDARD_NO_PAD,
        ];
        let json = engines
            .iter()
            .find_map(|e| e.decode(token).ok())
            .ok_or_else(|| Error::Token("not base64".into()))?;
        let value: serde_json::Value = serde_json::from_slice(&json)
            .map_err(|e| Error::Token(format!("not JSON inside the base64: {e}")))?;
        if value.get("server_name").is_some() && value.get("client_name").is_none() {
            return Err(Error::Token(
                "this is a cluster join token (for `incus admin init`), not a trust token \
                 (`incus config trust add NAME`)"
                    .into(),
            ));
        }
        let t: TrustToken = serde_json::from_value(value)
            .map_err(|e| Error::Token(format!("unexpected fields: {e}")))?;
        let missing = |what: &str| Err(Error::Token(format!("no {what} in the token")));
        if t.client_name.is_empty() {
            return missing("client name");
        }
        if t.addresses.is_empty() {
            return missing("server address");
        }
        if t.secret.is_empty() {
            return missing("secret");
        }
        if t.fingerprint.is_empty() {
            return missing("certificate fingerprint");
        }
        t.fingerprint.parse::<Fingerprint>()?;
        Ok(t)
    }

    /// The token as Incus prints it: base64 of the JSON, fields in Incus's order.
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).expect("a token serializes");
        base64::engine::general_purpose::STANDARD.encode(json)
    }

    /// The pinned fingerprint, parsed.
    pub fn server_fingerprint(&self) -> Fingerprint {
        self.fingerprint
            .parse()
            .expect("decode() checked the fingerprint")
    }

    /// When it expires, if it does.
    pub fn expiry(&self) -> Option<&str> {
        (self.expires_at != GO_ZERO_TIME && !self.expires_at.is_empty())
            .then_some(self.expires_at.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A token exactly as Incus 6.0.4 printed it (`incus config trust add nox-probe`); the
    /// secret is from a throw-away cluster, and the token was revoked at once.
    const REAL: &str = "eyJjbGllbnRfbmFtZSI6Im5veC1wcm9iZSIsImZpbmdlcnByaW50IjoiMjJlNmVlMmFmNGE1YmI4Mzk3ODQ4OTMzYjk0ZTM4OWM1MTYxNWU3MDdlZjJlZGRkYWM3MTQyZjQ5NmNhNjEwYyIsImFkZHJlc3NlcyI6WyIxMDAuNjQuNzMuMTE6ODQ0MyJdLCJzZWNyZXQiOiJhMmJmMDEyZmM3NjE2ZDgxZGVhODJjOTQ3NWUwZjA2YzhkOTgyM2JlZWVhNGU3NTc4NmEyMDBmOTc4OThjZGY1IiwiZXhwaXJlc19hdCI6IjAwMDEtMDEtMDFUMDA6MDA6MDBaIn0=";

    #[test]
    fn decodes_an_incus_token_and_encodes_it_back_identically() {
        let t = TrustToken::decode(&format!("  {REAL}\n")).unwrap();
        assert_eq!(t.client_name, "nox-probe");
        assert_eq!(t.addresses, ["100.64.73.11:8443"]);
        assert_eq!(
            t.server_fingerprint().as_str(),
            "22e6ee2af4a5bb8397848933b94e389c51615e707ef2edddac7142f496ca610c"
        );
        assert_eq!(t.expiry(), None);
        assert_eq!(t.encode(), REAL);
    }

    #[test]
    fn refuses_what_is_not_a_usable_trust_token() {
        assert!(TrustToken::decode("%%%").is_err());
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        assert!(TrustToken::decode(&b64("not json")).is_err());
        let join = b64(
            r#"{"server_name":"member2","fingerprint":"aa","addresses":["x:1"],"secret":"s","expires_at":"2030-01-01T00:00:00Z"}"#,
        );
        let err = TrustToken::decode(&join).unwrap_err().to_string();
        assert!(err.contains("cluster join token"), "{err}");
        let fp = "2a38be5de392b90876467eb943113e0826804e89ed4e81e7df91158fd381bbda";
        let no_addr = b64(&format!(
            r#"{{"client_name":"c","fingerprint":"{fp}","addresses":[],"secret":"s"}}"#
        ));
        assert!(TrustToken::decode(&no_addr)
            .unwrap_err()
            .to_string()
            .contains("address"));
        let bad_fp =
            b64(r#"{"client_name":"c","fingerprint":"zz","addresses":["a:1"],"secret":"s"}"#);
        assert!(TrustToken::decode(&bad_fp).is_err());
        let expiring = b64(&format!(
            r#"{{"client_name":"c","fingerprint":"{fp}","addresses":["a:1"],"secret":"s","expires_at":"2030-01-01T00:00:00Z"}}"#
        ));
        assert_eq!(
            TrustToken::decode(&expiring).unwrap().expiry(),
            Some("2030-01-01T00:00:00Z")
        );
    }
}
