//! The FTP listener: limits, login grace, and one task per connection.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use wharf_auth::{Admission, Authenticator, Limits, ProxyPolicy};
use wharf_core::EventBus;
use wharf_net::Listeners;
use wharf_types::Protocol;

/// How a service uses TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain FTP only; AUTH is refused.
    Off,
    /// AUTH TLS is offered; plain logins and data are allowed too.
    Optional,
    /// No login and no data connection before TLS (AUTH TLS, then PROT P).
    Required,
    /// TLS from the first byte (implicit FTPS); data connections must be PROT P.
    Implicit,
}

/// One FTP service's settings.
#[derive(Clone)]
pub struct FtpConfig {
    /// Service name (for events).
    pub name: String,
    /// Addresses to listen on.
    pub addresses: Vec<SocketAddr>,
    /// Passive data ports; `None` lets the system choose.
    pub passive_ports: Option<RangeInclusive<u16>>,
    /// Close a control connection idle this long.
    pub idle_timeout: Duration,
    /// Close a connection not logged in within this time.
    pub login_grace_time: Duration,
    /// Wait this long for a data connection.
    pub data_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Control connections at once from one network (the ban engine's: an address, an
    /// IPv6 /64). Data connections do not count.
    pub max_per_ip: usize,
    /// Failed logins before the control connection is closed.
    pub max_auth_tries: usize,
    /// Allow PORT/EPRT (active mode) to the control peer.
    pub active_mode: bool,
    /// Let data connections go to, or come from, another address than the control
    /// connection's (server-to-server "FXP" transfers). Off: FTP bounce and port stealing
    /// are refused.
    pub allow_foreign_data: bool,
    /// The IPv4 address announced in PASV replies (a public address behind NAT).
    pub passive_address: Option<std::net::Ipv4Addr>,
    /// TLS policy.
    pub tls: TlsMode,
    /// The certificate and key, when `tls` is not `Off`.
    pub tls_config: Option<Arc<rustls::ServerConfig>>,
    /// A TLS data connection must resume the control connection's session.
    pub require_tls_session_reuse: bool,
    /// Largest file a session of this service may make, in bytes (`None`: the core's
    /// default, or what the account and its groups set).
    pub max_file_size: Option<u64>,
    /// Behind load balancers speaking the PROXY protocol: the balancers and the wait for
    /// their header (`None`: clients connect directly). Passive data connections come
    /// through the balancers too, each with its own header.
    pub proxy: Option<ProxyPolicy>,
}

impl FtpConfig {
    /// The protocol recorded for a connection that starts on this service.
    pub(crate) fn initial_protocol(&self) -> Protocol {
        if self.tls == TlsMode::Implicit {
            Protocol::Ftps
        } else {
            Protocol::Ftp
        }
    }
}

/// A bound FTP service.
pub struct FtpService {
    config: Arc<FtpConfig>,
    listeners: Listeners,
}

pub(crate) struct Shared {
    pub(crate) config: Arc<FtpConfig>,
    pub(crate) auth: Authenticator,
    pub(crate) events: EventBus,
    /// TLS ticket keys, one per control connection.
    pub(crate) families: Arc<crate::tickets::Families>,
    admission: Admission,
}

impl FtpService {
    /// Binds every configured address.
    pub async fn bind(config: FtpConfig) -> std::io::Result<FtpService> {
        let listeners = Listeners::bind(&config.addresses).await?;
        Ok(FtpService {
            config: Arc::new(config),
            listeners,
        })
    }

    /// The addresses actually bound.
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
        let admission = Admission::new(
            &auth,
            events.clone(),
            &self.config.name,
            self.config.initial_protocol(),
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
            config: Arc::clone(&self.config),
            auth,
            events,
            families: Arc::default(),
            admission,
        });
        self.listeners
            .serve(shutdown, move |socket, remote| {
                accept(socket, remote, &shared)
            })
            .await;
    }
}

/// Tells a refused client why (421) before closing; implicit FTPS clients expect TLS first,
/// so they only see the close.
fn turn_away(socket: tokio::net::TcpStream, shared: &Shared, why: &'static str) {
    if shared.config.tls == TlsMode::Implicit {
        return;
    }
    tokio::spawn(async move {
        let mut socket = socket;
        let reply = wharf_ftp_proto::Reply::new(421, why).encode();
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::io::AsyncWriteExt::write_all(&mut socket, &reply),
        )
        .await;
    });
}

/// Control connections only: data connections arrive on their own listeners and never
/// pass through here.
/// Behind a balancer, the PROXY header is read before the greeting and names the client
/// the connection is admitted, and its session run, for.
fn accept(
    socket: tokio::net::TcpStream,
    socket_peer: SocketAddr,
    shared: &Arc<Shared>,
) -> impl std::future::Future<Output = ()> + Send + use<> {
    let shared = Arc::clone(shared);
    async move {
        let mut socket = socket;
        let admitted = match shared
            .admission
            .admit_proxied(&mut socket, socket_peer)
            .await
        {
            Ok(admitted) => admitted,
            Err(why) => {
                turn_away(socket, &shared, why.reply());
                return;
            }
        };
        let id = admitted.id().to_owned();
        let remote = admitted.peer();
        let _held = admitted;
        crate::session::run(socket, remote, id, shared).await;
    }
}
