//! The audit writer: numbers, chains and persists every event, and appends it to the
//! JSON-lines file. One writer per process; the store's write lock orders writers across
//! processes (the server and a CLI command).

use std::io::Write;
use std::path::{Path, PathBuf};

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
}

impl AuditSink {
    /// Persists `events` in order.
    pub async fn write(&self, events: &[Event]) -> Result<()> {
        let records = self.store.append_events(&self.node, events).await?;
        if let Some(path) = &self.jsonl {
            append_lines(path, &records)?;
        }
        Ok(())
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

fn append_lines(path: &Path, records: &[wharf_store::AuditRecord]) -> Result<()> {
    let mut text = String::new();
    for record in records {
        // serde_json escapes control characters, so one record is always one line.
        text.push_str(&serde_json::to_string(record)?);
        text.push('\n');
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    Ok(())
}
