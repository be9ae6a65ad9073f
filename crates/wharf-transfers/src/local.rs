//! A folder on this machine as a location, through the core's jail ([`LocalFs`]): no path
//! leaves the folder, no link is followed, and a write lands under its name only when it
//! is complete and synced.

use async_trait::async_trait;
use wharf_core::vfs::{FileKind, LocalFs, OpenWrite, ReadFile, Vfs, WriteFile, WriteTarget};
use wharf_core::{CoreError, ErrorKind};
use wharf_types::VirtualPath;

use crate::endpoint::{
    Download, Endpoint, EndpointError, Entry, Failure, Item, LocalPlace, Upload,
};

/// A local folder, open.
pub struct LocalEndpoint {
    fs: LocalFs,
    folder: std::path::PathBuf,
}

fn failed(e: CoreError) -> EndpointError {
    let kind = match e.kind {
        ErrorKind::NotFound => Failure::Missing,
        ErrorKind::AlreadyExists => Failure::Exists,
        ErrorKind::InvalidPath | ErrorKind::PermissionDenied | ErrorKind::Unsupported => {
            Failure::Permanent
        }
        _ => Failure::Retry,
    };
    EndpointError::new(kind, e.message)
}

fn path(p: &str) -> Result<VirtualPath, EndpointError> {
    VirtualPath::parse(p)
        .map_err(|e| EndpointError::new(Failure::Permanent, format!("path {p:?}: {e}")))
}

impl LocalEndpoint {
    /// Opens `folder` as the location's root.
    pub fn open(folder: &std::path::Path) -> Result<LocalEndpoint, EndpointError> {
        LocalFs::open(folder)
            .map(|fs| LocalEndpoint {
                fs,
                folder: folder.to_owned(),
            })
            .map_err(|e| EndpointError::location(format!("cannot open {}: {e}", folder.display())))
    }
}

/// Folder entries read per listing call.
const DIR_BATCH: usize = 100_000;

#[async_trait]
impl Endpoint for LocalEndpoint {
    async fn read_folder(&self, folder: &str, cap: usize) -> Result<Vec<Item>, EndpointError> {
        let entries = self
            .fs
            .read_dir(&path(folder)?, cap.min(DIR_BATCH))
            .await
            .map_err(failed)?;
        Ok(entries
            .into_iter()
            .filter_map(|entry| {
                let folder = match entry.metadata.kind {
                    FileKind::File => false,
                    FileKind::Dir => true,
                    _ => return None,
                };
                Some(Item {
                    name: entry.name,
                    folder,
                    size: entry.metadata.size,
                    mtime_us: entry.metadata.mtime.saturating_mul(1_000_000),
                })
            })
            .collect())
    }

    async fn stat(&self, p: &str) -> Result<Option<Entry>, EndpointError> {
        match self.fs.stat(&path(p)?, false).await {
            Ok(meta) => Ok(Some(Entry {
                path: p.to_owned(),
                size: meta.size,
                mtime_us: meta.mtime.saturating_mul(1_000_000),
            })),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(failed(e)),
        }
    }

    async fn open_read(&self, p: &str) -> Result<Box<dyn Download>, EndpointError> {
        let file = self.fs.open_read(&path(p)?).await.map_err(failed)?;
        Ok(Box::new(LocalRead { file, at: 0 }))
    }

    async fn create(&self, p: &str) -> Result<Box<dyn Upload>, EndpointError> {
        let target = WriteTarget {
            open: OpenWrite::Truncate,
            in_place: false,
            keep_partial: false,
            replace: true,
            permissions: None,
        };
        let file = self
            .fs
            .open_write(&path(p)?, target)
            .await
            .map_err(failed)?;
        Ok(Box::new(LocalWrite { file, at: 0 }))
    }

    async fn rename(&self, from: &str, to: &str, replace: bool) -> Result<(), EndpointError> {
        self.fs
            .rename(&path(from)?, &path(to)?, replace)
            .await
            .map_err(failed)
    }

    async fn remove(&self, p: &str) -> Result<(), EndpointError> {
        self.fs.remove_file(&path(p)?).await.map_err(failed)
    }

    async fn make_folders(&self, folder: &str) -> Result<(), EndpointError> {
        let mut at = VirtualPath::root();
        for part in path(folder)?.components() {
            at = at
                .join(part)
                .map_err(|e| EndpointError::new(Failure::Permanent, e.to_string()))?;
            match self.fs.mkdir(&at, None).await {
                Ok(()) => {}
                Err(e) if e.kind == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(failed(e)),
            }
        }
        Ok(())
    }

    async fn local_place(&self, p: &str) -> Option<LocalPlace> {
        let rel = path(p).ok()?;
        let meta = self.fs.stat(&rel, false).await.ok()?;
        Some(LocalPlace {
            root: self.folder.clone(),
            file: self.folder.join(rel.relative()),
            inode: meta.identity,
        })
    }

    async fn sha256(&self, p: &str) -> Result<Option<(String, &'static str)>, EndpointError> {
        let file = self.fs.open_read(&path(p)?).await.map_err(failed)?;
        let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        let mut at = 0u64;
        loop {
            let chunk = file.read_at(at, 1 << 20).await.map_err(failed)?;
            if chunk.is_empty() {
                break;
            }
            at += chunk.len() as u64;
            context.update(&chunk);
        }
        Ok(Some((crate::run::hex(context.finish().as_ref()), "local")))
    }
}

struct LocalRead {
    file: Box<dyn ReadFile>,
    at: u64,
}

#[async_trait]
impl Download for LocalRead {
    async fn read(&mut self, max: usize) -> Result<Vec<u8>, EndpointError> {
        let chunk = self.file.read_at(self.at, max).await.map_err(failed)?;
        self.at += chunk.len() as u64;
        Ok(chunk)
    }
}

struct LocalWrite {
    file: Box<dyn WriteFile>,
    at: u64,
}

#[async_trait]
impl Upload for LocalWrite {
    async fn write(&mut self, data: &[u8]) -> Result<(), EndpointError> {
        self.file
            .write_at(self.at, data.to_vec())
            .await
            .map_err(failed)?;
        self.at += data.len() as u64;
        Ok(())
    }

    async fn finish(self: Box<Self>) -> Result<(), EndpointError> {
        self.file.sync().await.map_err(failed)?;
        self.file.commit().await.map_err(failed)
    }

    async fn abort(self: Box<Self>) {
        if let Err(e) = self.file.discard().await {
            tracing::warn!(error = %e, "an unfinished local copy could not be removed");
        }
    }
}
