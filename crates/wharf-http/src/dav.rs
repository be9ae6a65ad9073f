//! WebDAV under `/dav/`: dav-server's protocol handling over the caller's core session, so
//! WebDAV clients get the same rules, jail, atomic uploads and events as every protocol
//! (events say `webdav`).
//!
//! The request path is checked by [`crate::path`] before dav-server sees it. Locks (class 2,
//! which Windows and macOS clients need to write) and dead properties are the core's
//! ([`wharf_core::dav_state`], kept in the store): this module only translates dav-server's
//! lock system and property calls onto it, and carries properties along a DELETE, MOVE or
//! COPY it made through the session.

use std::collections::HashSet;
use std::io::SeekFrom;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Extension;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::{Buf, Bytes};
use dav_server::DavHandler;
use dav_server::davpath::DavPath;
use dav_server::fs::{
    DavDirEntry, DavFile, DavFileSystem, DavMetaData, DavProp, FsError, FsFuture, FsResult,
    FsStream, OpenOptions, ReadDirMeta,
};
use wharf_core::dav_state::DavState;
use wharf_core::dav_state::{DeadProp, PropChange};
use wharf_core::vfs::FileKind;
use wharf_core::{
    CoreError, Download, ErrorKind, EventKind, Metadata, Session, Upload, UploadOpen, WriteMode,
};
use wharf_types::VirtualPath;

use crate::server::{Conn, Shared};

/// The URL prefix WebDAV is served under.
pub(crate) const PREFIX: &str = "/dav";

fn fs_error(e: &CoreError) -> FsError {
    match e.kind {
        ErrorKind::NotFound => FsError::NotFound,
        // A PUT or COPY onto a folder is refused, not a server failure.
        ErrorKind::PermissionDenied | ErrorKind::InvalidPath | ErrorKind::IsADirectory => {
            FsError::Forbidden
        }
        ErrorKind::AlreadyExists | ErrorKind::NotEmpty => FsError::Exists,
        ErrorKind::LimitReached => FsError::InsufficientStorage,
        ErrorKind::Unsupported => FsError::NotImplemented,
        _ => FsError::GeneralFailure,
    }
}

/// Entries one `COPY` request may create (files and folders): a server-side copy costs the
/// client one request, so its size is bounded like any other.
const MAX_COPY_ENTRIES: u64 = 10_000;

/// The file system dav-server sees: one account's core session, for one request.
#[derive(Clone)]
struct SessionFs {
    session: Arc<Session>,
    /// Locks and dead properties, when the service keeps them.
    dav: Option<DavState>,
    /// The paths of the home that have dead properties, as this request first saw them, so
    /// a listing asks the store only about those. Cleared when this request changes any.
    prop_paths: Arc<tokio::sync::Mutex<Option<Arc<HashSet<String>>>>>,
    /// What this request's `COPY` has created so far: entries and bytes.
    copied: Arc<(AtomicU64, AtomicU64)>,
    /// The bytes a `PUT` says it carries (see [`announced_length`]).
    announced: Option<u64>,
}

/// The bytes a `PUT` body says it carries: its `Content-Range`'s length, else its
/// `Content-Length` or `X-Expected-Entity-Length`. dav-server commits (flushes) before it
/// checks that the body was whole, so the writer compares what came with this.
fn announced_length(request: &Request) -> Option<u64> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(range) = header("content-range") {
        let (first, last) = range
            .strip_prefix("bytes ")?
            .split('/')
            .next()?
            .split_once('-')?;
        let (first, last) = (
            first.trim().parse::<u64>().ok()?,
            last.trim().parse::<u64>().ok()?,
        );
        return last.checked_sub(first)?.checked_add(1);
    }
    header("content-length")
        .or_else(|| header("x-expected-entity-length"))
        .and_then(|v| v.parse().ok())
}

