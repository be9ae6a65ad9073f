//! One SFTP request, translated onto the core session, and its reply.

use std::collections::VecDeque;
use std::sync::Mutex;

use wharf_core::vfs::{Attrs, FileKind, Metadata};
use wharf_core::{CoreError, ErrorKind, UploadOpen, WriteMode};
use wharf_sftp_proto::{
    Extended, FileAttrs, MAX_DATA, MAX_PACKET, Name, OpenFlags, Request, RequestBody, Response,
    StatusCode, VERSION, put_str_then_raw, put_u64s,
};
use wharf_types::VirtualPath;

use super::Engine;
use super::handles::Handle;

/// Entries per READDIR reply.
const READDIR_BATCH: usize = 128;

/// The VERSION reply, advertising the extensions this engine implements.
pub(super) fn version() -> Response {
    let ext = |name: &str, data: &str| (name.as_bytes().to_vec(), data.as_bytes().to_vec());
    Response::Version {
        version: VERSION,
        extensions: vec![
            ext("posix-rename@openssh.com", "1"),
            ext("statvfs@openssh.com", "2"),
            ext("fstatvfs@openssh.com", "2"),
            ext("hardlink@openssh.com", "1"),
            ext("fsync@openssh.com", "1"),
            ext("limits@openssh.com", "1"),
            ext("expand-path@openssh.com", "1"),
            ext("home-directory", "1"),
            ext("copy-data", "1"),
            ext("check-file", "sha256"),
        ],
    }
}

fn status_of(id: u32, err: &CoreError) -> Response {
    let code = match err.kind {
        ErrorKind::NotFound => StatusCode::NoSuchFile,
        ErrorKind::PermissionDenied => StatusCode::PermissionDenied,
        ErrorKind::Unsupported => StatusCode::OpUnsupported,
        _ => StatusCode::Failure,
    };
    Response::status(id, code, err.message.clone())
}

fn to_attrs(meta: &Metadata) -> FileAttrs {
    let type_bits = match meta.kind {
        FileKind::File => 0o100000,
        FileKind::Dir => 0o040000,
        FileKind::Symlink => 0o120000,
        FileKind::Other => 0,
    };
    FileAttrs {
        size: Some(meta.size),
        uid_gid: Some((meta.uid, meta.gid)),
        permissions: Some(type_bits | meta.permissions),
        atime_mtime: Some((clamp_time(meta.atime), clamp_time(meta.mtime))),
    }
}

fn clamp_time(t: i64) -> u32 {
    u32::try_from(t.max(0)).unwrap_or(u32::MAX)
}

fn from_attrs(attrs: &FileAttrs) -> Attrs {
    Attrs {
        size: attrs.size,
        permissions: attrs.permissions.map(|p| p & 0o7777),
        times: attrs.atime_mtime.map(|(a, m)| (i64::from(a), i64::from(m))),
        owner: attrs.uid_gid,
    }
}

fn one_name(id: u32, path: &str) -> Response {
    Response::Name {
        id,
        names: vec![Name {
            filename: path.as_bytes().to_vec(),
            longname: path.as_bytes().to_vec(),
            attrs: FileAttrs::default(),
        }],
    }
}

/// Handles one request and returns its reply.
pub(super) async fn handle(engine: &Engine, request: Request) -> Response {
    let id = request.id;
    match run(engine, request).await {
        Ok(response) => response,
        Err(e) => status_of(id, &e),
    }
}

