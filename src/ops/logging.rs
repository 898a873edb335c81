//! Structured logs through tracing-subscriber: text or JSON, filter from `RUST_LOG` when set,
//! else from the configuration, and changeable while running ([`set_level`]). A call's lines
//! carry its `call` span (id, tenant, trunk): JSON logs keep them as fields.

use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The filter of the installed subscriber, for [`set_level`].
static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

fn parse_filter(directive: &str) -> Result<EnvFilter, String> {
    EnvFilter::builder()
        .parse(directive)
        .map_err(|e| format!("log level {directive:?}: {e}"))
}

/// Install the global subscriber. Returns an error if one is already installed or the
/// filter does not parse.
pub fn init_logging(format: LogFormat, level: &str) -> Result<(), String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(from_env) if !from_env.trim().is_empty() => EnvFilter::builder()
            .parse(&from_env)
            .map_err(|e| format!("RUST_LOG: {e}"))?,
        _ => parse_filter(level)?,
    };
    let (filter, handle) = reload::Layer::new(filter);
    use std::io::IsTerminal;
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    result.map_err(|e| e.to_string())?;
    let _ = FILTER.set(handle);
    Ok(())
}

/// Change what is logged from now on (a `tracing` filter directive such as `debug` or
/// `info,teams_sbc::dispatch=debug`). Err: the directive does not parse, or logging was not
/// installed by [`init_logging`]; the filter in force stays.
pub fn set_level(directive: &str) -> Result<(), String> {
    let filter = parse_filter(directive)?;
    let handle = FILTER
        .get()
        .ok_or_else(|| "logging is not installed".to_string())?;
    handle.reload(filter).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_directive_is_refused_before_anything_changes() {
        assert!(set_level("info,,=[").is_err());
    }
}
