//! The HTTP API authentication method: Wharf POSTs the login attempt as JSON to an
//! administrator's service, which answers 200 (accept, with the account's description),
//! 204 (accept with defaults), 401 (not mine: the next method decides) or 403 (reject).
//!
//! One request per attempt, HTTP/1.1, no redirects, no proxies, a timeout over the whole
//! exchange, and an answer of at most [`MAX_ANSWER`] bytes. `https://` URLs are verified
//! against the system's CA certificates, or only against a configured CA (a pin). Anything
//! else the service answers, and any failure to reach it, is an error that stops the chain:
//! an authentication service that cannot be asked never lets anyone in.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use wharf_core::Rule;
use wharf_store::AccountRecord;
use wharf_types::AccountName;

use crate::{Credential, fingerprint};

/// Largest answer read from the service.
pub const MAX_ANSWER: usize = 64 * 1024;

/// One configured HTTP method.
pub struct HttpMethod {
    /// Its name in events.
    pub name: String,
    uri: Uri,
    timeout: Duration,
    tls: Option<tokio_rustls::TlsConnector>,
    bearer: Option<String>,
}

/// What the service said.
pub enum HttpVerdict {
    /// 200 or 204: the account it described.
    Accept(Box<AccountRecord>),
    /// 401: another method decides.
    NotMine,
    /// 403, with the service's message if it gave one (recorded, never shown to clients).
    Reject(Option<String>),
}

/// Why the method could not be configured or could not decide.
#[derive(Debug, thiserror::Error)]
pub enum HttpMethodError {
    /// The configuration is unusable.
    #[error("{0}")]
    Config(String),
    /// The service could not be asked or gave an unusable answer.
    #[error("{0}")]
    Failed(String),
}

/// The request body.
#[derive(Serialize)]
struct Attempt<'a> {
    username: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    public_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    public_key_fingerprint: Option<String>,
    protocol: &'a str,
    service: &'a str,
    remote_address: String,
    remote_port: u16,
}

/// A 200 answer's account description.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Described {
    #[serde(default)]
    home: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    rules: Vec<Rule>,
    #[serde(default)]
    public_keys: Vec<String>,
}

#[derive(Deserialize)]
struct Refusal {
    #[serde(default)]
    message: Option<String>,
}

impl HttpMethod {
    /// A method POSTing to `url`; `ca_pem`: trust only this CA (PEM) instead of the system's.
    pub fn new(
        name: String,
        url: &str,
        timeout: Duration,
        ca_pem: Option<&[u8]>,
        bearer: Option<String>,
    ) -> Result<HttpMethod, HttpMethodError> {
        let uri: Uri = url
            .parse()
            .map_err(|e| HttpMethodError::Config(format!("url {url:?}: {e}")))?;
        let tls = match uri.scheme_str() {
            Some("https") => Some(connector(ca_pem)?),
            Some("http") if ca_pem.is_some() => {
                return Err(HttpMethodError::Config(
                    "ca is set but the url is http://; use https://".into(),
                ));
            }
            Some("http") => None,
            _ => {
                return Err(HttpMethodError::Config(format!(
                    "url {url:?} must start with https:// (or http:// for a service on this machine)"
                )));
            }
        };
        if uri.host().is_none() {
            return Err(HttpMethodError::Config(format!("url {url:?} has no host")));
        }
        Ok(HttpMethod {
            name,
            uri,
            timeout,
            tls,
            bearer,
        })
    }

