//! A WebDAV server over HTTPS as a location (RFC 4918): `PROPFIND` lists, `GET` reads,
//! `PUT` writes (streamed), `MOVE` renames (`Overwrite: F` unless a name is replaced),
//! `DELETE` removes, `MKCOL` makes folders. One HTTP/1.1 connection per endpoint, opened
//! again when the server closes it between requests. Credentials go as HTTP Basic or a
//! bearer token, over TLS only (the server trusted as configured: a CA or pinned
//! certificates). A digest is the `Repr-Digest` (RFC 9530) a `HEAD` answers, where the
//! server gives one.
//!
//! Every answer read into memory is bounded: a listing's XML at [`MAX_LISTING`].

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::endpoint::{Download, Endpoint, EndpointError, Entry, Failure, Item, Upload};
use crate::spec::{DavLogin, Location, LocationKind};

/// The largest `PROPFIND` answer read (about 100,000 entries).
const MAX_LISTING: usize = 64 * 1024 * 1024;

type Body = BoxBody<Bytes, std::io::Error>;

/// A WebDAV server, logged in per request.
pub struct DavEndpoint {
    base: url::Url,
    host: String,
    port: u16,
    tls: tokio_rustls::TlsConnector,
    authorization: String,
    location: Arc<LocationFacts>,
    /// The connection, when idle; a `PUT` takes it and gives it back once answered.
    sender: Arc<Mutex<Option<SendRequest<Body>>>>,
}

/// What a connection needs of its location.
struct LocationFacts {
    keepalive: std::time::Duration,
    idle: std::time::Duration,
    connect_timeout: std::time::Duration,
    name: String,
}

fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

fn full(text: &'static str) -> Body {
    Full::new(Bytes::from_static(text.as_bytes()))
        .map_err(|never| match never {})
        .boxed()
}

fn status_failure(status: StatusCode, what: &str) -> EndpointError {
    let kind = match status {
        StatusCode::NOT_FOUND | StatusCode::GONE => Failure::Missing,
        StatusCode::PRECONDITION_FAILED => Failure::Exists,
        StatusCode::UNAUTHORIZED => Failure::Location,
        StatusCode::FORBIDDEN
        | StatusCode::METHOD_NOT_ALLOWED
        | StatusCode::PAYLOAD_TOO_LARGE
        | StatusCode::UNSUPPORTED_MEDIA_TYPE => Failure::Permanent,
        _ => Failure::Retry,
    };
    let message = if status == StatusCode::UNAUTHORIZED {
        "the server refused the login (401)".to_owned()
    } else {
        format!("{what}: the server answered {status}")
    };
    EndpointError::new(kind, message)
}

/// `Wed, 02 Dec 2026 13:01:00 GMT` as µs since the epoch.
fn http_date_us(text: &str) -> Option<i64> {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let when = time::PrimitiveDateTime::parse(text.trim(), &format).ok()?;
    Some(when.assume_utc().unix_timestamp().saturating_mul(1_000_000))
}

/// The local name of an XML element (`D:href` → `href`).
fn local(name: &str) -> &str {
    name.rsplit(':').next().unwrap_or(name)
}

fn child<'a>(element: &'a xmltree::Element, name: &str) -> Option<&'a xmltree::Element> {
    element
        .children
        .iter()
        .filter_map(|c| c.as_element())
        .find(|e| local(&e.name) == name)
}

fn text_of(element: &xmltree::Element) -> String {
    element
        .get_text()
        .map(|t| t.into_owned())
        .unwrap_or_default()
}

/// One `response` of a multistatus: its decoded path, whether a collection, size, time.
struct Found {
    path: String,
    folder: bool,
    size: u64,
    mtime_us: i64,
}

