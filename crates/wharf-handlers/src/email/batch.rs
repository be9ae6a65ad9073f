//! Batching: which of a window's events the next message lists, and which job sends it
//! (see [`super`] for the whole story). Everything here reads the trail and the queue and
//! decides; sending and recording is the caller's.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::time::Duration;

use aws_lc_rs::digest;
use wharf_core::EventKind;
use wharf_store::{AuditRecord, HandlerJob, JobState, TimeRange};

use super::{Resolver, micros, time_us};
use crate::ActionError;
use crate::actions::Job;

/// Events one batched message lists at most: a window's further events to the same
/// recipients go in the next messages, one after another.
const MAX_LISTED: usize = 200;
/// Records of a window one attempt reads at most looking for the next message's events;
/// a message closes there even when it lists fewer.
const MAX_SCANNED: usize = 5_000;
/// Records read from the store at once.
const PAGE: i64 = 500;
/// `email.sent` records (of every handler, since the window closed) read at most looking
/// for a window's messages; past them, a message may be sent twice.
const MAX_SENT_SCANNED: usize = 20_000;
/// Time after a window closes for its last events to reach the trail.
const SETTLE: Duration = Duration::from_secs(2);
/// Longest wait between two looks of a job waiting for another job to send its events.
const MAX_POLL: Duration = Duration::from_secs(30);

/// One batching window: `[start, end)` in µs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Window {
    pub(super) start: i64,
    end: i64,
}

impl Window {
    /// The window of `width` (aligned to the clock) holding the time `at`.
    pub(super) fn of(at: i64, width: Duration) -> Window {
        let width = micros(width).max(1);
        let start = at - at.rem_euclid(width);
        Window {
            start,
            end: start.saturating_add(width),
        }
    }

    /// When its events are all in the trail and its jobs act.
    pub(super) fn settled(self) -> i64 {
        self.end.saturating_add(micros(SETTLE))
    }
}

/// When a job waiting for another to send looks again: soon at first, then less often
/// (a waiting job reads the window each time).
pub(super) fn poll_at(now: i64, window: Window) -> i64 {
    let waited = now.saturating_sub(window.settled()).max(0);
    now.saturating_add((waited / 4).clamp(micros(SETTLE), micros(MAX_POLL)))
}

/// A place in a window's order: time (µs), then `seq`.
pub(super) type Position = (i64, i64);

fn position(record: &AuditRecord) -> Position {
    (time_us(record), record.seq)
}

/// One handler's messages of one window to one set of recipients.
pub(super) struct Group<'a> {
    pub(super) handler: &'a str,
    pub(super) window: Window,
    pub(super) to: &'a BTreeSet<String>,
}

impl Group<'_> {
    /// The recipients as `email.sent` names them.
    fn to_text(&self) -> String {
        self.to.iter().cloned().collect::<Vec<_>>().join(",")
    }

    /// The same for every job that sends these events, so two jobs sending one message
    /// (each thinking the other stopped) send it with one `Message-ID`, for mail systems
    /// to drop the repeat.
    pub(super) fn message_id(&self, seqs: &[i64]) -> String {
        let mut context = digest::Context::new(&digest::SHA256);
        for part in [
            self.handler,
            &self.window.start.to_string(),
            &self.to_text(),
            &format_seqs(seqs),
        ] {
            context.update(part.as_bytes());
            context.update(b"\n");
        }
        let hash = wharf_types::hex(context.finish().as_ref());
        format!("<{}@wharf>", &hash[..32])
    }
}

/// What a batched message's `email.sent` says of the events it listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Batch {
    /// The window's start (µs).
    pub(super) window: i64,
    /// Exactly the events listed, ascending.
    pub(super) seqs: Vec<i64>,
    /// Where the stretch of the window it was made from ended: the next message's events
    /// come after it.
    pub(super) through: Position,
}

