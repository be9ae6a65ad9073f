//! One JSON POST to an administrator's service (the HTTP authentication method, webhooks).
//!
//! One request per call, HTTP/1.1, no redirects, no proxies, a timeout over the whole
//! exchange, and an answer read up to a cap. `https://` URLs are verified against the
//! system's CA certificates, or only against a configured CA (a pin). `http://` is accepted
//! only to a loopback address or `localhost` ([`check_url`]): what is posted carries
//! passwords and signed payloads, which must never cross a network in clear. This module
//! never decides what an answer means; its callers do.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Why a poster could not be configured or a POST did not complete.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    /// The configuration is unusable.
    #[error("{0}")]
    Config(String),
    /// The service could not be reached or the exchange failed.
    #[error("{0}")]
    Failed(String),
}

/// A configured destination for POSTs.
pub struct Poster {
    uri: Uri,
    tls: Option<tokio_rustls::TlsConnector>,
}

/// Checks `url` as a destination for posts, without building a poster: `https://` to any
/// host, or `http://` to a loopback address (`127.0.0.0/8`, `::1`) or `localhost` only;
/// `has_ca`: a CA is configured, which only `https://` can use. The error says how to fix it.
pub fn check_url(url: &str, has_ca: bool) -> Result<(), String> {
    parse_url(url, has_ca).map(|_| ())
}

/// The URI of a valid destination, and whether it is `https://`.
fn parse_url(url: &str, has_ca: bool) -> Result<(Uri, bool), String> {
    let uri: Uri = url.parse().map_err(|e| format!("url {url:?}: {e}"))?;
    let Some(host) = uri.host() else {
        return Err(format!("url {url:?} has no host"));
    };
    match uri.scheme_str() {
        Some("https") => Ok((uri.clone(), true)),
        Some("http") if has_ca => Err("ca is set but the url is http://; use https://".into()),
        Some("http") if is_loopback_host(host) => Ok((uri.clone(), false)),
        Some("http") => Err(format!(
            "url {url:?} would send passwords and tokens in clear to {host}: use https:// \
             (http:// is accepted only to 127.0.0.1, ::1 or localhost)"
        )),
        _ => Err(format!(
            "url {url:?} must start with https:// (or http:// for a service on this machine)"
        )),
    }
}

/// True for a host that never leaves this machine: `localhost`, `127.0.0.0/8`, `::1` (also
/// as an IPv4-mapped address). Any other name could resolve anywhere.
fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.eq_ignore_ascii_case("localhost") || bare.eq_ignore_ascii_case("localhost.") {
        return true;
    }
    bare.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

impl Poster {
    /// A poster for `url` (see [`check_url`]); `ca_pem`: trust only this CA (PEM) instead
    /// of the system's.
    pub fn new(url: &str, ca_pem: Option<&[u8]>) -> Result<Poster, PostError> {
        let (uri, https) = parse_url(url, ca_pem.is_some()).map_err(PostError::Config)?;
        let tls = if https {
            Some(tokio_rustls::TlsConnector::from(client_config(ca_pem)?))
        } else {
            None
        };
        Ok(Poster { uri, tls })
    }

    /// POSTs `body` as JSON with the extra `headers`; answers the status and at most
    /// `max_answer` bytes of the body, all within `timeout`.
    pub async fn post(
        &self,
        body: Vec<u8>,
        headers: &[(&str, String)],
        timeout: Duration,
        max_answer: usize,
    ) -> Result<(u16, Bytes), PostError> {
        tokio::time::timeout(timeout, self.exchange(body, headers, max_answer))
            .await
            .map_err(|_| PostError::Failed(format!("no answer within {} s", timeout.as_secs())))?
    }

    async fn exchange(
        &self,
        body: Vec<u8>,
        headers: &[(&str, String)],
        max_answer: usize,
    ) -> Result<(u16, Bytes), PostError> {
        let failed =
            |what: &str, e: &dyn std::fmt::Display| PostError::Failed(format!("{what}: {e}"));
        let host = self.uri.host().unwrap_or_default();
        let bare_host = host.trim_start_matches('[').trim_end_matches(']');
        let port = self
            .uri
            .port_u16()
            .unwrap_or(if self.tls.is_some() { 443 } else { 80 });
        let tcp = TcpStream::connect((bare_host, port))
            .await
            .map_err(|e| failed("cannot connect", &e))?;
        let _ = tcp.set_nodelay(true);
        let authority = self
            .uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_default();
        let mut request = Request::post(self.uri.path_and_query().map_or("/", |p| p.as_str()))
            .header(hyper::header::HOST, authority)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(
                hyper::header::USER_AGENT,
                concat!("wharf/", env!("CARGO_PKG_VERSION")),
            );
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| failed("bad request", &e))?;
        let response = match &self.tls {
            Some(connector) => {
                let server_name = rustls::pki_types::ServerName::try_from(bare_host.to_owned())
                    .map_err(|e| failed("bad host name", &e))?;
                let tls = connector
                    .connect(server_name, tcp)
                    .await
                    .map_err(|e| failed("TLS handshake failed", &e))?;
                send(TokioIo::new(tls), request).await?
            }
            None => send(TokioIo::new(tcp), request).await?,
        };
        let status = response.status().as_u16();
        let answer = Limited::new(response.into_body(), max_answer)
            .collect()
            .await
            .map_err(|e| failed("answer not read", &e))?
            .to_bytes();
        Ok((status, answer))
    }
}

async fn send<T>(
    io: TokioIo<T>,
    request: Request<Full<Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, PostError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let failed = |e: hyper::Error| PostError::Failed(format!("HTTP exchange failed: {e}"));
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(failed)?;
    // The connection is driven by its own task, which ends with the exchange (not reused).
    tokio::spawn(connection);
    sender.send_request(request).await.map_err(failed)
}

/// A TLS client configuration trusting `ca_pem` only, or the system's CA certificates.
pub fn client_config(ca_pem: Option<&[u8]>) -> Result<Arc<rustls::ClientConfig>, PostError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| PostError::Config(format!("ca: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| PostError::Config(format!("ca: {e}")))?;
            }
            if roots.is_empty() {
                return Err(PostError::Config("ca: no certificate in the file".into()));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(PostError::Config(
                    "no system CA certificates found (Debian: ca-certificates); set ca".into(),
                ));
            }
        }
    }
    Ok(Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_is_accepted_to_loopback_only() {
        for ok in [
            "http://127.0.0.1:8080/check",
            "http://127.9.8.7/",
            "http://[::1]:9000/",
            "http://localhost:80/x",
            "http://LOCALHOST/",
            "http://[::ffff:127.0.0.1]/",
            "https://auth.example.com/check",
            "https://192.0.2.10/",
        ] {
            assert!(check_url(ok, false).is_ok(), "{ok}");
        }
        for refused in [
            "http://192.0.2.10/check",
            "http://10.0.0.1/",
            "http://[2001:db8::1]/",
            "http://auth.example.com/",
            "http://localhost.example.com/",
            "http://127.0.0.1.nip.io/",
            "http://[::]/",
            "http://0.0.0.0/",
            "ftp://127.0.0.1/",
            "127.0.0.1:80",
        ] {
            assert!(check_url(refused, false).is_err(), "{refused}");
        }
        let clear = check_url("http://192.0.2.10/", false).unwrap_err();
        assert!(
            clear.contains("in clear") && clear.contains("https://"),
            "{clear}"
        );
        assert!(
            check_url("http://127.0.0.1/", true)
                .unwrap_err()
                .contains("ca is set")
        );
        assert!(check_url("https://127.0.0.1/", true).is_ok());
    }
}
