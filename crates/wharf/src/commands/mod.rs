//! One module per command family; `run` dispatches.

mod access;
mod accounts;
mod admins;
mod backup;
mod bans;
mod cluster;
mod events;
mod groups;
mod handlers;
mod io;
pub mod pdf_text;
mod reload;
mod size;
mod store;
mod totp;
mod transfers;

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{Cli, Command};
use crate::config::Loaded;
use crate::context::Context;

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Serve { standby, active } => {
            crate::serve::serve(&cli.config, standby, active.as_deref()).await
        }
        Command::Takeover { wait } => {
            let ctx = Context::open(&cli.config).await?;
            crate::standby::request(&ctx, std::time::Duration::from_secs(wait)).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Init {
            dir,
            store,
            store_password,
            node,
        } => {
            let options = crate::init::InitOptions {
                store,
                store_password,
                node,
            };
            let (path, password) = crate::init::init(&dir, &options).await?;
            crate::init::announce(&path, password.as_deref());
            Ok(ExitCode::SUCCESS)
        }
        Command::PdfText => Ok(pdf_text::run()),
        Command::CheckConfig => match Loaded::load(&cli.config) {
            Ok(loaded) => {
                // What only `serve` reads (handlers' secrets) is read here too.
                if let Err(e) = crate::config::handler::handlers(&loaded) {
                    eprintln!("{}: {e:#}", cli.config.display());
                    return Ok(ExitCode::FAILURE);
                }
                println!("{}: OK", cli.config.display());
                Ok(ExitCode::SUCCESS)
            }
            Err(issues) => {
                eprintln!("{issues}");
                Ok(ExitCode::FAILURE)
            }
        },
        Command::Reload => reload::run(&Context::open(&cli.config).await?).await,
        Command::Account(command) => {
            accounts::run(&Context::open(&cli.config).await?, command).await
        }
        Command::Group(command) => groups::run(&Context::open(&cli.config).await?, command).await,
        Command::Apply { file } => io::apply(&Context::open(&cli.config).await?, &file).await,
        Command::Export => io::export(&Context::open(&cli.config).await?).await,
        Command::Events(args) => events::events(&cli.config, args).await,
        Command::Ban(command) => bans::run(&Context::open(&cli.config).await?, command).await,
        Command::Admin(command) => admins::run(&Context::open(&cli.config).await?, command).await,
        Command::Handler(command) => {
            handlers::run(&Context::open(&cli.config).await?, command).await
        }
        Command::Transfer(command) => {
            transfers::run(&Context::open(&cli.config).await?, command).await
        }
        Command::Store(crate::cli::StoreCommand::Copy {
            to,
            password,
            ca_file,
        }) => {
            let ctx = Context::open(&cli.config).await?;
            store::copy(&ctx, &to, password.as_deref(), ca_file).await
        }
        Command::Cluster(command) => {
            cluster::run(&Context::open(&cli.config).await?, command).await
        }
        Command::Backup(args) => backup::backup(&cli.config, args).await,
        Command::Restore(args) => backup::restore(args).await,
        Command::Audit(crate::cli::AuditCommand::Verify { witness, archives }) => {
            events::verify(&Context::open(&cli.config).await?, &witness, &archives).await
        }
        Command::Audit(crate::cli::AuditCommand::Archive { older_than }) => {
            events::archive(&Context::open(&cli.config).await?, older_than.as_deref()).await
        }
    }
}