impl SessionFs {
    /// Counts one more entry (and `bytes`) made by this request's copy; refuses once the
    /// request has made [`MAX_COPY_ENTRIES`] entries or as many bytes as the largest file
    /// the session may make.
    fn count_copy(&self, bytes: u64) -> FsResult<()> {
        let entries = self.copied.0.fetch_add(1, Ordering::SeqCst) + 1;
        let total = self.copied.1.fetch_add(bytes, Ordering::SeqCst) + bytes;
        if entries > MAX_COPY_ENTRIES || total > self.session.max_file_size() {
            return Err(FsError::InsufficientStorage);
        }
        Ok(())
    }

    /// Adds `bytes` copied to this request's total (see [`SessionFs::count_copy`]).
    fn count_copy_bytes(&self, bytes: u64) -> FsResult<()> {
        let total = self.copied.1.fetch_add(bytes, Ordering::SeqCst) + bytes;
        if total > self.session.max_file_size() {
            return Err(FsError::InsufficientStorage);
        }
        Ok(())
    }

    fn path(&self, path: &DavPath) -> FsResult<VirtualPath> {
        self.session
            .resolve(&VirtualPath::root(), path.as_bytes())
            .map_err(|e| fs_error(&e))
    }
}

#[derive(Debug, Clone)]
struct Meta(Metadata);

impl DavMetaData for Meta {
    fn len(&self) -> u64 {
        self.0.size
    }
    fn modified(&self) -> FsResult<SystemTime> {
        let secs = u64::try_from(self.0.mtime).unwrap_or(0);
        Ok(UNIX_EPOCH + Duration::from_secs(secs))
    }
    fn is_dir(&self) -> bool {
        self.0.kind == FileKind::Dir
    }
}

struct Entry {
    name: String,
    meta: Metadata,
}

impl DavDirEntry for Entry {
    fn name(&self) -> Vec<u8> {
        self.name.as_bytes().to_vec()
    }
    fn metadata(&self) -> FsFuture<'_, Box<dyn DavMetaData>> {
        let meta: Box<dyn DavMetaData> = Box::new(Meta(self.meta.clone()));
        Box::pin(async move { Ok(meta) })
    }
}

/// A file opened for reading.
struct Reader {
    download: Download,
    position: u64,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Reader({})", self.download.path())
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        // A WebDAV GET may read a range only; whatever was sent was sent on purpose.
        self.download.finish();
    }
}

impl DavFile for Reader {
    fn metadata(&mut self) -> FsFuture<'_, Box<dyn DavMetaData>> {
        Box::pin(async move {
            let meta = self.download.metadata().await.map_err(|e| fs_error(&e))?;
            Ok(Box::new(Meta(meta)) as Box<dyn DavMetaData>)
        })
    }
    fn write_buf(&mut self, _buf: Box<dyn Buf + Send>) -> FsFuture<'_, ()> {
        Box::pin(async { Err(FsError::Forbidden) })
    }
    fn write_bytes(&mut self, _buf: Bytes) -> FsFuture<'_, ()> {
        Box::pin(async { Err(FsError::Forbidden) })
    }
    fn read_bytes(&mut self, count: usize) -> FsFuture<'_, Bytes> {
        Box::pin(async move {
            let data = self
                .download
                .read_at(self.position, count.min(256 * 1024))
                .await
                .map_err(|e| fs_error(&e))?;
            self.position += data.len() as u64;
            Ok(Bytes::from(data))
        })
    }
    fn seek(&mut self, pos: SeekFrom) -> FsFuture<'_, u64> {
        Box::pin(async move {
            let size = self
                .download
                .metadata()
                .await
                .map_err(|e| fs_error(&e))?
                .size;
            self.position = match pos {
                SeekFrom::Start(n) => n,
                SeekFrom::End(d) => size.saturating_add_signed(d),
                SeekFrom::Current(d) => self.position.saturating_add_signed(d),
            };
            Ok(self.position)
        })
    }
    fn flush(&mut self) -> FsFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
}

