//! rustls configuration from [`TlsSettings`]: one certificate chain used both as server
//! certificate and as client certificate (mutual TLS, teams-direct-routing.md §1.4/§1.5),
//! TLS 1.2 + 1.3 only, peer verification against a configurable root set, and an optional
//! extra SAN requirement on servers we connect to (`sip.pstnhub.microsoft.com`).

use std::fs;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig,
    SignatureScheme,
};

use super::{RootStoreSource, TlsSettings, TransportError};

/// The configs in force; replaced as a whole on reload.
pub(crate) struct TlsConfigs {
    pub(crate) server: Arc<ServerConfig>,
    pub(crate) client: Arc<ClientConfig>,
    /// The certificate chain we present: a reload that changes it reopens connections.
    pub(crate) chain: Vec<CertificateDer<'static>>,
}

/// Protocol versions offered and accepted: TLS 1.2 (required by Teams) and 1.3. rustls has
/// no TLS 1.0/1.1 at all, so those are always refused.
static VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub(crate) fn load(settings: &TlsSettings) -> Result<TlsConfigs, TransportError> {
    let chain = load_chain(&settings.cert_chain_pem)?;
    let presented = chain.clone();
    let key = load_key(&settings.key_pem)?;
    let roots = Arc::new(load_roots(&settings.roots)?);
    let provider = provider();

    let client_verifier = {
        let builder = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone());
        let builder = if settings.require_client_cert {
            builder
        } else {
            // Still ask for a certificate and verify it when offered; carriers without one
            // may connect (teams-direct-routing.md §1.5: validating the peer is optional).
            builder.allow_unauthenticated()
        };
        builder
            .build()
            .map_err(|e| TransportError::Tls(format!("client verifier: {e}")))?
    };
    let server = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| TransportError::Tls(format!("server versions: {e}")))?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(|e| TransportError::Tls(format!("server certificate: {e}")))?;

    let server_verifier = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|e| TransportError::Tls(format!("server verifier: {e}")))?;
    let required = settings
        .required_peer_sans
        .iter()
        .map(|name| {
            ServerName::try_from(name.clone()).map_err(|_| {
                TransportError::Tls(format!("required peer SAN {name:?} is not a name"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let client = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)
        .map_err(|e| TransportError::Tls(format!("client versions: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(SanRequiringVerifier {
            inner: server_verifier,
            required,
        }))
        .with_client_auth_cert(chain, key)
        .map_err(|e| TransportError::Tls(format!("client certificate: {e}")))?;

    Ok(TlsConfigs {
        server: Arc::new(server),
        client: Arc::new(client),
        chain: presented,
    })
}

fn read(path: &Path) -> Result<Vec<u8>, TransportError> {
    fs::read(path).map_err(|e| TransportError::Tls(format!("reading {}: {e}", path.display())))
}

fn load_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    let pem = read(path)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TransportError::Tls(format!("parsing {}: {e}", path.display())))?;
    if chain.is_empty() {
        return Err(TransportError::Tls(format!(
            "{} holds no certificate",
            path.display()
        )));
    }
    Ok(chain)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TransportError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        pem::Error::NoItemsFound => {
            TransportError::Tls(format!("{} holds no private key", path.display()))
        }
        e => TransportError::Tls(format!("parsing {}: {e}", path.display())),
    })
}

/// The roots Microsoft names for the certificates of its Direct Routing proxies
/// (teams-direct-routing.md §1.5), as `(name, SHA-1 fingerprint)`, in `microsoft_roots.pem`.
/// Baltimore CyberTrust Root is not among them: it expired in May 2025 and nothing valid
/// chains to it any more.
pub const MICROSOFT_ROOTS: [(&str, &str); 8] = [
    (
        "DigiCert Global Root CA",
        "a8985d3a65e5e5c4b2d7d66d40c6dd2fb19c5436",
    ),
    (
        "DigiCert Global Root G2",
        "df3c24f9bfd666761b268073fe06d1cc8d4f82a4",
    ),
    (
        "DigiCert Global Root G3",
        "7e04de896a3e666d00e687d33ffad93be83d349e",
    ),
    (
        "DigiCert TLS ECC P384 Root G5",
        "17f3de5e9f0f19e98ef61f32266e20c407ae30ee",
    ),
    (
        "DigiCert TLS RSA4096 Root G5",
        "a78849dc5d7c758c8cde399856b3aad0b2a57135",
    ),
    (
        "DigiCert High Assurance EV Root CA",
        "5fb7ee0633e259dbad0c4c9ae6d38f1a61c7dc25",
    ),
    (
        "Microsoft RSA Root Certificate Authority 2017",
        "73a5e64a3bff8316ff0edccc618a906e4eae4d74",
    ),
    (
        "Microsoft ECC Root Certificate Authority 2017",
        "999a64c37ff47d9fab95f14769891460eec4c3c5",
    ),
];

const MICROSOFT_ROOTS_PEM: &[u8] = include_bytes!("microsoft_roots.pem");

fn parse_pem_certificates(
    pem: &[u8],
    origin: &str,
) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TransportError::Tls(format!("parsing {origin}: {e}")))
}

