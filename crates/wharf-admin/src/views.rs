//! What an operation shows of a record: the one JSON form the CLI's `--json`, the admin
//! API and the events' before/after share. None holds a secret: no password hash, no
//! second-factor secret, no token or its digest.

use serde_json::{Value, json};
use wharf_store::{AccountRecord, AdminRecord, AdminTokenRecord, BanRecord};

fn expiry(us: Option<i64>) -> Option<String> {
    let us = us?;
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000).ok()?;
    wharf_types::rfc3339::format(t).ok()
}

/// An account.
pub fn account_view(record: &AccountRecord) -> Value {
    json!({
        "name": record.name,
        "enabled": record.enabled,
        "password": record.password_hash.is_some(),
        "home": record.home,
        "groups": record.groups,
        "keys": record.keys,
        "rules": record.rules,
        "addresses": record.addresses,
        "second_factor": record.second_factor.is_some(),
        "require_second_factor": record.require_second_factor,
        "expires": expiry(record.expires_us),
        "max_file_size": record.max_file_size,
        "email": record.email,
    })
}

/// A Manager administrator.
pub fn admin_view(record: &AdminRecord) -> Value {
    json!({
        "name": record.name,
        "role": record.role,
        "enabled": record.enabled,
        "second_factor": record.second_factor.is_some(),
        "require_second_factor": record.require_second_factor,
        "created": crate::time_text(record.created_us),
    })
}

/// An API token (never the token).
pub fn token_view(record: &AdminTokenRecord) -> Value {
    json!({
        "name": record.name,
        "admin": record.admin,
        "role": record.role,
        "created": crate::time_text(record.created_us),
        "expires": crate::time_text(record.expires_us),
        "used": record.used_us.map(crate::time_text),
    })
}

/// A ban.
pub fn ban_view(ban: &BanRecord) -> Value {
    json!({
        "network": ban.network,
        "banned": crate::time_text(ban.banned_us),
        "until": crate::time_text(ban.until_us),
        "strikes": ban.strikes,
        "reason": ban.reason,
        "node": ban.node,
    })
}
