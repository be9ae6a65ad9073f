//! Legacy SCP (`scp -O`, libssh2, appliances) through the core session.
//!
//! The remote half of SCP is a small record protocol: `C<mode> <size> <name>` for a file,
//! `D<mode> 0 <name>` and `E` around a folder, `T<mtime> 0 <atime> 0` for times, each
//! acknowledged with a zero byte (or 1/2 and a message). Record names must be single plain
//! names (no `/`, not `.` or `..`, not empty): a server that accepted a path here would let
//! a client write anywhere its rules allow under another name. Sizes are u64 and the bytes
//! are streamed into the upload; nothing is allocated from a size field.

use tokio::io::{AsyncWrite, AsyncWriteExt};
use wharf_core::vfs::{Attrs, FileKind, Metadata};
use wharf_core::{CoreError, EventKind, Session, WriteMode};
use wharf_types::VirtualPath;

use crate::input::Input;

/// Longest record line accepted.
const MAX_RECORD: usize = 4096;
/// Bytes moved per read or write.
const CHUNK: usize = 256 * 1024;
/// Deepest folder nesting followed in either direction.
const MAX_DEPTH: usize = 64;

/// Why a transfer ended badly.
enum Fatal {
    /// The client broke the protocol; the message is recorded and sent.
    Protocol(String),
    /// The client went away.
    Gone,
}

async fn send<W: AsyncWrite + Unpin>(out: &mut W, bytes: &[u8]) -> Result<(), Fatal> {
    out.write_all(bytes).await.map_err(|_| Fatal::Gone)?;
    out.flush().await.map_err(|_| Fatal::Gone)
}

async fn ok<W: AsyncWrite + Unpin>(out: &mut W) -> Result<(), Fatal> {
    send(out, b"\0").await
}

async fn warn<W: AsyncWrite + Unpin>(out: &mut W, message: &str) -> Result<(), Fatal> {
    send(out, format!("\x01scp: {message}\n").as_bytes()).await
}

/// Checks a record name: one plain component.
fn record_name(name: &str) -> Result<&str, String> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(format!(
            "invalid name in record: {:?}",
            name.chars().take(64).collect::<String>()
        ));
    }
    Ok(name)
}

/// Parses `C0644 123 name` / `D0755 0 name`.
pub fn parse_entry(line: &str) -> Result<(u32, u64, &str), String> {
    let body = line.get(1..).ok_or_else(|| "malformed record".to_owned())?;
    let mut parts = body.splitn(3, ' ');
    let (Some(mode), Some(size), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
        return Err("malformed record".to_owned());
    };
    let mode = u32::from_str_radix(mode, 8).map_err(|_| "malformed mode".to_owned())?;
    let size: u64 = size.parse().map_err(|_| "malformed size".to_owned())?;
    Ok((mode & 0o7777, size, record_name(name)?))
}

/// Parses `T<mtime> 0 <atime> 0`.
pub fn parse_times(line: &str) -> Result<(i64, i64), String> {
    let body = line
        .get(1..)
        .ok_or_else(|| "malformed time record".to_owned())?;
    let fields: Vec<&str> = body.split(' ').collect();
    let [mtime, _, atime, _] = fields.as_slice() else {
        return Err("malformed time record".to_owned());
    };
    let mtime = mtime.parse().map_err(|_| "malformed time".to_owned())?;
    let atime = atime.parse().map_err(|_| "malformed time".to_owned())?;
    Ok((mtime, atime))
}

/// `scp -t`: receives files into `target`. Returns the exit status.
pub async fn sink<W: AsyncWrite + Unpin>(
    session: &Session,
    input: &mut Input,
    out: &mut W,
    target: &str,
    recursive: bool,
    target_is_dir: bool,
) -> u32 {
    match sink_inner(session, input, out, target, recursive, target_is_dir).await {
        Ok(code) => code,
        Err(Fatal::Protocol(message)) => {
            session.emit(
                session
                    .event(EventKind::ProtocolError)
                    .failed(format!("scp: {message}")),
            );
            let _ = send(out, format!("\x02scp: {message}\n").as_bytes()).await;
            1
        }
        Err(Fatal::Gone) => 1,
    }
}

