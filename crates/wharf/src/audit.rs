//! The audit writer: hands every event to the store, which numbers it and chains it in this
//! node's chain, then appends it to the node's JSON-lines file and the other sinks. One
//! writer per process; the store's lock of the node's chain orders writers across processes
//! (the server and a CLI command) and the JSON-lines file's lock keeps the file in chain
//! order.
//!
//! The server's writer never drops a batch. When the store does not answer, records wait in
//! memory, up to [`MEMORY_RECORDS`] of them and [`MEMORY_WAIT`] each; then they go, in
//! order, to the node's spill file (`crate::audit_spill`, fsynced), and from then on every
//! new record goes behind them there until the store is back and the file has been written
//! to it, oldest first, so the chain continues exactly as if the store had never been away.
//! A record is confirmed to the operation waiting for it (`EventBus::emit_durable`) once it
//! is in the store or in the spill file. When neither takes it, the operation is refused and
//! new uploads are refused before they start; the record stays in memory and is written
//! when either works again.
//!
//! A write that timed out may still have committed. Before writing again after a failure
//! (and before the first chunk of a spill file left by an earlier run), the writer reads the
//! node's last record in the store: if it is one of the records about to be written (same
//! content), those up to it are already there and are not written twice.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::sync::mpsc;
use wharf_core::{Event, WriterProgress};
use wharf_handlers::RecordError;
use wharf_handlers::sinks::{JsonLines, Sink, segments};
use wharf_store::{AuditRecord, Store};

use crate::audit_spill::Spill;

/// Records kept in memory while the store does not answer, before they are spilled.
pub const MEMORY_RECORDS: usize = 10_000;
/// How long a record waits in memory for the store before it is spilled (operations wait
/// for their record to be durable).
pub const MEMORY_WAIT: Duration = Duration::from_secs(1);
/// How long one write to the store may take before it counts as failed.
const STORE_WAIT: Duration = Duration::from_secs(3);
/// Between attempts while the store does not answer.
const RETRY_EVERY: Duration = Duration::from_millis(500);
/// Records per store transaction.
const CHUNK: usize = 500;
/// Chunks written before the writer looks at new records again (catching up on a long
/// spill file must not hold new records in memory past their wait).
const CHUNKS_PER_TURN: usize = 8;
/// Records kept in memory at most when neither the store nor the spill file takes them
/// (every operation is refused meanwhile, so only a few more can come).
const MEMORY_HARD_LIMIT: usize = 200_000;

/// Where records go.
#[derive(Clone)]
pub struct AuditSink {
    /// The store.
    pub store: Store,
    /// Node name.
    pub node: String,
    /// The JSON-lines copy of this node's records, if any.
    pub jsonl: Option<JsonLines>,
    /// Where the server's writer keeps records the store cannot take yet.
    pub spill: Option<Spill>,
    /// Further copies, each with its filter (`[[audit.sink]]`).
    pub sinks: Sinks,
    /// Told after every batch (the event handlers' engine waits on it).
    pub written: Option<Arc<tokio::sync::Notify>>,
    /// Orders this process's writers (the bus's writer task, the handlers) so that they
    /// never wait for each other on the file lock, which blocks a thread.
    pub turn: Arc<tokio::sync::Mutex<()>>,
}

/// The `[[audit.sink]]` copies, replaceable by a reload: every clone of an [`AuditSink`]
/// shares them, so the writer task and the handlers switch together, at the next batch. A
/// batch being delivered finishes with the sinks it began with.
#[derive(Clone, Default)]
pub struct Sinks(Arc<std::sync::RwLock<(String, Arc<Vec<Sink>>)>>);

impl Sinks {
    /// `sinks`, built from the sections written canonically as `written`.
    pub fn new(written: String, sinks: Vec<Sink>) -> Sinks {
        Sinks(Arc::new(std::sync::RwLock::new((written, Arc::new(sinks)))))
    }

    /// The sinks now.
    fn current(&self) -> Arc<Vec<Sink>> {
        self.0
            .read()
            .map_or_else(|e| Arc::clone(&e.get_ref().1), |s| Arc::clone(&s.1))
    }

    /// Whether `written` differs from the sections the sinks were built from.
    pub fn differ(&self, written: &str) -> bool {
        self.0.read().map_or(true, |s| s.0 != written)
    }

    /// Replaces them.
    pub fn replace(&self, written: String, sinks: Vec<Sink>) {
        let mut kept = match self.0.write() {
            Ok(kept) => kept,
            Err(poisoned) => poisoned.into_inner(),
        };
        *kept = (written, Arc::new(sinks));
    }
}