async fn run(engine: &Engine, request: Request) -> Result<Response, CoreError> {
    let s = &engine.session;
    let id = request.id;
    let root = VirtualPath::root();
    let path = |raw: &[u8]| s.resolve(&root, raw);
    match request.body {
        RequestBody::Open {
            path: raw,
            flags,
            attrs,
        } => open(engine, id, &path(&raw)?, flags, &attrs).await,
        RequestBody::Close { handle } => close(engine, id, &handle).await,
        RequestBody::Read {
            handle,
            offset,
            len,
        } => {
            let h = engine.handles.get(&handle).ok_or_else(bad_handle)?;
            let len = len.min(MAX_DATA) as usize;
            let data = match &*h {
                Handle::Read(download) => download.read_at(offset, len).await?,
                // A read-write open (sshfs, SQLite) reads back what it wrote.
                Handle::Write { upload, .. } => s.read_upload(upload, offset, len).await?,
                Handle::Dir { .. } => {
                    return Err(CoreError::new(
                        ErrorKind::Unsupported,
                        "handle not open for reading",
                    ));
                }
            };
            if data.is_empty() {
                return Ok(Response::status(id, StatusCode::Eof, "end of file"));
            }
            Ok(Response::Data { id, data })
        }
        RequestBody::Write {
            handle,
            offset,
            data,
        } => {
            let h = engine.handles.get(&handle).ok_or_else(bad_handle)?;
            let Handle::Write { upload, append } = &*h else {
                return Err(CoreError::new(
                    ErrorKind::Unsupported,
                    "handle not open for writing",
                ));
            };
            if *append {
                upload.append(data).await?;
            } else {
                upload.write_at(offset, data).await?;
            }
            Ok(Response::ok(id))
        }
        RequestBody::Lstat { path: raw } => {
            let meta = s.stat(&path(&raw)?, false).await?;
            Ok(Response::Attrs {
                id,
                attrs: to_attrs(&meta),
            })
        }
        RequestBody::Stat { path: raw } => {
            let meta = s.stat(&path(&raw)?, true).await?;
            Ok(Response::Attrs {
                id,
                attrs: to_attrs(&meta),
            })
        }
        RequestBody::Fstat { handle } => {
            let h = engine.handles.get(&handle).ok_or_else(bad_handle)?;
            let meta = match &*h {
                Handle::Read(download) => download.metadata().await?,
                Handle::Write { upload, .. } => upload.metadata().await?,
                Handle::Dir { path, .. } => s.stat(path, true).await?,
            };
            Ok(Response::Attrs {
                id,
                attrs: to_attrs(&meta),
            })
        }
        RequestBody::Setstat { path: raw, attrs } => {
            s.set_attrs(&path(&raw)?, &from_attrs(&attrs)).await?;
            Ok(Response::ok(id))
        }
        RequestBody::Fsetstat { handle, attrs } => {
            let h = engine.handles.get(&handle).ok_or_else(bad_handle)?;
            let wanted = from_attrs(&attrs);
            match &*h {
                Handle::Write { upload, .. } => s.set_upload_attrs(upload, &wanted).await?,
                Handle::Read(download) => s.set_attrs(download.path(), &wanted).await?,
                Handle::Dir { path, .. } => s.set_attrs(path, &wanted).await?,
            }
            Ok(Response::ok(id))
        }
        RequestBody::Opendir { path: raw } => {
            let dir = path(&raw)?;
            let entries = s.list(&dir).await?;
            let handle = engine
                .handles
                .insert(Handle::Dir {
                    path: dir,
                    entries: Mutex::new(Some(VecDeque::from(entries))),
                })
                .map_err(|_| too_many())?;
            Ok(Response::Handle { id, handle })
        }
        RequestBody::Readdir { handle } => {
            let h = engine.handles.get(&handle).ok_or_else(bad_handle)?;
            let Handle::Dir { entries, .. } = &*h else {
                return Err(CoreError::new(ErrorKind::Failure, "not a folder handle"));
            };
            let owner = s.account().name.to_string();
            let batch: Vec<Name> = {
                let mut guard = entries.lock().map_err(|_| bad_handle())?;
                let Some(queue) = guard.as_mut() else {
                    return Ok(Response::status(id, StatusCode::Eof, "end of folder"));
                };
                let take = queue.len().min(READDIR_BATCH);
                let batch: Vec<Name> = queue
                    .drain(..take)
                    .map(|e| Name {
                        longname: e.metadata.ls_line(&e.name, &owner).into_bytes(),
                        attrs: to_attrs(&e.metadata),
                        filename: e.name.into_bytes(),
                    })
                    .collect();
                if queue.is_empty() {
                    *guard = None;
                }
                batch
            };
            if batch.is_empty() {
                return Ok(Response::status(id, StatusCode::Eof, "end of folder"));
            }
            Ok(Response::Name { id, names: batch })
        }
        RequestBody::Remove { path: raw } => {
            s.remove(&path(&raw)?).await?;
            Ok(Response::ok(id))
        }
        RequestBody::Mkdir { path: raw, attrs } => {
            s.mkdir(&path(&raw)?, attrs.permissions).await?;
            Ok(Response::ok(id))
        }
        RequestBody::Rmdir { path: raw } => {
            s.rmdir(&path(&raw)?).await?;
            Ok(Response::ok(id))
        }
        RequestBody::Realpath { path: raw } => Ok(one_name(id, path(&raw)?.as_str())),
        RequestBody::Rename { from, to } => {
            s.rename(&path(&from)?, &path(&to)?, false).await?;
            Ok(Response::ok(id))
        }
        RequestBody::Readlink { path: raw } => {
            let target = s.read_link(&path(&raw)?).await?;
            Ok(one_name(id, &target))
        }
        RequestBody::Symlink { first, second } => {
            let (target, link) = engine.symlink_order.target_and_link(first, second);
            s.symlink(&target, &path(&link)?).await?;
            Ok(Response::ok(id))
        }
        RequestBody::Extended(ext) => extended(engine, id, ext).await,
        _ => Ok(Response::status(
            id,
            StatusCode::OpUnsupported,
            "unsupported request",
        )),
    }
}

