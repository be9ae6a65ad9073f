//! The `wharf` binary: command line, configuration, wiring of the store, the audit writer
//! and the services. Every error reaches the user as a message on stderr and a non-zero
//! exit, never a panic or a backtrace.

#![forbid(unsafe_code)]

mod audit;
mod audit_archive;
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
mod metrics;
mod reload;
mod serve;
mod standby;
mod supervisor;
mod transfers;

use std::process::ExitCode;

use clap::Parser;

/// A command's reader that leaves early (`wharf events | head`) ends the command quietly,
/// as it ends other Unix tools, instead of `println!`'s panic on the closed pipe. Only for
/// commands: the server's output goes to its log, and a closed log reader must not stop it.
fn end_quietly_when_the_reader_leaves() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            // 128 + SIGPIPE, what a shell reports for a tool its reader left.
            std::process::exit(141);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    if matches!(cli.command, cli::Command::PdfText) {
        // Before any thread, log or runtime: this process only reads one document.
        return commands::pdf_text::run();
    }
    if !matches!(cli.command, cli::Command::Serve { .. }) {
        end_quietly_when_the_reader_leaves();
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("WHARF_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,russh=warn,sqlx=warn"));
    // The FTP client traces every command it sends, `PASS` and its password among them:
    // never below info, whatever WHARF_LOG asks.
    let filter = match "suppaftp=info".parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    };
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
    let result = runtime.block_on(commands::run(cli));
    // A handler's file work still running on the blocking pool (a large file being checked)
    // does not hold the exit: its job was not marked done, so it runs again after its lease.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("wharf: {e:#}");
            ExitCode::FAILURE
        }
    }
}
