//! The core session: every file operation of every protocol passes through here.
//!
//! Each method takes client-visible paths (already [`VirtualPath`]s, or raw bytes resolved by
//! [`Session::resolve`]), checks the permission rules for the verbs the operation needs,
//! calls the jailed backend, and records the audit event, success or failure. Front-ends
//! translate their protocol onto these methods and map [`CoreError`] back; they never open
//! a file themselves.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use wharf_types::{Protocol, Verb, VirtualPath};

use crate::account::{Account, UploadMode};
use crate::error::{CoreError, ErrorKind};
use crate::events::{Event, EventBus, EventKind};
use crate::upload::{Download, Upload, WriteMode, hash_prefix, hex};
use crate::vfs::{
    Attrs, DirEntry, FileKind, LocalFs, Metadata, OpenWrite, TEMP_PREFIX, Vfs, VfsStats,
    WriteTarget,
};

/// Most entries one folder listing may return; larger folders are refused, not truncated.
pub const MAX_LISTING: usize = 200_000;

/// Who is on the other end, for the audit trail.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// Session id (unique per connection and channel).
    pub id: String,
    /// Service name from the configuration.
    pub service: String,
    /// Protocol spoken in this session.
    pub protocol: Protocol,
    /// The client's address and port.
    pub remote: Option<SocketAddr>,
}

/// An account's file session. Dropping it records `session.ended`.
pub struct Session {
    info: SessionInfo,
    account: Arc<Account>,
    vfs: Arc<dyn Vfs>,
    events: EventBus,
    started: Instant,
}

impl Session {
    /// Opens a session for `account` on the local filesystem, creating the home folder
    /// when the account's group says so. Records `session.started`.
    pub async fn open(
        account: Arc<Account>,
        info: SessionInfo,
        events: EventBus,
    ) -> Result<Session, CoreError> {
        let home = account.home.clone();
        let create = account.create_home;
        let vfs = tokio::task::spawn_blocking(move || {
            if create && !home.exists() {
                std::fs::create_dir_all(&home)?;
            }
            LocalFs::open(&home)
        })
        .await
        .map_err(|e| CoreError::new(ErrorKind::Failure, e.to_string()))?
        .map_err(|e| {
            CoreError::new(
                ErrorKind::Failure,
                format!(
                    "home folder unavailable: {}",
                    CoreError::from_io(&e).message
                ),
            )
        })?;
        Ok(Session::with_vfs(account, info, events, Arc::new(vfs)))
    }

    /// Opens a session on any backend.
    pub fn with_vfs(
        account: Arc<Account>,
        info: SessionInfo,
        events: EventBus,
        vfs: Arc<dyn Vfs>,
    ) -> Session {
        let session = Session {
            info,
            account,
            vfs,
            events,
            started: Instant::now(),
        };
        session
            .events
            .emit(session.event(EventKind::SessionStarted));
        session
    }

    /// The account this session acts for.
    pub fn account(&self) -> &Account {
        &self.account
    }

    /// The session's identity fields.
    pub fn info(&self) -> &SessionInfo {
        &self.info
    }

    /// An event of `kind` with this session's fields filled in.
    pub fn event(&self, kind: EventKind) -> Event {
        let mut event = Event::new(kind);
        event.service = Some(self.info.service.clone());
        event.protocol = Some(self.info.protocol);
        event.session = Some(self.info.id.clone());
        event.account = Some(self.account.name.to_string());
        event.remote = self.info.remote;
        event
    }

    /// An event about a file that event handlers may act on: it also names the account's
    /// home folder on the server (`attrs.home`) and its groups (`attrs.groups`), so a
    /// handler finds the file and filters on groups without asking any directory again.
    fn file_event(&self, kind: EventKind) -> Event {
        let event = self
            .event(kind)
            .attr("home", self.account.home.to_string_lossy());
        if self.account.groups.is_empty() {
            event
        } else {
            event.attr("groups", self.account.groups.join(","))
        }
    }

    /// Records an event built by a front-end (protocol errors, refused commands).
    pub fn emit(&self, event: Event) {
        self.events.emit(event);
    }

    /// Resolves client bytes (absolute, or relative to `cwd`) into a virtual path.
    pub fn resolve(&self, cwd: &VirtualPath, raw: &[u8]) -> Result<VirtualPath, CoreError> {
        VirtualPath::resolve(cwd, raw).map_err(|e| {
            let shown = String::from_utf8_lossy(&raw[..raw.len().min(256)]).into_owned();
            self.emit(
                self.event(EventKind::PermissionDenied)
                    .failed(format!("path refused: {e}"))
                    .path(shown.escape_debug().to_string())
                    .attr("verb", "resolve"),
            );
            CoreError::from(e)
        })
    }

