//! Transfers through the core: uploads that hash while they stream and commit atomically,
//! and downloads that count what they send. Both emit their audit events themselves, so
//! no front-end can forget one. An upload may be shared by several handles of the session
//! that writes it (`own`), which alone sees it before commit; nothing here ever puts a
//! partial file under its final name for anyone else.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use aws_lc_rs::digest;
use wharf_types::VirtualPath;

use crate::error::CoreError;
use crate::events::{Event, EventBus, EventKind};
use crate::live::{Direction, Transfer};
use crate::vfs::{ReadFile, WriteFile};

mod open;
pub(crate) mod own;

pub use open::UploadOpen;

/// How the client opened a file for writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// A new file, or an existing one replaced from byte 0.
    Create,
    /// Keep the existing content; the client writes at offsets it chooses (SFTP open
    /// without truncate, FTP `REST` + `STOR`).
    Resume,
    /// Keep the existing content; every write lands at the end (FTP `APPE`, SFTP append).
    Append,
}

impl WriteMode {
    /// How records name it: a file replaced from byte 0 is `overwrite`, not `create`.
    fn recorded(self, replaces: bool) -> &'static str {
        match self {
            WriteMode::Create if replaces => "overwrite",
            WriteMode::Create => "create",
            WriteMode::Resume => "resume",
            WriteMode::Append => "append",
        }
    }
}

/// Why a resume offset is refused. It does not say where the file ends: an account may
/// continue a file it may not look at.
pub(crate) const NOT_THE_END: &str = "the file does not end at that offset";

/// Bytes read back at a time when hashing data that did not arrive in order.
const REHASH_CHUNK: usize = 1 << 20;

/// How far past the bytes received so far a write may start. Clients with many writes in
/// flight (SFTP pipelines a few MiB; parallel chunked writers more) stay well within it.
pub const MAX_GAP: u64 = 64 << 20;

/// The offset that means "at the end of what is written so far", for a handle opened for
/// appending on an upload that another handle writes at offsets ([`Upload::append`]). A
/// client's own offsets never mean it: [`Upload::write_at`] refuses a write that would
/// end past `u64::MAX`.
const AT_END: u64 = u64::MAX;

/// Bytes moved at a time by [`Upload::copy_from`].
const COPY_CHUNK: usize = 256 * 1024;

/// Bytes [`Upload::write_at`] and [`Upload::push`] hold before writing them with one
/// write.
const GATHER: usize = 256 * 1024;

/// Consecutive writes held to be written together.
#[derive(Default)]
struct Gathered {
    /// File offset of the first piece.
    at: u64,
    /// At most one buffer (of up to GATHER bytes and a last write), so that what is held
    /// is written with one write.
    pieces: Vec<Vec<u8>>,
    len: usize,
}

struct HashState {
    context: digest::Context,
    /// Every byte before this offset has been fed to `context`, in order.
    hashed_upto: u64,
    /// False once a write skipped ahead or went back: the hash is recomputed at commit.
    in_order: bool,
}

/// A file being uploaded. Created by [`crate::Session::open_upload`].
pub struct Upload {
    file: Box<dyn WriteFile>,
    /// The client-visible path it commits under (changes when the client renames it
    /// before closing it, see [`crate::Session::rename`]).
    path: Mutex<VirtualPath>,
    mode: WriteMode,
    /// `attrs.mode` of its records (see [`WriteMode::recorded`]).
    recorded_mode: &'static str,
    template: Event,
    events: EventBus,
    hash: Mutex<HashState>,
    gathered: Mutex<Gathered>,
    /// Held while bytes taken from `gathered` (or a write after them) are on their way to
    /// the file, so that whoever flushes next (a commit, another handle's read, the file's
    /// attributes) finds them written, not merely taken.
    writing: tokio::sync::Mutex<()>,
    received: AtomicU64,
    end: AtomicU64,
    /// Where the next [`Upload::push`] lands.
    stream_at: AtomicU64,
    started: Instant,
    closed: AtomicBool,
    /// The file's size when it was opened (what a resume or append starts from).
    opened_size: u64,
    /// The largest the file may become (see [`crate::Session::max_file_size`]).
    max_size: u64,
    /// The first write refused or failed: the upload can then no longer be committed, so
    /// a client that ignores a write error does not store a file with that write missing.
    write_failure: Mutex<Option<String>>,
    /// Bytes the client added by growing the file (setting its size) rather than writing.
    extended: AtomicU64,
    /// The account may not `overwrite` here: the bytes the file held when it was opened
    /// (continued or appended to) may not be written over or cut.
    earlier_guarded: AtomicBool,
    /// How the session shares this upload between its handles (see [`crate::Session`]).
    pub(crate) shared: Shared,
    /// What the sessions open now show of it; its cut stops the upload.
    transfer: Arc<Transfer>,
}

