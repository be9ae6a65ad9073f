//! An SFTP server as a location: russh's client for SSH, russh-sftp's client for SFTP.
//!
//! The server's host key must be one of the pinned fingerprints or be in the configured
//! `known_hosts` file; any other key (unknown, or changed) ends the connection before a
//! password or key is offered. Two SFTP channels share the connection: one streams files
//! (pipelined reads and writes), the other asks for what the streaming client does not
//! offer (`posix-rename@openssh.com`, `check-file-name`). A digest is asked by `check-file`
//! where the server advertises it, else by running `sha256sum` where the server lets the
//! account run it; otherwise the copy is checked by size.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKey};
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::client::{RawSftpSession, SftpSession};
use russh_sftp::protocol::{Packet, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::endpoint::{Download, Endpoint, EndpointError, Entry, Failure, Item, Upload};
use crate::spec::{HostKeys, Location, LocationKind, SftpLogin};

/// The SSH client's side: checks the host key, and remembers why it refused one.
struct Client {
    host: String,
    port: u16,
    trusted: Arc<HostKeysShared>,
    refused: Arc<Mutex<Option<String>>>,
}

/// The trusted keys, shared with the handler (which must be `'static`).
enum HostKeysShared {
    Fingerprints(Vec<String>),
    KnownHosts(std::path::PathBuf),
}

impl Client {
    fn refuse(&self, why: String) -> bool {
        if let Ok(mut refused) = self.refused.lock() {
            *refused = Some(why);
        }
        false
    }

    fn check(&self, key: &PublicKey) -> bool {
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        match &*self.trusted {
            HostKeysShared::Fingerprints(list) => {
                if list.contains(&fingerprint) {
                    true
                } else {
                    self.refuse(format!(
                        "the server's host key {fingerprint} is not a pinned one (host_key)"
                    ))
                }
            }
            HostKeysShared::KnownHosts(path) => {
                // Every line naming the host counts (a key being rotated is listed twice).
                match russh::keys::known_hosts::known_host_keys_path(&self.host, self.port, path) {
                    Ok(known) if known.iter().any(|(_, k)| k == key) => true,
                    Ok(known) => match known.iter().find(|(_, k)| k.algorithm() == key.algorithm()) {
                        Some((line, _)) => self.refuse(format!(
                            "the server's host key {fingerprint} is not the one {}:{line} names: it CHANGED",
                            path.display()
                        )),
                        None => self.refuse(format!(
                            "the server's host key {fingerprint} is not in {}",
                            path.display()
                        )),
                    },
                    Err(e) => self.refuse(format!("cannot read {}: {e}", path.display())),
                }
            }
        }
    }
}

impl russh::client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(match key {
            russh::PublicKeyOrCertificate::PublicKey { key, .. } => self.check(key),
            russh::PublicKeyOrCertificate::Certificate(_) => {
                self.refuse("the server showed a host certificate; pin its key instead".into())
            }
        })
    }
}

/// A connected, logged-in SFTP server.
pub struct SftpEndpoint {
    handle: russh::client::Handle<Client>,
    files: SftpSession,
    /// The second channel, for what the streaming client does not ask; `None` when the
    /// server allows one channel only.
    control: Option<RawSftpSession>,
    extensions: HashMap<String, String>,
    /// Whether `sha256sum` answered once (`None`: not tried yet).
    sha256sum: Mutex<Option<bool>>,
    idle: Duration,
}

/// Turns TCP keep-alive on, probing after `idle` of silence.
pub(crate) fn keepalive(stream: &tokio::net::TcpStream, idle: Duration) {
    let set = rustix::net::sockopt::set_socket_keepalive(stream, true)
        .and_then(|()| rustix::net::sockopt::set_tcp_keepidle(stream, idle));
    if let Err(e) = set {
        tracing::debug!(error = %e, "TCP keep-alive not set");
    }
}

/// The first address `host` resolves to.
pub(crate) async fn resolve(host: &str, port: u16) -> Result<std::net::SocketAddr, EndpointError> {
    tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| EndpointError::location(format!("cannot resolve {host}: {e}")))?
        .next()
        .ok_or_else(|| EndpointError::location(format!("{host} resolves to no address")))
}

