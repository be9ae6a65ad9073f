//! The `webhook` action: POST the event's JSON record, signed.
//!
//! Headers: `X-Wharf-Signature: t=<unix seconds>,sha256=<hex>`, the HMAC-SHA256 of
//! `<t>.<body>` under the configured secret (a receiver checks it and rejects old `t` to
//! stop replays), `X-Wharf-Delivery` and `Idempotency-Key` (the same id on every attempt of
//! one job, whichever node makes it, so a receiver can drop duplicates: a node that dies
//! after a delivery and before recording it leaves the job to be delivered again) and `X-Wharf-Event` (the event's name). A 2xx answer is
//! success; 408, 429, 5xx and network failures are retried; any other answer is final.

use std::time::Duration;

use aws_lc_rs::hmac;
use wharf_store::AuditRecord;

use crate::ActionError;
use crate::spec::WebhookAction;

/// Largest answer read.
const MAX_ANSWER: usize = 16 * 1024;

/// The signature header's value for `body` sent at `t`.
pub fn signature_header(secret: &[u8], t: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut context = hmac::Context::with_key(&key);
    context.update(t.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    let tag = context.sign();
    format!("t={t},sha256={}", wharf_types::hex(tag.as_ref()))
}

/// POSTs `record`; answers the status.
pub(crate) async fn deliver(
    action: &WebhookAction,
    record: &AuditRecord,
    delivery: &str,
    timeout: Duration,
) -> Result<u16, ActionError> {
    let body = serde_json::to_vec(record).map_err(|e| ActionError::permanent(e.to_string()))?;
    let t = time::OffsetDateTime::now_utc().unix_timestamp();
    let headers = [
        (
            "x-wharf-signature",
            signature_header(&action.secret, t, &body),
        ),
        ("x-wharf-delivery", delivery.to_owned()),
        ("idempotency-key", delivery.to_owned()),
        ("x-wharf-event", record.name.clone()),
    ];
    let (status, _) = action
        .poster
        .post(body, &headers, timeout, MAX_ANSWER)
        .await
        .map_err(|e| ActionError::retry(format!("{}: {e}", action.url)))?;
    match status {
        200..=299 => Ok(status),
        408 | 429 | 500..=599 => Err(ActionError::retry(format!(
            "{} answered {status}",
            action.url
        ))),
        _ => Err(ActionError::permanent(format!(
            "{} answered {status}",
            action.url
        ))),
    }
}
