//! `email`: a message about an event, over SMTP (implicit TLS, or STARTTLS required;
//! plain SMTP only to this machine), with templates for the recipients, subject and body.
//!
//! With a `batch` window, a burst of events becomes one message per window and recipient
//! set. Each event's job waits for its window to close (and settle), then reads the
//! window's `email.sent` records for its recipients: each names exactly the events its
//! message listed (`attrs.seqs`) and where in the window it stopped reading
//! (`attrs.through`). A job whose event is listed is done. Otherwise it reads the window,
//! oldest first, after that point: the events to the same recipients not listed yet whose
//! jobs are still to end, at most 200, are the next message's (a "stretch").
//! The stretch is sent by the job of its first event, or, while that job waits to retry a
//! failed send, by the next one that is alive, so a burst is one message even when the
//! earliest job's send fails, and no job sends its own event alone meanwhile. A
//! window with more events gets more messages, one stretch after another. An event behind
//! a stretch already sent but not listed in it (written to the trail after the message
//! went: a node that was cut from the store) gets a message of its own.
//!
//! Delivery is at least once: a message sent just before a crash, or by two jobs that each
//! found the other stopped, is sent again with the same `Message-ID` (made from the events
//! it lists), which mail systems use to drop repeats. A job run again after its message
//! was recorded finds its event listed and sends nothing.
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
use wharf_store::AuditRecord;

use crate::ActionError;
use crate::actions::{Job, Step};
use crate::template::Template;

mod batch;
use batch::{Batch, Group, Plan, Window, plan, poll_at};

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

/// An account's address and its groups' addresses (joined by commas).
type Addresses = (String, String);

/// Makes the variables and recipients of events, reading each account (and its groups)
/// once per attempt: a window's events are mostly a few accounts'.
struct Resolver<'a> {
    job: &'a Job<'a>,
    action: &'a EmailAction,
    accounts: BTreeMap<String, Addresses>,
}

