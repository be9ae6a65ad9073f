//! One HTTP connection served to its end, for every HTTP front-end (the file service and
//! the Manager): the TLS handshake within a deadline on HTTPS, then hyper's HTTP/1.1 and
//! HTTP/2 with bounded headers, header and keep-alive timeouts and a bounded number of
//! HTTP/2 streams.
//!
//! It answers no request itself: the caller's service does, and the caller records what
//! the [`Ending`] says. It must never decide who may connect (admission does that before
//! the socket gets here).

use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;

use crate::tls::TlsAcceptor;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The client closed it.
    Closed,
    /// hyper refused a malformed, oversized or too slow request (answered 400, 431 or 408
    /// before any route ran): a protocol error of the client's.
    Refused(String),
    /// It ended otherwise (reset, server stop, an I/O error).
    Ended(String),
    /// The TLS handshake failed or did not finish in time; no request was read.
    TlsFailed(String),
}

impl Ending {
    /// The reason, as a connection's closing record gives it.
    pub fn reason(&self) -> String {
        match self {
            Ending::Closed => "client closed the connection".to_owned(),
            Ending::Refused(why) | Ending::Ended(why) => format!("connection ended: {why}"),
            Ending::TlsFailed(why) => why.clone(),
        }
    }
}

fn ending(result: Result<(), BoxError>) -> Ending {
    let Err(e) = result else {
        return Ending::Closed;
    };
    if let Some(h) = e.downcast_ref::<hyper::Error>()
        && (h.is_parse() || h.is_parse_too_large() || h.is_timeout())
    {
        return Ending::Refused(format!("request refused: {h}"));
    }
    Ending::Ended(e.to_string())
}

/// Serves `socket` (through `tls` when given) with `service` until the connection ends.
/// `header_timeout` bounds the TLS handshake, each request's headers and a keep-alive wait.
pub async fn serve<S, B>(
    socket: TcpStream,
    tls: Option<&TlsAcceptor>,
    header_timeout: Duration,
    service: S,
) -> Ending
where
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(64 * 1024)
        .max_headers(100);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(64 * 1024)
        .max_concurrent_streams(64)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    match tls {
        None => ending(
            builder
                .serve_connection(TokioIo::new(socket), service)
                .await,
        ),
        Some(acceptor) => match tokio::time::timeout(header_timeout, acceptor.accept(socket)).await
        {
            Ok(Ok(stream)) => ending(
                builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await,
            ),
            Ok(Err(e)) => Ending::TlsFailed(format!("TLS handshake failed: {e}")),
            Err(_) => Ending::TlsFailed("TLS handshake did not finish in time".to_owned()),
        },
    }
}

/// The value of cookie `name` in a request's `Cookie` headers, if sent (the file service's
/// and the Manager's sessions are both found this way).
pub fn cookie<'a>(headers: &'a hyper::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(hyper::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}
