//! The core session: every file operation of every protocol passes through here.
//!
//! Each method takes client-visible paths (already [`VirtualPath`]s, or raw bytes resolved by
//! [`Session::resolve`]), checks the permission rules for the verbs the operation needs,
//! calls the jailed backend, and records the audit event, success or failure. Front-ends
//! translate their protocol onto these methods and map [`CoreError`] back; they never open
//! a file themselves.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use wharf_types::{Protocol, Verb, VirtualPath};

use crate::account::{Account, UploadMode};
use crate::error::{CoreError, ErrorKind};
use crate::events::{Event, EventBus, EventKind};
use crate::live::{Cut, Direction, Presence, Transfer};
use crate::upload::own::{OwnUploads, ReadOwn};
use crate::upload::{Download, Upload, UploadOpen, UploadSummary, WriteMode, hash_prefix, hex};
use crate::vfs::{
    Attrs, DirEntry, FileKind, LocalFs, Metadata, OpenWrite, ReadFile, TEMP_PREFIX, Vfs, VfsStats,
    WriteTarget,
};

/// Most entries one folder listing may return; larger folders are refused, not truncated.
pub const MAX_LISTING: usize = 200_000;

/// The permission bits a client may set on a file or folder: read, write and execute for
/// owner, group and others. Set-user-ID, set-group-ID and sticky bits never reach the disk
/// (the server's user, often root, owns every file).
pub const CLIENT_MODE_BITS: u32 = 0o777;

/// How an operation treats a link at its path's last name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Last {
    /// Follow it: the operation is about what the link leads to (open, list, attributes).
    Follow,
    /// Act on the entry itself: a link there is the thing named (delete, rename, create).
    Entry,
}

/// A link on the way changed between finding where it leads and acting there.
fn link_changed() -> CoreError {
    CoreError::denied("a link on the way changed during the operation")
}

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
    /// The service's bound on file sizes, if it sets one (see [`Session::max_file_size`]).
    pub max_file_size: Option<u64>,
    /// The connection's off switch (see [`crate::live`]): pulled, the session's transfers
    /// fail and the front-end closes the connection.
    pub cut: Cut,
}

