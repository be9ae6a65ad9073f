//! `[handlers]` in `wharf.toml`: how this node holds and runs the handler jobs (the lease and
//! how many at once).
//!
//! `[[handler]]` in `wharf.toml`: event handlers. Each entry has a trigger (`on`), filters,
//! retry settings, and exactly one action table (`[handler.verify-signature]`,
//! `[handler.dispatch]`, `[handler.quarantine]`, `[handler.uuid-prefix]`, `[handler.exec]`,
//! `[handler.webhook]`, `[handler.email]` (see [`crate::config::notify`]), `[handler.openpgp]`
//! (see [`crate::config::openpgp`]), or one of those
//! that look inside files, `[handler.content-check]` and
//! `[handler.antivirus]` (see [`crate::config::inspect`]). Everything is checked at load, keys and secrets included, so a
//! server never starts with a handler it cannot run. It never runs an action itself: the
//! engine in wharf-handlers does.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use wharf_core::{EventKind, PathPattern};
use wharf_handlers::{
    Action, DispatchAction, DispatchRule, ExecAction, Filter, Handler, PssDigest, QuarantineAction,
    SaltLength, SignatureAction, Template, Unmatched, Verifier, WebhookAction,
};

use crate::config::Loaded;

/// An event given by name or id.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum EventRef {
    /// `upload.finished`.
    Name(String),
    /// `30002`.
    Id(u32),
}

/// `[handlers]`: how this node runs the handler jobs of its cluster.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSection {
    /// Seconds a claimed job stays this node's without renewal.
    #[serde(default = "default_lease")]
    lease: Spanned<u64>,
    /// Jobs run at once.
    #[serde(default = "default_concurrency")]
    concurrency: Spanned<u64>,
}

impl Default for QueueSection {
    fn default() -> QueueSection {
        QueueSection {
            lease: default_lease(),
            concurrency: default_concurrency(),
        }
    }
}

fn default_lease() -> Spanned<u64> {
    Spanned::new(0..0, 30)
}

fn default_concurrency() -> Spanned<u64> {
    Spanned::new(0..0, 8)
}

/// Leases this short would be renewed too often to be worth holding; this long, a dead
/// node's jobs would wait too long.
const LEASE: std::ops::RangeInclusive<u64> = 2..=3600;
const CONCURRENCY: std::ops::RangeInclusive<u64> = 1..=256;

impl QueueSection {
    fn validate(&self, issue: &mut dyn FnMut(Range<usize>, String, String)) {
        if !LEASE.contains(self.lease.get_ref()) {
            issue(
                self.lease.span(),
                "handlers.lease".into(),
                format!(
                    "give {} to {} seconds (30 by default): how long a dead node's jobs wait before another node takes them over",
                    LEASE.start(),
                    LEASE.end()
                ),
            );
        }
        if !CONCURRENCY.contains(self.concurrency.get_ref()) {
            issue(
                self.concurrency.span(),
                "handlers.concurrency".into(),
                format!(
                    "give {} to {} jobs at once (8 by default)",
                    CONCURRENCY.start(),
                    CONCURRENCY.end()
                ),
            );
        }
    }

    /// The engine's settings (the section was validated when it loaded).
    pub fn settings(&self) -> wharf_handlers::Settings {
        wharf_handlers::Settings {
            lease: Duration::from_secs(*self.lease.get_ref()),
            concurrency: usize::try_from(*self.concurrency.get_ref()).unwrap_or(8),
        }
    }
}