async fn sink_inner<W: AsyncWrite + Unpin>(
    session: &Session,
    input: &mut Input,
    out: &mut W,
    target: &str,
    recursive: bool,
    target_is_dir: bool,
) -> Result<u32, Fatal> {
    let target = match session.resolve(&VirtualPath::root(), target.as_bytes()) {
        Ok(t) => t,
        Err(e) => return Err(Fatal::Protocol(e.message)),
    };
    // Whether the target is a folder is asked when the first entry's name is known: the
    // core then decides on the place the entry really lands (a drop folder's account sends
    // into a folder it may not look at).
    ok(out).await?;
    let mut stack: Vec<VirtualPath> = Vec::new();
    let mut times: Option<(i64, i64)> = None;
    let mut status = 0;
    loop {
        let line = match input.read_line(MAX_RECORD).await {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(()) => {
                return Err(Fatal::Protocol(format!(
                    "record longer than {MAX_RECORD} bytes"
                )));
            }
        };
        let Some(&first) = line.first() else {
            return Err(Fatal::Protocol("empty record".to_owned()));
        };
        if first == 1 || first == 2 {
            // The client reports its own error; a fatal one ends the transfer.
            status = 1;
            if first == 2 {
                break;
            }
            continue;
        }
        let line = String::from_utf8(line)
            .map_err(|_| Fatal::Protocol("record is not UTF-8".to_owned()))?;
        let folder = stack.last().cloned().unwrap_or_else(|| target.clone());
        match first {
            b'T' => {
                times = Some(parse_times(&line).map_err(Fatal::Protocol)?);
                ok(out).await?;
            }
            b'C' => {
                let (mode, size, name) = parse_entry(&line).map_err(Fatal::Protocol)?;
                let dest = place(session, &folder, !stack.is_empty(), name, target_is_dir).await?;
                if !receive_file(session, input, out, &dest, mode, size, times.take()).await? {
                    status = 1;
                }
            }
            b'D' => {
                if !recursive {
                    return Err(Fatal::Protocol("folder received without -r".to_owned()));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(Fatal::Protocol("folders nested too deeply".to_owned()));
                }
                let (mode, _, name) = parse_entry(&line).map_err(Fatal::Protocol)?;
                let dest = place(session, &folder, !stack.is_empty(), name, target_is_dir).await?;
                let exists =
                    matches!(session.stat(&dest, true).await, Ok(m) if m.kind == FileKind::Dir);
                let made = if exists {
                    Ok(())
                } else {
                    session.mkdir(&dest, Some(mode)).await
                };
                match made {
                    Ok(()) => {
                        stack.push(dest);
                        times = None;
                        ok(out).await?;
                    }
                    Err(e) => return Err(Fatal::Protocol(e.message)),
                }
            }
            b'E' => {
                if stack.pop().is_none() {
                    return Err(Fatal::Protocol("E record outside a folder".to_owned()));
                }
                ok(out).await?;
            }
            _ => return Err(Fatal::Protocol("unknown record".to_owned())),
        }
    }
    Ok(status)
}

/// Where an entry named `name` lands: inside `folder` when it is one the sender went into
/// (`D` records), else where the core places it at the target (inside it when it is a
/// folder). `-d` asked for a folder target: an entry that would replace it is refused.
async fn place(
    session: &Session,
    folder: &VirtualPath,
    entered: bool,
    name: &str,
    target_is_dir: bool,
) -> Result<VirtualPath, Fatal> {
    if entered {
        return folder
            .join(name)
            .map_err(|e| Fatal::Protocol(e.to_string()));
    }
    let dest = session
        .place_in(folder, name)
        .await
        .map_err(|e| Fatal::Protocol(e.message))?;
    if target_is_dir && dest == *folder {
        return Err(Fatal::Protocol(format!("{folder}: not a folder")));
    }
    Ok(dest)
}