/// A file opened for writing: the core's upload (which keeps the write position), committed
/// at flush.
struct Writer {
    upload: Option<Upload>,
    /// The file's length so far, for its attributes once the upload is committed.
    written: u64,
    /// Bytes the request said it carries (`Content-Length`, a range's length).
    announced: Option<u64>,
    /// Bytes received.
    received: u64,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Writer({} bytes)", self.written)
    }
}

impl Writer {
    async fn write(&mut self, data: Vec<u8>) -> FsResult<()> {
        let upload = self.upload.as_ref().ok_or(FsError::GeneralFailure)?;
        self.received += data.len() as u64;
        upload.push(data).await.map_err(|e| fs_error(&e))?;
        self.written = upload.end();
        Ok(())
    }
}

impl DavFile for Writer {
    fn metadata(&mut self) -> FsFuture<'_, Box<dyn DavMetaData>> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let meta = Metadata {
            kind: FileKind::File,
            size: self.written,
            permissions: 0o644,
            uid: 0,
            gid: 0,
            atime: now,
            mtime: now,
            identity: None,
        };
        Box::pin(async move { Ok(Box::new(Meta(meta)) as Box<dyn DavMetaData>) })
    }
    fn write_buf(&mut self, mut buf: Box<dyn Buf + Send>) -> FsFuture<'_, ()> {
        Box::pin(async move {
            let data = buf.copy_to_bytes(buf.remaining());
            self.write(data.to_vec()).await
        })
    }
    fn write_bytes(&mut self, buf: Bytes) -> FsFuture<'_, ()> {
        Box::pin(async move { self.write(buf.to_vec()).await })
    }
    fn read_bytes(&mut self, _count: usize) -> FsFuture<'_, Bytes> {
        Box::pin(async { Err(FsError::Forbidden) })
    }
    fn seek(&mut self, pos: SeekFrom) -> FsFuture<'_, u64> {
        Box::pin(async move {
            let upload = self.upload.as_ref().ok_or(FsError::GeneralFailure)?;
            let to = match pos {
                SeekFrom::Start(n) => n,
                SeekFrom::End(d) => upload.end().saturating_add_signed(d),
                SeekFrom::Current(d) => upload.position().saturating_add_signed(d),
            };
            upload.seek(to);
            Ok(to)
        })
    }
    fn flush(&mut self) -> FsFuture<'_, ()> {
        Box::pin(async move {
            if let Some(upload) = self.upload.take() {
                // dav-server flushes before it checks that the body was whole: a body cut
                // short must not be committed under the final name.
                if self.announced.is_some_and(|n| n != self.received) {
                    upload
                        .abort("request body ended before its announced length")
                        .await;
                    return Err(FsError::GeneralFailure);
                }
                upload.commit().await.map_err(|e| fs_error(&e))?;
            }
            Ok(())
        })
    }
}