/// One `[[handler]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandlerSection {
    name: Spanned<String>,
    on: Spanned<Vec<EventRef>>,
    #[serde(default)]
    accounts: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    protocols: Vec<String>,
    #[serde(default)]
    services: Vec<String>,
    #[serde(default)]
    transfers: Vec<String>,
    #[serde(default)]
    path: Option<Spanned<String>>,
    #[serde(default)]
    min_size: Option<u64>,
    #[serde(default)]
    max_size: Option<u64>,
    #[serde(default = "default_attempts")]
    attempts: Spanned<u32>,
    #[serde(default = "default_retry_wait")]
    retry_wait: u64,
    #[serde(default)]
    delay: u64,
    #[serde(default = "default_timeout")]
    timeout: Spanned<u64>,
    #[serde(default, rename = "verify-signature")]
    verify_signature: Option<SignatureSection>,
    #[serde(default)]
    dispatch: Option<DispatchSection>,
    #[serde(default)]
    quarantine: Option<QuarantineSection>,
    #[serde(default, rename = "uuid-prefix")]
    uuid_prefix: Option<EmptySection>,
    #[serde(default)]
    exec: Option<ExecSection>,
    #[serde(default)]
    webhook: Option<WebhookSection>,
    #[serde(default, rename = "content-check")]
    content_check: Option<crate::config::inspect::ContentSection>,
    #[serde(default)]
    antivirus: Option<crate::config::inspect::AntivirusSection>,
    #[serde(default)]
    email: Option<crate::config::notify::EmailSection>,
    #[serde(default)]
    openpgp: Option<crate::config::openpgp::OpenPgpSection>,
}

fn default_attempts() -> Spanned<u32> {
    Spanned::new(0..0, 5)
}

fn default_retry_wait() -> u64 {
    5
}

fn default_timeout() -> Spanned<u64> {
    Spanned::new(0..0, 60)
}

/// `[handler.uuid-prefix]` has no keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmptySection {}

/// A salt length: `digest`, `max` or a number of bytes.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum SaltSpec {
    /// `digest` or `max`.
    Word(String),
    /// Bytes.
    Bytes(u16),
}

/// `[handler.verify-signature]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureSection {
    keys: Spanned<Vec<String>>,
    #[serde(default)]
    digest: Option<Spanned<String>>,
    #[serde(default)]
    salt_length: Option<Spanned<SaltSpec>>,
    #[serde(default)]
    suffix: Option<Spanned<String>>,
    #[serde(default = "default_wait")]
    wait: u64,
    #[serde(default)]
    move_to: Option<Spanned<String>>,
    #[serde(default)]
    quarantine: Option<String>,
}

fn default_wait() -> u64 {
    60
}

/// `[handler.dispatch]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatchSection {
    #[serde(default)]
    rule: Vec<RuleSection>,
    #[serde(default)]
    unmatched: Option<Spanned<String>>,
    #[serde(default)]
    overwrite: bool,
    #[serde(default)]
    quarantine: Option<String>,
}

/// `[[handler.dispatch.rule]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSection {
    #[serde(default)]
    accounts: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    path: Option<Spanned<String>>,
    #[serde(default)]
    copy: bool,
    to: Spanned<String>,
}

/// `[handler.quarantine]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuarantineSection {
    #[serde(default)]
    folder: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

/// `[handler.exec]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecSection {
    program: Spanned<String>,
    #[serde(default)]
    args: Vec<Spanned<String>>,
}

/// `[handler.webhook]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSection {
    url: Spanned<String>,
    secret: Spanned<String>,
    #[serde(default)]
    ca: Option<String>,
}

/// A problem: where, which key, what.
type Problem = (Range<usize>, String, String);

pub(crate) fn event_id(event: &EventRef) -> Option<u32> {
    let kind = match event {
        EventRef::Name(name) => EventKind::ALL.iter().find(|k| k.name() == name),
        EventRef::Id(id) => EventKind::ALL.iter().find(|k| k.id() == *id),
    };
    kind.map(|k| k.id())
}

fn pattern(value: &Option<Spanned<String>>, key: &str) -> Result<Option<PathPattern>, Problem> {
    value
        .as_ref()
        .map(|p| {
            PathPattern::new(p.get_ref()).map_err(|e| (p.span(), key.to_owned(), e.to_string()))
        })
        .transpose()
}

fn template(value: &Spanned<String>, key: &str) -> Result<Template, Problem> {
    Template::new(value.get_ref()).map_err(|e| (value.span(), key.to_owned(), e.to_string()))
}

const PROTOCOLS: &[&str] = &[
    "ssh", "sftp", "scp", "ftp", "ftps", "http", "https", "webdav", "admin",
];

