//! Development certificates: a private test CA, an SBC certificate and a stand-in for
//! Microsoft's `sip.pstnhub.microsoft.com` certificate, for tests and local labs only.
//!
//! Every key is RSA 2048 because the TLS 1.2 suites Teams requires are all ECDHE-RSA, which
//! need an RSA certificate on the server side (teams-direct-routing.md §1.3). `ring` cannot
//! generate RSA keys, so rcgen runs on its `aws-lc-rs` backend (AWS-LC, a maintained BoringSSL
//! descendant), which generates and signs with them; the RustCrypto `rsa` crate is not used
//! (RUSTSEC-2023-0071). No `openssl` binary is involved.
//!
//! Production certificates must come from a CA in the Microsoft Trusted Root Program (§1.4);
//! these are never trusted by Microsoft.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, RsaKeySize, SerialNumber,
};

/// The SANs Microsoft's SIP proxies present (teams-direct-routing.md §0, §1.5).
pub const TEAMS_SANS: [&str; 3] = [
    "sip.pstnhub.microsoft.com",
    "sip2.pstnhub.microsoft.com",
    "sip3.pstnhub.microsoft.com",
];

#[derive(Debug, thiserror::Error)]
pub enum DevCertError {
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("certificate generation: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("base FQDN {0:?} is not a valid DNS name")]
    BadFqdn(String),
}

/// Paths of the files [`generate`] wrote.
#[derive(Debug, Clone)]
pub struct DevCerts {
    /// The test CA certificate (the root to trust).
    pub ca_pem: PathBuf,
    /// SBC leaf followed by the CA: SANs `<base>` and `*.<base>`, EKU serverAuth + clientAuth.
    pub sbc_chain_pem: PathBuf,
    pub sbc_key_pem: PathBuf,
    /// Teams stand-in leaf followed by the CA: SANs sip, sip2, sip3.pstnhub.microsoft.com.
    pub teams_chain_pem: PathBuf,
    pub teams_key_pem: PathBuf,
}

/// Generate a fresh CA, SBC certificate and Teams stand-in certificate into `out_dir`
/// (`ca.pem`, `sbc.pem`, `sbc.key`, `teams.pem`, `teams.key`). Existing files are replaced,
/// so calling it again simulates a certificate renewal (new keys, new serials).
pub fn generate(out_dir: &Path, base_fqdn: &str) -> Result<DevCerts, DevCertError> {
    if !is_plausible_fqdn(base_fqdn) {
        return Err(DevCertError::BadFqdn(base_fqdn.to_string()));
    }
    fs::create_dir_all(out_dir).map_err(|source| DevCertError::Io {
        path: out_dir.to_path_buf(),
        source,
    })?;

    let ca_key = rsa_key_pair()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name = name("teams-sbc development CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.serial_number = Some(random_serial());
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let ca_pem = ca_cert.pem();
    let issuer = Issuer::new(ca_params, ca_key);

    let sbc_sans = vec![base_fqdn.to_string(), format!("*.{base_fqdn}")];
    let (sbc_leaf, sbc_key) = leaf(&issuer, base_fqdn, sbc_sans)?;
    let teams_sans = TEAMS_SANS.iter().map(|s| s.to_string()).collect();
    let (teams_leaf, teams_key) = leaf(&issuer, TEAMS_SANS[0], teams_sans)?;

    let certs = DevCerts {
        ca_pem: out_dir.join("ca.pem"),
        sbc_chain_pem: out_dir.join("sbc.pem"),
        sbc_key_pem: out_dir.join("sbc.key"),
        teams_chain_pem: out_dir.join("teams.pem"),
        teams_key_pem: out_dir.join("teams.key"),
    };
    write_file(&certs.ca_pem, ca_pem.as_bytes(), false)?;
    write_file(
        &certs.sbc_chain_pem,
        format!("{sbc_leaf}{ca_pem}").as_bytes(),
        false,
    )?;
    write_file(&certs.sbc_key_pem, sbc_key.as_bytes(), true)?;
    write_file(
        &certs.teams_chain_pem,
        format!("{teams_leaf}{ca_pem}").as_bytes(),
        false,
    )?;
    write_file(&certs.teams_key_pem, teams_key.as_bytes(), true)?;
    Ok(certs)
}

/// A leaf certificate (PEM) and its private key (PKCS#8 PEM), usable as TLS server and client.
fn leaf(
    issuer: &Issuer<'_, KeyPair>,
    common_name: &str,
    sans: Vec<String>,
) -> Result<(String, String), DevCertError> {
    let key = rsa_key_pair()?;
    let mut params = CertificateParams::new(sans)?;
    params.distinguished_name = name(common_name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.serial_number = Some(random_serial());
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// RSA 2048 signing with SHA-256: what every TLS 1.2 peer offering the ECDHE-RSA suites accepts.
fn rsa_key_pair() -> Result<KeyPair, DevCertError> {
    Ok(KeyPair::generate_rsa_for(
        &rcgen::PKCS_RSA_SHA256,
        RsaKeySize::_2048,
    )?)
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "teams-sbc development");
    dn
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    // Positive and without a leading zero octet, as RFC 5280 §4.1.2.2 asks.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

fn is_plausible_fqdn(fqdn: &str) -> bool {
    !fqdn.is_empty()
        && fqdn.len() <= 253
        && fqdn.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn write_file(path: &Path, contents: &[u8], private: bool) -> Result<(), DevCertError> {
    let io_err = |source| DevCertError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io_err)?;
    file.write_all(contents).map_err(io_err)?;
    file.sync_all().map_err(io_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    #[test]
    fn rejects_bad_base_fqdn() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            generate(dir.path(), "bad..name"),
            Err(DevCertError::BadFqdn(_))
        ));
        assert!(matches!(
            generate(dir.path(), "-x.example"),
            Err(DevCertError::BadFqdn(_))
        ));
    }

    #[test]
    fn writes_rsa_chains_and_keys() {
        let dir = tempfile::tempdir().unwrap();
        let certs = generate(dir.path(), "sbc.example.test").unwrap();
        let chain = fs::read(&certs.sbc_chain_pem).unwrap();
        let parsed: Vec<_> = CertificateDer::pem_slice_iter(&chain)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(parsed.len(), 2, "leaf followed by CA");
        let key = fs::read(&certs.sbc_key_pem).unwrap();
        let key = PrivateKeyDer::from_pem_slice(&key).unwrap();
        // rustls' ring provider accepts it as an RSA signing key.
        let provider = rustls::crypto::ring::default_provider();
        let signing = provider.key_provider.load_private_key(key).unwrap();
        assert_eq!(signing.algorithm(), rustls::SignatureAlgorithm::RSA);
        let ca = fs::read_to_string(&certs.ca_pem).unwrap();
        assert!(fs::read_to_string(&certs.teams_chain_pem)
            .unwrap()
            .ends_with(&ca));
    }
}
