//! The REST file API handlers: list, stat, download (Range, ETag, Repr-Digest), streamed
//! upload, folder creation, rename, delete, and bearer tokens. Every file operation goes
//! through the caller's core session, which checks the rules and records the events.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::BodyExt as _;
use serde::Deserialize;
use serde_json::json;
use wharf_core::vfs::FileKind;
use wharf_core::{CoreError, Download, ErrorKind, EventKind, Metadata, Session, WriteMode};
use wharf_types::VirtualPath;

use crate::range::{self, RangeRequest};
use crate::server::{Conn, Shared};

/// The OpenAPI document, served as it is.
pub(crate) const OPENAPI: &str = include_str!("openapi.json");

/// Bytes read from a file per body chunk.
const CHUNK: usize = 256 * 1024;

type ApiResult = Result<Response, ApiError>;

/// An error answer (boxed: responses are large and errors are the rare path).
pub(crate) struct ApiError(Box<Response>);

impl From<Response> for ApiError {
    fn from(response: Response) -> ApiError {
        ApiError(Box::new(response))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        *self.0
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> ApiError {
    (status, Json(json!({ "error": message.into() })))
        .into_response()
        .into()
}

fn core_error(e: &CoreError) -> ApiError {
    let status = match e.kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
        ErrorKind::AlreadyExists | ErrorKind::NotEmpty => StatusCode::CONFLICT,
        ErrorKind::IsADirectory | ErrorKind::NotADirectory => StatusCode::CONFLICT,
        ErrorKind::InvalidPath => StatusCode::BAD_REQUEST,
        ErrorKind::LimitReached => StatusCode::INSUFFICIENT_STORAGE,
        ErrorKind::Unsupported => StatusCode::NOT_IMPLEMENTED,
        ErrorKind::InvalidOffset => StatusCode::RANGE_NOT_SATISFIABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e.message.clone())
}

/// The file path a request names, after `prefix`, decoded and checked.
fn request_path(
    shared: &Shared,
    conn: &Conn,
    session: &Session,
    uri: &axum::http::Uri,
    prefix: &str,
) -> Result<VirtualPath, ApiError> {
    let rest = uri.path().strip_prefix(prefix).unwrap_or("");
    let decoded = crate::path::decode(rest).map_err(|e| {
        shared.events.emit(
            shared
                .event(EventKind::ProtocolError, conn)
                .failed(format!("request path refused: {e}")),
        );
        error(StatusCode::BAD_REQUEST, format!("path refused: {e}"))
    })?;
    session
        .resolve(&VirtualPath::root(), decoded.as_bytes())
        .map_err(|e| core_error(&e))
}

/// Refuses (423) a change to `path` while a WebDAV lock covers it: a REST request carries no
/// lock token, so any lock stops it.
async fn unlocked(
    shared: &Shared,
    session: &Session,
    path: &VirtualPath,
    deep: bool,
) -> Result<(), ApiError> {
    let Some(dav) = &shared.dav else {
        return Ok(());
    };
    dav.check_unlocked(session, path, deep)
        .await
        .map_err(|e| match e.kind {
            ErrorKind::PermissionDenied => error(StatusCode::LOCKED, e.message),
            _ => core_error(&e),
        })
}

/// Keeps WebDAV properties with what the REST API moved or removed.
async fn props_follow(
    shared: &Shared,
    session: &Session,
    from: &VirtualPath,
    to: Option<&VirtualPath>,
) {
    let Some(dav) = &shared.dav else {
        return;
    };
    let result = match to {
        Some(to) => dav.moved(session, from, to).await,
        None => dav.removed(session, from).await,
    };
    if let Err(e) = result {
        tracing::warn!("WebDAV properties of {from} not updated: {e}");
    }
}

fn entry_json(name: &str, meta: &Metadata) -> serde_json::Value {
    let modified = time::OffsetDateTime::from_unix_timestamp(meta.mtime)
        .ok()
        .and_then(|t| wharf_types::rfc3339::format(t).ok());
    json!({
        "name": name,
        "type": if meta.kind == FileKind::Dir { "folder" } else { "file" },
        "size": meta.size,
        "modified": modified,
    })
}

pub(crate) async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

pub(crate) async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such route; see /api/v1/openapi.json",
    )
    .into_response()
}

pub(crate) async fn token_create(
    State(shared): State<Arc<Shared>>,
    Extension(session): Extension<Arc<Session>>,
) -> Response {
    let token = match shared.sessions.insert_token(session).await {
        Ok(token) => token,
        Err(e) => return crate::auth::unavailable(&e),
    };
    (
        StatusCode::CREATED,
        Json(json!({
            "token": token,
            "idle_timeout": shared.config.session_timeout.as_secs(),
        })),
    )
        .into_response()
}

