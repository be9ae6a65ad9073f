//! `content-check`: what an uploaded file says, checked against the administrator's rules
//! (built-in detectors with checksums, regular expressions, dictionaries), the text inside
//! ZIP archives and office documents included, in bounded memory.
//!
//! A matching file is tagged (the `user.wharf.tags` extended attribute, and `attrs.tags`),
//! quarantined or removed, as the strongest matched rule says; a file whose content could
//! not be read whole within the limits is quarantined unless the handler lets it pass.
//! Events name the rules and how many matches each had, never the matched text. The file is
//! opened and checked like every handler's (see [`crate::subject`]), and only if it was not
//! written to while it was read is anything done to it.

pub mod pdf;
pub mod rules;
pub mod scan;
pub mod walk;
mod xml;

use std::path::PathBuf;

use wharf_core::{Event, EventKind};

use crate::ActionError;
use crate::actions::{Job, Left, Quarantine, Step, blocking};
use crate::files;
pub use pdf::PdfReader;
pub use rules::{Builtin, Detector, Outcome, Rule};
pub use walk::Limits;

/// The extended attribute that holds a file's tags, comma-separated.
pub const TAGS_ATTRIBUTE: &str = "user.wharf.tags";

/// What a file that cannot be read whole comes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenUnscannable {
    /// Quarantined (the default: what could not be read could hold anything).
    Quarantine,
    /// Passed, with the reason in `content.passed`.
    Pass,
}

/// `content-check`.
pub struct ContentAction {
    /// The rules, in the order given.
    pub rules: std::sync::Arc<[Rule]>,
    /// How far the content is followed.
    pub limits: Limits,
    /// What a file that could not be read whole comes to.
    pub unscannable: WhenUnscannable,
    /// The quarantine folder.
    pub quarantine: PathBuf,
    /// What reads PDF documents' text (none: a PDF document is unscannable).
    pub pdf: Option<PdfReader>,
}

enum Verdict {
    Passed {
        left: Left,
        unscannable: Option<String>,
    },
    Matched {
        counts: Vec<(String, u64)>,
        outcome: Outcome,
        tags: Vec<String>,
        left: Option<Left>,
    },
    Unscannable {
        reason: String,
        left: Left,
    },
    WasQuarantined(Left),
}

/// Adds `tags` to the file's tags attribute; `false` where the filesystem keeps none.
fn tag(held: &crate::subject::Held, tags: &[String]) -> bool {
    let mut buf = [0u8; 4096];
    let mut all: Vec<String> = match rustix::fs::fgetxattr(&held.file, TAGS_ATTRIBUTE, &mut buf[..])
    {
        Ok(len) => String::from_utf8_lossy(&buf[..len])
            .split(',')
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect(),
        Err(_) => Vec::new(),
    };
    for t in tags {
        if !all.contains(t) {
            all.push(t.clone());
        }
    }
    let value = all.join(",");
    if value.len() > buf.len() {
        return false;
    }
    rustix::fs::fsetxattr(
        &held.file,
        TAGS_ATTRIBUTE,
        value.as_bytes(),
        rustix::fs::XattrFlags::empty(),
    )
    .is_ok()
}