fn decode(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Most levels of elements a listing may nest: a multistatus needs six; the parser
/// recurses once per level, so a deeper document is refused before it is parsed.
const MAX_XML_DEPTH: usize = 32;

/// How deep `xml`'s elements nest, counted on its tags (comments, declarations and
/// processing instructions aside); stops counting past `limit`.
fn xml_depth(xml: &[u8], limit: usize) -> usize {
    let (mut depth, mut deepest, mut i) = (0usize, 0usize, 0usize);
    while i < xml.len() {
        if xml[i] != b'<' {
            i += 1;
            continue;
        }
        let Some(end) = xml[i..].iter().position(|b| *b == b'>') else {
            break;
        };
        let tag = &xml[i + 1..i + end];
        match tag.first() {
            Some(b'/') => depth = depth.saturating_sub(1),
            Some(b'?' | b'!') | None => {}
            Some(_) if tag.last() == Some(&b'/') => {}
            Some(_) => {
                depth += 1;
                deepest = deepest.max(depth);
                if deepest > limit {
                    return deepest;
                }
            }
        }
        i += end + 1;
    }
    deepest
}

fn multistatus(xml: &[u8], base: &url::Url) -> Result<Vec<Found>, EndpointError> {
    if xml_depth(xml, MAX_XML_DEPTH) > MAX_XML_DEPTH {
        return Err(EndpointError::retry(format!(
            "a listing nested more than {MAX_XML_DEPTH} levels deep was refused"
        )));
    }
    let root = xmltree::Element::parse(xml)
        .map_err(|e| EndpointError::retry(format!("a listing that is not XML: {e}")))?;
    let mut found = Vec::new();
    for response in root
        .children
        .iter()
        .filter_map(|c| c.as_element())
        .filter(|e| local(&e.name) == "response")
    {
        let Some(href) = child(response, "href").map(text_of) else {
            continue;
        };
        // An absolute URL or an absolute path.
        let path = match url::Url::parse(&href) {
            // An absolute URL names this server's resource only when it is on this server.
            Ok(url) if url.origin() == base.origin() => url.path().to_owned(),
            Ok(_) => continue,
            Err(_) => href.clone(),
        };
        let Some(path) = decode(&path) else { continue };
        let mut entry = Found {
            path,
            folder: false,
            size: 0,
            mtime_us: 0,
        };
        for propstat in response
            .children
            .iter()
            .filter_map(|c| c.as_element())
            .filter(|e| local(&e.name) == "propstat")
        {
            let ok = child(propstat, "status").is_none_or(|s| text_of(s).contains(" 200"));
            let Some(prop) = child(propstat, "prop").filter(|_| ok) else {
                continue;
            };
            if let Some(kind) = child(prop, "resourcetype") {
                entry.folder = child(kind, "collection").is_some();
            }
            if let Some(length) = child(prop, "getcontentlength") {
                entry.size = text_of(length).trim().parse().unwrap_or(0);
            }
            if let Some(modified) = child(prop, "getlastmodified") {
                entry.mtime_us = http_date_us(&text_of(modified)).unwrap_or(0);
            }
        }
        found.push(entry);
    }
    Ok(found)
}

const PROPFIND: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<D:propfind xmlns:D="DAV:"><D:prop><D:resourcetype/><D:getcontentlength/><D:getlastmodified/></D:prop></D:propfind>"#;

impl DavEndpoint {
    /// The endpoint for `location` (an https one); it connects at its first request.
    pub async fn connect(location: &Location) -> Result<DavEndpoint, EndpointError> {
        let LocationKind::Https { url, login, trust } = &location.kind else {
            return Err(EndpointError::new(
                Failure::Permanent,
                "not an HTTPS location",
            ));
        };
        let host = url.host_str().unwrap_or_default().to_owned();
        let authorization = match login {
            DavLogin::Basic { username, password } => format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            ),
            DavLogin::Bearer(token) => format!("Bearer {token}"),
        };
        let endpoint = DavEndpoint {
            base: url.clone(),
            port: url.port_or_known_default().unwrap_or(443),
            host,
            tls: tokio_rustls::TlsConnector::from(trust.client_config()?),
            authorization,
            location: Arc::new(LocationFacts {
                keepalive: location.keepalive,
                idle: location.idle_timeout,
                connect_timeout: location.connect_timeout,
                name: location.name.clone(),
            }),
            sender: Arc::new(Mutex::new(None)),
        };
        // Connected and logged in now, so a refusal stops the run before any file.
        let answer = endpoint.request(Method::OPTIONS, "/", &[], empty()).await?;
        if answer.status() == StatusCode::UNAUTHORIZED {
            return Err(status_failure(answer.status(), "OPTIONS"));
        }
        Ok(endpoint)
    }

    async fn open(&self) -> Result<SendRequest<Body>, EndpointError> {
        let bare = self.host.trim_start_matches('[').trim_end_matches(']');
        let tcp = tokio::time::timeout(
            self.location.connect_timeout,
            tokio::net::TcpStream::connect((bare, self.port)),
        )
        .await
        .map_err(|_| EndpointError::location(format!("no connection to {bare} in time")))?
        .map_err(|e| EndpointError::location(format!("cannot connect to {bare}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        crate::sftp::keepalive(&tcp, self.location.keepalive);
        let name = rustls::pki_types::ServerName::try_from(bare.to_owned())
            .map_err(|e| EndpointError::location(format!("{bare}: {e}")))?;
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| EndpointError::location(format!("TLS: {e}")))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| EndpointError::location(format!("HTTP: {e}")))?;
        let name = self.location.name.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(location = %name, error = %e, "WebDAV connection ended");
            }
        });
        Ok(sender)
    }

    /// The URL of `path` on the server (each segment percent-encoded below the base).
    fn url(&self, path: &str) -> Result<url::Url, EndpointError> {
        let mut url = self.base.clone();
        {
            let mut segments = url.path_segments_mut().map_err(|()| {
                EndpointError::new(Failure::Permanent, "the location's URL cannot hold paths")
            })?;
            segments.pop_if_empty();
            for part in path.split('/').filter(|p| !p.is_empty()) {
                segments.push(part);
            }
        }
        Ok(url)
    }

    fn target(url: &url::Url) -> String {
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    /// Sends one request (opening the connection again when the server closed it).
    async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Body,
    ) -> Result<Response<Incoming>, EndpointError> {
        let request = self.build(method, path, headers, body)?;
        let mut held = self.sender.lock().await;
        let reusable = held.as_ref().is_some_and(|s| !s.is_closed());
        if !reusable {
            *held = Some(self.open().await?);
        }
        let Some(sender) = held.as_mut() else {
            return Err(EndpointError::retry("no connection"));
        };
        sender
            .ready()
            .await
            .map_err(|e| EndpointError::retry(format!("HTTP: {e}")))?;
        let answer = tokio::time::timeout(self.location.idle, sender.send_request(request))
            .await
            .map_err(|_| EndpointError::retry("the server did not answer in time"))?;
        answer.map_err(|e| {
            *held = None;
            EndpointError::retry(format!("HTTP: {e}"))
        })
    }

    fn build(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Body,
    ) -> Result<Request<Body>, EndpointError> {
        let url = self.url(path)?;
        let authority = match self.base.port() {
            Some(port) => format!("{}:{port}", self.host),
            None => self.host.clone(),
        };
        let mut request = Request::builder()
            .method(method)
            .uri(Self::target(&url))
            .header(hyper::header::HOST, authority)
            .header(hyper::header::AUTHORIZATION, &self.authorization)
            .header(
                hyper::header::USER_AGENT,
                concat!("wharf/", env!("CARGO_PKG_VERSION")),
            );
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        request
            .body(body)
            .map_err(|e| EndpointError::new(Failure::Permanent, format!("bad request: {e}")))
    }

    async fn propfind(&self, path: &str, depth: &str) -> Result<Option<Vec<Found>>, EndpointError> {
        let answer = self
            .request(
                Method::from_bytes(b"PROPFIND").map_err(|e| EndpointError::retry(e.to_string()))?,
                path,
                &[
                    ("depth", depth.to_owned()),
                    ("content-type", "application/xml".to_owned()),
                ],
                full(PROPFIND),
            )
            .await?;
        let status = answer.status();
        if status == StatusCode::NOT_FOUND {
            let _ = answer.into_body().collect().await;
            return Ok(None);
        }
        if status != StatusCode::MULTI_STATUS {
            let _ = answer.into_body().collect().await;
            return Err(status_failure(status, "PROPFIND"));
        }
        let xml = Limited::new(answer.into_body(), MAX_LISTING)
            .collect()
            .await
            .map_err(|e| EndpointError::retry(format!("listing not read: {e}")))?
            .to_bytes();
        Ok(Some(multistatus(&xml, &self.base)?))
    }

    /// Sends a request with no body and reads its answer's status.
    async fn simple(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
    ) -> Result<StatusCode, EndpointError> {
        let answer = self.request(method, path, headers, empty()).await?;
        let status = answer.status();
        let _ = Limited::new(answer.into_body(), 1 << 20).collect().await;
        Ok(status)
    }
}

