//! One FTP control connection: read a line, run the command through the core, reply.
//!
//! The connection may turn to TLS (`AUTH TLS`, or from the first byte on an implicit FTPS
//! service); from then on every event says `ftps`. Commands are read one line at a time,
//! capped at [`wharf_ftp_proto::MAX_LINE`], and run in order (pipelining); only ABOR is
//! looked for while a transfer runs.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wharf_auth::{Attempt, Authenticated, Credential};
use wharf_core::vfs::{Attrs, FileKind};
use wharf_core::{
    ClosingRecord, CoreError, Cut, ErrorKind, Event, EventKind, Session, SessionInfo, WriteMode,
};
use wharf_ftp_proto::{Command, Line, Reply, TransferType, next_line};
use wharf_types::{Protocol, VirtualPath};

use crate::data::DataPlan;
use crate::server::{Shared, TlsMode};
use crate::stream::MaybeTls;
use crate::tls::ConnectionTls;

mod arrange;
mod secure;
mod transfer;
use transfer::{Listing, listing, mlst, retrieve, stat_file, store};

/// Refused commands recorded per connection.
const MAX_RECORDED_REFUSALS: u32 = 10;

pub(crate) struct State {
    shared: Arc<Shared>,
    id: String,
    remote: SocketAddr,
    local_ip: IpAddr,
    user: Option<String>,
    session: Option<Session>,
    cwd: VirtualPath,
    ascii: bool,
    rest: u64,
    rename_from: Option<VirtualPath>,
    plan: DataPlan,
    epsv_all: bool,
    failures: u32,
    refusals: u32,
    control: MaybeTls,
    /// Bytes read from the control connection and not yet run as commands.
    input: Vec<u8>,
    /// This connection's TLS acceptors (its own ticket key and session store), when the
    /// service has TLS.
    acceptor: Option<ConnectionTls>,
    /// The control connection is (or is becoming) TLS.
    tls_on: bool,
    pbsz: bool,
    /// PROT P: data connections are TLS.
    private_data: bool,
    /// The record of the connection's end. After `session` so that, when a server stop cuts
    /// the connection, the session records its end first.
    closing: Option<ClosingRecord>,
    /// This connection's off switch (the Manager's disconnect), given to its session.
    off: Cut,
}

fn core_reply(e: &CoreError) -> Reply {
    let code = match e.kind {
        ErrorKind::NotFound
        | ErrorKind::PermissionDenied
        | ErrorKind::IsADirectory
        | ErrorKind::NotADirectory => 550,
        ErrorKind::AlreadyExists | ErrorKind::NotEmpty => 550,
        ErrorKind::InvalidPath => 553,
        ErrorKind::LimitReached => 452,
        ErrorKind::Unsupported => 504,
        // RFC 3659 §5.5: a REST offset the server cannot continue from.
        ErrorKind::InvalidOffset => 554,
        _ => 451,
    };
    Reply::new(code, e.message.clone())
}

impl State {
    fn protocol(&self) -> Protocol {
        if self.tls_on {
            Protocol::Ftps
        } else {
            Protocol::Ftp
        }
    }

    fn event(&self, kind: EventKind) -> Event {
        let mut e = Event::new(kind);
        e.service = Some(self.shared.config.name.clone());
        e.protocol = Some(self.protocol());
        e.session = Some(self.id.clone());
        e.remote = Some(self.remote);
        // A name longer than any account is kept as typed (the line is capped), never cut to one.
        e.account = self.user.as_deref().map(wharf_core::shown_name);
        e
    }

    /// Sends a reply; false when the client is gone or stopped reading for the idle time.
    async fn send(&mut self, reply: Reply) -> bool {
        let bytes = reply.encode();
        let write = async {
            self.control.write_all(&bytes).await?;
            self.control.flush().await
        };
        matches!(
            tokio::time::timeout(self.shared.config.idle_timeout, write).await,
            Ok(Ok(()))
        )
    }

    fn path(&self, raw: &[u8]) -> Result<VirtualPath, CoreError> {
        match &self.session {
            Some(s) => s.resolve(&self.cwd, raw),
            None => Err(CoreError::denied("not logged in")),
        }
    }

    fn core(&self) -> Result<&Session, CoreError> {
        self.session
            .as_ref()
            .ok_or_else(|| CoreError::denied("not logged in"))
    }
}