/// A TCP connection to `host`, tried on each address it resolves to, with keep-alive.
pub(crate) async fn tcp(
    location: &Location,
    host: &str,
    port: u16,
) -> Result<tokio::net::TcpStream, EndpointError> {
    let addresses: Vec<_> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| EndpointError::location(format!("cannot resolve {host}: {e}")))?
        .collect();
    let mut last = format!("{host} resolves to no address");
    for address in addresses {
        match tokio::net::TcpStream::connect(address).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                keepalive(&stream, location.keepalive);
                return Ok(stream);
            }
            Err(e) => last = format!("cannot connect to {address}: {e}"),
        }
    }
    Err(EndpointError::location(last))
}

/// The second SFTP channel, initialised; with the server's extensions.
async fn open_control(
    handle: &russh::client::Handle<Client>,
    config: russh_sftp::client::Config,
) -> Result<(RawSftpSession, HashMap<String, String>), String> {
    let channel = handle
        .channel_open_session()
        .await
        .map_err(|e| e.to_string())?;
    channel
        .request_subsystem(true, "sftp")
        .await
        .map_err(|e| e.to_string())?;
    let control = RawSftpSession::new_with_config(channel.into_stream(), config);
    let version = control.init().await.map_err(|e| e.to_string())?;
    Ok((control, version.extensions))
}

fn sftp_failed(e: SftpError) -> EndpointError {
    match e {
        SftpError::Status(status) => {
            let kind = match status.status_code {
                StatusCode::NoSuchFile => Failure::Missing,
                StatusCode::PermissionDenied | StatusCode::OpUnsupported => Failure::Permanent,
                _ => Failure::Retry,
            };
            let message = if status.error_message.is_empty() {
                format!("the server answered {:?}", status.status_code)
            } else {
                format!("the server answered: {}", status.error_message)
            };
            EndpointError::new(kind, message)
        }
        SftpError::Timeout => EndpointError::retry("the server did not answer in time"),
        other => EndpointError::retry(format!("SFTP: {other}")),
    }
}

fn ssh_failed(e: russh::Error) -> EndpointError {
    EndpointError::location(format!("SSH: {e}"))
}