impl DavFileSystem for SessionFs {
    fn open<'a>(
        &'a self,
        path: &'a DavPath,
        options: OpenOptions,
    ) -> FsFuture<'a, Box<dyn DavFile>> {
        Box::pin(async move {
            let path = self.path(path)?;
            if !options.write {
                let download = self
                    .session
                    .open_download(&path)
                    .await
                    .map_err(|e| fs_error(&e))?;
                return Ok(Box::new(Reader {
                    download,
                    position: 0,
                }) as Box<dyn DavFile>);
            }
            let mut open = UploadOpen::from(if options.append {
                WriteMode::Append
            } else if options.truncate {
                WriteMode::Create
            } else {
                WriteMode::Resume
            });
            if options.create_new {
                open = open.exclusive();
            } else if !options.create {
                open = open.existing();
            }
            let upload = self
                .session
                .open_upload(&path, open, None)
                .await
                .map_err(|e| fs_error(&e))?;
            Ok(Box::new(Writer {
                written: upload.end(),
                upload: Some(upload),
                announced: options.size.or(self.announced),
                received: 0,
            }) as Box<dyn DavFile>)
        })
    }

    fn read_dir<'a>(
        &'a self,
        path: &'a DavPath,
        _meta: ReadDirMeta,
    ) -> FsFuture<'a, FsStream<Box<dyn DavDirEntry>>> {
        Box::pin(async move {
            let path = self.path(path)?;
            let entries = self.session.list(&path).await.map_err(|e| fs_error(&e))?;
            let items: Vec<FsResult<Box<dyn DavDirEntry>>> = entries
                .into_iter()
                .map(|e| {
                    Ok(Box::new(Entry {
                        name: e.name,
                        meta: e.metadata,
                    }) as Box<dyn DavDirEntry>)
                })
                .collect();
            Ok(Box::pin(futures_util::stream::iter(items)) as FsStream<Box<dyn DavDirEntry>>)
        })
    }

    fn metadata<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, Box<dyn DavMetaData>> {
        Box::pin(async move {
            let path = self.path(path)?;
            let meta = self
                .session
                .stat(&path, true)
                .await
                .map_err(|e| fs_error(&e))?;
            Ok(Box::new(Meta(meta)) as Box<dyn DavMetaData>)
        })
    }

    fn create_dir<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, ()> {
        Box::pin(async move {
            let path = self.path(path)?;
            self.count_copy(0)?;
            self.session
                .mkdir(&path, None)
                .await
                .map_err(|e| fs_error(&e))
        })
    }

    fn remove_dir<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, ()> {
        Box::pin(async move {
            let path = self.path(path)?;
            self.session.rmdir(&path).await.map_err(|e| fs_error(&e))?;
            self.props_removed(&path).await;
            Ok(())
        })
    }

    fn remove_file<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, ()> {
        Box::pin(async move {
            let path = self.path(path)?;
            self.session.remove(&path).await.map_err(|e| fs_error(&e))?;
            self.props_removed(&path).await;
            Ok(())
        })
    }

    fn rename<'a>(&'a self, from: &'a DavPath, to: &'a DavPath) -> FsFuture<'a, ()> {
        Box::pin(async move {
            let (from, to) = (self.path(from)?, self.path(to)?);
            self.session
                .rename(&from, &to, false)
                .await
                .map_err(|e| fs_error(&e))?;
            self.props_changed().await;
            if let Some(dav) = &self.dav
                && let Err(e) = dav.moved(&self.session, &from, &to).await
            {
                tracing::warn!("properties of {from} not moved to {to}: {e}");
            }
            Ok(())
        })
    }

    fn copy<'a>(&'a self, from: &'a DavPath, to: &'a DavPath) -> FsFuture<'a, ()> {
        Box::pin(async move {
            let (from, to) = (self.path(from)?, self.path(to)?);
            self.count_copy(0)?;
            let bytes = self
                .session
                .copy(&from, &to)
                .await
                .map_err(|e| fs_error(&e))?;
            self.props_changed().await;
            if let Some(dav) = &self.dav
                && let Err(e) = dav.copied(&self.session, &from, &to).await
            {
                tracing::warn!("properties of {from} not copied to {to}: {e}");
            }
            self.count_copy_bytes(bytes)
        })
    }

    fn have_props<'a>(
        &'a self,
        _path: &'a DavPath,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + 'a>> {
        let have = self.dav.is_some();
        Box::pin(async move { have })
    }

    fn patch_props<'a>(
        &'a self,
        path: &'a DavPath,
        patch: Vec<(bool, DavProp)>,
    ) -> FsFuture<'a, Vec<(StatusCode, DavProp)>> {
        Box::pin(async move {
            let dav = self.dav.as_ref().ok_or(FsError::NotImplemented)?;
            let path = self.path(path)?;
            let changes: Vec<PropChange> = patch
                .iter()
                .map(|(is_set, prop)| {
                    let namespace = prop.namespace.clone().unwrap_or_default();
                    if *is_set {
                        PropChange::Set(DeadProp {
                            namespace,
                            name: prop.name.clone(),
                            xml: prop.xml.clone().unwrap_or_default(),
                        })
                    } else {
                        PropChange::Remove(namespace, prop.name.clone())
                    }
                })
                .collect();
            self.props_changed().await;
            let status = match dav.patch_props(&self.session, &path, &changes).await {
                Ok(()) => StatusCode::OK,
                Err(e) if e.kind == ErrorKind::LimitReached => StatusCode::INSUFFICIENT_STORAGE,
                Err(e) if e.kind == ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
                Err(e) if e.kind == ErrorKind::NotFound => return Err(FsError::NotFound),
                Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            Ok(patch
                .into_iter()
                .map(|(_, prop)| {
                    let answer = DavProp { xml: None, ..prop };
                    (status, answer)
                })
                .collect())
        })
    }

    fn get_props<'a>(&'a self, path: &'a DavPath, do_content: bool) -> FsFuture<'a, Vec<DavProp>> {
        Box::pin(async move {
            let props = self.dead_props(path).await?;
            Ok(props
                .into_iter()
                .map(|p| DavProp {
                    name: p.name,
                    prefix: None,
                    namespace: Some(p.namespace).filter(|n| !n.is_empty()),
                    xml: do_content.then_some(p.xml),
                })
                .collect())
        })
    }

    fn get_prop<'a>(&'a self, path: &'a DavPath, prop: DavProp) -> FsFuture<'a, Vec<u8>> {
        Box::pin(async move {
            let namespace = prop.namespace.unwrap_or_default();
            self.dead_props(path)
                .await?
                .into_iter()
                .find(|p| p.name == prop.name && p.namespace == namespace)
                .map(|p| p.xml)
                .ok_or(FsError::NotFound)
        })
    }
}

