//! Wharf's SFTP v3 engine, over any channel byte stream.
//!
//! Requests run concurrently with the order that matters kept: every request naming an open
//! handle runs on that handle's own lane, in arrival order (so writes to one file land in
//! order and CLOSE comes after them), and every path request (OPEN, RENAME, MKDIR...) runs
//! on one serial path lane. At most [`MAX_IN_FLIGHT`] requests are being worked on at once;
//! replies go through a writer task that waits for the client's window, never the reader.
//!
//! Each request becomes a call on the core [`Session`]; this engine never touches a file.

mod handles;
mod ops;

use std::collections::HashMap;
use std::sync::Arc;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use wharf_core::{EventKind, Session};
use wharf_sftp_proto::{MAX_PACKET, Request, RequestBody, Response, StatusCode, decode_init};

use crate::input::Input;
use handles::Handles;

/// The order of SSH_FXP_SYMLINK's two paths, which follows the client. OpenSSH's
/// sftp-server has always read them reversed from the draft (target first, then the link),
/// and the clients written against it send them so: OpenSSH's own, paramiko's and Go's
/// `pkg/sftp` (rclone). Other clients (asyncssh when the server is not OpenSSH, and those
/// that follow the draft) send the link first. The client's SSH version string tells them
/// apart, as asyncssh's own server does: one naming `OpenSSH` or `paramiko`, Go's default
/// (`SSH-2.0-Go`) and rclone's (`SSH-2.0-rclone/...`) use OpenSSH's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SymlinkOrder {
    /// Target, then link (OpenSSH's sftp-server).
    OpenSsh,
    /// Link, then target (draft-ietf-secsh-filexfer-02).
    Draft,
}

impl SymlinkOrder {
    /// The order a client with this SSH identification string (`SSH-2.0-...`) uses.
    pub fn of_client(version: &[u8]) -> SymlinkOrder {
        let text = String::from_utf8_lossy(&version[..version.len().min(255)]);
        let software = text
            .strip_prefix("SSH-2.0-")
            .unwrap_or(&text)
            .split([' ', '\r', '\n'])
            .next()
            .unwrap_or_default();
        if text.contains("OpenSSH")
            || text.contains("paramiko")
            || software == "Go"
            || software.starts_with("rclone/")
        {
            SymlinkOrder::OpenSsh
        } else {
            SymlinkOrder::Draft
        }
    }

    /// The request's `(target, link)`.
    pub(crate) fn target_and_link(self, first: Vec<u8>, second: Vec<u8>) -> (Vec<u8>, Vec<u8>) {
        match self {
            SymlinkOrder::OpenSsh => (first, second),
            SymlinkOrder::Draft => (second, first),
        }
    }
}

/// Requests worked on at once per session (bounds memory with the packet size cap).
pub const MAX_IN_FLIGHT: usize = 64;
/// Open handles per session.
pub const MAX_HANDLES: usize = 1024;

/// Sent to a lane boxed: a channel allocates room for 32 messages up front, and every
/// session keeps at least one (its path lane) for as long as it lives.
struct Job {
    request: Request,
    _permit: OwnedSemaphorePermit,
}

/// Shared by the lanes of one session.
pub(crate) struct Engine {
    pub(crate) session: Session,
    pub(crate) symlink_order: SymlinkOrder,
    pub(crate) handles: Handles,
    replies: mpsc::Sender<Vec<u8>>,
}

impl Engine {
    async fn reply(&self, response: Response) {
        // A closed writer means the client is gone; the lanes finish on their own.
        let _ = self.replies.send(response.encode()).await;
    }

    fn protocol_error(&self, message: String) {
        self.session
            .emit(self.session.event(EventKind::ProtocolError).failed(message));
    }
}

/// Runs one SFTP session until the client closes its side; returns an exit status.
pub async fn run<W>(
    session: Session,
    symlink_order: SymlinkOrder,
    mut input: Input,
    output: W,
) -> u32
where
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (reply_tx, reply_rx) = mpsc::channel::<Vec<u8>>(MAX_IN_FLIGHT);
    let writer = tokio::spawn(write_replies(output, reply_rx));
    let engine = Arc::new(Engine {
        session,
        symlink_order,
        handles: Handles::new(MAX_HANDLES),
        replies: reply_tx,
    });

    let status = serve(&engine, &mut input).await;

    // Whatever is still open when the client leaves is given up, never committed.
    engine
        .handles
        .close_all(&engine.session, "session ended")
        .await;
    drop(input);
    match Arc::try_unwrap(engine) {
        Ok(engine) => drop(engine),
        Err(engine) => drop(engine),
    }
    let _ = writer.await;
    status
}

async fn write_replies<W: AsyncWrite + Unpin>(mut output: W, mut rx: mpsc::Receiver<Vec<u8>>) {
    while let Some(bytes) = rx.recv().await {
        if output.write_all(&bytes).await.is_err() {
            return;
        }
        // Drain what is already queued before flushing, so small replies share packets.
        while let Ok(more) = rx.try_recv() {
            if output.write_all(&more).await.is_err() {
                return;
            }
        }
        if output.flush().await.is_err() {
            return;
        }
    }
    let _ = output.shutdown().await;
}