fn string(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_be_bytes(data.get(..4)?.try_into().ok()?) as usize;
    let body = data.get(4..4 + len)?;
    Some((body, &data[4 + len..]))
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

/// A path as a POSIX shell word.
fn quoted(path: &str) -> String {
    format!("'{}'", path.replace('\'', "'\\''"))
}

impl SftpEndpoint {
    /// Connects to `location` (an SFTP one), checks its host key and logs in.
    pub async fn connect(location: &Location) -> Result<SftpEndpoint, EndpointError> {
        let LocationKind::Sftp {
            host,
            port,
            login,
            host_keys,
        } = &location.kind
        else {
            return Err(EndpointError::new(
                Failure::Permanent,
                "not an SFTP location",
            ));
        };
        let stream = tcp(location, host, *port).await?;
        let config = russh::client::Config {
            inactivity_timeout: Some(location.idle_timeout),
            keepalive_interval: Some(location.keepalive),
            nodelay: true,
            window_size: 8 * 1024 * 1024,
            ..Default::default()
        };
        let refused = Arc::new(Mutex::new(None));
        let client = Client {
            host: host.clone(),
            port: *port,
            trusted: Arc::new(match host_keys {
                HostKeys::Fingerprints(list) => HostKeysShared::Fingerprints(list.clone()),
                HostKeys::KnownHosts(path) => HostKeysShared::KnownHosts(path.clone()),
            }),
            refused: refused.clone(),
        };
        let mut handle = match russh::client::connect_stream(Arc::new(config), stream, client).await
        {
            Ok(handle) => handle,
            Err(e) => {
                let why = refused.lock().ok().and_then(|r| r.clone());
                return Err(EndpointError::location(
                    why.unwrap_or_else(|| format!("SSH: {e}")),
                ));
            }
        };
        log_in(&mut handle, login).await?;
        let idle = location.idle_timeout;
        let sftp_config = || russh_sftp::client::Config {
            request_timeout_secs: idle.as_secs().max(1),
            ..Default::default()
        };
        let channel = handle.channel_open_session().await.map_err(ssh_failed)?;
        channel
            .request_subsystem(true, "sftp")
            .await
            .map_err(ssh_failed)?;
        let files = SftpSession::new_with_config(channel.into_stream(), sftp_config())
            .await
            .map_err(|e| EndpointError::location(format!("SFTP: {e}")))?;
        let control = match open_control(&handle, sftp_config()).await {
            Ok(control) => Some(control),
            Err(e) => {
                tracing::info!(error = %e, "one SFTP channel only: listings read whole folders, no check-file");
                None
            }
        };
        let extensions = match &control {
            Some((_, version)) => version.clone(),
            None => HashMap::new(),
        };
        let control = control.map(|(control, _)| control);
        Ok(SftpEndpoint {
            handle,
            files,
            control,
            extensions,
            sha256sum: Mutex::new(None),
            idle,
        })
    }

    fn offers(&self, extension: &str) -> bool {
        self.extensions.contains_key(extension)
    }

    async fn check_file(&self, path: &str) -> Result<Option<String>, EndpointError> {
        let mut data = Vec::new();
        put_string(&mut data, path.as_bytes());
        put_string(&mut data, b"sha256");
        data.extend_from_slice(&0u64.to_be_bytes());
        data.extend_from_slice(&0u64.to_be_bytes());
        data.extend_from_slice(&0u32.to_be_bytes());
        let Some(control) = &self.control else {
            return Ok(None);
        };
        let reply = control
            .extended("check-file-name", data)
            .await
            .map_err(sftp_failed)?;
        let Packet::ExtendedReply(reply) = reply else {
            return Ok(None);
        };
        let Some((first, rest)) = string(&reply.data) else {
            return Ok(None);
        };
        let (algorithm, hash) = if first == b"check-file" {
            match string(rest) {
                Some(found) => found,
                None => return Ok(None),
            }
        } else {
            (first, rest)
        };
        Ok((algorithm == b"sha256" && hash.len() == 32).then(|| crate::run::hex(hash)))
    }

    async fn sha256sum(&self, path: &str) -> Result<Option<String>, EndpointError> {
        if self.sha256sum.lock().ok().and_then(|s| *s) == Some(false) {
            return Ok(None);
        }
        let answer = tokio::time::timeout(self.idle, self.exec_sha256sum(path)).await;
        let digest = match answer {
            Ok(Ok(digest)) => digest,
            Ok(Err(e)) => return Err(e),
            Err(_) => None,
        };
        if let Ok(mut known) = self.sha256sum.lock()
            && known.is_none()
        {
            *known = Some(digest.is_some());
        }
        Ok(digest)
    }

    async fn exec_sha256sum(&self, path: &str) -> Result<Option<String>, EndpointError> {
        // A server that allows no further channel, or no command, offers no digest.
        let Ok(mut channel) = self.handle.channel_open_session().await else {
            return Ok(None);
        };
        if channel
            .exec(true, format!("sha256sum -- {}", quoted(path)))
            .await
            .is_err()
        {
            return Ok(None);
        }
        let mut out = Vec::new();
        let mut status = None;
        while let Some(message) = channel.wait().await {
            match message {
                russh::ChannelMsg::Data { data } if out.len() < 4096 => {
                    out.extend_from_slice(&data)
                }
                russh::ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                russh::ChannelMsg::Failure => return Ok(None),
                _ => {}
            }
        }
        let text = String::from_utf8_lossy(&out);
        let digest = text.split_whitespace().next().unwrap_or("");
        Ok((status == Some(0)
            && digest.len() == 64
            && digest.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| digest.to_ascii_lowercase()))
    }
}

async fn log_in(
    handle: &mut russh::client::Handle<Client>,
    login: &SftpLogin,
) -> Result<(), EndpointError> {
    let refused = || {
        EndpointError::location(format!(
            "the server refused the login of {:?}",
            login.username
        ))
    };
    let mut done = false;
    if let Some(key) = &login.key {
        let hash = handle
            .best_supported_rsa_hash()
            .await
            .map_err(ssh_failed)?
            .flatten();
        let result = handle
            .authenticate_publickey(
                login.username.clone(),
                PrivateKeyWithHashAlg::new(key.clone(), hash),
            )
            .await
            .map_err(ssh_failed)?;
        match result {
            russh::client::AuthResult::Success => done = true,
            russh::client::AuthResult::Failure {
                partial_success: true,
                ..
            } => {}
            russh::client::AuthResult::Failure { .. } if login.password.is_none() => {
                return Err(refused());
            }
            russh::client::AuthResult::Failure { .. } => {}
        }
    }
    if !done && let Some(password) = &login.password {
        let result = handle
            .authenticate_password(login.username.clone(), password.clone())
            .await
            .map_err(ssh_failed)?;
        done = matches!(result, russh::client::AuthResult::Success);
    }
    if done { Ok(()) } else { Err(refused()) }
}

/// A folder entry, when it is a regular file or a folder.
fn item(name: String, attrs: &russh_sftp::protocol::FileAttributes) -> Option<Item> {
    (attrs.is_dir() || attrs.is_regular()).then(|| Item {
        name,
        folder: attrs.is_dir(),
        size: attrs.size.unwrap_or(0),
        mtime_us: mtime_us(attrs),
    })
}

fn mtime_us(attrs: &russh_sftp::protocol::FileAttributes) -> i64 {
    i64::from(attrs.mtime.unwrap_or(0)) * 1_000_000
}

#[async_trait]
impl Endpoint for SftpEndpoint {
    async fn read_folder(&self, folder: &str, cap: usize) -> Result<Vec<Item>, EndpointError> {
        let Some(control) = &self.control else {
            // One channel only (the server allows no second): the streaming client's
            // listing, which reads the whole folder.
            let entries = self.files.read_dir(folder).await.map_err(sftp_failed)?;
            return Ok(entries
                .filter_map(|e| item(e.file_name(), &e.metadata()))
                .take(cap)
                .collect());
        };
        // Read reply by reply, and no further than `cap`: a folder's size, or a server that
        // never says "end", costs no more than that.
        let handle = control.opendir(folder).await.map_err(sftp_failed)?.handle;
        let mut items = Vec::new();
        let outcome = loop {
            if items.len() >= cap {
                break Ok(());
            }
            match control.readdir(handle.as_str()).await {
                Ok(name) => {
                    if name.files.is_empty() {
                        break Ok(());
                    }
                    items.extend(
                        name.files
                            .into_iter()
                            .filter(|f| f.filename != "." && f.filename != "..")
                            .filter_map(|f| item(f.filename, &f.attrs)),
                    );
                }
                Err(SftpError::Status(status)) if status.status_code == StatusCode::Eof => {
                    break Ok(());
                }
                Err(e) => break Err(sftp_failed(e)),
            }
        };
        let _ = control.close(handle).await;
        outcome?;
        items.truncate(cap);
        Ok(items)
    }

    async fn stat(&self, path: &str) -> Result<Option<Entry>, EndpointError> {
        match self.files.symlink_metadata(path).await {
            Ok(attrs) => Ok(Some(Entry {
                path: path.to_owned(),
                size: attrs.size.unwrap_or(0),
                mtime_us: mtime_us(&attrs),
            })),
            Err(e) => {
                let e = sftp_failed(e);
                if e.kind == Failure::Missing {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    async fn open_read(&self, path: &str) -> Result<Box<dyn Download>, EndpointError> {
        let file = self.files.open(path).await.map_err(sftp_failed)?;
        Ok(Box::new(SftpRead { file }))
    }

    async fn create(&self, path: &str) -> Result<Box<dyn Upload>, EndpointError> {
        let file = self.files.create(path).await.map_err(sftp_failed)?;
        Ok(Box::new(SftpWrite { file }))
    }

    async fn rename(&self, from: &str, to: &str, replace: bool) -> Result<(), EndpointError> {
        if replace
            && self.offers("posix-rename@openssh.com")
            && let Some(control) = &self.control
        {
            let mut data = Vec::new();
            put_string(&mut data, from.as_bytes());
            put_string(&mut data, to.as_bytes());
            let reply = control
                .extended("posix-rename@openssh.com", data)
                .await
                .map_err(sftp_failed)?;
            return match reply {
                Packet::Status(s) if s.status_code == StatusCode::Ok => Ok(()),
                Packet::Status(s) => Err(sftp_failed(SftpError::Status(s))),
                _ => Err(EndpointError::retry("unexpected answer to posix-rename")),
            };
        }
        if self.stat(to).await?.is_some() {
            if !replace {
                return Err(EndpointError::new(Failure::Exists, format!("{to} exists")));
            }
            // No atomic replace offered: the old file goes first.
            self.remove(to).await?;
        }
        match self.files.rename(from, to).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let e = sftp_failed(e);
                if e.kind != Failure::Missing && self.stat(to).await?.is_some() {
                    Err(EndpointError::new(Failure::Exists, format!("{to} exists")))
                } else {
                    Err(e)
                }
            }
        }
    }

    async fn remove(&self, path: &str) -> Result<(), EndpointError> {
        self.files.remove_file(path).await.map_err(sftp_failed)
    }

    async fn make_folders(&self, folder: &str) -> Result<(), EndpointError> {
        let mut at = String::new();
        for part in folder.split('/').filter(|p| !p.is_empty()) {
            at = format!("{at}/{part}");
            if folder.starts_with('/') || !at.is_empty() {
                let path = if folder.starts_with('/') {
                    at.clone()
                } else {
                    at[1..].to_owned()
                };
                match self.files.metadata(path.clone()).await {
                    Ok(attrs) if attrs.is_dir() => continue,
                    Ok(_) => {
                        return Err(EndpointError::new(
                            Failure::Permanent,
                            format!("{path} is not a folder"),
                        ));
                    }
                    Err(_) => {}
                }
                if let Err(e) = self.files.create_dir(path.clone()).await {
                    // Made meanwhile by another worker: fine.
                    let made = matches!(self.files.metadata(path).await, Ok(a) if a.is_dir());
                    if !made {
                        return Err(sftp_failed(e));
                    }
                }
            }
        }
        Ok(())
    }

    async fn sha256(&self, path: &str) -> Result<Option<(String, &'static str)>, EndpointError> {
        if (self.offers("check-file") || self.offers("check-file-name"))
            && let Some(digest) = self.check_file(path).await?
        {
            return Ok(Some((digest, "check-file")));
        }
        Ok(self.sha256sum(path).await?.map(|d| (d, "sha256sum")))
    }

    async fn close(&self) {
        let _ = self.files.close().await;
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "")
            .await;
    }
}

struct SftpRead {
    file: russh_sftp::client::fs::File,
}

#[async_trait]
impl Download for SftpRead {
    async fn read(&mut self, max: usize) -> Result<Vec<u8>, EndpointError> {
        let mut buf = vec![0u8; max];
        let mut filled = 0;
        // Fill the buffer (the client answers in packet-sized pieces) unless the file ends.
        while filled < max {
            let n = self
                .file
                .read(&mut buf[filled..])
                .await
                .map_err(|e| EndpointError::retry(format!("SFTP read: {e}")))?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        buf.truncate(filled);
        Ok(buf)
    }
}

struct SftpWrite {
    file: russh_sftp::client::fs::File,
}

#[async_trait]
impl Upload for SftpWrite {
    async fn write(&mut self, data: &[u8]) -> Result<(), EndpointError> {
        self.file
            .write_all(data)
            .await
            .map_err(|e| EndpointError::retry(format!("SFTP write: {e}")))
    }

    async fn finish(mut self: Box<Self>) -> Result<(), EndpointError> {
        self.file
            .flush()
            .await
            .map_err(|e| EndpointError::retry(format!("SFTP write: {e}")))?;
        // fsync@openssh.com where offered (the client asks only then).
        let _ = self.file.sync_all().await;
        self.file
            .shutdown()
            .await
            .map_err(|e| EndpointError::retry(format!("SFTP close: {e}")))
    }

    async fn abort(mut self: Box<Self>) {
        // Closed; the run removes what was written by its name.
        let _ = self.file.shutdown().await;
    }
}
