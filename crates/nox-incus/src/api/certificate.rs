//! Trusted certificates (shared/api/certificate.go).

use serde::{Deserialize, Serialize};

use super::null_default;

/// `POST /1.0/certificates`. Three uses, one body:
/// - as an admin, trust a certificate: `certificate` set;
/// - as an admin, make a trust token: `token: true` (type `client`);
/// - as an untrusted client, trust ourselves with a token: `trust_token` set to the whole
///   token as printed (Incus 6.0 decodes it, and takes name, type and projects from the token).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CertificatesPost {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub restricted: bool,
    pub projects: Vec<String>,
    /// Base64 DER (not PEM), or empty.
    pub certificate: String,
    pub description: String,
    pub trust_token: String,
    pub token: bool,
}

impl CertificatesPost {
    /// Trust `certificate_base64` (DER, base64) as client `name`.
    pub fn add(name: &str, certificate_base64: &str) -> Self {
        CertificatesPost {
            name: name.into(),
            kind: "client".into(),
            restricted: false,
            projects: Vec::new(),
            certificate: certificate_base64.into(),
            description: String::new(),
            trust_token: String::new(),
            token: false,
        }
    }

    /// Ask for a trust token for client `name`.
    pub fn token(name: &str) -> Self {
        CertificatesPost {
            token: true,
            ..Self::add(name, "")
        }
    }

    /// Present a trust token (the whole encoded token) over TLS with our client certificate.
    pub fn with_trust_token(token: &str) -> Self {
        CertificatesPost {
            trust_token: token.into(),
            ..Self::add("", "")
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Certificate {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub restricted: bool,
    #[serde(deserialize_with = "null_default")]
    pub projects: Vec<String>,
    /// PEM.
    pub certificate: String,
    pub description: String,
    pub fingerprint: String,
}
