//! The health listener a load balancer probes: plain HTTP/1.1, `GET` or `HEAD` on `/live`
//! and `/ready`, each answered 200 or 503 with a small JSON body the caller composes.
//!
//! Everything is bounded, since anyone who reaches the port can call it: at most
//! [`MAX_CONNECTIONS`] connections at once (more are closed unanswered), one request per
//! connection, request headers within [`HEADER_TIMEOUT`] and hyper's smallest buffer, the
//! whole exchange within [`EXCHANGE_TIMEOUT`]; a request body is never read. This module
//! knows nothing of what "ready" means: the caller's `answer` decides, and must bound its
//! own waiting.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 32;
/// Time for a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// Time for a whole exchange, answer included.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a balancer asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// `/live`: is the process up and answering?
    Live,
    /// `/ready`: should new connections be sent here?
    Ready,
}

/// The answer to a probe.
#[derive(Debug, Clone)]
pub struct Answer {
    /// 200 when true, 503 otherwise.
    pub ok: bool,
    /// A JSON document.
    pub body: String,
}

/// The bound health socket.
pub struct HealthListener {
    listener: TcpListener,
}

impl HealthListener {
    /// Binds `address`.
    pub async fn bind(address: SocketAddr) -> std::io::Result<HealthListener> {
        Ok(HealthListener {
            listener: TcpListener::bind(address).await?,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Answers probes with `answer` until `shutdown` turns true.
    pub async fn serve<F, Fut>(self, mut shutdown: watch::Receiver<bool>, answer: F)
    where
        F: Fn(Probe) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Answer> + Send + 'static,
    {
        let open = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let accepted = tokio::select! {
                _ = shutdown.changed() => break,
                accepted = self.listener.accept() => accepted,
            };
            let Ok((socket, _)) = accepted else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let Ok(permit) = Arc::clone(&open).try_acquire_owned() else {
                continue;
            };
            let answer = answer.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let service = hyper::service::service_fn(move |request| {
                    let answer = answer.clone();
                    async move { Ok::<_, Infallible>(respond(request, answer).await) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .max_buf_size(8192)
                    .keep_alive(false)
                    .serve_connection(TokioIo::new(socket), service);
                let _ = tokio::time::timeout(EXCHANGE_TIMEOUT, connection).await;
            });
        }
    }
}

async fn respond<F, Fut>(request: Request<Incoming>, answer: F) -> Response<Full<Bytes>>
where
    F: Fn(Probe) -> Fut,
    Fut: Future<Output = Answer>,
{
    let reply = |status: StatusCode, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/json"),
        );
        response.headers_mut().insert(
            hyper::header::CACHE_CONTROL,
            hyper::header::HeaderValue::from_static("no-store"),
        );
        response
    };
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            r#"{"error":"use GET or HEAD"}"#.into(),
        );
    }
    let probe = match request.uri().path() {
        "/live" => Probe::Live,
        "/ready" => Probe::Ready,
        _ => {
            return reply(
                StatusCode::NOT_FOUND,
                r#"{"error":"probe /live or /ready"}"#.into(),
            );
        }
    };
    let Answer { ok, body } = answer(probe).await;
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    reply(status, body)
}