/// Receives one file's bytes. Returns false when the file was refused or failed (the client
/// was told with a warning and the transfer goes on).
async fn receive_file<W: AsyncWrite + Unpin>(
    session: &Session,
    input: &mut Input,
    out: &mut W,
    dest: &VirtualPath,
    mode: u32,
    size: u64,
    times: Option<(i64, i64)>,
) -> Result<bool, Fatal> {
    let upload = match session
        .open_upload(dest, WriteMode::Create, Some(mode & 0o777))
        .await
    {
        Ok(u) => u,
        Err(e) => {
            // A warning before the data makes the client skip this file's bytes.
            warn(out, &e.message).await?;
            return Ok(false);
        }
    };
    ok(out).await?;
    let mut received = 0u64;
    let mut failure: Option<CoreError> = None;
    while received < size {
        let want = usize::try_from((size - received).min(CHUNK as u64)).unwrap_or(CHUNK);
        let Some(chunk) = input.read_some(want).await else {
            // The core writes what it holds before giving up: the record counts it.
            upload
                .abort("client closed the connection mid-file (size in header not sent)")
                .await;
            session.emit(
                session
                    .event(EventKind::ProtocolError)
                    .failed(format!(
                        "scp: header announced {size} bytes, {received} arrived"
                    ))
                    .path(dest.to_string()),
            );
            return Err(Fatal::Gone);
        };
        received += chunk.len() as u64;
        if failure.is_some() {
            continue;
        }
        // SSH packets carry 32 KiB or less; the core gathers them into larger writes.
        if let Err(e) = upload.push(chunk).await {
            failure = Some(e);
        }
    }
    // The sender ends each file with its own status byte. libssh2 (curl's scp://) sends
    // EOF instead once every announced byte is out; that file is complete, so it commits.
    let mut ended = false;
    match input.read_byte().await {
        Some(0) => {}
        Some(_) => {
            upload
                .abort("client reported an error after the data")
                .await;
            let _ = input.read_line(MAX_RECORD).await;
            return Ok(false);
        }
        None => ended = true,
    }
    if let Some(e) = failure {
        upload.abort(&e.message).await;
        warn(out, &e.message).await?;
        return Ok(false);
    }
    if let Err(e) = upload.commit().await {
        if ended {
            return Err(Fatal::Gone);
        }
        warn(out, &e.message).await?;
        return Ok(false);
    }
    if let Some((mtime, atime)) = times {
        let attrs = Attrs {
            times: Some((atime, mtime)),
            ..Attrs::default()
        };
        let _ = session.set_attrs(dest, &attrs).await;
    }
    if ended {
        let _ = ok(out).await;
        return Err(Fatal::Gone);
    }
    ok(out).await?;
    Ok(true)
}

/// `scp -f`: sends `source` (a file, or a folder with `-r`). Returns the exit status.
pub async fn source<W: AsyncWrite + Unpin + Send>(
    session: &Session,
    input: &mut Input,
    out: &mut W,
    source: &str,
    recursive: bool,
    preserve: bool,
) -> u32 {
    let result = async {
        await_ack(input).await?;
        let path = session
            .resolve(&VirtualPath::root(), source.as_bytes())
            .map_err(|e| Fatal::Protocol(e.message))?;
        let meta = match session.stat(&path, true).await {
            Ok(m) => m,
            Err(e) => {
                warn(out, &format!("{path}: {}", e.message)).await?;
                return Ok(1);
            }
        };
        let sender = Sender {
            session,
            preserve,
            recursive,
        };
        sender.send_entry(input, out, &path, &meta, 0).await
    }
    .await;
    match result {
        Ok(code) => code,
        Err(Fatal::Protocol(message)) => {
            let _ = send(out, format!("\x02scp: {message}\n").as_bytes()).await;
            1
        }
        Err(Fatal::Gone) => 1,
    }
}

/// Reads the peer's acknowledgement: Ok on zero, a failed transfer otherwise.
async fn await_ack(input: &mut Input) -> Result<bool, Fatal> {
    match input.read_byte().await {
        Some(0) => Ok(true),
        Some(1) => {
            let _ = input.read_line(MAX_RECORD).await;
            Ok(false)
        }
        Some(_) => {
            let _ = input.read_line(MAX_RECORD).await;
            Err(Fatal::Gone)
        }
        None => Err(Fatal::Gone),
    }
}

struct Sender<'a> {
    session: &'a Session,
    preserve: bool,
    recursive: bool,
}

