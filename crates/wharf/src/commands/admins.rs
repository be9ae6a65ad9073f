//! `wharf admin ...`: Manager administrators, their one-time codes and API tokens, through
//! the same operations the Manager calls (so both validate alike and record the same
//! events, here naming the operating-system user).

use std::process::ExitCode;

use anyhow::{Context as _, Result};
use qrcode::QrCode;
use qrcode::render::unicode::Dense1x2;
use wharf_admin::{AdminChange, NewAdmin, NewToken, Role, admin_view, token_view};

use crate::cli::{AdminCommand, AdminTotpCommand, TokenCommand};
use crate::context::Context;

fn role(text: &str) -> Result<Role> {
    text.parse().map_err(anyhow::Error::msg)
}

/// Runs one `wharf admin` command.
pub async fn run(ctx: &Context, command: AdminCommand) -> Result<ExitCode> {
    let ops = ctx.ops();
    let actor = ctx.actor();
    match command {
        AdminCommand::Add {
            name,
            role: text,
            password_stdin: _,
            require_second_factor,
        } => {
            let role = role(&text)?;
            let password = super::accounts::read_password()?;
            let record = ops
                .add_admin(
                    &actor,
                    NewAdmin {
                        name,
                        password,
                        role,
                        require_second_factor,
                    },
                )
                .await?;
            println!(
                "created administrator {} with the {} role",
                record.name, record.role
            );
        }
        AdminCommand::List { json } => {
            let list = ops.admins(&actor).await?;
            if json {
                for admin in &list {
                    println!("{}", admin_view(admin));
                }
            } else {
                println!("{:<24} {:<9} {:<9} one-time codes", "name", "role", "state");
                for a in &list {
                    println!(
                        "{:<24} {:<9} {:<9} {}",
                        a.name,
                        a.role,
                        if a.enabled { "enabled" } else { "disabled" },
                        codes_text(a)
                    );
                }
            }
        }
        AdminCommand::Show { name, json } => {
            let a = ops.admin(&actor, &name).await?;
            if json {
                println!("{}", admin_view(&a));
            } else {
                println!(
                    "name:    {}\nrole:    {}\nstate:   {}\none-time codes: {}\ncreated: {}",
                    a.name,
                    a.role,
                    if a.enabled { "enabled" } else { "disabled" },
                    codes_text(&a),
                    admin_view(&a)["created"].as_str().unwrap_or_default()
                );
            }
        }
        AdminCommand::Remove { name } => {
            ops.remove_admin(&actor, &name).await?;
            println!("removed administrator {name} and its API tokens");
        }
        AdminCommand::SetPassword { name, .. } => {
            let password = super::accounts::read_password()?;
            ops.change_admin(&actor, &name, vec![AdminChange::Password(password)])
                .await?;
            println!("password changed for administrator {name}");
        }
        AdminCommand::Role { name, role: text } => {
            let record = ops
                .change_admin(&actor, &name, vec![AdminChange::Role(role(&text)?)])
                .await?;
            println!("{name} now has the {} role", record.role);
        }
        AdminCommand::Enable { name } => {
            ops.change_admin(&actor, &name, vec![AdminChange::Enabled(true)])
                .await?;
            println!("enabled administrator {name}");
        }
        AdminCommand::Disable { name } => {
            ops.change_admin(&actor, &name, vec![AdminChange::Enabled(false)])
                .await?;
            println!("disabled administrator {name}");
        }
        AdminCommand::Totp(command) => totp(ctx, command).await?,
        AdminCommand::Token(command) => token(ctx, command).await?,
    }
    Ok(ExitCode::SUCCESS)
}

fn codes_text(a: &wharf_admin::AdminRecord) -> &'static str {
    match (a.second_factor.is_some(), a.require_second_factor) {
        (true, _) => "enrolled",
        (false, true) => "required, not enrolled (logins fail)",
        (false, false) => "none",
    }
}

async fn totp(ctx: &Context, command: AdminTotpCommand) -> Result<()> {
    let ops = ctx.ops();
    let actor = ctx.actor();
    match command {
        AdminTotpCommand::Enable { name, json } => {
            let enrolment = ops.enrol_admin_second_factor(&actor, &name).await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "admin": name,
                        "secret": enrolment.secret,
                        "uri": enrolment.uri,
                        "recovery_codes": enrolment.recovery_codes,
                    })
                );
                return Ok(());
            }
            let qr =
                QrCode::new(enrolment.uri.as_bytes()).context("the URI does not fit a QR code")?;
            let picture = qr
                .render::<Dense1x2>()
                .dark_color(Dense1x2::Light)
                .light_color(Dense1x2::Dark)
                .quiet_zone(true)
                .build();
            println!("Scan this with an authenticator app, or enter the secret by hand.\n");
            println!("{picture}\n");
            println!("secret: {}", enrolment.secret);
            println!("uri:    {}\n", enrolment.uri);
            println!("Recovery codes (each works once; store them somewhere safe):");
            for code in &enrolment.recovery_codes {
                println!("  {code}");
            }
        }
        AdminTotpCommand::Disable { name } => {
            ops.change_admin(&actor, &name, vec![AdminChange::ResetSecondFactor])
                .await?;
            println!("one-time codes removed from administrator {name}");
        }
        AdminTotpCommand::Require { name, off } => {
            ops.change_admin(&actor, &name, vec![AdminChange::RequireSecondFactor(!off)])
                .await?;
            if off {
                println!("{name}'s logins no longer need a one-time code");
            } else {
                println!("{name}'s logins need a one-time code");
            }
        }
    }
    Ok(())
}

async fn token(ctx: &Context, command: TokenCommand) -> Result<()> {
    let ops = ctx.ops();
    let actor = ctx.actor();
    match command {
        TokenCommand::Add {
            name,
            admin,
            role: text,
            days,
            json,
        } => {
            let made = ops
                .add_token(
                    &actor,
                    NewToken {
                        name,
                        owner: Some(admin),
                        role: role(&text)?,
                        days,
                    },
                )
                .await?;
            if json {
                let mut view = token_view(&made.record);
                view["token"] = serde_json::Value::String(made.token);
                println!("{view}");
            } else {
                println!("{}", made.token);
                eprintln!(
                    "API token {} for {} with the {} role, until {} (shown once; send it as \
                     `Authorization: Bearer TOKEN`)",
                    made.record.name,
                    made.record.admin,
                    made.record.role,
                    token_view(&made.record)["expires"]
                        .as_str()
                        .unwrap_or_default()
                );
            }
        }
        TokenCommand::List { json } => {
            let list = ops.tokens(&actor).await?;
            if json {
                for t in &list {
                    println!("{}", token_view(t));
                }
            } else {
                println!(
                    "{:<20} {:<16} {:<9} {:<21} last used",
                    "name", "acts as", "role", "expires"
                );
                for t in &list {
                    let view = token_view(t);
                    println!(
                        "{:<20} {:<16} {:<9} {:<21} {}",
                        t.name,
                        t.admin,
                        t.role,
                        view["expires"].as_str().unwrap_or_default(),
                        view["used"].as_str().unwrap_or("never")
                    );
                }
            }
        }
        TokenCommand::Remove { name } => {
            ops.remove_token(&actor, &name).await?;
            println!("API token {name} revoked");
        }
    }
    Ok(())
}
