//! The Manager's listener: the admission gate (bans, rates, limits, the networks it is open
//! to), TLS and HTTP through `wharf_net::http_conn`, connection records; and what every
//! handler shares.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::service::TowerToHyperService;
use tokio::sync::watch;
use wharf_admin::Operations;
use wharf_auth::{Admission, Authenticator, Limits, ProxyPolicy};
use wharf_core::web_sessions::WebSessionStore;
use wharf_core::{ClosingRecord, Event, EventBus, EventKind};
use wharf_net::Listeners;
use wharf_net::http_conn::{self, Ending};
use wharf_net::tls::TlsAcceptor;
use wharf_types::{IpNetwork, Protocol};

/// The Manager service's settings.
#[derive(Clone)]
pub struct ManagerConfig {
    /// Service name (for events, and the kept logins' service).
    pub name: String,
    /// Addresses to listen on.
    pub addresses: Vec<SocketAddr>,
    /// TLS: the Manager speaks HTTPS only.
    pub tls: Arc<rustls::ServerConfig>,
    /// Connections served at once.
    pub max_connections: usize,
    /// Connections at once from one network.
    pub max_per_ip: usize,
    /// Time for a TLS handshake and a request's headers (also the keep-alive wait).
    pub header_timeout: Duration,
    /// A browser session unused this long ends.
    pub session_timeout: Duration,
    /// A browser session ends this long after its login, used or not.
    pub session_lifetime: Duration,
    /// The networks the Manager is open to (empty: every network).
    pub allow_from: Vec<IpNetwork>,
    /// Behind load balancers speaking the PROXY protocol.
    pub proxy: Option<ProxyPolicy>,
}

/// A service of the node, as the dashboard shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServiceInfo {
    /// Its name.
    pub name: String,
    /// Its type (`ssh`, `ftp`, `https`, `manager`…).
    pub kind: String,
    /// The addresses it listens on.
    pub addresses: Vec<SocketAddr>,
    /// `running`, `stopped` or `failed: why`.
    pub state: String,
}

/// What every handler shares.
pub(crate) struct Shared {
    pub(crate) config: ManagerConfig,
    pub(crate) ops: Operations,
    pub(crate) events: EventBus,
    pub(crate) sessions: Arc<dyn WebSessionStore>,
    pub(crate) services: watch::Receiver<Vec<ServiceInfo>>,
    /// The node's name.
    pub(crate) node: String,
    /// The node's configuration file.
    pub(crate) configuration: Arc<dyn crate::Configuration>,
}

impl Shared {
    pub(crate) fn event(&self, kind: EventKind, conn: &Conn) -> Event {
        let mut e = Event::new(kind);
        e.service = Some(self.config.name.clone());
        e.protocol = Some(Protocol::Admin);
        e.session = Some(conn.id.clone());
        e.remote = Some(conn.remote);
        e
    }
}

/// The connection a request came on (a request extension).
#[derive(Clone, Debug)]
pub(crate) struct Conn {
    pub(crate) id: String,
    pub(crate) remote: SocketAddr,
}

/// What a Manager works on: the node's operations, its event bus, the store's kept
/// logins, its services as they stand, its name and its configuration file.
#[derive(Clone)]
pub struct Node {
    /// Carries out what administrators ask.
    pub ops: Operations,
    /// The node's event bus.
    pub events: EventBus,
    /// Where browser sessions are kept (the store: every node).
    pub sessions: Arc<dyn WebSessionStore>,
    /// The node's services as they stand.
    pub services: watch::Receiver<Vec<ServiceInfo>>,
    /// The node's name.
    pub name: String,
    /// The node's configuration file.
    pub configuration: Arc<dyn crate::Configuration>,
}

/// A bound Manager service.
pub struct ManagerService {
    config: ManagerConfig,
    listeners: Listeners,
}

impl ManagerService {
    /// Binds every configured address.
    pub async fn bind(config: ManagerConfig) -> std::io::Result<ManagerService> {
        let listeners = Listeners::bind(&config.addresses).await?;
        Ok(ManagerService { config, listeners })
    }

    /// The addresses actually bound.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.local_addrs()
    }

    /// Serves until `shutdown` says to. `node` is what the Manager works on.
    pub async fn run(self, auth: Authenticator, node: Node, shutdown: impl Into<wharf_net::Stop>) {
        let Node {
            ops,
            events,
            sessions,
            services,
            name: node,
            configuration,
        } = node;
        let admission = Admission::new(
            &auth,
            events.clone(),
            &self.config.name,
            Protocol::Admin,
            Limits {
                max_connections: self.config.max_connections,
                max_per_ip: self.config.max_per_ip,
            },
        )
        .only_from(self.config.allow_from.clone());
        let admission = match &self.config.proxy {
            Some(proxy) => admission.behind_proxies(proxy.clone()),
            None => admission,
        };
        let tls = TlsAcceptor::from(Arc::clone(&self.config.tls));
        let shared = Arc::new(Shared {
            config: self.config,
            ops,
            events,
            sessions,
            services,
            node,
            configuration,
        });
        let router = crate::routes::router(Arc::clone(&shared));
        self.listeners
            .serve(shutdown, move |socket, socket_peer| {
                let shared = Arc::clone(&shared);
                let router = router.clone();
                let tls = tls.clone();
                let admission = admission.clone();
                async move {
                    let mut socket = socket;
                    let Ok(admitted) = admission.admit_proxied(&mut socket, socket_peer).await
                    else {
                        return;
                    };
                    let conn = Conn {
                        id: admitted.id().to_owned(),
                        remote: admitted.peer(),
                    };
                    let _held = admitted;
                    serve_connection(socket, conn, shared, router, tls).await;
                }
            })
            .await;
    }
}

async fn serve_connection(
    socket: tokio::net::TcpStream,
    conn: Conn,
    shared: Arc<Shared>,
    router: axum::Router,
    tls: TlsAcceptor,
) {
    shared
        .events
        .emit(shared.event(EventKind::ConnectionOpened, &conn));
    let closing = ClosingRecord::new(
        shared.event(EventKind::ConnectionClosed, &conn),
        shared.events.clone(),
    );
    let service = TowerToHyperService::new(router.layer(axum::Extension(conn.clone())));
    let ending = http_conn::serve(socket, Some(&tls), shared.config.header_timeout, service).await;
    match &ending {
        Ending::Refused(why) => shared.events.emit(
            shared
                .event(EventKind::ProtocolError, &conn)
                .failed(why.clone()),
        ),
        Ending::TlsFailed(why) => shared.events.emit(
            shared
                .event(EventKind::TlsFailed, &conn)
                .failed(why.clone()),
        ),
        Ending::Closed | Ending::Ended(_) => {}
    }
    closing.close(ending.reason(), |_| {});
}
