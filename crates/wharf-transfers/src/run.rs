//! One run of a transfer: list the source, record what is new, and move each open file
//! through its states until it is done, skipped, failed for good, or due again later.
//!
//! Why nothing is lost or doubled, step by step (each state is in the store before the
//! step that relies on it; a run cut off anywhere starts again from the stored state):
//! - `seen`: the final name is chosen (the `existing` rule applied) and stored with
//!   `copying` before any byte is written, so a resumed run writes under the same name.
//! - `copying`: the copy goes to a temporary name beside the final one (`.NAME.ID.wharf-part`,
//!   ID the row's), which nothing else uses; a resumed run writes it again from the start.
//! - `copied`: only after the temporary file is complete and verified. A resumed run finds
//!   either the temporary file (and renames it) or, when the rename happened just before
//!   the cut, the final name holding a file of the same size and digest (and moves on).
//! - `delivered`: the source is handled (deleted, moved) only now, so it is never removed
//!   before its copy is in place; a resumed run finds it gone, or already moved, and moves on.
//!
//! Events are recorded before the row moves on, so an event may be written twice for one
//! step when a run is cut off between the two (never zero times).
//!
//! This module must never rename into a final name a file that was not verified, nor
//! handle a source whose row is not `delivered`.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use wharf_core::{Event, EventKind};
use wharf_handlers::Recorder;
use wharf_store::{FileState, FileStep, Store, TransferFile, TransferLease, TransferRun};
use wharf_types::Protocol;

use crate::endpoint::{Endpoint, EndpointError, Failure};
use crate::pace::Pace;
use crate::spec::{After, Existing, Location, LocationKind, Transfer, Verify};
use crate::{file_name, join, parent};

/// Bytes read and written per step of a copy.
const CHUNK: usize = 256 * 1024;

/// Longest wait between a file's attempts.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(3600);

/// Names tried by `existing = "rename"` before the file fails.
const MAX_RENAMES: u32 = 999;

/// Refused names a run records one by one; the rest are counted in its end.
const MAX_REFUSALS_SHOWN: usize = 10;

/// Times a final name may be found taken at the rename, then free, before the attempt fails
/// (a destination that answers both ways must not hold a worker in a loop).
const MAX_RENAME_ROUNDS: u32 = 3;

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The temporary name a file's copy is written under: beside its final name, hidden,
/// and the row's own.
pub fn temporary(final_path: &str, id: i64) -> String {
    // Within a name's 255 bytes: a long name is cut (the row's id keeps it its own).
    let name = file_name(final_path);
    let room = 255usize.saturating_sub(format!("..{id}.wharf-part").len());
    let mut cut = name.len().min(room);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    join(
        parent(final_path),
        &format!(".{}.{id}.wharf-part", &name[..cut]),
    )
}

/// Most entries one listing reads, whatever `max_files` says: what a run takes on is
/// bounded by `max_files`; this bounds what reading the source costs.
pub const LISTING_CAP: usize = 100_000;

/// Most folders below the source folder a recursive listing descends.
pub const MAX_DEPTH: usize = 32;

/// Why a listed path cannot be used as one, if it cannot: a peer's names become paths on
/// the destination, so only plain names are taken (no empty, `.` or `..` part, no control
/// character, at most 255 bytes each), and one name alone unless the transfer is recursive.
pub fn refused_name(path: &str, recursive: bool) -> Option<&'static str> {
    let parts: Vec<&str> = path.split('/').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == "." || *p == "..")
    {
        return Some("an empty, \".\" or \"..\" part");
    }
    if path.chars().any(char::is_control) {
        return Some("a control character");
    }
    if parts.iter().any(|p| p.len() > 255) {
        return Some("a name longer than 255 bytes");
    }
    if !recursive && parts.len() > 1 {
        return Some("a \"/\" in a name (the transfer is not recursive)");
    }
    None
}

fn is_temporary(path: &str) -> bool {
    let name = file_name(path);
    name.starts_with('.') && name.ends_with(".wharf-part")
}

/// What a run is told about its files as they go, for a progress display.
pub trait Watch: Send + Sync {
    /// A file's copy starts (`size` bytes).
    fn started(&self, _name: &str, _size: u64) {}
    /// `bytes` of it are copied so far.
    fn progress(&self, _name: &str, _bytes: u64) {}
    /// It ended: `outcome` is `copied`, `skipped`, `failed`, `retry`.
    fn ended(&self, _name: &str, _outcome: &str) {}
}

/// A watch that shows nothing.
pub struct Quiet;
impl Watch for Quiet {}

/// What every run needs.
pub struct Context<R: Recorder> {
    /// The store.
    pub store: Store,
    /// Where events go.
    pub recorder: Arc<R>,
    /// This node's name (or the command's), for the run's record.
    pub node: String,
}