impl Sender<'_> {
    async fn send_times<W: AsyncWrite + Unpin>(
        &self,
        input: &mut Input,
        out: &mut W,
        meta: &Metadata,
    ) -> Result<bool, Fatal> {
        if !self.preserve {
            return Ok(true);
        }
        send(
            out,
            format!("T{} 0 {} 0\n", meta.mtime, meta.atime).as_bytes(),
        )
        .await?;
        await_ack(input).await
    }

    fn send_entry<'s, W: AsyncWrite + Unpin + Send>(
        &'s self,
        input: &'s mut Input,
        out: &'s mut W,
        path: &'s VirtualPath,
        meta: &'s Metadata,
        depth: usize,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<u32, Fatal>> + Send + 's>> {
        Box::pin(async move {
            let name = path.file_name().unwrap_or("home");
            match meta.kind {
                FileKind::File => self.send_file(input, out, path, meta, name).await,
                FileKind::Dir if self.recursive && depth < MAX_DEPTH => {
                    let entries = match self.session.list(path).await {
                        Ok(e) => e,
                        Err(e) => {
                            warn(out, &format!("{path}: {}", e.message)).await?;
                            return Ok(1);
                        }
                    };
                    if !self.send_times(input, out, meta).await? {
                        return Ok(1);
                    }
                    send(
                        out,
                        format!("D{:04o} 0 {name}\n", meta.permissions & 0o7777).as_bytes(),
                    )
                    .await?;
                    if !await_ack(input).await? {
                        return Ok(1);
                    }
                    let mut status = 0;
                    for entry in entries {
                        let Ok(child) = path.join(&entry.name) else {
                            continue;
                        };
                        // Links are followed only inside the home (the backend enforces it).
                        let Ok(child_meta) = self.session.stat(&child, true).await else {
                            status = 1;
                            continue;
                        };
                        status |= self
                            .send_entry(input, out, &child, &child_meta, depth + 1)
                            .await?;
                    }
                    send(out, b"E\n").await?;
                    await_ack(input).await?;
                    Ok(status)
                }
                _ => {
                    warn(out, &format!("{path}: not a regular file")).await?;
                    Ok(1)
                }
            }
        })
    }

    async fn send_file<W: AsyncWrite + Unpin>(
        &self,
        input: &mut Input,
        out: &mut W,
        path: &VirtualPath,
        meta: &Metadata,
        name: &str,
    ) -> Result<u32, Fatal> {
        let download = match self.session.open_download(path).await {
            Ok(d) => d,
            Err(e) => {
                warn(out, &format!("{path}: {}", e.message)).await?;
                return Ok(1);
            }
        };
        if !self.send_times(input, out, meta).await? {
            return Ok(1);
        }
        let size = download
            .metadata()
            .await
            .map(|m| m.size)
            .unwrap_or(meta.size);
        send(
            out,
            format!("C{:04o} {size} {name}\n", meta.permissions & 0o7777).as_bytes(),
        )
        .await?;
        if !await_ack(input).await? {
            download.fail("client refused the file");
            return Ok(1);
        }
        let mut sent = 0u64;
        while sent < size {
            let want = usize::try_from((size - sent).min(CHUNK as u64)).unwrap_or(CHUNK);
            let chunk = match download.read_at(sent, want).await {
                Ok(c) if !c.is_empty() => c,
                Ok(_) | Err(_) => {
                    // The file shrank or failed: the record promised `size` bytes, so the
                    // stream cannot continue.
                    download.fail("file changed or failed while being sent");
                    return Err(Fatal::Protocol(format!("{path}: read failed")));
                }
            };
            out.write_all(&chunk).await.map_err(|_| Fatal::Gone)?;
            sent += chunk.len() as u64;
        }
        send(out, b"\0").await?;
        if await_ack(input).await? {
            download.finish();
            Ok(0)
        } else {
            download.fail("client reported an error");
            Ok(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records() {
        assert_eq!(parse_entry("C0644 12 a.txt"), Ok((0o644, 12, "a.txt")));
        assert_eq!(
            parse_entry("C0644 12 with space.txt"),
            Ok((0o644, 12, "with space.txt"))
        );
        assert!(parse_entry("C0644 12 ../x").is_err());
        assert!(parse_entry("C0644 12 a/b").is_err());
        assert!(parse_entry("C0644 -1 a").is_err());
        assert!(parse_entry("C0644 99999999999999999999 a").is_err());
        assert!(parse_entry("é").is_err());
        assert!(parse_entry("").is_err());
        assert!(parse_times("é").is_err());
        assert_eq!(parse_times("T1 0 2 0"), Ok((1, 2)));
    }
}