/// Reads one length-prefixed packet; `Err` carries a protocol violation.
async fn read_packet(input: &mut Input) -> Result<Option<Vec<u8>>, String> {
    let mut len = [0u8; 4];
    if !input.read_exact(&mut len).await {
        return Ok(None);
    }
    let len = u32::from_be_bytes(len);
    if len == 0 || len > MAX_PACKET {
        return Err(format!("packet length {len} outside 1..={MAX_PACKET}"));
    }
    Ok(input.read_vec(len as usize).await)
}

async fn serve(engine: &Arc<Engine>, input: &mut Input) -> u32 {
    match read_packet(input).await {
        Ok(Some(payload)) => match decode_init(&payload) {
            Ok(_) => engine.reply(ops::version()).await,
            Err(e) => {
                engine.protocol_error(format!("first packet is not SSH_FXP_INIT: {e}"));
                return 1;
            }
        },
        Ok(None) => return 0,
        Err(e) => {
            engine.protocol_error(e);
            return 1;
        }
    }

    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut lanes: HashMap<Vec<u8>, mpsc::UnboundedSender<Box<Job>>> = HashMap::new();
    let mut tasks = JoinSet::new();
    let path_lane = spawn_lane(engine, &mut tasks);
    let mut status = 0;

    loop {
        let payload = match read_packet(input).await {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(e) => {
                // Framing is lost: answer nothing more and end the session, as OpenSSH does.
                engine.protocol_error(e);
                status = 1;
                break;
            }
        };
        let request = match Request::decode(&payload) {
            Ok(r) => r,
            Err(e) => {
                engine.protocol_error(format!("undecodable request: {e}"));
                if let Some(id) = Request::peek_id(&payload) {
                    engine
                        .reply(Response::status(
                            id,
                            StatusCode::OpUnsupported,
                            format!("unsupported or malformed request: {e}"),
                        ))
                        .await;
                }
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
            break;
        };
        let job = Box::new(Job {
            request,
            _permit: permit,
        });
        let lane = match handle_of(&job.request.body) {
            Some(handle) if engine.handles.contains(handle) => {
                let closing = matches!(job.request.body, RequestBody::Close { .. });
                let key = handle.to_vec();
                let sender = lanes
                    .entry(key.clone())
                    .or_insert_with(|| spawn_lane(engine, &mut tasks))
                    .clone();
                if closing {
                    // The lane ends after CLOSE; a reused handle value gets a new lane.
                    lanes.remove(&key);
                }
                sender
            }
            _ => path_lane.clone(),
        };
        if lane.send(job).is_err() {
            break;
        }
        // Reap lanes that have finished so the set does not grow with closed handles.
        while tasks.try_join_next().is_some() {}
    }
    drop(lanes);
    drop(path_lane);
    while tasks.join_next().await.is_some() {}
    status
}

fn spawn_lane(engine: &Arc<Engine>, tasks: &mut JoinSet<()>) -> mpsc::UnboundedSender<Box<Job>> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Box<Job>>();
    let engine = Arc::clone(engine);
    tasks.spawn(async move {
        while let Some(job) = rx.recv().await {
            // Boxed while it runs: a lane waits far longer than it works, and the
            // request's future (the largest of the session's) would otherwise stay in
            // the lane's task all along, idle sessions included.
            let response = Box::pin(ops::handle(&engine, job.request)).await;
            engine.reply(response).await;
        }
    });
    tx
}

/// The handle a request works on, if any.
fn handle_of(body: &RequestBody) -> Option<&[u8]> {
    use wharf_sftp_proto::Extended as X;
    match body {
        RequestBody::Close { handle }
        | RequestBody::Read { handle, .. }
        | RequestBody::Write { handle, .. }
        | RequestBody::Fstat { handle }
        | RequestBody::Fsetstat { handle, .. }
        | RequestBody::Readdir { handle } => Some(handle),
        RequestBody::Extended(X::Fsync { handle })
        | RequestBody::Extended(X::Fstatvfs { handle })
        | RequestBody::Extended(X::CheckFileHandle { handle, .. }) => Some(handle),
        // copy-data touches two handles; it runs on the lane of the one it writes to.
        RequestBody::Extended(X::CopyData { write_handle, .. }) => Some(write_handle),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::SymlinkOrder;

    #[test]
    fn symlink_order_by_client() {
        for (id, order) in [
            (
                &b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3"[..],
                SymlinkOrder::OpenSsh,
            ),
            (b"SSH-2.0-paramiko_3.4.0", SymlinkOrder::OpenSsh),
            (b"SSH-2.0-Go", SymlinkOrder::OpenSsh),
            (b"SSH-2.0-rclone/v1.60.1-DEV", SymlinkOrder::OpenSsh),
            (b"SSH-2.0-AsyncSSH_2.14.2", SymlinkOrder::Draft),
            (b"SSH-2.0-libssh2_1.10.0", SymlinkOrder::Draft),
            (b"SSH-2.0-Gopher", SymlinkOrder::Draft),
        ] {
            assert_eq!(
                SymlinkOrder::of_client(id),
                order,
                "{}",
                String::from_utf8_lossy(id)
            );
        }
        assert_eq!(
            SymlinkOrder::OpenSsh.target_and_link(b"t".to_vec(), b"l".to_vec()),
            (b"t".to_vec(), b"l".to_vec())
        );
        assert_eq!(
            SymlinkOrder::Draft.target_and_link(b"l".to_vec(), b"t".to_vec()),
            (b"t".to_vec(), b"l".to_vec())
        );
    }
}
