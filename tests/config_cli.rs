//! `teams-sbc check-config` and `dev-certs` as an operator runs them: exit codes and the
//! file:line: field: message format of every error.

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_teams-sbc");

const GOOD: &str = r#"[sbc]
base_fqdn = "sbc.carrier.example"

[tls]
cert_chain = "sbc.pem"
private_key = "sbc.key"

[[listen]]
transport = "tls"
address = "127.0.0.1:5061"

[[carrier_trunk]]
name = "pstn"
address = "127.0.0.1:5070"

[[carrier_trunk]]
name = "backup"
address = "127.0.0.1:5072"

[[tenant]]
name = "acme"
fqdn = "acme.sbc.carrier.example"
numbers = ["+4930123400-+4930123499"]
carrier_trunk = "pstn"

[media.carrier]
bind = "127.0.0.1"
port_min = 20000
port_max = 20999

[media.teams]
bind = "127.0.0.1"
port_min = 30000
port_max = 30999
"#;

/// Dev certificates for `base`, generated once per test process and copied where needed.
fn certs_for(base: &str) -> std::path::PathBuf {
    static DIRS: std::sync::Mutex<Vec<(String, tempfile::TempDir)>> =
        std::sync::Mutex::new(Vec::new());
    let mut dirs = DIRS.lock().unwrap();
    if let Some((_, dir)) = dirs.iter().find(|(b, _)| b == base) {
        return dir.path().to_path_buf();
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["dev-certs", "--out"])
        .arg(dir.path())
        .args(["--base-fqdn", base])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = dir.path().to_path_buf();
    dirs.push((base.to_string(), dir));
    path
}

fn write_config_for(dir: &Path, text: &str, base: &str) -> std::path::PathBuf {
    let certs = certs_for(base);
    for file in ["sbc.pem", "sbc.key", "ca.pem"] {
        std::fs::copy(certs.join(file), dir.join(file)).unwrap();
    }
    let path = dir.join("sbc.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn write_config(dir: &Path, text: &str) -> std::path::PathBuf {
    write_config_for(dir, text, "sbc.carrier.example")
}

fn check(path: &Path) -> Output {
    Command::new(BIN)
        .arg("check-config")
        .arg(path)
        .output()
        .unwrap()
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn good_config_prints_counts_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), GOOD);
    let out = check(&path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), "ok: 1 tenants, 2 trunks");
}

#[test]
fn every_error_is_printed_with_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let text = GOOD
        .replace("carrier_trunk = \"pstn\"", "carrier_trunk = \"foo\"")
        .replace("fqdn = \"acme.sbc.carrier.example\"", "fqdn = \"10.0.0.1\"")
        .replace("name = \"backup\"", "name = \"pstn\"");
    let path = write_config(dir.path(), &text);
    let out = check(&path);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let file = path.display();
    for (line, field, fragment) in [
        (
            line_of(&text, "carrier_trunk = \"foo\""),
            "tenant[0].carrier_trunk",
            "no carrier trunk named \"foo\"",
        ),
        (
            line_of(&text, "10.0.0.1"),
            "tenant[0].fqdn",
            "is an IP address",
        ),
        (
            line_of(&text, "name = \"pstn\"") + 4,
            "carrier_trunk[1].name",
            "duplicate carrier trunk name",
        ),
    ] {
        let prefix = format!("{file}:{line}: {field}: ");
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with(&prefix) && l.contains(fragment)),
            "missing {prefix}...{fragment} in:\n{stderr}"
        );
    }
    assert!(stderr.contains("3 error(s)"), "{stderr}");
}

#[test]
fn unknown_key_is_an_error_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = GOOD.replace("[[listen]]\n", "[[listen]]\nport = 5061\n");
    let path = write_config(dir.path(), &text);
    let out = check(&path);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!("{}:{}: ", path.display(), line_of(&text, "port = 5061"));
    assert!(stderr.starts_with(&expected), "{stderr}");
    assert!(stderr.contains("unknown field `port`"), "{stderr}");
}

#[test]
fn missing_certificate_files_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), GOOD);
    std::fs::remove_file(dir.path().join("sbc.key")).unwrap();
    let out = check(&path);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(": tls.private_key: file ") && stderr.contains("does not exist"),
        "{stderr}"
    );
}

#[test]
fn warnings_do_not_fail_the_check() {
    let dir = tempfile::tempdir().unwrap();
    let text = GOOD.replace(
        "[[listen]]",
        "[teams]\noptions_interval_seconds = 10\n\n[[listen]]",
    );
    let path = write_config(dir.path(), &text);
    let out = check(&path);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: ") && stderr.contains("teams.options_interval_seconds"),
        "{stderr}"
    );
}

