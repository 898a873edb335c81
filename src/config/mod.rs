//! Configuration: one TOML file, parsed with serde and validated completely before use.
//!
//! [`load`] returns either a [`Loaded`] configuration (plus warnings) or every problem found,
//! each naming file, line and field: `configs/x.toml:42: tenant[1].carrier_trunk: no carrier
//! trunk named "foo"`. Other modules never see this type; [`mapping`] turns it into their own
//! settings structs.

mod certcheck;
mod locate;
pub mod mapping;
pub mod numbers;
mod schema;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

pub use numbers::NumberBlock;
pub use schema::*;

/// One problem (or warning) in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// 1-based; `None` when the field is absent from the file (a default was used).
    pub line: Option<usize>,
    /// Field path, e.g. `tenant[1].carrier_trunk`; empty for file-level problems.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if self.field.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// The list of errors of a rejected file, printable one per line.
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A validated configuration. Relative paths in it are already resolved against the file's
/// directory.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// Parsed `numbers` of each tenant, same order as `config.tenants`.
    pub tenant_numbers: Vec<Vec<NumberBlock>>,
    pub warnings: Vec<ConfigError>,
    pub path: PathBuf,
    /// SHA-1 of the file's text (hex, 12 digits): which configuration is in force.
    pub digest: String,
}

impl Loaded {
    /// `X-MS-SBC: vendor/model/version` towards Microsoft (row 59).
    pub fn microsoft_product(&self) -> crate::health::ProductHeaders {
        crate::health::ProductHeaders::microsoft(
            &self.config.sbc.vendor,
            &self.config.sbc.model,
            env!("CARGO_PKG_VERSION"),
        )
    }

    /// `Server` / `User-Agent` towards carriers: only what the operator configured.
    pub fn carrier_product(&self) -> crate::health::ProductHeaders {
        crate::health::ProductHeaders::carrier(self.config.sbc.carrier_user_agent.as_deref())
    }

    /// The tenant owning `number` (E.164, `+` optional), if any.
    pub fn tenant_for_number(&self, number: &str) -> Option<&Tenant> {
        self.tenant_numbers
            .iter()
            .position(|blocks| blocks.iter().any(|b| b.contains(number)))
            .and_then(|i| self.config.tenants.get(i))
    }

    /// The tenant whose derived-trunk FQDN is `host` (case-insensitive), if any.
    pub fn tenant_for_fqdn(&self, host: &str) -> Option<&Tenant> {
        self.config
            .tenants
            .iter()
            .find(|t| t.fqdn.eq_ignore_ascii_case(host))
    }
}

/// Read, parse and validate a file. File-system checks (certificate files exist) are included.
pub fn load(path: &Path) -> Result<Loaded, ConfigErrors> {
    let label = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: label.clone(),
            line: None,
            field: String::new(),
            message: format!("cannot read: {e}"),
        }])
    })?;
    let base_dir = path.parent().unwrap_or_else(|| Path::new("."));
    let mut loaded = parse_str(&text, &label, base_dir, true)?;
    loaded.path = path.to_path_buf();
    Ok(loaded)
}

/// Parse and validate TOML text. `file` labels errors; relative paths resolve against
/// `base_dir`; `check_files` also verifies that referenced files exist.
pub fn parse_str(
    text: &str,
    file: &str,
    base_dir: &Path,
    check_files: bool,
) -> Result<Loaded, ConfigErrors> {
    // One parse: the document gives the typed configuration and, for diagnostics, the line
    // of each field (a large tenant table takes most of a reload's time to parse).
    let parse_error = |span: Option<std::ops::Range<usize>>, message: &str| {
        let locator = locate::Locator::new(text, None);
        ConfigErrors(vec![ConfigError {
            file: file.to_string(),
            line: span.map(|s| locator.line_of_offset(s.start)),
            field: String::new(),
            message: message.trim().to_string(),
        }])
    };
    let doc = toml_edit::ImDocument::parse(text.to_string())
        .map_err(|e| parse_error(e.span(), e.message()))?;
    let mut config: Config = toml_edit::de::from_document(doc.clone())
        .map_err(|e| parse_error(e.span(), e.message()))?;
    let locator = locate::Locator::new(text, Some(doc));
    resolve_paths(&mut config, base_dir);
    let mut report = validate::Report::new(file, &locator);
    let tenant_numbers = validate::validate(&config, check_files, &mut report);
    let (errors, warnings) = report.finish();
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    let digest = {
        use sha1::Digest;
        sha1::Sha1::digest(text.as_bytes())
            .iter()
            .take(6)
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    Ok(Loaded {
        digest,
        config,
        tenant_numbers,
        warnings,
        path: PathBuf::from(file),
    })
}

fn resolve_paths(config: &mut Config, base_dir: &Path) {
    let resolve = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = base_dir.join(&*p);
        }
    };
    if let Some(p) = config.tls.cert_chain.as_mut() {
        resolve(p);
    }
    if let Some(p) = config.tls.private_key.as_mut() {
        resolve(p);
    }
    if let Some(p) = config
        .admin
        .as_mut()
        .and_then(|admin| admin.token_file.as_mut())
    {
        resolve(p);
    }
    resolve(&mut config.cdr.file.path);
    if !["microsoft", "webpki"].contains(&config.tls.roots.as_str()) {
        let mut p = PathBuf::from(&config.tls.roots);
        resolve(&mut p);
        config.tls.roots = p.display().to_string();
    }
}

/// Shortest admin token accepted: a guessable token is no protection.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 16;

/// The admin API's bearer token from `path`: its text without surrounding white space, at
/// least [`MIN_ADMIN_TOKEN_CHARS`] visible ASCII characters.
pub fn read_admin_token(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let token = text.trim();
    if token.len() < MIN_ADMIN_TOKEN_CHARS {
        return Err(format!(
            "{}: the token must have at least {MIN_ADMIN_TOKEN_CHARS} characters",
            path.display()
        ));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "{}: the token must be visible ASCII characters without spaces",
            path.display()
        ));
    }
    Ok(token.to_string())
}

#[cfg(test)]
mod tests;
