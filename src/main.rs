//! `teams-sbc` command line: run the SBC, check a configuration, make development certificates,
//! talk to a running SBC (`ctl`).

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use teams_sbc::config;

#[derive(Parser)]
#[command(
    name = "teams-sbc",
    version,
    about = "Multi-tenant SBC for Microsoft Teams Direct Routing"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the SBC until SIGTERM/SIGINT (SIGHUP reloads the configuration).
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a configuration file and print every problem found.
    CheckConfig { file: PathBuf },
    /// Generate a test CA, an SBC certificate (<base> and *.<base>) and a Teams stand-in
    /// certificate for local labs. Never use them in production.
    DevCerts {
        #[arg(long, default_value = "certs")]
        out: PathBuf,
        #[arg(long, default_value = "sbc.example.test")]
        base_fqdn: String,
    },
    /// Ask a running SBC through its admin API: calls, hang up, SIP ladders, trunks,
    /// reload, drain, log level.
    Ctl(teams_sbc::ctl::CtlArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file } => check_config(&file),
        Command::DevCerts { out, base_fqdn } => dev_certs(&out, &base_fqdn),
        Command::Run { config } => run(&config),
        Command::Ctl(args) => teams_sbc::ctl::main(args),
    }
}

fn check_config(file: &std::path::Path) -> ExitCode {
    match config::load(file) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                eprintln!("warning: {warning}");
            }
            println!(
                "ok: {} tenants, {} trunks",
                loaded.config.tenants.len(),
                loaded.config.carrier_trunks.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for error in &errors.0 {
                eprintln!("{error}");
            }
            eprintln!("{} error(s)", errors.0.len());
            ExitCode::FAILURE
        }
    }
}

fn dev_certs(out: &std::path::Path, base_fqdn: &str) -> ExitCode {
    match teams_sbc::devcerts::generate(out, base_fqdn) {
        Ok(certs) => {
            println!("CA (trust this in test peers): {}", certs.ca_pem.display());
            println!(
                "SBC chain / key ({base_fqdn}, *.{base_fqdn}): {} / {}",
                certs.sbc_chain_pem.display(),
                certs.sbc_key_pem.display()
            );
            println!(
                "Teams stand-in chain / key (sip*.pstnhub.microsoft.com): {} / {}",
                certs.teams_chain_pem.display(),
                certs.teams_key_pem.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dev-certs: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(path: &std::path::Path) -> ExitCode {
    let loaded = match config::load(path) {
        Ok(l) => l,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    let format = match loaded.config.ops.log_format {
        config::LogFormat::Text => teams_sbc::ops::LogFormat::Text,
        config::LogFormat::Json => teams_sbc::ops::LogFormat::Json,
    };
    if let Err(e) = teams_sbc::ops::init_logging(format, &loaded.config.ops.log_level) {
        eprintln!("logging: {e}");
        return ExitCode::FAILURE;
    }
    for warning in &loaded.warnings {
        tracing::warn!(%warning, "configuration");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(teams_sbc::app::run(loaded)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "teams-sbc stopped");
            eprintln!("teams-sbc: {e}");
            ExitCode::FAILURE
        }
    }
}
