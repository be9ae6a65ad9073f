//! `email`: a message about an event, over SMTP (implicit TLS, or STARTTLS required;
//! plain SMTP only to this machine), with templates for the recipients, subject and body.
//!
//! With a `batch` window, a burst of events becomes one message per window and recipient
//! set: each event's job waits for its window to close, then the job of the window's
//! earliest event (lowest `seq`) reads the window's events from the trail and sends them
//! all; the `email.sent` it records names the window and the last `seq` it covered, and
//! the other jobs of the window find themselves covered and send nothing. An event written
//! to the trail after the message went (a node that was cut from the store) is not covered
//! and gets a message of its own. Delivery is at least once: a message sent just before a
//! crash is sent again, with the same `Message-ID`, which mail systems use to drop repeats.
//!
//! Recipients come from templates; `${EMAIL}` and `${GROUP_EMAIL}` are read from the store
//! when the message is made. Header values made from events lose their control characters,
//! so no event can add a header.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use wharf_core::EventKind;
use wharf_store::{AuditRecord, EventFilter};

use crate::ActionError;
use crate::actions::{Job, Step};
use crate::template::Template;

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// TLS from the first byte (`smtps://`, port 465).
    Implicit,
    /// STARTTLS, required (`smtp://`, port 587 or 25).
    StartTls,
    /// None: only to a server on this machine.
    Plain,
}

/// `email`.
pub struct EmailAction {
    /// The server's host name (checked against its certificate).
    pub host: String,
    /// Its port.
    pub port: u16,
    /// How the connection is protected.
    pub security: SmtpSecurity,
    /// A CA to trust instead of the system's (PEM).
    pub ca: Option<Vec<u8>>,
    /// User name and password, if the server asks for them.
    pub credentials: Option<(String, String)>,
    /// The sender.
    pub from: Mailbox,
    /// Recipients: each template expands to addresses separated by commas.
    pub to: Vec<Template>,
    /// The subject of one event's message.
    pub subject: Template,
    /// The body of one event's message.
    pub body: Template,
    /// Events within one window of this length become one message.
    pub batch: Option<Duration>,
}

/// Events a batched message lists at most (the rest are counted).
const MAX_LISTED: usize = 200;
/// Events of one window read from the trail at most.
const MAX_WINDOW: i64 = 10_000;
/// Time after a window closes for its last events to reach the trail.
const SETTLE: Duration = Duration::from_secs(2);
/// How long a job waits for the window's sender before sending on its own.
const COVER_WAIT: Duration = Duration::from_secs(120);

