//! `wharf.toml`: node-level settings, loaded strictly.
//!
//! Unknown keys are errors, and every error names the file, the line and the key, with what
//! to do about it. Relative paths are relative to the folder holding the configuration file.
//! Each section's own module (`service`, `auth`, `handler`, `health`, `policy`, `sink`,
//! `store`, `transfer`) owns its keys and checks; this one reads the file and gathers their issues.
//! Loading never opens a socket, writes a file or changes the store: it only reads and
//! checks.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use toml::de::DeTable;

pub mod auth;
pub mod backup;
pub mod handler;
pub mod health;
pub mod inspect;
mod keys;
pub mod notify;
pub mod openpgp;
pub mod policy;
pub mod service;
pub mod shared;
pub mod sink;
pub mod store;
pub mod transfer;

pub use service::{FtpTls, ManagerKeys, Service, ServiceKind};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[server]`.
    #[serde(default)]
    pub server: ServerSection,
    /// `[store]`.
    #[serde(default)]
    pub store: crate::config::store::StoreSection,
    /// `[audit]`.
    #[serde(default)]
    pub audit: AuditSection,
    /// `[[service]]`, typed once at load (read apart from the rest: see `Loaded::load`).
    #[serde(skip)]
    pub services: Vec<Service>,
    /// `[tls]`.
    #[serde(default)]
    pub tls: Option<TlsSection>,
    /// `[ban]`.
    #[serde(default)]
    pub ban: crate::config::policy::BanSection,
    /// `[password_policy]`.
    #[serde(default)]
    pub password_policy: crate::config::policy::PasswordSection,
    /// `[[authentication]]`, in chain order.
    #[serde(default)]
    pub authentication: Vec<crate::config::auth::AuthenticationSection>,
    /// `[[handler]]`: event handlers.
    #[serde(default, rename = "handler")]
    pub handlers: Vec<crate::config::handler::HandlerSection>,
    /// `[health]`: the load balancers' health listener and draining.
    #[serde(default)]
    pub health: Option<crate::config::health::HealthSection>,
    /// `[handlers]`: how this node holds and runs handler jobs.
    #[serde(default, rename = "handlers")]
    pub handler_queue: crate::config::handler::QueueSection,
    /// `[backup]`: backups the server takes on a schedule.
    #[serde(default)]
    pub backup: Option<crate::config::backup::BackupSection>,
    /// `[[location]]`: where client-side transfers take files from and deliver them to.
    #[serde(default, rename = "location")]
    pub locations: Vec<crate::config::transfer::LocationSection>,
    /// `[[transfer]]`: client-side transfers.
    #[serde(default, rename = "transfer")]
    pub transfers: Vec<crate::config::transfer::TransferSection>,
}

/// `[server]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Node name in audit records.
    #[serde(default = "default_node")]
    pub name: String,
    /// Data folder.
    #[serde(default = "default_data_dir")]
    pub data_dir: String,
    /// Seconds between this node's heartbeats in the store.
    #[serde(default = "default_heartbeat")]
    pub heartbeat: Spanned<u64>,
    /// Seconds without a heartbeat after which a node is shown down and its name may be
    /// taken by a new process.
    #[serde(default = "default_node_timeout")]
    pub node_timeout: Spanned<u64>,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            name: default_node(),
            data_dir: default_data_dir(),
            heartbeat: default_heartbeat(),
            node_timeout: default_node_timeout(),
        }
    }
}

fn default_node() -> String {
    "wharf-1".to_owned()
}

fn default_data_dir() -> String {
    "wharf-data".to_owned()
}

fn default_heartbeat() -> Spanned<u64> {
    Spanned::new(0..0, 2)
}

fn default_node_timeout() -> Spanned<u64> {
    Spanned::new(0..0, 6)
}

/// `[audit]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// JSON-lines file receiving every record; empty to disable.
    #[serde(default = "default_jsonl")]
    pub jsonl: String,
    /// Rotate the JSON-lines file at this many bytes (0: never).
    #[serde(default)]
    pub rotate_size: u64,
    /// Rotate it when its first record is this many seconds old (0: never).
    #[serde(default)]
    pub rotate_age: u64,
    /// Rotated files kept (0: all).
    #[serde(default)]
    pub keep: usize,
    /// `[[audit.sink]]`: further copies, each with a filter.
    #[serde(default)]
    pub sink: Vec<crate::config::sink::SinkSection>,
    /// Days a record stays in the store before it moves to an archive file (0: forever).
    #[serde(default = "default_retention")]
    pub retention_days: Spanned<u64>,
    /// Folder of this node's archive files.
    #[serde(default = "default_archive_dir")]
    pub archive_dir: String,
}