#[async_trait]
impl Endpoint for DavEndpoint {
    async fn read_folder(&self, folder: &str, cap: usize) -> Result<Vec<Item>, EndpointError> {
        let base = self.url(folder)?.path().trim_end_matches('/').to_owned();
        let base = decode(&base).unwrap_or(base);
        let Some(found) = self.propfind(folder, "1").await? else {
            return Err(EndpointError::new(
                Failure::Missing,
                format!("{folder} does not exist"),
            ));
        };
        Ok(found
            .into_iter()
            .filter_map(|entry| {
                let rest = entry.path.trim_end_matches('/').strip_prefix(&base)?;
                let name = rest.strip_prefix('/')?;
                // The folder itself is its own first answer.
                (!name.is_empty()).then(|| Item {
                    name: name.to_owned(),
                    folder: entry.folder,
                    size: entry.size,
                    mtime_us: entry.mtime_us,
                })
            })
            .take(cap)
            .collect())
    }

    async fn stat(&self, path: &str) -> Result<Option<Entry>, EndpointError> {
        let Some(found) = self.propfind(path, "0").await? else {
            return Ok(None);
        };
        Ok(found
            .into_iter()
            .next()
            .filter(|f| !f.folder)
            .map(|f| Entry {
                path: path.to_owned(),
                size: f.size,
                mtime_us: f.mtime_us,
            }))
    }

