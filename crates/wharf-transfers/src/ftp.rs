//! An FTP server as a location, over TLS (explicit `AUTH TLS`, or implicit from the first
//! byte) or, only when a location asks for it by name, in the clear: suppaftp's client.
//!
//! Data connections are passive (`EPSV`, which IPv6 needs and IPv4 servers take too),
//! protected (`PROT P`) and binary. The client resumes the control connection's TLS session
//! on data connections, as servers that require it (vsftpd's `require_ssl_reuse`) insist.
//! Listings use `MLSD` where the server offers it, `LIST` otherwise; a digest is asked by
//! `HASH` (SHA-256) where the server offers it.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use suppaftp::list::{File as Listed, ListParser};
use suppaftp::tokio::{
    AsyncRustlsConnector, AsyncRustlsFtpStream, AsyncRustlsStream, TransferStream,
};
use suppaftp::types::FileType;
use suppaftp::{FtpError, Mode, Status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Mutex;

use crate::endpoint::{Download, Endpoint, EndpointError, Entry, Failure, Item, Upload};
use crate::spec::{FtpSecurity, Location, LocationKind};

/// A connected, logged-in FTP server.
pub struct FtpEndpoint {
    control: Arc<Mutex<AsyncRustlsFtpStream>>,
    mlsd: bool,
    hash: bool,
}

fn failed(e: FtpError) -> EndpointError {
    match &e {
        FtpError::UnexpectedResponse(response) => {
            let text = String::from_utf8_lossy(&response.body).trim().to_owned();
            let kind = match response.status {
                Status::FileUnavailable => Failure::Missing,
                Status::NotLoggedIn | Status::ExceededStorage | Status::BadFilename => {
                    Failure::Permanent
                }
                _ => Failure::Retry,
            };
            EndpointError::new(kind, format!("the server answered: {text}"))
        }
        FtpError::ConnectionError(io) => EndpointError::retry(format!("FTP connection: {io}")),
        FtpError::SecureError(why) => EndpointError::location(format!("TLS: {why}")),
        other => EndpointError::retry(format!("FTP: {other}")),
    }
}

fn connect_failed(e: FtpError) -> EndpointError {
    let mut e = failed(e);
    e.kind = Failure::Location;
    e
}

fn is_missing(e: &FtpError) -> bool {
    matches!(e, FtpError::UnexpectedResponse(r) if r.status == Status::FileUnavailable)
}

fn mtime_us(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| {
            i64::try_from(d.as_secs())
                .unwrap_or(i64::MAX)
                .saturating_mul(1_000_000)
        })
        .unwrap_or(0)
}

/// The host as TLS names it (IPv6 literals without brackets).
fn tls_name(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned()
}

