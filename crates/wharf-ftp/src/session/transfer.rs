//! Data transfers of one FTP session: listings, downloads and uploads over the data
//! connection, each through the core session (which records the events).
//!
//! While a transfer runs the control connection is watched for ABOR only; other commands
//! the client sends meanwhile wait in the input buffer (bounded) and run afterwards.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wharf_core::vfs::FileKind;
use wharf_core::{CoreError, ErrorKind, EventKind, UploadOpen, WriteMode};
use wharf_ftp_proto::{MAX_LINE, Reply, find_abort};

use super::{State, core_reply, secure};
use crate::data::{self, DataPlan};
use crate::stream::MaybeTls;

/// Bytes moved per read or write on a data connection.
const CHUNK: usize = 256 * 1024;

/// Control bytes held during a transfer; past this the control connection is not read
/// until the transfer ends.
const MAX_QUEUED: usize = 2 * (MAX_LINE + 2);

/// What stopped a transfer from the control side.
pub(super) enum Interrupt {
    /// The client sent ABOR.
    Abort,
    /// The control connection closed or failed.
    ControlLost,
}

/// Resolves when the client sends ABOR or the control connection ends.
async fn interrupted(control: &mut MaybeTls, input: &mut Vec<u8>) -> Interrupt {
    loop {
        if let Some(range) = find_abort(input) {
            input.drain(range);
            return Interrupt::Abort;
        }
        if input.len() >= MAX_QUEUED {
            std::future::pending::<()>().await;
        }
        let mut chunk = [0u8; 1024];
        match control.read(&mut chunk).await {
            Ok(0) | Err(_) => return Interrupt::ControlLost,
            Ok(n) => {
                input.extend_from_slice(&chunk[..n]);
                if input.last() != Some(&b'\n') {
                    control.read_urgent_tail(input);
                }
            }
        }
    }
}

/// The replies after an interrupted transfer: 426 for the transfer, then 226 for ABOR.
async fn after_interrupt(st: &mut State, why: Interrupt) -> Reply {
    match why {
        Interrupt::Abort => {
            st.send(Reply::new(426, "transfer aborted; data connection closed"))
                .await;
            Reply::new(226, "ABOR done")
        }
        Interrupt::ControlLost => Reply::new(426, "control connection lost"),
    }
}

fn interrupt_reason(why: &Interrupt) -> &'static str {
    match why {
        Interrupt::Abort => "aborted by the client (ABOR)",
        Interrupt::ControlLost => "control connection lost",
    }
}

/// Makes the arranged data connection (TLS under PROT P); an ABOR meanwhile cancels it.
/// `upload`: the client will send (STOR, APPE, STOU) rather than receive.
pub(super) async fn open_data(
    st: &mut State,
    upload: bool,
) -> Result<MaybeTls, Result<Reply, Interrupt>> {
    let plan = std::mem::replace(&mut st.plan, DataPlan::None);
    let connect = data::connect(
        plan,
        st.remote.ip(),
        st.shared.config.allow_foreign_data,
        st.shared.config.data_timeout,
        st.shared.config.proxy.as_ref(),
    );
    let connected = tokio::select! {
        c = connect => c,
        why = interrupted(&mut st.control, &mut st.input) => return Err(Err(why)),
    };
    match connected {
        Ok(stream) => secure::protect_data(st, stream, upload).await.map_err(Ok),
        Err(e) => {
            st.shared
                .events
                .emit(st.event(EventKind::ProtocolError).failed(e.message()));
            Err(Ok(Reply::new(425, e.message())))
        }
    }
}

pub(super) enum Listing {
    Long,
    Names,
    Facts,
}

pub(super) fn facts(meta: &wharf_core::Metadata, name: &str) -> String {
    let kind = match meta.kind {
        FileKind::Dir => "dir",
        _ => "file",
    };
    let perm = if meta.kind == FileKind::Dir {
        "elcdmfp"
    } else {
        "radfw"
    };
    format!(
        "type={kind};size={};modify={};perm={perm};unique={:x}; {name}",
        meta.size,
        meta.mtime_compact(),
        meta.size ^ (meta.mtime as u64)
    )
}

