//! The audit writer: numbers, chains and persists every event, and appends it to the
//! JSON-lines file. One writer per process; the store's write lock orders writers across
//! processes (the server and a CLI command).

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use tokio::sync::mpsc;
use wharf_core::{Event, WriterProgress};
use wharf_handlers::RecordError;
use wharf_handlers::sinks::{JsonLines, Sink, segments};
use wharf_store::Store;

/// Where records go.
#[derive(Clone)]
pub struct AuditSink {
    /// The store.
    pub store: Store,
    /// Node name.
    pub node: String,
    /// The JSON-lines copy of the whole trail, if any.
    pub jsonl: Option<JsonLines>,
    /// Further copies, each with its filter (`[[audit.sink]]`).
    pub sinks: Arc<Vec<Sink>>,
    /// Told after every batch (the event handlers' engine waits on it).
    pub written: Option<Arc<tokio::sync::Notify>>,
    /// Orders this process's writers (the bus's writer task, the handlers) so that they
    /// never wait for each other on the file lock, which blocks a thread.
    pub turn: Arc<tokio::sync::Mutex<()>>,
}

impl wharf_handlers::Recorder for AuditSink {
    async fn record(&self, events: Vec<Event>) -> Result<(), RecordError> {
        self.write(&events).await
    }
}

impl AuditSink {
    /// Persists `events` in order, then hands them to the other sinks. With a JSON-lines
    /// copy, the file is locked around the store append and the file append, so when the
    /// server and a CLI command write at once the file still holds the records in chain
    /// order.
    pub async fn write(&self, events: &[Event]) -> Result<(), RecordError> {
        let result = self.write_copies(events).await;
        if let Some(notify) = &self.written {
            notify.notify_one();
        }
        let records = result?;
        for sink in self.sinks.iter() {
            // Another copy failing never fails the trail: it is reported, and the
            // store and the JSON-lines copy still hold the records.
            if let Err(e) = sink.deliver(&records).await {
                tracing::warn!(sink = %sink.name, error = %e, count = records.len(), "audit sink did not take records");
            }
        }
        Ok(())
    }

    async fn write_copies(
        &self,
        events: &[Event],
    ) -> Result<Vec<wharf_store::AuditRecord>, RecordError> {
        let _turn = self.turn.lock().await;
        let Some(jsonl) = &self.jsonl else {
            return Ok(self.store.append_events(&self.node, events).await?);
        };
        // Another process (a CLI command) may hold the file lock for a moment: wait for it
        // on the blocking pool, not on a runtime thread.
        let file = jsonl.clone();
        let locked = tokio::task::spawn_blocking(move || file.lock())
            .await
            .map_err(std::io::Error::other)
            .and_then(|locked| locked);
        // The store gets the records even when the file cannot be opened; the error is
        // reported after.
        let records = self.store.append_events(&self.node, events).await?;
        let mut locked = locked?;
        locked.write(&records)?;
        // The lock goes with `locked`.
        Ok(records)
    }

    /// Drains the bus until every sender is gone, in batches, reporting each batch dealt
    /// with to `progress` (which durable emits wait on).
    pub async fn run(self, mut rx: mpsc::UnboundedReceiver<Event>, progress: WriterProgress) {
        let mut batch = Vec::with_capacity(256);
        while let Some(first) = rx.recv().await {
            batch.push(first);
            while batch.len() < 256 {
                match rx.try_recv() {
                    Ok(event) => batch.push(event),
                    Err(_) => break,
                }
            }
            if let Err(e) = self.write(&batch).await {
                // The trail must not silently lose records: say so loudly, keep serving.
                tracing::error!(error = %e, count = batch.len(), "cannot persist audit records");
                for event in &batch {
                    tracing::error!(id = event.kind.id(), name = event.kind.name(), account = ?event.account, path = ?event.path, "unpersisted audit record");
                }
            }
            progress.advance(batch.len() as u64);
            batch.clear();
        }
    }
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

/// The hash of record `seq` in the JSON-lines copy, if the copy holds it.
pub fn verify_file_upto(path: &Path, seq: i64) -> Result<Option<String>> {
    for line in file_lines(path)? {
        let record: wharf_store::AuditRecord = serde_json::from_str(&line?)?;
        if record.seq == seq {
            return Ok(Some(record.hash));
        }
    }
    Ok(None)
}

/// What a walk of the JSON-lines copy found.
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
        let w = match walk.as_mut() {
            None => {
                if record.seq > 1 && record.prev == wharf_store::GENESIS {
                    return Ok(Err((
                        record.seq,
                        "does not follow the previous record".into(),
                    )));
                }
                if record.seq == 1 && record.prev != wharf_store::GENESIS {
                    return Ok(Err((1, "does not follow the previous record".into())));
                }
                walk.insert(FileWalk {
                    first: record.seq,
                    first_prev: record.prev.clone(),
                    last: record.seq - 1,
                    last_hash: record.prev.clone(),
                })
            }
            Some(w) => w,
        };
        let expected = w.last + 1;
        if record.seq != expected {
            return Ok(Err((
                expected,
                format!(
                    "the line for record {expected} holds record {} (missing or out of order)",
                    record.seq
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
        w.last = record.seq;
        w.last_hash = record.hash;
    }
    Ok(Ok(walk.unwrap_or(FileWalk {
        first: 1,
        first_prev: wharf_store::GENESIS.to_owned(),
        last: 0,
        last_hash: wharf_store::GENESIS.to_owned(),
    })))
}