impl FtpEndpoint {
    /// Connects to `location` (an FTP one), secures it as configured and logs in.
    pub async fn connect(location: &Location) -> Result<FtpEndpoint, EndpointError> {
        let LocationKind::Ftp {
            host,
            port,
            username,
            password,
            security,
        } = &location.kind
        else {
            return Err(EndpointError::new(
                Failure::Permanent,
                "not an FTP location",
            ));
        };
        let mut stream = match security {
            FtpSecurity::Implicit(trust) => {
                let connector = AsyncRustlsConnector::from(tokio_rustls::TlsConnector::from(
                    trust.client_config()?,
                ));
                let address = crate::sftp::resolve(host, *port).await?;
                AsyncRustlsFtpStream::connect_secure_implicit(address, connector, &tls_name(host))
                    .await
                    .map_err(connect_failed)?
            }
            FtpSecurity::Explicit(trust) => {
                let tcp = crate::sftp::tcp(location, host, *port).await?;
                let plain = AsyncRustlsFtpStream::connect_with_stream(tcp)
                    .await
                    .map_err(connect_failed)?;
                let connector = AsyncRustlsConnector::from(tokio_rustls::TlsConnector::from(
                    trust.client_config()?,
                ));
                plain
                    .into_secure(connector, &tls_name(host))
                    .await
                    .map_err(connect_failed)?
            }
            FtpSecurity::Plain => {
                let tcp = crate::sftp::tcp(location, host, *port).await?;
                AsyncRustlsFtpStream::connect_with_stream(tcp)
                    .await
                    .map_err(connect_failed)?
            }
        };
        stream.set_mode(Mode::ExtendedPassive);
        if let Err(e) = stream.login(username.as_str(), password.as_str()).await {
            return Err(match e {
                FtpError::UnexpectedResponse(_) => {
                    EndpointError::location(format!("the server refused the login of {username:?}"))
                }
                other => connect_failed(other),
            });
        }
        stream
            .transfer_type(FileType::Binary)
            .await
            .map_err(connect_failed)?;
        let features = stream.feat().await.unwrap_or_default();
        let has = |name: &str| features.keys().any(|k| k.eq_ignore_ascii_case(name));
        let hash = features
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("HASH"))
            .and_then(|(_, v)| v.as_deref())
            .is_some_and(|v| v.to_ascii_uppercase().contains("SHA-256"));
        if hash {
            // The server's current algorithm may be another one.
            let _ = stream
                .custom_command("OPTS HASH SHA-256", &[Status::CommandOk])
                .await;
        }
        Ok(FtpEndpoint {
            mlsd: has("MLSD") || has("MLST"),
            hash,
            control: Arc::new(Mutex::new(stream)),
        })
    }

    async fn entries(&self, folder: &str, cap: usize) -> Result<Vec<Listed>, EndpointError> {
        let command = if self.mlsd { "MLSD" } else { "LIST" };
        let lines = self.lines(&format!("{command} {folder}"), cap).await?;
        Ok(lines
            .iter()
            .filter_map(|line| {
                if self.mlsd {
                    ListParser::parse_mlsd(line).ok()
                } else {
                    line.parse::<Listed>().ok()
                }
            })
            .collect())
    }

    /// The lines a listing command's data connection carries, at most `cap` of them, each
    /// at most [`MAX_LINE`] bytes, [`MAX_LISTING`] bytes in all: a server's listing costs
    /// no more, however long it goes on.
    async fn lines(&self, command: &str, cap: usize) -> Result<Vec<String>, EndpointError> {
        let mut control = self.control.lock().await;
        let (_, mut stream) = control
            .custom_data_command(command, &[Status::AboutToSend, Status::AlreadyOpen])
            .await
            .map_err(failed)?;
        let mut lines = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        let mut total = 0usize;
        let mut chunk = vec![0u8; 64 * 1024];
        let outcome = loop {
            let n = match stream.read(&mut chunk).await {
                Ok(0) => break Ok(true),
                Ok(n) => n,
                Err(e) => break Err(EndpointError::retry(format!("FTP listing: {e}"))),
            };
            total += n;
            pending.extend_from_slice(&chunk[..n]);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                let text = String::from_utf8_lossy(&line);
                lines.push(text.trim_end_matches(['\r', '\n']).to_owned());
            }
            if pending.len() > MAX_LINE {
                break Err(EndpointError::retry(format!(
                    "a listing line longer than {MAX_LINE} bytes"
                )));
            }
            if lines.len() >= cap || total > MAX_LISTING {
                break Ok(false);
            }
        };
        let whole = match outcome {
            Ok(whole) => whole,
            Err(e) => {
                let _ = control.abort(stream).await;
                return Err(e);
            }
        };
        if whole {
            stream.finish().await.map_err(failed)?;
        } else {
            // Enough read: the server is told to stop sending the rest.
            let _ = control.abort(stream).await;
            if lines.len() < cap {
                return Err(EndpointError::retry(format!(
                    "a listing longer than {MAX_LISTING} bytes"
                )));
            }
            lines.truncate(cap);
        }
        Ok(lines)
    }
}

/// Longest listing line read.
const MAX_LINE: usize = 8 * 1024;

/// Most bytes one listing reads.
const MAX_LISTING: usize = 64 * 1024 * 1024;

#[async_trait]
impl Endpoint for FtpEndpoint {
    async fn read_folder(&self, folder: &str, cap: usize) -> Result<Vec<Item>, EndpointError> {
        let mut items: Vec<Item> = self
            .entries(folder, cap)
            .await?
            .into_iter()
            .filter(|e| e.is_file() || e.is_directory())
            .map(|e| Item {
                name: e.name().to_owned(),
                folder: e.is_directory(),
                size: e.size() as u64,
                mtime_us: mtime_us(e.modified()),
            })
            .collect();
        items.truncate(cap);
        Ok(items)
    }

    async fn stat(&self, path: &str) -> Result<Option<Entry>, EndpointError> {
        // Asked the way listings ask (MLST or LIST of the one path), so the time agrees
        // with the listing's to the same precision (LIST shows minutes, or days for old
        // files): a file is "the same version" when both agree.
        let mut control = self.control.lock().await;
        let found = if self.mlsd {
            match control.mlst(Some(path)).await {
                Ok(line) => ListParser::parse_mlst(&line).ok(),
                Err(e) if is_missing(&e) => None,
                Err(e) => return Err(failed(e)),
            }
        } else {
            drop(control);
            match self.lines(&format!("LIST {path}"), 16).await {
                Ok(lines) => lines
                    .iter()
                    .filter_map(|l| l.parse::<Listed>().ok())
                    .find(|f| f.name() == crate::file_name(path) || f.name() == path),
                Err(e) if e.kind == Failure::Missing => None,
                Err(e) => return Err(e),
            }
        };
        Ok(found.filter(|f| f.is_file()).map(|f| Entry {
            path: path.to_owned(),
            size: f.size() as u64,
            mtime_us: mtime_us(f.modified()),
        }))
    }

