//! Which records a sink takes: event names, ids or id ranges (`4xxxx`), an outcome, accounts.

use wharf_core::EventKind;
use wharf_store::AuditRecord;

/// A filter entry that names nothing in the catalogue.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct FilterError(pub String);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pick {
    Id(u32),
    Range(u32),
}

/// All set parts must match; an empty filter takes every record.
#[derive(Debug, Clone, Default)]
pub struct SinkFilter {
    events: Vec<Pick>,
    outcome: Option<String>,
    accounts: Vec<String>,
}

impl SinkFilter {
    /// A filter on `events` (names such as `login.failed`, ids such as `20011`, or ranges such
    /// as `2xxxx`), an outcome (`success` or `failure`) and accounts.
    pub fn new(
        events: &[String],
        outcome: Option<&str>,
        accounts: &[String],
    ) -> Result<SinkFilter, FilterError> {
        let mut picks = Vec::new();
        for event in events {
            let pick = if let Some(digit) = event
                .strip_suffix("xxxx")
                .and_then(|d| d.parse::<u32>().ok())
                .filter(|d| (1..=6).contains(d))
            {
                Pick::Range(digit)
            } else if let Ok(id) = event.parse::<u32>() {
                EventKind::from_id(id)
                    .map(|k| Pick::Id(k.id()))
                    .ok_or_else(|| FilterError(format!("{event:?}: no event has this id")))?
            } else {
                EventKind::ALL
                    .iter()
                    .find(|k| k.name() == event)
                    .map(|k| Pick::Id(k.id()))
                    .ok_or_else(|| {
                        FilterError(format!(
                            "{event:?} is not in the event catalogue (docs/events.md); give names, ids or ranges such as \"4xxxx\""
                        ))
                    })?
            };
            picks.push(pick);
        }
        if let Some(o) = outcome
            && !matches!(o, "success" | "failure")
        {
            return Err(FilterError(format!(
                "outcome {o:?}: use \"success\" or \"failure\""
            )));
        }
        Ok(SinkFilter {
            events: picks,
            outcome: outcome.map(str::to_owned),
            accounts: accounts.to_vec(),
        })
    }

    /// Whether the sink takes `record`.
    pub fn matches(&self, record: &AuditRecord) -> bool {
        let event_ok = self.events.is_empty()
            || self.events.iter().any(|p| match p {
                Pick::Id(id) => record.id == *id,
                Pick::Range(r) => record.id / 10000 == *r,
            });
        event_ok
            && self.outcome.as_ref().is_none_or(|o| *o == record.outcome)
            && (self.accounts.is_empty()
                || record
                    .account
                    .as_ref()
                    .is_some_and(|a| self.accounts.contains(a)))
    }
}