/// The session's bookkeeping of an upload several handles may hold at once.
#[derive(Default)]
pub(crate) struct Shared {
    /// Handles open on it; the last one to close commits.
    pub(crate) handles: AtomicUsize,
    /// The client removed it before closing it: the last close gives it up.
    pub(crate) unlinked: AtomicBool,
    /// Held while the upload is committed, given up, renamed or reopened, so that these
    /// never overlap (a handle's close and a path request run on different lanes).
    pub(crate) lifecycle: tokio::sync::Mutex<()>,
}

/// What a committed upload produced.
#[derive(Debug, Clone)]
pub struct UploadSummary {
    /// Where the file was committed (the client's path, or the unique name given to it).
    pub path: VirtualPath,
    /// Size of the committed file.
    pub size: u64,
    /// SHA-256 of the whole committed file, lowercase hex.
    pub sha256: String,
    /// The file held bytes before this upload continued it (a resume or append), so the
    /// digest covers bytes the client did not send (see [`crate::Session::digest_for_client`]).
    pub continued: bool,
}

/// A copy of a transfer's event template for `kind`, timed now, about `path`.
fn stamped(template: &Event, kind: EventKind, path: &VirtualPath) -> Event {
    let mut event = template.clone();
    event.kind = kind;
    event.time = time::OffsetDateTime::now_utc();
    event.path = Some(path.to_string());
    event
}

/// Feeds `[0, upto)` (or to end of file when `upto` is `None`) to a SHA-256 context, reading
/// with `read_at` in 1 MiB chunks; returns the context and the bytes hashed.
pub(crate) async fn hash_prefix<F, Fut>(
    mut read_at: F,
    upto: Option<u64>,
) -> Result<(digest::Context, u64), CoreError>
where
    F: FnMut(u64, usize) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<u8>, CoreError>>,
{
    let mut context = digest::Context::new(&digest::SHA256);
    let mut offset = 0u64;
    loop {
        let want = match upto {
            Some(end) if offset >= end => break,
            Some(end) => {
                usize::try_from((end - offset).min(REHASH_CHUNK as u64)).unwrap_or(REHASH_CHUNK)
            }
            None => REHASH_CHUNK,
        };
        let chunk = read_at(offset, want).await?;
        if chunk.is_empty() {
            break;
        }
        context.update(&chunk);
        offset += chunk.len() as u64;
    }
    Ok((context, offset))
}

pub(crate) use wharf_types::hex;

impl Upload {
    /// Whether it replaces or continues a file that existed when it was opened (its records'
    /// mode is not `create`).
    pub(crate) fn keeps_earlier_content(&self) -> bool {
        self.recorded_mode != WriteMode::Create.recorded(false)
    }

    pub(crate) async fn start(
        file: Box<dyn WriteFile>,
        path: VirtualPath,
        open: UploadOpen,
        replaces: bool,
        template: Event,
        events: EventBus,
        max_size: u64,
    ) -> Result<Upload, CoreError> {
        let UploadOpen {
            mode, resume_at, ..
        } = open;
        let existing = if mode == WriteMode::Create {
            0
        } else {
            match file.size().await {
                Ok(size) => size,
                Err(e) => {
                    let _ = file.discard().await;
                    return Err(e);
                }
            }
        };
        // Decided on the file opened, not on a look taken before: nothing is written yet,
        // and discarding leaves a file continued in place as it was.
        if resume_at.is_some_and(|offset| offset != existing) {
            let _ = file.discard().await;
            return Err(CoreError::new(crate::ErrorKind::InvalidOffset, NOT_THE_END));
        }
        let upload = Upload {
            file,
            path: Mutex::new(path),
            mode,
            recorded_mode: mode.recorded(replaces),
            template,
            events,
            hash: Mutex::new(HashState {
                context: digest::Context::new(&digest::SHA256),
                hashed_upto: 0,
                in_order: true,
            }),
            gathered: Mutex::new(Gathered::default()),
            writing: tokio::sync::Mutex::new(()),
            received: AtomicU64::new(0),
            end: AtomicU64::new(existing),
            stream_at: AtomicU64::new(resume_at.unwrap_or(0)),
            started: Instant::now(),
            closed: AtomicBool::new(false),
            opened_size: existing,
            max_size,
            write_failure: Mutex::new(None),
            extended: AtomicU64::new(0),
            earlier_guarded: AtomicBool::new(false),
            shared: Shared {
                handles: AtomicUsize::new(1),
                ..Shared::default()
            },
            transfer: Transfer::detached(Direction::Upload, String::new()),
        };
        if existing > 0 {
            // Resumed content was written earlier; hash it now so later writes stream on.
            upload.hash_existing(existing).await?;
        }
        let mut event = upload.event(EventKind::UploadStarted);
        event = event.attr("mode", upload.recorded_mode);
        if existing > 0 {
            event = event.attr("offset", existing.to_string());
        }
        upload.events.emit(event);
        Ok(upload)
    }