/// Serves one control connection to its end.
pub(crate) async fn run(socket: TcpStream, remote: SocketAddr, id: String, shared: Arc<Shared>) {
    let local_ip = socket
        .local_addr()
        .map(|a| a.ip().to_canonical())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    // The Telnet synch a client sends as urgent data before ABOR stays in the byte stream.
    let _ = rustix::net::sockopt::set_socket_oobinline(&socket, true);
    let config = &shared.config;
    let acceptor = match (&config.tls_config, config.tls) {
        (_, TlsMode::Off) | (None, _) => None,
        (Some(tls), _) => {
            crate::tls::connection_acceptors(tls, &shared.families, remote.ip().to_canonical())
        }
    };
    let implicit = config.tls == TlsMode::Implicit;
    let mut st = State {
        shared: Arc::clone(&shared),
        id,
        remote,
        local_ip,
        user: None,
        session: None,
        cwd: VirtualPath::root(),
        ascii: false,
        rest: 0,
        rename_from: None,
        plan: DataPlan::None,
        epsv_all: false,
        failures: 0,
        refusals: 0,
        control: MaybeTls::Plain(socket),
        input: Vec::with_capacity(1024),
        acceptor,
        tls_on: implicit,
        pbsz: false,
        // Implicit FTPS clients expect protected data without asking (the usage before RFC 4217).
        private_data: implicit,
        closing: None,
        off: Cut::default(),
    };
    shared.events.emit(st.event(EventKind::ConnectionOpened));
    st.closing = Some(ClosingRecord::new(
        st.event(EventKind::ConnectionClosed),
        shared.events.clone(),
    ));
    let login_deadline = tokio::time::Instant::now() + shared.config.login_grace_time;
    let off = st.off.clone();
    let reason = match secure_start(&mut st, implicit, login_deadline).await {
        Ok(()) => tokio::select! {
            why = serve_commands(&mut st, login_deadline) => why,
            // Dropping the command loop drops a transfer in progress, which records its end.
            _ = off.pulled() => {
                st.send(Reply::new(421, wharf_core::live::DISCONNECTED)).await;
                wharf_core::live::DISCONNECTED.to_owned()
            }
        },
        Err(why) => why,
    };
    // A TLS client expects close_notify, not a bare TCP close.
    let _ = tokio::time::timeout(Duration::from_secs(2), st.control.shutdown()).await;
    let now = st.event(EventKind::ConnectionClosed);
    st.session = None;
    if let Some(closing) = st.closing.take() {
        closing.close(reason, |e| {
            e.account = now.account;
            e.protocol = now.protocol;
        });
    }
}

/// Implicit FTPS: the TLS handshake comes before the greeting.
async fn secure_start(
    st: &mut State,
    implicit: bool,
    deadline: tokio::time::Instant,
) -> Result<(), String> {
    if implicit {
        secure::handshake_control(st, deadline).await?;
    }
    if st.send(Reply::new(220, "Wharf FTP service ready")).await {
        Ok(())
    } else {
        Err("client closed the connection".to_owned())
    }
}

/// The command loop; returns why the connection ended.
async fn serve_commands(st: &mut State, login_deadline: tokio::time::Instant) -> String {
    loop {
        // Run every complete line already buffered (pipelined commands), in order.
        loop {
            match next_line(&st.input) {
                Line::Complete(line, used) => {
                    let line = line.to_vec();
                    st.input.drain(..used);
                    if !handle(st, &line).await {
                        return "client quit".to_owned();
                    }
                }
                Line::Incomplete => break,
                Line::TooLong => {
                    st.shared.events.emit(
                        st.event(EventKind::ProtocolError)
                            .failed("command line longer than 4096 bytes"),
                    );
                    st.send(Reply::new(500, "command line too long; closing"))
                        .await;
                    return "line too long".to_owned();
                }
            }
        }
        let deadline = if st.session.is_some() {
            tokio::time::Instant::now() + st.shared.config.idle_timeout
        } else {
            login_deadline
        };
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout_at(deadline, st.control.read(&mut chunk)).await {
            Err(_) => {
                let why = if st.session.is_some() {
                    "idle timeout"
                } else {
                    "login grace time exceeded"
                };
                st.send(Reply::new(421, format!("{why}; closing"))).await;
                return why.to_owned();
            }
            Ok(Ok(0)) | Ok(Err(_)) => return "client closed the connection".to_owned(),
            Ok(Ok(n)) => {
                st.input.extend_from_slice(&chunk[..n]);
                if st.input.last() != Some(&b'\n') {
                    st.control.read_urgent_tail(&mut st.input);
                }
            }
        }
    }
}

