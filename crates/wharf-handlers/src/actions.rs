//! One attempt of one handler on one event: what the action does and which 4xxxx events
//! say so. Blocking file work runs on the blocking pool, on descriptors (see
//! [`crate::subject`] and [`crate::files`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;
use wharf_core::{Event, EventKind};
use wharf_store::AuditRecord;

use crate::ActionError;
use crate::files::{self, Base, Dest, ToQuarantine};
use crate::spec::{Action, Handler, Unmatched};
use crate::subject::{self, FileId, Held, Subject};
use crate::template::Template;

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
    /// The store (a transfer's run is asked for there).
    pub store: &'a wharf_store::Store,
    pub record: &'a AuditRecord,
    /// Fixed per handler and event: `${UUID}`, quarantine names, the webhook delivery id.
    pub uuid: String,
}

fn protocol_of(record: &AuditRecord) -> Option<wharf_types::Protocol> {
    record.protocol.as_deref().and_then(|p| p.parse().ok())
}

/// Where an action left a file: its path on the server, the root it is reached beneath,
/// and which file it is.
pub(crate) struct Left {
    pub file: PathBuf,
    pub root: PathBuf,
    pub id: Option<FileId>,
}

impl Left {
    pub(crate) fn at(dest: &Dest, id: Option<FileId>) -> Left {
        Left {
            file: dest.file.clone(),
            root: dest.root.clone(),
            id,
        }
    }
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
        if let Some(subject) = subject::subject(record) {
            event.path = Some(subject.path);
        }
        event
    }

    /// An event saying the file is now at `left` (so handlers that follow find it, beneath
    /// the same root, and can tell it is the same file).
    pub(crate) fn event_at(&self, kind: EventKind, left: &Left) -> Event {
        let event = self
            .event(kind)
            .attr("file", left.file.to_string_lossy())
            .attr("root", left.root.to_string_lossy());
        match left.id {
            Some(id) => event.attr("inode", id.to_string()),
            None => event,
        }
    }

    /// The template variables for this event.
    pub fn vars(&self, subject: Option<&Subject>) -> BTreeMap<&'static str, String> {
        let record = self.record;
        let time =
            wharf_types::rfc3339::parse(&record.time).unwrap_or_else(|_| OffsetDateTime::now_utc());
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
            ("MESSAGE", record.message.clone().unwrap_or_default()),
            ("OUTCOME", record.outcome.clone()),
            ("PROTOCOL", record.protocol.clone().unwrap_or_default()),
            ("REMOTE", record.remote.clone().unwrap_or_default()),
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

    pub(crate) fn subject(&self) -> Result<Subject, ActionError> {
        subject::subject(self.record)
            .ok_or_else(|| ActionError::permanent("the event names no file to act on"))
    }

    /// The folders a destination from `template` may lie beneath, most confined first: the
    /// account's home and the subject's own root (reached through no link, as the account
    /// may have made links there), then the template's fixed folder (created if missing).
    pub(crate) fn bases(&self, subject: &Subject, template: &Template) -> Vec<Base> {
        let mut bases: Vec<Base> = subject
            .home
            .iter()
            .chain(std::iter::once(&subject.root))
            .map(|folder| Base {
                folder: folder.clone(),
                create: false,
            })
            .collect();
        if let Some(folder) = template.fixed_folder() {
            bases.push(Base {
                folder,
                create: true,
            });
        }
        bases
    }
}

pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ActionError> + Send + 'static,
) -> Result<T, ActionError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ActionError::retry(format!("file work stopped: {e}")))?
}

/// What quarantining needs, owned, for the blocking pool.
#[derive(Clone)]
pub(crate) struct Quarantine {
    pub folder: PathBuf,
    pub uuid: String,
    pub reason: String,
    pub handler: String,
    pub record: AuditRecord,
}