    async fn open_read(&self, path: &str) -> Result<Box<dyn Download>, EndpointError> {
        let answer = self.request(Method::GET, path, &[], empty()).await?;
        if answer.status() != StatusCode::OK {
            let status = answer.status();
            let _ = Limited::new(answer.into_body(), 1 << 20).collect().await;
            return Err(status_failure(status, "GET"));
        }
        Ok(Box::new(DavRead {
            body: answer.into_body(),
            pending: Bytes::new(),
            done: false,
        }))
    }

    async fn create(&self, path: &str) -> Result<Box<dyn Upload>, EndpointError> {
        let (chunks, receiver) = mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
        let stream = futures_util::stream::unfold(receiver, |mut r| async move {
            r.recv().await.map(|item| (item, r))
        });
        let body = BodyExt::boxed(StreamBody::new(stream));
        let request = self.build(Method::PUT, path, &[], body)?;
        let mut sender = {
            let mut held = self.sender.lock().await;
            let reusable = held.as_ref().is_some_and(|s| !s.is_closed());
            if !reusable {
                *held = Some(self.open().await?);
            }
            // The PUT takes the connection; the next request opens another when this one
            // is still busy.
            match held.take() {
                Some(sender) => sender,
                None => return Err(EndpointError::retry("no connection")),
            }
        };
        sender
            .ready()
            .await
            .map_err(|e| EndpointError::retry(format!("HTTP: {e}")))?;
        let (answer_tx, answer) = oneshot::channel();
        tokio::spawn(async move {
            let result = sender.send_request(request).await.map(|r| {
                let status = r.status();
                (status, sender)
            });
            let _ = answer_tx.send(result);
        });
        Ok(Box::new(DavWrite {
            chunks: Some(chunks),
            answer: Some(answer),
            home: self.sender.clone(),
        }))
    }

    async fn rename(&self, from: &str, to: &str, replace: bool) -> Result<(), EndpointError> {
        let destination = self.url(to)?.to_string();
        let status = self
            .simple(
                Method::from_bytes(b"MOVE").map_err(|e| EndpointError::retry(e.to_string()))?,
                from,
                &[
                    ("destination", destination),
                    ("overwrite", if replace { "T" } else { "F" }.to_owned()),
                ],
            )
            .await?;
        match status {
            StatusCode::CREATED | StatusCode::NO_CONTENT | StatusCode::OK => Ok(()),
            StatusCode::PRECONDITION_FAILED => {
                Err(EndpointError::new(Failure::Exists, format!("{to} exists")))
            }
            other => Err(status_failure(other, "MOVE")),
        }
    }

    async fn remove(&self, path: &str) -> Result<(), EndpointError> {
        match self.simple(Method::DELETE, path, &[]).await? {
            StatusCode::NO_CONTENT | StatusCode::OK | StatusCode::ACCEPTED => Ok(()),
            other => Err(status_failure(other, "DELETE")),
        }
    }

    async fn make_folders(&self, folder: &str) -> Result<(), EndpointError> {
        let mut at = String::new();
        for part in folder.split('/').filter(|p| !p.is_empty()) {
            at = format!("{at}/{part}");
            let status = self
                .simple(
                    Method::from_bytes(b"MKCOL")
                        .map_err(|e| EndpointError::retry(e.to_string()))?,
                    &format!("{at}/"),
                    &[],
                )
                .await?;
            // 405: there already.
            if !(status.is_success() || status == StatusCode::METHOD_NOT_ALLOWED) {
                return Err(status_failure(status, "MKCOL"));
            }
        }
        Ok(())
    }