fn sha1_hex(der: &[u8]) -> String {
    use sha1::Digest;
    sha1::Sha1::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Which of [`MICROSOFT_ROOTS`] a root set lacks (by name), so `check-config` can say why a
/// handshake with Microsoft would fail.
pub fn missing_microsoft_roots(
    source: &RootStoreSource,
) -> Result<Vec<&'static str>, TransportError> {
    let present: Vec<String> = match source {
        RootStoreSource::Microsoft => return Ok(Vec::new()),
        RootStoreSource::WebPki => {
            // webpki-roots keeps subjects and keys, not whole certificates: compare by the
            // certificates' subjects instead.
            let builtin = parse_pem_certificates(MICROSOFT_ROOTS_PEM, "built-in roots")?;
            let subjects: Vec<Vec<u8>> = webpki_roots::TLS_SERVER_ROOTS
                .iter()
                .map(|anchor| anchor.subject.as_ref().to_vec())
                .collect();
            let mut present = Vec::new();
            for cert in &builtin {
                let anchor = webpki::anchor_from_trusted_cert(cert)
                    .map_err(|e| TransportError::Tls(format!("built-in root: {e}")))?;
                if subjects
                    .iter()
                    .any(|s| s.as_slice() == anchor.subject.as_ref())
                {
                    present.push(sha1_hex(cert));
                }
            }
            present
        }
        RootStoreSource::PemFile(path) => load_chain(path)?
            .iter()
            .map(|cert| sha1_hex(cert))
            .collect(),
    };
    Ok(MICROSOFT_ROOTS
        .iter()
        .filter(|(_, sha1)| !present.iter().any(|p| p == sha1))
        .map(|(name, _)| *name)
        .collect())
}

fn load_roots(source: &RootStoreSource) -> Result<RootCertStore, TransportError> {
    match source {
        RootStoreSource::Microsoft => {
            let mut store = RootCertStore::empty();
            store.add_parsable_certificates(parse_pem_certificates(
                MICROSOFT_ROOTS_PEM,
                "built-in Microsoft roots",
            )?);
            Ok(store)
        }
        RootStoreSource::WebPki => Ok(RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        }),
        RootStoreSource::PemFile(path) => {
            let mut store = RootCertStore::empty();
            let (added, ignored) = store.add_parsable_certificates(load_chain(path)?);
            if added == 0 {
                return Err(TransportError::Tls(format!(
                    "{}: no usable root certificate ({ignored} unparsable)",
                    path.display()
                )));
            }
            Ok(store)
        }
    }
}

/// The standard WebPKI verification of the name we connected to, plus: when the name lies in
/// the parent domain of a required SAN (`sip2.pstnhub.microsoft.com` for the required
/// `sip.pstnhub.microsoft.com`), the certificate must also be valid for at least one
/// required SAN. Other destinations (carrier TLS trunks, IP-only names) get the standard
/// check only, so one transport can serve Teams and carrier trunks.
#[derive(Debug)]
struct SanRequiringVerifier {
    inner: Arc<WebPkiServerVerifier>,
    required: Vec<ServerName<'static>>,
}

impl SanRequiringVerifier {
    fn applies_to(&self, server_name: &ServerName<'_>) -> bool {
        let ServerName::DnsName(name) = server_name else {
            return false;
        };
        let name = name.as_ref().trim_end_matches('.');
        self.required.iter().any(|required| match required {
            ServerName::DnsName(required) => {
                let required = required.as_ref().trim_end_matches('.');
                same_parent_domain(name, required)
            }
            _ => false,
        })
    }
}

/// True for the required name itself and for its siblings (`sip2.x.y` for `sip.x.y`).
fn same_parent_domain(name: &str, required: &str) -> bool {
    fn parent(n: &str) -> &str {
        n.split_once('.').map_or("", |(_, rest)| rest)
    }
    name.eq_ignore_ascii_case(required)
        || (!parent(required).is_empty() && parent(name).eq_ignore_ascii_case(parent(required)))
}

impl ServerCertVerifier for SanRequiringVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        if !self.applies_to(server_name) {
            return Ok(verified);
        }
        let parsed = ParsedCertificate::try_from(end_entity)?;
        if self
            .required
            .iter()
            .any(|name| rustls::client::verify_server_name(&parsed, name).is_ok())
        {
            Ok(verified)
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::same_parent_domain;

    #[test]
    fn san_requirement_scope_is_the_required_names_siblings() {
        let req = "sip.pstnhub.microsoft.com";
        assert!(same_parent_domain("sip.pstnhub.microsoft.com", req));
        assert!(same_parent_domain("SIP2.pstnhub.microsoft.com", req));
        assert!(same_parent_domain("sip-du-a-eu.pstnhub.microsoft.com", req));
        assert!(!same_parent_domain("pstnhub.microsoft.com", req));
        assert!(!same_parent_domain("a.sip.pstnhub.microsoft.com", req));
        assert!(!same_parent_domain("carrier.example.net", req));
        assert!(!same_parent_domain("x", "localhost"));
        assert!(same_parent_domain("localhost", "localhost"));
    }
}
