//! The SSH listener and the per-connection russh handler.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::keys::PrivateKey;
use russh::server::ChannelOpenHandle;
use russh::server::{Auth, Msg, PublicKeyOffer, Session as SshSession, VerifiedPublicKey};
use russh::{Channel, ChannelId, Disconnect};
use tokio::net::TcpStream;
use wharf_auth::{
    Admission, Admitted, Attempt, Authenticated, Authenticator, Credential, Limits, ProxyPolicy,
    fingerprint,
};
use wharf_core::{Account, ClosingRecord, Cut, Event, EventBus, EventKind, Session, SessionInfo};
use wharf_net::Listeners;
use wharf_types::Protocol;

use crate::algorithms::Algorithms;
use crate::exec::{self, Command};
use crate::input::{self, InputSender};

/// One SSH service's settings.
#[derive(Clone)]
pub struct SshConfig {
    /// Service name (for events).
    pub name: String,
    /// Addresses to listen on.
    pub addresses: Vec<SocketAddr>,
    /// Text shown before authentication.
    pub banner: Option<String>,
    /// Close a connection idle this long.
    pub idle_timeout: Duration,
    /// Close a connection not authenticated within this time.
    pub login_grace_time: Duration,
    /// Connections served at once; more are refused.
    pub max_connections: usize,
    /// Connections at once from one network (the ban engine's: an address, an IPv6 /64).
    pub max_per_ip: usize,
    /// Authentication attempts per connection.
    pub max_auth_tries: usize,
    /// Algorithm policy.
    pub algorithms: Algorithms,
    /// Host keys.
    pub host_keys: Vec<PrivateKey>,
    /// Largest file a session of this service may make, in bytes (`None`: the core's
    /// default, or what the account and its groups set).
    pub max_file_size: Option<u64>,
    /// Behind load balancers speaking the PROXY protocol: the balancers and the wait for
    /// their header (`None`: clients connect directly).
    pub proxy: Option<ProxyPolicy>,
}

/// A bound SSH service, ready to run.
pub struct SshService {
    config: SshConfig,
    listeners: Listeners,
}

struct Shared {
    service: String,
    max_file_size: Option<u64>,
    admission: Admission,
    auth: Authenticator,
    events: EventBus,
    banner: Option<String>,
}

impl SshService {
    /// Binds every configured address.
    pub async fn bind(config: SshConfig) -> std::io::Result<SshService> {
        let listeners = Listeners::bind(&config.addresses).await?;
        Ok(SshService { config, listeners })
    }

    /// The addresses actually bound (ports resolved).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.local_addrs()
    }

    /// Serves until `shutdown` turns true.
    pub async fn run(
        self,
        auth: Authenticator,
        events: EventBus,
        shutdown: impl Into<wharf_net::Stop>,
    ) {
        let config = Arc::new(russh::server::Config {
            server_id: russh::SshId::Standard("SSH-2.0-Wharf".into()),
            methods: {
                let mut m = russh::MethodSet::empty();
                m.push(russh::MethodKind::Password);
                m.push(russh::MethodKind::PublicKey);
                m
            },
            auth_rejection_time: Duration::from_millis(500),
            auth_rejection_time_initial: Some(Duration::ZERO),
            keys: self.config.host_keys.clone(),
            inactivity_timeout: Some(self.config.idle_timeout),
            max_auth_attempts: self.config.max_auth_tries,
            preferred: self.config.algorithms.preferred(),
            window_size: 8 * 1024 * 1024,
            maximum_packet_size: 65535,
            channel_buffer_size: 64,
            nodelay: true,
            ..Default::default()
        });
        let admission = Admission::new(
            &auth,
            events.clone(),
            &self.config.name,
            Protocol::Ssh,
            Limits {
                max_connections: self.config.max_connections,
                max_per_ip: self.config.max_per_ip,
            },
        );
        let admission = match &self.config.proxy {
            Some(proxy) => admission.behind_proxies(proxy.clone()),
            None => admission,
        };
        let shared = Arc::new(Shared {
            admission,
            service: self.config.name.clone(),
            max_file_size: self.config.max_file_size,
            auth,
            events,
            banner: self.config.banner.clone(),
        });
        let grace = self.config.login_grace_time;
        self.listeners
            .serve(shutdown, move |socket, remote| {
                accept(socket, remote, &config, &shared, grace)
            })
            .await;
    }
}

