//! The uploads a session has in progress, by the path they commit under.
//!
//! A session sees its own uploads before they are committed, as a local program sees the
//! file it is writing: sshfs stats a file right after creating it, reads back what it
//! wrote, opens it again, renames or removes it before its handle is closed. Only the
//! session that writes an upload finds it here; every other session still sees nothing under
//! the final name until commit. This module only keeps the table: it never opens a file and
//! never decides a permission (the session does both).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;
use wharf_types::VirtualPath;

use super::Upload;
use crate::error::CoreError;
use crate::vfs::{Metadata, ReadFile};

/// Most uploads one session may have in progress at once under distinct names; a front-end
/// bounds its handles below this (SFTP: 1024).
const MAX_OWN: usize = 4096;

/// The table, shared by a session and the per-request sessions made from it.
#[derive(Default, Clone)]
pub(crate) struct OwnUploads {
    table: Arc<Mutex<HashMap<VirtualPath, Weak<Upload>>>>,
}

impl OwnUploads {
    /// The upload in progress that commits under `path`, if any. An upload being committed
    /// or given up is waited for (it stays in the table until it is under its final name),
    /// so that the caller then finds the committed file instead.
    pub(crate) async fn get(&self, path: &VirtualPath) -> Option<Arc<Upload>> {
        let upload = self.peek(path)?;
        let _lifecycle = upload.shared.lifecycle.lock().await;
        upload.is_live().then_some(Arc::clone(&upload))
    }

    /// Like [`OwnUploads::get`], without waiting: for a caller that already holds an
    /// upload's lifecycle.
    pub(crate) fn peek(&self, path: &VirtualPath) -> Option<Arc<Upload>> {
        let table = self.table.lock().ok()?;
        table.get(path).and_then(Weak::upgrade)
    }

    /// Records `upload` under the path it commits under. When the table is full, dead
    /// entries are dropped first; an upload that still finds no room is simply not seen
    /// in progress (it commits as before).
    pub(crate) fn insert(&self, upload: &Arc<Upload>) {
        let Ok(mut table) = self.table.lock() else {
            return;
        };
        if table.len() >= MAX_OWN {
            table.retain(|_, u| u.upgrade().is_some_and(|u| u.is_live()));
        }
        if table.len() < MAX_OWN {
            table.insert(upload.path(), Arc::downgrade(upload));
        }
    }

    /// Forgets `upload` under `path` (only if that entry is this upload).
    pub(crate) fn remove(&self, path: &VirtualPath, upload: &Arc<Upload>) {
        if let Ok(mut table) = self.table.lock()
            && table
                .get(path)
                .is_some_and(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(upload)))
        {
            table.remove(path);
        }
    }

    /// The uploads in progress directly inside `folder`, with their names.
    pub(crate) fn in_folder(&self, folder: &VirtualPath) -> Vec<(String, Arc<Upload>)> {
        let Ok(table) = self.table.lock() else {
            return Vec::new();
        };
        table
            .iter()
            .filter(|(path, _)| !path.is_root() && path.parent() == *folder)
            .filter_map(|(path, upload)| {
                let upload = upload
                    .upgrade()
                    .filter(|u| !u.shared.unlinked.load(Ordering::SeqCst))?;
                Some((path.file_name()?.to_owned(), upload))
            })
            .collect()
    }
}

/// Reading an upload in progress, for the session that writes it (an open for reading of
/// its final name).
pub(crate) struct ReadOwn(pub(crate) Arc<Upload>);

#[async_trait]
impl ReadFile for ReadOwn {
    async fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, CoreError> {
        self.0.read_at(offset, len).await
    }

    async fn metadata(&self) -> Result<Metadata, CoreError> {
        self.0.metadata().await
    }
}