impl Quarantine {
    pub(crate) fn new(job: &Job<'_>, folder: &Path, reason: &str) -> Quarantine {
        Quarantine {
            folder: folder.to_owned(),
            uuid: job.uuid.clone(),
            reason: reason.to_owned(),
            handler: job.handler.name.clone(),
            record: job.record.clone(),
        }
    }

    fn target(&self, subject: &Subject) -> PathBuf {
        self.folder.join(format!("{}-{}", self.uuid, subject.name))
    }

    /// Moves the opened, checked file (and its companions) to quarantine.
    pub(crate) fn held(
        &self,
        subject: &Subject,
        held: &Held,
        companions: &[Held],
    ) -> Result<Left, ActionError> {
        let (file, id) = files::quarantine(
            ToQuarantine {
                subject,
                held,
                companions,
            },
            &self.folder,
            &self.uuid,
            &self.reason,
            &self.handler,
            &self.record,
        )?;
        Ok(Left {
            file,
            root: self.folder.clone(),
            id,
        })
    }

    /// Where an earlier attempt quarantined the file, if it did.
    pub(crate) fn done_before(&self, subject: &Subject) -> Result<Option<Left>, ActionError> {
        let dest = files::quarantine_place(&self.folder, &self.target(subject))?;
        Ok(dest.holds(&self.record).then(|| Left::at(&dest, None)))
    }

    /// Opens, checks and quarantines the subject.
    pub(crate) fn subject(&self, subject: &Subject) -> Result<Left, ActionError> {
        match subject.open()? {
            Some(held) => {
                held.check(&self.record, &subject.path, true)?;
                self.held(subject, &held, &[])
            }
            None => self.done_before(subject)?.ok_or_else(|| subject.gone()),
        }
    }

    /// The `file.quarantined` event.
    pub(crate) fn event(&self, job: &Job<'_>, left: &Left) -> Event {
        job.event_at(EventKind::FileQuarantined, left)
            .attr("quarantine", left.file.to_string_lossy())
            .message(self.reason.as_str())
    }
}

/// Quarantines the subject and answers the `file.quarantined` event.
async fn quarantine(
    job: &Job<'_>,
    subject: &Subject,
    folder: &Path,
    reason: &str,
) -> Result<Event, ActionError> {
    let q = Quarantine::new(job, folder, reason);
    let subject = subject.clone();
    let (q, left) = blocking(move || {
        let left = q.subject(&subject)?;
        Ok((q, left))
    })
    .await?;
    Ok(q.event(job, &left))
}