fn accept(
    socket: TcpStream,
    socket_peer: SocketAddr,
    config: &Arc<russh::server::Config>,
    shared: &Arc<Shared>,
    grace: Duration,
) -> impl std::future::Future<Output = ()> + Send + use<> {
    let config = Arc::clone(config);
    let shared = Arc::clone(shared);
    async move {
        let mut socket = socket;
        // Refused before the SSH banner: a refused client costs no key exchange. Behind a
        // balancer, its PROXY header is read first and names the client decided on.
        let Ok(admitted) = shared
            .admission
            .admit_proxied(&mut socket, socket_peer)
            .await
        else {
            return;
        };
        serve(socket, admitted, config, shared, grace).await;
    }
}

/// Disconnects the russh connection it holds when dropped still holding it.
struct DisconnectWhenCut(Option<russh::server::Handle>);

impl Drop for DisconnectWhenCut {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            tokio::spawn(async move {
                let _ = handle
                    .disconnect(
                        Disconnect::ByApplication,
                        "server stopping".into(),
                        "en".into(),
                    )
                    .await;
            });
        }
    }
}

/// Runs one admitted connection, recorded under the client address it was admitted for.
async fn serve(
    socket: TcpStream,
    admitted: Admitted,
    config: Arc<russh::server::Config>,
    shared: Arc<Shared>,
    grace: Duration,
) {
    let remote = admitted.peer();
    let connection_id = admitted.id().to_owned();
    let event = |kind: EventKind| {
        let mut e = Event::new(kind);
        e.service = Some(shared.service.clone());
        e.protocol = Some(Protocol::Ssh);
        e.session = Some(connection_id.clone());
        e.remote = Some(remote);
        e
    };
    shared.events.emit(event(EventKind::ConnectionOpened));
    let account_name = Arc::new(Mutex::new(None::<String>));
    let authenticated = Arc::new(AtomicBool::new(false));
    // The Manager's disconnect pulls it through any of this connection's sessions.
    let off = Cut::default();
    let handler = Connection {
        shared: Arc::clone(&shared),
        remote,
        id: connection_id.clone(),
        account: None,
        account_name: Arc::clone(&account_name),
        authenticated: Arc::clone(&authenticated),
        channels: HashMap::new(),
        channel_seq: 0,
        pending: None,
        off: off.clone(),
    };
    // Made now, sent at the end however the connection ends (a server stop cuts it).
    let closed = ClosingRecord::new(event(EventKind::ConnectionClosed), shared.events.clone())
        .account_from(Arc::clone(&account_name));
    let _held = admitted;
    let _ = socket.set_nodelay(true);
    // A second handle on the socket, to end it from here when a disconnect finds russh's
    // task stuck on a client that no longer reads.
    let spare = rustix::io::dup(&socket).ok();
    // The grace period covers everything before authentication, including a client
    // that connects and never sends its identification line.
    let deadline = tokio::time::Instant::now() + grace;
    let started_stream =
        tokio::time::timeout_at(deadline, russh::server::run_stream(config, socket, handler)).await;
    let reason = match started_stream {
        Err(_) => "login grace time exceeded before the handshake".to_owned(),
        Ok(Err(e)) => format!("handshake failed: {e}"),
        Ok(Ok(running)) => {
            let handle = running.handle();
            let grace_timer = tokio::spawn(async move {
                tokio::time::sleep_until(deadline).await;
                if !authenticated.load(Ordering::SeqCst) {
                    let _ = handle
                        .disconnect(
                            Disconnect::ByApplication,
                            "login grace time exceeded".into(),
                            "en".into(),
                        )
                        .await;
                }
            });
            // russh runs the connection on a task of its own: if this one is cut (the server
            // stops), that one is told to disconnect, so its channels and sessions end and
            // record their ends too.
            let mut cut = DisconnectWhenCut(Some(running.handle()));
            let by_administrator = running.handle();
            tokio::pin!(running);
            let result = tokio::select! {
                result = &mut running => Some(result),
                _ = off.pulled() => None,
            };
            // `None`: the administrator's disconnect ended it (not a client that left on its
            // own just before the cut, whose record says it closed).
            let result = match result {
                Some(result) => Some(result),
                None => {
                    // Bounded: russh's queue to its task is short, and a stuck task does
                    // not take it.
                    let _ = tokio::time::timeout(
                        Duration::from_secs(2),
                        by_administrator.disconnect(
                            Disconnect::ByApplication,
                            wharf_core::live::DISCONNECTED.into(),
                            "en".into(),
                        ),
                    )
                    .await;
                    // The connection's own task ends its channels, which record their ends.
                    // A client that stopped reading keeps that task waiting to write: the
                    // socket is then shut down under it, so it ends all the same.
                    let ended = tokio::time::timeout(Duration::from_secs(2), &mut running)
                        .await
                        .is_ok();
                    if !ended {
                        if let Some(spare) = &spare {
                            let _ = rustix::net::shutdown(spare, rustix::net::Shutdown::Both);
                        }
                        let _ = tokio::time::timeout(Duration::from_secs(5), &mut running).await;
                    }
                    None
                }
            };
            cut.0 = None;
            grace_timer.abort();
            match result {
                None => wharf_core::live::DISCONNECTED.to_owned(),
                Some(Ok(())) => "closed".to_owned(),
                Some(Err(e)) => format!("closed: {e}"),
            }
        }
    };
    closed.close(reason, |_| {});
}