fn default_retention() -> Spanned<u64> {
    Spanned::new(0..0, 0)
}

fn default_archive_dir() -> String {
    "wharf-data/archive".to_owned()
}

/// The longest retention taken: a hundred years.
pub const MAX_RETENTION_DAYS: u64 = 36_500;

impl Default for AuditSection {
    fn default() -> Self {
        AuditSection {
            jsonl: default_jsonl(),
            rotate_size: 0,
            rotate_age: 0,
            keep: 0,
            sink: Vec::new(),
            retention_days: default_retention(),
            archive_dir: default_archive_dir(),
        }
    }
}

fn default_jsonl() -> String {
    "wharf-data/audit.jsonl".to_owned()
}

/// `[tls]`: the certificate shared by the TLS services.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// PEM certificate chain.
    pub certificate: String,
    /// PEM private key.
    pub key: String,
}

/// An address: one literal, or a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Addresses {
    /// One address.
    One(String),
    /// Several.
    Many(Vec<String>),
}

/// One problem found in the file.
#[derive(Debug, Clone)]
pub struct Issue {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// Dotted key.
    pub key: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(
                f,
                "{}:{}: {}: {}",
                self.file.display(),
                line,
                self.key,
                self.message
            ),
            None => write!(f, "{}: {}: {}", self.file.display(), self.key, self.message),
        }
    }
}

/// All problems found.
#[derive(Debug)]
pub struct Issues(pub Vec<Issue>);

impl fmt::Display for Issues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{issue}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Issues {}

/// A loaded, validated configuration with its location.
pub struct Loaded {
    /// The parsed file.
    pub config: Config,
    /// The file's path.
    pub path: PathBuf,
    /// Folder relative paths start from.
    pub base: PathBuf,
    /// The cluster revision whose shared sections replaced the file's, if any.
    pub cluster: Option<shared::Source>,
}

fn line_of(text: &str, offset: usize) -> Option<usize> {
    if offset == 0 && text.is_empty() {
        return None;
    }
    Some(text[..offset.min(text.len())].matches('\n').count() + 1)
}

/// `:LINE` of `span` in `loaded`'s file (read again), or nothing when it is not known.
pub(crate) fn collector_line(loaded: &Loaded, span: std::ops::Range<usize>) -> String {
    if span == (0..0) {
        return String::new();
    }
    std::fs::read_to_string(&loaded.path)
        .ok()
        .and_then(|text| line_of(&text, span.start))
        .map(|line| format!(":{line}"))
        .unwrap_or_default()
}

/// A file the TOML parser or a section's struct refused, as an issue.
pub(crate) fn parse_issue(path: &Path, text: &str, e: &toml::de::Error) -> Issue {
    Issue {
        file: path.to_owned(),
        line: e.span().and_then(|s| line_of(text, s.start)),
        key: e
            .message()
            .split('`')
            .nth(1)
            .unwrap_or("(syntax)")
            .to_owned(),
        message: format!(
            "{}; see docs/configuration.md for the allowed keys",
            e.message().trim()
        ),
    }
}

/// The `[[service]]` sections with their positions; anything else written under `service`
/// is reported.
fn service_sections<'i>(
    written: Option<toml::Spanned<toml::de::DeValue<'i>>>,
    found: &mut Vec<service::Found>,
) -> Vec<(usize, toml::Spanned<toml::de::DeValue<'i>>)> {
    let Some(written) = written else {
        return Vec::new();
    };
    let span = written.span();
    match written.into_inner() {
        toml::de::DeValue::Array(sections) => sections.into_iter().enumerate().collect(),
        _ => {
            found.push((
                span,
                "service".into(),
                "write each service as a [[service]] section".into(),
            ));
            Vec::new()
        }
    }
}