    /// Refuses `verb` on `path` unless the rules allow it; records `permission.denied`.
    pub fn check(&self, verb: Verb, path: &VirtualPath) -> Result<(), CoreError> {
        let internal = path.components().any(|c| c.starts_with(TEMP_PREFIX));
        if !internal && self.account.rules.allows(verb, path) {
            return Ok(());
        }
        self.emit(
            self.event(EventKind::PermissionDenied)
                .failed(format!("{verb} not allowed"))
                .path(path.to_string())
                .attr("verb", verb.as_str()),
        );
        Err(CoreError::denied(format!(
            "permission denied: {verb} {path}"
        )))
    }

    /// Records a refusal by the backend's jail (a link or a race leading out of the home) as
    /// `permission.denied`, like a rule refusal.
    fn jailed<T>(
        &self,
        verb: Verb,
        path: &VirtualPath,
        result: Result<T, CoreError>,
    ) -> Result<T, CoreError> {
        if let Err(e) = &result
            && e.kind == ErrorKind::PermissionDenied
        {
            self.emit(
                self.event(EventKind::PermissionDenied)
                    .failed("refused by the home-folder jail")
                    .path(path.to_string())
                    .attr("verb", verb.as_str()),
            );
        }
        result
    }

    /// Records the outcome of a simple operation.
    fn record<T>(&self, result: &Result<T, CoreError>, event: Event) {
        match result {
            Ok(_) => self.emit(event),
            Err(e) => self.emit(event.failed(e.message.clone())),
        }
    }

    /// Like `record`, for the file events handlers act on: a success is answered once its
    /// record is written (when the bus is durable).
    async fn record_durable<T>(&self, result: &Result<T, CoreError>, event: Event) {
        match result {
            Ok(_) => self.events.emit_durable(event).await,
            Err(e) => self.emit(event.failed(e.message.clone())),
        }
    }

    /// Attributes of `path`. Needs `list` on its folder (or on `/` for the home itself).
    pub async fn stat(&self, path: &VirtualPath, follow: bool) -> Result<Metadata, CoreError> {
        self.check(Verb::List, &path.parent())?;
        let result = self.vfs.stat(path, follow).await;
        self.jailed(Verb::List, path, result)
    }

    /// Entries of a folder. Needs `list`. Records `folder.listed`.
    pub async fn list(&self, path: &VirtualPath) -> Result<Vec<DirEntry>, CoreError> {
        self.check(Verb::List, path)?;
        let result = self.vfs.read_dir(path, MAX_LISTING).await;
        let result = self.jailed(Verb::List, path, result);
        let mut event = self.event(EventKind::FolderListed).path(path.to_string());
        if let Ok(entries) = &result {
            event = event.attr("entries", entries.len().to_string());
        }
        self.record(&result, event);
        result
    }

    /// Opens a file for download. Needs `read`.
    pub async fn open_download(&self, path: &VirtualPath) -> Result<Download, CoreError> {
        self.check(Verb::Read, path)?;
        let opened = self.vfs.open_read(path).await;
        match self.jailed(Verb::Read, path, opened) {
            Ok(file) => Ok(Download::start(
                file,
                path.clone(),
                self.event(EventKind::DownloadStarted),
                self.events.clone(),
            )),
            Err(e) => {
                self.emit(
                    self.event(EventKind::DownloadFailed)
                        .path(path.to_string())
                        .failed(e.message.clone()),
                );
                Err(e)
            }
        }
    }

