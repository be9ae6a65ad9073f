//! `[handler.email]` in `wharf.toml`: where and how e-mail notifications go. The server's
//! address, the sender, the recipients' and the message's templates and the password's
//! form are checked at load; plain SMTP (no TLS) is refused unless the server is on this
//! machine, so no password or event crosses a network in clear. It never sends anything
//! itself: wharf-handlers does.

use std::ops::Range;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use wharf_handlers::{EmailAction, SmtpSecurity, Template};

use crate::config::Loaded;

/// A problem: where, which key, what.
type Problem = (Range<usize>, String, String);

/// `[handler.email]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailSection {
    server: Spanned<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<Spanned<String>>,
    #[serde(default)]
    ca: Option<Spanned<String>>,
    from: Spanned<String>,
    to: Spanned<Vec<String>>,
    #[serde(default)]
    subject: Option<Spanned<String>>,
    #[serde(default)]
    body: Option<Spanned<String>>,
    #[serde(default)]
    batch: u64,
}

const DEFAULT_SUBJECT: &str = "[Wharf] ${EVENT}: ${PATH}";
const DEFAULT_BODY: &str = "Event: ${EVENT} (seq ${SEQ})\nOutcome: ${OUTCOME}\nAccount: ${USER}\n\
Path: ${PATH}\nProtocol: ${PROTOCOL}\nClient: ${REMOTE}\nMessage: ${MESSAGE}\n";

/// Batches longer than a day would hold news for too long.
const MAX_BATCH: u64 = 86_400;

fn loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl EmailSection {
    /// The action, or what is wrong with it.
    pub fn build(
        &self,
        loaded: &Loaded,
        key: &dyn Fn(&str) -> String,
        resolve_secrets: bool,
    ) -> Result<EmailAction, Problem> {
        let key = |k: &str| key(&format!("email.{k}"));
        let server = self.server.get_ref();
        let bad_server = |m: &str| (self.server.span(), key("server"), m.to_owned());
        let url = url::Url::parse(server).map_err(|e| {
            bad_server(&format!(
                "{e}; give smtps://HOST[:465] (TLS), smtp://HOST[:587] (STARTTLS, required) or \
                 smtp+plain://localhost:PORT"
            ))
        })?;
        let (security, default_port) = match url.scheme() {
            "smtps" => (SmtpSecurity::Implicit, 465),
            "smtp" => (SmtpSecurity::StartTls, 587),
            "smtp+plain" => (SmtpSecurity::Plain, 25),
            _ => {
                return Err(bad_server(
                    "use smtps:// (TLS), smtp:// (STARTTLS, required) or smtp+plain:// (this machine only)",
                ));
            }
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad_server("name the server's host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if url.path() != "" && url.path() != "/" || !url.username().is_empty() {
            return Err(bad_server(
                "give only the scheme, host and port; the user name and password are keys of their own",
            ));
        }
        if security == SmtpSecurity::Plain && !loopback(&host) {
            return Err(bad_server(
                "smtp+plain:// only reaches a server on this machine (localhost, 127.0.0.0/8, ::1): \
                 events and passwords would cross the network in clear",
            ));
        }
        let credentials = match (&self.username, &self.password) {
            (None, None) => None,
            (Some(user), Some(password)) => {
                let spec = password.get_ref();
                if !(spec.starts_with("env:") || spec.starts_with("file:")) {
                    return Err((
                        password.span(),
                        key("password"),
                        "give the password as env:NAME or file:PATH, never literally".into(),
                    ));
                }
                let secret = if resolve_secrets {
                    crate::config::auth::secret(loaded, spec)
                        .map_err(|e| (password.span(), key("password"), format!("{e:#}")))?
                } else {
                    "(checked when the server starts)".to_owned()
                };
                Some((user.clone(), secret))
            }
            _ => {
                return Err((
                    self.server.span(),
                    key("username"),
                    "give both username and password, or neither".into(),
                ));
            }
        };
        let ca = match &self.ca {
            Some(path) => {
                let file = loaded.resolve(path.get_ref());
                Some(std::fs::read(&file).map_err(|e| {
                    (
                        path.span(),
                        key("ca"),
                        format!("cannot read {}: {e}", file.display()),
                    )
                })?)
            }
            None => None,
        };
        let from = self.from.get_ref().parse().map_err(|e| {
            (
                self.from.span(),
                key("from"),
                format!("not an address such as \"Wharf <wharf@example.net>\": {e}"),
            )
        })?;
        let template = |text: &str, span: Range<usize>, k: &str| {
            Template::new(text).map_err(|e| (span, key(k), e.to_string()))
        };
        let to = self
            .to
            .get_ref()
            .iter()
            .map(|t| template(t, self.to.span(), "to"))
            .collect::<Result<Vec<_>, _>>()?;
        if to.is_empty() {
            return Err((
                self.to.span(),
                key("to"),
                "name at least one recipient (an address, or a template such as \"${EMAIL}\")"
                    .into(),
            ));
        }
        let subject = match &self.subject {
            Some(s) => template(s.get_ref(), s.span(), "subject")?,
            None => template(DEFAULT_SUBJECT, 0..0, "subject")?,
        };
        let body = match &self.body {
            Some(b) => template(b.get_ref(), b.span(), "body")?,
            None => template(DEFAULT_BODY, 0..0, "body")?,
        };
        if self.batch > MAX_BATCH {
            return Err((
                self.server.span(),
                key("batch"),
                format!("give 0 (a message per event) to {MAX_BATCH} seconds"),
            ));
        }
        Ok(EmailAction {
            port: url.port().unwrap_or(default_port),
            host,
            security,
            ca,
            credentials,
            from,
            to,
            subject,
            body,
            batch: (self.batch > 0).then(|| Duration::from_secs(self.batch)),
        })
    }
}