pub(super) async fn listing(st: &mut State, raw: Option<Vec<u8>>, kind: Listing) -> Reply {
    let dir = match raw {
        Some(r) => match st.path(&r) {
            Ok(p) => p,
            Err(e) => return core_reply(&e),
        },
        None => st.cwd.clone(),
    };
    let session = match st.core() {
        Ok(s) => s,
        Err(e) => return core_reply(&e),
    };
    let owner = session.account().name.to_string();
    let entries = match session.list(&dir).await {
        Ok(e) => e,
        // LIST and NLST of a file answer with the file's own line (as every FTP server
        // does); MLSD is for folders only (RFC 3659 §7.2).
        Err(e) if e.kind == ErrorKind::NotADirectory && !matches!(kind, Listing::Facts) => {
            match session.stat(&dir, true).await {
                Ok(metadata) => vec![wharf_core::DirEntry {
                    name: dir.file_name().unwrap_or("/").to_owned(),
                    metadata,
                }],
                Err(e) => return core_reply(&e),
            }
        }
        Err(e) => return core_reply(&e),
    };
    let mut text = String::new();
    for e in &entries {
        let line = match kind {
            Listing::Long => e.metadata.ls_line(&e.name, &owner),
            Listing::Names => e.name.clone(),
            Listing::Facts => facts(&e.metadata, &e.name),
        };
        text.push_str(&line);
        text.push_str("\r\n");
    }
    if !st
        .send(Reply::new(150, "opening data connection for the listing"))
        .await
    {
        return Reply::new(426, "control connection lost");
    }
    let mut stream = match open_data(st, false).await {
        Ok(s) => s,
        Err(Ok(reply)) => return reply,
        Err(Err(why)) => return after_interrupt(st, why).await,
    };
    let sent = tokio::select! {
        r = async {
            stream.write_all(text.as_bytes()).await?;
            stream.shutdown().await
        } => r.is_ok(),
        why = interrupted(&mut st.control, &mut st.input) => {
            return after_interrupt(st, why).await;
        }
    };
    if !sent {
        return Reply::new(426, "data connection closed; listing incomplete");
    }
    Reply::new(226, "listing sent")
}

pub(super) async fn mlst(st: &mut State, raw: Option<Vec<u8>>) -> Reply {
    let path = match raw {
        Some(r) => match st.path(&r) {
            Ok(p) => p,
            Err(e) => return core_reply(&e),
        },
        None => st.cwd.clone(),
    };
    match st.core() {
        Ok(s) => match s.stat(&path, true).await {
            Ok(meta) => Reply::multi(
                250,
                vec!["Listing:".into(), facts(&meta, path.as_str()), "End".into()],
            ),
            Err(e) => core_reply(&e),
        },
        Err(e) => core_reply(&e),
    }
}

pub(super) async fn stat_file(st: &State, raw: &[u8]) -> Result<wharf_core::Metadata, CoreError> {
    let path = st.path(raw)?;
    let meta = st.core()?.stat(&path, true).await?;
    if meta.kind == FileKind::Dir {
        return Err(CoreError::new(ErrorKind::IsADirectory, "is a folder"));
    }
    Ok(meta)
}

/// LF to CRLF for ASCII downloads.
pub(super) fn to_crlf(data: &[u8], last_was_cr: &mut bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 32);
    for &b in data {
        if b == b'\n' && !*last_was_cr {
            out.push(b'\r');
        }
        out.push(b);
        *last_was_cr = b == b'\r';
    }
    out
}

pub(super) async fn retrieve(st: &mut State, raw: &[u8], offset: u64) -> Reply {
    let path = match st.path(raw) {
        Ok(p) => p,
        Err(e) => return core_reply(&e),
    };
    let download = match st.core() {
        Ok(s) => match s.open_download(&path).await {
            Ok(d) => d,
            Err(e) => return core_reply(&e),
        },
        Err(e) => return core_reply(&e),
    };
    let size = download.metadata().await.map(|m| m.size).unwrap_or(0);
    if offset > size {
        download.fail("REST offset past the end of the file");
        return Reply::new(
            554,
            format!("REST offset {offset} is past the end ({size} bytes)"),
        );
    }
    if !st
        .send(Reply::new(
            150,
            format!(
                "opening data connection for {path} ({} bytes)",
                size - offset
            ),
        ))
        .await
    {
        download.fail("control connection lost");
        return Reply::new(426, "control connection lost");
    }
    let mut stream = match open_data(st, false).await {
        Ok(s) => s,
        Err(Ok(reply)) => {
            download.fail("no data connection");
            return reply;
        }
        Err(Err(why)) => {
            download.fail(interrupt_reason(&why));
            return after_interrupt(st, why).await;
        }
    };
    let mut position = offset;
    if let (MaybeTls::Plain(tcp), false) = (&stream, st.ascii) {
        // Image type over plain TCP: the kernel moves the pages (sendfile), no copy here.
        loop {
            let sent = tokio::select! {
                r = download.send_to(tcp, position, CHUNK) => r,
                why = interrupted(&mut st.control, &mut st.input) => {
                    download.fail(interrupt_reason(&why));
                    return after_interrupt(st, why).await;
                }
            };
            match sent {
                Ok(Some(0)) => return finish_download(&download, stream).await,
                Ok(Some(n)) => position += n as u64,
                // Not a local file: read and write below.
                Ok(None) => break,
                Err(_) => {
                    download.fail("data connection closed by the client");
                    return Reply::new(426, "data connection closed; transfer aborted");
                }
            }
        }
    }
    let mut last_was_cr = false;
    loop {
        let chunk = match download.read_at(position, CHUNK).await {
            Ok(c) => c,
            Err(e) => {
                download.fail(&e.message);
                return Reply::new(451, e.message);
            }
        };
        if chunk.is_empty() {
            break;
        }
        position += chunk.len() as u64;
        let bytes = if st.ascii {
            to_crlf(&chunk, &mut last_was_cr)
        } else {
            chunk
        };
        let written = tokio::select! {
            r = stream.write_all(&bytes) => r.is_ok(),
            why = interrupted(&mut st.control, &mut st.input) => {
                download.fail(interrupt_reason(&why));
                return after_interrupt(st, why).await;
            }
        };
        if !written {
            download.fail("data connection closed by the client");
            return Reply::new(426, "data connection closed; transfer aborted");
        }
    }
    finish_download(&download, stream).await
}