fn summary(counts: &[(String, u64)]) -> String {
    counts
        .iter()
        .map(|(name, n)| format!("{name}={n}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Runs one attempt of a content check.
pub(crate) async fn content_check(
    job: &Job<'_>,
    check: &ContentAction,
    timeout: std::time::Duration,
) -> Result<Step, ActionError> {
    let subject = job.subject()?;
    let record = job.record.clone();
    let q = Quarantine::new(job, &check.quarantine, "");
    let (rules, limits, when) = (check.rules.clone(), check.limits, check.unscannable);
    let pdf = check.pdf.clone();
    let (q, verdict, tagged) = blocking(move || {
        let Some(held) = subject.open()? else {
            if let Some(left) = q.done_before(&subject)? {
                return Ok((q, Verdict::WasQuarantined(left), false));
            }
            return Err(subject.gone());
        };
        held.check(&record, &subject.path, true)?;
        let here = Left {
            file: subject.file.clone(),
            root: subject.root.clone(),
            id: Some(held.id),
        };
        let mut scanner = scan::Scanner::new(&rules);
        // The whole check ends within the handler's timeout: a file that would take longer
        // (a large dictionary over much text, a PDF document that is slow to read) is one
        // that could not be read whole, not a job that holds the engine.
        let walked = walk::Walk::new(&mut scanner, limits)
            .reading_pdf(pdf.as_ref())
            .within(timeout)
            .file(&held.file);
        held.unchanged(&subject.path)?;
        held.still_named(&subject.path)?;
        let reason = match walked {
            Ok(()) => None,
            Err(walk::Stop::Io(e)) => {
                return Err(ActionError::retry(format!(
                    "cannot read {}: {e}",
                    subject.path
                )));
            }
            Err(walk::Stop::Unscannable(u)) => Some(u.0),
        };
        if let Some(reason) = reason {
            return match when {
                WhenUnscannable::Pass => Ok((
                    q,
                    Verdict::Passed {
                        left: here,
                        unscannable: Some(reason),
                    },
                    false,
                )),
                WhenUnscannable::Quarantine => {
                    let q = Quarantine {
                        reason: format!("content not checked: {reason}"),
                        ..q
                    };
                    let left = q.held(&subject, &held, &[])?;
                    Ok((q, Verdict::Unscannable { reason, left }, false))
                }
            };
        }
        let mut counts = Vec::new();
        let mut outcome = None;
        let mut tags = Vec::new();
        for (rule, n) in rules.iter().zip(scanner.counts()) {
            if *n >= rule.min_matches && *n > 0 {
                counts.push((rule.name.clone(), *n));
                tags.push(rule.name.clone());
                outcome = outcome.max(Some(rule.outcome));
            }
        }
        let Some(outcome) = outcome else {
            return Ok((
                q,
                Verdict::Passed {
                    left: here,
                    unscannable: None,
                },
                false,
            ));
        };
        let reason = format!("content rules matched: {}", summary(&counts));
        let (left, tagged, q) = match outcome {
            Outcome::Tag => {
                let tagged = tag(&held, &tags);
                (Some(here), tagged, q)
            }
            Outcome::Quarantine => {
                let q = Quarantine { reason, ..q };
                let left = q.held(&subject, &held, &[])?;
                (Some(left), false, q)
            }
            Outcome::Deny => {
                files::remove_file(&held, &subject.path)?;
                (None, false, q)
            }
        };
        Ok((
            q,
            Verdict::Matched {
                counts,
                outcome,
                tags,
                left,
            },
            tagged,
        ))
    })
    .await?;
    Ok(Step::Done(match verdict {
        Verdict::Passed { left, unscannable } => {
            let event = job.event_at(EventKind::ContentPassed, &left);
            vec![match unscannable {
                Some(reason) => event.attr("unscannable", "true").message(format!(
                    "content not checked: {reason}; passed as configured"
                )),
                None => event,
            }]
        }
        Verdict::Unscannable { reason, left } => vec![
            job.event(EventKind::ContentUnscannable)
                .failed(reason)
                .attr("quarantine", left.file.to_string_lossy()),
            q.event(job, &left),
        ],
        Verdict::WasQuarantined(left) => vec![q.event(job, &left)],
        Verdict::Matched {
            counts,
            outcome,
            tags,
            left,
        } => {
            let mut matched: Event = match &left {
                Some(left) if outcome == Outcome::Tag => {
                    job.event_at(EventKind::ContentMatched, left)
                }
                _ => job.event(EventKind::ContentMatched),
            };
            matched = matched
                .attr("matches", summary(&counts))
                .attr("tags", tags.join(","))
                .attr("outcome", outcome.as_str())
                .message(format!(
                    "content rules matched: {}",
                    counts
                        .iter()
                        .map(|(n, c)| format!("{n} ({c})"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            match (outcome, left) {
                // Tagged files may go on: `content.passed` is what dispatch follows.
                (Outcome::Tag, Some(left)) => vec![
                    matched.attr("tagged", tagged.to_string()),
                    job.event_at(EventKind::ContentPassed, &left)
                        .attr("tags", tags.join(",")),
                ],
                (Outcome::Quarantine, Some(left)) => vec![
                    matched.attr("quarantine", left.file.to_string_lossy()),
                    q.event(job, &left),
                ],
                _ => vec![
                    matched,
                    job.event(EventKind::FileRemoved)
                        .message("removed: its content matched a rule that denies it"),
                ],
            }
        }
    }))
}
