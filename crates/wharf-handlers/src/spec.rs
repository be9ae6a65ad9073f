//! What a handler is, once its configuration has been checked: a trigger, filters and one
//! action. Building these is the configuration loader's work; this crate only runs them.

use std::path::PathBuf;
use std::time::Duration;

use wharf_core::{Event, PathPattern};
use wharf_store::AuditRecord;

use crate::signature::Verifier;
use crate::template::Template;

/// One `[[handler]]`.
pub struct Handler {
    /// Unique name, in events (`attrs.handler`) and in the queue.
    pub name: String,
    /// Event ids that trigger it.
    pub on: Vec<u32>,
    /// Which of those events it acts on.
    pub filter: Filter,
    /// Attempts before giving up (at least 1).
    pub attempts: u32,
    /// Wait after the first failed attempt; doubled after each one, up to ten minutes.
    pub retry_wait: Duration,
    /// Wait between the event and the first attempt.
    pub delay: Duration,
    /// Time allowed for one attempt.
    pub timeout: Duration,
    /// What it does.
    pub action: Action,
}

/// All set filters must match; values within one filter are alternatives.
#[derive(Default)]
pub struct Filter {
    /// Account names.
    pub accounts: Vec<String>,
    /// Group names (any of the account's groups).
    pub groups: Vec<String>,
    /// Protocols (`sftp`, `ftps`...).
    pub protocols: Vec<String>,
    /// Service names.
    pub services: Vec<String>,
    /// Client-side transfers' names (`attrs.transfer` of their events).
    pub transfers: Vec<String>,
    /// A pattern on the client-visible path, with the permission rules' syntax.
    pub path: Option<PathPattern>,
    /// Smallest size in bytes.
    pub min_size: Option<u64>,
    /// Largest size in bytes.
    pub max_size: Option<u64>,
}

/// The groups an event names (`attrs.groups`).
pub(crate) fn groups_of(record: &AuditRecord) -> Vec<&str> {
    split_groups(record.attrs.get("groups"))
}

fn split_groups(groups: Option<&String>) -> Vec<&str> {
    groups
        .map(|g| g.split(',').filter(|s| !s.is_empty()).collect())
        .unwrap_or_default()
}

/// What a [`Filter`] looks at: from a recorded event, or from one about to be recorded
/// (an upload deciding its name as it commits).
pub struct Facts<'a> {
    account: Option<&'a str>,
    protocol: Option<&'a str>,
    service: Option<&'a str>,
    transfer: Option<&'a str>,
    groups: Vec<&'a str>,
    size: Option<u64>,
}

