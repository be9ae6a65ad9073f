//! `[audit]` rotation and `[[audit.sink]]`: the copies of the trail besides the store. It
//! builds the sinks and never writes a record itself: the audit writer does.

use std::ops::Range;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use wharf_handlers::sinks::{JsonLines, Rotation, Sink, SinkFilter, Syslog, SyslogTarget, Target};

use crate::config::Loaded;

/// One `[[audit.sink]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkSection {
    /// `jsonl`, `syslog` or `stdout`.
    #[serde(rename = "type")]
    kind: Spanned<String>,
    /// Name in logs (default: the type).
    #[serde(default)]
    name: Option<String>,
    /// `jsonl`: the file.
    #[serde(default)]
    path: Option<Spanned<String>>,
    /// `jsonl`: rotation, as in `[audit]`.
    #[serde(default)]
    rotate_size: u64,
    #[serde(default)]
    rotate_age: u64,
    #[serde(default)]
    keep: usize,
    /// `syslog`: `udp://HOST:PORT`, `tcp://HOST:PORT` or `unix:///dev/log`.
    #[serde(default)]
    url: Option<Spanned<String>>,
    /// `syslog`: facility name (default `local0`).
    #[serde(default)]
    facility: Option<Spanned<String>>,
    /// Filter: event names, ids or ranges (`4xxxx`).
    #[serde(default)]
    events: Option<Spanned<Vec<String>>>,
    /// Filter: `success` or `failure`.
    #[serde(default)]
    outcome: Option<Spanned<String>>,
    /// Filter: account names.
    #[serde(default)]
    accounts: Vec<String>,
}

type Problem = (Range<usize>, String, String);

const FACILITIES: &[(&str, u8)] = &[
    ("auth", 4),
    ("authpriv", 10),
    ("daemon", 3),
    ("user", 1),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

/// Rotation settings from seconds and counts.
pub fn rotation(size: u64, age: u64, keep: usize) -> Rotation {
    Rotation {
        max_bytes: size,
        max_age: Duration::from_secs(age),
        keep,
    }
}

impl SinkSection {
    fn build(&self, i: usize, loaded: &Loaded, node: &str) -> Result<Sink, Problem> {
        let key = |k: &str| format!("audit.sink[{i}].{k}");
        let events_span = self
            .events
            .as_ref()
            .map_or_else(|| self.kind.span(), Spanned::span);
        let filter = SinkFilter::new(
            self.events.as_ref().map_or(&[][..], |e| e.get_ref()),
            self.outcome.as_ref().map(|o| o.get_ref().as_str()),
            &self.accounts,
        )
        .map_err(|e| {
            let span = self
                .outcome
                .as_ref()
                .filter(|_| e.0.starts_with("outcome"))
                .map_or_else(|| events_span.clone(), Spanned::span);
            (span, key("events"), e.to_string())
        })?;
        let kind = self.kind.get_ref().as_str();
        let misplaced = |present: bool, k: &str, owner: &str| -> Result<(), Problem> {
            if present {
                Err((
                    self.kind.span(),
                    key(k),
                    format!("applies to type \"{owner}\" only"),
                ))
            } else {
                Ok(())
            }
        };
        let target = match kind {
            "jsonl" => {
                misplaced(self.url.is_some(), "url", "syslog")?;
                misplaced(self.facility.is_some(), "facility", "syslog")?;
                let path = self.path.as_ref().ok_or_else(|| {
                    (
                        self.kind.span(),
                        key("path"),
                        "a jsonl sink needs path = \"FILE\"".into(),
                    )
                })?;
                Target::Jsonl(JsonLines::new(
                    loaded.resolve(path.get_ref()),
                    rotation(self.rotate_size, self.rotate_age, self.keep),
                ))
            }
            "syslog" => {
                misplaced(self.path.is_some(), "path", "jsonl")?;
                let url = self.url.as_ref().ok_or_else(|| {
                    (
                        self.kind.span(),
                        key("url"),
                        "a syslog sink needs url = \"udp://HOST:PORT\", \"tcp://HOST:PORT\" or \"unix:///dev/log\"".into(),
                    )
                })?;
                let target = SyslogTarget::parse(url.get_ref())
                    .map_err(|e| (url.span(), key("url"), e.to_string()))?;
                let facility = match &self.facility {
                    None => 16,
                    Some(f) => FACILITIES
                        .iter()
                        .find(|(n, _)| *n == f.get_ref())
                        .map(|(_, v)| *v)
                        .ok_or_else(|| {
                            let names: Vec<&str> = FACILITIES.iter().map(|(n, _)| *n).collect();
                            (
                                f.span(),
                                key("facility"),
                                format!("use one of {}", names.join(", ")),
                            )
                        })?,
                };
                Target::Syslog(Syslog::new(target, facility, node.to_owned()))
            }
            "stdout" => {
                misplaced(self.path.is_some(), "path", "jsonl")?;
                misplaced(self.url.is_some(), "url", "syslog")?;
                Target::Stdout
            }
            other => {
                return Err((
                    self.kind.span(),
                    key("type"),
                    format!(
                        "{other:?} is not a sink type; use \"jsonl\", \"syslog\" or \"stdout\""
                    ),
                ));
            }
        };
        Ok(Sink {
            name: self.name.clone().unwrap_or_else(|| kind.to_owned()),
            filter,
            target,
        })
    }
}

/// Reports what is wrong with `[[audit.sink]]`.
pub fn validate(loaded: &Loaded, issue: &mut dyn FnMut(Range<usize>, String, String)) {
    for (i, section) in loaded.config.audit.sink.iter().enumerate() {
        if let Err((span, key, message)) = section.build(i, loaded, "check") {
            issue(span, key, message);
        }
    }
}

/// The configured sinks; `stdout` ones only for the server (`with_stdout`), so commands'
/// own output stays clean.
/// The `[[audit.sink]]` sections written canonically: a reload compares them to tell
/// whether the sinks changed.
pub fn written(loaded: &Loaded) -> String {
    std::fs::read_to_string(&loaded.path)
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .and_then(|table| {
            table
                .get("audit")
                .and_then(|a| a.get("sink"))
                .map(ToString::to_string)
        })
        .unwrap_or_default()
}

pub fn sinks(loaded: &Loaded, with_stdout: bool) -> anyhow::Result<Vec<Sink>> {
    let node = &loaded.config.server.name;
    let mut out = Vec::new();
    for (i, section) in loaded.config.audit.sink.iter().enumerate() {
        let sink = section
            .build(i, loaded, node)
            .map_err(|(_, key, message)| anyhow::anyhow!("{key}: {message}"))?;
        if with_stdout || !matches!(sink.target, Target::Stdout) {
            out.push(sink);
        }
    }
    Ok(out)
}