impl SessionFs {
    /// The dead properties of `path` (none when the service keeps none).
    async fn dead_props(&self, path: &DavPath) -> FsResult<Vec<DeadProp>> {
        let Some(dav) = &self.dav else {
            return Ok(Vec::new());
        };
        let path = self.path(path)?;
        let known = {
            let mut known = self.prop_paths.lock().await;
            match &*known {
                Some(paths) => Arc::clone(paths),
                None => {
                    let paths = dav
                        .prop_paths(&self.session)
                        .await
                        .map_err(|e| fs_error(&e))?;
                    let paths = Arc::new(paths);
                    *known = Some(Arc::clone(&paths));
                    paths
                }
            }
        };
        if !known.contains(path.as_str()) {
            return Ok(Vec::new());
        }
        dav.props(&self.session, &path)
            .await
            .map_err(|e| fs_error(&e))
    }

    /// Forgets which paths have properties, after this request changed some.
    async fn props_changed(&self) {
        *self.prop_paths.lock().await = None;
    }

    /// Forgets the properties of what this request removed.
    async fn props_removed(&self, path: &VirtualPath) {
        self.props_changed().await;
        if let Some(dav) = &self.dav
            && let Err(e) = dav.removed(&self.session, path).await
        {
            tracing::warn!("properties of {path} not removed: {e}");
        }
    }
}

/// Refuses a request whose path, or `Destination`, is not a plain path in the home.
fn check_paths(request: &Request) -> Result<(), crate::path::PathError> {
    let rest = request.uri().path().strip_prefix(PREFIX).unwrap_or("");
    crate::path::decode(rest)?;
    if let Some(destination) = request
        .headers()
        .get("destination")
        .and_then(|v| v.to_str().ok())
    {
        let path = destination
            .split_once("://")
            .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
            .unwrap_or(destination);
        crate::path::decode(path.strip_prefix(PREFIX).unwrap_or(path))?;
    }
    Ok(())
}

/// A `Range` header asking for several ranges, which the REST API refuses too (see
/// [`crate::range`]): overlapping ranges make a small request cost a large answer.
fn several_ranges(request: &Request) -> bool {
    request
        .headers()
        .get_all(axum::http::header::RANGE)
        .iter()
        .enumerate()
        .any(|(i, v)| i > 0 || v.as_bytes().contains(&b','))
}

