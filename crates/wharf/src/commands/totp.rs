//! `wharf account totp ...`: enrolment of one-time codes (RFC 6238) and recovery codes.
//! The secret and the codes are shown once, here, and stored only in the store (the
//! recovery codes as digests).

use anyhow::{Context as _, Result, bail};
use qrcode::QrCode;
use qrcode::render::unicode::Dense1x2;
use wharf_auth::SecondFactor;
use wharf_core::EventKind;

use crate::cli::TotpCommand;
use crate::context::Context;

fn issuer(ctx: &Context) -> String {
    format!("Wharf ({})", ctx.loaded.config.server.name)
}

/// Runs one `wharf account totp` command.
pub async fn run(ctx: &Context, command: TotpCommand) -> Result<()> {
    match command {
        TotpCommand::Enable { name, json } => {
            let mut record = super::accounts::load(ctx, &name).await?;
            let (factor, codes) = SecondFactor::enrol().map_err(anyhow::Error::msg)?;
            let uri = factor.uri(&issuer(ctx), &name);
            record.second_factor = Some(serde_json::to_string(&factor)?);
            ctx.store.update_account(&record).await?;
            ctx.record(
                EventKind::AccountUpdated,
                &name,
                "second factor (TOTP) enrolled",
            )
            .await?;
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
            let mut record = super::accounts::load(ctx, &name).await?;
            if record.second_factor.take().is_none() {
                bail!("{name} has no second factor enrolled");
            }
            ctx.store.update_account(&record).await?;
            ctx.record(EventKind::AccountUpdated, &name, "second factor removed")
                .await?;
            println!("second factor removed from {name}");
        }
        TotpCommand::RecoveryCodes { name } => {
            let mut record = super::accounts::load(ctx, &name).await?;
            let Some(stored) = &record.second_factor else {
                bail!(
                    "{name} has no second factor enrolled; use `wharf account totp enable {name}`"
                );
            };
            let mut factor: SecondFactor =
                serde_json::from_str(stored).context("the stored second factor is unreadable")?;
            let (fresh, codes) = SecondFactor::enrol().map_err(anyhow::Error::msg)?;
            factor.recovery = fresh.recovery;
            record.second_factor = Some(serde_json::to_string(&factor)?);
            ctx.store.update_account(&record).await?;
            ctx.record(EventKind::AccountUpdated, &name, "recovery codes replaced")
                .await?;
            println!("New recovery codes for {name} (the old ones no longer work):");
            for code in &codes {
                println!("  {code}");
            }
        }
    }
    Ok(())
}