impl<'a> Resolver<'a> {
    fn new(job: &'a Job<'a>, action: &'a EmailAction) -> Resolver<'a> {
        Resolver {
            job,
            action,
            accounts: BTreeMap::new(),
        }
    }

    /// The addresses the store holds for `account`. A store that does not answer is worth
    /// a retry: a message made meanwhile would miss the account's recipients.
    async fn addresses(&mut self, account: &str) -> Result<Addresses, ActionError> {
        if let Some(found) = self.accounts.get(account) {
            return Ok(found.clone());
        }
        let store = self.job.store;
        let failed = |e: wharf_store::StoreError| {
            ActionError::retry(format!("cannot read the account's addresses: {e}"))
        };
        let mut email = String::new();
        let mut group_emails = Vec::new();
        if let Some(found) = store.account(account).await.map_err(failed)? {
            email = found.email.clone().unwrap_or_default();
            for group in &found.groups {
                if let Some(address) = store
                    .group(group)
                    .await
                    .map_err(failed)?
                    .and_then(|g| g.email)
                {
                    group_emails.push(address);
                }
            }
        }
        let addresses = (email, group_emails.join(","));
        self.accounts.insert(account.to_owned(), addresses.clone());
        Ok(addresses)
    }

    /// The variables of `record`'s message, with the addresses the store holds.
    async fn vars(
        &mut self,
        record: &AuditRecord,
    ) -> Result<BTreeMap<&'static str, String>, ActionError> {
        let one = Job {
            handler: self.job.handler,
            store: self.job.store,
            record,
            uuid: self.job.uuid.clone(),
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
        let (email, group_emails) = match &record.account {
            Some(account) => self.addresses(account).await?,
            None => Addresses::default(),
        };
        vars.insert("EMAIL", email);
        vars.insert("GROUP_EMAIL", group_emails);
        Ok(vars)
    }

    /// Whether `record`'s message goes to exactly `to`. An event whose recipients cannot
    /// be made (a bad address) does not: its own job fails on it.
    async fn same_recipients(
        &mut self,
        record: &AuditRecord,
        to: &BTreeSet<String>,
    ) -> Result<bool, ActionError> {
        let vars = self.vars(record).await?;
        match recipients(self.action, &vars) {
            Ok(found) => Ok(&found == to),
            Err(e) if e.permanent => Ok(false),
            Err(e) => Err(e),
        }
    }
}

const NO_RECIPIENT: &str =
    "no recipient: every `to` expanded to nothing (an account or group without an e-mail address?)";
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
) -> Letter {
    let first = parts.first().cloned().unwrap_or_default();
    let mut subject = header_text(&action.subject.expand(&first));
    if parts.len() > 1 {
        subject.push_str(&format!(" (and {} more)", parts.len() - 1));
    }
    let body = parts
        .iter()
        .map(|v| action.body.expand(v))
        .collect::<Vec<_>>()
        .join("\n\n----\n\n");
    Letter {
        to,
        subject,
        body,
        events: parts.len(),
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
    match action.batch {
        None => single(job, action, timeout).await,
        Some(width) => {
            let window = Window::of(time_us(job.record), width);
            batched(job, action, window, timeout).await
        }
    }
}

/// The variables and recipients of the job's own event; an event with no recipient fails.
async fn own_message(
    resolver: &mut Resolver<'_>,
    record: &AuditRecord,
) -> Result<(BTreeMap<&'static str, String>, BTreeSet<String>), ActionError> {
    let vars = resolver.vars(record).await?;
    let to = recipients(resolver.action, &vars)?;
    if to.is_empty() {
        return Err(ActionError::permanent(NO_RECIPIENT));
    }
    Ok((vars, to))
}

/// A message about the event alone.
async fn single(
    job: &Job<'_>,
    action: &EmailAction,
    timeout: Duration,
) -> Result<Step, ActionError> {
    let mut resolver = Resolver::new(job, action);
    let (vars, to) = own_message(&mut resolver, job.record).await?;
    let letter = letter(action, to, &[vars]);
    let id = format!("<{}@wharf>", job.uuid);
    send(action, &letter, &id, timeout).await?;
    Ok(Step::Done(vec![sent(job, &letter, &id, None)]))
}

/// The event's part in its window's messages: nothing yet, nothing at all, or a message.
async fn batched(
    job: &Job<'_>,
    action: &EmailAction,
    window: Window,
    timeout: Duration,
) -> Result<Step, ActionError> {
    let now = now_us();
    if now < window.settled() {
        return Ok(Step::WaitUntil(window.settled()));
    }
    let mut resolver = Resolver::new(job, action);
    let (_, to) = own_message(&mut resolver, job.record).await?;
    let group = Group {
        handler: &job.handler.name,
        window,
        to: &to,
    };
    let (listed, through) = match plan(job, &mut resolver, &group).await? {
        Plan::Covered => return Ok(Step::Done(Vec::new())),
        Plan::Wait => return Ok(Step::WaitUntil(poll_at(now, window))),
        Plan::Send { listed, through } => (listed, through),
    };
    let mut parts = Vec::with_capacity(listed.len());
    for record in &listed {
        parts.push(resolver.vars(record).await?);
    }
    let mut seqs: Vec<i64> = listed.iter().map(|r| r.seq).collect();
    seqs.sort_unstable();
    let letter = letter(action, to.clone(), &parts);
    let id = group.message_id(&seqs);
    send(action, &letter, &id, timeout).await?;
    let batch = Batch {
        window: window.start,
        seqs,
        through,
    };
    Ok(Step::Done(vec![sent(job, &letter, &id, Some(&batch))]))
}

fn sent(job: &Job<'_>, letter: &Letter, id: &str, batch: Option<&Batch>) -> wharf_core::Event {
    let mut event = job
        .event(EventKind::EmailSent)
        .attr(
            "to",
            letter.to.iter().cloned().collect::<Vec<_>>().join(","),
        )
        .attr("message_id", id)
        .attr("events", letter.events.to_string())
        .message(letter.subject.clone());
    if let Some(batch) = batch {
        for (key, value) in batch.attrs() {
            event = event.attr(key, value);
        }
    }
    event
}