impl wharf_handlers::Recorder for AuditSink {
    async fn record(&self, events: Vec<Event>) -> Result<(), RecordError> {
        self.write(&events).await
    }
}

/// Why a write did not reach the store.
#[derive(Debug)]
enum StoreFailed {
    Store(wharf_store::StoreError),
    Timeout(Duration),
}

impl std::fmt::Display for StoreFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreFailed::Store(e) => e.fmt(f),
            StoreFailed::Timeout(wait) => write!(f, "the store did not answer within {wait:?}"),
        }
    }
}

/// The server writer's records not yet in the store.
struct Backlog {
    /// Records not yet durable, oldest first, with when they arrived.
    memory: VecDeque<(Instant, AuditRecord)>,
    /// How many of the first `memory` records were already reported lost.
    reported: usize,
    /// The last write to the store failed: it may have committed all the same.
    uncertain: bool,
    /// When to try the store again (`None`: it answered last time).
    retry_at: Option<Instant>,
    /// Why the store failed last, for the log.
    store_error: Option<String>,
}

impl AuditSink {
    /// Persists `events` in order, then hands them to the other sinks. With a JSON-lines
    /// copy, the file is locked around the store append and the file append, so when the
    /// server and a CLI command write at once the file still holds the records in chain
    /// order.
    pub async fn write(&self, events: &[Event]) -> Result<(), RecordError> {
        let records: Vec<AuditRecord> = events
            .iter()
            .map(|e| AuditRecord::unnumbered(&self.node, e))
            .collect();
        let result = self.persist(&records, false, None).await;
        if let Some(notify) = &self.written {
            notify.notify_one();
        }
        match result {
            Ok(written) => {
                self.deliver(&written).await;
                Ok(())
            }
            Err(Persist::Store(StoreFailed::Store(e))) => Err(e.into()),
            Err(Persist::Store(e)) => Err(std::io::Error::other(e.to_string()).into()),
            Err(Persist::File(e)) => Err(e.into()),
        }
    }

    async fn deliver(&self, records: &[AuditRecord]) {
        crate::metrics::observe(records);
        let sinks = self.sinks.current();
        for sink in sinks.iter() {
            // Another copy failing never fails the trail: it is reported, and the
            // store and the JSON-lines copy still hold the records.
            if let Err(e) = sink.deliver(records).await {
                tracing::warn!(sink = %sink.name, error = %e, count = records.len(), "audit sink did not take records");
            }
        }
    }

    /// Writes `records` (unnumbered) to the store and then to the JSON-lines copy. With
    /// `uncertain`, first leaves out those the store already holds from a write whose
    /// outcome was not known. `Err(Persist::File)` comes after the store took them.
    async fn persist(
        &self,
        records: &[AuditRecord],
        uncertain: bool,
        wait: Option<Duration>,
    ) -> Result<Vec<AuditRecord>, Persist> {
        let _turn = self.turn.lock().await;
        // Another process (a CLI command) may hold the file lock for a moment: wait for it
        // on the blocking pool, not on a runtime thread.
        let locked = match &self.jsonl {
            Some(jsonl) => {
                let file = jsonl.clone();
                Some(
                    tokio::task::spawn_blocking(move || file.lock())
                        .await
                        .map_err(std::io::Error::other)
                        .and_then(|locked| locked),
                )
            }
            None => None,
        };
        let mut written = Vec::new();
        let mut rest = records;
        if uncertain {
            let head = bounded(wait, self.store.chain_head(&self.node)).await?;
            if let Some(head) = head {
                let content = head.content();
                if let Some(i) = rest.iter().rposition(|r| r.content() == content) {
                    let from = head.chain_seq() - i64::try_from(i).unwrap_or(0);
                    written = bounded(
                        wait,
                        self.store.chain_records(
                            &self.node,
                            from,
                            i64::try_from(i + 1).unwrap_or(0),
                        ),
                    )
                    .await?;
                    tracing::info!(
                        count = i + 1,
                        "audit records found in the store from a write that seemed to fail"
                    );
                    rest = &rest[i + 1..];
                }
            }
        }
        let started = Instant::now();
        written.extend(bounded(wait, self.store.append_records(&self.node, rest)).await?);
        crate::metrics::store_write(started.elapsed());
        if let Some(locked) = locked {
            // The store holds the records even when the file cannot be opened; the error
            // is reported after.
            let mut locked = locked.map_err(Persist::File)?;
            locked.write(&written).map_err(Persist::File)?;
            // The lock goes with `locked`.
        }
        Ok(written)
    }

