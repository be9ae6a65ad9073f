//! One attempt of one handler on one event: what the action does and which 4xxxx events
//! say so. Blocking file work runs on the blocking pool.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use wharf_core::{Event, EventKind};
use wharf_store::AuditRecord;

use crate::ActionError;
use crate::files::{self, Subject};
use crate::spec::{Action, Handler, SignatureAction, Unmatched};

/// What an attempt came to.
pub(crate) enum Step {
    /// Finished; record these events.
    Done(Vec<Event>),
    /// Not yet possible (a signature still expected); look again at this time (µs).
    WaitUntil(i64),
}

/// Everything an attempt knows about its job.
pub(crate) struct Job<'a> {
    pub handler: &'a Handler,
    pub record: &'a AuditRecord,
    /// Fixed per handler and event: `${UUID}`, quarantine names, the webhook delivery id.
    pub uuid: String,
}

fn protocol_of(record: &AuditRecord) -> Option<wharf_types::Protocol> {
    record.protocol.as_deref().and_then(|p| p.parse().ok())
}

impl Job<'_> {
    /// An event about this job, carrying the trigger's who and where.
    pub fn event(&self, kind: EventKind) -> Event {
        let record = self.record;
        let mut event = Event::new(kind);
        event.service = record.service.clone();
        event.protocol = protocol_of(record);
        event.session = record.session.clone();
        event.account = record.account.clone();
        event.remote = record.remote.as_deref().and_then(|r| r.parse().ok());
        event.sha256 = record.sha256.clone();
        event.bytes = record.bytes;
        let depth = record
            .attrs
            .get("depth")
            .and_then(|d| d.parse::<u32>().ok())
            .unwrap_or(0);
        let mut event = event
            .attr("handler", self.handler.name.as_str())
            .attr("trigger", record.seq.to_string())
            .attr("depth", (depth + 1).to_string());
        for key in ["home", "groups"] {
            if let Some(value) = record.attrs.get(key) {
                event = event.attr(key, value.as_str());
            }
        }
        if let Some(subject) = files::subject(record) {
            event.path = Some(subject.path);
        }
        event
    }

    /// An event saying the file is now at `file` (so handlers that follow find it).
    fn event_at(&self, kind: EventKind, file: &Path) -> Event {
        self.event(kind).attr("file", file.to_string_lossy())
    }

    /// The template variables for this event.
    pub fn vars(&self, subject: Option<&Subject>) -> BTreeMap<&'static str, String> {
        let record = self.record;
        let time = OffsetDateTime::parse(&record.time, &Rfc3339)
            .unwrap_or_else(|_| OffsetDateTime::now_utc());
        let mut vars = BTreeMap::from([
            ("USER", record.account.clone().unwrap_or_default()),
            (
                "GROUP",
                crate::spec::groups_of(record)
                    .first()
                    .map_or("nogroup", |g| g)
                    .to_owned(),
            ),
            (
                "DATE",
                format!(
                    "{:04}-{:02}-{:02}",
                    time.year(),
                    u8::from(time.month()),
                    time.day()
                ),
            ),
            (
                "TIME",
                format!("{:02}{:02}{:02}", time.hour(), time.minute(), time.second()),
            ),
            ("UUID", self.uuid.clone()),
            ("EVENT", record.name.clone()),
            ("SEQ", record.seq.to_string()),
            ("SHA256", record.sha256.clone().unwrap_or_default()),
        ]);
        if let Some(subject) = subject {
            vars.insert("NAME", subject.name.clone());
            vars.insert("FILE", subject.file.to_string_lossy().into_owned());
            vars.insert("PATH", subject.path.clone());
            if let Some(home) = &subject.home {
                vars.insert("HOME", home.to_string_lossy().into_owned());
            }
        } else if let Some(path) = &record.path {
            vars.insert("PATH", path.clone());
        }
        vars
    }

    fn subject(&self) -> Result<Subject, ActionError> {
        let subject = files::subject(self.record)
            .ok_or_else(|| ActionError::permanent("the event names no file to act on"))?;
        subject.confined()?;
        Ok(subject)
    }

    fn quarantine_target(&self, folder: &Path, subject: &Subject) -> PathBuf {
        folder.join(format!("{}-{}", self.uuid, subject.name))
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ActionError> + Send + 'static,
) -> Result<T, ActionError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ActionError::retry(format!("file work stopped: {e}")))?
}

