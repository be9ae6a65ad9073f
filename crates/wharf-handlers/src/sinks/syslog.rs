//! Syslog (RFC 5424) over UDP, TCP (RFC 6587 octet counting) or a unix datagram socket.
//!
//! Each record is one message: `<PRI>1 TIME HOST wharf PID MSGID [meta sequenceId="SEQ"] JSON`,
//! where MSGID is the event's name, the structured data carries the record's `seq` in the
//! registered `meta` element, and the message is the record's JSON with its `hash`, so a
//! syslog server elsewhere holds a third copy of the chain. Failures get severity
//! `warning`, successes `info`. UDP datagrams are capped at 64 KiB (a longer record is cut);
//! TCP connects lazily and reconnects after a failure.

use std::path::PathBuf;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket, UnixDatagram};
use tokio::sync::Mutex;
use wharf_store::AuditRecord;

/// How long a TCP syslog server may take to accept a connection or a batch: the audit
/// writer waits for its sinks, so a stalled one must not stall it for long.
const TCP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Why a syslog URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyslogUrlError {
    /// `udp://` or `tcp://` without a port number after the host.
    #[error("{0:?}: give host:port, such as udp://127.0.0.1:514")]
    NoPort(String),
    /// Neither `udp://`, `tcp://` nor `unix:///`.
    #[error("{0:?}: use udp://HOST:PORT, tcp://HOST:PORT or unix:///dev/log")]
    Scheme(String),
}

/// Why a batch did not reach the syslog server.
#[derive(Debug, thiserror::Error)]
pub enum SyslogError {
    /// The local socket could not be made, connected, or written (UDP).
    #[error(transparent)]
    Socket(std::io::Error),
    /// The unix socket at this path did not take a message.
    #[error("{}: {error}", path.display())]
    Unix {
        /// The socket.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The TCP server did not accept a connection in time.
    #[error("{0}: no connection within 5 s")]
    ConnectTimeout(String),
    /// The TCP server refused or could not be reached.
    #[error("{addr}: {error}")]
    Connect {
        /// `host:port`.
        addr: String,
        /// Why.
        error: std::io::Error,
    },
    /// The TCP server dropped or stalled the connection twice.
    #[error("{0}: cannot deliver")]
    Undelivered(String),
}

/// Where syslog messages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyslogTarget {
    /// `udp://host:port`.
    Udp(String),
    /// `tcp://host:port`.
    Tcp(String),
    /// `unix:///dev/log`.
    Unix(PathBuf),
}

impl SyslogTarget {
    /// Parses `udp://HOST:PORT`, `tcp://HOST:PORT` or `unix:///PATH`.
    pub fn parse(url: &str) -> Result<SyslogTarget, SyslogUrlError> {
        let with_port = |rest: &str| {
            if rest
                .rsplit_once(':')
                .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            {
                Ok(rest.to_owned())
            } else {
                Err(SyslogUrlError::NoPort(url.to_owned()))
            }
        };
        if let Some(rest) = url.strip_prefix("udp://") {
            return with_port(rest).map(SyslogTarget::Udp);
        }
        if let Some(rest) = url.strip_prefix("tcp://") {
            return with_port(rest).map(SyslogTarget::Tcp);
        }
        if let Some(rest) = url.strip_prefix("unix://")
            && rest.starts_with('/')
        {
            return Ok(SyslogTarget::Unix(PathBuf::from(rest)));
        }
        Err(SyslogUrlError::Scheme(url.to_owned()))
    }
}

/// A syslog sink.
pub struct Syslog {
    target: SyslogTarget,
    facility: u8,
    host: String,
    tcp: Mutex<Option<TcpStream>>,
}

/// The RFC 5424 message for `record`.
pub fn format_rfc5424(record: &AuditRecord, facility: u8, host: &str) -> String {
    let severity = if record.outcome == "failure" { 4 } else { 6 };
    let printable = |s: &str, max: usize| -> String {
        let kept: String = s
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(max)
            .collect();
        if kept.is_empty() { "-".into() } else { kept }
    };
    let json = serde_json::to_string(record).unwrap_or_default();
    format!(
        "<{}>1 {} {} wharf {} {} [meta sequenceId=\"{}\"] {}",
        u16::from(facility) * 8 + severity,
        record.time,
        printable(host, 255),
        std::process::id(),
        printable(&record.name, 32),
        record.seq,
        json
    )
}

impl Syslog {
    /// A sink sending to `target` with `facility` (16 is `local0`), naming `host`.
    pub fn new(target: SyslogTarget, facility: u8, host: String) -> Syslog {
        Syslog {
            target,
            facility,
            host,
            tcp: Mutex::new(None),
        }
    }