pub(crate) async fn token_delete(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Response {
    let removed = match crate::auth::bearer(&headers) {
        Some(token) => shared.sessions.remove_token(token).await,
        None => Ok(false),
    };
    match removed {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => crate::auth::unavailable(&e),
        _ => error(
            StatusCode::BAD_REQUEST,
            "send the token to revoke as a bearer token",
        )
        .into_response(),
    }
}

pub(crate) async fn stat(
    State(shared): State<Arc<Shared>>,
    Extension(conn): Extension<Conn>,
    Extension(session): Extension<Arc<Session>>,
    request: Request,
) -> ApiResult {
    let path = request_path(&shared, &conn, &session, request.uri(), "/api/v1/stat")?;
    let meta = session
        .stat(&path, true)
        .await
        .map_err(|e| core_error(&e))?;
    let mut body = entry_json(path.file_name().unwrap_or("/"), &meta);
    body["path"] = json!(path.as_str());
    Ok(Json(body).into_response())
}

pub(crate) async fn files_get(
    State(shared): State<Arc<Shared>>,
    Extension(conn): Extension<Conn>,
    Extension(session): Extension<Arc<Session>>,
    request: Request,
) -> ApiResult {
    let path = request_path(&shared, &conn, &session, request.uri(), "/api/v1/files")?;
    let meta = session
        .stat(&path, true)
        .await
        .map_err(|e| core_error(&e))?;
    if meta.kind == FileKind::Dir {
        let entries = session.list(&path).await.map_err(|e| core_error(&e))?;
        let list: Vec<_> = entries
            .iter()
            .map(|e| entry_json(&e.name, &e.metadata))
            .collect();
        return Ok(Json(json!({ "path": path.as_str(), "entries": list })).into_response());
    }
    download(
        &shared,
        &conn,
        &session,
        &path,
        request.method(),
        request.headers(),
    )
    .await
}

/// A download body on its way. HTTP stops asking for more once the announced length has
/// been handed over, so the outcome is decided when the body is dropped: every byte handed
/// over is `download.finished`, anything less a failure with the bytes sent.
struct Sending {
    download: Download,
    position: u64,
    end: u64,
}

impl Drop for Sending {
    fn drop(&mut self) {
        if self.position >= self.end {
            self.download.finish();
        } else {
            self.download
                .fail("the connection closed before the download ended");
        }
    }
}

/// Largest file whose digest a whole-file GET computes when it is not remembered (the
/// upload path remembers every upload's digest; this covers files put in place otherwise).
const ON_DEMAND_DIGEST: u64 = 16 << 20;

/// RFC 9530 `Repr-Digest` value for a hex SHA-256.
fn repr_digest(hex: &str) -> Option<String> {
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    Some(format!(
        "sha-256=:{}:",
        base64::engine::general_purpose::STANDARD.encode(bytes?)
    ))
}

async fn download(
    shared: &Shared,
    conn: &Conn,
    session: &Session,
    path: &VirtualPath,
    method: &Method,
    headers: &HeaderMap,
) -> ApiResult {
    let download = session
        .open_download(path)
        .await
        .map_err(|e| core_error(&e))?;
    let size = download
        .metadata()
        .await
        .map(|m| m.size)
        .map_err(|e| core_error(&e))?;
    let etag = format!(
        "\"{}\"",
        download.version().await.map_err(|e| core_error(&e))?
    );
    let header_text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    // The digest costs a read of the whole file: it is computed only for a GET of the whole
    // file, bounded in size; otherwise (HEAD, a range, a larger file) only a digest the
    // storage remembers is named. A HEAD or a one-byte range never makes the server hash.
    let whole_get = method == Method::GET && header_text(header::RANGE).is_none();
    let sha = if whole_get && size <= ON_DEMAND_DIGEST {
        Some(download.digest().await.map_err(|e| core_error(&e))?)
    } else {
        download.known_digest().await
    };
    let mut response_headers = HeaderMap::new();
    let put = |h: &mut HeaderMap, name: header::HeaderName, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    };
    put(&mut response_headers, header::ETAG, &etag);
    put(&mut response_headers, header::ACCEPT_RANGES, "bytes");
    if let Some(digest) = sha.as_deref().and_then(repr_digest) {
        put(
            &mut response_headers,
            header::HeaderName::from_static("repr-digest"),
            &digest,
        );
    }
    if header_text(header::IF_NONE_MATCH).is_some_and(|v| v.split(',').any(|t| t.trim() == etag)) {
        download.finish();
        return Ok((StatusCode::NOT_MODIFIED, response_headers).into_response());
    }
    // If-Range with another version: the whole file, not a piece of a different one.
    let range_header = match header_text(header::IF_RANGE) {
        Some(tag) if tag.trim() != etag => None,
        _ => header_text(header::RANGE),
    };
    let (status, start, end) = match range::parse(range_header, size) {
        RangeRequest::Full => (StatusCode::OK, 0, size),
        RangeRequest::Partial { start, end } => {
            put(
                &mut response_headers,
                header::CONTENT_RANGE,
                &format!("bytes {start}-{end}/{size}"),
            );
            (StatusCode::PARTIAL_CONTENT, start, end + 1)
        }
        RangeRequest::Unsatisfiable => {
            // A range past the end (or several) is a well-formed request that is refused,
            // not a protocol violation: it is recorded, and counts toward no ban.
            download.fail("unsatisfiable or multiple byte ranges");
            shared.events.emit(
                shared
                    .event(EventKind::CommandRefused, conn)
                    .failed(format!("Range refused: {:?}", range_header.unwrap_or(""))),
            );
            put(
                &mut response_headers,
                header::CONTENT_RANGE,
                &format!("bytes */{size}"),
            );
            let body = Json(json!({ "error": "unsatisfiable or multiple byte ranges" }));
            return Err((StatusCode::RANGE_NOT_SATISFIABLE, response_headers, body)
                .into_response()
                .into());
        }
    };
    put(
        &mut response_headers,
        header::CONTENT_TYPE,
        "application/octet-stream",
    );
    put(
        &mut response_headers,
        header::CONTENT_LENGTH,
        &(end - start).to_string(),
    );
    if method == Method::HEAD {
        download.finish();
        return Ok((status, response_headers).into_response());
    }
    let stream = futures_util::stream::unfold(
        Sending {
            download,
            position: start,
            end,
        },
        |mut sending| async move {
            if sending.position >= sending.end {
                return None;
            }
            let want = usize::try_from(sending.end - sending.position)
                .unwrap_or(CHUNK)
                .min(CHUNK);
            match sending.download.read_at(sending.position, want).await {
                Ok(chunk) if !chunk.is_empty() => {
                    sending.position += chunk.len() as u64;
                    Some((Ok::<Bytes, std::io::Error>(Bytes::from(chunk)), sending))
                }
                Ok(_) => {
                    sending.download.fail("file shrank during the download");
                    None
                }
                Err(e) => {
                    sending.download.fail(&e.message);
                    sending.position = sending.end;
                    Some((Err(std::io::Error::other(e.message)), sending))
                }
            }
        },
    );
    Ok((status, response_headers, Body::from_stream(stream)).into_response())
}