    async fn sha256(&self, path: &str) -> Result<Option<(String, &'static str)>, EndpointError> {
        let answer = self
            .request(
                Method::HEAD,
                path,
                &[("want-repr-digest", "sha-256=10".to_owned())],
                empty(),
            )
            .await?;
        let digest = answer
            .headers()
            .get("repr-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.split(',').map(str::trim).find_map(|d| {
                    d.strip_prefix("sha-256=:")?
                        .strip_suffix(':')
                        .map(str::to_owned)
                })
            })
            .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
            .filter(|raw| raw.len() == 32)
            .map(|raw| crate::run::hex(&raw));
        let _ = answer.into_body().collect().await;
        Ok(digest.map(|d| (d, "Repr-Digest")))
    }
}

struct DavRead {
    body: Incoming,
    pending: Bytes,
    done: bool,
}

#[async_trait]
impl Download for DavRead {
    async fn read(&mut self, max: usize) -> Result<Vec<u8>, EndpointError> {
        let mut out = Vec::with_capacity(max.min(1 << 20));
        while out.len() < max {
            if self.pending.is_empty() {
                if self.done {
                    break;
                }
                match self.body.frame().await {
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            self.pending = data;
                        }
                    }
                    Some(Err(e)) => return Err(EndpointError::retry(format!("GET body: {e}"))),
                    None => {
                        self.done = true;
                        break;
                    }
                }
            }
            let take = self.pending.len().min(max - out.len());
            out.extend_from_slice(&self.pending.split_to(take));
        }
        Ok(out)
    }
}

/// A `PUT`'s status, with the connection to give back.
type PutAnswer = Result<(StatusCode, SendRequest<Body>), hyper::Error>;

struct DavWrite {
    chunks: Option<mpsc::Sender<Result<Frame<Bytes>, std::io::Error>>>,
    answer: Option<oneshot::Receiver<PutAnswer>>,
    /// Where the connection goes back once the `PUT` is answered.
    home: Arc<Mutex<Option<SendRequest<Body>>>>,
}

#[async_trait]
impl Upload for DavWrite {
    async fn write(&mut self, data: &[u8]) -> Result<(), EndpointError> {
        let Some(chunks) = &self.chunks else {
            return Err(EndpointError::retry("the upload is closed"));
        };
        chunks
            .send(Ok(Frame::data(Bytes::copy_from_slice(data))))
            .await
            .map_err(|_| EndpointError::retry("the server stopped the upload"))
    }

    async fn finish(mut self: Box<Self>) -> Result<(), EndpointError> {
        drop(self.chunks.take());
        let Some(answer) = self.answer.take() else {
            return Err(EndpointError::retry("no answer"));
        };
        match answer.await {
            Ok(Ok((status, sender))) if status.is_success() => {
                let mut home = self.home.lock().await;
                if home.is_none() {
                    *home = Some(sender);
                }
                Ok(())
            }
            Ok(Ok((status, _))) => Err(status_failure(status, "PUT")),
            Ok(Err(e)) => Err(EndpointError::retry(format!("PUT: {e}"))),
            Err(_) => Err(EndpointError::retry("PUT: the connection ended")),
        }
    }

    async fn abort(mut self: Box<Self>) {
        if let Some(chunks) = self.chunks.take() {
            let _ = chunks
                .send(Err(std::io::Error::other("the copy was given up")))
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_nested_too_deep_is_refused_before_it_is_parsed() {
        let base = url::Url::parse("https://dav.example/dav/").unwrap();
        let deep = format!("{}{}", "<a>".repeat(5000), "</a>".repeat(5000));
        assert!(multistatus(deep.as_bytes(), &base).is_err());
        let listing = r#"<?xml version="1.0"?><!-- x --><D:multistatus xmlns:D="DAV:">
<D:response><D:href>/dav/in/a.txt</D:href><D:propstat><D:prop><D:resourcetype/>
<D:getcontentlength>3</D:getcontentlength></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>
<D:response><D:href>https://evil.example/dav/in/b.txt</D:href></D:response>
<D:response><D:href>https://dav.example/dav/in/c.txt</D:href></D:response>
</D:multistatus>"#;
        assert!(xml_depth(listing.as_bytes(), 64) <= 6);
        let found = multistatus(listing.as_bytes(), &base).unwrap();
        let paths: Vec<&str> = found.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["/dav/in/a.txt", "/dav/in/c.txt"]);
        assert_eq!(found[0].size, 3);
    }
}