    /// Drains the bus until every sender is gone, reporting each record made durable (or
    /// lost) to `progress`, which `EventBus::emit_durable` waits on.
    pub async fn run(self, mut rx: mpsc::UnboundedReceiver<Event>, progress: WriterProgress) {
        let mut backlog = Backlog {
            memory: VecDeque::new(),
            reported: 0,
            // A spill file left by an earlier run: its first chunk may be in the store.
            uncertain: self.spill_pending(),
            retry_at: None,
            store_error: None,
        };
        let mut open = true;
        while open || !backlog.memory.is_empty() {
            let idle = backlog.memory.is_empty() && !self.spill_pending();
            if idle {
                match rx.recv().await {
                    Some(event) => self.take(&mut backlog, event),
                    None => break,
                }
            } else if open {
                let pause = backlog
                    .retry_at
                    .map(|at| at.saturating_duration_since(Instant::now()))
                    .unwrap_or(Duration::ZERO)
                    .min(RETRY_EVERY);
                tokio::select! {
                    event = rx.recv() => match event {
                        Some(event) => self.take(&mut backlog, event),
                        None => open = false,
                    },
                    _ = tokio::time::sleep(pause) => {}
                }
            }
            while backlog.memory.len() < MEMORY_HARD_LIMIT {
                match rx.try_recv() {
                    Ok(event) => self.take(&mut backlog, event),
                    Err(_) => break,
                }
            }
            // While the store is away, what waited long enough is spilled before the next
            // attempt (which may itself wait for the store).
            self.spill_if_due(&mut backlog, &progress, false).await;
            let tried = self.catch_up(&mut backlog, &progress).await;
            if let Some(notify) = &self.written
                && tried
            {
                notify.notify_one();
            }
            let stopping = !open;
            self.spill_if_due(&mut backlog, &progress, stopping).await;
            if stopping && !backlog.memory.is_empty() {
                // Shutting down with records neither the store nor the spill file takes:
                // try a few more times, then say what is lost.
                if backlog.retry_at.is_some() {
                    tokio::time::sleep(RETRY_EVERY).await;
                }
                if self.give_up(&backlog) {
                    for (_, record) in &backlog.memory {
                        tracing::error!(id = record.id, name = %record.name, account = ?record.account, path = ?record.path, "unpersisted audit record");
                    }
                    break;
                }
            }
        }
    }

    fn give_up(&self, backlog: &Backlog) -> bool {
        backlog
            .memory
            .front()
            .is_some_and(|(at, _)| at.elapsed() > STORE_WAIT * 4)
    }

    fn take(&self, backlog: &mut Backlog, event: Event) {
        backlog
            .memory
            .push_back((Instant::now(), AuditRecord::unnumbered(&self.node, &event)));
    }

    fn spill_pending(&self) -> bool {
        self.spill.as_ref().is_some_and(|s| match s.pending() {
            Ok(pending) => pending,
            Err(e) => {
                // Nothing can be read from it: records go to the store directly (spilling
                // to it fails too, and says so).
                tracing::error!(file = %s.path().display(), error = %e, "cannot read the audit spill file");
                false
            }
        })
    }

    /// Writes what waits to the store, the spill file first: a few chunks, or until the
    /// store fails. Whether it tried.
    async fn catch_up(&self, backlog: &mut Backlog, progress: &WriterProgress) -> bool {
        if backlog.retry_at.is_some_and(|at| Instant::now() < at) {
            return false;
        }
        let mut tried = false;
        for _ in 0..CHUNKS_PER_TURN {
            let result = if self.spill_pending() {
                match self.write_spilled(backlog.uncertain).await {
                    Ok(()) => Ok(()),
                    Err(Some(e)) => Err(e),
                    // The spill file cannot be read: try again later, keep the order.
                    Err(None) => {
                        backlog.retry_at = Some(Instant::now() + RETRY_EVERY);
                        return tried;
                    }
                }
            } else if backlog.memory.is_empty() {
                break;
            } else {
                let count = backlog.memory.len().min(CHUNK);
                let records: Vec<AuditRecord> = backlog
                    .memory
                    .iter()
                    .take(count)
                    .map(|(_, r)| r.clone())
                    .collect();
                match self
                    .persist(&records, backlog.uncertain, Some(STORE_WAIT))
                    .await
                {
                    Ok(written) => {
                        self.deliver(&written).await;
                        backlog.memory.drain(..count);
                        let reported = backlog.reported.min(count);
                        backlog.reported -= reported;
                        progress.advance((count - reported) as u64);
                        Ok(())
                    }
                    Err(Persist::File(e)) => {
                        // In the store: durable. The copy's failure is reported.
                        tracing::error!(error = %e, count, "audit records are in the store but not in the JSON-lines file");
                        backlog.memory.drain(..count);
                        let reported = backlog.reported.min(count);
                        backlog.reported -= reported;
                        progress.advance((count - reported) as u64);
                        Ok(())
                    }
                    Err(Persist::Store(e)) => Err(e),
                }
            };
            tried = true;
            match result {
                Ok(()) => {
                    if backlog.retry_at.take().is_some() {
                        tracing::info!("audit records reach the store again");
                    }
                    backlog.uncertain = false;
                    backlog.store_error = None;
                    progress.set_trouble(None);
                }
                Err(e) => {
                    if backlog.retry_at.is_none() {
                        tracing::error!(error = %e, "audit records cannot reach the store; they wait in memory, then in the spill file");
                    }
                    backlog.store_error = Some(e.to_string());
                    backlog.uncertain = true;
                    backlog.retry_at = Some(Instant::now() + RETRY_EVERY);
                    return tried;
                }
            }
        }
        tried
    }

