//! The `wharf` binary: command line, configuration, wiring of the store, the audit writer
//! and the services. Every error reaches the user as a message on stderr and a non-zero
//! exit, never a panic or a backtrace.

#![forbid(unsafe_code)]

mod audit;
mod audit_spill;
mod backup;
mod cli;
mod cluster;
mod commands;
mod config;
mod context;
mod health;
mod init;
mod leftovers;
mod manager;
mod reload;
mod serve;
mod standby;
mod supervisor;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("WHARF_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,russh=warn,sqlx=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .init();
    // One crypto provider for every TLS user in the process, chosen before any is built.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wharf: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("wharf: {e:#}");
            ExitCode::FAILURE
        }
    }
}
