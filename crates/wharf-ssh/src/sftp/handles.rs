//! The open handles of one SFTP session.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use wharf_core::{DirEntry, Download, Session, Upload};
use wharf_types::VirtualPath;

/// What a handle refers to.
pub(crate) enum Handle {
    /// A file open for reading (boxed, as is an upload: both are large next to a folder).
    Read(Box<Download>),
    /// A file open for writing (and reading back), one of the handles that may share the
    /// session's upload of that name; `append` when every write lands at the end.
    Write { upload: Arc<Upload>, append: bool },
    /// A folder being listed.
    Dir {
        path: VirtualPath,
        entries: Mutex<Option<VecDeque<DirEntry>>>,
    },
}

/// Handle table with a size cap.
pub(crate) struct Handles {
    map: Mutex<HashMap<Vec<u8>, Arc<Handle>>>,
    next: AtomicU64,
    max: usize,
}

impl Handles {
    pub(crate) fn new(max: usize) -> Self {
        Handles {
            map: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            max,
        }
    }

    /// Whether no other handle may be opened now.
    pub(crate) fn full(&self) -> bool {
        self.map.lock().map(|m| m.len() >= self.max).unwrap_or(true)
    }

    /// Registers `handle`; gives it back when the session has too many open, so whoever
    /// opened it can close what it holds.
    pub(crate) fn insert(&self, handle: Handle) -> Result<Vec<u8>, Handle> {
        let Ok(mut map) = self.map.lock() else {
            return Err(handle);
        };
        if map.len() >= self.max {
            return Err(handle);
        }
        let key = self
            .next
            .fetch_add(1, Ordering::SeqCst)
            .to_string()
            .into_bytes();
        map.insert(key.clone(), Arc::new(handle));
        Ok(key)
    }

    pub(crate) fn get(&self, key: &[u8]) -> Option<Arc<Handle>> {
        self.map.lock().ok()?.get(key).cloned()
    }

    pub(crate) fn contains(&self, key: &[u8]) -> bool {
        self.map
            .lock()
            .map(|m| m.contains_key(key))
            .unwrap_or(false)
    }

    pub(crate) fn remove(&self, key: &[u8]) -> Option<Arc<Handle>> {
        self.map.lock().ok()?.remove(key)
    }

    /// Gives up every handle still open (client gone): uploads are aborted, never committed.
    pub(crate) async fn close_all(&self, session: &Session, reason: &str) {
        let all: Vec<Arc<Handle>> = match self.map.lock() {
            Ok(mut map) => map.drain().map(|(_, h)| h).collect(),
            Err(_) => Vec::new(),
        };
        for handle in all {
            match &*handle {
                Handle::Write { upload, .. } => session.abort_shared_upload(upload, reason).await,
                Handle::Read(download) => download.fail(reason),
                Handle::Dir { .. } => {}
            }
        }
    }
}