    /// Writes the spill file's first chunk to the store. `Err(None)`: the file could not
    /// be read.
    async fn write_spilled(&self, uncertain: bool) -> Result<(), Option<StoreFailed>> {
        let Some(spill) = self.spill.clone() else {
            return Ok(());
        };
        let reader = spill.clone();
        let chunk = match tokio::task::spawn_blocking(move || reader.front(CHUNK)).await {
            Ok(Ok(chunk)) => chunk,
            Ok(Err(e)) => {
                tracing::error!(file = %spill.path().display(), error = %e, "cannot read the audit spill file");
                return Err(None);
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read the audit spill file");
                return Err(None);
            }
        };
        match self
            .persist(&chunk.records, uncertain, Some(STORE_WAIT))
            .await
        {
            Ok(written) => self.deliver(&written).await,
            Err(Persist::File(e)) => {
                tracing::error!(error = %e, count = chunk.records.len(), "audit records are in the store but not in the JSON-lines file");
            }
            Err(Persist::Store(e)) => return Err(Some(e)),
        }
        let end = chunk.end;
        let marker = spill.clone();
        match tokio::task::spawn_blocking(move || marker.consumed(end)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                // The chunk would be read again: the next write checks the store first.
                tracing::error!(file = %spill.path().display(), error = %e, "cannot record progress in the audit spill file");
                Err(None)
            }
            Err(_) => Err(None),
        }
    }

    /// Moves records that waited too long in memory (or too many) to the spill file, all
    /// of them when `all`; reports them durable, or lost when the file fails too.
    async fn spill_if_due(&self, backlog: &mut Backlog, progress: &WriterProgress, all: bool) {
        let due = backlog.retry_at.is_some() || self.spill_pending();
        let Some((oldest, _)) = backlog.memory.front() else {
            return;
        };
        if !(due
            && (all || oldest.elapsed() >= MEMORY_WAIT || backlog.memory.len() >= MEMORY_RECORDS))
        {
            return;
        }
        let why = backlog
            .store_error
            .clone()
            .unwrap_or_else(|| "the store is catching up".to_owned());
        let Some(spill) = self.spill.clone() else {
            self.lose(backlog, progress, format!("{why}; no spill file"));
            return;
        };
        let records: Vec<AuditRecord> = backlog.memory.iter().map(|(_, r)| r.clone()).collect();
        let count = records.len();
        let writer = spill.clone();
        let result = tokio::task::spawn_blocking(move || writer.append(&records))
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r);
        match result {
            Ok(()) => {
                tracing::warn!(count, file = %spill.path().display(), "audit records spilled to the node's file until the store takes them");
                let reported = backlog.reported.min(count);
                backlog.memory.clear();
                backlog.reported = 0;
                progress.advance((count - reported) as u64);
                progress.set_trouble(None);
            }
            Err(e) => {
                tracing::error!(file = %spill.path().display(), error = %e, "cannot spill audit records either; file operations are refused until one works");
                self.lose(
                    backlog,
                    progress,
                    format!("{why}; the spill file {}: {e}", spill.path().display()),
                );
            }
        }
    }

    /// Neither the store nor the spill file takes records: the operations waiting for them
    /// are refused (the records stay in memory and are written when either works again).
    fn lose(&self, backlog: &mut Backlog, progress: &WriterProgress, why: String) {
        progress.set_trouble(Some(why));
        let fresh = backlog.memory.len() - backlog.reported;
        progress.lose(fresh as u64);
        backlog.reported = backlog.memory.len();
    }
}