    /// Sends one message per record.
    pub async fn send(&self, records: &[&AuditRecord]) -> Result<(), SyslogError> {
        let messages: Vec<String> = records
            .iter()
            .map(|r| format_rfc5424(r, self.facility, &self.host))
            .collect();
        match &self.target {
            SyslogTarget::Udp(addr) => {
                let socket = UdpSocket::bind(if addr.starts_with('[') {
                    "[::]:0"
                } else {
                    "0.0.0.0:0"
                })
                .await
                .map_err(SyslogError::Socket)?;
                socket.connect(addr).await.map_err(SyslogError::Socket)?;
                for m in &messages {
                    let bytes = &m.as_bytes()[..m.len().min(65_000)];
                    socket.send(bytes).await.map_err(SyslogError::Socket)?;
                }
                Ok(())
            }
            SyslogTarget::Unix(path) => {
                let socket = UnixDatagram::unbound().map_err(SyslogError::Socket)?;
                for m in &messages {
                    let bytes = &m.as_bytes()[..m.len().min(65_000)];
                    socket
                        .send_to(bytes, path)
                        .await
                        .map_err(|error| SyslogError::Unix {
                            path: path.clone(),
                            error,
                        })?;
                }
                Ok(())
            }
            SyslogTarget::Tcp(addr) => {
                let mut framed = String::new();
                for m in &messages {
                    framed.push_str(&format!("{} {m}", m.len()));
                }
                let mut held = self.tcp.lock().await;
                for _ in 0..2 {
                    if held.is_none() {
                        let connect = TcpStream::connect(addr.as_str());
                        *held = Some(
                            tokio::time::timeout(TCP_TIMEOUT, connect)
                                .await
                                .map_err(|_| SyslogError::ConnectTimeout(addr.clone()))?
                                .map_err(|error| SyslogError::Connect {
                                    addr: addr.clone(),
                                    error,
                                })?,
                        );
                    }
                    if let Some(stream) = held.as_mut() {
                        let write = stream.write_all(framed.as_bytes());
                        match tokio::time::timeout(TCP_TIMEOUT, write).await {
                            Ok(Ok(())) => return Ok(()),
                            // The server dropped or stalled the connection: connect again once.
                            _ => *held = None,
                        }
                    }
                }
                Err(SyslogError::Undelivered(addr.clone()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc5424() {
        let record: AuditRecord = serde_json::from_value(serde_json::json!({
            "seq": 42, "id": 20011, "name": "login.failed",
            "time": "2026-01-01T00:00:00.000000Z", "node": "n", "outcome": "failure",
            "prev": "0", "hash": "ab",
        }))
        .unwrap();
        let line = format_rfc5424(&record, 16, "wharf-1");
        let pid = std::process::id();
        assert!(line.starts_with(&format!(
            "<132>1 2026-01-01T00:00:00.000000Z wharf-1 wharf {pid} login.failed [meta sequenceId=\"42\"] {{"
        )), "{line}");
    }

    #[test]
    fn parses_targets_and_says_what_to_write_instead() {
        assert_eq!(
            SyslogTarget::parse("udp://[::1]:514"),
            Ok(SyslogTarget::Udp("[::1]:514".into()))
        );
        assert_eq!(
            SyslogTarget::parse("unix:///dev/log"),
            Ok(SyslogTarget::Unix("/dev/log".into()))
        );
        let no_port = SyslogTarget::parse("tcp://localhost").unwrap_err();
        assert_eq!(no_port, SyslogUrlError::NoPort("tcp://localhost".into()));
        assert_eq!(
            no_port.to_string(),
            "\"tcp://localhost\": give host:port, such as udp://127.0.0.1:514"
        );
        let scheme = SyslogTarget::parse("unix://dev/log").unwrap_err();
        assert_eq!(
            scheme.to_string(),
            "\"unix://dev/log\": use udp://HOST:PORT, tcp://HOST:PORT or unix:///dev/log"
        );
    }

    #[tokio::test]
    async fn a_missing_unix_socket_is_named_in_the_error() {
        let path = std::env::temp_dir().join(format!("wharf-no-syslog-{}", std::process::id()));
        let sink = Syslog::new(SyslogTarget::Unix(path.clone()), 16, "h".into());
        let record: AuditRecord = serde_json::from_value(serde_json::json!({
            "seq": 1, "id": 20011, "name": "login.failed",
            "time": "2026-01-01T00:00:00.000000Z", "node": "n", "outcome": "failure",
            "prev": "0", "hash": "ab",
        }))
        .unwrap();
        let error = sink.send(&[&record]).await.unwrap_err();
        assert!(matches!(error, SyslogError::Unix { .. }), "{error:?}");
        assert!(
            error
                .to_string()
                .starts_with(&format!("{}: ", path.display())),
            "{error}"
        );
    }
}