impl Batch {
    pub(super) fn attrs(&self) -> Vec<(&'static str, String)> {
        let mut attrs = vec![
            ("window", self.window.to_string()),
            ("seqs", format_seqs(&self.seqs)),
            ("through", format!("{}:{}", self.through.0, self.through.1)),
        ];
        if let (Some(first), Some(last)) = (self.seqs.first(), self.seqs.last()) {
            attrs.push(("first_seq", first.to_string()));
            attrs.push(("last_seq", last.to_string()));
        }
        attrs
    }
}

/// `seqs` (ascending) as `email.sent` lists them: runs of consecutive numbers, `3-5,9`.
fn format_seqs(seqs: &[i64]) -> String {
    let mut runs: Vec<(i64, i64)> = Vec::new();
    for &seq in seqs {
        match runs.last_mut() {
            Some((_, last)) if last.checked_add(1) == Some(seq) => *last = seq,
            _ => runs.push((seq, seq)),
        }
    }
    runs.iter()
        .map(|(first, last)| {
            if first == last {
                first.to_string()
            } else {
                format!("{first}-{last}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The runs of a list [`format_seqs`] wrote; `None` for anything else (a message lists
/// at most [`MAX_LISTED`] events, so at most that many runs).
fn parse_seqs(text: &str) -> Option<Vec<(i64, i64)>> {
    let mut runs = Vec::new();
    for part in text.split(',') {
        if runs.len() >= MAX_LISTED {
            return None;
        }
        let (first, last) = match part.split_once('-') {
            Some((first, last)) => (first.parse().ok()?, last.parse().ok()?),
            None => {
                let seq = part.parse().ok()?;
                (seq, seq)
            }
        };
        if first > last {
            return None;
        }
        runs.push((first, last));
    }
    Some(runs)
}

fn parse_position(text: &str) -> Option<Position> {
    let (time, seq) = text.split_once(':')?;
    Some((time.parse().ok()?, seq.parse().ok()?))
}

/// What a window's messages to one recipient set listed so far.
#[derive(Debug, Default)]
struct Covered {
    runs: Vec<(i64, i64)>,
    /// Where the last stretch a message was made from ended.
    through: Option<Position>,
}

impl Covered {
    fn contains(&self, seq: i64) -> bool {
        self.runs
            .iter()
            .any(|(first, last)| (*first..=*last).contains(&seq))
    }

    /// Takes in `record` when it is the `email.sent` of a message of `group`.
    fn add(&mut self, record: &AuditRecord, group: &Group<'_>, to: &str) {
        let attr = |key: &str| record.attrs.get(key).map(String::as_str);
        if record.id != EventKind::EmailSent.id()
            || attr("handler") != Some(group.handler)
            || attr("window").and_then(|w| w.parse::<i64>().ok()) != Some(group.window.start)
            || attr("to") != Some(to)
        {
            return;
        }
        // A record this version did not write (or damaged) names no events it listed.
        let Some(runs) = attr("seqs").and_then(parse_seqs) else {
            return;
        };
        self.runs.extend(runs);
        if let Some(through) = attr("through").and_then(parse_position) {
            self.through = self.through.max(Some(through));
        }
    }
}

/// The events the next message of a group lists: the window's first events after the
/// last stretch, to the group's recipients, not listed yet, whose jobs are still to end.
#[derive(Debug, Default)]
struct Stretch {
    /// In window order, each with whether its job is alive: queued and never failed, or
    /// running.
    members: Vec<(AuditRecord, bool)>,
    /// The last record read: the next stretch starts after it.
    through: Option<Position>,
    /// Records read.
    scanned: usize,
}

impl Stretch {
    /// It takes no more records.
    fn closed(&self) -> bool {
        self.members.len() >= MAX_LISTED || self.scanned >= MAX_SCANNED
    }

    /// Takes the window's next record: a member (with whether its job is alive), or not.
    fn take(&mut self, record: &AuditRecord, member: Option<bool>) {
        self.scanned += 1;
        self.through = Some(position(record));
        if let Some(alive) = member {
            self.members.push((record.clone(), alive));
        }
    }

    /// Whether the job of event `own` sends this stretch: it does when the event is in it
    /// and no job before it is alive. The earliest event's job sends, or, while it waits to
    /// retry a failed send, the next one that is alive: one message goes at once, and the
    /// earlier job finds its event listed when it runs again.
    fn sent_by(&self, own: i64) -> bool {
        for (record, alive) in &self.members {
            if record.seq == own {
                return true;
            }
            if *alive {
                return false;
            }
        }
        false
    }
}

/// Whether a job still stands for its event: `None` once it ended (its event was listed,
/// or its handler gave up on it), else whether it is alive (see [`Stretch::members`]).
fn standing(job: &HandlerJob) -> Option<bool> {
    match job.state {
        JobState::Running => Some(true),
        JobState::Queued => Some(job.attempts == 0),
        JobState::Done | JobState::Failed => None,
    }
}

/// What a batched job does now.
#[derive(Debug)]
pub(super) enum Plan {
    /// A message listed its event: nothing.
    Covered,
    /// Another job sends its event: look again later.
    Wait,
    /// Send a message listing these events.
    Send {
        listed: Vec<AuditRecord>,
        through: Position,
    },
}

fn store_error(e: wharf_store::StoreError) -> ActionError {
    ActionError::retry(format!("the trail: {e}"))
}

/// Decides what the job does for its window (closed and settled).
pub(super) async fn plan(
    job: &Job<'_>,
    resolver: &mut Resolver<'_>,
    group: &Group<'_>,
) -> Result<Plan, ActionError> {
    let covered = covered(job.store, group).await?;
    let own = job.record;
    if covered.contains(own.seq) {
        return Ok(Plan::Covered);
    }
    if covered
        .through
        .is_some_and(|through| position(own) <= through)
    {
        // Behind a message already made but not in it: its record reached the trail (or
        // its job the queue) after that message was made. A message of its own.
        return Ok(Plan::Send {
            listed: vec![own.clone()],
            through: position(own),
        });
    }
    let stretch = next_stretch(job, resolver, group, &covered).await?;
    match stretch.through {
        Some(through) if stretch.sent_by(own.seq) => Ok(Plan::Send {
            listed: stretch.members.into_iter().map(|(r, _)| r).collect(),
            through,
        }),
        _ => Ok(Plan::Wait),
    }
}

/// What the `email.sent` records of the group's messages listed. They are written after
/// the window closed, on the sending node's clock, the one its job waited on.
async fn covered(store: &wharf_store::Store, group: &Group<'_>) -> Result<Covered, ActionError> {
    let to = group.to_text();
    let mut covered = Covered::default();
    let mut after = None;
    let mut read = 0;
    loop {
        let range = TimeRange {
            from_us: group.window.end,
            until_us: i64::MAX,
            after,
        };
        let page = store
            .events_in_range(&[EventKind::EmailSent.id()], range, PAGE)
            .await
            .map_err(store_error)?;
        let Some(last) = page.last() else {
            break;
        };
        after = Some(position(last));
        read += page.len();
        for record in &page {
            covered.add(record, group, &to);
        }
        if page.len() < usize::try_from(PAGE).unwrap_or(usize::MAX) {
            break;
        }
        if read >= MAX_SENT_SCANNED {
            tracing::warn!(
                handler = group.handler,
                read,
                "too many messages sent since a batching window closed to read them all; one may be sent again"
            );
            break;
        }
    }
    Ok(covered)
}

/// Reads the window after the last stretch, oldest first, into the next stretch.
async fn next_stretch(
    job: &Job<'_>,
    resolver: &mut Resolver<'_>,
    group: &Group<'_>,
    covered: &Covered,
) -> Result<Stretch, ActionError> {
    let mut stretch = Stretch::default();
    let mut after = covered.through;
    while !stretch.closed() {
        let range = TimeRange {
            from_us: group.window.start,
            until_us: group.window.end,
            after,
        };
        let page = job
            .store
            .events_in_range(&job.handler.on, range, PAGE)
            .await
            .map_err(store_error)?;
        let Some(last) = page.last() else {
            break;
        };
        after = Some(position(last));
        let mut candidates = Vec::new();
        for record in &page {
            if job.handler.wants(record)
                && !covered.contains(record.seq)
                && resolver.same_recipients(record, group.to).await?
            {
                candidates.push(record.seq);
            }
        }
        let jobs: BTreeMap<i64, Option<bool>> = job
            .store
            .handler_jobs_on(&job.handler.name, &candidates)
            .await
            .map_err(store_error)?
            .iter()
            .map(|j| (j.event_seq, standing(j)))
            .collect();
        for record in &page {
            if stretch.closed() {
                break;
            }
            stretch.take(record, jobs.get(&record.seq).copied().flatten());
        }
        if page.len() < usize::try_from(PAGE).unwrap_or(usize::MAX) {
            break;
        }
    }
    Ok(stretch)
}

#[cfg(test)]
mod tests {
    use super::super::{EmailAction, Letter, SmtpSecurity, now_us, sent};
    use super::*;
    use crate::spec::{Action, Filter, Handler};
    use crate::template::Template;

    const SECOND: i64 = 1_000_000;

    fn action() -> EmailAction {
        EmailAction {
            host: "127.0.0.1".into(),
            port: 25,
            security: SmtpSecurity::Plain,
            ca: None,
            credentials: None,
            from: "wharf@example.net".parse().unwrap(),
            to: vec![Template::new("${USER}@example.net").unwrap()],
            subject: Template::new("${NAME}").unwrap(),
            body: Template::new("${PATH}").unwrap(),
            batch: Some(Duration::from_secs(60)),
        }
    }

    fn handler() -> Handler {
        Handler {
            name: "mail".into(),
            on: vec![EventKind::UploadFinished.id()],
            filter: Filter::default(),
            attempts: 5,
            retry_wait: Duration::from_secs(5),
            delay: Duration::ZERO,
            timeout: Duration::from_secs(10),
            action: Action::Email(action()),
        }
    }

    /// A window an hour ago, closed and settled.
    fn past_window() -> Window {
        Window::of(now_us() - 3600 * SECOND, Duration::from_secs(60))
    }

    fn upload(account: &str, name: &str, at: i64) -> wharf_core::Event {
        let mut event =
            wharf_core::Event::new(EventKind::UploadFinished).path(format!("/in/{name}"));
        event.account = Some(account.to_owned());
        event.time =
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at) * 1000).unwrap();
        event
    }

    /// A store holding `events`, each with its queued job.
    async fn trail(
        dir: &tempfile::TempDir,
        events: &[wharf_core::Event],
    ) -> (wharf_store::Store, Vec<AuditRecord>) {
        let store = wharf_store::Store::open_sqlite(&dir.path().join("t.db"))
            .await
            .unwrap();
        let records = store.append_events("n1", events).await.unwrap();
        queue(&store, &records).await;
        (store, records)
    }

    async fn queue(store: &wharf_store::Store, records: &[AuditRecord]) {
        store.handler_cursor("n1").await.unwrap();
        let jobs: Vec<_> = records
            .iter()
            .map(|r| ("mail".to_owned(), r.seq, 0))
            .collect();
        let last = records.last().map_or(0, |r| r.seq);
        store.queue_handler_jobs("n1", &jobs, last).await.unwrap();
    }

    /// What the job of `record` plans.
    async fn plan_of(store: &wharf_store::Store, handler: &Handler, record: &AuditRecord) -> Plan {
        let action = action();
        let job = Job {
            handler,
            store,
            record,
            uuid: format!("job-{}", record.seq),
        };
        let mut resolver = Resolver::new(&job, &action);
        let to = BTreeSet::from([format!("{}@example.net", record.account.clone().unwrap())]);
        let group = Group {
            handler: &handler.name,
            window: Window::of(time_us(record), Duration::from_secs(60)),
            to: &to,
        };
        plan(&job, &mut resolver, &group).await.unwrap()
    }

    /// Every one of `records` finds itself listed by a message already sent.
    async fn assert_all_covered(
        store: &wharf_store::Store,
        handler: &Handler,
        records: &[AuditRecord],
    ) {
        for record in records {
            assert!(matches!(
                plan_of(store, handler, record).await,
                Plan::Covered
            ));
        }
    }

    /// Records the `email.sent` the job of `record` writes after sending `listed`.
    async fn record_sent(
        store: &wharf_store::Store,
        handler: &Handler,
        record: &AuditRecord,
        listed: &[AuditRecord],
        through: Position,
    ) {
        let job = Job {
            handler,
            store,
            record,
            uuid: format!("job-{}", record.seq),
        };
        let letter = Letter {
            to: BTreeSet::from([format!("{}@example.net", record.account.clone().unwrap())]),
            subject: "s".into(),
            body: "b".into(),
            events: listed.len(),
        };
        let mut seqs: Vec<i64> = listed.iter().map(|r| r.seq).collect();
        seqs.sort_unstable();
        let batch = Batch {
            window: Window::of(time_us(record), Duration::from_secs(60)).start,
            seqs,
            through,
        };
        let event = sent(&job, &letter, "<id@wharf>", Some(&batch));
        store.append_events("n1", &[event]).await.unwrap();
    }

    fn seqs(records: &[AuditRecord]) -> Vec<i64> {
        records.iter().map(|r| r.seq).collect()
    }

    #[test]
    fn listed_events_are_written_as_runs_and_read_back_exactly() {
        assert_eq!(format_seqs(&[1, 2, 3, 5, 7, 8]), "1-3,5,7-8");
        assert_eq!(format_seqs(&[42]), "42");
        let runs = parse_seqs("1-3,5,7-8").unwrap();
        let covered = Covered {
            runs,
            through: None,
        };
        let listed: Vec<i64> = (0..10).filter(|s| covered.contains(*s)).collect();
        assert_eq!(listed, [1, 2, 3, 5, 7, 8]);
        // Nothing else is a list: a made-up or damaged record covers nothing.
        for bad in ["", "a", "5-3", "1,,2", "1-", "-", "9223372036854775808"] {
            assert!(parse_seqs(bad).is_none(), "{bad:?}");
        }
        let too_many = (0..=MAX_LISTED as i64 * 2)
            .step_by(2)
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(",");
        assert!(parse_seqs(&too_many).is_none());
    }

    #[test]
    fn only_the_groups_own_messages_cover_its_events() {
        let to = BTreeSet::from(["ann@example.net".to_owned()]);
        let window = Window::of(600 * SECOND, Duration::from_secs(60));
        let group = Group {
            handler: "mail",
            window,
            to: &to,
        };
        let record = |handler: &str, start: i64, to: &str, seqs: &str, through: &str| {
            let mut record =
                AuditRecord::unnumbered("n1", &wharf_core::Event::new(EventKind::EmailSent));
            for (k, v) in [
                ("handler", handler),
                ("window", &start.to_string()),
                ("to", to),
                ("seqs", seqs),
                ("through", through),
            ] {
                record.attrs.insert(k.to_owned(), v.to_owned());
            }
            record
        };
        let mut covered = Covered::default();
        let mine = group.to_text();
        let start = window.start;
        covered.add(
            &record("mail", start, "ann@example.net", "1-3", "5:3"),
            &group,
            &mine,
        );
        covered.add(
            &record("mail", start, "ann@example.net", "7", "2:7"),
            &group,
            &mine,
        );
        covered.add(
            &record("other", start, "ann@example.net", "10", "9:10"),
            &group,
            &mine,
        );
        covered.add(
            &record("mail", start + 1, "ann@example.net", "11", "9:11"),
            &group,
            &mine,
        );
        covered.add(
            &record("mail", start, "bob@example.net", "12", "9:12"),
            &group,
            &mine,
        );
        covered.add(
            &record("mail", start, "ann@example.net", "x", "9:13"),
            &group,
            &mine,
        );
        let mut not_sent = record("mail", start, "ann@example.net", "14", "9:14");
        not_sent.id = EventKind::HandlerFailed.id();
        covered.add(&not_sent, &group, &mine);
        let listed: Vec<i64> = (0..20).filter(|s| covered.contains(*s)).collect();
        assert_eq!(listed, [1, 2, 3, 7]);
        assert_eq!(covered.through, Some((5, 3)));
    }

    #[test]
    fn the_first_alive_job_of_a_stretch_sends_it() {
        let record = |seq| AuditRecord {
            seq,
            ..AuditRecord::unnumbered("n1", &wharf_core::Event::new(EventKind::UploadFinished))
        };
        let mut stretch = Stretch::default();
        stretch.take(&record(1), Some(true));
        stretch.take(&record(2), None);
        stretch.take(&record(3), Some(true));
        stretch.take(&record(4), Some(true));
        assert!(stretch.sent_by(1));
        assert!(!stretch.sent_by(2), "not a member: its job ended");
        assert!(!stretch.sent_by(3) && !stretch.sent_by(4));
        assert!(!stretch.sent_by(5), "beyond the stretch");
        // The first job waits to retry a failed send: the next one sends, and only it.
        stretch.members[0].1 = false;
        assert!(stretch.sent_by(1), "its own retry may still send");
        assert!(stretch.sent_by(3));
        assert!(!stretch.sent_by(4));
        assert_eq!(stretch.through.map(|t| t.1), Some(4));
    }

    #[test]
    fn a_stretch_closes_at_the_most_a_message_lists() {
        let mut stretch = Stretch::default();
        let mut seq = 0;
        while !stretch.closed() {
            seq += 1;
            let record = AuditRecord {
                seq,
                ..AuditRecord::unnumbered("n1", &wharf_core::Event::new(EventKind::UploadFinished))
            };
            // Every third record is another recipient's.
            stretch.take(&record, (seq % 3 != 0).then_some(true));
        }
        assert_eq!(stretch.members.len(), MAX_LISTED);
        let last = stretch.members.last().map(|(r, _)| r.seq).unwrap();
        assert_eq!(
            stretch.through.map(|t| t.1),
            Some(last),
            "the next one starts after it"
        );
        assert!(stretch.scanned < MAX_SCANNED);
    }

    #[test]
    fn windows_are_aligned_and_waiting_jobs_look_less_often_as_they_wait() {
        let window = Window::of(125 * SECOND + 7, Duration::from_secs(60));
        assert_eq!(
            window,
            Window {
                start: 120 * SECOND,
                end: 180 * SECOND
            }
        );
        assert_eq!(window.settled(), 182 * SECOND);
        let settled = window.settled();
        assert_eq!(poll_at(settled, window), settled + 2 * SECOND);
        assert_eq!(
            poll_at(settled + 40 * SECOND, window),
            settled + 50 * SECOND
        );
        assert_eq!(
            poll_at(settled + 3600 * SECOND, window),
            settled + 3630 * SECOND
        );
    }

    /// The defect this guards against: the earliest job's send failed and it waits to
    /// retry. The next job sends the whole burst at once (not its own event alone), and
    /// the earliest job, run again, finds its event listed.
    #[tokio::test]
    async fn a_burst_is_one_message_when_the_first_send_fails() {
        let dir = tempfile::tempdir().unwrap();
        let window = past_window();
        let events: Vec<_> = (0..5)
            .map(|i| upload("ann", &format!("r{i}.csv"), window.start + i * SECOND))
            .collect();
        let (store, records) = trail(&dir, &events).await;
        let handler = handler();
        // At first the earliest job sends; the others wait for it.
        match plan_of(&store, &handler, &records[0]).await {
            Plan::Send { listed, .. } => assert_eq!(seqs(&listed), seqs(&records)),
            other => panic!("{other:?}"),
        }
        for record in &records[1..] {
            assert!(matches!(
                plan_of(&store, &handler, record).await,
                Plan::Wait
            ));
        }
        // Its send fails: its job waits to retry.
        let now = store.clock_us().await.unwrap();
        let first = store
            .claim_handler_jobs("n1", &["mail".to_owned()], now, now + 30 * SECOND, 1)
            .await
            .unwrap()
            .remove(0);
        assert_eq!(first.event_seq, records[0].seq);
        store
            .requeue_handler_job(&first, now + 600 * SECOND, 1, Some("451"))
            .await
            .unwrap();
        let Plan::Send { listed, through } = plan_of(&store, &handler, &records[1]).await else {
            panic!("the second job sends");
        };
        assert_eq!(
            seqs(&listed),
            seqs(&records),
            "every event, not its own alone"
        );
        for record in &records[2..] {
            assert!(matches!(
                plan_of(&store, &handler, record).await,
                Plan::Wait
            ));
        }
        record_sent(&store, &handler, &records[1], &listed, through).await;
        // Every job, the earliest's retry and the sender's own again, finds its event listed.
        assert_all_covered(&store, &handler, &records).await;
    }

    /// A window with more events than a message lists gets a message per stretch; each
    /// event is listed once, and another recipient's events are not in them.
    #[tokio::test]
    async fn every_event_of_a_large_window_is_listed_once() {
        let dir = tempfile::tempdir().unwrap();
        let window = past_window();
        let events: Vec<_> = (0..450i64)
            .map(|i| {
                let who = if i % 10 == 9 { "bob" } else { "ann" };
                upload(who, &format!("f{i}"), window.start + i * 1000)
            })
            .collect();
        let (store, records) = trail(&dir, &events).await;
        let handler = handler();
        let mut listed_by_messages: Vec<Vec<i64>> = Vec::new();
        'rounds: for _ in 0..10 {
            for record in &records {
                match plan_of(&store, &handler, record).await {
                    Plan::Covered | Plan::Wait => {}
                    Plan::Send { listed, through } => {
                        listed_by_messages.push(seqs(&listed));
                        record_sent(&store, &handler, record, &listed, through).await;
                        continue 'rounds;
                    }
                }
            }
            break;
        }
        let sizes: Vec<usize> = listed_by_messages.iter().map(Vec::len).collect();
        // 405 of ann's (200, 200, 5) and 45 of bob's.
        assert_eq!(sizes, [200, 45, 200, 5]);
        let mut all: Vec<i64> = listed_by_messages.concat();
        all.sort_unstable();
        assert_eq!(all, seqs(&records), "each event once");
        assert_all_covered(&store, &handler, &records).await;
    }

    /// An event that reached the trail after its window's message was made, placed before
    /// where that message stopped reading, is sent alone; one placed after is the next
    /// stretch.
    #[tokio::test]
    async fn a_late_event_gets_a_message_without_resending_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let window = past_window();
        let events: Vec<_> = (0..3)
            .map(|i| upload("ann", &format!("r{i}"), window.start + (10 + i) * SECOND))
            .collect();
        let (store, records) = trail(&dir, &events).await;
        let handler = handler();
        let Plan::Send { listed, through } = plan_of(&store, &handler, &records[0]).await else {
            panic!("the earliest job sends");
        };
        record_sent(&store, &handler, &records[0], &listed, through).await;
        let late = [
            upload("ann", "early", window.start + SECOND),
            upload("ann", "later", window.start + 50 * SECOND),
        ];
        let late = store.append_events("n1", &late).await.unwrap();
        queue(&store, &late).await;
        match plan_of(&store, &handler, &late[0]).await {
            Plan::Send { listed, .. } => assert_eq!(seqs(&listed), [late[0].seq]),
            other => panic!("{other:?}"),
        }
        match plan_of(&store, &handler, &late[1]).await {
            Plan::Send { listed, .. } => assert_eq!(seqs(&listed), [late[1].seq]),
            other => panic!("{other:?}"),
        }
    }
}