/// Why [`AuditSink::persist`] failed.
enum Persist {
    /// The store did not take the records.
    Store(StoreFailed),
    /// The store took them; the JSON-lines copy did not.
    File(std::io::Error),
}

impl From<StoreFailed> for Persist {
    fn from(e: StoreFailed) -> Persist {
        Persist::Store(e)
    }
}

async fn bounded<T>(
    wait: Option<Duration>,
    operation: impl std::future::Future<Output = Result<T, wharf_store::StoreError>>,
) -> Result<T, Persist> {
    let result = match wait {
        Some(wait) => tokio::time::timeout(wait, operation)
            .await
            .map_err(|_| StoreFailed::Timeout(wait))?,
        None => operation.await,
    };
    Ok(result.map_err(StoreFailed::Store)?)
}

/// Every line of the JSON-lines copy, across its rotated segments, in trail order.
fn file_lines(path: &Path) -> Result<impl Iterator<Item = std::io::Result<String>>> {
    use std::io::BufRead;
    let mut readers = Vec::new();
    for segment in segments(path)? {
        readers.push(std::io::BufReader::new(std::fs::File::open(segment)?).lines());
    }
    Ok(readers.into_iter().flatten())
}

/// The hash of record `seq` of the node's chain in the JSON-lines copy, if the copy holds
/// it.
pub fn verify_file_upto(path: &Path, seq: i64) -> Result<Option<String>> {
    for line in file_lines(path)? {
        let record: wharf_store::AuditRecord = serde_json::from_str(&line?)?;
        if record.chain_seq() == seq {
            return Ok(Some(record.hash));
        }
    }
    Ok(None)
}

/// What a walk of the JSON-lines copy found. It holds one node's records, numbered by
/// their place in the node's chain.
pub struct FileWalk {
    /// The first record it holds (1, unless rotated segments were removed by retention).
    pub first: i64,
    /// That record's `prev`, to compare with the store's record before it.
    pub first_prev: String,
    /// The last record it holds (`first - 1` when empty).
    pub last: i64,
    /// That record's hash.
    pub last_hash: String,
}

/// Walks the JSON-lines copy (its rotated segments, then the file) in order: `Ok(walk)`
/// when every line parses, follows the one before and matches its hash; `Err((seq, why))`
/// names the first that does not. Segments removed by retention shorten the copy at its
/// start; the walk then starts at the first record kept.
pub fn verify_file(path: &Path) -> Result<Result<FileWalk, (i64, String)>> {
    let mut walk: Option<FileWalk> = None;
    for line in file_lines(path)? {
        let line = line?;
        let expected = walk.as_ref().map_or(1, |w| w.last + 1);
        let record: wharf_store::AuditRecord = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(e) => {
                return Ok(Err((
                    expected,
                    format!("the line after record {} does not parse: {e}", expected - 1),
                )));
            }
        };
        let seq = record.chain_seq();
        let w = match walk.as_mut() {
            None => {
                if seq > 1 && record.prev == wharf_store::GENESIS {
                    return Ok(Err((seq, "does not follow the previous record".into())));
                }
                if seq == 1 && record.prev != wharf_store::GENESIS {
                    return Ok(Err((1, "does not follow the previous record".into())));
                }
                walk.insert(FileWalk {
                    first: seq,
                    first_prev: record.prev.clone(),
                    last: seq - 1,
                    last_hash: record.prev.clone(),
                })
            }
            Some(w) => w,
        };
        let expected = w.last + 1;
        if seq != expected {
            return Ok(Err((
                expected,
                format!(
                    "the line for record {expected} holds record {} (missing or out of order)",
                    seq
                ),
            )));
        }
        if record.prev != w.last_hash {
            return Ok(Err((
                expected,
                "does not follow the previous record".to_owned(),
            )));
        }
        if wharf_store::chain_hash(&record) != record.hash {
            return Ok(Err((
                expected,
                "content does not match its hash".to_owned(),
            )));
        }
        w.last = seq;
        w.last_hash = record.hash;
    }
    Ok(Ok(walk.unwrap_or(FileWalk {
        first: 1,
        first_prev: wharf_store::GENESIS.to_owned(),
        last: 0,
        last_hash: wharf_store::GENESIS.to_owned(),
    })))
}