fn bad_handle() -> CoreError {
    CoreError::new(ErrorKind::Failure, "invalid handle")
}

fn too_many() -> CoreError {
    CoreError::new(ErrorKind::LimitReached, "too many open handles")
}

async fn open(
    engine: &Engine,
    id: u32,
    path: &VirtualPath,
    flags: OpenFlags,
    attrs: &FileAttrs,
) -> Result<Response, CoreError> {
    let s = &engine.session;
    // Before anything is opened: a refused open must leave no file and no count behind.
    if engine.handles.full() {
        return Err(too_many());
    }
    let writing = flags.has(OpenFlags::WRITE) || flags.has(OpenFlags::APPEND);
    let handle = if !writing {
        Handle::Read(Box::new(s.open_download(path).await?))
    } else {
        let mut open = UploadOpen::from(if flags.has(OpenFlags::APPEND) {
            WriteMode::Append
        } else if flags.has(OpenFlags::TRUNC) {
            WriteMode::Create
        } else {
            WriteMode::Resume
        });
        if !flags.has(OpenFlags::CREAT) {
            open = open.existing();
        } else if flags.has(OpenFlags::EXCL) {
            open = open.exclusive();
        }
        let upload = s
            .open_shared_upload(path, open, attrs.permissions.map(|p| p & 0o777))
            .await?;
        Handle::Write {
            upload,
            append: flags.has(OpenFlags::APPEND),
        }
    };
    match engine.handles.insert(handle) {
        Ok(handle) => Ok(Response::Handle { id, handle }),
        Err(handle) => {
            // Filled meanwhile by a request on another lane: undo this open's share.
            if let Handle::Write { upload, .. } = &handle {
                s.abort_shared_upload(upload, "too many open handles").await;
            }
            Err(too_many())
        }
    }
}

async fn close(engine: &Engine, id: u32, key: &[u8]) -> Result<Response, CoreError> {
    let h = engine.handles.remove(key).ok_or_else(bad_handle)?;
    match &*h {
        Handle::Read(download) => download.finish(),
        Handle::Write { upload, .. } => {
            engine.session.close_shared_upload(upload).await?;
        }
        Handle::Dir { .. } => {}
    }
    Ok(Response::ok(id))
}

