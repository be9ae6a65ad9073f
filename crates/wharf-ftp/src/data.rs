//! Data connections: a passive listener waiting for the client, or an active connection
//! to it, with the peer address checked either way.
//!
//! Behind load balancers speaking the PROXY protocol, a passive data connection comes
//! through a balancer too (HAProxy `send-proxy-v2` on the passive port range): it must come
//! from a listed balancer and start with its own header, and the address that header names
//! is the one compared with the control connection's client. Active connections go from
//! this node straight to the client's address (the one the control connection's header
//! named), as without a balancer.

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use wharf_auth::ProxyPolicy;
use wharf_net::proxied::{ProxyReadError, read_header};

/// How the next transfer's data connection is made.
pub(crate) enum DataPlan {
    /// Nothing arranged: the transfer gets 425.
    None,
    /// We listen; the client connects.
    Passive(TcpListener),
    /// We connect to the client's address.
    Active(SocketAddr),
}

/// Binds a passive listener on `ip`, on a random free port of `ports` (or any port).
pub(crate) async fn passive_listener(
    ip: IpAddr,
    ports: &Option<RangeInclusive<u16>>,
) -> std::io::Result<TcpListener> {
    let Some(range) = ports else {
        return TcpListener::bind(SocketAddr::new(ip, 0)).await;
    };
    let span = u32::from(range.end() - range.start()) + 1;
    // Random start, then walk the range: ports are not predictable (RFC 2577).
    let first = rand::random_range(0..span);
    for i in 0..span.min(1000) {
        let port = *range.start() + u16::try_from((first + i) % span).unwrap_or(0);
        if let Ok(l) = TcpListener::bind(SocketAddr::new(ip, port)).await {
            return Ok(l);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        "no free passive port",
    ))
}

/// Why a data connection could not be made; each gets 425 and an event.
pub(crate) enum DataError {
    /// No PASV/EPSV/PORT/EPRT before the transfer.
    NotArranged,
    /// The client did not connect in time.
    Timeout,
    /// A connection came from another address than the control peer (port stealing).
    Stolen(SocketAddr),
    /// Behind balancers: a connection from an address not listed in `proxy_from`.
    Unproxied(SocketAddr),
    /// Behind balancers: a connection without a valid PROXY header.
    ProxyHeader(SocketAddr, ProxyReadError),
    /// Connecting or accepting failed.
    Io(std::io::Error),
}

impl DataError {
    pub(crate) fn message(&self) -> String {
        match self {
            DataError::NotArranged => "use PASV, EPSV, PORT or EPRT first".to_owned(),
            DataError::Timeout => "data connection not made in time".to_owned(),
            DataError::Stolen(from) => {
                format!("data connection from {from} refused: not the control connection's address")
            }
            DataError::Unproxied(from) => {
                format!(
                    "data connection from {from} refused: not a load balancer listed in proxy_from"
                )
            }
            DataError::ProxyHeader(from, e) => {
                format!("data connection from {from} refused: {e}")
            }
            DataError::Io(e) => format!("cannot open data connection: {e}"),
        }
    }
}

/// Opens the data connection the plan describes.
/// A passive connection must come from `control_peer` unless `allow_foreign`; behind
/// balancers (`proxy`), from a listed balancer whose header names `control_peer`.
pub(crate) async fn connect(
    plan: DataPlan,
    control_peer: IpAddr,
    allow_foreign: bool,
    timeout: Duration,
    proxy: Option<&ProxyPolicy>,
) -> Result<TcpStream, DataError> {
    match plan {
        DataPlan::None => Err(DataError::NotArranged),
        DataPlan::Passive(listener) => {
            let accepted = tokio::time::timeout(timeout, listener.accept())
                .await
                .map_err(|_| DataError::Timeout)?
                .map_err(DataError::Io)?;
            let (mut stream, from) = accepted;
            let from = SocketAddr::new(from.ip().to_canonical(), from.port());
            let client = match proxy {
                None => from,
                Some(proxy) if !proxy.trusts(from.ip()) => return Err(DataError::Unproxied(from)),
                Some(proxy) => {
                    read_header(&mut stream, from, proxy.wait)
                        .await
                        .map_err(|e| DataError::ProxyHeader(from, e))?
                        .client
                }
            };
            if !allow_foreign && client.ip().to_canonical() != control_peer {
                return Err(DataError::Stolen(client));
            }
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        DataPlan::Active(addr) => {
            let socket = if addr.is_ipv4() {
                TcpSocket::new_v4()
            } else {
                TcpSocket::new_v6()
            }
            .map_err(DataError::Io)?;
            let stream = tokio::time::timeout(timeout, socket.connect(addr))
                .await
                .map_err(|_| DataError::Timeout)?
                .map_err(DataError::Io)?;
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
    }
}
