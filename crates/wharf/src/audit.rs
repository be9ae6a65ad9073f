//! The audit writer: numbers, chains and persists every event, and appends it to the
//! JSON-lines file. One writer per process; the store's write lock orders writers across
//! processes (the server and a CLI command).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use tokio::sync::mpsc;
use wharf_core::Event;
use wharf_store::Store;

/// Where records go.
#[derive(Clone)]
pub struct AuditSink {
    /// The store.
    pub store: Store,
    /// Node name.
    pub node: String,
    /// JSON-lines file, if any.
    pub jsonl: Option<PathBuf>,
    /// Told after every batch (the event handlers' engine waits on it).
    pub written: Option<Arc<tokio::sync::Notify>>,
    /// Orders this process's writers (the bus's writer task, the handlers) so that they
    /// never wait for each other on the file lock, which blocks a thread.
    pub turn: Arc<tokio::sync::Mutex<()>>,
}

impl wharf_handlers::Recorder for AuditSink {
    async fn record(&self, events: Vec<Event>) -> std::result::Result<(), String> {
        self.write(&events).await.map_err(|e| format!("{e:#}"))
    }
}

impl AuditSink {
    /// Persists `events` in order. With a JSON-lines file, the file is locked around the
    /// store append and the file append, so when the server and a CLI command write at
    /// once the file still holds the records in chain order.
    pub async fn write(&self, events: &[Event]) -> Result<()> {
        let result = self.write_both(events).await;
        if let Some(notify) = &self.written {
            notify.notify_one();
        }
        result
    }

    async fn write_both(&self, events: &[Event]) -> Result<()> {
        let _turn = self.turn.lock().await;
        let Some(path) = &self.jsonl else {
            self.store.append_events(&self.node, events).await?;
            return Ok(());
        };
        // Another process (a CLI command) may hold the file lock for a moment: wait for it
        // on the blocking pool, not on a runtime thread.
        let path = path.clone();
        let opened = tokio::task::spawn_blocking(move || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|file| file.lock().map(|()| file))
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|opened| opened);
        // The store gets the records even when the file cannot be opened; the error is
        // reported after.
        let records = self.store.append_events(&self.node, events).await?;
        let mut file = opened?;
        append_lines(&mut file, &records)
        // The lock goes with the file.
    }

    /// Drains the bus until every sender is gone, in batches.
    pub async fn run(self, mut rx: mpsc::UnboundedReceiver<Event>) {
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
            batch.clear();
        }
    }
}

fn append_lines(file: &mut std::fs::File, records: &[wharf_store::AuditRecord]) -> Result<()> {
    let mut text = String::new();
    for record in records {
        // serde_json escapes control characters, so one record is always one line.
        text.push_str(&serde_json::to_string(record)?);
        text.push('\n');
    }
    file.write_all(text.as_bytes())?;
    Ok(())
}

/// The hash of record `seq` in the JSON-lines copy (line `seq`).
pub fn verify_file_upto(path: &Path, seq: i64) -> Result<Option<String>> {
    use std::io::BufRead;
    let file = std::fs::File::open(path)?;
    let index = usize::try_from(seq - 1).unwrap_or(usize::MAX);
    match std::io::BufReader::new(file).lines().nth(index) {
        Some(line) => {
            let record: wharf_store::AuditRecord = serde_json::from_str(&line?)?;
            Ok(Some(record.hash))
        }
        None => Ok(None),
    }
}

/// Walks the JSON-lines copy of the trail in order: `Ok((last_seq, last_hash))` when every
/// line parses, follows the one before and matches its hash; `Err((seq, why))` names the
/// first that does not (by its position: line n holds record n).
pub fn verify_file(path: &Path) -> Result<Result<(i64, String), (i64, String)>> {
    use std::io::BufRead;
    let file = std::fs::File::open(path)?;
    let mut prev = wharf_store::GENESIS.to_owned();
    let mut expected = 1i64;
    for line in std::io::BufReader::new(file).lines() {
        let line = line?;
        let record: wharf_store::AuditRecord = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(e) => {
                return Ok(Err((
                    expected,
                    format!("line {expected} does not parse: {e}"),
                )));
            }
        };
        if record.seq != expected {
            return Ok(Err((
                expected,
                format!(
                    "line {expected} holds record {} (missing or out of order)",
                    record.seq
                ),
            )));
        }
        if record.prev != prev {
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
        prev = record.hash;
        expected += 1;
    }
    Ok(Ok((expected - 1, prev)))
}