/// Why a run stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] wharf_store::StoreError),
    /// An event could not be recorded: the run stops rather than act unaudited.
    #[error("the audit trail did not take the run's event: {0}")]
    Audit(String),
    /// The lease was lost (another holder took the transfer): this run stops.
    #[error("the transfer's lease was taken over; this run stopped")]
    LeaseLost,
}

/// How a run ended.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// The run's id.
    pub run: i64,
    /// Files delivered.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Files skipped.
    pub skipped: u64,
    /// Files that failed (to be retried, or given up).
    pub failures: u64,
    /// Files given up for good.
    pub given_up: u64,
    /// Listed names refused (see [`refused_name`]).
    pub refused: u64,
    /// What stopped the run as a whole (a location that cannot be used), if anything.
    pub stopped: Option<String>,
}

fn protocol_of(location: &Location) -> Option<Protocol> {
    match location.kind {
        LocationKind::Local { .. } => None,
        LocationKind::Sftp { .. } => Some(Protocol::Sftp),
        LocationKind::Ftp {
            security: crate::spec::FtpSecurity::Plain,
            ..
        } => Some(Protocol::Ftp),
        LocationKind::Ftp { .. } => Some(Protocol::Ftps),
        LocationKind::Https { .. } => Some(Protocol::Webdav),
    }
}

/// The run's events share these fields.
struct Emitter<'a, R: Recorder> {
    transfer: &'a Transfer,
    run: i64,
    recorder: &'a R,
}

impl<R: Recorder> Emitter<'_, R> {
    fn event(&self, kind: EventKind) -> Event {
        let mut event = Event::new(kind)
            .attr("transfer", &self.transfer.name)
            .attr("run", self.run.to_string());
        event.protocol =
            protocol_of(&self.transfer.destination).or_else(|| protocol_of(&self.transfer.source));
        event
    }

    /// An event about `file`: `path` its path on the source location, `path2` on the
    /// destination (once chosen), the locations' names in `attrs.source` and
    /// `attrs.destination`.
    fn file_event(&self, kind: EventKind, file: &TransferFile) -> Event {
        let mut event = self
            .event(kind)
            .path(join(&self.transfer.source_folder, &file.source))
            .attr("source", &self.transfer.source.name)
            .attr("destination", &self.transfer.destination.name);
        if let Some(dest) = &file.destination {
            event = event.path2(join(&self.transfer.destination_folder, dest));
        }
        event
    }

    async fn record(&self, event: Event) -> Result<(), RunError> {
        self.recorder
            .record(vec![event])
            .await
            .map_err(|e| RunError::Audit(e.to_string()))
    }
}

/// A file's attempt ended short of its end.
enum Stop {
    /// Try again later (or give up when its attempts are spent).
    Again(EndpointError),
    /// A run-wide stop.
    Run(RunError),
}

impl From<EndpointError> for Stop {
    fn from(e: EndpointError) -> Stop {
        Stop::Again(e)
    }
}

impl From<RunError> for Stop {
    fn from(e: RunError) -> Stop {
        Stop::Run(e)
    }
}

impl From<wharf_store::StoreError> for Stop {
    fn from(e: wharf_store::StoreError) -> Stop {
        Stop::Run(RunError::Store(e))
    }
}

/// One worker's connections, opened when first needed.
struct Connections<'a> {
    transfer: &'a Transfer,
    source: Option<Box<dyn Endpoint>>,
    destination: Option<Box<dyn Endpoint>>,
    /// The location whose connection failed last.
    failed: Option<&'a Location>,
}

impl Connections<'_> {
    async fn source(&mut self) -> Result<&dyn Endpoint, EndpointError> {
        if self.source.is_none() {
            match connect(&self.transfer.source).await {
                Ok(end) => self.source = Some(end),
                Err(e) => {
                    self.failed = Some(&self.transfer.source);
                    return Err(e);
                }
            }
        }
        Ok(self.source.as_deref().expect("just opened"))
    }

    async fn destination(&mut self) -> Result<&dyn Endpoint, EndpointError> {
        if self.destination.is_none() {
            match connect(&self.transfer.destination).await {
                Ok(end) => self.destination = Some(end),
                Err(e) => {
                    self.failed = Some(&self.transfer.destination);
                    return Err(e);
                }
            }
        }
        Ok(self.destination.as_deref().expect("just opened"))
    }

    async fn close(&mut self) {
        for end in [self.source.take(), self.destination.take()]
            .into_iter()
            .flatten()
        {
            end.close().await;
        }
    }
}

async fn connect(location: &Location) -> Result<Box<dyn Endpoint>, EndpointError> {
    match tokio::time::timeout(location.connect_timeout, location.connect()).await {
        Ok(result) => result.map(|inner| {
            Box::new(crate::timed::Timed::new(inner, location.idle_timeout)) as Box<dyn Endpoint>
        }),
        Err(_) => Err(EndpointError::location(format!(
            "no connection and login within {} s",
            location.connect_timeout.as_secs()
        ))),
    }
}

