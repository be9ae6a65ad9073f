//! `wharf account totp ...`: enrolment of one-time codes (RFC 6238) and recovery codes,
//! through the same account operation the Manager uses (one validation, one record). The
//! secret and the codes are shown once, here, and stored only in the store (the recovery
//! codes as digests).

use anyhow::{Context as _, Result};
use qrcode::QrCode;
use qrcode::render::unicode::Dense1x2;
use wharf_admin::AccountChange;
use wharf_auth::SecondFactor;

use crate::cli::TotpCommand;
use crate::context::Context;

fn issuer(ctx: &Context) -> String {
    format!("Wharf ({})", ctx.loaded.config.server.name)
}

/// Runs one `wharf account totp` command.
pub async fn run(ctx: &Context, command: TotpCommand) -> Result<()> {
    let ops = ctx.ops();
    let actor = ctx.actor();
    match command {
        TotpCommand::Enable { name, json } => {
            let (factor, codes) = SecondFactor::enrol().map_err(anyhow::Error::msg)?;
            let uri = factor.uri(&issuer(ctx), &name);
            let change = AccountChange::EnrolSecondFactor(Box::new(factor.clone()));
            ops.change_account(&actor, &name, vec![change]).await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "account": name,
                        "secret": factor.secret,
                        "uri": uri,
                        "recovery_codes": codes,
                    })
                );
                return Ok(());
            }
            let qr = QrCode::new(uri.as_bytes()).context("the URI does not fit a QR code")?;
            let picture = qr
                .render::<Dense1x2>()
                .dark_color(Dense1x2::Light)
                .light_color(Dense1x2::Dark)
                .quiet_zone(true)
                .build();
            println!("Scan this with an authenticator app, or enter the secret by hand.\n");
            println!("{picture}\n");
            println!("secret: {}", factor.secret);
            println!("uri:    {uri}\n");
            println!("Recovery codes (each works once; store them somewhere safe):");
            for code in &codes {
                println!("  {code}");
            }
            println!(
                "\nOver SSH the code is asked after the password or key; over FTP and HTTP it \
                 follows the password directly (password123456)."
            );
        }
        TotpCommand::Disable { name } => {
            ops.change_account(&actor, &name, vec![AccountChange::ResetSecondFactor])
                .await?;
            println!("second factor removed from {name}");
        }
        TotpCommand::RecoveryCodes { name } => {
            let (fresh, codes) = SecondFactor::enrol().map_err(anyhow::Error::msg)?;
            let change = AccountChange::ReplaceRecoveryCodes(fresh.recovery);
            ops.change_account(&actor, &name, vec![change]).await?;
            println!("New recovery codes for {name} (the old ones no longer work):");
            for code in &codes {
                println!("  {code}");
            }
        }
    }
    Ok(())
}