/// Quarantines the subject and answers the `file.quarantined` event.
async fn quarantine(
    job: &Job<'_>,
    subject: &Subject,
    companions: Vec<PathBuf>,
    folder: &Path,
    reason: &str,
) -> Result<Event, ActionError> {
    let (subject2, folder2, uuid, reason2, handler, record) = (
        subject.clone(),
        folder.to_owned(),
        job.uuid.clone(),
        reason.to_owned(),
        job.handler.name.clone(),
        job.record.clone(),
    );
    let target = blocking(move || {
        files::quarantine(
            &subject2,
            &companions,
            &folder2,
            &uuid,
            &reason2,
            &handler,
            &record,
        )
    })
    .await?;
    Ok(job
        .event_at(EventKind::FileQuarantined, &target)
        .attr("quarantine", target.to_string_lossy())
        .message(reason))
}

/// Runs one attempt.
pub(crate) async fn attempt(job: &Job<'_>) -> Result<Step, ActionError> {
    let handler = job.handler;
    match &handler.action {
        Action::VerifySignature(check) => verify_signature(job, check).await,
        Action::Dispatch(dispatch) => {
            let subject = job.subject()?;
            let vars = job.vars(Some(&subject));
            let chosen = dispatch
                .rules
                .iter()
                .enumerate()
                .find(|(_, rule)| rule.filter.matches(job.record, Some(&subject.path)));
            let Some((index, rule)) = chosen else {
                return Ok(Step::Done(vec![match dispatch.unmatched {
                    Unmatched::Leave => job
                        .event_at(EventKind::DispatchUnmatched, &subject.file)
                        .message("no dispatch rule matched; left in place"),
                    Unmatched::Quarantine => {
                        quarantine(
                            job,
                            &subject,
                            Vec::new(),
                            &dispatch.quarantine,
                            "no dispatch rule matched",
                        )
                        .await?
                    }
                }]));
            };
            let to = rule
                .to
                .expand_path(&vars)
                .map_err(|e| ActionError::permanent(format!("rule {}: {e}", index + 1)))?;
            let (from, dest, copy, overwrite, sha) = (
                subject.file.clone(),
                to.clone(),
                rule.copy,
                dispatch.overwrite,
                job.record.sha256.clone(),
            );
            blocking(move || {
                if copy {
                    files::copy_file(&from, &dest, overwrite)
                } else {
                    files::move_file(&from, &dest, overwrite, sha.as_deref())
                }
            })
            .await?;
            Ok(Step::Done(vec![
                job.event_at(EventKind::FileDispatched, &to)
                    .attr("rule", (index + 1).to_string())
                    .attr("destination", to.to_string_lossy())
                    .attr("copy", rule.copy.to_string()),
            ]))
        }
        Action::Quarantine(q) => {
            let subject = job.subject()?;
            Ok(Step::Done(vec![
                quarantine(job, &subject, Vec::new(), &q.folder, &q.reason).await?,
            ]))
        }
        Action::UuidPrefix => {
            let subject = job.subject()?;
            let new_name = format!("{}-{}", job.uuid, subject.name);
            let to = subject.file.with_file_name(&new_name);
            let (from, dest, sha) = (subject.file.clone(), to.clone(), job.record.sha256.clone());
            blocking(move || files::move_file(&from, &dest, false, sha.as_deref())).await?;
            let parent = subject
                .path
                .rsplit_once('/')
                .map_or("", |(parent, _)| parent);
            Ok(Step::Done(vec![
                job.event_at(EventKind::FilePrefixed, &to)
                    .path2(format!("{parent}/{new_name}")),
            ]))
        }
        Action::Exec(exec) => {
            let subject = files::subject(job.record);
            let vars = job.vars(subject.as_ref());
            let out = crate::exec::run(exec, job.record, &vars, handler.timeout).await?;
            Ok(Step::Done(vec![
                job.event(EventKind::ProgramRan)
                    .attr("program", exec.program.to_string_lossy())
                    .message(crate::exec::excerpt(&out)),
            ]))
        }
        Action::Webhook(hook) => {
            let status =
                crate::webhook::deliver(hook, job.record, &job.uuid, handler.timeout).await?;
            Ok(Step::Done(vec![
                job.event(EventKind::WebhookDelivered)
                    .attr("status", status.to_string())
                    .attr("delivery", job.uuid.as_str())
                    .attr("url", hook.url.as_str()),
            ]))
        }
    }
}

/// `signature.invalid` naming where the quarantine put the file.
fn with_quarantine(invalid: Event, moved: &Event) -> Event {
    match moved.attrs.get("quarantine") {
        Some(at) => invalid.attr("quarantine", at.as_str()),
        None => invalid,
    }
}

fn companion(file: &Path, suffix: &str) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

