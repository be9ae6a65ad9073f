//! The FTP listener: limits, login grace, and one task per connection.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use wharf_auth::LocalAuthenticator;
use wharf_core::{Event, EventBus, EventKind};
use wharf_net::Listeners;
use wharf_types::Protocol;

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
    /// Connections at once from one address.
    pub max_per_ip: usize,
    /// Allow PORT/EPRT (active mode) to the control peer.
    pub active_mode: bool,
}

/// A bound FTP service.
pub struct FtpService {
    config: Arc<FtpConfig>,
    listeners: Listeners,
}

pub(crate) struct Shared {
    pub(crate) config: Arc<FtpConfig>,
    pub(crate) auth: LocalAuthenticator,
    pub(crate) events: EventBus,
    per_ip: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
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
        auth: LocalAuthenticator,
        events: EventBus,
        shutdown: watch::Receiver<bool>,
    ) {
        let shared = Arc::new(Shared {
            config: Arc::clone(&self.config),
            auth,
            events,
            per_ip: std::sync::Mutex::new(std::collections::HashMap::new()),
        });
        let limit = Arc::new(Semaphore::new(self.config.max_connections));
        self.listeners
            .serve(shutdown, move |socket, remote| {
                accept(socket, remote, &shared, &limit)
            })
            .await;
    }
}

fn accept(
    socket: tokio::net::TcpStream,
    remote: SocketAddr,
    shared: &Arc<Shared>,
    limit: &Arc<Semaphore>,
) {
    let id = format!("{:016x}", rand::random::<u64>());
    let mut refused = Event::new(EventKind::ConnectionRefused);
    refused.service = Some(shared.config.name.clone());
    refused.protocol = Some(Protocol::Ftp);
    refused.session = Some(id.clone());
    refused.remote = Some(remote);
    let Ok(permit) = Arc::clone(limit).try_acquire_owned() else {
        shared.events.emit(refused.failed("too many connections"));
        drop(socket);
        return;
    };
    {
        let Ok(mut per_ip) = shared.per_ip.lock() else {
            return;
        };
        let count = per_ip.entry(remote.ip()).or_insert(0);
        if *count >= shared.config.max_per_ip {
            shared
                .events
                .emit(refused.failed("too many connections from this address"));
            return;
        }
        *count += 1;
    }
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        let _permit = permit;
        crate::session::run(socket, remote, id, Arc::clone(&shared)).await;
        if let Ok(mut per_ip) = shared.per_ip.lock()
            && let Some(count) = per_ip.get_mut(&remote.ip())
        {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&remote.ip());
            }
        }
    });
}
