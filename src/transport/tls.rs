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

fn load_roots(source: &RootStoreSource) -> Result<RootCertStore, TransportError> {
    match source {
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
