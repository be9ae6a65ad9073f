//! Reading a PROXY protocol header off a socket just accepted from a load balancer: exactly
//! the header's bytes, within a deadline, so the client's first byte (an SSH banner, a TLS
//! ClientHello, an HTTP request) is still there for the protocol.
//!
//! The socket is peeked, the bytes judged by [`crate::proxy_header::parse`], and only bytes
//! known to belong to the header are consumed: never more than [`MAX_HEADER`]. This module
//! never decides whether the balancer may speak for a client (the admission does) and never
//! reads past the header.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::proxy_header::{self, Header, HeaderError, MAX_HEADER, Progress};

/// Why no header could be read.
#[derive(Debug, thiserror::Error)]
pub enum ProxyReadError {
    /// The bytes are not a header (missing, malformed, oversized).
    #[error(transparent)]
    Header(#[from] HeaderError),
    /// No whole header within the deadline.
    #[error("no PROXY protocol header within {0:?}")]
    Timeout(Duration),
    /// The balancer closed before a whole header.
    #[error("connection closed before a whole PROXY protocol header")]
    Closed,
    /// Reading failed.
    #[error("reading the PROXY protocol header: {0}")]
    Io(#[from] std::io::Error),
}

/// A header read off a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxiedPeer {
    /// The client the header names, or the socket's peer for `LOCAL` / `UNKNOWN`.
    pub client: SocketAddr,
    /// 1 or 2.
    pub version: u8,
}

/// Reads the header at the start of `socket`, whose peer is `socket_peer`, waiting at most
/// `wait` for all of it. Consumes the header's bytes and nothing after them.
pub async fn read_header(
    socket: &mut TcpStream,
    socket_peer: SocketAddr,
    wait: Duration,
) -> Result<ProxiedPeer, ProxyReadError> {
    tokio::time::timeout(wait, read(socket, socket_peer))
        .await
        .map_err(|_| ProxyReadError::Timeout(wait))?
}

async fn read(
    socket: &mut TcpStream,
    socket_peer: SocketAddr,
) -> Result<ProxiedPeer, ProxyReadError> {
    let mut got: Vec<u8> = Vec::with_capacity(MAX_HEADER);
    let mut window = [0u8; MAX_HEADER];
    loop {
        let room = MAX_HEADER - got.len();
        if room == 0 {
            return Err(HeaderError::TooLong.into());
        }
        let seen = socket.peek(&mut window[..room]).await?;
        if seen == 0 {
            return Err(ProxyReadError::Closed);
        }
        let before = got.len();
        got.extend_from_slice(&window[..seen]);
        match proxy_header::parse(&got)? {
            Progress::Complete(parsed) => {
                // What was consumed earlier is all header; take the rest of it only.
                let rest = parsed.length.saturating_sub(before);
                socket.read_exact(&mut window[..rest]).await?;
                let client = match parsed.header {
                    Header::Proxied { source, .. } => {
                        SocketAddr::new(source.ip().to_canonical(), source.port())
                    }
                    Header::Local => socket_peer,
                };
                return Ok(ProxiedPeer {
                    client,
                    version: parsed.version,
                });
            }
            // Every byte seen belongs to the header: consume them, and the next peek
            // waits for more.
            Progress::Incomplete => {
                socket.read_exact(&mut window[..seen]).await?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, peer) = listener.accept().await.unwrap();
        (client, server, peer)
    }

    #[tokio::test]
    async fn a_header_split_over_writes_is_read_and_what_follows_is_left() {
        let (mut client, mut server, peer) = pair().await;
        let writer = tokio::spawn(async move {
            for piece in [
                &b"PROXY TCP4 19"[..],
                b"8.51.100.4 10.0.0.1 4",
                b"4 22\r",
                b"\nSSH-2.0",
            ] {
                client.write_all(piece).await.unwrap();
                client.flush().await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            client
        });
        let got = read_header(&mut server, peer, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(got.client, "198.51.100.4:44".parse().unwrap());
        assert_eq!(got.version, 1);
        let _client = writer.await.unwrap();
        let mut rest = [0u8; 7];
        server.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"SSH-2.0");
    }

    #[tokio::test]
    async fn silence_times_out_and_a_missing_header_is_refused_at_once() {
        let (_client, mut server, peer) = pair().await;
        let err = read_header(&mut server, peer, Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(matches!(err, ProxyReadError::Timeout(_)), "{err}");

        let (mut client, mut server, peer) = pair().await;
        client.write_all(b"SSH-2.0-OpenSSH\r\n").await.unwrap();
        let err = read_header(&mut server, peer, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ProxyReadError::Header(HeaderError::Missing)),
            "{err}"
        );
    }

    #[tokio::test]
    async fn local_keeps_the_sockets_address() {
        let (mut client, mut server, peer) = pair().await;
        client
            .write_all(b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00")
            .await
            .unwrap();
        let got = read_header(&mut server, peer, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(got.client, peer);
        assert_eq!(got.version, 2);
    }
}