    async fn hash_existing(&self, upto: u64) -> Result<(), CoreError> {
        let (context, hashed) = hash_prefix(|o, n| self.file.read_at(o, n), Some(upto)).await?;
        if let Ok(mut state) = self.hash.lock() {
            state.context = context;
            state.hashed_upto = hashed;
        }
        Ok(())
    }

    fn event(&self, kind: EventKind) -> Event {
        stamped(&self.template, kind, &self.path())
    }

    /// The same upload, shown and cut as `transfer`.
    pub(crate) fn moving(mut self, transfer: Arc<Transfer>) -> Upload {
        transfer.add(self.received.load(Ordering::SeqCst));
        self.transfer = transfer;
        self
    }

    /// The client-visible path being written.
    pub fn path(&self) -> VirtualPath {
        match self.path.lock() {
            Ok(path) => path.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Whether the upload was committed or given up.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Neither committed, given up, nor removed by the client.
    pub(crate) fn is_live(&self) -> bool {
        !self.is_closed() && !self.shared.unlinked.load(Ordering::SeqCst)
    }

    /// Reads back what is written so far (with what is still held), for the session that
    /// writes it.
    pub async fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, CoreError> {
        self.flush_gathered().await?;
        self.file.read_at(offset, len).await
    }

    /// The attributes of what is written so far, as the session that writes it sees the
    /// file under its final name.
    pub async fn metadata(&self) -> Result<crate::vfs::Metadata, CoreError> {
        self.flush_gathered().await?;
        let mut meta = self.file.metadata().await?;
        meta.size = meta.size.max(self.end());
        Ok(meta)
    }

    /// Changes the attributes of the file being written. A new size cuts or grows it (a
    /// growth is bounded like a write past the end); times set here are kept unless later
    /// writes change them, as on any file.
    pub(crate) async fn set_attrs(&self, attrs: &crate::vfs::Attrs) -> Result<(), CoreError> {
        self.flush_gathered().await?;
        if let Some(size) = attrs.size {
            // Growing is bounded as a write ending there would be; cutting into the bytes
            // the file held needs what writing over them needs.
            self.within_bound(size, 0)?;
        }
        self.file.set_attrs(attrs).await?;
        if let Some(size) = attrs.size {
            self.resized(size);
        }
        Ok(())
    }

    /// Writes what is held, so that another handle's read or the file's attributes see it.
    pub(crate) async fn flush(&self) -> Result<(), CoreError> {
        self.flush_gathered().await
    }

    /// Notes that the file now holds `size` bytes.
    fn resized(&self, size: u64) {
        let provided = self.provided();
        if size > provided {
            self.extended.fetch_add(size - provided, Ordering::SeqCst);
        }
        self.end.store(size, Ordering::SeqCst);
        if let Ok(mut state) = self.hash.lock() {
            if size == 0 {
                state.context = digest::Context::new(&digest::SHA256);
                state.hashed_upto = 0;
                state.in_order = true;
            } else if size < state.hashed_upto {
                state.in_order = false;
            }
        }
    }

    /// Empties the file being written (a second truncating open of it).
    pub(crate) async fn truncate_all(&self) -> Result<(), CoreError> {
        self.flush_gathered().await?;
        self.file.truncate(0).await?;
        self.resized(0);
        Ok(())
    }

    /// Makes the upload commit under `to` (the client renamed it before closing it).
    pub(crate) async fn retarget(&self, to: &VirtualPath, replace: bool) -> Result<(), CoreError> {
        self.file.retarget(to, replace).await?;
        match self.path.lock() {
            Ok(mut path) => *path = to.clone(),
            Err(poisoned) => *poisoned.into_inner() = to.clone(),
        }
        Ok(())
    }

    /// Gives the upload up because the client removed it before closing it: nothing is
    /// kept, whatever the upload mode, and `upload.failed` says why.
    pub(crate) async fn abandon(&self, reason: &str) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        let _ = self.file.discard().await;
        self.emit_failed(reason, false);
    }

    /// Bytes the file may hold without a hole: what was there, was received or was added
    /// by growing it.
    fn provided(&self) -> u64 {
        self.opened_size
            .saturating_add(self.received.load(Ordering::SeqCst))
            .saturating_add(self.extended.load(Ordering::SeqCst))
    }

    /// How the file was opened.
    pub fn mode(&self) -> WriteMode {
        self.mode
    }

    /// The offset just past the last byte written (the file's length so far).
    pub fn end(&self) -> u64 {
        self.end.load(Ordering::SeqCst)
    }

    /// Refuses a write that would make the file larger than its bound, or that starts
    /// more than [`MAX_GAP`] past the bytes received so far: a hole costs the client nothing
    /// and the server a hash of every byte of it (and a resumable upload keeps its holes).
    fn within_bound(&self, offset: u64, len: usize) -> Result<(), CoreError> {
        let offset = if self.mode == WriteMode::Append || offset == AT_END {
            self.end()
        } else {
            offset
        };
        self.refuse_over_earlier(offset)?;
        let provided = self.provided();
        if offset > provided.saturating_add(MAX_GAP) {
            return Err(CoreError::new(
                crate::ErrorKind::LimitReached,
                format!(
                    "write at offset {offset} is more than {MAX_GAP} bytes past the data received"
                ),
            ));
        }
        match offset.checked_add(len as u64) {
            Some(end) if end <= self.max_size => Ok(()),
            _ => Err(CoreError::new(
                crate::ErrorKind::LimitReached,
                format!("file size beyond the maximum of {} bytes", self.max_size),
            )),
        }
    }

    /// Keeps the bytes the file held when it was opened, for an account that may continue
    /// or append to it but not `overwrite` it (see [`Upload::guard_earlier`]).
    fn refuse_over_earlier(&self, offset: u64) -> Result<(), CoreError> {
        if self.earlier_guarded.load(Ordering::SeqCst) && offset < self.opened_size {
            return Err(CoreError::denied(
                "writing over the file's earlier bytes needs overwrite",
            ));
        }
        Ok(())
    }

    /// Keeps the bytes the file held when it was opened from being written over or cut
    /// (the account may continue or append to the file, not `overwrite` it).
    pub(crate) fn guard_earlier(&self) {
        self.earlier_guarded.store(true, Ordering::SeqCst);
    }

    /// Writes `data` at `offset` now, with whatever is held before it.
    async fn write_now(&self, offset: u64, data: Vec<u8>) -> Result<(), CoreError> {
        self.within_bound(offset, data.len())?;
        let _writing = self.writing.lock().await;
        self.write_unlocked(offset, data).await
    }

    /// Writes what is held, then `data`; the caller holds `writing`.
    async fn write_unlocked(&self, offset: u64, data: Vec<u8>) -> Result<(), CoreError> {
        self.flush_held().await?;
        let offset = self.accept(offset, &data);
        self.file.write_at(offset, data).await
    }

    /// Remembers the first failed write (see `write_failure`).
    fn note_failure(&self, result: Result<(), CoreError>) -> Result<(), CoreError> {
        if let Err(e) = &result
            && let Ok(mut failure) = self.write_failure.lock()
            && failure.is_none()
        {
            *failure = Some(e.message.clone());
        }
        result
    }

    /// Writes `data` at `offset` (ignored for [`WriteMode::Append`], which always
    /// appends), for protocols whose client chooses every write's offset (SFTP). A write
    /// that continues the previous one may be held and written together with the next ones
    /// (up to 256 KiB in one vectored write): clients send many small in-order writes, and
    /// each write to the file costs a blocking-pool hop. A failure to write held bytes is
    /// returned by a later write, [`Upload::sync`] or [`Upload::commit`], so the upload
    /// still cannot complete without them; [`Upload::abort`] writes them first, so a
    /// resumable upload keeps every byte received.
    pub async fn write_at(&self, offset: u64, data: Vec<u8>) -> Result<(), CoreError> {
        if offset.checked_add(data.len() as u64).is_none() {
            return Err(CoreError::new(
                crate::ErrorKind::LimitReached,
                "write past the largest offset",
            ));
        }
        let result = self.gather(offset, data).await;
        self.note_failure(result)
    }

    /// Writes `data` at the end of what is written so far (an SFTP handle opened for
    /// appending, on an upload other handles may write at offsets).
    pub async fn append(&self, data: Vec<u8>) -> Result<(), CoreError> {
        let result = self.gather(AT_END, data).await;
        self.note_failure(result)
    }

    /// Writes `data` where the previous push ended, for protocols that stream a file's
    /// bytes in order (FTP, SCP, HTTP and WebDAV bodies): the core keeps the offset (from
    /// byte 0, the `resume_at` offset of the open, or where [`Upload::seek`] put it) and
    /// gathers the pieces as [`Upload::write_at`] does.
    pub async fn push(&self, data: Vec<u8>) -> Result<(), CoreError> {
        let len = data.len() as u64;
        let at = self
            .stream_at
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |at| at.checked_add(len))
            .map_err(|_| {
                CoreError::new(
                    crate::ErrorKind::LimitReached,
                    "write past the largest offset",
                )
            })?;
        self.write_at(at, data).await
    }