pub(crate) async fn files_put(
    State(shared): State<Arc<Shared>>,
    Extension(conn): Extension<Conn>,
    Extension(session): Extension<Arc<Session>>,
    request: Request,
) -> ApiResult {
    let path = request_path(&shared, &conn, &session, request.uri(), "/api/v1/files")?;
    let max = shared.config.max_upload_size;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        shared.events.emit(
            shared
                .event(EventKind::CommandRefused, &conn)
                .failed(format!(
                    "upload of {path} larger than max_upload_size ({max} bytes)"
                )),
        );
        return Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("uploads are limited to {max} bytes"),
        ));
    }
    unlocked(&shared, &session, &path, false).await?;
    let upload = session
        .open_upload(&path, WriteMode::Create, None)
        .await
        .map_err(|e| core_error(&e))?;
    let mut body = request.into_body();
    let mut position = 0u64;
    loop {
        let frame = match tokio::time::timeout(shared.config.body_timeout, body.frame()).await {
            Err(_) => {
                upload.abort("request body stalled").await;
                return Err(error(StatusCode::REQUEST_TIMEOUT, "request body stalled"));
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                upload.abort(&format!("request body failed: {e}")).await;
                return Err(error(StatusCode::BAD_REQUEST, "request body failed"));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let len = data.len() as u64;
        if position + len > max {
            upload.abort("larger than max_upload_size").await;
            drain(&mut body).await;
            return Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("uploads are limited to {max} bytes"),
            ));
        }
        position += len;
        // Body frames are TLS-record sized (16 KiB); the core gathers them into larger
        // writes.
        if let Err(e) = upload.push(data.to_vec()).await {
            upload.abort(&e.message).await;
            drain(&mut body).await;
            return Err(core_error(&e));
        }
    }
    let summary = upload.commit().await.map_err(|e| core_error(&e))?;
    let mut response = (
        StatusCode::CREATED,
        Json(json!({ "path": path.as_str(), "size": position, "sha256": summary.sha256 })),
    )
        .into_response();
    if let Some(digest) = repr_digest(&summary.sha256).and_then(|d| HeaderValue::from_str(&d).ok())
    {
        response
            .headers_mut()
            .insert(header::HeaderName::from_static("repr-digest"), digest);
    }
    Ok(response)
}

