//! `--allow-from`, `--deny-from`, `--any-address` and `--expires` of `wharf account`
//! and `wharf group` (the last for accounts only), and the same fields in `wharf apply` files.

use anyhow::{Result, bail};
use time::OffsetDateTime;
use wharf_types::{AddressRules, IpNetwork};

use crate::cli::AccessArgs;

/// Parses networks given on the command line or in a file.
pub fn networks(list: &[String], what: &str) -> Result<Vec<IpNetwork>> {
    list.iter()
        .map(|text| {
            text.parse::<IpNetwork>()
                .map_err(|e| anyhow::anyhow!("{what}: {e}"))
        })
        .collect()
}

/// Applies the flags to `rules` (`any_address`: `--any-address`); true when something was
/// given.
pub fn apply(rules: &mut AddressRules, args: &AccessArgs, any_address: bool) -> Result<bool> {
    if any_address {
        *rules = AddressRules::default();
        return Ok(true);
    }
    if !args.allow_from.is_empty() {
        rules.allow = networks(&args.allow_from, "--allow-from")?;
    }
    if !args.deny_from.is_empty() {
        rules.deny = networks(&args.deny_from, "--deny-from")?;
    }
    Ok(!args.allow_from.is_empty() || !args.deny_from.is_empty())
}

/// Parses an expiry: `never`, a date (`2027-01-31`, from 00:00 UTC) or an RFC 3339 time;
/// returns µs since the Unix epoch.
pub fn parse_expiry(text: &str) -> Result<Option<i64>> {
    if text == "never" {
        return Ok(None);
    }
    let at = if let Ok(t) = wharf_types::rfc3339::parse(text) {
        t
    } else {
        let format = time::macros::format_description!("[year]-[month]-[day]");
        match time::Date::parse(text, &format) {
            Ok(date) => date.midnight().assume_utc(),
            Err(_) => bail!(
                "expiry {text:?}: use a date (2027-01-31), an RFC 3339 time (2027-01-31T18:00:00Z) or never"
            ),
        }
    };
    Ok(Some(
        i64::try_from(at.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX),
    ))
}

/// An expiry for people and exports: RFC 3339, or `None` for never.
pub fn expiry_text(us: Option<i64>) -> Option<String> {
    let us = us?;
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000).ok()?;
    wharf_types::rfc3339::format(t).ok()
}

/// `allow 10.0.0.0/8; deny 10.9.0.0/16`, or `any`.
pub fn describe(rules: &AddressRules) -> String {
    let list = |v: &[IpNetwork]| {
        v.iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (rules.allow.is_empty(), rules.deny.is_empty()) {
        (true, true) => "any".to_owned(),
        (false, true) => format!("allow {}", list(&rules.allow)),
        (true, false) => format!("any but {}", list(&rules.deny)),
        (false, false) => format!("allow {}; deny {}", list(&rules.allow), list(&rules.deny)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_forms() {
        assert_eq!(parse_expiry("never").unwrap(), None);
        let day = parse_expiry("2027-01-31").unwrap().unwrap();
        assert_eq!(expiry_text(Some(day)).unwrap(), "2027-01-31T00:00:00Z");
        let t = parse_expiry("2027-01-31T18:30:00+01:00").unwrap();
        assert_eq!(expiry_text(t).unwrap(), "2027-01-31T17:30:00Z");
        for bad in ["tomorrow", "2027-13-01", "31/01/2027", ""] {
            assert!(parse_expiry(bad).is_err(), "{bad}");
        }
    }
}