    /// Moves where the next [`Upload::push`] lands (WebDAV's partial writes).
    pub fn seek(&self, offset: u64) {
        self.stream_at.store(offset, Ordering::SeqCst);
    }

    /// Where the next [`Upload::push`] lands.
    pub fn position(&self) -> u64 {
        self.stream_at.load(Ordering::SeqCst)
    }

    async fn gather(&self, offset: u64, data: Vec<u8>) -> Result<(), CoreError> {
        self.transfer.check()?;
        self.within_bound(offset, data.len())?;
        let _writing = self.writing.lock().await;
        let offset = if self.mode == WriteMode::Append || offset == AT_END {
            self.end()
        } else {
            offset
        };
        let full = {
            let mut held = self.lock_gathered()?;
            let continues = held.len == 0 || held.at + held.len as u64 == offset;
            if !continues || data.len() >= GATHER {
                Err(data)
            } else {
                let offset = self.accept(offset, &data);
                if held.len == 0 {
                    held.at = offset;
                }
                held.len += data.len();
                // Copied into one buffer, not kept piece by piece: a client sending its
                // bytes one at a time (1-byte HTTP chunks) would otherwise make the server
                // hold a heap allocation per byte. The copy costs a memcpy per byte, no
                // more than the front-ends' own buffers did.
                match held.pieces.last_mut() {
                    Some(buffer) => buffer.extend_from_slice(&data),
                    None => {
                        let mut buffer = Vec::with_capacity(GATHER);
                        buffer.extend_from_slice(&data);
                        held.pieces.push(buffer);
                    }
                }
                Ok((held.len >= GATHER).then(|| std::mem::take(&mut *held)))
            }
        };
        match full {
            Ok(None) => Ok(()),
            Ok(Some(full)) => self.file.write_pieces_at(full.at, full.pieces).await,
            Err(data) => self.write_unlocked(offset, data).await,
        }
    }