    async fn open_read(&self, path: &str) -> Result<Box<dyn Download>, EndpointError> {
        let stream = self
            .control
            .lock()
            .await
            .retr_as_stream(path)
            .await
            .map_err(failed)?;
        Ok(Box::new(FtpRead {
            stream: Some(stream),
        }))
    }

    async fn create(&self, path: &str) -> Result<Box<dyn Upload>, EndpointError> {
        let stream = self
            .control
            .lock()
            .await
            .put_with_stream(path)
            .await
            .map_err(failed)?;
        Ok(Box::new(FtpWrite { stream }))
    }

    async fn rename(&self, from: &str, to: &str, replace: bool) -> Result<(), EndpointError> {
        if self.stat(to).await?.is_some() {
            if !replace {
                return Err(EndpointError::new(Failure::Exists, format!("{to} exists")));
            }
            // Servers differ on renaming over a file: the old one goes first.
            self.remove(to).await?;
        }
        let mut control = self.control.lock().await;
        control.rename(from, to).await.map_err(failed)
    }

    async fn remove(&self, path: &str) -> Result<(), EndpointError> {
        self.control.lock().await.rm(path).await.map_err(failed)
    }

    async fn make_folders(&self, folder: &str) -> Result<(), EndpointError> {
        let mut control = self.control.lock().await;
        let mut at = String::new();
        for part in folder.split('/').filter(|p| !p.is_empty()) {
            at = format!("{at}/{part}");
            if control.mkdir(&at).await.is_err() {
                // There already (or refused): a folder we can enter is fine.
                control.cwd(&at).await.map_err(failed)?;
            }
        }
        Ok(())
    }

    async fn sha256(&self, path: &str) -> Result<Option<(String, &'static str)>, EndpointError> {
        if !self.hash {
            return Ok(None);
        }
        let mut control = self.control.lock().await;
        let reply = match control
            .custom_command(format!("HASH {path}"), &[Status::File])
            .await
        {
            Ok(reply) => reply,
            Err(_) => return Ok(None),
        };
        // `213 SHA-256 0-SIZE HEX NAME`
        let text = String::from_utf8_lossy(&reply.body).into_owned();
        let digest = text
            .split_whitespace()
            .find(|w| w.len() == 64 && w.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(str::to_ascii_lowercase);
        Ok(digest.map(|d| (d, "HASH")))
    }

    async fn close(&self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            let _ = self.control.lock().await.quit().await;
        })
        .await;
    }
}

struct FtpRead {
    stream: Option<TransferStream<AsyncRustlsStream>>,
}

#[async_trait]
impl Download for FtpRead {
    async fn read(&mut self, max: usize) -> Result<Vec<u8>, EndpointError> {
        let Some(stream) = self.stream.as_mut() else {
            return Ok(Vec::new());
        };
        let mut buf = vec![0u8; max];
        let mut filled = 0;
        while filled < max {
            let n = stream
                .read(&mut buf[filled..])
                .await
                .map_err(|e| EndpointError::retry(format!("FTP read: {e}")))?;
            if n == 0 {
                // The end: the server's completion reply says whether it all came.
                if let Some(stream) = self.stream.take() {
                    stream.finish().await.map_err(failed)?;
                }
                break;
            }
            filled += n;
        }
        buf.truncate(filled);
        Ok(buf)
    }
}

struct FtpWrite {
    stream: TransferStream<AsyncRustlsStream>,
}

#[async_trait]
impl Upload for FtpWrite {
    async fn write(&mut self, data: &[u8]) -> Result<(), EndpointError> {
        self.stream
            .write_all(data)
            .await
            .map_err(|e| EndpointError::retry(format!("FTP write: {e}")))
    }

    async fn finish(self: Box<Self>) -> Result<(), EndpointError> {
        self.stream.finish().await.map_err(failed)
    }

    async fn abort(self: Box<Self>) {
        // Closing the data connection early; the server keeps or drops what it got, and
        // the run removes it by name.
        let _ = self.stream.finish().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vsftpd_listing_line_parses() {
        let line = "-rw-r--r--    1 0        0               3 Dec 02 13:01 a.txt";
        let parsed = line.parse::<Listed>();
        assert!(parsed.is_ok(), "{parsed:?}");
        let file = parsed.unwrap();
        assert_eq!(file.name(), "a.txt");
        assert!(file.is_file());
    }
}
