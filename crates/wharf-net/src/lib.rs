//! Listening sockets shared by the protocol front-ends: bind every configured address,
//! report what was bound, and accept until shutdown; and the TLS server configuration
//! (`tls`) the TLS front-ends share; the bounded per-network tables that admission at
//! accept is built from (open connections: [`AddressSlots`]; new connections a minute:
//! [`RateLimiter`]; records held back from a flood: [`Throttle`]); and the one outbound
//! JSON POST (`post`) that the HTTP authentication method and webhooks use; the PROXY
//! protocol header a load balancer sends first (`proxy_header`: the pure parser;
//! `proxied`: reading exactly the header off a socket); and the bounded plain-HTTP listener
//! answering a balancer's health probes (`health`), whose answers the binary composes; and
//! one HTTP connection served to its end (`http_conn`: TLS handshake, hyper's limits) for
//! the HTTP front-ends, whose routes answer the requests.
//!
//! Peers on a dual-stack socket are reported as plain IPv4 addresses (not `::ffff:a.b.c.d`),
//! so every protocol records and compares client addresses the same way. An accept error
//! (out of descriptors, say) backs off briefly and never stops the listener.
//!
//! This crate must never speak a protocol or decide whether a connection is welcome: the
//! tables count and answer "over the limit or not"; the admission in `wharf-auth` decides,
//! once for every front-end. Every table here has a cap and forgets what has gone quiet.

#![forbid(unsafe_code)]

pub mod health;
pub mod http_conn;
pub mod post;
pub mod proxied;
pub mod proxy_header;
mod rate;
mod slots;
mod throttle;
pub mod tls;

pub use rate::RateLimiter;
pub use slots::{AddressSlot, AddressSlots};
pub use throttle::{Passed, Throttle};

use std::net::SocketAddr;
use std::time::Duration;

use std::future::Future;
use tokio::net::{TcpListener, TcpStream};

use tokio::sync::watch;

/// The bound sockets of one service.
pub struct Listeners {
    listeners: Vec<TcpListener>,
}

impl Listeners {
    /// Binds every address; fails on the first that cannot be bound.
    pub async fn bind(addresses: &[SocketAddr]) -> std::io::Result<Listeners> {
        let mut listeners = Vec::with_capacity(addresses.len());
        for address in addresses {
            listeners.push(TcpListener::bind(address).await?);
        }
        Ok(Listeners { listeners })
    }

    /// The addresses actually bound (ports resolved).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// Accepts on every socket until `stop` says to, running what `on_accept` makes of each
    /// connection and its peer address as a task of its own.
    ///
    /// When the server stops (`stop.server`), the listeners close at once; the connections
    /// still open get [`SESSION_GRACE`] to end, then are cut (their tasks dropped, so what
    /// they hold records its own end), and only then does `serve` return: the audit writer,
    /// stopped after the services, sees every record. When only this service is retired
    /// (`stop.retire`: removed or replaced by a new configuration), the listeners close at
    /// once too, but the connections open go on until they end, or until the server stops.
    pub async fn serve<F, Fut>(self, stop: impl Into<Stop>, on_accept: F)
    where
        F: Fn(TcpStream, SocketAddr) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let stop: Stop = stop.into();
        let mut accepts = tokio::task::JoinSet::new();
        for listener in self.listeners {
            let on_accept = on_accept.clone();
            let mut server = stop.server.clone();
            let mut retire = stop.retire.clone();
            accepts.spawn(async move {
                let mut connections = tokio::task::JoinSet::new();
                let retired = loop {
                    tokio::select! {
                        _ = server.changed() => break false,
                        _ = retired(&mut retire) => break true,
                        // Finished connections are reaped as they end, so the set holds only
                        // the open ones.
                        Some(_) = connections.join_next(), if !connections.is_empty() => {}
                        accepted = listener.accept() => match accepted {
                            Ok((socket, remote)) => {
                                // Replies are small writes that must not wait for the peer's
                                // delayed ACK (Nagle): 40 ms per FTP command otherwise.
                                let _ = socket.set_nodelay(true);
                                let remote = SocketAddr::new(remote.ip().to_canonical(), remote.port());
                                connections.spawn(on_accept(socket, remote));
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "accept failed; retrying");
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                        },
                    }
                };
                drop(listener);
                if retired && !*server.borrow() {
                    // Retired: what is open finishes, unless the server stops meanwhile.
                    tokio::select! {
                        _ = async { while connections.join_next().await.is_some() {} } => return,
                        _ = server.changed() => {}
                    }
                }
                let ended = tokio::time::timeout(SESSION_GRACE, async {
                    while connections.join_next().await.is_some() {}
                })
                .await;
                if ended.is_err() {
                    connections.shutdown().await;
                }
            });
        }
        while accepts.join_next().await.is_some() {}
    }
}

/// What stops a service: the server stopping (connections get [`SESSION_GRACE`]), or this
/// service alone being retired (connections go on to their end).
#[derive(Clone)]
pub struct Stop {
    /// Turns true when the server stops.
    pub server: watch::Receiver<bool>,
    /// Turns true (or its sender goes) when this service is retired.
    pub retire: Option<watch::Receiver<bool>>,
}

impl From<watch::Receiver<bool>> for Stop {
    fn from(server: watch::Receiver<bool>) -> Stop {
        Stop {
            server,
            retire: None,
        }
    }
}

/// Resolves when `retire` says the service is retired; never without one.
async fn retired(retire: &mut Option<watch::Receiver<bool>>) {
    match retire {
        Some(rx) => loop {
            if *rx.borrow_and_update() || rx.changed().await.is_err() {
                return;
            }
        },
        None => std::future::pending().await,
    }
}

/// How long open connections may go on after their service stops before they are cut.
pub const SESSION_GRACE: Duration = Duration::from_secs(5);