    fn lock_gathered(&self) -> Result<std::sync::MutexGuard<'_, Gathered>, CoreError> {
        self.gathered
            .lock()
            .map_err(|_| CoreError::new(crate::ErrorKind::Failure, "upload state poisoned"))
    }

    /// Writes the bytes [`Upload::write_at`] holds.
    async fn flush_gathered(&self) -> Result<(), CoreError> {
        let _writing = self.writing.lock().await;
        self.flush_held().await
    }

    /// [`Upload::flush_gathered`] for a caller that holds `writing`.
    async fn flush_held(&self) -> Result<(), CoreError> {
        let held = std::mem::take(&mut *self.lock_gathered()?);
        if held.len == 0 {
            return Ok(());
        }
        self.file.write_pieces_at(held.at, held.pieces).await
    }

    /// Counts and hashes bytes about to be written at `offset`; returns the offset they
    /// land at (the end, for [`WriteMode::Append`]).
    fn accept(&self, offset: u64, data: &[u8]) -> u64 {
        let offset = if self.mode == WriteMode::Append || offset == AT_END {
            self.end()
        } else {
            offset
        };
        let len = data.len() as u64;
        if let Ok(mut state) = self.hash.lock() {
            if state.in_order && offset == state.hashed_upto {
                state.context.update(data);
                state.hashed_upto += len;
            } else if offset + len > state.hashed_upto || offset < state.hashed_upto {
                state.in_order = false;
            }
        }
        self.received.fetch_add(len, Ordering::SeqCst);
        self.transfer.add(len);
        self.end.fetch_max(offset + len, Ordering::SeqCst);
        offset
    }

    /// Flushes to stable storage without closing (SFTP `fsync@openssh.com`).
    pub async fn sync(&self) -> Result<(), CoreError> {
        self.flush_gathered().await?;
        self.file.sync().await
    }

    async fn final_digest(&self) -> Result<String, CoreError> {
        let (in_order, upto) = match self.hash.lock() {
            Ok(state) => (state.in_order, state.hashed_upto),
            Err(_) => (false, 0),
        };
        let size = self.file.size().await?;
        if in_order && upto == size {
            let context = match self.hash.lock() {
                Ok(state) => state.context.clone(),
                Err(_) => digest::Context::new(&digest::SHA256),
            };
            return Ok(hex(context.finish().as_ref()));
        }
        let (context, _) = hash_prefix(|o, n| self.file.read_at(o, n), Some(size)).await?;
        Ok(hex(context.finish().as_ref()))
    }

    /// Commits the upload under its final name, durably, and records `upload.finished`.
    /// When the server's [`crate::UploadNaming`] asks for it, the final name is a unique
    /// one (see [`crate::naming`]): the record's path is then that name, and
    /// `attrs.uploaded_as` the client's.
    pub async fn commit(&self) -> Result<UploadSummary, CoreError> {
        if self.closed.swap(true, Ordering::SeqCst) {
            return Err(CoreError::new(
                crate::ErrorKind::Failure,
                "upload already closed",
            ));
        }
        let result = async {
            let failure = self.write_failure.lock().ok().and_then(|f| f.clone());
            if let Some(failure) = failure {
                return Err(CoreError::new(
                    crate::ErrorKind::Failure,
                    format!("a write failed: {failure}"),
                ));
            }
            if let Some(done) = self.commit_in_one_trip().await? {
                return Ok(done);
            }
            self.flush_gathered().await?;
            let size = self.file.size().await?;
            self.refuse_holes(size)?;
            let sha256 = self.final_digest().await?;
            let (mut event, unique) = self.finished_event(size, &sha256).await;
            self.file.remember_digest(&sha256).await;
            let path = match unique {
                Some(unique) => {
                    let name = unique.file_name().unwrap_or_default().to_owned();
                    self.file.commit_under(&name).await?;
                    event = event.attr("uploaded_as", self.path().to_string());
                    event.path = Some(unique.to_string());
                    unique
                }
                None => {
                    self.file.commit().await?;
                    self.path()
                }
            };
            Ok::<_, CoreError>((self.summary(path, size, sha256), event))
        }
        .await;
        match result {
            Ok((summary, mut event)) => {
                event.duration_ms = Some(self.started.elapsed().as_millis() as u64);
                // Handlers act on this record: the client hears of success once it is
                // durable, and of a failure when it cannot be made so (the file is in
                // place, but the client is not told it is stored unaudited).
                self.events
                    .emit_durable(event)
                    .await
                    .map_err(|e| CoreError::new(crate::error::ErrorKind::Failure, e.0))?;
                Ok(summary)
            }
            Err(e) => {
                // A refused upload keeps at most its bytes received in order from the
                // start (what a resumable upload can go on from): never a hole, never the
                // bytes after a refused write.
                let contiguous = self.hash.lock().map(|h| h.hashed_upto).unwrap_or(0);
                let kept = match self.file.truncate(contiguous).await {
                    Ok(()) => self.file.abort().await.unwrap_or(false),
                    Err(_) => {
                        let _ = self.file.discard().await;
                        false
                    }
                };
                self.emit_failed(&e.message, kept);
                Err(e)
            }
        }
    }

    /// The commit when every byte was hashed as it arrived, in order, to the end: the size
    /// and digest are known without reading anything back, so the bytes still held, the
    /// digest's attribute, the sync and the rename go to storage in one trip (a small
    /// file's upload is mostly such trips). `None` when that does not hold (or the storage
    /// finds another size): the caller commits step by step.
    async fn commit_in_one_trip(&self) -> Result<Option<(UploadSummary, Event)>, CoreError> {
        let end = self.end();
        let sha256 = match self.hash.lock() {
            Ok(state) if state.in_order && state.hashed_upto == end => {
                hex(state.context.clone().finish().as_ref())
            }
            _ => return Ok(None),
        };
        self.refuse_holes(end)?;
        let (mut event, unique) = self.finished_event(end, &sha256).await;
        let name = unique
            .as_ref()
            .map(|u| u.file_name().unwrap_or_default().to_owned());
        let _writing = self.writing.lock().await;
        let held = std::mem::take(&mut *self.lock_gathered()?);
        let last = (held.len > 0).then_some((held.at, held.pieces));
        let finish = crate::vfs::Finish {
            last,
            size: end,
            sha256: &sha256,
            unique: name.as_deref(),
        };
        if !self.file.finish(finish).await? {
            return Ok(None);
        }
        let path = match unique {
            Some(unique) => {
                event = event.attr("uploaded_as", self.path().to_string());
                event.path = Some(unique.to_string());
                unique
            }
            None => self.path(),
        };
        Ok(Some((self.summary(path, end, sha256), event)))
    }

    /// The `upload.finished` record of `size` bytes of digest `sha256`, and the unique
    /// path it commits under when upload naming asks for one.
    async fn finished_event(&self, size: u64, sha256: &str) -> (Event, Option<VirtualPath>) {
        let mut event = self.event(EventKind::UploadFinished);
        event.bytes = Some(self.received.load(Ordering::SeqCst));
        event.sha256 = Some(sha256.to_owned());
        event = event
            .attr("mode", self.recorded_mode)
            .attr("size", size.to_string());
        if let Some(identity) = self.file.identity().await {
            event = event.attr("inode", identity);
        }
        let unique = self.unique_path(&event);
        (event, unique)
    }

    fn summary(&self, path: VirtualPath, size: u64, sha256: String) -> UploadSummary {
        UploadSummary {
            path,
            size,
            sha256,
            continued: self.opened_size > 0,
        }
    }

    /// Refuses to store a file with bytes nobody wrote: a write far past the end (or a
    /// `Content-Range` starting there) leaves a hole the server would have to hash byte by
    /// byte, at no cost to the client. Every stored byte was received, or was there before.
    fn refuse_holes(&self, size: u64) -> Result<(), CoreError> {
        let written = self.provided();
        if size > written {
            return Err(CoreError::new(
                crate::ErrorKind::LimitReached,
                format!(
                    "upload leaves {} bytes that were never written",
                    size - written
                ),
            ));
        }
        Ok(())
    }

    /// Copies bytes of `source` into this upload, on the server (SFTP `copy-data`): `length`
    /// bytes from `read_offset` (0: to the end of the source as it is now) to
    /// `write_offset`. Refused when source and destination are one file and the ranges
    /// overlap (a copy that feeds on itself never ends), and bounded like every write.
    /// Returns the bytes copied (fewer than asked when the source ends first).
    pub async fn copy_from(
        &self,
        source: &Download,
        read_offset: u64,
        length: u64,
        write_offset: u64,
    ) -> Result<u64, CoreError> {
        let source_meta = source.metadata().await?;
        let available = source_meta.size.saturating_sub(read_offset);
        let total = if length == 0 {
            available
        } else {
            length.min(available)
        };
        let same_file =
            source_meta.identity.is_some() && source_meta.identity == self.file.identity().await;
        let overlaps = read_offset < write_offset.saturating_add(total)
            && write_offset < read_offset.saturating_add(total);
        if same_file && total > 0 && overlaps {
            return Err(CoreError::new(
                crate::ErrorKind::Unsupported,
                "copy within one file with overlapping ranges",
            ));
        }
        let result = self
            .copy_now(source, read_offset, total, write_offset)
            .await;
        // A copy that failed half-way fails the upload, like a failed write.
        self.note_failure(result.as_ref().map(|_| ()).map_err(Clone::clone))?;
        result
    }

    async fn copy_now(
        &self,
        source: &Download,
        read_offset: u64,
        total: u64,
        write_offset: u64,
    ) -> Result<u64, CoreError> {
        self.within_bound(write_offset, usize::try_from(total).unwrap_or(usize::MAX))?;
        let mut copied = 0u64;
        while copied < total {
            let want =
                usize::try_from((total - copied).min(COPY_CHUNK as u64)).unwrap_or(COPY_CHUNK);
            let chunk = source.read_at(read_offset + copied, want).await?;
            if chunk.is_empty() {
                break;
            }
            let n = chunk.len() as u64;
            self.write_now(write_offset + copied, chunk).await?;
            copied += n;
        }
        Ok(copied)
    }

    /// The unique path this upload commits under, when the server's naming asks for one.
    fn unique_path(&self, finished: &Event) -> Option<VirtualPath> {
        let naming = self.events.upload_naming()?;
        if !naming.unique_name(finished) {
            return None;
        }
        let path = self.path();
        let name = crate::naming::unique_form(path.file_name()?);
        path.parent().join(&name).ok()
    }

    /// Gives the upload up (error, client abort, disconnect) and records `upload.failed`.
    pub async fn abort(&self, reason: &str) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        // Received bytes still held are written first: a resumable upload keeps them.
        let _ = self.flush_gathered().await;
        let kept = self.file.abort().await.unwrap_or(false);
        self.emit_failed(reason, kept);
    }

    fn emit_failed(&self, reason: &str, kept: bool) {
        // However the front-end saw it end, a cut connection was the cause.
        let reason = if self.transfer.was_cut() {
            crate::live::DISCONNECTED
        } else {
            reason
        };
        let mut event = self.event(EventKind::UploadFailed).failed(reason);
        event.bytes = Some(self.received.load(Ordering::SeqCst));
        event.duration_ms = Some(self.started.elapsed().as_millis() as u64);
        event = event.attr("kept", if kept { "true" } else { "false" });
        self.events.emit(event);
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if !self.closed.swap(true, Ordering::SeqCst) {
            // The backend's own drop removes (or keeps) the data; the trail must still say
            // the upload did not finish.
            self.emit_failed(
                "the connection or request ended before the upload was closed",
                false,
            );
        }
    }
}