impl Loaded {
    /// Reads, parses and validates `path`.
    pub fn load(path: &Path) -> Result<Loaded, Issues> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Issues(vec![Issue {
                file: path.to_owned(),
                line: None,
                key: "(file)".to_owned(),
                message: format!("cannot read: {e}; run `wharf init` to create one"),
            }])
        })?;
        let refused = |e: toml::de::Error| Issues(vec![parse_issue(path, &text, &e)]);
        // `[[service]]` is read apart: its keys depend on its type, which serde's derive
        // cannot see. Everything else is read strictly, as written.
        let mut root = DeTable::parse(&text).map_err(refused)?;
        let sections = root.get_mut().remove("service");
        let mut config =
            Config::deserialize(toml::de::Deserializer::from(root)).map_err(refused)?;
        let mut found = Vec::new();
        for (index, section) in service_sections(sections, &mut found) {
            // What the section says, written canonically: a reload compares these to tell a
            // changed service from one only moved or commented.
            let written =
                toml::Value::deserialize(toml::de::ValueDeserializer::from(section.clone()))
                    .map(|v| v.to_string())
                    .unwrap_or_default();
            match Service::from_section(index, section) {
                Ok(mut service) => {
                    service.written = written;
                    config.services.push(service);
                }
                Err(problems) => found.extend(problems),
            }
        }
        let base = path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            })
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let loaded = Loaded {
            config,
            path: path.to_owned(),
            base,
            cluster: None,
        };
        let issues = loaded.validate(&text, found);
        if issues.is_empty() {
            Ok(loaded)
        } else {
            Err(Issues(issues))
        }
    }

    /// Resolves a configured path against the configuration's folder.
    pub fn resolve(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.base.join(p)
        }
    }

    fn validate(&self, text: &str, found: Vec<service::Found>) -> Vec<Issue> {
        let mut issues = Vec::new();
        {
            let mut issue = collector(&self.path, text, &mut issues);
            self.config.ban.validate(&mut issue);
            self.config.password_policy.validate(&mut issue);
            crate::config::auth::validate(&self.config.authentication, &mut issue);
            crate::config::handler::validate(self, &mut issue);
            crate::config::sink::validate(self, &mut issue);
            crate::config::transfer::validate(self, &mut issue);
            let retention = &self.config.audit.retention_days;
            if *retention.get_ref() > MAX_RETENTION_DAYS {
                issue(
                    retention.span(),
                    "audit.retention_days".into(),
                    format!("give 0 (keep every record in the store) to {MAX_RETENTION_DAYS}"),
                );
            }
            if let Some(health) = &self.config.health {
                health.validate(&mut issue);
            }
            if let Some(backup) = &self.config.backup {
                backup.validate(&mut issue);
            }
            self.config.store.validate(&mut issue);
            if !self.resolve(&self.config.server.data_dir).is_dir() {
                issue(
                    0..0,
                    "server.data_dir".into(),
                    format!(
                        "{:?} is not a folder; create it or run `wharf init`",
                        self.config.server.data_dir
                    ),
                );
            }
            crate::cluster::validate(&self.config.server, &mut issue);
            if let Some(tls) = &self.config.tls {
                for (key, file) in [("tls.certificate", &tls.certificate), ("tls.key", &tls.key)] {
                    if !self.resolve(file).is_file() {
                        issue(
                            0..0,
                            key.into(),
                            format!("{file:?} does not exist; give a PEM file or remove [tls]"),
                        );
                    }
                }
            }
            for (span, key, message) in found {
                issue(span, key, message);
            }
            let mut names = std::collections::HashSet::new();
            for service in &self.config.services {
                if !names.insert(service.name.get_ref().clone()) {
                    issue(
                        service.name.span(),
                        format!("service[{}].name", service.index),
                        format!(
                            "duplicate service name {:?}; names must be unique",
                            service.name.get_ref()
                        ),
                    );
                }
                service.validate(self, &mut |(span, key, message)| issue(span, key, message));
            }
        }
        issues
    }
}

/// A sink for `(span, key, message)` problems of `text`, read from `file`, into `issues`.
pub(crate) fn collector<'a>(
    file: &'a Path,
    text: &'a str,
    issues: &'a mut Vec<Issue>,
) -> impl FnMut(std::ops::Range<usize>, String, String) + 'a {
    move |span, key, message| {
        issues.push(Issue {
            file: file.to_owned(),
            line: if span == (0..0) {
                None
            } else {
                line_of(text, span.start)
            },
            key,
            message,
        });
    }
}

/// Seconds as a duration.
pub fn secs(value: &Spanned<u64>) -> Duration {
    Duration::from_secs(*value.get_ref())
}