/// Largest XML body (PROPFIND, PROPPATCH, LOCK…) read; larger ones get 413.
const MAX_XML_BODY: usize = 256 * 1024;

/// The request with its XML body read (bounded) and checked for nesting depth before any
/// parser sees it; file bodies (PUT) and bodiless methods pass untouched.
async fn bounded_xml_body(
    request: Request,
) -> Result<Request, (axum::http::StatusCode, &'static str)> {
    use axum::http::Method;
    let streamed = [
        Method::GET,
        Method::HEAD,
        Method::PUT,
        Method::DELETE,
        Method::OPTIONS,
    ];
    if streamed.contains(request.method()) {
        return Ok(request);
    }
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_XML_BODY)
        .await
        .map_err(|_| {
            (
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large or cut short",
            )
        })?;
    if crate::xml_guard::too_deep(&bytes, crate::xml_guard::MAX_DEPTH) {
        return Err((
            axum::http::StatusCode::BAD_REQUEST,
            "XML body nested too deeply",
        ));
    }
    Ok(Request::from_parts(parts, axum::body::Body::from(bytes)))
}

/// Every method under `/dav/`.
pub(crate) async fn handle(
    State(shared): State<Arc<Shared>>,
    Extension(conn): Extension<Conn>,
    Extension(session): Extension<Arc<Session>>,
    request: Request,
) -> Response {
    if let Err(e) = check_paths(&request) {
        shared.events.emit(
            shared
                .event(EventKind::ProtocolError, &conn)
                .failed(format!("WebDAV path refused: {e}")),
        );
        return (
            axum::http::StatusCode::BAD_REQUEST,
            format!("path refused: {e}\n"),
        )
            .into_response();
    }
    if several_ranges(&request) {
        shared.events.emit(
            shared
                .event(EventKind::CommandRefused, &conn)
                .failed("WebDAV GET with several byte ranges refused"),
        );
        return (
            axum::http::StatusCode::RANGE_NOT_SATISFIABLE,
            "one byte range at most\n",
        )
            .into_response();
    }
    let request = if matches!(request.method().as_str(), "PUT" | "PATCH") {
        let max = shared.config.max_upload_size;
        let declared = request
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max) {
            let mut refused = shared
                .event(EventKind::CommandRefused, &conn)
                .failed(format!(
                    "WebDAV upload larger than max_upload_size ({max} bytes)"
                ));
            refused.account = Some(session.account().name.to_string());
            shared.events.emit(refused);
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("uploads are limited to {max} bytes\n"),
            )
                .into_response();
        }
        let (events, mut refused) = (
            shared.events.clone(),
            shared.event(EventKind::CommandRefused, &conn),
        );
        refused.account = Some(session.account().name.to_string());
        crate::upload_body::bounded(request, max, shared.config.body_timeout, move |why| {
            events.emit(refused.clone().failed(format!("WebDAV upload: {why}")));
        })
    } else {
        request
    };
    let request = match bounded_xml_body(request).await {
        Ok(request) => request,
        Err((status, why)) => {
            let mut refused = shared
                .event(EventKind::ProtocolError, &conn)
                .failed(format!("WebDAV request body refused: {why}"));
            refused.account = Some(session.account().name.to_string());
            shared.events.emit(refused);
            return (status, format!("{why}\n")).into_response();
        }
    };
    let announced = announced_length(&request);
    let mut builder = DavHandler::builder()
        .filesystem(Box::new(SessionFs {
            session: Arc::clone(&session),
            dav: shared.dav.clone(),
            prop_paths: Arc::default(),
            copied: Arc::default(),
            announced,
        }))
        .principal(session.account().name.to_string())
        .strip_prefix(PREFIX);
    if let Some(dav) = &shared.dav {
        builder = builder.locksystem(Box::new(crate::dav_locks::SessionLs::new(
            dav.clone(),
            session,
        )));
    }
    let handler = builder.build_handler();
    let (parts, body) = handler.handle(request).await.into_parts();
    Response::from_parts(parts, axum::body::Body::new(body))
}
