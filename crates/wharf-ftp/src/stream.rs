//! A connection that is plain TCP or TLS over TCP: the control connection turns from one
//! into the other at `AUTH TLS`, and a data connection is either depending on `PROT`.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use wharf_net::tls::TlsStream;

/// Plain or TLS.
pub(crate) enum MaybeTls {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Between taking the plain stream for a handshake and putting the TLS one back.
    Gone,
}

impl MaybeTls {
    /// True when the TLS handshake resumed an earlier session (RFC 4217 §10.2).
    pub(crate) fn resumed(&self) -> bool {
        match self {
            MaybeTls::Tls(s) => {
                s.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
            }
            _ => false,
        }
    }
}

impl MaybeTls {
    /// After a short read on a plain control connection, picks up bytes the readiness
    /// tracking would not report: the urgent byte of a Telnet synch (`send(.., MSG_OOB)`
    /// marks the last byte of `ABOR\r\n` urgent) arrives inline (SO_OOBINLINE) but without
    /// a new readiness event, so without this the ABOR line would wait for the next packet.
    pub(crate) fn read_urgent_tail(&self, into: &mut Vec<u8>) {
        let MaybeTls::Plain(tcp) = self else {
            return;
        };
        let mut tail = [0u8; 512];
        for _ in 0..4 {
            match rustix::net::recv(tcp, &mut tail, rustix::net::RecvFlags::DONTWAIT) {
                Ok((n, _)) if n > 0 => into.extend_from_slice(&tail[..n]),
                _ => return,
            }
        }
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "connection is being upgraded")
}

impl AsyncRead for MaybeTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            MaybeTls::Gone => Poll::Ready(Err(gone())),
        }
    }
}

impl AsyncWrite for MaybeTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            MaybeTls::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            MaybeTls::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            MaybeTls::Gone => Poll::Ready(Err(gone())),
        }
    }
}