/// Records a refused command; only the first few per connection, so a client sending
/// garbage cannot flood the audit trail.
fn note_refusal(st: &mut State, kind: EventKind, message: &str) {
    st.refusals += 1;
    if st.refusals <= MAX_RECORDED_REFUSALS {
        let mut message = message.to_owned();
        if st.refusals == MAX_RECORDED_REFUSALS {
            message.push_str(" (further refusals on this connection are not recorded)");
        }
        st.shared.events.emit(st.event(kind).failed(message));
    }
}

/// Runs one command; false ends the connection.
async fn handle(st: &mut State, line: &[u8]) -> bool {
    let command = match Command::parse(line) {
        Ok(c) => c,
        // Before login every refusal is 530, so nothing about the server's commands leaks.
        Err(_) if st.session.is_none() => {
            note_refusal(
                st,
                EventKind::CommandRefused,
                "unrecognised command before login",
            );
            return st
                .send(Reply::new(530, "please log in with USER and PASS"))
                .await;
        }
        Err(e) => {
            note_refusal(
                st,
                EventKind::ProtocolError,
                &format!("command refused: {e}"),
            );
            return st.send(Reply::new(e.code(), e.to_string())).await;
        }
    };
    if st.session.is_none() && !command.allowed_before_login() {
        note_refusal(st, EventKind::CommandRefused, "command before login");
        return st
            .send(Reply::new(530, "please log in with USER and PASS"))
            .await;
    }
    if let Some(refusal) = secure::policy_refusal(st, &command) {
        return st.send(refusal).await;
    }
    // REST applies to the next command only if that command is a transfer.
    let rest = std::mem::take(&mut st.rest);
    let reply = match command {
        Command::User(name) => {
            if st.session.is_some() {
                Reply::new(530, "already logged in")
            } else {
                st.user = Some(name);
                Reply::new(331, "password required")
            }
        }
        Command::Pass(password) => return login(st, &password).await,
        Command::Quit => {
            st.send(Reply::new(221, "goodbye")).await;
            return false;
        }
        Command::Noop | Command::Allo | Command::Mode | Command::Stru => Reply::new(200, "OK"),
        Command::Syst => Reply::new(215, "UNIX Type: L8"),
        Command::Feat => features(st),
        Command::Opts(opt) => {
            let upper = opt.trim().to_ascii_uppercase();
            // draft-bryan-ftp-hash: `OPTS HASH` names the algorithm in use, and only
            // SHA-256 can be chosen.
            if upper == "HASH" || upper == "HASH SHA-256" {
                Reply::new(200, "SHA-256")
            } else if upper.starts_with("UTF8") || upper.starts_with("MLST") {
                Reply::new(200, "OK")
            } else {
                Reply::new(501, "option not recognised")
            }
        }
        Command::Help(_) => Reply::new(214, "see RFC 959; FEAT lists the extensions"),
        Command::Host(_) => Reply::new(220, "OK"),
        Command::Auth(mechanism) => return secure::auth(st, &mechanism).await,
        Command::Pbsz(_) => secure::pbsz(st),
        Command::Prot(level) => secure::prot(st, level),
        Command::Ccc => secure::ccc(st),
        Command::Pwd => Reply::new(
            257,
            format!(
                "\"{}\" is the current folder",
                st.cwd.as_str().replace('"', "\"\"")
            ),
        ),
        Command::Cwd(raw) => change_dir(st, &raw).await,
        Command::Cdup => change_dir(st, b"..").await,
        Command::Type(t) => {
            st.ascii = t == TransferType::Ascii;
            Reply::new(
                200,
                if st.ascii {
                    "type set to A"
                } else {
                    "type set to I"
                },
            )
        }
        Command::Pasv => arrange::pasv(st).await,
        Command::Epsv { all } => arrange::epsv(st, all).await,
        Command::Port(arg) => arrange::port(st, &arg),
        Command::Eprt(arg) => arrange::eprt(st, &arg),
        Command::List(raw) => listing(st, raw, Listing::Long).await,
        Command::Nlst(raw) => listing(st, raw, Listing::Names).await,
        Command::Mlsd(raw) => listing(st, raw, Listing::Facts).await,
        Command::Mlst(raw) => mlst(st, raw).await,
        Command::Stat(_) => Reply::new(211, "Wharf FTP; use LIST or MLST for files"),
        Command::Size(raw) => match stat_file(st, &raw).await {
            Ok(meta) => Reply::new(213, meta.size.to_string()),
            Err(e) => core_reply(&e),
        },
        Command::Mdtm(raw) => match stat_file(st, &raw).await {
            Ok(meta) => Reply::new(213, meta.mtime_compact()),
            Err(e) => core_reply(&e),
        },
        Command::Mfmt(when, raw) => match path_op(st, &raw, PathOp::Times(when)).await {
            Ok(()) => Reply::new(213, "modify time set"),
            Err(e) => core_reply(&e),
        },
        Command::SiteChmod(mode, raw) => match path_op(st, &raw, PathOp::Chmod(mode)).await {
            Ok(()) => Reply::new(200, "permissions changed"),
            Err(e) => core_reply(&e),
        },
        Command::Retr(raw) => retrieve(st, &raw, rest).await,
        Command::Stor(raw) => {
            store(
                st,
                &raw,
                if rest > 0 {
                    WriteMode::Resume
                } else {
                    WriteMode::Create
                },
                rest,
            )
            .await
        }
        Command::Appe(raw) => store(st, &raw, WriteMode::Append, 0).await,
        Command::Stou(raw) => {
            let base = raw.unwrap_or_else(|| b"file".to_vec());
            let mut name = base.clone();
            name.extend_from_slice(format!(".{:08x}", rand::random::<u32>()).as_bytes());
            store(st, &name, WriteMode::Create, 0).await
        }
        Command::Rest(offset) => {
            st.rest = offset;
            Reply::new(350, format!("restarting at {offset}; send RETR or STOR"))
        }
        Command::Rnfr(raw) => match path_op(st, &raw, PathOp::Exists).await {
            Ok(()) => {
                st.rename_from = st.path(&raw).ok();
                Reply::new(350, "ready for RNTO")
            }
            Err(e) => core_reply(&e),
        },
        Command::Rnto(raw) => match st.rename_from.take() {
            None => Reply::new(503, "send RNFR first"),
            Some(from) => match st.path(&raw) {
                Ok(to) => match st.core() {
                    Ok(s) => match s.rename(&from, &to, true).await {
                        Ok(()) => Reply::new(250, "renamed"),
                        Err(e) => core_reply(&e),
                    },
                    Err(e) => core_reply(&e),
                },
                Err(e) => core_reply(&e),
            },
        },
        Command::Dele(raw) => match path_op(st, &raw, PathOp::Delete).await {
            Ok(()) => Reply::new(250, "deleted"),
            Err(e) => core_reply(&e),
        },
        Command::Mkd(raw) => match st.path(&raw) {
            Ok(p) => match st.core() {
                Ok(s) => match s.mkdir(&p, None).await {
                    Ok(()) => Reply::new(
                        257,
                        format!("\"{}\" created", p.as_str().replace('"', "\"\"")),
                    ),
                    Err(e) => core_reply(&e),
                },
                Err(e) => core_reply(&e),
            },
            Err(e) => core_reply(&e),
        },
        Command::Rmd(raw) => match path_op(st, &raw, PathOp::Rmdir).await {
            Ok(()) => Reply::new(250, "folder removed"),
            Err(e) => core_reply(&e),
        },
        Command::Hash(raw) => match st.path(&raw) {
            Ok(p) => match st.core() {
                Ok(s) => match s.sha256_sized(&p).await {
                    Ok((hex, size)) => Reply::new(
                        213,
                        format!("SHA-256 0-{size} {hex} {}", p.file_name().unwrap_or("")),
                    ),
                    Err(e) => core_reply(&e),
                },
                Err(e) => core_reply(&e),
            },
            Err(e) => core_reply(&e),
        },
        Command::Abor => Reply::new(226, "no transfer in progress"),
        _ => Reply::new(502, "command not implemented"),
    };
    st.send(reply).await
}