fn now_us() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

/// Runs `transfer` once under `lease`; `trigger` says what started it.
/// `lost` turns true when the lease is lost: the run then stops between files (and between
/// pieces of a copy), and still records its end.
pub async fn run<R: Recorder>(
    transfer: &Transfer,
    lease: &TransferLease,
    ctx: &Context<R>,
    trigger: &str,
    watch: Arc<dyn Watch>,
    lost: tokio::sync::watch::Receiver<bool>,
) -> Result<Summary, RunError> {
    let started = Instant::now();
    let run_id = ctx
        .store
        .start_transfer_run(lease, &ctx.node, trigger)
        .await?;
    let emit = Emitter {
        transfer,
        run: run_id,
        recorder: &*ctx.recorder,
    };
    emit.record(
        emit.event(EventKind::TransferRunStarted)
            .attr("trigger", trigger)
            .attr("source", &transfer.source.name)
            .attr("destination", &transfer.destination.name),
    )
    .await?;
    let mut summary = Summary {
        run: run_id,
        ..Summary::default()
    };
    let outcome = files(transfer, lease, ctx, &emit, &mut summary, watch, &lost).await;
    let stopped = match &outcome {
        Ok(()) => summary.stopped.clone(),
        Err(e) => Some(e.to_string()),
    };
    let state = if stopped.is_some() || summary.failures > 0 {
        "failure"
    } else {
        "success"
    };
    ctx.store
        .finish_transfer_run(&TransferRun {
            id: run_id,
            transfer: transfer.name.clone(),
            node: ctx.node.clone(),
            trigger: trigger.to_owned(),
            state: state.to_owned(),
            started_us: 0,
            finished_us: None,
            files: summary.files as i64,
            bytes: summary.bytes as i64,
            skipped: summary.skipped as i64,
            failures: summary.failures as i64,
            message: stopped.clone(),
        })
        .await?;
    let mut event = emit
        .event(EventKind::TransferRunFinished)
        .attr("files", summary.files.to_string())
        .attr("skipped", summary.skipped.to_string())
        .attr("failures", summary.failures.to_string());
    if summary.given_up > 0 {
        event = event.attr("given_up", summary.given_up.to_string());
    }
    if summary.refused > 0 {
        event = event.attr("refused", summary.refused.to_string());
    }
    event.bytes = Some(summary.bytes);
    event.duration_ms = Some(started.elapsed().as_millis() as u64);
    if let Some(why) = &stopped {
        event = event.failed(why.clone());
    } else if summary.failures > 0 {
        event = event.failed(format!("{} file(s) failed", summary.failures));
    }
    emit.record(event).await?;
    outcome.map(|()| summary)
}

async fn location_failed<R: Recorder>(
    emit: &Emitter<'_, R>,
    location: &Location,
    e: &EndpointError,
) -> Result<(), RunError> {
    emit.record(
        emit.event(EventKind::TransferLocationFailed)
            .attr("location", &location.name)
            .failed(format!(
                "{} ({}): {}",
                location.name,
                location.kind.place(),
                e.message
            )),
    )
    .await
}