async fn extended(engine: &Engine, id: u32, ext: Extended) -> Result<Response, CoreError> {
    let s = &engine.session;
    let root = VirtualPath::root();
    match ext {
        Extended::PosixRename { from, to } => {
            s.rename(&s.resolve(&root, &from)?, &s.resolve(&root, &to)?, true)
                .await?;
            Ok(Response::ok(id))
        }
        Extended::Statvfs { .. } | Extended::Fstatvfs { .. } => {
            let st = s.stats().await?;
            let data = put_u64s(&[
                st.block_size,
                st.fragment_size,
                st.blocks,
                st.blocks_free,
                st.blocks_available,
                st.files,
                st.files_free,
                st.files_available,
                st.fsid,
                st.flags,
                st.name_max,
            ]);
            Ok(Response::ExtendedReply { id, data })
        }
        Extended::Hardlink { existing, link } => {
            s.hard_link(&s.resolve(&root, &existing)?, &s.resolve(&root, &link)?)
                .await?;
            Ok(Response::ok(id))
        }
        Extended::Fsync { handle } => {
            let h = engine.handles.get(&handle).ok_or_else(bad_handle)?;
            if let Handle::Write { upload, .. } = &*h {
                upload.sync().await?;
            }
            Ok(Response::ok(id))
        }
        Extended::Limits => {
            let data = put_u64s(&[
                u64::from(MAX_PACKET),
                u64::from(MAX_DATA),
                u64::from(MAX_DATA),
                super::MAX_HANDLES as u64,
            ]);
            Ok(Response::ExtendedReply { id, data })
        }
        Extended::HomeDirectory { .. } => Ok(one_name(id, "/")),
        Extended::ExpandPath { path } => {
            let trimmed: &[u8] = match path.as_slice() {
                [b'~'] => b"/",
                [b'~', b'/', rest @ ..] => rest,
                other => other,
            };
            Ok(one_name(id, s.resolve(&root, trimmed)?.as_str()))
        }
        Extended::CopyData {
            read_handle,
            read_offset,
            length,
            write_handle,
            write_offset,
        } => {
            let source = engine.handles.get(&read_handle).ok_or_else(bad_handle)?;
            let dest = engine.handles.get(&write_handle).ok_or_else(bad_handle)?;
            let (Handle::Read(download), Handle::Write { upload, .. }) = (&*source, &*dest) else {
                return Err(CoreError::new(
                    ErrorKind::Failure,
                    "copy-data needs a read handle and a write handle",
                ));
            };
            let copied = upload
                .copy_from(download, read_offset, length, write_offset)
                .await?;
            if length != 0 && copied < length {
                return Ok(Response::status(id, StatusCode::Eof, "source ended early"));
            }
            Ok(Response::ok(id))
        }
        Extended::CheckFileName {
            path,
            algorithms,
            start,
            length,
            block_size,
        } => {
            check_algorithms(&algorithms, start, length, block_size)?;
            let digest = s.sha256(&s.resolve(&root, &path)?).await?;
            Ok(check_file_reply(id, &digest))
        }
        Extended::CheckFileHandle {
            handle,
            algorithms,
            start,
            length,
            block_size,
        } => {
            check_algorithms(&algorithms, start, length, block_size)?;
            let h = engine.handles.get(&handle).ok_or_else(bad_handle)?;
            let path = match &*h {
                Handle::Read(download) => download.path().clone(),
                _ => {
                    return Err(CoreError::new(
                        ErrorKind::Unsupported,
                        "handle not open for reading",
                    ));
                }
            };
            let digest = s.sha256(&path).await?;
            Ok(check_file_reply(id, &digest))
        }
        Extended::Unknown { name } => Ok(Response::status(
            id,
            StatusCode::OpUnsupported,
            format!("extension {} not supported", String::from_utf8_lossy(&name)),
        )),
        _ => Ok(Response::status(
            id,
            StatusCode::OpUnsupported,
            "unsupported extension",
        )),
    }
}

fn check_algorithms(
    algorithms: &[u8],
    start: u64,
    length: u64,
    block_size: u32,
) -> Result<(), CoreError> {
    let wants_sha256 = algorithms.split(|b| *b == b',').any(|a| a == b"sha256");
    if !wants_sha256 {
        return Err(CoreError::new(
            ErrorKind::Unsupported,
            "only sha256 is offered",
        ));
    }
    if start != 0 || length != 0 || block_size != 0 {
        return Err(CoreError::new(
            ErrorKind::Unsupported,
            "only whole-file hashes are offered",
        ));
    }
    Ok(())
}

fn check_file_reply(id: u32, hex_digest: &str) -> Response {
    let raw: Vec<u8> = (0..hex_digest.len() / 2)
        .filter_map(|i| u8::from_str_radix(hex_digest.get(i * 2..i * 2 + 2)?, 16).ok())
        .collect();
    // draft-ietf-secsh-filexfer-extensions: string "check-file", string algorithm, hash.
    let mut data = put_str_then_raw(b"check-file", &[]);
    data.extend(put_str_then_raw(b"sha256", &raw));
    Response::ExtendedReply { id, data }
}
