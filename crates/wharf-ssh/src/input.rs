//! Channel input, decoupled from russh's session loop.
//!
//! russh hands channel data to `Handler::data` on its one session loop, which is also the
//! loop that processes the client's WINDOW_ADJUST messages. If that loop ever waited for an
//! engine that is itself waiting for window space to send replies, the connection would
//! deadlock (the paramiko prefetch case). So the loop only waits when the session has more
//! than [`INPUT_BUDGET`] bytes of *unread* input: a budget generous enough that no client
//! which reads its replies can reach it, while memory per session stays bounded.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// Bytes of unread input a channel may hold before the client is slowed down (TCP).
pub const INPUT_BUDGET: usize = 16 * 1024 * 1024;

/// The sending side, owned by the connection handler.
#[derive(Clone)]
pub struct InputSender {
    tx: mpsc::UnboundedSender<(Vec<u8>, OwnedSemaphorePermit)>,
    budget: Arc<Semaphore>,
}

/// The receiving side, owned by the engine (SFTP, SCP, exec).
pub struct Input {
    rx: mpsc::UnboundedReceiver<(Vec<u8>, OwnedSemaphorePermit)>,
    pending: Vec<u8>,
    pos: usize,
}

/// A new input queue.
pub fn channel() -> (InputSender, Input) {
    let (tx, rx) = mpsc::unbounded_channel();
    (
        InputSender {
            tx,
            budget: Arc::new(Semaphore::new(INPUT_BUDGET)),
        },
        Input {
            rx,
            pending: Vec::new(),
            pos: 0,
        },
    )
}

impl InputSender {
    /// Queues `data`, waiting only while the unread budget is exhausted. Returns false when
    /// the engine has stopped reading.
    pub async fn send(&self, data: &[u8]) -> bool {
        let want = u32::try_from(data.len().min(INPUT_BUDGET)).unwrap_or(u32::MAX);
        let Ok(permit) = Arc::clone(&self.budget).acquire_many_owned(want).await else {
            return false;
        };
        self.tx.send((data.to_vec(), permit)).is_ok()
    }

    /// Whether the engine has finished (dropped its [`Input`]).
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

impl Input {
    /// The next chunk of bytes, or `None` at end of input.
    pub async fn next_chunk(&mut self) -> Option<Vec<u8>> {
        if self.pos < self.pending.len() {
            let rest = self.pending.split_off(self.pos);
            self.pending.clear();
            self.pos = 0;
            return Some(rest);
        }
        self.rx.recv().await.map(|(data, _permit)| data)
    }

    async fn fill(&mut self) -> bool {
        if self.pos < self.pending.len() {
            return true;
        }
        match self.rx.recv().await {
            Some((data, _permit)) => {
                self.pending = data;
                self.pos = 0;
                true
            }
            None => false,
        }
    }

    /// Reads exactly `buf.len()` bytes; false at end of input.
    pub async fn read_exact(&mut self, buf: &mut [u8]) -> bool {
        let mut filled = 0;
        while filled < buf.len() {
            if !self.fill().await {
                return false;
            }
            let n = (self.pending.len() - self.pos).min(buf.len() - filled);
            buf[filled..filled + n].copy_from_slice(&self.pending[self.pos..self.pos + n]);
            self.pos += n;
            filled += n;
        }
        true
    }

    /// Reads exactly `len` bytes into a new vector, without zero-filling it first;
    /// `None` at end of input. The caller bounds `len`.
    pub async fn read_vec(&mut self, len: usize) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            if !self.fill().await {
                return None;
            }
            let n = (self.pending.len() - self.pos).min(len - out.len());
            out.extend_from_slice(&self.pending[self.pos..self.pos + n]);
            self.pos += n;
        }
        Some(out)
    }

    /// Reads up to `max` bytes (at least one unless at end of input).
    pub async fn read_some(&mut self, max: usize) -> Option<Vec<u8>> {
        if !self.fill().await {
            return None;
        }
        let n = (self.pending.len() - self.pos).min(max);
        let out = self.pending[self.pos..self.pos + n].to_vec();
        self.pos += n;
        Some(out)
    }

    /// Reads one byte.
    pub async fn read_byte(&mut self) -> Option<u8> {
        let mut b = [0u8; 1];
        self.read_exact(&mut b).await.then_some(b[0])
    }

    /// Reads a line ending in `\n` (not included), refusing lines longer than `max`.
    pub async fn read_line(&mut self, max: usize) -> Result<Option<Vec<u8>>, ()> {
        let mut line = Vec::new();
        loop {
            let Some(b) = self.read_byte().await else {
                return Ok(if line.is_empty() { None } else { Some(line) });
            };
            if b == b'\n' {
                return Ok(Some(line));
            }
            if line.len() >= max {
                return Err(());
            }
            line.push(b);
        }
    }
}
