//! Load-time checks of the SBC certificate against the configuration: the leaf must cover the
//! base FQDN and every tenant FQDN (rows 2 and 35: SANs `<base>` and `*.<base>`, a wildcard
//! covering one label), should be RSA (row 2: Teams' suites are all ECDHE-RSA), should carry
//! intermediates (row 3) and, if it restricts its usage, allow serverAuth and clientAuth (row 5).

use std::path::Path;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// Findings for the caller to report: `(is_error, field, message)`.
pub type Finding = (bool, String, String);

/// DER of the OID rsaEncryption (1.2.840.113549.1.1.1), as found in SubjectPublicKeyInfo.
const OID_RSA_ENCRYPTION: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];
/// extKeyUsage extension (2.5.29.37).
const OID_EXT_KEY_USAGE: &[u8] = &[0x06, 0x03, 0x55, 0x1d, 0x25];
/// id-kp-serverAuth (1.3.6.1.5.5.7.3.1) and id-kp-clientAuth (1.3.6.1.5.5.7.3.2).
const OID_SERVER_AUTH: &[u8] = &[0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
const OID_CLIENT_AUTH: &[u8] = &[0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Check `cert_chain` / `private_key` files; `names` are `(field, fqdn)` pairs to cover.
pub fn check(cert_chain: &Path, private_key: &Path, names: &[(String, String)]) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut error =
        |field: &str, message: String| findings.push((true, field.to_string(), message));
    let chain: Vec<CertificateDer<'static>> = match std::fs::read(cert_chain) {
        Err(e) => {
            error("tls.cert_chain", format!("cannot read: {e}"));
            return findings;
        }
        Ok(pem) => match CertificateDer::pem_slice_iter(&pem).collect() {
            Ok(chain) => chain,
            Err(e) => {
                error("tls.cert_chain", format!("not a PEM certificate file: {e}"));
                return findings;
            }
        },
    };
    match std::fs::read(private_key).map(|pem| PrivateKeyDer::from_pem_slice(&pem)) {
        Err(e) => error("tls.private_key", format!("cannot read: {e}")),
        Ok(Err(pem::Error::NoItemsFound)) => {
            error("tls.private_key", "no private key in the file".to_string())
        }
        Ok(Err(e)) => error("tls.private_key", format!("not a PEM key file: {e}")),
        Ok(Ok(_)) => {}
    }
    let Some(leaf) = chain.first() else {
        error("tls.cert_chain", "no certificate in the file".to_string());
        return findings;
    };
    let parsed = match webpki::EndEntityCert::try_from(leaf) {
        Ok(p) => p,
        Err(e) => {
            error(
                "tls.cert_chain",
                format!("leaf certificate does not parse: {e:?}"),
            );
            return findings;
        }
    };
    for (field, name) in names {
        let covered = ServerName::try_from(name.as_str())
            .ok()
            .is_some_and(|server_name| {
                parsed
                    .verify_is_valid_for_subject_name(&server_name)
                    .is_ok()
            });
        if !covered {
            error(
                field,
                format!(
                    "{name:?} is not covered by the certificate in tls.cert_chain (rows 2/35: \
                     it needs SANs <base> and *.<base>)"
                ),
            );
        }
    }
    let mut warn = |message: String| findings.push((false, "tls.cert_chain".to_string(), message));
    let der = leaf.as_ref();
    if !contains(der, OID_RSA_ENCRYPTION) {
        warn("the leaf key is not RSA; Teams' TLS suites are all ECDHE-RSA (row 2)".to_string());
    }
    if contains(der, OID_EXT_KEY_USAGE) {
        let file = cert_chain.display();
        if !contains(der, OID_SERVER_AUTH) {
            warn(format!(
                "{file}: extended key usage lacks serverAuth; Microsoft connects to us with it \
                 as our server certificate (row 5)"
            ));
        }
        if !contains(der, OID_CLIENT_AUTH) {
            warn(format!(
                "{file}: extended key usage lacks clientAuth; it is our client certificate \
                 towards Microsoft (rows 4/5)"
            ));
        }
    }
    if chain.len() < 2 {
        warn(
            "only one certificate: append the intermediates so the full chain is sent (row 3)"
                .to_string(),
        );
    }
    findings
}