fn features(st: &State) -> Reply {
    let mut lines: Vec<String> = vec!["Features:".into()];
    if st.acceptor.is_some() {
        lines.extend(["AUTH TLS".into(), "PBSZ".into(), "PROT".into()]);
    }
    lines.extend(
        [
            "EPRT",
            "EPSV",
            "HASH SHA-256*",
            "MDTM",
            "MFMT",
            "MLST type*;size*;modify*;perm*;unique*;",
            "REST STREAM",
            "SIZE",
            "UTF8",
            "End",
        ]
        .map(String::from),
    );
    Reply::multi(211, lines)
}

/// Single-path operations that reply with a plain success.
enum PathOp {
    Times(i64),
    Chmod(u32),
    Delete,
    Rmdir,
    Exists,
}

async fn path_op(st: &State, raw: &[u8], op: PathOp) -> Result<(), CoreError> {
    let path = st.path(raw)?;
    let s = st.core()?;
    match op {
        PathOp::Times(t) => {
            s.set_attrs(
                &path,
                &Attrs {
                    times: Some((t, t)),
                    ..Attrs::default()
                },
            )
            .await
        }
        PathOp::Chmod(mode) => {
            s.set_attrs(
                &path,
                &Attrs {
                    permissions: Some(mode),
                    ..Attrs::default()
                },
            )
            .await
        }
        PathOp::Delete => s.remove(&path).await,
        PathOp::Rmdir => s.rmdir(&path).await,
        PathOp::Exists => s.stat(&path, false).await.map(|_| ()),
    }
}