/// An account's file session. Dropping it records `session.ended`.
pub struct Session {
    info: SessionInfo,
    account: Arc<Account>,
    vfs: Arc<dyn Vfs>,
    events: EventBus,
    started: Instant,
    /// Whether links inside the home are followed (to the path they lead to, where the
    /// rules are decided again). WebDAV never follows them.
    follow_links: bool,
    /// Set on a session made by [`Session::readdressed`]: the session it acts for, kept
    /// open while this one lives, which alone records `session.ended`.
    origin: Option<Arc<Session>>,
    /// This session's uploads in progress, which it alone sees under their final names.
    own: OwnUploads,
    /// Its entry among the sessions open now; on the original session only.
    presence: Option<Presence>,
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
        let presence = Some(events.live().enter(&info, account.name.as_str()));
        let session = Session {
            follow_links: info.protocol != Protocol::Webdav,
            presence,
            info,
            account,
            vfs,
            events,
            started: Instant::now(),
            origin: None,
            own: OwnUploads::default(),
        };
        session
            .events
            .emit(session.event(EventKind::SessionStarted));
        session
    }

    /// The same session (account, files, session id) acting for one request that came from
    /// `remote` in `protocol`, so that request's records name its own connection and
    /// protocol, and a WebDAV request follows no link whichever login opened the session:
    /// a front-end that keeps one session across connections (HTTP) makes one of these per
    /// request. It records neither `session.started` nor `session.ended`; the original does.
    pub fn readdressed(self: &Arc<Self>, remote: SocketAddr, protocol: Protocol) -> Session {
        let origin = self.origin.clone().unwrap_or_else(|| Arc::clone(self));
        Session {
            info: SessionInfo {
                remote: Some(remote),
                protocol,
                ..origin.info.clone()
            },
            account: Arc::clone(&origin.account),
            vfs: Arc::clone(&origin.vfs),
            events: origin.events.clone(),
            started: origin.started,
            follow_links: protocol != Protocol::Webdav,
            own: origin.own.clone(),
            origin: Some(origin),
            presence: None,
        }
    }

    /// The account this session acts for.
    pub fn account(&self) -> &Account {
        &self.account
    }

    /// A transfer of `path` shown under this session among the sessions open now, and
    /// stopped by its connection's cut.
    fn transfer(&self, direction: Direction, path: &VirtualPath) -> Arc<Transfer> {
        let transfer = Transfer::new(direction, path.to_string(), self.info.cut.clone());
        let owner = self.origin.as_deref().unwrap_or(self);
        if let Some(presence) = &owner.presence {
            presence.track(&transfer);
        }
        transfer
    }

    /// The session's identity fields.
    pub fn info(&self) -> &SessionInfo {
        &self.info
    }

    /// The largest file this session may make: the smallest bound the service, the
    /// account and its groups set, or [`crate::account::DEFAULT_MAX_FILE_SIZE`].
    pub fn max_file_size(&self) -> u64 {
        match (self.info.max_file_size, self.account.max_file_size) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => crate::account::DEFAULT_MAX_FILE_SIZE,
        }
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
    /// record is durable (when the bus waits for the writer), and fails when it cannot be
    /// made durable: no file operation goes unaudited.
    async fn record_durable<T>(
        &self,
        result: &Result<T, CoreError>,
        event: Event,
    ) -> Result<(), CoreError> {
        match result {
            Ok(_) => self
                .events
                .emit_durable(event)
                .await
                .map_err(|e| CoreError::new(ErrorKind::Failure, e.0)),
            Err(e) => {
                self.emit(event.failed(e.message.clone()));
                Ok(())
            }
        }
    }

    /// Runs `op` on `path`. The backend follows no link; when one stands on the way, this
    /// finds the path the client really reaches, lets `allowed` decide on that path (the
    /// caller has already checked the name the client gave), and runs `op` there. Returns
    /// the path acted on with the result, so records name the file really reached.
    async fn on_real<T, F, Fut>(
        &self,
        path: &VirtualPath,
        last: Last,
        allowed: impl Fn(&VirtualPath) -> Result<(), CoreError>,
        op: F,
    ) -> Result<(VirtualPath, T), CoreError>
    where
        F: Fn(VirtualPath) -> Fut,
        Fut: Future<Output = Result<T, CoreError>>,
    {
        match op(path.clone()).await {
            Err(e) if e.is_link() => {}
            other => return other.map(|value| (path.clone(), value)),
        }
        let real = self.real_path(path, last).await?;
        allowed(&real)?;
        match op(real.clone()).await {
            Err(e) if e.is_link() => Err(link_changed()),
            other => other.map(|value| (real, value)),
        }
    }

    /// [`Session::on_real`] for operations on two paths (rename, copy, hard link).
    async fn on_real2<T, F, Fut>(
        &self,
        (from, from_last): (&VirtualPath, Last),
        (to, to_last): (&VirtualPath, Last),
        allowed: impl Fn(&VirtualPath, &VirtualPath) -> Result<(), CoreError>,
        op: F,
    ) -> Result<(VirtualPath, VirtualPath, T), CoreError>
    where
        F: Fn(VirtualPath, VirtualPath) -> Fut,
        Fut: Future<Output = Result<T, CoreError>>,
    {
        match op(from.clone(), to.clone()).await {
            Err(e) if e.is_link() => {}
            other => return other.map(|value| (from.clone(), to.clone(), value)),
        }
        let real_from = self.real_path(from, from_last).await?;
        let real_to = self.real_path(to, to_last).await?;
        allowed(&real_from, &real_to)?;
        match op(real_from.clone(), real_to.clone()).await {
            Err(e) if e.is_link() => Err(link_changed()),
            other => other.map(|value| (real_from, real_to, value)),
        }
    }

    /// The path `path` really leads to. WebDAV never follows links: for it, a path that
    /// needs a link to be followed does not exist.
    async fn real_path(&self, path: &VirtualPath, last: Last) -> Result<VirtualPath, CoreError> {
        if !self.follow_links {
            return Err(CoreError::new(
                ErrorKind::NotFound,
                "no such file or folder",
            ));
        }
        self.vfs.real_path(path, last == Last::Follow).await
    }

    /// Refuses unless `path` may be seen: `list` on its folder and on the name itself (the
    /// rules that decide whether a listing shows the name decide whether it can be looked at).
    fn check_visible(&self, path: &VirtualPath) -> Result<(), CoreError> {
        self.check(Verb::List, &path.parent())?;
        if path.is_root() {
            return Ok(());
        }
        self.check(Verb::List, path)
    }

    /// Whether a listing of `folder` shows `name`.
    fn shows(&self, folder: &VirtualPath, name: &str) -> bool {
        folder
            .join(name)
            .is_ok_and(|p| self.account.rules.allows(Verb::List, &p))
    }

    /// Attributes of `path`. Needs `list` on its folder and on the name (for the home
    /// itself, on `/`), at the path given and at the one really reached.
    /// The session's own upload in progress at `path` is seen as the file it will be.
    pub async fn stat(&self, path: &VirtualPath, follow: bool) -> Result<Metadata, CoreError> {
        self.check_visible(path)?;
        if let Some(upload) = self.own.get(path).await {
            return upload.metadata().await;
        }
        let last = if follow { Last::Follow } else { Last::Entry };
        let result = self
            .on_real(
                path,
                last,
                |real| self.check_visible(real),
                |p| async move { self.vfs.stat(&p, follow).await },
            )
            .await
            .and_then(|(_, meta)| {
                if meta.kind == FileKind::Symlink && !self.follow_links {
                    Err(CoreError::new(
                        ErrorKind::NotFound,
                        "no such file or folder",
                    ))
                } else {
                    Ok(meta)
                }
            });
        self.jailed(Verb::List, path, result)
    }

    /// Entries of a folder. Needs `list` on the folder; shows only the names whose own
    /// path the rules let the account list. Records `folder.listed`.
    pub async fn list(&self, path: &VirtualPath) -> Result<Vec<DirEntry>, CoreError> {
        self.check(Verb::List, path)?;
        let result = self
            .on_real(
                path,
                Last::Follow,
                |real| self.check(Verb::List, real),
                |p| async move { self.vfs.read_dir(&p, MAX_LISTING).await },
            )
            .await;
        let result = self.jailed(Verb::List, path, result);
        let (real, result) = match result {
            Ok((real, mut entries)) => {
                let total = entries.len();
                entries.retain(|e| {
                    (self.follow_links || e.metadata.kind != FileKind::Symlink)
                        && self.shows(path, &e.name)
                        && (real == *path || self.shows(&real, &e.name))
                });
                let hidden = total - entries.len();
                if real == *path {
                    self.add_own_uploads(path, &mut entries).await;
                }
                (real, Ok((entries, hidden)))
            }
            Err(e) => (path.clone(), Err(e)),
        };
        let mut event = self.event(EventKind::FolderListed);
        event = self.at(event, &real, path);
        if let Ok((entries, hidden)) = &result {
            event = event.attr("entries", entries.len().to_string());
            if *hidden > 0 {
                event = event.attr("hidden", hidden.to_string());
            }
        }
        self.record(&result, event);
        result.map(|(entries, _)| entries)
    }

    /// Shows the session's own uploads in progress in a listing of their folder, as the
    /// files they will be.
    async fn add_own_uploads(&self, folder: &VirtualPath, entries: &mut Vec<DirEntry>) {
        for (name, upload) in self.own.in_folder(folder) {
            if !self.shows(folder, &name) {
                continue;
            }
            let Ok(metadata) = upload.metadata().await else {
                continue;
            };
            entries.retain(|e| e.name != name);
            if entries.len() < MAX_LISTING {
                entries.push(DirEntry { name, metadata });
            }
        }
    }

    /// Sets an event's path to the one really reached, naming the client's when it differs.
    fn at(&self, event: Event, real: &VirtualPath, named: &VirtualPath) -> Event {
        let event = event.path(real.to_string());
        if real == named {
            event
        } else {
            event.attr("via", named.to_string())
        }
    }

    /// Opens a file for download. Needs `read`. The session's own upload in progress at
    /// `path` is read as written so far.
    pub async fn open_download(&self, path: &VirtualPath) -> Result<Download, CoreError> {
        self.check(Verb::Read, path)?;
        if let Some(upload) = self.own.get(path).await {
            let template = self
                .event(EventKind::DownloadStarted)
                .path(path.to_string());
            return Ok(Download::start(
                Box::new(ReadOwn(upload)),
                path.clone(),
                template,
                self.events.clone(),
            )
            .moving(self.transfer(Direction::Download, path)));
        }
        let opened = self
            .on_real(
                path,
                Last::Follow,
                |real| self.check(Verb::Read, real),
                |p| async move { self.vfs.open_read(&p).await },
            )
            .await;
        match self.jailed(Verb::Read, path, opened) {
            Ok((real, file)) => {
                let template = self.at(self.event(EventKind::DownloadStarted), &real, path);
                let transfer = self.transfer(Direction::Download, &real);
                Ok(Download::start(file, real, template, self.events.clone()).moving(transfer))
            }
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

    /// Refuses before looking at a file when no upload verb could apply to `path`, so an
    /// account without write rights cannot learn from the error whether a file exists.
    fn check_may_upload(&self, path: &VirtualPath) -> Result<(), CoreError> {
        let rules = &self.account.rules;
        if rules.allows(Verb::Write, path)
            || rules.allows(Verb::Overwrite, path)
            || rules.allows(Verb::Append, path)
        {
            return Ok(());
        }
        // Write is not allowed, so this records permission.denied and returns the error.
        self.check(Verb::Write, path)
    }

    /// Where an upload of `path` really lands, and what is there now. Needs an upload verb
    /// (`write`, `overwrite` or `append`) at the path given and at the one really reached;
    /// not `list`: a drop folder's account uploads without seeing what is there.
    async fn locate_upload(
        &self,
        path: &VirtualPath,
    ) -> Result<(VirtualPath, Option<Metadata>), CoreError> {
        self.check_may_upload(path)?;
        let found = self
            .on_real(
                path,
                Last::Follow,
                |real| self.check_may_upload(real),
                |p| async move {
                    match self.vfs.stat(&p, true).await {
                        Ok(meta) => Ok(Some(meta)),
                        Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
                        Err(e) => Err(e),
                    }
                },
            )
            .await;
        self.jailed(Verb::Write, path, found)
    }

    /// Where an entry sent to `target` under the sender's own name `name` lands: inside
    /// `target` when a folder is there (an SCP target, a put to a folder), else at `target`
    /// itself. Learning that a folder is there needs what [`Session::stat`] needs, or a verb
    /// that creates `name` inside it (`write`, `overwrite`, `append`, `mkdir`): a drop
    /// folder's account sends into a folder it may not look at. Records nothing; what is
    /// then done at the place returned is checked and recorded as usual.
    pub async fn place_in(
        &self,
        target: &VirtualPath,
        name: &str,
    ) -> Result<VirtualPath, CoreError> {
        let inside = target.join(name)?;
        if self.own.get(target).await.is_some() {
            return Ok(target.clone());
        }
        let rules = &self.account.rules;
        let may_look = |p: &VirtualPath| {
            rules.allows(Verb::List, &p.parent()) && (p.is_root() || rules.allows(Verb::List, p))
        };
        let may_create_in = |folder: &VirtualPath| {
            folder.join(name).is_ok_and(|p| {
                [Verb::Write, Verb::Overwrite, Verb::Append, Verb::Mkdir]
                    .iter()
                    .any(|verb| rules.allows(*verb, &p))
            })
        };
        let allowed = |p: &VirtualPath| {
            if may_look(p) || may_create_in(p) {
                Ok(())
            } else {
                Err(CoreError::denied("permission denied"))
            }
        };
        if allowed(target).is_err() {
            return Ok(target.clone());
        }
        let found = self
            .on_real(target, Last::Follow, allowed, |p| async move {
                self.vfs.stat(&p, true).await
            })
            .await;
        Ok(match found {
            Ok((_, meta)) if meta.kind == FileKind::Dir => inside,
            _ => target.clone(),
        })
    }

    /// The digest of a committed upload that the client may be told: all of it, when every
    /// byte came from the client or the account may read the file; none otherwise (a
    /// continued file's digest would confirm guesses about content the account may not
    /// read).
    pub fn digest_for_client<'a>(&self, summary: &'a UploadSummary) -> Option<&'a str> {
        (!summary.continued || self.account.rules.allows(Verb::Read, &summary.path))
            .then_some(summary.sha256.as_str())
    }

    /// Records an open refused for what is (or is not) at `path` (`upload.failed`) and
    /// returns the error.
    fn open_refused(&self, path: &VirtualPath, kind: ErrorKind, message: &str) -> CoreError {
        self.emit(
            self.event(EventKind::UploadFailed)
                .path(path.to_string())
                .failed(message),
        );
        CoreError::new(kind, message)
    }

    /// Whether a file is at the place an upload of `path` lands (a WebDAV lock's verb
    /// depends on it). Needs an upload verb there, not `list`.
    pub(crate) async fn upload_exists(&self, path: &VirtualPath) -> Result<bool, CoreError> {
        if self.own.get(path).await.is_some() {
            self.check_may_upload(path)?;
            return Ok(true);
        }
        self.locate_upload(path)
            .await
            .map(|(_, found)| found.is_some())
    }

    /// Opens a file for upload as `open` asks (a [`WriteMode`] alone, or an
    /// [`UploadOpen`] with exclusive creation, a file that must exist, or the offset a
    /// resumed upload continues from), decided on the file really opened. Needs `write`
    /// for a new file, `overwrite` to replace one, `append` to resume or append to one, at
    /// the path given and at the one really reached; never `list`, so a drop folder's
    /// account uploads without seeing what is there.
    pub async fn open_upload(
        &self,
        path: &VirtualPath,
        open: impl Into<UploadOpen>,
        permissions: Option<u32>,
    ) -> Result<Upload, CoreError> {
        let open = open.into();
        if path.is_root() {
            return Err(self.open_refused(path, ErrorKind::IsADirectory, "is a folder"));
        }
        let (real, existing) = self.locate_upload(path).await?;
        // Each refusal below is recorded: what is at a name must not be probed silently
        // (the records let an administrator see it, and the answers are the ones
        // docs/security.md admits).
        if existing.as_ref().is_some_and(|m| m.kind == FileKind::Dir) {
            return Err(self.open_refused(path, ErrorKind::IsADirectory, "is a folder"));
        }
        match &existing {
            Some(_) if open.exclusive => {
                return Err(self.open_refused(path, ErrorKind::AlreadyExists, "already exists"));
            }
            None if open.must_exist => {
                return Err(self.open_refused(path, ErrorKind::NotFound, "no such file"));
            }
            _ => {}
        }
        // Continuing or appending to nothing creates the file; so is it recorded.
        let mode = if existing.is_none() {
            WriteMode::Create
        } else {
            open.mode
        };
        let verb = match (mode, &existing) {
            (_, None) => Verb::Write,
            (WriteMode::Create, Some(_)) => Verb::Overwrite,
            (WriteMode::Resume | WriteMode::Append, Some(_)) => Verb::Append,
        };
        self.check(verb, path)?;
        if real != *path {
            self.check(verb, &real)?;
        }
        // An upload whose record could not be kept is refused before it starts.
        self.events
            .trail_ready()
            .map_err(|e| self.open_refused(path, ErrorKind::Failure, &e.0))?;
        // A resume offset that cannot be right is refused before anything is opened (a
        // resume in atomic mode starts with a copy of the whole file); the file opened is
        // checked again (see `Upload::start`). Only after the verb is allowed: the answer
        // says something of the file.
        let size = existing.as_ref().map_or(0, |m| m.size);
        if open.resume_at.is_some_and(|at| at != size) {
            return Err(self.open_refused(
                path,
                ErrorKind::InvalidOffset,
                crate::upload::NOT_THE_END,
            ));
        }
        let resumable = self.account.upload_mode == UploadMode::Resumable;
        let target = WriteTarget {
            open: if mode == WriteMode::Create {
                OpenWrite::Truncate
            } else {
                OpenWrite::Keep
            },
            in_place: resumable && existing.is_some() && mode != WriteMode::Create,
            keep_partial: resumable,
            // Without `overwrite`, or when the client asked for a new file only, a file
            // that appears at the name while this upload runs is not replaced: the commit
            // fails instead.
            replace: verb != Verb::Write || (!open.exclusive && self.may_overwrite(path, &real)),
            // As open(2) with O_CREAT does: the mode asked for applies to a new file only; a
            // file replaced or continued keeps its own (sshfs asks mode 0 when it opens an
            // existing file for appending).
            permissions: match &existing {
                Some(meta) => Some(meta.permissions & CLIENT_MODE_BITS),
                None => permissions.map(|p| p & CLIENT_MODE_BITS),
            },
        };
        let template = self.at(self.file_event(EventKind::UploadStarted), &real, path);
        let opened = match self.vfs.open_write(&real, target).await {
            Err(e) if e.is_link() => Err(link_changed()),
            other => other,
        };
        let started = match self.jailed(verb, path, opened) {
            Ok(file) => {
                Upload::start(
                    file,
                    real,
                    UploadOpen { mode, ..open },
                    existing.is_some(),
                    template,
                    self.events.clone(),
                    self.max_file_size(),
                )
                .await
            }
            Err(e) => Err(e),
        };
        match started {
            Ok(upload) => {
                let upload = upload.moving(self.transfer(Direction::Upload, path));
                // `append` continues a file; only `overwrite` writes over what it held.
                if verb == Verb::Append && !self.may_overwrite(path, &upload.path()) {
                    upload.guard_earlier();
                }
                Ok(upload)
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

    /// Opens a file for upload as one handle among several the client may hold on it (SFTP,
    /// and so sshfs): while the upload is in progress this session, and no other, sees it
    /// under its final name ([`Session::stat`], [`Session::list`],
    /// [`Session::open_download`], [`Session::set_attrs`], [`Session::rename`],
    /// [`Session::remove`]). A further open of the same name joins the upload in progress
    /// (emptying it for [`WriteMode::Create`]) instead of starting another; the last
    /// [`Session::close_shared_upload`] commits it. Needs what [`Session::open_upload`]
    /// needs.
    pub async fn open_shared_upload(
        &self,
        path: &VirtualPath,
        open: impl Into<UploadOpen>,
        permissions: Option<u32>,
    ) -> Result<Arc<Upload>, CoreError> {
        let open = open.into();
        if let Some(upload) = self.own.get(path).await {
            self.check_may_upload(path)?;
            let _lifecycle = upload.shared.lifecycle.lock().await;
            if upload.is_live() {
                if open.exclusive {
                    return Err(self.open_refused(
                        path,
                        ErrorKind::AlreadyExists,
                        "already exists",
                    ));
                }
                if open.resume_at.is_some_and(|at| at != upload.end()) {
                    return Err(self.open_refused(
                        path,
                        ErrorKind::InvalidOffset,
                        crate::upload::NOT_THE_END,
                    ));
                }
                if open.mode == WriteMode::Create {
                    // Emptying it throws away bytes: of a file it replaced or continues,
                    // which needs `overwrite`, or only its own new ones, which `write`
                    // allows. Appending and then truncating must not replace a file.
                    let verb = if upload.keeps_earlier_content() {
                        Verb::Overwrite
                    } else {
                        Verb::Write
                    };
                    self.check(verb, path)?;
                    let real = upload.path();
                    if real != *path {
                        self.check(verb, &real)?;
                    }
                    upload.truncate_all().await?;
                }
                upload.shared.handles.fetch_add(1, Ordering::SeqCst);
                return Ok(Arc::clone(&upload));
            }
        }
        let upload = Arc::new(self.open_upload(path, open, permissions).await?);
        self.own.insert(&upload);
        Ok(upload)
    }

    /// Closes one handle of an upload opened by [`Session::open_shared_upload`]. The last
    /// one commits it (`Some` summary), or gives it up when the client removed it meanwhile;
    /// an earlier one only writes what is held.
    pub async fn close_shared_upload(
        &self,
        upload: &Arc<Upload>,
    ) -> Result<Option<UploadSummary>, CoreError> {
        let _lifecycle = upload.shared.lifecycle.lock().await;
        if !self.last_handle(upload) {
            upload.flush().await?;
            return Ok(None);
        }
        let result = if upload.shared.unlinked.load(Ordering::SeqCst) {
            upload
                .abandon("the client removed the file before closing it")
                .await;
            Ok(None)
        } else {
            upload.commit().await.map(Some)
        };
        // Only now: until the file is under its final name, the session's requests for
        // that name wait for this commit (see `OwnUploads::get`).
        self.own.remove(&upload.path(), upload);
        result
    }

    /// Gives up one handle of a shared upload (the client left); the last one gives the
    /// upload up, never committing it.
    pub async fn abort_shared_upload(&self, upload: &Arc<Upload>, reason: &str) {
        let _lifecycle = upload.shared.lifecycle.lock().await;
        if self.last_handle(upload) {
            upload.abort(reason).await;
            self.own.remove(&upload.path(), upload);
        }
    }

    /// Counts one handle of `upload` closed; true when it was the last.
    fn last_handle(&self, upload: &Upload) -> bool {
        let before = upload
            .shared
            .handles
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .unwrap_or(0);
        before <= 1
    }

    /// Reads back part of an upload in progress through the handle that writes it (SFTP's
    /// read-write opens). Needs `read`: what an upload holds may include the content of the
    /// file it resumes.
    pub async fn read_upload(
        &self,
        upload: &Upload,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>, CoreError> {
        self.check(Verb::Read, &upload.path())?;
        upload.read_at(offset, len).await
    }

    /// Changes the attributes of an upload in progress through its handle (SFTP
    /// FSETSTAT). Needs `setattr`; recorded as [`Session::set_attrs`] records.
    pub async fn set_upload_attrs(&self, upload: &Upload, attrs: &Attrs) -> Result<(), CoreError> {
        let path = upload.path();
        let Some((attrs, ignored)) = self.prepare_attrs(&path, attrs)? else {
            return Ok(());
        };
        let result = upload.set_attrs(&attrs).await;
        let event = attrs_event(self.event(EventKind::AttributesChanged), &attrs, ignored)
            .path(path.to_string());
        self.record(&result, event);
        result
    }

    /// Renames the session's own upload in progress: it will commit under `to`. `None`
    /// when it was committed or given up meanwhile (the caller renames the file then).
    async fn rename_own(
        &self,
        upload: &Arc<Upload>,
        from: &VirtualPath,
        to: &VirtualPath,
        replace: bool,
    ) -> Option<Result<(), CoreError>> {
        let _lifecycle = upload.shared.lifecycle.lock().await;
        if upload.is_closed()
            || upload.shared.unlinked.load(Ordering::SeqCst)
            || upload.path() != *from
        {
            return None;
        }
        let result = async {
            self.check_move(from, to, FileKind::File).await?;
            let other = self
                .own
                .peek(to)
                .filter(|o| o.is_live() && !Arc::ptr_eq(o, upload));
            let exists = match self.vfs.stat(to, false).await {
                Ok(_) => true,
                Err(e) if e.is_link() => return Err(e),
                Err(_) => other.is_some(),
            };
            let replace_now = if exists {
                if !replace {
                    return Err(CoreError::new(ErrorKind::AlreadyExists, "already exists"));
                }
                self.check(Verb::Overwrite, to)?;
                true
            } else {
                replace && self.may_overwrite(to, to)
            };
            upload.retarget(to, replace_now).await?;
            if let Some(other) = other {
                // Replaced before it was closed: its last close gives it up.
                other.shared.unlinked.store(true, Ordering::SeqCst);
                self.own.remove(to, &other);
            }
            self.own.remove(from, upload);
            self.own.insert(upload);
            // The name held a committed file that this upload was to replace or continue:
            // the rename takes the name away, so that file goes with it, as on a local disk,
            // where the account may delete it. A file committed there by someone else while
            // this upload was new, or one the account may not delete, stays.
            if upload.keeps_earlier_content()
                && self.check(Verb::Delete, from).is_ok()
                && let Ok(meta) = self.vfs.stat(from, false).await
                && meta.kind != FileKind::Dir
            {
                self.vfs.remove_file(from).await?;
                self.emit(
                    self.file_event(EventKind::FileDeleted)
                        .path(from.to_string())
                        .attr("replaced_by", to.to_string()),
                );
            }
            Ok(())
        }
        .await;
        Some(result)
    }

    /// Creates a folder. Needs `mkdir`. Records `folder.created`.
    pub async fn mkdir(
        &self,
        path: &VirtualPath,
        permissions: Option<u32>,
    ) -> Result<(), CoreError> {
        let permissions = permissions.map(|p| p & CLIENT_MODE_BITS);
        self.on_entry(
            Verb::Mkdir,
            path,
            EventKind::FolderCreated,
            |p| async move { self.vfs.mkdir(&p, permissions).await },
        )
        .await
    }

    /// An operation on the entry `path` names (a link there is the entry itself): `verb` is
    /// checked at the path given and at the one really reached, and the outcome is
    /// recorded as `kind` under the path really reached.
    async fn on_entry<F, Fut>(
        &self,
        verb: Verb,
        path: &VirtualPath,
        kind: EventKind,
        op: F,
    ) -> Result<(), CoreError>
    where
        F: Fn(VirtualPath) -> Fut,
        Fut: Future<Output = Result<(), CoreError>>,
    {
        self.check(verb, path)?;
        let result = self
            .on_real(path, Last::Entry, |real| self.check(verb, real), op)
            .await;
        let result = self.jailed(verb, path, result);
        let event = match &result {
            Ok((real, ())) => self.at(self.event(kind), real, path),
            Err(_) => self.event(kind).path(path.to_string()),
        };
        let result = result.map(|_| ());
        self.record(&result, event);
        result
    }

    /// Removes an empty folder. Needs `rmdir`. Records `folder.removed`.
    pub async fn rmdir(&self, path: &VirtualPath) -> Result<(), CoreError> {
        self.on_entry(
            Verb::Rmdir,
            path,
            EventKind::FolderRemoved,
            |p| async move { self.vfs.rmdir(&p).await },
        )
        .await
    }

    /// Removes a file (a link itself, never what it points to). Needs `delete`. Records
    /// `file.deleted`.
    /// The session's own upload in progress at `path` is given up when its last handle
    /// closes (and a committed file under the name is removed as well).
    pub async fn remove(&self, path: &VirtualPath) -> Result<(), CoreError> {
        let mut unlinked = false;
        if let Some(upload) = self.own.get(path).await {
            self.check(Verb::Delete, path)?;
            let _lifecycle = upload.shared.lifecycle.lock().await;
            if !upload.is_closed() && !upload.shared.unlinked.swap(true, Ordering::SeqCst) {
                self.own.remove(path, &upload);
                unlinked = true;
            }
        }
        self.on_entry(Verb::Delete, path, EventKind::FileDeleted, |p| async move {
            match self.vfs.remove_file(&p).await {
                Err(e) if unlinked && e.kind == ErrorKind::NotFound => Ok(()),
                other => other,
            }
        })
        .await
    }

    /// Renames an entry (a link itself, never what it points to). Needs `rename` on both
    /// paths, and `overwrite` on the destination when `replace` is true and it exists.
    /// Records `entry.renamed`.
    pub async fn rename(
        &self,
        from: &VirtualPath,
        to: &VirtualPath,
        replace: bool,
    ) -> Result<(), CoreError> {
        self.check(Verb::Rename, from)?;
        self.check(Verb::Rename, to)?;
        if let Some(upload) = self.own.get(from).await
            && let Some(result) = self.rename_own(&upload, from, to, replace).await
        {
            let event = self
                .file_event(EventKind::EntryRenamed)
                .path(from.to_string())
                .path2(to.to_string());
            self.record_durable(&result, event).await?;
            return result;
        }
        let result = self
            .on_real2(
                (from, Last::Entry),
                (to, Last::Entry),
                |f, t| {
                    self.check(Verb::Rename, f)?;
                    self.check(Verb::Rename, t)
                },
                |f, t| async move {
                    let moved = self.vfs.stat(&f, false).await?;
                    self.check_move(&f, &t, moved.kind).await?;
                    let mut replace = replace;
                    if replace {
                        match self.vfs.stat(&t, false).await {
                            Ok(_) => {
                                self.check(Verb::Overwrite, to)?;
                                self.check(Verb::Overwrite, &t)?;
                            }
                            Err(e) if e.is_link() => return Err(e),
                            // Nothing there now: without `overwrite`, nothing that appears
                            // meanwhile is replaced either.
                            Err(_) => replace = self.may_overwrite(to, &t),
                        }
                    }
                    self.vfs.rename(&f, &t, replace).await
                },
            )
            .await;
        let result = self.jailed(Verb::Rename, from, result);
        let event = match &result {
            Ok((f, t, ())) => {
                let mut event = self
                    .at(self.file_event(EventKind::EntryRenamed), f, from)
                    .path2(t.to_string());
                if t != to {
                    event = event.attr("via2", to.to_string());
                }
                self.with_identity(event, t).await
            }
            Err(_) => self
                .file_event(EventKind::EntryRenamed)
                .path(from.to_string())
                .path2(to.to_string()),
        };
        let result = result.map(|_| ());
        self.record_durable(&result, event).await?;
        result
    }

    /// Whether the rules let the account overwrite at the path named and at the one really
    /// reached (asked without recording a refusal).
    fn may_overwrite(&self, named: &VirtualPath, real: &VirtualPath) -> bool {
        let rules = &self.account.rules;
        rules.allows(Verb::Overwrite, named) && rules.allows(Verb::Overwrite, real)
    }

    /// Refuses a size beyond [`Session::max_file_size`], and records it.
    fn too_large(&self, path: &VirtualPath, size: u64) -> CoreError {
        let limit = self.max_file_size();
        self.emit(
            self.event(EventKind::CommandRefused)
                .failed(format!(
                    "file size {size} beyond the maximum of {limit} bytes"
                ))
                .path(path.to_string())
                .attr("limit", limit.to_string()),
        );
        CoreError::new(
            ErrorKind::LimitReached,
            format!("file size beyond the maximum of {limit} bytes"),
        )
    }

    /// Refuses a rename that would change which rules apply to what it moves: a file (or
    /// link) may not gain at `to` a verb its place `from` refuses, and a folder may move only
    /// where every rule decides alike for everything beneath both places (so renaming `/ro`
    /// away, changing what is inside, and renaming it back is refused). A relative link may
    /// not move where its text would lead outside the home.
    async fn check_move(
        &self,
        from: &VirtualPath,
        to: &VirtualPath,
        kind: FileKind,
    ) -> Result<(), CoreError> {
        const FILE_VERBS: [Verb; 7] = [
            Verb::List,
            Verb::Read,
            Verb::Overwrite,
            Verb::Append,
            Verb::Delete,
            Verb::Rename,
            Verb::Setattr,
        ];
        let rules = &self.account.rules;
        let verbs: &[Verb] = if kind == FileKind::Dir {
            &Verb::ALL
        } else {
            &FILE_VERBS
        };
        let refusal = if let Some(verb) = rules.gained(from, to, verbs) {
            Some((
                verb.as_str(),
                format!("{to} would allow {verb}, which {from} refuses"),
            ))
        } else if kind == FileKind::Dir && !rules.alike_beneath(from, to) {
            Some((
                Verb::Rename.as_str(),
                "the rules beneath the two places differ".to_owned(),
            ))
        } else if kind == FileKind::Symlink
            && let Ok(text) = self.vfs.read_link(from).await
            && !text.starts_with('/')
            && !leads_inside(&to.parent(), &text)
        {
            Some((
                Verb::Rename.as_str(),
                "the link would lead outside the home".to_owned(),
            ))
        } else {
            None
        };
        let Some((verb, why)) = refusal else {
            return Ok(());
        };
        self.emit(
            self.event(EventKind::PermissionDenied)
                .failed(format!("move refused: {why}"))
                .path(from.to_string())
                .path2(to.to_string())
                .attr("verb", verb),
        );
        Err(CoreError::denied(format!("permission denied: {why}")))
    }

    /// Adds the identity of the file now at `path` to a record handlers act on, so they can
    /// tell it from a file put in its place later. Only asked when the bus is durable
    /// (handlers are configured), as it costs a look at the file.
    async fn with_identity(&self, event: Event, path: &VirtualPath) -> Event {
        if !self.events.is_durable() {
            return event;
        }
        match self.vfs.stat(path, false).await {
            Ok(Metadata {
                identity: Some(identity),
                ..
            }) => event.attr("inode", identity),
            _ => event,
        }
    }

    /// Changes attributes. Needs `setattr`, at the path given and at the file really
    /// reached. Only the permission bits `0o777` may be set: set-user-ID, set-group-ID and
    /// sticky bits asked for are dropped (`attrs.ignored` says which). Records
    /// `attributes.changed`.
    /// The session's own upload in progress at `path` is changed in progress.
    pub async fn set_attrs(&self, path: &VirtualPath, attrs: &Attrs) -> Result<(), CoreError> {
        if let Some(upload) = self.own.get(path).await {
            return self.set_upload_attrs(&upload, attrs).await;
        }
        let Some((attrs, ignored)) = self.prepare_attrs(path, attrs)? else {
            return Ok(());
        };
        let wanted = &attrs;
        let result = self
            .on_real(
                path,
                Last::Follow,
                |real| self.check(Verb::Setattr, real),
                |p| async move { self.vfs.set_attrs(&p, wanted).await },
            )
            .await;
        let result = self.jailed(Verb::Setattr, path, result);
        let event = match &result {
            Ok((real, ())) => self.at(self.event(EventKind::AttributesChanged), real, path),
            Err(_) => self
                .event(EventKind::AttributesChanged)
                .path(path.to_string()),
        };
        let event = attrs_event(event, &attrs, ignored);
        let result = result.map(|_| ());
        self.record(&result, event);
        result
    }

    /// Checks an attribute change on `path` (`setattr`, the size bound) and keeps only the
    /// permission bits a client may set; `None` when nothing would change. Returns the
    /// bits dropped.
    fn prepare_attrs(
        &self,
        path: &VirtualPath,
        attrs: &Attrs,
    ) -> Result<Option<(Attrs, u32)>, CoreError> {
        if attrs.is_empty() {
            return Ok(None);
        }
        self.check(Verb::Setattr, path)?;
        if let Some(size) = attrs.size
            && size > self.max_file_size()
        {
            return Err(self.too_large(path, size));
        }
        let mut attrs = attrs.clone();
        let ignored = attrs
            .permissions
            .map_or(0, |p| p & 0o7777 & !CLIENT_MODE_BITS);
        attrs.permissions = attrs.permissions.map(|p| p & CLIENT_MODE_BITS);
        Ok(Some((attrs, ignored)))
    }

    /// Creates a symbolic link at `link` whose content the client gave as `text` (relative
    /// to the link's folder, or absolute in the home). Needs `write` on the link, and on what
    /// the link exposes: `read` on a file, `list` on a folder (at the target named and at
    /// the one really reached). A relative text of plain names (no `..`) is stored as
    /// given: it can only lead below the link's folder, wherever that is moved. Any other
    /// target is stored as the place it names in the home, so that no later rename can make
    /// it lead outside. Records `link.created`.
    pub async fn symlink(&self, text: &[u8], link: &VirtualPath) -> Result<(), CoreError> {
        self.check(Verb::Write, link)?;
        let target = &self.resolve(&link.parent(), text)?;
        let as_given = std::str::from_utf8(text).ok().filter(|t| {
            !t.is_empty()
                && !t.starts_with('/')
                && t.split('/').all(|n| !n.is_empty() && n != "." && n != "..")
        });
        let real_target = if self.follow_links {
            self.jailed(Verb::Read, target, self.vfs.real_path(target, true).await)?
        } else {
            target.clone()
        };
        let exposes = match self.vfs.stat(&real_target, true).await {
            Ok(meta) if meta.kind == FileKind::Dir => Verb::List,
            _ => Verb::Read,
        };
        self.check(exposes, target)?;
        if real_target != *target {
            self.check(exposes, &real_target)?;
        }
        let real_target = &real_target;
        let result = self
            .on_real(
                link,
                Last::Entry,
                |real| self.check(Verb::Write, real),
                |p| async move { self.vfs.symlink(as_given, real_target, &p).await },
            )
            .await;
        let result = self.jailed(Verb::Write, link, result);
        let event = match &result {
            Ok((real, ())) => self.at(self.event(EventKind::LinkCreated), real, link),
            Err(_) => self.event(EventKind::LinkCreated).path(link.to_string()),
        }
        .path2(real_target.to_string())
        .attr("kind", "symbolic");
        let result = result.map(|_| ());
        self.record(&result, event);
        result
    }

    /// A symbolic link's content as the client sees it: a relative text as stored, or an
    /// absolute path in the home (refused when it leads outside). Needs `list` on the
    /// link's folder and on the link.
    pub async fn read_link(&self, path: &VirtualPath) -> Result<String, CoreError> {
        self.check_visible(path)?;
        let result = self
            .on_real(
                path,
                Last::Entry,
                |real| self.check_visible(real),
                |p| async move { self.vfs.read_link(&p).await },
            )
            .await;
        let (_, text) = self.jailed(Verb::List, path, result)?;
        Ok(text)
    }

    /// Creates a hard link: a second name for the same file. Needs `read` on the existing
    /// file and `write` on the link, and the link's place may not allow what the file's own
    /// place refuses (`read`, `overwrite`, `append`, `setattr`), since through either name
    /// the same bytes change.
    pub async fn hard_link(
        &self,
        existing: &VirtualPath,
        link: &VirtualPath,
    ) -> Result<(), CoreError> {
        let allowed = |e: &VirtualPath, l: &VirtualPath| {
            self.check(Verb::Read, e)?;
            self.check(Verb::Write, l)?;
            for verb in [Verb::Read, Verb::Overwrite, Verb::Append, Verb::Setattr] {
                let rules = &self.account.rules;
                if rules.allows(verb, l) && !rules.allows(verb, e) {
                    self.emit(
                        self.event(EventKind::PermissionDenied)
                            .failed(format!(
                                "a hard link would allow {verb} where the file's own place refuses it"
                            ))
                            .path(l.to_string())
                            .path2(e.to_string())
                            .attr("verb", verb.as_str()),
                    );
                    return Err(CoreError::denied(format!(
                        "permission denied: a link at {l} would allow {verb} on {e}"
                    )));
                }
            }
            Ok(())
        };
        allowed(existing, link)?;
        let result = self
            .on_real2(
                (existing, Last::Follow),
                (link, Last::Entry),
                allowed,
                |e, l| async move { self.vfs.hard_link(&e, &l).await },
            )
            .await;
        let result = self.jailed(Verb::Write, link, result);
        let event = match &result {
            Ok((e, l, ())) => self
                .at(self.event(EventKind::LinkCreated), l, link)
                .path2(e.to_string()),
            Err(_) => self
                .event(EventKind::LinkCreated)
                .path(link.to_string())
                .path2(existing.to_string()),
        }
        .attr("kind", "hard");
        let result = result.map(|_| ());
        self.record(&result, event);
        result
    }

    /// Copies a file on the server. Needs `read` on the source and `write` (or `overwrite`)
    /// on the destination, at the paths given and at those really reached. Records
    /// `file.copied`.
    pub async fn copy(&self, from: &VirtualPath, to: &VirtualPath) -> Result<u64, CoreError> {
        self.check(Verb::Read, from)?;
        self.check_may_upload(to)?;
        let result = self
            .on_real2(
                (from, Last::Follow),
                (to, Last::Entry),
                |f, t| {
                    self.check(Verb::Read, f)?;
                    self.check_may_upload(t)
                },
                |f, t| async move {
                    let verb = match self.vfs.stat(&t, false).await {
                        Ok(_) => Verb::Overwrite,
                        Err(e) if e.is_link() => return Err(e),
                        Err(_) => Verb::Write,
                    };
                    self.check(verb, to)?;
                    self.check(verb, &t)?;
                    let replace = verb == Verb::Overwrite || self.may_overwrite(to, &t);
                    self.vfs.copy(&f, &t, replace).await
                },
            )
            .await;
        let result = self.jailed(Verb::Write, to, result);
        let event = match &result {
            Ok((f, t, n)) => {
                let mut event = self
                    .at(self.file_event(EventKind::FileCopied), f, from)
                    .path2(t.to_string());
                event.bytes = Some(*n);
                if t != to {
                    event = event.attr("via2", to.to_string());
                }
                self.with_identity(event, t).await
            }
            Err(_) => self
                .file_event(EventKind::FileCopied)
                .path(from.to_string())
                .path2(to.to_string()),
        };
        let result = result.map(|(_, _, n)| n);
        self.record_durable(&result, event).await?;
        result
    }

    /// The file `path` leads to, opened to be hashed: `read` at the path given and at the
    /// file reached.
    async fn open_to_hash(&self, path: &VirtualPath) -> Result<Box<dyn ReadFile>, CoreError> {
        self.check(Verb::Read, path)?;
        let opened = self
            .on_real(
                path,
                Last::Follow,
                |real| self.check(Verb::Read, real),
                |p| async move { self.vfs.open_read(&p).await },
            )
            .await;
        let (_, file) = self.jailed(Verb::Read, path, opened)?;
        Ok(file)
    }

    /// SHA-256 of a whole file, lowercase hex. Needs `read`.
    pub async fn sha256(&self, path: &VirtualPath) -> Result<String, CoreError> {
        self.sha256_sized(path).await.map(|(digest, _)| digest)
    }

    /// [`Session::sha256`] with the number of bytes it covers, both of the one file opened
    /// (FTP `HASH` names the range hashed; a second look could meet another file, and
    /// needs `list`).
    pub async fn sha256_sized(&self, path: &VirtualPath) -> Result<(String, u64), CoreError> {
        let file = self.open_to_hash(path).await?;
        if let Some(known) = file.cached_digest().await {
            let size = file.metadata().await?.size;
            return Ok((known, size));
        }
        let stamp = file.digest_stamp().await;
        let (context, hashed) = hash_prefix(|o, n| file.read_at(o, n), None).await?;
        let digest = hex(context.finish().as_ref());
        file.remember_digest(stamp, &digest).await;
        Ok((digest, hashed))
    }

    /// A whole file's digest, lowercase hex: SHA-256 as [`Session::sha256`] gives it, MD5
    /// or SHA-1 computed on request and never stored (see [`DigestKind`]). Needs `read`, at
    /// the path given and at the file reached.
    pub async fn file_digest(
        &self,
        path: &VirtualPath,
        which: DigestKind,
    ) -> Result<String, CoreError> {
        if which == DigestKind::Sha256 {
            return self.sha256(path).await;
        }
        let file = self.open_to_hash(path).await?;
        let mut hasher = which.hasher();
        let mut offset = 0u64;
        loop {
            let chunk = file.read_at(offset, 1 << 20).await?;
            if chunk.is_empty() {
                break;
            }
            offset += chunk.len() as u64;
            hasher.update(&chunk);
        }
        Ok(hasher.finish())
    }

    /// Space figures. Needs `list` on `/`.
    pub async fn stats(&self) -> Result<VfsStats, CoreError> {
        self.check(Verb::List, &VirtualPath::root())?;
        self.vfs.stats().await
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.origin.is_some() {
            return;
        }
        let mut event = self.event(EventKind::SessionEnded);
        event.duration_ms = Some(self.started.elapsed().as_millis() as u64);
        self.events.emit(event);
    }
}

/// The digests a client may ask for a file. SHA-256 is Wharf's own (records, handlers,
/// remembered on the file); MD5 and SHA-1 are offered for clients that check transfers
/// with them (rclone's SFTP backend runs `md5sum` and `sha1sum` over SSH), and nothing in
/// Wharf relies on them: they are computed when asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestKind {
    /// SHA-256 (FIPS 180-4).
    Sha256,
    /// MD5 (RFC 1321).
    Md5,
    /// SHA-1 (FIPS 180-4).
    Sha1,
}

impl DigestKind {
    /// A running hash of this kind.
    pub fn hasher(self) -> DigestHasher {
        use sha1::Digest as _;
        match self {
            DigestKind::Sha256 => {
                DigestHasher::Sha256(aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256))
            }
            DigestKind::Md5 => DigestHasher::Md5(md5::Md5::new()),
            DigestKind::Sha1 => DigestHasher::Sha1(sha1::Sha1::new()),
        }
    }
}

/// A running [`DigestKind`].
pub enum DigestHasher {
    /// SHA-256.
    Sha256(aws_lc_rs::digest::Context),
    /// MD5.
    Md5(md5::Md5),
    /// SHA-1.
    Sha1(sha1::Sha1),
}

impl DigestHasher {
    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        use sha1::Digest as _;
        match self {
            DigestHasher::Sha256(h) => h.update(data),
            DigestHasher::Md5(h) => h.update(data),
            DigestHasher::Sha1(h) => h.update(data),
        }
    }

    /// The digest, lowercase hex.
    pub fn finish(self) -> String {
        use sha1::Digest as _;
        match self {
            DigestHasher::Sha256(h) => hex(h.finish().as_ref()),
            DigestHasher::Md5(h) => hex(&h.finalize()),
            DigestHasher::Sha1(h) => hex(&h.finalize()),
        }
    }
}