async fn files<R: Recorder>(
    transfer: &Transfer,
    lease: &TransferLease,
    ctx: &Context<R>,
    emit: &Emitter<'_, R>,
    summary: &mut Summary,
    watch: Arc<dyn Watch>,
    lost: &tokio::sync::watch::Receiver<bool>,
) -> Result<(), RunError> {
    // The listing; its connection is the first worker's.
    let mut first = Connections {
        transfer,
        source: None,
        destination: None,
        failed: None,
    };
    let listing = match first.source().await {
        Ok(source) => {
            source
                .list(&transfer.source_folder, transfer.recursive, LISTING_CAP)
                .await
        }
        Err(e) => Err(e),
    };
    let listing = match listing {
        Ok(listing) => listing,
        Err(e) => {
            first.close().await;
            location_failed(emit, &transfer.source, &e).await?;
            summary.stopped = Some(format!("{}: {}", transfer.source.name, e.message));
            return Ok(());
        }
    };
    let moved_to = match &transfer.after {
        After::Move(folder) => Some(folder.trim_end_matches('/').to_owned()),
        _ => None,
    };
    let now = now_us();
    let min_age = i64::try_from(transfer.min_age.as_micros()).unwrap_or(i64::MAX);
    let mut listed = HashSet::new();
    let mut eligible = Vec::new();
    let mut refused = 0usize;
    for entry in &listing.files {
        let size = i64::try_from(entry.size).unwrap_or(i64::MAX);
        listed.insert((entry.path.clone(), size, entry.mtime_us));
        if is_temporary(&entry.path) {
            continue;
        }
        if let Some(why) = refused_name(&entry.path, transfer.recursive) {
            // Shown escaped: a peer's name never reaches a terminal or the trail raw.
            refused += 1;
            if refused <= MAX_REFUSALS_SHOWN {
                emit.record(
                    emit.event(EventKind::TransferFileSkipped)
                        .attr("source", &transfer.source.name)
                        .message(format!(
                            "the name {:?} was refused: it holds {why}",
                            entry.path
                        )),
                )
                .await?;
            }
            continue;
        }
        if let Some(folder) = &moved_to
            && join(&transfer.source_folder, &entry.path).starts_with(&format!("{folder}/"))
        {
            continue;
        }
        if let Some(pattern) = &transfer.files
            && !pattern.is_match(&format!("/{}", entry.path))
        {
            continue;
        }
        if now.saturating_sub(entry.mtime_us) < min_age {
            continue;
        }
        eligible.push((entry.path.clone(), size, entry.mtime_us));
    }
    summary.refused = refused as u64;
    ctx.store.note_transfer_files(lease, &eligible).await?;
    if listing.complete {
        ctx.store
            .forget_transfer_files(lease, &listed, summary.run)
            .await?;
    }
    let open = ctx
        .store
        .open_transfer_files(&transfer.name, now_us(), transfer.max_files as i64)
        .await?;
    if open.is_empty() {
        first.close().await;
        return Ok(());
    }
    // One login at the destination before the workers start: a destination that refuses
    // it stops the run here, after one attempt rather than one per worker.
    if let Err(e) = first.destination().await {
        first.close().await;
        location_failed(emit, &transfer.destination, &e).await?;
        summary.stopped = Some(format!("{}: {}", transfer.destination.name, e.message));
        return Ok(());
    }
    let first = std::sync::Mutex::new(Some(first));
    let queue = Mutex::new(open.into_iter().collect::<VecDeque<_>>());
    let totals = Mutex::new(Summary::default());
    let pace = Pace::new(transfer.rate);
    let workers = transfer.parallel.max(1);
    let shared = Worker {
        transfer,
        lease,
        ctx,
        emit,
        pace: &pace,
        watch: &*watch,
        run: summary.run,
        lost,
    };
    let mut all = Vec::new();
    for _ in 0..workers {
        let given = first.lock().ok().and_then(|mut f| f.take());
        all.push(shared.work(&queue, &totals, given));
    }
    let results = futures_util::future::join_all(all).await;
    let totals = totals.into_inner();
    summary.files = totals.files;
    summary.bytes = totals.bytes;
    summary.skipped = totals.skipped;
    summary.failures = totals.failures;
    summary.given_up = totals.given_up;
    summary.stopped = totals.stopped;
    summary.refused = refused as u64;
    for result in results {
        result?;
    }
    Ok(())
}

struct Worker<'a, R: Recorder> {
    transfer: &'a Transfer,
    lease: &'a TransferLease,
    ctx: &'a Context<R>,
    emit: &'a Emitter<'a, R>,
    pace: &'a Pace,
    watch: &'a dyn Watch,
    run: i64,
    lost: &'a tokio::sync::watch::Receiver<bool>,
}