/// The most of a refused upload's body read and dropped before the refusal is sent.
const DRAIN_BYTES: u64 = 1 << 20;
/// The longest time spent on it.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads and drops what is left of a refused upload's body, a bounded amount for a bounded
/// time. The connection closes after the refusal, and closing a socket with unread bytes
/// makes the kernel reset it: a client still sending then loses the answer (curl reports
/// the `100 Continue` it had). A small body is read out whole and its refusal arrives; a
/// large one costs the server at most `DRAIN_BYTES` and `DRAIN_TIME`.
async fn drain(body: &mut Body) {
    let mut left = DRAIN_BYTES;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while left > 0 {
            match body.frame().await {
                Some(Ok(frame)) => {
                    let len = frame.data_ref().map_or(0, |d| d.len() as u64);
                    left = left.saturating_sub(len);
                }
                _ => break,
            }
        }
    })
    .await;
}

pub(crate) async fn files_delete(
    State(shared): State<Arc<Shared>>,
    Extension(conn): Extension<Conn>,
    Extension(session): Extension<Arc<Session>>,
    request: Request,
) -> ApiResult {
    let path = request_path(&shared, &conn, &session, request.uri(), "/api/v1/files")?;
    let meta = session
        .stat(&path, false)
        .await
        .map_err(|e| core_error(&e))?;
    unlocked(&shared, &session, &path, meta.kind == FileKind::Dir).await?;
    let result = if meta.kind == FileKind::Dir {
        session.rmdir(&path).await
    } else {
        session.remove(&path).await
    };
    result.map_err(|e| core_error(&e))?;
    props_follow(&shared, &session, &path, None).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) async fn folder_create(
    State(shared): State<Arc<Shared>>,
    Extension(conn): Extension<Conn>,
    Extension(session): Extension<Arc<Session>>,
    request: Request,
) -> ApiResult {
    let path = request_path(&shared, &conn, &session, request.uri(), "/api/v1/folders")?;
    unlocked(&shared, &session, &path, false).await?;
    session
        .mkdir(&path, None)
        .await
        .map_err(|e| core_error(&e))?;
    Ok((StatusCode::CREATED, Json(json!({ "path": path.as_str() }))).into_response())
}

#[derive(Deserialize)]
pub(crate) struct RenameBody {
    from: String,
    to: String,
}

pub(crate) async fn rename(
    State(shared): State<Arc<Shared>>,
    Extension(conn): Extension<Conn>,
    Extension(session): Extension<Arc<Session>>,
    body: Result<Json<RenameBody>, JsonRejection>,
) -> ApiResult {
    // A body that is not the JSON asked for is the client's mistake, answered in JSON as
    // every error of this API (the OpenAPI document says so), not a protocol violation.
    let Json(body) = body.map_err(|rejection| {
        let status = match rejection {
            JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => StatusCode::BAD_REQUEST,
        };
        error(status, rejection.body_text())
    })?;
    let mut paths = Vec::with_capacity(2);
    for raw in [&body.from, &body.to] {
        // The same checks as a URL path, on the plain text.
        let checked = crate::path::decode(&crate::path::encode(raw)).map_err(|e| {
            shared.events.emit(
                shared
                    .event(EventKind::ProtocolError, &conn)
                    .failed(format!("rename path refused: {e}")),
            );
            error(StatusCode::BAD_REQUEST, format!("path refused: {e}"))
        })?;
        paths.push(
            session
                .resolve(&VirtualPath::root(), checked.as_bytes())
                .map_err(|e| core_error(&e))?,
        );
    }
    unlocked(&shared, &session, &paths[0], true).await?;
    unlocked(&shared, &session, &paths[1], true).await?;
    session
        .rename(&paths[0], &paths[1], false)
        .await
        .map_err(|e| core_error(&e))?;
    props_follow(&shared, &session, &paths[0], Some(&paths[1])).await;
    Ok(Json(json!({ "from": paths[0].as_str(), "to": paths[1].as_str() })).into_response())
}