enum Chan {
    Open(Channel<Msg>),
    Running(InputSender),
}

struct Connection {
    shared: Arc<Shared>,
    remote: SocketAddr,
    id: String,
    account: Option<Arc<Account>>,
    account_name: Arc<Mutex<Option<String>>>,
    authenticated: Arc<AtomicBool>,
    channels: HashMap<ChannelId, Chan>,
    channel_seq: u32,
    /// A first factor accepted, waiting for the one-time code (keyboard-interactive).
    pending: Option<Pending>,
    /// This connection's off switch, given to each of its sessions.
    off: Cut,
}

/// What a login that needs a one-time code keeps until the code arrives.
struct Pending {
    user: String,
    account: Arc<Account>,
    by: String,
    method: &'static str,
    detail: Option<String>,
}

impl Connection {
    fn event(&self, kind: EventKind, account: Option<&str>) -> Event {
        let mut e = Event::new(kind);
        e.service = Some(self.shared.service.clone());
        e.protocol = Some(Protocol::Ssh);
        e.session = Some(self.id.clone());
        e.remote = Some(self.remote);
        e.account = account.map(str::to_owned);
        e
    }

    fn account_str(&self) -> Option<String> {
        self.account.as_ref().map(|a| a.name.to_string())
    }

    async fn login(
        &mut self,
        user: &str,
        credential: Credential<'_>,
        detail: Option<String>,
    ) -> Auth {
        let method = credential.method();
        let result = self
            .shared
            .auth
            .authenticate(
                user,
                credential,
                Attempt {
                    service: &self.shared.service,
                    protocol: Protocol::Ssh,
                    offers: &[Protocol::Sftp, Protocol::Scp],
                    remote: self.remote,
                    code_appended: false,
                },
            )
            .await;
        let shown_user = wharf_core::shown_name(user);
        match result {
            Ok(Authenticated {
                account,
                by,
                needs_code: true,
                ..
            }) => {
                // The second factor follows as keyboard-interactive (RFC 4252 §5.1 partial
                // success); nothing is granted until the code is accepted.
                self.pending = Some(Pending {
                    user: user.to_owned(),
                    account,
                    by,
                    method,
                    detail,
                });
                let mut next = russh::MethodSet::empty();
                next.push(russh::MethodKind::KeyboardInteractive);
                Auth::Reject {
                    proceed_with_methods: Some(next),
                    partial_success: true,
                }
            }
            Ok(Authenticated { account, by, .. }) => {
                self.accept(&shown_user, account, by, method, detail, None);
                Auth::Accept
            }
            Err(failure) => {
                let mut e = self
                    .event(EventKind::LoginFailed, Some(&shown_user))
                    .failed(failure.reason())
                    .attr("method", method)
                    .attr("cause", failure.code())
                    .attr("authenticator", failure.by());
                if let Some(d) = detail {
                    e = e.attr("key", d);
                }
                self.shared.events.emit(e);
                Auth::reject()
            }
        }
    }

