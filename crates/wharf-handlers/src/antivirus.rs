//! `antivirus`: a file streamed to ClamAV's daemon (`clamd`, its `INSTREAM` command over a
//! unix or TCP socket) through the handler's descriptor, and what its answer means.
//!
//! An infected file is quarantined or removed, with the signature's name in the event. A
//! clean one is answered with `antivirus.clean`, which is what dispatch should follow: a
//! file is held back from dispatch until it is scanned. When clamd cannot be reached (or
//! cannot scan the file), the job fails and is retried (`unreachable = "hold"`, the
//! default: fail closed), or the file goes on unscanned with `antivirus.unscanned`
//! (`unreachable = "pass"`). The file must be the one its event names, and unchanged
//! while it was read, before anything is done to it.

use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use wharf_core::EventKind;

use crate::ActionError;
use crate::actions::{Job, Left, Quarantine, Step, blocking};
use crate::files;
use crate::subject::Held;

/// Where clamd listens.
#[derive(Debug, Clone)]
pub enum Clamd {
    /// A unix socket (`LocalSocket` in clamd.conf).
    Unix(PathBuf),
    /// `host:port` (`TCPSocket`, `TCPAddr`).
    Tcp(String),
}

impl std::fmt::Display for Clamd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Clamd::Unix(path) => write!(f, "unix:{}", path.display()),
            Clamd::Tcp(addr) => write!(f, "tcp:{addr}"),
        }
    }
}

/// What an infected file comes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenInfected {
    /// Quarantined (the default).
    Quarantine,
    /// Removed.
    Delete,
}

/// What happens while the scanner cannot scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenUnreachable {
    /// The job is retried; the file waits (the default: fail closed).
    Hold,
    /// The file goes on, with `antivirus.unscanned`.
    Pass,
}

/// `antivirus`.
pub struct AntivirusAction {
    /// The daemon.
    pub clamd: Clamd,
    /// What an infected file comes to.
    pub infected: WhenInfected,
    /// What happens while the scanner cannot scan.
    pub unreachable: WhenUnreachable,
    /// The quarantine folder.
    pub quarantine: PathBuf,
}

/// A chunk of `INSTREAM`; clamd's own limit (`StreamMaxLength`) bounds the whole.
const CHUNK: usize = 64 * 1024;
/// clamd's answer is a line; anything longer is not one.
const MAX_REPLY: usize = 4096;

/// clamd's answer.
enum Answer {
    Clean,
    Infected(String),
}

/// Why a scan did not happen.
struct NotScanned {
    reason: String,
    /// clamd answered, and refused this file (a size limit, a file it cannot read): trying
    /// again gives the same answer, and passing it would let a padded file skip the scan.
    refused: bool,
}

/// A connection to clamd whose every read and write ends by one deadline.
enum Conn {
    Unix(std::os::unix::net::UnixStream),
    Tcp(std::net::TcpStream),
}

impl Conn {
    fn connect(clamd: &Clamd, deadline: Instant) -> std::io::Result<Conn> {
        Ok(match clamd {
            Clamd::Unix(path) => Conn::Unix(std::os::unix::net::UnixStream::connect(path)?),
            Clamd::Tcp(addr) => {
                let mut last = None;
                for a in std::net::ToSocketAddrs::to_socket_addrs(addr.as_str())? {
                    match std::net::TcpStream::connect_timeout(&a, left(deadline)?) {
                        Ok(s) => return Ok(Conn::Tcp(s)),
                        Err(e) => last = Some(e),
                    }
                }
                return Err(last
                    .unwrap_or_else(|| std::io::Error::other("the address resolves to nothing")));
            }
        })
    }

    /// Sets the time the next operation may take: what is left until `deadline`.
    fn until(&mut self, deadline: Instant) -> std::io::Result<&mut Conn> {
        let wait = Some(left(deadline)?);
        match self {
            Conn::Unix(s) => {
                s.set_read_timeout(wait)?;
                s.set_write_timeout(wait)?;
            }
            Conn::Tcp(s) => {
                s.set_read_timeout(wait)?;
                s.set_write_timeout(wait)?;
            }
        }
        Ok(self)
    }