/// A file being downloaded. Created by [`crate::Session::open_download`].
pub struct Download {
    file: Box<dyn ReadFile>,
    path: VirtualPath,
    template: Event,
    events: EventBus,
    sent: AtomicU64,
    started: Instant,
    closed: AtomicBool,
    /// What the sessions open now show of it; its cut stops the download.
    transfer: Arc<Transfer>,
}

impl Download {
    /// The same download, shown and cut as `transfer`.
    pub(crate) fn moving(mut self, transfer: Arc<Transfer>) -> Download {
        self.transfer = transfer;
        self
    }

    pub(crate) fn start(
        file: Box<dyn ReadFile>,
        path: VirtualPath,
        template: Event,
        events: EventBus,
    ) -> Download {
        let download = Download {
            file,
            path,
            template,
            events,
            sent: AtomicU64::new(0),
            started: Instant::now(),
            closed: AtomicBool::new(false),
            transfer: Transfer::detached(Direction::Download, String::new()),
        };
        download
            .events
            .emit(download.event(EventKind::DownloadStarted));
        download
    }

    fn event(&self, kind: EventKind) -> Event {
        stamped(&self.template, kind, &self.path)
    }

    /// The client-visible path being read.
    pub fn path(&self) -> &VirtualPath {
        &self.path
    }