    /// Records the login and lets the connection use the account.
    fn accept(
        &mut self,
        shown_user: &str,
        account: Arc<Account>,
        by: String,
        method: &str,
        detail: Option<String>,
        second_factor: Option<&str>,
    ) {
        // The account is the name the method gave (a directory's own spelling); the name
        // as typed is kept beside it when it differs.
        let mut e = self
            .event(EventKind::LoginSucceeded, Some(account.name.as_str()))
            .attr("method", method)
            .attr("authenticator", by);
        if shown_user != account.name.as_str() {
            e = e.attr("login_name", shown_user);
        }
        if let Some(d) = detail {
            e = e.attr("key", d);
        }
        if let Some(f) = second_factor {
            e = e.attr("second_factor", f);
        }
        self.shared.events.emit(e);
        if let Ok(mut name) = self.account_name.lock() {
            *name = Some(account.name.to_string());
        }
        self.account = Some(account);
        self.authenticated.store(true, Ordering::SeqCst);
    }

    /// Starts a session for `protocol` on `channel`, or says why not.
    async fn open_session(&mut self, protocol: Protocol) -> Result<Session, String> {
        let account = self.account.clone().ok_or("not authenticated")?;
        if !account.may_use(protocol) {
            return Err(format!("{protocol} is not allowed for this account"));
        }
        self.channel_seq += 1;
        let info = SessionInfo {
            id: format!("{}-{}", self.id, self.channel_seq),
            service: self.shared.service.clone(),
            protocol,
            remote: Some(self.remote),
            max_file_size: self.shared.max_file_size,
            cut: self.off.clone(),
        };
        Session::open(account, info, self.shared.events.clone())
            .await
            .map_err(|e| e.message)
    }

    /// Records a refused forwarding request (`command.refused`).
    fn forwarding_refused(&self, what: String) {
        let account = self.account_str();
        self.shared.events.emit(
            self.event(EventKind::CommandRefused, account.as_deref())
                .failed(what),
        );
    }

    /// Refuses a request with exit status 1 and a message on stderr, and records it.
    fn refuse(&mut self, channel: ChannelId, what: &str, session: &mut SshSession) {
        let account = self.account_str();
        self.shared.events.emit(
            self.event(EventKind::CommandRefused, account.as_deref())
                .failed(what.to_owned()),
        );
        let _ = session.channel_success(channel);
        let _ = session.extended_data(channel, 1, format!("wharf: {what}\r\n").into_bytes());
        let _ = session.exit_status_request(channel, 1);
        let _ = session.eof(channel);
        let _ = session.close(channel);
        self.channels.remove(&channel);
    }