impl HandlerSection {
    fn filter(&self, key: &dyn Fn(&str) -> String) -> Result<Filter, Problem> {
        if let Some(p) = self
            .protocols
            .iter()
            .find(|p| !PROTOCOLS.contains(&p.as_str()))
        {
            return Err((
                self.name.span(),
                key("protocols"),
                format!("{p:?} is not a protocol; use {}", PROTOCOLS.join(", ")),
            ));
        }
        Ok(Filter {
            accounts: self.accounts.clone(),
            groups: self.groups.clone(),
            protocols: self.protocols.clone(),
            services: self.services.clone(),
            transfers: self.transfers.clone(),
            path: pattern(&self.path, &key("path"))?,
            min_size: self.min_size,
            max_size: self.max_size,
        })
    }

    fn action(
        &self,
        loaded: &Loaded,
        key: &dyn Fn(&str) -> String,
        resolve_secrets: bool,
    ) -> Result<Action, Problem> {
        // Absolute, so events and sidecars name the place whatever the server's folder.
        let absolute = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
        let quarantine_default = loaded
            .resolve(&loaded.config.server.data_dir)
            .join("quarantine");
        let folder = |given: &Option<String>| {
            absolute(
                given
                    .as_deref()
                    .map_or_else(|| quarantine_default.clone(), |f| loaded.resolve(f)),
            )
        };
        let set = [
            self.verify_signature.is_some(),
            self.dispatch.is_some(),
            self.quarantine.is_some(),
            self.uuid_prefix.is_some(),
            self.exec.is_some(),
            self.webhook.is_some(),
            self.content_check.is_some(),
            self.antivirus.is_some(),
            self.email.is_some(),
            self.openpgp.is_some(),
        ];
        if set.iter().filter(|s| **s).count() != 1 {
            return Err((
                self.name.span(),
                key("action"),
                "give exactly one action table: [handler.verify-signature], [handler.dispatch], \
                 [handler.quarantine], [handler.uuid-prefix], [handler.exec], [handler.webhook], \
                 [handler.content-check], [handler.antivirus], [handler.email] or [handler.openpgp]"
                    .into(),
            ));
        }
        if let Some(s) = &self.verify_signature {
            let key = |k: &str| key(&format!("verify-signature.{k}"));
            let digest = match &s.digest {
                Some(d) => PssDigest::parse(d.get_ref()).ok_or_else(|| {
                    (
                        d.span(),
                        key("digest"),
                        "use \"sha256\", \"sha384\" or \"sha512\"".to_owned(),
                    )
                })?,
                None => PssDigest::Sha256,
            };
            let salt = match &s.salt_length {
                None => SaltLength::Digest,
                Some(spec) => match spec.get_ref() {
                    SaltSpec::Word(w) if w == "digest" => SaltLength::Digest,
                    SaltSpec::Word(w) if w == "max" => SaltLength::Max,
                    SaltSpec::Bytes(n) => SaltLength::Bytes(*n),
                    SaltSpec::Word(_) => {
                        return Err((
                            spec.span(),
                            key("salt_length"),
                            "use \"digest\" (the default), \"max\" or a number of bytes".into(),
                        ));
                    }
                },
            };
            let mut files = Vec::new();
            for file in s.keys.get_ref() {
                let path = loaded.resolve(file);
                let pem = std::fs::read_to_string(&path).map_err(|e| {
                    (
                        s.keys.span(),
                        key("keys"),
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| file.clone());
                files.push((name, pem));
            }
            if files.is_empty() {
                return Err((
                    s.keys.span(),
                    key("keys"),
                    "list at least one PEM public key".into(),
                ));
            }
            let verifier = Verifier::new(&files, digest, salt)
                .map_err(|e| (s.keys.span(), key("keys"), e.to_string()))?;
            let suffix = s
                .suffix
                .as_ref()
                .map_or_else(|| ".sig".to_owned(), |x| x.get_ref().clone());
            if suffix.is_empty() || suffix.contains('/') {
                return Err((
                    s.suffix.as_ref().map_or(0..0, Spanned::span),
                    key("suffix"),
                    "must be a non-empty name ending such as \".sig\"".into(),
                ));
            }
            return Ok(Action::VerifySignature(SignatureAction {
                verifier: Arc::new(verifier),
                suffix,
                wait: Duration::from_secs(s.wait),
                move_to: s
                    .move_to
                    .as_ref()
                    .map(|t| template(t, &key("move_to")))
                    .transpose()?,
                quarantine: folder(&s.quarantine),
            }));
        }
        if let Some(d) = &self.dispatch {
            let key = |k: &str| key(&format!("dispatch.{k}"));
            let mut rules = Vec::new();
            for (i, rule) in d.rule.iter().enumerate() {
                let key = |k: &str| key(&format!("rule[{i}].{k}"));
                rules.push(DispatchRule {
                    filter: Filter {
                        accounts: rule.accounts.clone(),
                        groups: rule.groups.clone(),
                        path: pattern(&rule.path, &key("path"))?,
                        ..Filter::default()
                    },
                    copy: rule.copy,
                    to: template(&rule.to, &key("to"))?,
                });
            }
            let unmatched = match d
                .unmatched
                .as_ref()
                .map(|u| (u.span(), u.get_ref().as_str()))
            {
                None | Some((_, "leave")) => Unmatched::Leave,
                Some((_, "quarantine")) => Unmatched::Quarantine,
                Some((span, _)) => {
                    return Err((
                        span,
                        key("unmatched"),
                        "use \"leave\" (the default) or \"quarantine\"".into(),
                    ));
                }
            };
            if rules.is_empty() && unmatched == Unmatched::Leave {
                return Err((
                    self.name.span(),
                    key("rule"),
                    "add [[handler.dispatch.rule]] entries (or unmatched = \"quarantine\")".into(),
                ));
            }
            return Ok(Action::Dispatch(DispatchAction {
                rules,
                unmatched,
                quarantine: folder(&d.quarantine),
                overwrite: d.overwrite,
            }));
        }
        if let Some(q) = &self.quarantine {
            return Ok(Action::Quarantine(QuarantineAction {
                folder: folder(&q.folder),
                reason: q
                    .reason
                    .clone()
                    .unwrap_or_else(|| format!("quarantined by handler {}", self.name.get_ref())),
            }));
        }
        if self.uuid_prefix.is_some() {
            return Ok(Action::UuidPrefix);
        }
        if let Some(c) = &self.content_check {
            let quarantine = folder(c.quarantine());
            return c
                .build(loaded, self.name.span(), key, quarantine)
                .map(Action::ContentCheck);
        }
        if let Some(a) = &self.antivirus {
            let quarantine = folder(a.quarantine());
            return a.build(loaded, key, quarantine).map(Action::Antivirus);
        }
        if let Some(p) = &self.openpgp {
            let quarantine = folder(p.quarantine());
            return p
                .build(loaded, key, resolve_secrets, quarantine)
                .map(Action::OpenPgp);
        }
        if let Some(e) = &self.email {
            return e.build(loaded, key, resolve_secrets).map(Action::Email);
        }
        if let Some(x) = &self.exec {
            let key = |k: &str| key(&format!("exec.{k}"));
            let program = PathBuf::from(x.program.get_ref());
            if !program.is_absolute() {
                return Err((
                    x.program.span(),
                    key("program"),
                    "give the program's absolute path (no PATH search, no shell)".into(),
                ));
            }
            if !program.is_file() {
                return Err((
                    x.program.span(),
                    key("program"),
                    format!("{} does not exist", program.display()),
                ));
            }
            let args = x
                .args
                .iter()
                .map(|a| template(a, &key("args")))
                .collect::<Result<_, _>>()?;
            return Ok(Action::Exec(ExecAction { program, args }));
        }
        if let Some(w) = &self.webhook {
            let key = |k: &str| key(&format!("webhook.{k}"));
            let spec = w.secret.get_ref();
            if !(spec.starts_with("env:") || spec.starts_with("file:")) {
                return Err((
                    w.secret.span(),
                    key("secret"),
                    "give the secret as env:NAME or file:PATH, never literally".into(),
                ));
            }
            // Commands other than `serve` check the configuration too, from shells that may
            // not hold the server's environment: they check the form, `serve` reads it.
            let secret = if resolve_secrets {
                crate::config::auth::secret(loaded, spec)
                    .map_err(|e| (w.secret.span(), key("secret"), format!("{e:#}")))?
            } else {
                "(checked when the server starts)".to_owned()
            };
            if secret.len() < 16 {
                return Err((
                    w.secret.span(),
                    key("secret"),
                    "the secret is shorter than 16 bytes".into(),
                ));
            }
            let ca = match &w.ca {
                Some(path) => {
                    let path = loaded.resolve(path);
                    Some(std::fs::read(&path).map_err(|e| {
                        (
                            w.url.span(),
                            key("ca"),
                            format!("cannot read {}: {e}", path.display()),
                        )
                    })?)
                }
                None => None,
            };
            let poster = wharf_net::post::Poster::new(w.url.get_ref(), ca.as_deref())
                .map_err(|e| (w.url.span(), key("url"), e.to_string()))?;
            return Ok(Action::Webhook(WebhookAction {
                poster,
                url: w.url.get_ref().clone(),
                secret: secret.into_bytes(),
            }));
        }
        Err((self.name.span(), key("action"), "no action".into()))
    }

    fn build(&self, i: usize, loaded: &Loaded, resolve_secrets: bool) -> Result<Handler, Problem> {
        let key = |k: &str| format!("handler[{i}].{k}");
        let name = self.name.get_ref();
        if !plain_name(name) {
            return Err((
                self.name.span(),
                key("name"),
                "use 1 to 64 letters, digits, '-', '_' or '.'".into(),
            ));
        }
        let mut on = Vec::new();
        for event in self.on.get_ref() {
            match event_id(event) {
                Some(id) => on.push(id),
                None => {
                    let given = match event {
                        EventRef::Name(name) => format!("{name:?}"),
                        EventRef::Id(id) => id.to_string(),
                    };
                    return Err((
                        self.on.span(),
                        key("on"),
                        format!(
                            "{given} is not in the event catalogue (docs/events.md); give names such as \"upload.finished\" or ids such as 30002"
                        ),
                    ));
                }
            }
        }
        if on.is_empty() {
            return Err((
                self.on.span(),
                key("on"),
                "name at least one event, such as \"upload.finished\"".into(),
            ));
        }
        if *self.attempts.get_ref() == 0 {
            return Err((
                self.attempts.span(),
                key("attempts"),
                "must be at least 1".into(),
            ));
        }
        if *self.timeout.get_ref() == 0 {
            return Err((
                self.timeout.span(),
                key("timeout"),
                "must be at least 1 second".into(),
            ));
        }
        Ok(Handler {
            name: name.clone(),
            on,
            filter: self.filter(&key)?,
            attempts: *self.attempts.get_ref(),
            retry_wait: Duration::from_secs(self.retry_wait.max(1)),
            delay: Duration::from_secs(self.delay),
            timeout: Duration::from_secs(*self.timeout.get_ref()),
            action: self.action(loaded, &key, resolve_secrets)?,
        })
    }
}

/// A name for a handler or one of its parts: 1 to 64 letters, digits, `-`, `_` or `.`.
pub(crate) fn plain_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Reports what is wrong with the handlers through `issue(span, key, message)`.
pub fn validate(loaded: &Loaded, issue: &mut dyn FnMut(Range<usize>, String, String)) {
    loaded.config.handler_queue.validate(issue);
    validate_list(loaded, issue);
}

/// Reports what is wrong with the `[[handler]]` list alone (a cluster revision holds it
/// without the node's `[handlers]`).
pub fn validate_list(loaded: &Loaded, issue: &mut dyn FnMut(Range<usize>, String, String)) {
    let mut names = std::collections::HashSet::new();
    for (i, section) in loaded.config.handlers.iter().enumerate() {
        if !names.insert(section.name.get_ref().as_str()) {
            issue(
                section.name.span(),
                format!("handler[{i}].name"),
                format!("duplicate handler name {:?}", section.name.get_ref()),
            );
        }
        if let Err((span, key, message)) = section.build(i, loaded, false) {
            issue(span, key, message);
        }
    }
}

/// The configured handlers (the configuration was validated when it loaded), and those
/// that start transfers on events (see [`crate::config::transfer::event_handlers`]).
pub fn handlers(loaded: &Loaded) -> anyhow::Result<Vec<Handler>> {
    let mut all = loaded
        .config
        .handlers
        .iter()
        .enumerate()
        .map(|(i, section)| {
            section
                .build(i, loaded, true)
                .map_err(|(_, key, message)| anyhow::anyhow!("{key}: {message}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    all.extend(crate::config::transfer::event_handlers(loaded));
    Ok(all)
}