/// `attributes.changed` with what was asked.
fn attrs_event(mut event: Event, attrs: &Attrs, ignored: u32) -> Event {
    if let Some(p) = attrs.permissions {
        event = event.attr("permissions", format!("{p:o}"));
    }
    if ignored != 0 {
        event = event.attr("ignored", format!("{ignored:o}"));
    }
    if let Some((a, m)) = attrs.times {
        event = event
            .attr("atime", a.to_string())
            .attr("mtime", m.to_string());
    }
    if let Some(size) = attrs.size {
        event = event.attr("size", size.to_string());
    }
    event
}

/// Whether a relative link `text` found in `folder` leads to a place inside the home
/// (never `..` above `/`).
fn leads_inside(folder: &VirtualPath, text: &str) -> bool {
    let mut depth = folder.components().count();
    for name in text.split('/') {
        match name {
            "" | "." => {}
            ".." if depth == 0 => return false,
            ".." => depth -= 1,
            _ => depth += 1,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_links_inside_or_out() {
        let p = |s| VirtualPath::parse(s).unwrap();
        assert!(leads_inside(&p("/a/b"), "../../x"));
        assert!(!leads_inside(&p("/a"), "../../x"));
        assert!(leads_inside(&p("/"), "x/../y"));
        assert!(!leads_inside(&p("/"), ".."));
    }
}