    /// Opens a file for upload. Needs `write` for a new file, `overwrite` to replace one,
    /// `append` to resume or append to one.
    pub async fn open_upload(
        &self,
        path: &VirtualPath,
        mode: WriteMode,
        permissions: Option<u32>,
    ) -> Result<Upload, CoreError> {
        if path.is_root() {
            return Err(CoreError::new(ErrorKind::IsADirectory, "is a folder"));
        }
        // Refuse before looking at the file when no upload verb could apply here, so an
        // account without write rights cannot learn from the error whether a file exists.
        let rules = &self.account.rules;
        if !(rules.allows(Verb::Write, path)
            || rules.allows(Verb::Overwrite, path)
            || rules.allows(Verb::Append, path))
        {
            // Write is not allowed, so this records permission.denied and returns the error.
            self.check(Verb::Write, path)?;
        }
        let existing = match self.jailed(Verb::Write, path, self.vfs.stat(path, true).await) {
            Ok(meta) => Some(meta),
            Err(e) if e.kind == ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        if existing.as_ref().is_some_and(|m| m.kind == FileKind::Dir) {
            return Err(CoreError::new(ErrorKind::IsADirectory, "is a folder"));
        }
        let verb = match (mode, &existing) {
            (_, None) => Verb::Write,
            (WriteMode::Create, Some(_)) => Verb::Overwrite,
            (WriteMode::Resume | WriteMode::Append, Some(_)) => Verb::Append,
        };
        self.check(verb, path)?;
        let resumable = self.account.upload_mode == UploadMode::Resumable;
        let target = WriteTarget {
            open: if mode == WriteMode::Create {
                OpenWrite::Truncate
            } else {
                OpenWrite::Keep
            },
            in_place: resumable && existing.is_some() && mode != WriteMode::Create,
            keep_partial: resumable,
            permissions,
        };
        let template = self.file_event(EventKind::UploadStarted);
        let opened = self.vfs.open_write(path, target).await;
        match self.jailed(verb, path, opened) {
            Ok(file) => {
                Upload::start(file, path.clone(), mode, template, self.events.clone()).await
            }
            Err(e) => {
                self.emit(
                    self.event(EventKind::UploadFailed)
                        .path(path.to_string())
                        .failed(e.message.clone()),
                );
                Err(e)
            }
        }
    }

    /// Creates a folder. Needs `mkdir`. Records `folder.created`.
    pub async fn mkdir(
        &self,
        path: &VirtualPath,
        permissions: Option<u32>,
    ) -> Result<(), CoreError> {
        self.check(Verb::Mkdir, path)?;
        let result = self.vfs.mkdir(path, permissions).await;
        let result = self.jailed(Verb::Mkdir, path, result);
        self.record(
            &result,
            self.event(EventKind::FolderCreated).path(path.to_string()),
        );
        result
    }

    /// Removes an empty folder. Needs `rmdir`. Records `folder.removed`.
    pub async fn rmdir(&self, path: &VirtualPath) -> Result<(), CoreError> {
        self.check(Verb::Rmdir, path)?;
        let result = self.vfs.rmdir(path).await;
        let result = self.jailed(Verb::Rmdir, path, result);
        self.record(
            &result,
            self.event(EventKind::FolderRemoved).path(path.to_string()),
        );
        result
    }

    /// Removes a file. Needs `delete`. Records `file.deleted`.
    pub async fn remove(&self, path: &VirtualPath) -> Result<(), CoreError> {
        self.check(Verb::Delete, path)?;
        let result = self.vfs.remove_file(path).await;
        let result = self.jailed(Verb::Delete, path, result);
        self.record(
            &result,
            self.event(EventKind::FileDeleted).path(path.to_string()),
        );
        result
    }

    /// Renames an entry. Needs `rename` on both paths, and `overwrite` on the destination
    /// when `replace` is true and it exists. Records `entry.renamed`.
    pub async fn rename(
        &self,
        from: &VirtualPath,
        to: &VirtualPath,
        replace: bool,
    ) -> Result<(), CoreError> {
        self.check(Verb::Rename, from)?;
        self.check(Verb::Rename, to)?;
        if replace && self.vfs.stat(to, false).await.is_ok() {
            self.check(Verb::Overwrite, to)?;
        }
        let result = self.vfs.rename(from, to, replace).await;
        let result = self.jailed(Verb::Rename, from, result);
        self.record_durable(
            &result,
            self.file_event(EventKind::EntryRenamed)
                .path(from.to_string())
                .path2(to.to_string()),
        )
        .await;
        result
    }

    /// Changes attributes. Needs `setattr`. Records `attributes.changed`.
    pub async fn set_attrs(&self, path: &VirtualPath, attrs: &Attrs) -> Result<(), CoreError> {
        if attrs.is_empty() {
            return Ok(());
        }
        self.check(Verb::Setattr, path)?;
        let result = self.vfs.set_attrs(path, attrs).await;
        let result = self.jailed(Verb::Setattr, path, result);
        let mut event = self
            .event(EventKind::AttributesChanged)
            .path(path.to_string());
        if let Some(p) = attrs.permissions {
            event = event.attr("permissions", format!("{:o}", p & 0o7777));
        }
        if let Some((a, m)) = attrs.times {
            event = event
                .attr("atime", a.to_string())
                .attr("mtime", m.to_string());
        }
        if let Some(size) = attrs.size {
            event = event.attr("size", size.to_string());
        }
        self.record(&result, event);
        result
    }

    /// Creates a symbolic link at `link` pointing to `target`. Needs `write` on the link and
    /// `read` on the target. The link is stored relative to its folder, so it resolves
    /// inside the home and nowhere else. Records `link.created`.
    pub async fn symlink(&self, target: &VirtualPath, link: &VirtualPath) -> Result<(), CoreError> {
        self.check(Verb::Write, link)?;
        self.check(Verb::Read, target)?;
        let relative = relative_target(&link.parent(), target);
        let result = self.vfs.symlink(&relative, link).await;
        let result = self.jailed(Verb::Write, link, result);
        self.record(
            &result,
            self.event(EventKind::LinkCreated)
                .path(link.to_string())
                .path2(target.to_string())
                .attr("kind", "symbolic"),
        );
        result
    }

    /// The target of a symbolic link, as a virtual path when it stays in the home. Needs
    /// `list` on the link's folder.
    pub async fn read_link(&self, path: &VirtualPath) -> Result<String, CoreError> {
        self.check(Verb::List, &path.parent())?;
        let text = self.vfs.read_link(path).await?;
        if text.starts_with('/') {
            // Absolute targets are never followed; do not reveal host paths either.
            return Err(CoreError::denied("link points outside the home folder"));
        }
        let resolved = VirtualPath::resolve(&path.parent(), text.as_bytes())?;
        Ok(resolved.to_string())
    }

    /// Creates a hard link. Needs `read` on the existing file and `write` on the link.
    pub async fn hard_link(
        &self,
        existing: &VirtualPath,
        link: &VirtualPath,
    ) -> Result<(), CoreError> {
        self.check(Verb::Read, existing)?;
        self.check(Verb::Write, link)?;
        let result = self.vfs.hard_link(existing, link).await;
        let result = self.jailed(Verb::Write, link, result);
        self.record(
            &result,
            self.event(EventKind::LinkCreated)
                .path(link.to_string())
                .path2(existing.to_string())
                .attr("kind", "hard"),
        );
        result
    }

    /// Copies a file on the server. Needs `read` on the source and `write` (or `overwrite`)
    /// on the destination. Records `file.copied`.
    pub async fn copy(&self, from: &VirtualPath, to: &VirtualPath) -> Result<u64, CoreError> {
        self.check(Verb::Read, from)?;
        let verb = if self.vfs.stat(to, true).await.is_ok() {
            Verb::Overwrite
        } else {
            Verb::Write
        };
        self.check(verb, to)?;
        let result = self.vfs.copy(from, to).await;
        let result = self.jailed(Verb::Write, to, result);
        let mut event = self
            .file_event(EventKind::FileCopied)
            .path(from.to_string())
            .path2(to.to_string());
        if let Ok(n) = &result {
            event.bytes = Some(*n);
        }
        self.record_durable(&result, event).await;
        result
    }

    /// SHA-256 of a whole file, lowercase hex. Needs `read`.
    pub async fn sha256(&self, path: &VirtualPath) -> Result<String, CoreError> {
        self.check(Verb::Read, path)?;
        let file = self.jailed(Verb::Read, path, self.vfs.open_read(path).await)?;
        if let Some(known) = file.cached_digest().await {
            return Ok(known);
        }
        let stamp = file.digest_stamp().await;
        let (context, _) = hash_prefix(|o, n| file.read_at(o, n), None).await?;
        let digest = hex(context.finish().as_ref());
        file.remember_digest(stamp, &digest).await;
        Ok(digest)
    }

    /// Space figures. Needs `list` on `/`.
    pub async fn stats(&self) -> Result<VfsStats, CoreError> {
        self.check(Verb::List, &VirtualPath::root())?;
        self.vfs.stats().await
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let mut event = self.event(EventKind::SessionEnded);
        event.duration_ms = Some(self.started.elapsed().as_millis() as u64);
        self.events.emit(event);
    }
}

/// The path from folder `from` to `target`, as relative text (`../b/c`).
fn relative_target(from: &VirtualPath, target: &VirtualPath) -> String {
    let from: Vec<&str> = from.components().collect();
    let to: Vec<&str> = target.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<&str> = std::iter::repeat_n("..", from.len() - common).collect();
    parts.extend(&to[common..]);
    if parts.is_empty() {
        ".".to_owned()
    } else {
        parts.join("/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_targets() {
        let p = |s| VirtualPath::parse(s).unwrap();
        assert_eq!(relative_target(&p("/a/b"), &p("/a/c/d")), "../c/d");
        assert_eq!(relative_target(&p("/"), &p("/x")), "x");
        assert_eq!(relative_target(&p("/a"), &p("/a/x")), "x");
        assert_eq!(relative_target(&p("/a/b/c"), &p("/")), "../../..");
    }
}