    /// Asks the service about one attempt.
    pub async fn check(
        &self,
        username: &str,
        credential: &Credential<'_>,
        protocol: &str,
        service: &str,
        remote: SocketAddr,
    ) -> Result<HttpVerdict, HttpMethodError> {
        let (password, public_key, public_key_fingerprint) = match credential {
            Credential::Password(p) => (Some(*p), None, None),
            Credential::PublicKey(k) => (None, k.to_openssh().ok(), Some(fingerprint(k))),
        };
        let body = serde_json::to_vec(&Attempt {
            username,
            password,
            public_key,
            public_key_fingerprint,
            protocol,
            service,
            remote_address: remote.ip().to_string(),
            remote_port: remote.port(),
        })
        .map_err(|e| HttpMethodError::Failed(e.to_string()))?;
        let (status, answer) = tokio::time::timeout(self.timeout, self.post(body))
            .await
            .map_err(|_| {
                HttpMethodError::Failed(format!("no answer within {} s", self.timeout.as_secs()))
            })??;
        match status {
            StatusCode::OK => {
                let described: Described = serde_json::from_slice(&answer).map_err(|e| {
                    HttpMethodError::Failed(format!(
                        "200 answer is not an account description: {e}"
                    ))
                })?;
                Ok(HttpVerdict::Accept(Box::new(
                    self.record(username, described)?,
                )))
            }
            StatusCode::NO_CONTENT => Ok(HttpVerdict::Accept(Box::new(self.record(
                username,
                Described {
                    home: None,
                    groups: Vec::new(),
                    rules: Vec::new(),
                    public_keys: Vec::new(),
                },
            )?))),
            StatusCode::UNAUTHORIZED => Ok(HttpVerdict::NotMine),
            StatusCode::FORBIDDEN => Ok(HttpVerdict::Reject(
                serde_json::from_slice::<Refusal>(&answer)
                    .ok()
                    .and_then(|r| r.message)
                    .map(|m| m.chars().take(200).collect()),
            )),
            other => Err(HttpMethodError::Failed(format!(
                "unexpected answer {other} (200, 204, 401 or 403 expected)"
            ))),
        }
    }

    fn record(&self, username: &str, d: Described) -> Result<AccountRecord, HttpMethodError> {
        let bad = |what: String| HttpMethodError::Failed(format!("200 answer: {what}"));
        let name = AccountName::new(username).map_err(|e| bad(e.to_string()))?;
        if let Some(home) = &d.home
            && !home.starts_with('/')
        {
            return Err(bad(format!("home {home:?} is not absolute")));
        }
        for rule in &d.rules {
            wharf_core::RuleSet::validate(rule).map_err(|e| bad(e.to_string()))?;
        }
        Ok(AccountRecord {
            name,
            password_hash: None,
            home: d.home,
            enabled: true,
            groups: if d.groups.is_empty() {
                vec!["users".to_owned()]
            } else {
                d.groups
            },
            keys: d.public_keys,
            rules: d.rules,
            addresses: Default::default(),
            expires_us: None,
            second_factor: None,
            require_second_factor: false,
        })
    }

    async fn post(&self, body: Vec<u8>) -> Result<(StatusCode, Bytes), HttpMethodError> {
        let failed =
            |what: &str, e: &dyn std::fmt::Display| HttpMethodError::Failed(format!("{what}: {e}"));
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
        if let Some(token) = &self.bearer {
            request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
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
        let status = response.status();
        let answer = Limited::new(response.into_body(), MAX_ANSWER)
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
) -> Result<hyper::Response<hyper::body::Incoming>, HttpMethodError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let failed = |e: hyper::Error| HttpMethodError::Failed(format!("HTTP exchange failed: {e}"));
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(failed)?;
    // The connection is driven by its own task, which ends with the exchange (not reused).
    tokio::spawn(connection);
    sender.send_request(request).await.map_err(failed)
}

fn connector(ca_pem: Option<&[u8]>) -> Result<tokio_rustls::TlsConnector, HttpMethodError> {
    Ok(tokio_rustls::TlsConnector::from(client_config(ca_pem)?))
}

/// A TLS client configuration trusting `ca_pem` only, or the system's CA certificates.
pub(crate) fn client_config(
    ca_pem: Option<&[u8]>,
) -> Result<Arc<rustls::ClientConfig>, HttpMethodError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| HttpMethodError::Config(format!("ca: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| HttpMethodError::Config(format!("ca: {e}")))?;
            }
            if roots.is_empty() {
                return Err(HttpMethodError::Config(
                    "ca: no certificate in the file".into(),
                ));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(HttpMethodError::Config(
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