    /// Hands the channel to an engine task; `run` gets the session, the input and the
    /// channel writer, and returns the exit status.
    fn start<F, Fut>(&mut self, channel: ChannelId, session: Session, ssh: &mut SshSession, run: F)
    where
        F: FnOnce(Session, input::Input, Box<dyn tokio::io::AsyncWrite + Unpin + Send>) -> Fut
            + Send
            + 'static,
        Fut: std::future::Future<Output = u32> + Send,
    {
        let Some(Chan::Open(chan)) = self.channels.remove(&channel) else {
            let _ = ssh.channel_failure(channel);
            return;
        };
        // The read half is dropped: input arrives through `Handler::data` into our own
        // budgeted queue, so russh's loop never waits on the engine.
        let (_read, write) = chan.split();
        let (sender, input) = input::channel();
        self.channels.insert(channel, Chan::Running(sender));
        let _ = ssh.channel_success(channel);
        tokio::spawn(async move {
            let writer = Box::new(write.make_writer());
            let code = run(session, input, writer).await;
            let _ = write.exit_status(code).await;
            let _ = write.eof().await;
            let _ = write.close().await;
        });
    }
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn authentication_banner(&mut self) -> Result<Option<String>, Self::Error> {
        Ok(self.shared.banner.clone())
    }

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(Auth::reject())
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        Ok(self.login(user, Credential::Password(password), None).await)
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        user: &str,
        _submethods: &str,
        response: Option<russh::server::Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        // Only the second step of a login whose first factor was accepted, for that user.
        let Some(pending) = self.pending.as_ref().filter(|p| p.user == user) else {
            return Ok(Auth::reject());
        };
        let Some(mut response) = response else {
            return Ok(Auth::Partial {
                name: "Second factor".into(),
                instructions: "Enter the code from your authenticator app, or a recovery code."
                    .into(),
                prompts: vec![("Verification code: ".into(), false)].into(),
            });
        };
        let code_bytes = response.next().unwrap_or_default();
        let code = String::from_utf8_lossy(&code_bytes[..code_bytes.len().min(64)]).into_owned();
        let shown_user = wharf_core::shown_name(user);
        match self.shared.auth.verify_code(&pending.user, &code).await {
            Ok(()) => {
                let Some(p) = self.pending.take() else {
                    return Ok(Auth::reject());
                };
                self.accept(
                    &shown_user,
                    p.account,
                    p.by,
                    p.method,
                    p.detail,
                    Some("totp"),
                );
                Ok(Auth::Accept)
            }
            Err(failure) => {
                // Recorded as a login with its first factor (password or publickey, as
                // `login.succeeded` names it) whose one-time code failed, like the other
                // protocols, where the code travels with the password; keyboard-interactive
                // is only how SSH carries the code.
                let mut e = self
                    .event(EventKind::LoginFailed, Some(&shown_user))
                    .failed(failure.reason())
                    .attr("method", pending.method)
                    .attr("second_factor", "totp")
                    .attr("cause", failure.code())
                    .attr("authenticator", pending.by.clone());
                if let Some(d) = &pending.detail {
                    e = e.attr("key", d.clone());
                }
                self.shared.events.emit(e);
                // A wrong code is a failure, not a partial success (RFC 4252 §5.1), so it
                // counts towards `max_auth_tries` and the connection ends when they run out.
                let mut next = russh::MethodSet::empty();
                next.push(russh::MethodKind::KeyboardInteractive);
                Ok(Auth::Reject {
                    proceed_with_methods: Some(next),
                    partial_success: false,
                })
            }
        }
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        // Only keys the account holds proceed to a signature; this probe is not an attempt.
        if self.shared.auth.has_key(user, offer.public_key).await {
            Ok(Auth::Accept)
        } else {
            Ok(Auth::reject())
        }
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let print = fingerprint(key.public_key);
        Ok(self
            .login(user, Credential::PublicKey(key.public_key), Some(print))
            .await)
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        // A channel whose engine has finished no longer counts, even when the client never
        // sent EOF or CLOSE for it (russh ignores those once the server closed the channel):
        // rclone opens an exec channel for every checksum on a connection it keeps.
        self.channels
            .retain(|_, c| !matches!(c, Chan::Running(sender) if sender.is_closed()));
        if self.channels.len() >= 10 {
            return Ok(());
        }
        self.channels.insert(channel.id(), Chan::Open(channel));
        reply.accept().await;
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        if name != "sftp" {
            self.refuse(
                channel,
                &format!("subsystem {name:?} is not offered"),
                session,
            );
            return Ok(());
        }
        let order = crate::sftp::SymlinkOrder::of_client(session.remote_sshid());
        match self.open_session(Protocol::Sftp).await {
            Ok(core) => self.start(
                channel,
                core,
                session,
                move |core, input, writer| async move {
                    crate::sftp::run(core, order, input, writer).await
                },
            ),
            Err(why) => self.refuse(channel, &why, session),
        }
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        let command = match exec::parse(data) {
            Ok(c) => c,
            Err(why) => {
                self.refuse(channel, &why, session);
                return Ok(());
            }
        };
        let protocol = match command {
            Command::Checksum { .. } => Protocol::Sftp,
            _ => Protocol::Scp,
        };
        let core = match self.open_session(protocol).await {
            Ok(core) => core,
            Err(why) => {
                self.refuse(channel, &why, session);
                return Ok(());
            }
        };
        self.start(
            channel,
            core,
            session,
            move |core, mut input, mut writer| async move {
                match command {
                    Command::ScpSink {
                        target,
                        recursive,
                        target_is_dir,
                    } => {
                        crate::scp::sink(
                            &core,
                            &mut input,
                            &mut writer,
                            &target,
                            recursive,
                            target_is_dir,
                        )
                        .await
                    }
                    Command::ScpSource {
                        source,
                        recursive,
                        preserve,
                    } => {
                        crate::scp::source(
                            &core,
                            &mut input,
                            &mut writer,
                            &source,
                            recursive,
                            preserve,
                        )
                        .await
                    }
                    Command::Checksum { kind, paths } => {
                        exec::checksum(&core, &mut input, &mut writer, kind, &paths).await
                    }
                }
            },
        );
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        self.refuse(
            channel,
            "this service offers SFTP and SCP only; no shell",
            session,
        );
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        _session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        if let Some(Chan::Running(sender)) = self.channels.get(&channel)
            && !sender.send(data).await
        {
            self.channels.remove(&channel);
        }
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        _session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        if matches!(self.channels.get(&channel), Some(Chan::Running(_))) {
            self.channels.remove(&channel);
        }
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
        Ok(())
    }

    // Requests for what this service never offers (a terminal, an environment, X11, agent
    // and port forwarding) are answered with a failure at once: a client that asked for a
    // reply waits for one (paramiko's `get_pty()` forever). Forwarding is recorded.

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _variable_name: &str,
        _variable_value: &str,
        session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }

    async fn signal(
        &mut self,
        channel: ChannelId,
        _signal: russh::Sig,
        session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _x11_auth_protocol: &str,
        _x11_auth_cookie: &str,
        _x11_screen_number: u32,
        session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        self.forwarding_refused("X11 forwarding refused".into());
        session.channel_failure(channel)
    }

    async fn agent_request(
        &mut self,
        _channel: ChannelId,
        _session: &mut SshSession,
    ) -> Result<bool, Self::Error> {
        self.forwarding_refused("agent forwarding refused".into());
        Ok(false)
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        let shown: String = host_to_connect.chars().take(256).collect();
        self.forwarding_refused(format!(
            "port forwarding refused (to {shown}:{port_to_connect})"
        ));
        reply
            .reject(russh::ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn channel_open_direct_streamlocal(
        &mut self,
        _channel: Channel<Msg>,
        _socket_path: &str,
        reply: ChannelOpenHandle,
        _session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        self.forwarding_refused("socket forwarding refused".into());
        reply
            .reject(russh::ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        _session: &mut SshSession,
    ) -> Result<bool, Self::Error> {
        let shown: String = address.chars().take(256).collect();
        self.forwarding_refused(format!("port forwarding refused ({shown}:{port})"));
        Ok(false)
    }

    async fn streamlocal_forward(
        &mut self,
        _socket_path: &str,
        _session: &mut SshSession,
    ) -> Result<bool, Self::Error> {
        self.forwarding_refused("socket forwarding refused".into());
        Ok(false)
    }
}
