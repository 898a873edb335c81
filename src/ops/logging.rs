//! Structured logs through tracing-subscriber: text or JSON, filter from `RUST_LOG` when set,
//! else from the configuration.

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Install the global subscriber. Returns an error if one is already installed or the
/// filter does not parse.
pub fn init_logging(format: LogFormat, level: &str) -> Result<(), String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(from_env) if !from_env.trim().is_empty() => EnvFilter::builder()
            .parse(&from_env)
            .map_err(|e| format!("RUST_LOG: {e}"))?,
        _ => EnvFilter::builder()
            .parse(level)
            .map_err(|e| format!("log level {level:?}: {e}"))?,
    };
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
    result.map_err(|e| e.to_string())
}
