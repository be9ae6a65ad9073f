//! Every location operation bounded in time: a peer that stops answering in the middle of
//! a listing, a read, a write or a rename fails that operation after the location's
//! `idle_timeout` (the attempt is retried, the connection opened again), instead of holding
//! a run (and its lease) for ever. Wraps whatever endpoint a location opens.

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;

use crate::endpoint::{Download, Endpoint, EndpointError, Entry, Item, LocalPlace, Upload};

/// An endpoint whose every operation ends within `idle`.
pub struct Timed {
    inner: Box<dyn Endpoint>,
    idle: Duration,
}

impl Timed {
    /// `inner`, bounded by `idle`.
    pub fn new(inner: Box<dyn Endpoint>, idle: Duration) -> Timed {
        Timed { inner, idle }
    }
}

async fn bounded<T>(
    idle: Duration,
    what: &str,
    work: impl Future<Output = Result<T, EndpointError>>,
) -> Result<T, EndpointError> {
    match tokio::time::timeout(idle, work).await {
        Ok(result) => result,
        Err(_) => Err(EndpointError::retry(format!(
            "no answer to {what} within {} s (idle_timeout)",
            idle.as_secs()
        ))),
    }
}

#[async_trait]
impl Endpoint for Timed {
    async fn read_folder(&self, folder: &str, cap: usize) -> Result<Vec<Item>, EndpointError> {
        bounded(self.idle, "a listing", self.inner.read_folder(folder, cap)).await
    }

    async fn stat(&self, path: &str) -> Result<Option<Entry>, EndpointError> {
        bounded(self.idle, "a stat", self.inner.stat(path)).await
    }

    async fn open_read(&self, path: &str) -> Result<Box<dyn Download>, EndpointError> {
        let inner = bounded(self.idle, "an open", self.inner.open_read(path)).await?;
        Ok(Box::new(TimedDownload {
            inner,
            idle: self.idle,
        }))
    }

    async fn create(&self, path: &str) -> Result<Box<dyn Upload>, EndpointError> {
        let inner = bounded(self.idle, "a create", self.inner.create(path)).await?;
        Ok(Box::new(TimedUpload {
            inner,
            idle: self.idle,
        }))
    }

    async fn rename(&self, from: &str, to: &str, replace: bool) -> Result<(), EndpointError> {
        bounded(self.idle, "a rename", self.inner.rename(from, to, replace)).await
    }

    async fn remove(&self, path: &str) -> Result<(), EndpointError> {
        bounded(self.idle, "a removal", self.inner.remove(path)).await
    }

    async fn make_folders(&self, folder: &str) -> Result<(), EndpointError> {
        bounded(
            self.idle,
            "a folder's creation",
            self.inner.make_folders(folder),
        )
        .await
    }

    async fn sha256(&self, path: &str) -> Result<Option<(String, &'static str)>, EndpointError> {
        bounded(self.idle, "a digest", self.inner.sha256(path)).await
    }

    async fn local_place(&self, path: &str) -> Option<LocalPlace> {
        tokio::time::timeout(self.idle, self.inner.local_place(path))
            .await
            .ok()
            .flatten()
    }

    async fn close(&self) {
        let _ = tokio::time::timeout(self.idle, self.inner.close()).await;
    }
}

struct TimedDownload {
    inner: Box<dyn Download>,
    idle: Duration,
}

#[async_trait]
impl Download for TimedDownload {
    async fn read(&mut self, max: usize) -> Result<Vec<u8>, EndpointError> {
        bounded(self.idle, "a read", self.inner.read(max)).await
    }
}

struct TimedUpload {
    inner: Box<dyn Upload>,
    idle: Duration,
}

#[async_trait]
impl Upload for TimedUpload {
    async fn write(&mut self, data: &[u8]) -> Result<(), EndpointError> {
        bounded(self.idle, "a write", self.inner.write(data)).await
    }

    async fn finish(self: Box<Self>) -> Result<(), EndpointError> {
        let idle = self.idle;
        bounded(idle, "the end of a write", self.inner.finish()).await
    }

    async fn abort(self: Box<Self>) {
        let idle = self.idle;
        let _ = tokio::time::timeout(idle, self.inner.abort()).await;
    }
}