    /// Reads up to `len` bytes at `offset`; empty at end of file.
    pub async fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, CoreError> {
        self.transfer.check()?;
        let data = self.file.read_at(offset, len).await?;
        self.sent.fetch_add(data.len() as u64, Ordering::SeqCst);
        self.transfer.add(data.len() as u64);
        Ok(data)
    }

    /// Sends up to `len` bytes at `offset` from the file straight to a plain TCP socket
    /// with `sendfile(2)`, so they never pass through user space. `Ok(None)` when the
    /// storage is not a local file (the caller reads and writes instead); `Ok(Some(0))` at
    /// end of file. Pages not yet cached are read from disk inside the call, so callers
    /// keep `len` to one chunk: a cold read then holds a runtime thread for one chunk's
    /// read-ahead, as a page-cache miss in `read_at` holds a blocking thread.
    pub async fn send_to(
        &self,
        socket: &tokio::net::TcpStream,
        offset: u64,
        len: usize,
    ) -> std::io::Result<Option<usize>> {
        let Some(file) = self.file.os_file() else {
            return Ok(None);
        };
        if let Err(e) = self.transfer.check() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                e.message,
            ));
        }
        loop {
            socket.writable().await?;
            let mut at = offset;
            let sent = socket.try_io(tokio::io::Interest::WRITABLE, || {
                rustix::fs::sendfile(socket, &*file, Some(&mut at), len).map_err(Into::into)
            });
            match sent {
                Ok(n) => {
                    self.sent.fetch_add(n as u64, Ordering::SeqCst);
                    self.transfer.add(n as u64);
                    return Ok(Some(n));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The open file's attributes.
    pub async fn metadata(&self) -> Result<crate::vfs::Metadata, CoreError> {
        self.file.metadata().await
    }

    /// A strong validator of this version of the file (an HTTP `ETag`), from its identity,
    /// size and modification time, so that it costs no reading of the file.
    pub async fn version(&self) -> Result<String, CoreError> {
        let meta = self.file.metadata().await?;
        let stamp = self
            .file
            .digest_stamp()
            .await
            .unwrap_or_else(|| meta.mtime.to_string());
        let text = format!(
            "{} {} {stamp}",
            meta.identity.unwrap_or_default(),
            meta.size
        );
        let digest = digest::digest(&digest::SHA256, text.as_bytes());
        Ok(hex(&digest.as_ref()[..12]))
    }

    /// The file's SHA-256 if the storage remembers it for this content (no reading).
    pub async fn known_digest(&self) -> Option<String> {
        self.file.cached_digest().await
    }

    /// The file's SHA-256, read and remembered when not known yet. Reading costs the whole
    /// file: callers ask only where the client takes the whole file too, or bound the size.
    pub async fn digest(&self) -> Result<String, CoreError> {
        if let Some(known) = self.file.cached_digest().await {
            return Ok(known);
        }
        let stamp = self.file.digest_stamp().await;
        let (context, _) = hash_prefix(|o, n| self.file.read_at(o, n), None).await?;
        let digest = hex(context.finish().as_ref());
        self.file.remember_digest(stamp, &digest).await;
        Ok(digest)
    }

    /// Ends the download and records `download.finished`.
    pub fn finish(&self) {
        if !self.closed.swap(true, Ordering::SeqCst) {
            let mut event = self.event(EventKind::DownloadFinished);
            event.bytes = Some(self.sent.load(Ordering::SeqCst));
            event.duration_ms = Some(self.started.elapsed().as_millis() as u64);
            self.events.emit(event);
        }
    }

    /// Ends the download on an error and records `download.failed`.
    pub fn fail(&self, reason: &str) {
        let reason = if self.transfer.was_cut() {
            crate::live::DISCONNECTED
        } else {
            reason
        };
        if !self.closed.swap(true, Ordering::SeqCst) {
            let mut event = self.event(EventKind::DownloadFailed).failed(reason);
            event.bytes = Some(self.sent.load(Ordering::SeqCst));
            event.duration_ms = Some(self.started.elapsed().as_millis() as u64);
            self.events.emit(event);
        }
    }
}

impl Drop for Download {
    fn drop(&mut self) {
        self.fail("session ended before the download was closed");
    }
}