async fn login(st: &mut State, password: &str) -> bool {
    let Some(user) = st.user.clone() else {
        return st.send(Reply::new(503, "send USER first")).await;
    };
    if st.session.is_some() {
        return st.send(Reply::new(230, "already logged in")).await;
    }
    let result = st
        .shared
        .auth
        .authenticate(
            &user,
            Credential::Password(password),
            Attempt {
                service: &st.shared.config.name,
                protocol: st.protocol(),
                offers: &[st.protocol()],
                remote: st.remote,
                code_appended: true,
            },
        )
        .await;
    match result {
        Ok(Authenticated {
            account,
            by,
            code_used,
            ..
        }) => {
            let info = SessionInfo {
                id: st.id.clone(),
                service: st.shared.config.name.clone(),
                protocol: st.protocol(),
                remote: Some(st.remote),
                max_file_size: st.shared.config.max_file_size,
                cut: st.off.clone(),
            };
            // From here on the connection's records name the account as the method gave
            // it (a directory's own spelling); the name as typed is kept on the login.
            let typed = st.user.replace(account.name.to_string());
            let mut ok = st
                .event(EventKind::LoginSucceeded)
                .attr("method", "password")
                .attr("authenticator", by);
            if let Some(typed) = typed.filter(|t| t != account.name.as_str()) {
                ok = ok.attr("login_name", wharf_core::shown_name(&typed));
            }
            if code_used {
                ok = ok.attr("second_factor", "totp");
            }
            st.shared.events.emit(ok);
            match Session::open(account, info, st.shared.events.clone()).await {
                Ok(session) => {
                    st.session = Some(session);
                    let now = st.event(EventKind::ConnectionClosed);
                    if let Some(closing) = &mut st.closing {
                        closing.update(|e| {
                            e.account = now.account;
                            e.protocol = now.protocol;
                        });
                    }
                    if let Some(tls) = &st.acceptor {
                        tls.bind_login(st.user.clone());
                    }
                    st.send(Reply::new(230, "logged in")).await
                }
                Err(e) => {
                    st.send(Reply::new(
                        421,
                        format!("session unavailable: {}", e.message),
                    ))
                    .await;
                    false
                }
            }
        }
        Err(failure) => {
            st.shared.events.emit(
                st.event(EventKind::LoginFailed)
                    .failed(failure.reason())
                    .attr("method", "password")
                    .attr("cause", failure.code())
                    .attr("authenticator", failure.by()),
            );
            st.failures += 1;
            // A pause after each failure slows guessing (vsftpd's delay_failed_login).
            tokio::time::sleep(Duration::from_secs(1)).await;
            if st.failures as usize >= st.shared.config.max_auth_tries {
                st.send(Reply::new(421, "too many failed logins; closing"))
                    .await;
                return false;
            }
            st.user = None;
            st.send(Reply::new(530, "login incorrect")).await
        }
    }
}

async fn change_dir(st: &mut State, raw: &[u8]) -> Reply {
    let target = match st.path(raw) {
        Ok(p) => p,
        Err(e) => return core_reply(&e),
    };
    let session = match st.core() {
        Ok(s) => s,
        Err(e) => return core_reply(&e),
    };
    match session.stat(&target, true).await {
        Ok(meta) if meta.kind == FileKind::Dir => {
            st.cwd = target;
            Reply::new(250, format!("folder is now {}", st.cwd))
        }
        Ok(_) => Reply::new(550, "not a folder"),
        Err(e) => core_reply(&e),
    }
}