impl<R: Recorder> Worker<'_, R> {
    async fn work(
        &self,
        queue: &Mutex<VecDeque<TransferFile>>,
        totals: &Mutex<Summary>,
        given: Option<Connections<'_>>,
    ) -> Result<(), RunError> {
        let mut conns = given.unwrap_or(Connections {
            transfer: self.transfer,
            source: None,
            destination: None,
            failed: None,
        });
        let result = loop {
            if *self.lost.borrow() {
                break Err(RunError::LeaseLost);
            }
            let Some(file) = queue.lock().await.pop_front() else {
                break Ok(());
            };
            if totals.lock().await.stopped.is_some() {
                break Ok(());
            }
            let name = file.source.clone();
            self.watch.started(&name, file.size as u64);
            match self.file(file.clone(), &mut conns).await {
                Ok(FileEnd::Delivered(bytes)) => {
                    let mut t = totals.lock().await;
                    t.files += 1;
                    t.bytes += bytes;
                    self.watch.ended(&name, "copied");
                }
                Ok(FileEnd::Skipped) => {
                    totals.lock().await.skipped += 1;
                    self.watch.ended(&name, "skipped");
                }
                Err(Stop::Again(e)) if e.kind == Failure::Location => {
                    // A location that cannot be used stops the run: the other files would
                    // meet it too. No file's attempts are spent on it (the run is tried
                    // again as a whole); the rows stay as they are.
                    let which = conns.failed.unwrap_or(&self.transfer.destination);
                    let mut t = totals.lock().await;
                    if t.stopped.is_none() {
                        location_failed(self.emit, which, &e).await?;
                        t.stopped = Some(format!("{}: {}", which.name, e.message));
                    }
                    conns.close().await;
                    self.watch.ended(&name, "stopped");
                }
                Err(Stop::Again(e)) => {
                    let given_up = self.failed(&file, &e).await?;
                    if given_up && let Some(dest) = &file.destination {
                        // Nothing of a file given up stays at the destination.
                        let temp = temporary(&self.final_path(dest), file.id);
                        if let Ok(end) = conns.destination().await {
                            let _ = end.remove(&temp).await;
                        }
                    }
                    let mut t = totals.lock().await;
                    t.failures += 1;
                    if given_up {
                        t.given_up += 1;
                    }
                    // A broken connection is opened again for the next file.
                    conns.close().await;
                    self.watch
                        .ended(&name, if given_up { "failed" } else { "retry" });
                }
                Err(Stop::Run(e)) => break Err(e),
            }
        };
        conns.close().await;
        result
    }

    /// Records a failed attempt; whether the file is given up.
    async fn failed(&self, file: &TransferFile, e: &EndpointError) -> Result<bool, RunError> {
        let attempts = file.attempts + 1;
        let given_up = matches!(e.kind, Failure::Permanent | Failure::Exists)
            || attempts >= i64::from(self.transfer.attempts);
        let wait = self
            .transfer
            .retry_wait
            .saturating_mul(1 << (attempts - 1).clamp(0, 20) as u32)
            .min(MAX_RETRY_WAIT);
        let mut event = self
            .emit
            .file_event(EventKind::TransferFileFailed, file)
            .attr("attempt", attempts.to_string())
            .failed(e.message.clone());
        if given_up {
            event = event.attr("given_up", "true");
        } else {
            event = event.attr("retry_in", format!("{}s", wait.as_secs()));
        }
        self.emit.record(event).await?;
        let step = FileStep {
            state: if given_up {
                FileState::Failed
            } else {
                file.state
            },
            destination: None,
            sha256: None,
            attempts,
            due_us: now_us().saturating_add(i64::try_from(wait.as_micros()).unwrap_or(i64::MAX)),
            run_id: self.run,
            last_error: Some(e.message.clone()),
        };
        if !self
            .ctx
            .store
            .step_transfer_file(self.lease, file.id, &step)
            .await?
        {
            return Err(RunError::LeaseLost);
        }
        Ok(given_up)
    }

    async fn step(
        &self,
        file: &mut TransferFile,
        state: FileState,
        destination: Option<String>,
        sha256: Option<String>,
    ) -> Result<(), Stop> {
        let step = FileStep {
            state,
            destination: destination.clone(),
            sha256: sha256.clone(),
            attempts: file.attempts,
            due_us: file.due_us,
            run_id: self.run,
            last_error: file.last_error.clone(),
        };
        if !self
            .ctx
            .store
            .step_transfer_file(self.lease, file.id, &step)
            .await?
        {
            return Err(Stop::Run(RunError::LeaseLost));
        }
        file.state = state;
        if destination.is_some() {
            file.destination = destination;
        }
        if sha256.is_some() {
            file.sha256 = sha256;
        }
        Ok(())
    }

    fn source_path(&self, file: &TransferFile) -> String {
        join(&self.transfer.source_folder, &file.source)
    }

    fn final_path(&self, destination: &str) -> String {
        join(&self.transfer.destination_folder, destination)
    }

    /// Moves `file` through its states to its end.
    async fn file(
        &self,
        mut file: TransferFile,
        conns: &mut Connections<'_>,
    ) -> Result<FileEnd, Stop> {
        let mut copied_at: Option<Instant> = None;
        let mut rename_rounds = 0;
        loop {
            match file.state {
                FileState::Seen => {
                    if let Some(why) = self.obsolete(&file, conns).await? {
                        return self.skip(&mut file, &why).await;
                    }
                    let wanted = file.source.clone();
                    let chosen = match self.choose_name(&wanted, conns).await? {
                        Chosen::Name(name) => name,
                        Chosen::Skip(why) => return self.skip(&mut file, &why).await,
                    };
                    self.step(&mut file, FileState::Copying, Some(chosen), None)
                        .await?;
                }
                FileState::Copying => {
                    if let Some(why) = self.obsolete(&file, conns).await? {
                        let dest = self.final_path(file.destination.as_deref().unwrap_or(""));
                        let _ = conns
                            .destination()
                            .await?
                            .remove(&temporary(&dest, file.id))
                            .await;
                        return self.skip(&mut file, &why).await;
                    }
                    let started = Instant::now();
                    let sha = self.copy(&file, conns).await?;
                    copied_at = Some(started);
                    self.step(&mut file, FileState::Copied, None, Some(sha))
                        .await?;
                }
                FileState::Copied => {
                    let dest = self.final_path(file.destination.as_deref().unwrap_or(""));
                    let temp = temporary(&dest, file.id);
                    let end = conns.destination().await?;
                    match end.stat(&temp).await? {
                        Some(e) if e.size == file.size as u64 => {
                            let replace = self.transfer.existing == Existing::Replace;
                            match end.rename(&temp, &dest, replace).await {
                                Ok(()) => {}
                                Err(e) if e.kind == Failure::Exists => {
                                    rename_rounds += 1;
                                    if rename_rounds > MAX_RENAME_ROUNDS {
                                        return Err(EndpointError::retry(format!(
                                            "{dest} was said to be taken at the rename, then free, {MAX_RENAME_ROUNDS} times"
                                        ))
                                        .into());
                                    }
                                    match self.taken_at_rename(&mut file, &temp, conns).await? {
                                        Some(end) => return Ok(end),
                                        None => continue,
                                    }
                                }
                                Err(e) => return Err(e.into()),
                            }
                        }
                        Some(_) => {
                            // Not the complete copy: write it again.
                            self.step(&mut file, FileState::Copying, None, None).await?;
                            continue;
                        }
                        None => {
                            if !self.already_renamed(&file, &dest, conns).await? {
                                self.step(&mut file, FileState::Copying, None, None).await?;
                                continue;
                            }
                        }
                    }
                    let mut event = self.emit.file_event(EventKind::TransferFileCopied, &file);
                    // A file delivered to a local folder: where event handlers find it.
                    if let Some(place) = conns.destination().await?.local_place(&dest).await {
                        event = event
                            .attr("root", place.root.to_string_lossy())
                            .attr("file", place.file.to_string_lossy());
                        if let Some(inode) = place.inode {
                            event = event.attr("inode", inode);
                        }
                    }
                    event.bytes = Some(file.size as u64);
                    event.sha256 = file.sha256.clone();
                    if let Some(at) = copied_at {
                        event.duration_ms = Some(at.elapsed().as_millis() as u64);
                    } else {
                        event = event.attr("resumed", "true");
                    }
                    self.emit.record(event).await?;
                    self.step(&mut file, FileState::Delivered, None, None)
                        .await?;
                }
                FileState::Delivered => {
                    self.handle_source(&file, conns).await?;
                    self.step(&mut file, FileState::Done, None, None).await?;
                    return Ok(FileEnd::Delivered(file.size as u64));
                }
                FileState::Done => return Ok(FileEnd::Delivered(0)),
                FileState::Skipped => return Ok(FileEnd::Skipped),
                FileState::Failed => {
                    return Err(Stop::Again(EndpointError::new(
                        Failure::Permanent,
                        file.last_error.clone().unwrap_or_default(),
                    )));
                }
            }
        }
    }

    /// Why this version of the file is no longer the one at the source, if it is not.
    async fn obsolete(
        &self,
        file: &TransferFile,
        conns: &mut Connections<'_>,
    ) -> Result<Option<String>, Stop> {
        let source = conns.source().await?;
        Ok(match source.stat(&self.source_path(file)).await? {
            None => Some("gone from the source before it was copied".to_owned()),
            Some(now) if now.size != file.size as u64 || now.mtime_us != file.mtime_us => {
                Some("changed at the source; its new version is taken as a new file".to_owned())
            }
            Some(_) => None,
        })
    }

    async fn skip(&self, file: &mut TransferFile, why: &str) -> Result<FileEnd, Stop> {
        self.emit
            .record(
                self.emit
                    .file_event(EventKind::TransferFileSkipped, file)
                    .message(why),
            )
            .await?;
        self.step(file, FileState::Skipped, None, None).await?;
        Ok(FileEnd::Skipped)
    }

    /// The destination name for `wanted` under the `existing` rule.
    async fn choose_name(&self, wanted: &str, conns: &mut Connections<'_>) -> Result<Chosen, Stop> {
        let end = conns.destination().await?;
        if end.stat(&self.final_path(wanted)).await?.is_none() {
            return Ok(Chosen::Name(wanted.to_owned()));
        }
        match self.transfer.existing {
            Existing::Replace => Ok(Chosen::Name(wanted.to_owned())),
            Existing::Skip => Ok(Chosen::Skip(format!(
                "{} exists at the destination",
                self.final_path(wanted)
            ))),
            Existing::Fail => Err(Stop::Again(EndpointError::new(
                Failure::Exists,
                format!("{} exists at the destination", self.final_path(wanted)),
            ))),
            Existing::Rename => {
                for n in 1..=MAX_RENAMES {
                    let candidate = numbered(wanted, n);
                    if end.stat(&self.final_path(&candidate)).await?.is_none() {
                        return Ok(Chosen::Name(candidate));
                    }
                }
                Err(Stop::Again(EndpointError::new(
                    Failure::Permanent,
                    format!(
                        "{MAX_RENAMES} numbered names of {wanted} are taken at the destination"
                    ),
                )))
            }
        }
    }

    /// The final name was taken between the choice and the rename.
    async fn taken_at_rename(
        &self,
        file: &mut TransferFile,
        temp: &str,
        conns: &mut Connections<'_>,
    ) -> Result<Option<FileEnd>, Stop> {
        let wanted = file.source.clone();
        match self.choose_name(&wanted, conns).await {
            Ok(Chosen::Name(name)) => {
                // Renamed into the new name on the next turn; the temporary name follows.
                let dest = conns.destination().await?;
                let new_temp = temporary(&self.final_path(&name), file.id);
                if new_temp != temp {
                    dest.make_folders(parent(&new_temp)).await?;
                    dest.rename(temp, &new_temp, true).await?;
                }
                self.step(file, FileState::Copied, Some(name), None).await?;
                Ok(None)
            }
            Ok(Chosen::Skip(why)) => {
                let _ = conns.destination().await?.remove(temp).await;
                Ok(Some(self.skip(file, &why).await?))
            }
            Err(e) => {
                let _ = conns.destination().await?.remove(temp).await;
                Err(e)
            }
        }
    }

    /// Whether the final name holds this file's copy already (the rename happened just
    /// before a run was cut off).
    async fn already_renamed(
        &self,
        file: &TransferFile,
        dest: &str,
        conns: &mut Connections<'_>,
    ) -> Result<bool, Stop> {
        let end = conns.destination().await?;
        match end.stat(dest).await? {
            Some(e) if e.size == file.size as u64 => {}
            _ => return Ok(false),
        }
        match (&file.sha256, end.sha256(dest).await?) {
            (Some(ours), Some((theirs, _))) => Ok(*ours == theirs),
            _ => Ok(true),
        }
    }

    /// Copies the source to its temporary name and verifies it there; its SHA-256.
    async fn copy(&self, file: &TransferFile, conns: &mut Connections<'_>) -> Result<String, Stop> {
        let dest = self.final_path(file.destination.as_deref().unwrap_or(""));
        let temp = temporary(&dest, file.id);
        conns
            .destination()
            .await?
            .make_folders(parent(&dest))
            .await?;
        let mut reader = conns
            .source()
            .await?
            .open_read(&self.source_path(file))
            .await?;
        let mut writer = conns.destination().await?.create(&temp).await?;
        let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        let mut bytes = 0u64;
        let copied: Result<(), EndpointError> = async {
            loop {
                let chunk = reader.read(CHUNK).await?;
                if chunk.is_empty() {
                    return Ok(());
                }
                if *self.lost.borrow() {
                    return Err(EndpointError::retry("the transfer's lease was lost"));
                }
                self.pace.take(chunk.len()).await;
                context.update(&chunk);
                writer.write(&chunk).await?;
                bytes += chunk.len() as u64;
                self.watch.progress(&file.source, bytes);
                if bytes > file.size as u64 {
                    return Err(EndpointError::retry(format!(
                        "the source grew while it was read (more than {} bytes)",
                        file.size
                    )));
                }
            }
        }
        .await;
        if let Err(e) = copied {
            writer.abort().await;
            let _ = conns.destination().await?.remove(&temp).await;
            return Err(e.into());
        }
        if bytes != file.size as u64 {
            writer.abort().await;
            let _ = conns.destination().await?.remove(&temp).await;
            return Err(EndpointError::retry(format!(
                "read {bytes} bytes of a {}-byte source: it changed while it was read",
                file.size
            ))
            .into());
        }
        writer.finish().await?;
        // The source read whole: still the version listed, or the copy may be torn.
        if self.obsolete(file, conns).await?.is_some() {
            let _ = conns.destination().await?.remove(&temp).await;
            return Err(EndpointError::retry("the source changed while it was read").into());
        }
        let sha = hex(context.finish().as_ref());
        let end = conns.destination().await?;
        let written = end.stat(&temp).await?.map(|e| e.size);
        if written != Some(bytes) {
            let _ = end.remove(&temp).await;
            return Err(EndpointError::retry(format!(
                "the destination holds {} bytes of the {bytes} written",
                written.map_or("no".to_owned(), |w| w.to_string())
            ))
            .into());
        }
        let mut method = "size".to_owned();
        if self.transfer.verify != Verify::Size {
            match end.sha256(&temp).await? {
                Some((theirs, how)) if theirs == sha => method = format!("sha256 ({how})"),
                Some((theirs, how)) => {
                    let _ = end.remove(&temp).await;
                    return Err(EndpointError::retry(format!(
                        "the destination's SHA-256 ({how}) is {theirs}, the source's {sha}"
                    ))
                    .into());
                }
                None if self.transfer.verify == Verify::Sha256 => {
                    let _ = end.remove(&temp).await;
                    return Err(EndpointError::new(
                        Failure::Permanent,
                        "the destination offers no SHA-256 (verify = \"sha256\")",
                    )
                    .into());
                }
                None => {}
            }
        }
        let mut event = self
            .emit
            .file_event(EventKind::TransferFileVerified, file)
            .attr("method", &method);
        event.bytes = Some(bytes);
        event.sha256 = Some(sha.clone());
        self.emit.record(event).await?;
        Ok(sha)
    }

    /// Deals with a delivered file's source as configured.
    async fn handle_source(
        &self,
        file: &TransferFile,
        conns: &mut Connections<'_>,
    ) -> Result<(), Stop> {
        let from = self.source_path(file);
        if self.transfer.after == After::Keep {
            return Ok(());
        }
        // Only the version that was delivered is deleted or moved: a file put in its place
        // since (a new upload under the same name) is left for its own delivery. Gone
        // already: handled before a cut, or by someone else.
        match conns.source().await?.stat(&from).await? {
            None => return Ok(()),
            Some(now) if now.size != file.size as u64 || now.mtime_us != file.mtime_us => {
                self.emit
                    .record(
                        self.emit
                            .file_event(EventKind::TransferSourceHandled, file)
                            .attr("action", "kept")
                            .message(
                                "changed at the source since it was copied: left in place, taken as a new file",
                            ),
                    )
                    .await?;
                return Ok(());
            }
            Some(_) => {}
        }
        let (action, to) = match &self.transfer.after {
            After::Keep => return Ok(()),
            After::Delete => {
                match conns.source().await?.remove(&from).await {
                    Ok(()) => {}
                    // Removed before a cut, or by someone else: either way it is gone.
                    Err(e) if e.kind == Failure::Missing => {}
                    Err(e) => return Err(e.into()),
                }
                ("deleted", None)
            }
            After::Move(folder) => {
                let source = conns.source().await?;
                let mut to = join(folder, &file.source);
                source.make_folders(parent(&to)).await?;
                let mut n = 0;
                loop {
                    match source.rename(&from, &to, false).await {
                        Ok(()) => break,
                        Err(e) if e.kind == Failure::Missing => break,
                        Err(e) if e.kind == Failure::Exists && n < MAX_RENAMES => {
                            n += 1;
                            to = join(folder, &numbered(&file.source, n));
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                ("moved", Some(to))
            }
        };
        let mut event = self
            .emit
            .file_event(EventKind::TransferSourceHandled, file)
            .attr("action", action);
        event.path2 = to;
        self.emit.record(event).await?;
        Ok(())
    }
}

enum Chosen {
    Name(String),
    Skip(String),
}

enum FileEnd {
    Delivered(u64),
    Skipped,
}

/// `dir/name.N.ext` for `dir/name.ext` (`name.N` without an extension).
fn numbered(path: &str, n: u32) -> String {
    let dir = parent(path);
    let name = file_name(path);
    let renamed = match name.rfind('.') {
        Some(i) if i > 0 => format!("{}.{n}{}", &name[..i], &name[i..]),
        _ => format!("{name}.{n}"),
    };
    if dir.is_empty() {
        renamed
    } else {
        format!("{dir}/{renamed}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_are_hidden_beside_the_final_one_and_recognised() {
        assert_eq!(temporary("/in/a.xml", 7), "/in/.a.xml.7.wharf-part");
        assert!(is_temporary("sub/.a.xml.7.wharf-part"));
        assert!(!is_temporary("a.xml"));
        assert_eq!(numbered("sub/a.xml", 2), "sub/a.2.xml");
        assert_eq!(numbered("README", 1), "README.1");
        assert_eq!(numbered(".profile", 1), ".profile.1");
        // A name near the limit keeps its temporary name within 255 bytes.
        let long = format!("/in/{}", "é".repeat(127));
        let temp = temporary(&long, 123_456);
        assert!(file_name(&temp).len() <= 255, "{}", file_name(&temp).len());
        assert!(is_temporary(&temp));
    }

    #[test]
    fn only_plain_names_are_taken_from_a_listing() {
        for ok in ["a.xml", "sub/a.xml", ".hidden", "a b", "ü.txt"] {
            assert_eq!(refused_name(ok, true), None, "{ok}");
        }
        assert_eq!(refused_name("a.xml", false), None);
        for (bad, recursive) in [
            ("../escape.txt", true),
            ("a/../../b", true),
            ("./a", true),
            ("a//b", true),
            ("/abs", true),
            ("", true),
            ("nl\nname", true),
            ("esc\u{1b}[2J", true),
            ("sub/slash.txt", false),
        ] {
            assert!(refused_name(bad, recursive).is_some(), "{bad:?}");
        }
        assert!(refused_name(&"L".repeat(256), false).is_some());
    }
}