#[test]
fn shipped_example_configs_are_valid() {
    // The certificate paths are pointed at dev certificates for each file's base FQDN, the
    // admin token file at one written here.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (name, base) in [
        ("example.toml", "sbc1.carrier.example"),
        ("dev.toml", "sbc.example.test"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let text = std::fs::read_to_string(root.join("configs").join(name)).unwrap();
        let mut patched = String::new();
        for line in text.lines() {
            let key = line.split('=').next().unwrap_or("").trim();
            if key == "token_file" {
                std::fs::write(dir.path().join("admin.token"), "0123456789abcdef0123\n").unwrap();
            }
            let value = match key {
                "token_file" => Some("admin.token"),
                "cert_chain" => Some("sbc.pem"),
                "private_key" => Some("sbc.key"),
                "roots" if !line.contains("webpki") => Some("ca.pem"),
                _ => None,
            };
            match value {
                Some(v) => patched.push_str(&format!("{key} = \"{v}\"\n")),
                None => {
                    patched.push_str(line);
                    patched.push('\n');
                }
            }
        }
        let path = write_config_for(dir.path(), &patched, base);
        let out = check(&path);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn row2_certificate_must_cover_base_and_tenant_fqdns() {
    let dir = tempfile::tempdir().unwrap();
    // Certificates for another base: neither the base nor the tenant is covered.
    let path = write_config_for(dir.path(), GOOD, "sbc.example.test");
    let out = check(&path);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for field in ["sbc.base_fqdn", "tenant[0].fqdn"] {
        assert!(
            stderr.contains(&format!(": {field}: "))
                && stderr.contains("not covered by the certificate"),
            "{field}: {stderr}"
        );
    }
}

#[test]
fn certificate_file_without_pem_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), GOOD);
    std::fs::write(dir.path().join("sbc.pem"), "not a certificate").unwrap();
    let out = check(&path);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(": tls.cert_chain: no certificate in the file"),
        "{stderr}"
    );
}

#[test]
fn dev_certs_writes_the_files_dev_toml_expects() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["dev-certs", "--out"])
        .arg(dir.path())
        .args(["--base-fqdn", "sbc.example.test"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for file in ["ca.pem", "sbc.pem", "sbc.key", "teams.pem", "teams.key"] {
        let text = std::fs::read_to_string(dir.path().join(file)).unwrap();
        assert!(text.contains("-----BEGIN"), "{file} is not PEM");
    }
}

#[test]
fn usage_errors_exit_non_zero() {
    let out = Command::new(BIN).arg("check-config").output().unwrap();
    assert!(!out.status.success());
    let out = Command::new(BIN).arg("frobnicate").output().unwrap();
    assert!(!out.status.success());
}

/// A CA and a leaf for `sbc.carrier.example` and `*.sbc.carrier.example` whose extended key
/// usage lists exactly `usages`: `(chain PEM: leaf then CA, key PEM)`.
fn certificate_with_usages(usages: Vec<rcgen::ExtendedKeyUsagePurpose>) -> (String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, RsaKeySize};
    let rsa = || KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_2048).unwrap();
    let ca_key = rsa();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = rsa();
    let mut leaf = CertificateParams::new(vec![
        "sbc.carrier.example".to_string(),
        "*.sbc.carrier.example".to_string(),
    ])
    .unwrap();
    leaf.extended_key_usages = usages;
    let leaf_pem = leaf.signed_by(&key, &issuer).unwrap().pem();
    (format!("{leaf_pem}{ca_pem}"), key.serialize_pem())
}

/// Row 5: a certificate whose extended key usage lacks serverAuth, or lacks clientAuth (what
/// public CAs issue from 2026 on), still loads, with a warning naming the configuration file,
/// the line and field `tls.cert_chain`, and the certificate file; with both usages there is
/// no usage warning.
#[test]
fn row5_certificate_without_server_auth_or_client_auth_gets_a_warning() {
    use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
    for (usages, lacking, other) in [
        (vec![ClientAuth], "serverAuth", "clientAuth"),
        (vec![ServerAuth], "clientAuth", "serverAuth"),
        (vec![ServerAuth, ClientAuth], "", ""),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (chain, key) = certificate_with_usages(usages);
        std::fs::write(dir.path().join("sbc.pem"), chain).unwrap();
        std::fs::write(dir.path().join("sbc.key"), key).unwrap();
        let path = dir.path().join("sbc.toml");
        std::fs::write(&path, GOOD).unwrap();
        let out = check(&path);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "a usage warning is not an error: {stderr}"
        );
        let prefix = format!(
            "warning: {}:{}: tls.cert_chain: {}: ",
            path.display(),
            line_of(GOOD, "cert_chain"),
            dir.path().join("sbc.pem").display()
        );
        let usage_lines: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("extended key usage"))
            .collect();
        if lacking.is_empty() {
            assert!(usage_lines.is_empty(), "{stderr}");
            continue;
        }
        assert_eq!(usage_lines.len(), 1, "{stderr}");
        assert!(
            usage_lines[0].starts_with(&prefix)
                && usage_lines[0].contains(&format!("lacks {lacking}"))
                && !usage_lines[0].contains(&format!("lacks {other}")),
            "expected {prefix}...lacks {lacking} in:\n{stderr}"
        );
    }
}