async fn verify_signature(job: &Job<'_>, check: &SignatureAction) -> Result<Step, ActionError> {
    let subject = job.subject()?;
    let vars = job.vars(Some(&subject));
    let signature_path = companion(&subject.file, &check.suffix);
    let move_to = match &check.move_to {
        Some(t) => Some(
            t.expand_path(&vars)
                .map_err(|e| ActionError::permanent(format!("move_to: {e}")))?,
        ),
        None => None,
    };
    if std::fs::symlink_metadata(&subject.file).is_ok_and(|m| !m.file_type().is_file()) {
        return Err(ActionError::permanent(format!(
            "{} is not a regular file (a link or a folder); left alone",
            subject.path
        )));
    }
    if !subject.file.exists() {
        // An earlier attempt may have finished before the job was marked: say again what
        // it did.
        if let Some(dest) = &move_to
            && dest.exists()
        {
            return Ok(Step::Done(vec![
                job.event_at(EventKind::SignatureValid, dest)
                    .attr("destination", dest.to_string_lossy()),
            ]));
        }
        let quarantined = job.quarantine_target(&check.quarantine, &subject);
        if quarantined.exists() {
            return Ok(Step::Done(vec![
                job.event_at(EventKind::FileQuarantined, &quarantined)
                    .attr("quarantine", quarantined.to_string_lossy()),
            ]));
        }
        return Err(ActionError::permanent(format!(
            "{} is gone (moved or deleted since the event)",
            subject.file.display()
        )));
    }
    let signature = match std::fs::symlink_metadata(&signature_path) {
        Ok(meta)
            if meta.file_type().is_file() && meta.len() <= crate::signature::MAX_SIGNATURE_FILE =>
        {
            Some(std::fs::read(&signature_path).map_err(|e| {
                ActionError::retry(format!("cannot read {}: {e}", signature_path.display()))
            })?)
        }
        Ok(_) => None,
        Err(_) => {
            let time = OffsetDateTime::parse(&job.record.time, &Rfc3339)
                .unwrap_or_else(|_| OffsetDateTime::now_utc());
            let deadline = time + check.wait;
            let now = OffsetDateTime::now_utc();
            if now < deadline {
                let next = (now + std::time::Duration::from_secs(1)).min(deadline);
                return Ok(Step::WaitUntil(
                    i64::try_from(next.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX),
                ));
            }
            let reason = format!(
                "no signature {} within {} s",
                signature_path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                check.wait.as_secs()
            );
            let invalid = job
                .event(EventKind::SignatureInvalid)
                .failed(reason.clone());
            let moved = quarantine(job, &subject, Vec::new(), &check.quarantine, &reason).await?;
            return Ok(Step::Done(vec![with_quarantine(invalid, &moved), moved]));
        }
    };
    let verdict = match signature {
        Some(sig) => {
            let file = subject.file.clone();
            let verifier = check.verifier.clone();
            blocking(move || {
                verifier
                    .verify_file(&file, &sig)
                    .map_err(|e| ActionError::retry(format!("cannot read {}: {e}", file.display())))
            })
            .await?
            .ok_or_else(|| "the signature does not verify with any configured key".to_owned())
        }
        None => Err(format!(
            "{} is not a regular file of at most {} bytes",
            signature_path.display(),
            crate::signature::MAX_SIGNATURE_FILE
        )),
    };
    match verdict {
        Ok(key) => {
            let mut valid = job.event(EventKind::SignatureValid).attr("key", key);
            let mut at = subject.file.clone();
            if let Some(dest) = move_to {
                let (from, to, sig_from, sig_to, sha) = (
                    subject.file.clone(),
                    dest.clone(),
                    signature_path.clone(),
                    companion(&dest, &check.suffix),
                    job.record.sha256.clone(),
                );
                blocking(move || {
                    files::move_file(&from, &to, false, sha.as_deref())?;
                    if sig_from.exists() {
                        files::move_file(&sig_from, &sig_to, true, None)?;
                    }
                    Ok(())
                })
                .await?;
                valid = valid.attr("destination", dest.to_string_lossy());
                at = dest;
            }
            Ok(Step::Done(vec![valid.attr("file", at.to_string_lossy())]))
        }
        Err(reason) => {
            let invalid = job
                .event(EventKind::SignatureInvalid)
                .failed(reason.clone());
            let moved = quarantine(
                job,
                &subject,
                vec![signature_path],
                &check.quarantine,
                &reason,
            )
            .await?;
            Ok(Step::Done(vec![with_quarantine(invalid, &moved), moved]))
        }
    }
}