impl<'a> Facts<'a> {
    /// The facts of a record in the trail.
    pub fn of_record(record: &'a AuditRecord) -> Facts<'a> {
        Facts {
            account: record.account.as_deref(),
            protocol: record.protocol.as_deref(),
            service: record.service.as_deref(),
            transfer: record.attrs.get("transfer").map(String::as_str),
            groups: groups_of(record),
            size: record
                .bytes
                .or_else(|| record.attrs.get("size").and_then(|s| s.parse::<u64>().ok())),
        }
    }

    /// The facts of an event not recorded yet.
    pub fn of_event(event: &'a Event) -> Facts<'a> {
        Facts {
            account: event.account.as_deref(),
            protocol: event.protocol.map(|p| p.as_str()),
            service: event.service.as_deref(),
            transfer: event.attrs.get("transfer").map(String::as_str),
            groups: split_groups(event.attrs.get("groups")),
            size: event
                .bytes
                .or_else(|| event.attrs.get("size").and_then(|s| s.parse::<u64>().ok())),
        }
    }
}

impl Filter {
    /// Whether `record` passes, `path` being the client-visible path of its file.
    pub fn matches(&self, record: &AuditRecord, path: Option<&str>) -> bool {
        self.matches_facts(&Facts::of_record(record), &[path])
    }

    /// Whether `facts` pass, with any of `paths` (the file's path, and the path the client
    /// gave when the core chose another name) matching the path pattern.
    pub fn matches_facts(&self, facts: &Facts<'_>, paths: &[Option<&str>]) -> bool {
        let one_of = |list: &[String], value: Option<&str>| {
            list.is_empty() || value.is_some_and(|v| list.iter().any(|l| l == v))
        };
        if !one_of(&self.accounts, facts.account)
            || !one_of(&self.protocols, facts.protocol)
            || !one_of(&self.services, facts.service)
            || !one_of(&self.transfers, facts.transfer)
        {
            return false;
        }
        if !self.groups.is_empty()
            && !self
                .groups
                .iter()
                .any(|g| facts.groups.contains(&g.as_str()))
        {
            return false;
        }
        if let Some(pattern) = &self.path
            && !paths.iter().flatten().any(|p| pattern.is_match(p))
        {
            return false;
        }
        let size = facts.size;
        if self
            .min_size
            .is_some_and(|min| size.is_none_or(|s| s < min))
        {
            return false;
        }
        if self
            .max_size
            .is_some_and(|max| size.is_none_or(|s| s > max))
        {
            return false;
        }
        true
    }
}

/// What a handler does.
pub enum Action {
    /// Checks a detached RSASSA-PSS signature; valid files may move on, the others go to
    /// quarantine.
    VerifySignature(SignatureAction),
    /// Moves or copies by ordered rules.
    Dispatch(DispatchAction),
    /// Moves the file to quarantine.
    Quarantine(QuarantineAction),
    /// Renames the file to `<uuid>-<name>`.
    UuidPrefix,
    /// Runs a program.
    Exec(ExecAction),
    /// POSTs the event.
    Webhook(WebhookAction),
    /// Encrypts, decrypts, signs or verifies the file with OpenPGP.
    OpenPgp(crate::openpgp::OpenPgpAction),
    /// Sends an e-mail about the event (or, batched, about a window of events).
    Email(crate::email::EmailAction),
    /// Checks the file's content against rules; a match tags, quarantines or removes it.
    ContentCheck(crate::content::ContentAction),
    /// Has ClamAV's daemon scan the file; an infected one is quarantined or removed.
    Antivirus(crate::antivirus::AntivirusAction),
    /// Asks for a run of the client-side transfer of this name (`[[transfer]]` with `on`);
    /// whichever node holds the transfer's lease runs it.
    RunTransfer(String),
}

impl Action {
    /// The action's configuration name.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::VerifySignature(_) => "verify-signature",
            Action::Dispatch(_) => "dispatch",
            Action::Quarantine(_) => "quarantine",
            Action::UuidPrefix => "uuid-prefix",
            Action::Exec(_) => "exec",
            Action::Webhook(_) => "webhook",
            Action::Email(_) => "email",
            Action::OpenPgp(_) => "openpgp",
            Action::ContentCheck(_) => "content-check",
            Action::Antivirus(_) => "antivirus",
            Action::RunTransfer(_) => "transfer",
        }
    }

    /// Whether the action needs a file to act on (and so ignores events without one).
    pub fn needs_file(&self) -> bool {
        !matches!(
            self,
            Action::Exec(_) | Action::Webhook(_) | Action::RunTransfer(_) | Action::Email(_)
        )
    }
}

/// `verify-signature`.
pub struct SignatureAction {
    /// The keys and algorithm.
    pub verifier: std::sync::Arc<Verifier>,
    /// The signature's name is the file's name plus this (default `.sig`).
    pub suffix: String,
    /// How long to wait for a signature that has not arrived yet.
    pub wait: Duration,
    /// Where a valid file (and its signature) goes, if anywhere.
    pub move_to: Option<Template>,
    /// The quarantine folder.
    pub quarantine: PathBuf,
}

/// `dispatch`.
pub struct DispatchAction {
    /// Ordered rules; the first that matches decides.
    pub rules: Vec<DispatchRule>,
    /// What happens when none matches.
    pub unmatched: Unmatched,
    /// The quarantine folder (for `unmatched = "quarantine"`).
    pub quarantine: PathBuf,
    /// Replace a different file already at the destination (else the job fails).
    pub overwrite: bool,
}

/// One dispatch rule.
pub struct DispatchRule {
    /// Which files: the rule's filters (accounts, groups, path).
    pub filter: Filter,
    /// Copy rather than move.
    pub copy: bool,
    /// The destination path.
    pub to: Template,
}

/// What a dispatch does with a file no rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmatched {
    /// Leave it where it is.
    Leave,
    /// Move it to quarantine.
    Quarantine,
}

/// `quarantine`.
pub struct QuarantineAction {
    /// The quarantine folder.
    pub folder: PathBuf,
    /// Why, in the sidecar and the event.
    pub reason: String,
}

/// `exec`.
pub struct ExecAction {
    /// Absolute path of the program.
    pub program: PathBuf,
    /// Arguments; each template is one argument.
    pub args: Vec<Template>,
}

/// `webhook`.
pub struct WebhookAction {
    /// Where to POST.
    pub poster: wharf_net::post::Poster,
    /// The URL, for events.
    pub url: String,
    /// The HMAC-SHA256 key.
    pub secret: Vec<u8>,
}
