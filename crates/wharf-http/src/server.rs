//! The listener: admission, then each connection served by `wharf_net::http_conn` (TLS on
//! HTTPS services, hyper's limits and timeouts), and connection events.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::service::TowerToHyperService;
use wharf_auth::{Admission, Authenticator, Limits, ProxyPolicy};
use wharf_core::dav_state::DavState;
use wharf_core::web_sessions::{MemoryWebSessions, WebSessionStore};
use wharf_core::{ClosingRecord, Event, EventBus, EventKind};
use wharf_net::Listeners;
use wharf_net::http_conn::{self, Ending};
use wharf_net::tls::TlsAcceptor;
use wharf_types::Protocol;

use crate::sessions::Sessions;

/// One HTTP or HTTPS service's settings.
#[derive(Clone)]
pub struct HttpConfig {
    /// Service name (for events).
    pub name: String,
    /// Addresses to listen on.
    pub addresses: Vec<SocketAddr>,
    /// TLS (HTTPS) when set.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Connections served at once.
    pub max_connections: usize,
    /// Connections at once from one network (the ban engine's: an address, an IPv6 /64).
    pub max_per_ip: usize,
    /// Time to receive a request's headers (also the keep-alive idle time).
    pub header_timeout: Duration,
    /// Time between two pieces of a request body.
    pub body_timeout: Duration,
    /// Largest upload accepted, in bytes.
    pub max_upload_size: u64,
    /// Largest file a session of this service may make, in bytes (`None`: the core's
    /// default, or what the account and its groups set).
    pub max_file_size: Option<u64>,
    /// A logged-in client idle this long must log in again.
    pub session_timeout: Duration,
    /// A token or browser session this long after its login ends, used or not.
    pub session_lifetime: Duration,
    /// HTTP Basic credentials are remembered this long, and an LDAP directory's or HTTP
    /// authentication service's answer about a kept login is trusted as long.
    pub recheck_after: Duration,
    /// HTTP only: answer every request with a redirect to HTTPS on this port.
    pub redirect_to_https: Option<u16>,
    /// Behind load balancers speaking the PROXY protocol: the balancers and the wait for
    /// their header (`None`: clients connect directly).
    pub proxy: Option<ProxyPolicy>,
}

impl HttpConfig {
    pub(crate) fn protocol(&self) -> Protocol {
        if self.tls.is_some() {
            Protocol::Https
        } else {
            Protocol::Http
        }
    }
}

#[cfg(test)]
pub(crate) fn test_config() -> HttpConfig {
    HttpConfig {
        name: "http-test".into(),
        addresses: Vec::new(),
        tls: None,
        max_connections: 1,
        max_per_ip: 1,
        header_timeout: Duration::from_secs(5),
        body_timeout: Duration::from_secs(5),
        max_upload_size: 1 << 20,
        max_file_size: None,
        session_timeout: Duration::from_secs(60),
        session_lifetime: crate::sessions::DEFAULT_SESSION_LIFETIME,
        recheck_after: crate::sessions::DEFAULT_RECHECK_AFTER,
        redirect_to_https: None,
        proxy: None,
    }
}

/// What every handler shares.
pub(crate) struct Shared {
    pub(crate) config: HttpConfig,
    pub(crate) auth: Authenticator,
    pub(crate) events: EventBus,
    pub(crate) sessions: Sessions,
    /// WebDAV locks and dead properties (none: WebDAV offers neither, class 1 only).
    pub(crate) dav: Option<DavState>,
}

impl Shared {
    pub(crate) fn event(&self, kind: EventKind, conn: &Conn) -> Event {
        let mut e = Event::new(kind);
        e.service = Some(self.config.name.clone());
        e.protocol = Some(self.config.protocol());
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

/// A bound HTTP or HTTPS service.
pub struct HttpService {
    config: HttpConfig,
    listeners: Listeners,
    dav: Option<DavState>,
    web_sessions: Option<Arc<dyn WebSessionStore>>,
}

impl HttpService {
    /// Binds every configured address.
    pub async fn bind(config: HttpConfig) -> std::io::Result<HttpService> {
        let listeners = Listeners::bind(&config.addresses).await?;
        Ok(HttpService {
            config,
            listeners,
            dav: None,
            web_sessions: None,
        })
    }

    /// Offers WebDAV locks and dead properties, kept where `dav` keeps them.
    pub fn with_dav_state(mut self, dav: DavState) -> HttpService {
        self.dav = Some(dav);
        self
    }

    /// Keeps tokens, browser sessions and pending logins in `store` (every node of a
    /// cluster), rather than in this process alone.
    pub fn with_web_sessions(mut self, store: Arc<dyn WebSessionStore>) -> HttpService {
        self.web_sessions = Some(store);
        self
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
            self.config.protocol(),
            Limits {
                max_connections: self.config.max_connections,
                max_per_ip: self.config.max_per_ip,
            },
        );
        let admission = match &self.config.proxy {
            Some(proxy) => admission.behind_proxies(proxy.clone()),
            None => admission,
        };
        let tls = self.config.tls.clone().map(TlsAcceptor::from);
        let shared = Arc::new(Shared {
            sessions: Sessions::new(
                self.web_sessions
                    .unwrap_or_else(|| Arc::new(MemoryWebSessions::default())),
                &self.config.name,
                self.config.session_timeout,
            )
            .with_limits(self.config.session_lifetime, self.config.recheck_after),
            config: self.config,
            auth,
            events,
            dav: self.dav,
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
                    // Refused before the TLS handshake: a refused client costs no handshake.
                    // Behind a balancer, its PROXY header comes first and names the client.
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
    tls: Option<TlsAcceptor>,
) {
    shared
        .events
        .emit(shared.event(EventKind::ConnectionOpened, &conn));
    // Sent at the end however the connection ends (a server stop cuts it).
    let closing = ClosingRecord::new(
        shared.event(EventKind::ConnectionClosed, &conn),
        shared.events.clone(),
    );
    let service = TowerToHyperService::new(router.layer(axum::Extension(conn.clone())));
    let ending =
        http_conn::serve(socket, tls.as_ref(), shared.config.header_timeout, service).await;
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
    let reason = ending.reason();
    closing.close(reason, |_| {});
}
