//! Reading the audit trail: every role may.

use wharf_core::events::Outcome;
use wharf_store::{AuditRecord, EventFilter};

use crate::{Actor, AdminError, Need, Operations};

/// The filters of an event search (the store's, as the API and `wharf events` give them).
pub type EventSearch = EventFilter;

/// A search's start: RFC 3339 (`2026-11-25T10:00:00Z`), or an age before now such as
/// `90s`, `15m`, `2h`, `7d`; in µs since the epoch.
pub fn parse_since(text: &str) -> Result<i64, AdminError> {
    let now = time::OffsetDateTime::now_utc();
    let at = if let Ok(t) = wharf_types::rfc3339::parse(text) {
        t
    } else {
        let (number, unit) = text.split_at(text.trim_end_matches(char::is_alphabetic).len());
        let n: i64 = number.parse().map_err(|_| {
            AdminError::invalid(format!(
                "since {text:?}: use RFC 3339 (2026-11-25T10:00:00Z) or an age such as 15m, 2h, 7d"
            ))
        })?;
        let secs = match unit {
            "s" => Some(n),
            "m" => n.checked_mul(60),
            "h" => n.checked_mul(3600),
            "d" => n.checked_mul(86400),
            _ => {
                return Err(AdminError::invalid(format!(
                    "since {text:?}: the unit must be s, m, h or d"
                )));
            }
        };
        let secs = secs
            .filter(|s| (0..=100 * 366 * 86400).contains(s))
            .ok_or_else(|| AdminError::invalid(format!("since {text:?}: at most 100 years")))?;
        now - time::Duration::seconds(secs)
    };
    Ok(i64::try_from(at.unix_timestamp_nanos() / 1000).unwrap_or(0))
}

/// Event ids as typed: one (`20011`), or an inclusive range (`30000-30099`); into the
/// search's `id` or `id_range`.
pub fn parse_ids(text: &str, search: &mut EventSearch) -> Result<(), AdminError> {
    let number = |part: &str| {
        part.trim().parse::<u32>().map_err(|_| {
            AdminError::invalid(format!(
                "id {text:?}: give one event id (20011) or a range (30000-30099)"
            ))
        })
    };
    match text.split_once('-') {
        None => search.id = Some(number(text)?),
        Some((low, high)) => {
            let (low, high) = (number(low)?, number(high)?);
            if low > high {
                return Err(AdminError::invalid(format!(
                    "id {text:?}: the range's first id is above its last"
                )));
            }
            search.id_range = Some((low, high));
        }
    }
    Ok(())
}

/// An outcome as typed: `success` or `failure`.
pub fn parse_outcome(text: &str) -> Result<Outcome, AdminError> {
    match text {
        "success" => Ok(Outcome::Success),
        "failure" => Ok(Outcome::Failure),
        _ => Err(AdminError::invalid(format!(
            "outcome {text:?}: use success or failure"
        ))),
    }
}

/// The most records one search returns.
pub const MAX_PAGE: i64 = 1000;

impl Operations {
    /// The records `search` selects, at most [`MAX_PAGE`].
    pub async fn events(
        &self,
        actor: &Actor,
        mut search: EventSearch,
    ) -> Result<Vec<AuditRecord>, AdminError> {
        actor.require(Need::Read, "read events")?;
        if search.limit <= 0 || search.limit > MAX_PAGE {
            search.limit = MAX_PAGE;
        }
        Ok(self.store.events(&search).await?)
    }
}