    fn write_all(&mut self, data: &[u8], deadline: Instant) -> std::io::Result<()> {
        match self.until(deadline)? {
            Conn::Unix(s) => s.write_all(data),
            Conn::Tcp(s) => s.write_all(data),
        }
    }

    fn read(&mut self, buf: &mut [u8], deadline: Instant) -> std::io::Result<usize> {
        match self.until(deadline)? {
            Conn::Unix(s) => s.read(buf),
            Conn::Tcp(s) => s.read(buf),
        }
    }
}

fn left(deadline: Instant) -> std::io::Result<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no answer within the handler's timeout",
            )
        })
}

/// A signature name as it may be shown: no control or direction-changing characters.
fn printable(name: &str) -> String {
    name.chars()
        .filter(|c| {
            !c.is_control()
                && !matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
        .take(200)
        .collect()
}

/// Streams the file to clamd and reads its answer, all within `timeout`.
fn scan(clamd: &Clamd, held: &Held, timeout: Duration) -> Result<Answer, NotScanned> {
    let deadline = Instant::now() + timeout;
    let unreachable = |e: std::io::Error| NotScanned {
        reason: format!("clamd at {clamd} cannot be reached: {e}"),
        refused: false,
    };
    let mut conn = Conn::connect(clamd, deadline).map_err(unreachable)?;
    let mut sent = conn.write_all(b"zINSTREAM\0", deadline);
    let mut buffer = vec![0u8; CHUNK + 4];
    let mut offset = 0u64;
    let mut whole = false;
    while sent.is_ok() {
        let n = held
            .file
            .read_at(&mut buffer[4..], offset)
            .map_err(|e| NotScanned {
                reason: format!("cannot read the file: {e}"),
                refused: false,
            })?;
        let len = u32::try_from(n).unwrap_or(0);
        buffer[..4].copy_from_slice(&len.to_be_bytes());
        sent = conn.write_all(&buffer[..4 + n], deadline);
        if n == 0 {
            whole = sent.is_ok();
            break;
        }
        offset += n as u64;
    }
    // clamd may stop reading early (a size limit) and say why: read its answer either way.
    let mut reply = Vec::new();
    let mut read = Ok(());
    while reply.len() < MAX_REPLY && !reply.ends_with(b"\0") {
        let mut piece = [0u8; 512];
        match conn.read(&mut piece, deadline) {
            Ok(0) => break,
            Ok(n) => reply.extend_from_slice(&piece[..n]),
            Err(e) => {
                read = Err(e);
                break;
            }
        }
    }
    if reply.is_empty() || (read.is_err() && !reply.ends_with(b"\0")) {
        return Err(match (sent, read) {
            (Err(e), _) | (_, Err(e)) => unreachable(e),
            _ => NotScanned {
                reason: format!("clamd at {clamd} closed the connection without an answer"),
                refused: false,
            },
        });
    }
    let text = String::from_utf8_lossy(&reply);
    let line = text.trim_end_matches(['\0', '\n']).trim();
    let body = line.strip_prefix("stream:").unwrap_or(line).trim();
    if body == "OK" {
        // Clean only for what clamd was given whole.
        return if whole {
            Ok(Answer::Clean)
        } else {
            Err(NotScanned {
                reason: format!("clamd at {clamd} answered OK before it had the whole file"),
                refused: true,
            })
        };
    }
    if let Some(name) = body.strip_suffix(" FOUND") {
        return Ok(Answer::Infected(printable(name)));
    }
    Err(NotScanned {
        reason: format!("clamd could not scan the file: {}", printable(body)),
        refused: true,
    })
}

enum Verdict {
    Clean(Left),
    Infected {
        signature: String,
        left: Option<Left>,
    },
    Unscanned {
        reason: String,
        left: Left,
    },
    Refused {
        reason: String,
        left: Left,
    },
    WasQuarantined(Left),
}

/// Runs one attempt of an antivirus scan.
pub(crate) async fn antivirus(
    job: &Job<'_>,
    action: &AntivirusAction,
    timeout: Duration,
) -> Result<Step, ActionError> {
    let subject = job.subject()?;
    let record = job.record.clone();
    let q = Quarantine::new(job, &action.quarantine, "");
    let (clamd, infected, unreachable) =
        (action.clamd.clone(), action.infected, action.unreachable);
    let (q, verdict) = blocking(move || {
        let Some(held) = subject.open()? else {
            if let Some(left) = q.done_before(&subject)? {
                return Ok((q, Verdict::WasQuarantined(left)));
            }
            return Err(subject.gone());
        };
        held.check(&record, &subject.path, true)?;
        let here = Left {
            file: subject.file.clone(),
            root: subject.root.clone(),
            id: Some(held.id),
        };
        let answer = scan(&clamd, &held, timeout);
        held.unchanged(&subject.path)?;
        held.still_named(&subject.path)?;
        match answer {
            Ok(Answer::Clean) => Ok((q, Verdict::Clean(here))),
            Ok(Answer::Infected(signature)) => {
                let reason = format!("infected: {signature}");
                match infected {
                    WhenInfected::Quarantine => {
                        let q = Quarantine { reason, ..q };
                        let left = q.held(&subject, &held, &[])?;
                        Ok((
                            q,
                            Verdict::Infected {
                                signature,
                                left: Some(left),
                            },
                        ))
                    }
                    WhenInfected::Delete => {
                        files::remove_file(&held, &subject.path)?;
                        Ok((
                            q,
                            Verdict::Infected {
                                signature,
                                left: None,
                            },
                        ))
                    }
                }
            }
            Err(not) if not.refused => {
                // Whatever `unreachable` says: this file's scan would fail again.
                let q = Quarantine {
                    reason: format!("not scanned: {}", not.reason),
                    ..q
                };
                let left = q.held(&subject, &held, &[])?;
                Ok((
                    q,
                    Verdict::Refused {
                        reason: not.reason,
                        left,
                    },
                ))
            }
            Err(not) => match unreachable {
                WhenUnreachable::Hold => Err(ActionError::retry(format!(
                    "{}; the file waits for its scan",
                    not.reason
                ))),
                WhenUnreachable::Pass => Ok((
                    q,
                    Verdict::Unscanned {
                        reason: not.reason,
                        left: here,
                    },
                )),
            },
        }
    })
    .await?;
    let scanner = action.clamd.to_string();
    Ok(Step::Done(match verdict {
        Verdict::Clean(left) => vec![
            job.event_at(EventKind::AntivirusClean, &left)
                .attr("scanner", scanner),
        ],
        Verdict::Unscanned { reason, left } => vec![
            job.event_at(EventKind::AntivirusUnscanned, &left)
                .attr("scanner", scanner)
                .message(format!("{reason}; passed unscanned as configured")),
        ],
        Verdict::Refused { reason, left } => vec![
            job.event(EventKind::AntivirusRefused)
                .attr("scanner", scanner)
                .attr("quarantine", left.file.to_string_lossy())
                .failed(reason),
            q.event(job, &left),
        ],
        Verdict::WasQuarantined(left) => vec![q.event(job, &left)],
        Verdict::Infected { signature, left } => {
            let found = job
                .event(EventKind::AntivirusInfected)
                .attr("signature", signature.as_str())
                .attr("scanner", scanner)
                .failed(format!("infected: {signature}"));
            match left {
                Some(left) => vec![
                    found.attr("quarantine", left.file.to_string_lossy()),
                    q.event(job, &left),
                ],
                None => vec![
                    found,
                    job.event(EventKind::FileRemoved)
                        .message(format!("removed: infected ({signature})")),
                ],
            }
        }
    }))
}