async fn finish_download(download: &wharf_core::Download, mut stream: MaybeTls) -> Reply {
    if stream.shutdown().await.is_err() {
        download.fail("data connection failed at the end");
        return Reply::new(426, "data connection failed");
    }
    download.finish();
    Reply::new(226, "transfer complete")
}

pub(super) async fn store(st: &mut State, raw: &[u8], mode: WriteMode, offset: u64) -> Reply {
    let path = match st.path(raw) {
        Ok(p) => p,
        Err(e) => return core_reply(&e),
    };
    let upload = {
        let session = match st.core() {
            Ok(s) => s,
            Err(e) => return core_reply(&e),
        };
        // REST + STOR continues a file only from its current end (RFC 3659 §5); the core
        // compares the offset with the file it opens.
        let open = if mode == WriteMode::Resume {
            UploadOpen::resume_at(offset)
        } else {
            UploadOpen::from(mode)
        };
        match session.open_upload(&path, open, None).await {
            Ok(u) => u,
            Err(e) => return core_reply(&e),
        }
    };
    if !st
        .send(Reply::new(150, format!("ready to receive {path}")))
        .await
    {
        upload.abort("control connection lost").await;
        return Reply::new(426, "control connection lost");
    }
    let mut stream = match open_data(st, true).await {
        Ok(s) => s,
        Err(Ok(reply)) => {
            upload.abort("no data connection").await;
            return reply;
        }
        Err(Err(why)) => {
            upload.abort(interrupt_reason(&why)).await;
            return after_interrupt(st, why).await;
        }
    };
    let mut buf = vec![0u8; CHUNK];
    let mut pending_cr = false;
    loop {
        let read = tokio::select! {
            r = stream.read(&mut buf) => r,
            why = interrupted(&mut st.control, &mut st.input) => {
                // The core writes what it holds first: a resumable upload keeps it.
                upload.abort(interrupt_reason(&why)).await;
                return after_interrupt(st, why).await;
            }
        };
        let n = match read {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                upload.abort(&format!("data connection failed: {e}")).await;
                return Reply::new(426, "data connection failed; upload discarded");
            }
        };
        let data = if st.ascii {
            // CRLF to LF for ASCII uploads; a CR at a chunk's end waits for the next byte.
            let mut out = Vec::with_capacity(n);
            for &b in &buf[..n] {
                if pending_cr && b != b'\n' {
                    out.push(b'\r');
                }
                pending_cr = b == b'\r';
                if !pending_cr {
                    out.push(b);
                }
            }
            out
        } else {
            buf[..n].to_vec()
        };
        // Reads return what one TCP segment or TLS record held; the core gathers them
        // into larger writes.
        if let Err(e) = upload.push(data).await {
            upload.abort(&e.message).await;
            return core_reply(&e);
        }
    }
    if pending_cr && let Err(e) = upload.push(b"\r".to_vec()).await {
        upload.abort(&e.message).await;
        return core_reply(&e);
    }
    // Answer the client's TLS close_notify with ours; a plain socket just closes.
    let _ = stream.shutdown().await;
    match upload.commit().await {
        Ok(summary) => match st.core().ok().and_then(|s| s.digest_for_client(&summary)) {
            Some(sha256) => Reply::new(226, format!("transfer complete; SHA-256 {sha256}")),
            None => Reply::new(226, "transfer complete"),
        },
        Err(e) => core_reply(&e),
    }
}
