//! TLS for the HTTPS transport: a client identity (certificate and key) and a server
//! certificate pinned by its SHA-256 fingerprint. No CA is consulted: Incus servers present
//! self-signed certificates, and the fingerprint (from a trust token, or shown to the user and
//! confirmed) is the trust anchor, as in the `incus` CLI.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::error::Error;

/// A certificate's SHA-256 fingerprint over its DER encoding, as Incus prints it (64 lowercase
/// hex digits).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// The fingerprint of a DER-encoded certificate.
    pub fn of_der(der: &[u8]) -> Fingerprint {
        Fingerprint(hex(&Sha256::digest(der)))
    }

    /// The fingerprint of the first certificate in a PEM text.
    pub fn of_pem(pem: &str) -> Result<Fingerprint, Error> {
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| Error::Identity {
            path: "<PEM>".into(),
            message: format!("no certificate in the PEM text: {e}"),
        })?;
        Ok(Fingerprint::of_der(&der))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Fingerprint {
    type Err = Error;

    /// 64 hex digits, in either case, optionally separated by colons (as `openssl` prints).
    fn from_str(s: &str) -> Result<Self, Error> {
        let digits: String = s.trim().chars().filter(|&c| c != ':').collect();
        if digits.len() != 64 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(Error::Token(format!(
                "`{s}` is not a SHA-256 certificate fingerprint (64 hex digits)"
            )));
        }
        Ok(Fingerprint(digits.to_ascii_lowercase()))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", self.0)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A client certificate and its private key, presented to Incus over HTTPS.
pub struct ClientIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Clone for ClientIdentity {
    fn clone(&self) -> Self {
        ClientIdentity {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("ClientIdentity")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl ClientIdentity {
    /// Reads a PEM certificate (chain) and a PEM private key (PKCS#8, SEC1 or PKCS#1).
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<ClientIdentity, Error> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|e| Error::Identity {
                path: path.to_path_buf(),
                message: e.to_string(),
            })
        };
        let (cert_pem, key_pem) = (read(cert)?, read(key)?);
        Self::parse(&cert_pem, &key_pem, cert, key)
    }

    /// The same, from PEM texts in memory.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<ClientIdentity, Error> {
        Self::parse(
            cert_pem.as_bytes(),
            key_pem.as_bytes(),
            Path::new("<certificate PEM>"),
            Path::new("<key PEM>"),
        )
    }

    fn parse(
        cert_pem: &[u8],
        key_pem: &[u8],
        cert_path: &Path,
        key_path: &Path,
    ) -> Result<ClientIdentity, Error> {
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::Identity {
                path: cert_path.to_path_buf(),
                message: format!("not a PEM certificate: {e}"),
            })?;
        if chain.is_empty() {
            return Err(Error::Identity {
                path: cert_path.to_path_buf(),
                message: "no certificate in the file".into(),
            });
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| Error::Identity {
            path: key_path.to_path_buf(),
            message: format!("not a PEM private key: {e}"),
        })?;
        // A key that does not fit the provider fails here, not at the first handshake.
        provider()
            .key_provider
            .load_private_key(key.clone_key())
            .map_err(|e| Error::Identity {
                path: key_path.to_path_buf(),
                message: format!("unusable private key: {e}"),
            })?;
        Ok(ClientIdentity { chain, key })
    }

    /// A new self-signed client certificate (ECDSA P-384, as Incus makes its own) for `name`,
    /// with its key. Returns the identity and both as PEM, for the caller to store (the key
    /// with mode 0600).
    pub fn generate(name: &str) -> Result<(ClientIdentity, GeneratedPem), Error> {
        let fail = |e: rcgen::Error| Error::Identity {
            path: "<generated>".into(),
            message: e.to_string(),
        };
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).map_err(fail)?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key).map_err(fail)?;
        let pem = GeneratedPem {
            certificate: cert.pem(),
            key: key.serialize_pem(),
        };
        let identity = ClientIdentity::from_pem(&pem.certificate, &pem.key)?;
        Ok((identity, pem))
    }

    /// The fingerprint of the client certificate: what Incus lists it under.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of_der(&self.chain[0])
    }

    /// The certificate's DER, base64: the `certificate` field of `POST /1.0/certificates`.
    pub fn certificate_base64(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(&self.chain[0])
    }
}

/// A generated certificate and key, PEM-encoded.
#[derive(Clone)]
pub struct GeneratedPem {
    pub certificate: String,
    pub key: String,
}

impl fmt::Debug for GeneratedPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedPem")
            .field("certificate", &self.certificate)
            .finish_non_exhaustive()
    }
}