fn header_text(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(250)
        .collect()
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

fn time_us(record: &AuditRecord) -> i64 {
    wharf_types::rfc3339::parse(&record.time)
        .map(|t| i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn now_us() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

/// The variables of `record`'s message, with the addresses the store holds.
async fn vars_of(job: &Job<'_>, record: &AuditRecord) -> BTreeMap<&'static str, String> {
    let one = Job {
        handler: job.handler,
        store: job.store,
        record,
        uuid: job.uuid.clone(),
    };
    let subject = crate::subject::subject(record);
    let mut vars = one.vars(subject.as_ref());
    if subject.is_none()
        && let Some(path) = &record.path
    {
        vars.insert(
            "NAME",
            path.rsplit('/').next().unwrap_or_default().to_owned(),
        );
    }
    let mut email = String::new();
    let mut group_emails = Vec::new();
    if let Some(account) = &record.account
        && let Ok(Some(found)) = job.store.account(account).await
    {
        email = found.email.clone().unwrap_or_default();
        for group in &found.groups {
            if let Ok(Some(g)) = job.store.group(group).await
                && let Some(address) = g.email
            {
                group_emails.push(address);
            }
        }
    }
    vars.insert("EMAIL", email);
    vars.insert("GROUP_EMAIL", group_emails.join(","));
    vars
}

fn recipients(
    action: &EmailAction,
    vars: &BTreeMap<&'static str, String>,
) -> Result<BTreeSet<String>, ActionError> {
    let mut all = BTreeSet::new();
    for template in &action.to {
        for address in template.expand(vars).split(',') {
            let address = address.trim();
            if address.is_empty() {
                continue;
            }
            let mailbox: Mailbox = address.parse().map_err(|e| {
                ActionError::permanent(format!("{address:?} is not an e-mail address: {e}"))
            })?;
            all.insert(mailbox.email.to_string());
        }
    }
    Ok(all)
}

/// What one message says.
struct Letter {
    to: BTreeSet<String>,
    subject: String,
    body: String,
    events: usize,
}

fn letter(
    action: &EmailAction,
    to: BTreeSet<String>,
    parts: &[BTreeMap<&'static str, String>],
    total: usize,
) -> Letter {
    let first = parts.first().cloned().unwrap_or_default();
    let mut subject = header_text(&action.subject.expand(&first));
    if total > 1 {
        subject.push_str(&format!(" (and {} more)", total - 1));
    }
    let mut body = parts
        .iter()
        .map(|v| action.body.expand(v))
        .collect::<Vec<_>>()
        .join("\n\n----\n\n");
    if total > parts.len() {
        body.push_str(&format!(
            "\n\n----\n\n{} more events in this window are not listed; see the trail.\n",
            total - parts.len()
        ));
    }
    Letter {
        to,
        subject,
        body,
        events: total,
    }
}

async fn send(
    action: &EmailAction,
    letter: &Letter,
    message_id: &str,
    timeout: Duration,
) -> Result<(), ActionError> {
    let mut builder = Message::builder()
        .from(action.from.clone())
        .subject(letter.subject.clone())
        .message_id(Some(message_id.to_owned()))
        .header(ContentType::TEXT_PLAIN);
    for address in &letter.to {
        let mailbox: Mailbox = address
            .parse()
            .map_err(|e| ActionError::permanent(format!("{address:?}: {e}")))?;
        builder = builder.to(mailbox);
    }
    let message = builder
        .body(letter.body.clone())
        .map_err(|e| ActionError::permanent(format!("cannot make the message: {e}")))?;
    let tls = || -> Result<TlsParameters, ActionError> {
        let mut params = TlsParameters::builder(action.host.clone());
        if let Some(ca) = &action.ca {
            let cert = Certificate::from_pem(ca)
                .map_err(|e| ActionError::permanent(format!("the ca: {e}")))?;
            params = params
                .certificate_store(CertificateStore::None)
                .add_root_certificate(cert);
        }
        params
            .build()
            .map_err(|e| ActionError::permanent(format!("TLS: {e}")))
    };
    let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&action.host)
        .port(action.port)
        .timeout(Some(timeout));
    transport = match action.security {
        SmtpSecurity::Implicit => transport.tls(Tls::Wrapper(tls()?)),
        SmtpSecurity::StartTls => transport.tls(Tls::Required(tls()?)),
        SmtpSecurity::Plain => transport.tls(Tls::None),
    };
    if let Some((user, password)) = &action.credentials {
        transport = transport.credentials(Credentials::new(user.clone(), password.clone()));
    }
    let transport = transport.build();
    match tokio::time::timeout(timeout, transport.send(message)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) if e.is_permanent() => Err(ActionError::permanent(format!(
            "the SMTP server refused the message: {e}"
        ))),
        Ok(Err(e)) => Err(ActionError::retry(format!(
            "cannot send through {}:{}: {e}",
            action.host, action.port
        ))),
        Err(_) => Err(ActionError::retry(format!(
            "{}:{} did not take the message within {} s",
            action.host,
            action.port,
            timeout.as_secs()
        ))),
    }
}

/// Runs one attempt of an e-mail handler.
pub(crate) async fn email(
    job: &Job<'_>,
    action: &EmailAction,
    timeout: Duration,
) -> Result<Step, ActionError> {
    let Some(window) = action.batch else {
        let vars = vars_of(job, job.record).await;
        let to = recipients(action, &vars)?;
        if to.is_empty() {
            return Err(ActionError::permanent(
                "no recipient: every `to` expanded to nothing (an account or group without an e-mail address?)",
            ));
        }
        let letter = letter(action, to, &[vars], 1);
        let id = format!("<{}@wharf>", job.uuid);
        send(action, &letter, &id, timeout).await?;
        return Ok(Step::Done(vec![sent(job, &letter, &id, None)]));
    };
    let width = micros(window).max(1);
    let at = time_us(job.record);
    let start = at - at.rem_euclid(width);
    let end = start + width;
    let now = now_us();
    if now < end + micros(SETTLE) {
        return Ok(Step::WaitUntil(end + micros(SETTLE)));
    }
    let store_error = |e: wharf_store::StoreError| ActionError::retry(format!("the trail: {e}"));
    // Covered by a message already sent for this window?
    let sent_before = job
        .store
        .events(&EventFilter {
            id: Some(EventKind::EmailSent.id()),
            since_us: Some(start),
            limit: 1000,
            ..EventFilter::default()
        })
        .await
        .map_err(store_error)?;
    let covered = sent_before.iter().any(|r| {
        r.attrs.get("handler") == Some(&job.handler.name)
            && r.attrs.get("window").and_then(|w| w.parse::<i64>().ok()) == Some(start)
            && r.attrs
                .get("last_seq")
                .and_then(|s| s.parse::<i64>().ok())
                .is_some_and(|last| last >= job.record.seq)
    });
    if covered {
        return Ok(Step::Done(Vec::new()));
    }
    let (low, high) = job
        .handler
        .on
        .iter()
        .fold((u32::MAX, 0), |(l, h), id| (l.min(*id), h.max(*id)));
    let mut window_events: Vec<AuditRecord> = job
        .store
        .events(&EventFilter {
            since_us: Some(start),
            id_range: Some((low, high)),
            limit: MAX_WINDOW,
            ..EventFilter::default()
        })
        .await
        .map_err(store_error)?
        .into_iter()
        .filter(|r| time_us(r) < end && job.handler.wants(r))
        .collect();
    window_events.sort_by_key(|r| r.seq);
    let earliest = window_events.first().map(|r| r.seq);
    let mine = match earliest {
        Some(seq) if seq == job.record.seq => window_events,
        // Another event's job sends this window; wait for its `email.sent`, then, if it
        // never comes, send this event alone.
        Some(_) if now < end + micros(COVER_WAIT) => {
            return Ok(Step::WaitUntil(now + micros(SETTLE)));
        }
        _ => vec![job.record.clone()],
    };
    let last_seq = mine.iter().map(|r| r.seq).max().unwrap_or(job.record.seq);
    let mut by_recipients: BTreeMap<BTreeSet<String>, Vec<BTreeMap<&'static str, String>>> =
        BTreeMap::new();
    let mut counts: BTreeMap<BTreeSet<String>, usize> = BTreeMap::new();
    for record in &mine {
        let vars = vars_of(job, record).await;
        let to = recipients(action, &vars)?;
        if to.is_empty() {
            continue;
        }
        *counts.entry(to.clone()).or_default() += 1;
        let listed = by_recipients.entry(to).or_default();
        if listed.len() < MAX_LISTED {
            listed.push(vars);
        }
    }
    if by_recipients.is_empty() {
        return Err(ActionError::permanent(
            "no recipient: every `to` expanded to nothing (an account or group without an e-mail address?)",
        ));
    }
    let mut events = Vec::new();
    for (i, (to, parts)) in by_recipients.into_iter().enumerate() {
        let total = counts.get(&to).copied().unwrap_or(parts.len());
        let letter = letter(action, to, &parts, total);
        let id = format!("<{}.{i}@wharf>", job.uuid);
        send(action, &letter, &id, timeout).await?;
        events.push(sent(job, &letter, &id, Some((start, last_seq))));
    }
    Ok(Step::Done(events))
}

fn sent(job: &Job<'_>, letter: &Letter, id: &str, window: Option<(i64, i64)>) -> wharf_core::Event {
    let mut event = job
        .event(EventKind::EmailSent)
        .attr(
            "to",
            letter.to.iter().cloned().collect::<Vec<_>>().join(","),
        )
        .attr("message_id", id)
        .attr("events", letter.events.to_string())
        .message(letter.subject.clone());
    if let Some((start, last_seq)) = window {
        event = event
            .attr("window", start.to_string())
            .attr("last_seq", last_seq.to_string());
    }
    event
}