/// Runs one attempt.
pub(crate) async fn attempt(job: &Job<'_>) -> Result<Step, ActionError> {
    let handler = job.handler;
    match &handler.action {
        Action::VerifySignature(check) => crate::verify::verify_signature(job, check).await,
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
                        .event_at(
                            EventKind::DispatchUnmatched,
                            &Left {
                                file: subject.file.clone(),
                                root: subject.root.clone(),
                                id: None,
                            },
                        )
                        .message("no dispatch rule matched; left in place"),
                    Unmatched::Quarantine => {
                        quarantine(
                            job,
                            &subject,
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
            let bases = job.bases(&subject, &rule.to);
            let (copy, overwrite, record) = (rule.copy, dispatch.overwrite, job.record.clone());
            let left = blocking(move || {
                let dest = files::destination(&to, &bases)?;
                let Some(held) = subject.open()? else {
                    return if dest.holds(&record) {
                        Ok(Left::at(&dest, None))
                    } else {
                        Err(subject.gone())
                    };
                };
                held.check(&record, &subject.path, true)?;
                if copy {
                    files::copy_file(&held, &dest, overwrite, &subject.path)?;
                } else {
                    files::move_file(&held, &dest, overwrite, &subject.path)?;
                }
                Ok(Left::at(&dest, dest.id()))
            })
            .await?;
            Ok(Step::Done(vec![
                job.event_at(EventKind::FileDispatched, &left)
                    .attr("rule", (index + 1).to_string())
                    .attr("destination", left.file.to_string_lossy())
                    .attr("copy", rule.copy.to_string()),
            ]))
        }
        Action::Quarantine(q) => {
            let subject = job.subject()?;
            Ok(Step::Done(vec![
                quarantine(job, &subject, &q.folder, &q.reason).await?,
            ]))
        }
        Action::UuidPrefix => uuid_prefix(job).await,
        Action::OpenPgp(pgp) => crate::openpgp::openpgp(job, pgp).await,
        Action::Email(mail) => crate::email::email(job, mail, handler.timeout).await,
        Action::ContentCheck(check) => {
            crate::content::content_check(job, check, handler.timeout).await
        }
        Action::Antivirus(scan) => crate::antivirus::antivirus(job, scan, handler.timeout).await,
        Action::Exec(exec) => {
            let subject = subject::subject(job.record);
            let vars = job.vars(subject.as_ref());
            let out = crate::exec::run(exec, job.record, &vars, handler.timeout).await?;
            Ok(Step::Done(vec![
                job.event(EventKind::ProgramRan)
                    .attr("program", exec.program.to_string_lossy())
                    .message(crate::exec::excerpt(&out)),
            ]))
        }
        Action::RunTransfer(transfer) => {
            let event =
                wharf_core::EventKind::from_id(job.record.id).map_or("an event", |k| k.name());
            job.store
                .request_transfer_run(transfer, &format!("event {} ({event})", job.record.seq))
                .await
                .map_err(|e| {
                    ActionError::retry(format!("cannot ask for the transfer's run: {e}"))
                })?;
            // The run records itself (`transfer.run.started` names this event).
            Ok(Step::Done(Vec::new()))
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

/// `uuid-prefix`: an upload the core already named uniquely as it committed is only
/// recorded; any other file is renamed in its folder to `<uuid>-<name>`.
async fn uuid_prefix(job: &Job<'_>) -> Result<Step, ActionError> {
    let subject = job.subject()?;
    if let Some(given) = job.record.attrs.get("uploaded_as") {
        let left = Left {
            file: subject.file.clone(),
            root: subject.root.clone(),
            id: None,
        };
        let mut event = job
            .event_at(EventKind::FilePrefixed, &left)
            .path2(subject.path.clone())
            .message("named uniquely when the upload committed; nothing to rename");
        event.path = Some(given.clone());
        if let Some(inode) = job.record.attrs.get("inode") {
            event = event.attr("inode", inode.as_str());
        }
        return Ok(Step::Done(vec![event]));
    }
    let new_name = format!("{}-{}", job.uuid, subject.name);
    let file = subject.file.with_file_name(&new_name);
    let record = job.record.clone();
    let (subject2, name2, file2) = (subject.clone(), new_name.clone(), file.clone());
    let left = blocking(move || {
        let subject = subject2;
        let Some(held) = subject.open()? else {
            // An earlier attempt may have renamed it already.
            if let Some(dir) =
                subject::open_folder(&subject.root, &subject.rel.parent(), &subject.path)?
            {
                let dest = Dest {
                    dir,
                    name: name2,
                    file: file2,
                    root: subject.root.clone(),
                };
                if dest.holds(&record) {
                    return Ok(Left::at(&dest, None));
                }
            }
            return Err(subject.gone());
        };
        held.check(&record, &subject.path, true)?;
        let dest = Dest::in_folder_of(&held, name2, file2, subject.root.clone())?;
        files::move_file(&held, &dest, false, &subject.path)?;
        Ok(Left::at(&dest, dest.id()))
    })
    .await?;
    let parent = subject
        .path
        .rsplit_once('/')
        .map_or("", |(parent, _)| parent);
    Ok(Step::Done(vec![
        job.event_at(EventKind::FilePrefixed, &left)
            .path2(format!("{parent}/{new_name}")),
    ]))
}