impl GeneratedPem {
    /// Writes the certificate (0644) and the key (0600, created so: never readable by others,
    /// not even for an instant). Refuses to overwrite an existing key.
    pub fn write(&self, cert: &Path, key: &Path) -> Result<(), Error> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let io =
            |path: &Path, e: std::io::Error| Error::io(format!("writing {}", path.display()), e);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(key)
            .map_err(|e| io(key, e))?;
        f.write_all(self.key.as_bytes()).map_err(|e| io(key, e))?;
        f.sync_all().map_err(|e| io(key, e))?;
        std::fs::write(cert, &self.certificate).map_err(|e| io(cert, e))
    }
}

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What a TLS connection checks the server's certificate against.
#[derive(Debug, Clone)]
pub(crate) enum Pin {
    /// Only a certificate with this fingerprint is accepted.
    Fingerprint(Fingerprint),
    /// Any certificate, whose fingerprint is recorded: only to show it to a user who then
    /// decides (`probe_fingerprint`). Never used to send a request.
    Record(Arc<Mutex<Option<Fingerprint>>>),
}

/// The error a pinned verifier returns, found again in the handshake error to report it well.
#[derive(Debug)]
pub(crate) struct Mismatch {
    pub expected: Fingerprint,
    pub actual: Fingerprint,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "server certificate fingerprint {} is not the pinned {}",
            self.actual, self.expected
        )
    }
}

impl std::error::Error for Mismatch {}

#[derive(Debug)]
struct PinnedVerifier {
    pin: Pin,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let actual = Fingerprint::of_der(end_entity);
        match &self.pin {
            Pin::Fingerprint(expected) if *expected == actual => {
                Ok(ServerCertVerified::assertion())
            }
            Pin::Fingerprint(expected) => Err(rustls::Error::InvalidCertificate(
                CertificateError::Other(OtherError(Arc::new(Mismatch {
                    expected: expected.clone(),
                    actual,
                }))),
            )),
            Pin::Record(slot) => {
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(actual);
                Ok(ServerCertVerified::assertion())
            }
        }
    }

    // The handshake signatures are still verified: the server must hold the pinned
    // certificate's key, not merely replay the certificate.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A rustls client configuration: the server pinned (or recorded), our identity if any.
pub(crate) fn client_config(
    pin: Pin,
    identity: Option<&ClientIdentity>,
) -> Result<rustls::ClientConfig, Error> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Connect {
            endpoint: "<TLS setup>".into(),
            message: e.to_string(),
        })?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedVerifier { pin, provider }));
    match identity {
        Some(id) => builder
            .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
            .map_err(|e| Error::Identity {
                path: "<client certificate>".into(),
                message: e.to_string(),
            }),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// Finds a [`Mismatch`] inside a TLS handshake error.
pub(crate) fn mismatch_in(err: &std::io::Error) -> Option<(Fingerprint, Fingerprint)> {
    let tls = err.get_ref()?.downcast_ref::<rustls::Error>()?;
    match tls {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => {
            let m = other.0.downcast_ref::<Mismatch>()?;
            Some((m.expected.clone(), m.actual.clone()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_in_any_usual_spelling() {
        let lower = "2a38be5de392b90876467eb943113e0826804e89ed4e81e7df91158fd381bbda";
        let colons = "2A:38:BE:5D:E3:92:B9:08:76:46:7E:B9:43:11:3E:08:26:80:4E:89:ED:4E:81:E7:DF:91:15:8F:D3:81:BB:DA";
        assert_eq!(lower.parse::<Fingerprint>().unwrap().as_str(), lower);
        assert_eq!(colons.parse::<Fingerprint>().unwrap().as_str(), lower);
        assert!("2a38be".parse::<Fingerprint>().is_err());
        assert!(lower.replace('a', "g").parse::<Fingerprint>().is_err());
    }

    #[test]
    fn generated_identity_round_trips_through_pem_files() {
        let dir = tempfile::tempdir().unwrap();
        let (id, pem) = ClientIdentity::generate("nox-test").unwrap();
        let (cert, key) = (dir.path().join("c.crt"), dir.path().join("c.key"));
        pem.write(&cert, &key).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the key must be 0600");
        let again = ClientIdentity::from_pem_files(&cert, &key).unwrap();
        assert_eq!(again.fingerprint(), id.fingerprint());
        assert_eq!(
            Fingerprint::of_pem(&pem.certificate).unwrap(),
            id.fingerprint()
        );
        // Never over an existing key.
        assert!(pem.write(&cert, &key).is_err());
        assert!(!format!("{id:?}").contains("PRIVATE"));
    }

    #[test]
    fn garbage_is_not_an_identity() {
        assert!(ClientIdentity::from_pem("not pem", "not pem").is_err());
        let (_, pem) = ClientIdentity::generate("x").unwrap();
        assert!(ClientIdentity::from_pem(&pem.certificate, "junk").is_err());
    }
}
