//! Audit sinks: where copies of the audit trail go besides the store.
//!
//! The store always holds the trail. The main JSON-lines file (`[audit] jsonl`) is the second
//! complete copy that `wharf audit verify` compares with it; further sinks (`[[audit.sink]]`)
//! each take the records their filter lets through: another JSON-lines file, syslog
//! (RFC 5424 over UDP, TCP or a unix socket) or standard output. A sink that cannot be
//! reached never holds up or loses the store's copy: its failure is logged and the next
//! batch tries again.

mod filter;
mod jsonl;
mod syslog;

pub use filter::{FilterError, SinkFilter};
pub use jsonl::{JsonLines, Rotation, segments};
pub use syslog::{Syslog, SyslogError, SyslogTarget, SyslogUrlError, format_rfc5424};

use std::io::Write;

use wharf_store::AuditRecord;

/// Why a sink did not take a batch.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The JSON-lines file could not be written.
    #[error(transparent)]
    File(std::io::Error),
    /// The syslog server did not get the messages.
    #[error(transparent)]
    Syslog(#[from] SyslogError),
    /// A record did not serialise (never expected: records are plain strings and numbers).
    #[error(transparent)]
    Json(serde_json::Error),
    /// Standard output is closed or full.
    #[error(transparent)]
    Stdout(std::io::Error),
}

/// One configured sink with its filter.
pub struct Sink {
    /// Its name in logs.
    pub name: String,
    /// Which records it takes.
    pub filter: SinkFilter,
    /// Where they go.
    pub target: Target,
}

/// Where a sink's records go.
pub enum Target {
    /// A JSON-lines file.
    Jsonl(JsonLines),
    /// Syslog.
    Syslog(Syslog),
    /// Standard output, one JSON object per line.
    Stdout,
}

impl Sink {
    /// Delivers the records the filter lets through.
    pub async fn deliver(&self, records: &[AuditRecord]) -> Result<(), SinkError> {
        let chosen: Vec<&AuditRecord> = records.iter().filter(|r| self.filter.matches(r)).collect();
        if chosen.is_empty() {
            return Ok(());
        }
        match &self.target {
            Target::Jsonl(file) => file.append(&chosen).await.map_err(SinkError::File),
            Target::Syslog(syslog) => Ok(syslog.send(&chosen).await?),
            Target::Stdout => {
                let mut text = String::new();
                for record in chosen {
                    text.push_str(&serde_json::to_string(record).map_err(SinkError::Json)?);
                    text.push('\n');
                }
                let mut out = std::io::stdout().lock();
                out.write_all(text.as_bytes())
                    .and_then(|()| out.flush())
                    .map_err(SinkError::Stdout)
            }
        }
    }
}
