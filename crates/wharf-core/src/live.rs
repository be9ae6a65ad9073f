//! The sessions open now on this node, and the transfers in flight in each: what the
//! Manager lists and what its "disconnect" ends.
//!
//! Every core [`crate::Session`] enters the registry when it opens and leaves when it is
//! dropped, whatever the protocol, so the list cannot miss a front-end. Each session carries
//! its connection's [`Cut`]: pulling it makes every read and write of that session's
//! transfers fail at once (in the core, so every protocol stops moving bytes), and the
//! front-end that watches the cut closes the connection.
//!
//! The registry holds one entry per open session (bounded by the services' connection
//! limits) and weak references to transfers, so it never keeps a file open. It must never
//! decide anything about a session; it only describes them and relays the cut.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use wharf_types::Protocol;

/// One connection's off switch. Cheap to clone; every clone pulls the same switch.
#[derive(Clone, Default)]
pub struct Cut(Arc<CutInner>);

impl std::fmt::Debug for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Cut").field(&self.is_pulled()).finish()
    }
}

/// What runs once when a cut is pulled (a front-end ending what it keeps of the session).
type Hook = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct CutInner {
    pulled: AtomicBool,
    notify: tokio::sync::Notify,
    /// Each with the name it was given: a hook given again under the same name replaces
    /// the one before, so a front-end that hooks a session at every re-login keeps one.
    hooks: Mutex<Vec<(String, Hook)>>,
}

impl Cut {
    /// Ends the connection: transfers fail from their next read or write, and the
    /// front-end watching [`Cut::pulled`] closes it.
    pub fn pull(&self) {
        let hooks = {
            let mut hooks = self.0.hooks.lock().unwrap_or_else(|p| p.into_inner());
            self.0.pulled.store(true, Ordering::SeqCst);
            std::mem::take(&mut *hooks)
        };
        self.0.notify.notify_waiters();
        for (_, hook) in hooks {
            hook();
        }
    }

    /// Runs `hook` once when the switch is pulled (at once if it already was): for a
    /// front-end that keeps a session beyond its connections (HTTP logins), to end it.
    /// A hook named `name` replaces an earlier hook of that name.
    pub fn when_pulled(&self, name: &str, hook: impl FnOnce() + Send + 'static) {
        let mut hooks = self.0.hooks.lock().unwrap_or_else(|p| p.into_inner());
        if self.0.pulled.load(Ordering::SeqCst) {
            drop(hooks);
            hook();
        } else {
            hooks.retain(|(kept, _)| kept != name);
            hooks.push((name.to_owned(), Box::new(hook)));
        }
    }

    /// Whether the switch has been pulled.
    pub fn is_pulled(&self) -> bool {
        self.0.pulled.load(Ordering::SeqCst)
    }

    /// Resolves once the switch is pulled (at once if it already was).
    pub async fn pulled(&self) {
        loop {
            let notified = self.0.notify.notified();
            tokio::pin!(notified);
            // Registered before the flag is read, so a pull between the two is not lost.
            notified.as_mut().enable();
            if self.is_pulled() {
                return;
            }
            notified.await;
        }
    }

    /// Runs `work` until it ends or the switch is pulled, whichever comes first; a pulled
    /// switch drops `work`, so what it holds records its own end.
    pub async fn or_pulled<F: std::future::Future<Output = ()>>(&self, work: F) {
        tokio::select! {
            _ = work => {}
            _ = self.pulled() => {}
        }
    }
}

/// Which way a transfer moves bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Upload,
    Download,
}

/// One file being moved: what the dashboard shows of it, counted as bytes pass.
pub struct Transfer {
    direction: Direction,
    path: String,
    bytes: AtomicU64,
    started: Instant,
    cut: Cut,
}

impl Transfer {
    pub(crate) fn new(direction: Direction, path: String, cut: Cut) -> Arc<Transfer> {
        Arc::new(Transfer {
            direction,
            path,
            bytes: AtomicU64::new(0),
            started: Instant::now(),
            cut,
        })
    }

    /// A transfer outside any registered session (tests, internal copies).
    pub(crate) fn detached(direction: Direction, path: String) -> Arc<Transfer> {
        Transfer::new(direction, path, Cut::default())
    }

    pub(crate) fn add(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Whether the session's connection was cut.
    pub(crate) fn was_cut(&self) -> bool {
        self.cut.is_pulled()
    }

    /// Refuses further bytes once the session's connection was cut.
    pub(crate) fn check(&self) -> Result<(), crate::CoreError> {
        if self.cut.is_pulled() {
            return Err(crate::CoreError::new(
                crate::ErrorKind::Failure,
                DISCONNECTED,
            ));
        }
        Ok(())
    }

    fn view(&self) -> TransferView {
        let bytes = self.bytes.load(Ordering::Relaxed);
        let seconds = self.started.elapsed().as_secs_f64();
        TransferView {
            direction: self.direction,
            path: self.path.clone(),
            bytes,
            seconds: (seconds * 10.0).round() / 10.0,
            // A rate over less than a tenth of a second says nothing.
            bytes_per_second: (seconds >= 0.1).then(|| (bytes as f64 / seconds) as u64),
        }
    }
}

/// Why transfers of a cut session fail, as their records say.
pub const DISCONNECTED: &str = "disconnected by an administrator";

/// Sessions open now, by a serial of their own (two sessions may share an id: a login
/// resumed on this node keeps the id it was given on another).
#[derive(Clone, Default)]
pub struct Live {
    entries: Arc<Mutex<HashMap<u64, Entry>>>,
    serial: Arc<AtomicU64>,
}

struct Entry {
    id: String,
    service: String,
    protocol: Protocol,
    account: String,
    remote: Option<SocketAddr>,
    since_us: i64,
    cut: Cut,
    transfers: Vec<Weak<Transfer>>,
}

/// A session as the Manager lists it.
#[derive(Debug, Clone, Serialize)]
pub struct SessionView {
    pub id: String,
    pub service: String,
    pub protocol: Protocol,
    pub account: String,
    pub remote: Option<String>,
    /// When it opened, in microseconds since the Unix epoch.
    pub since_us: i64,
    /// Disconnected, and still ending (a transfer being stopped, a client being cut).
    pub disconnecting: bool,
    pub transfers: Vec<TransferView>,
}

/// A transfer in flight as the Manager shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TransferView {
    pub direction: Direction,
    pub path: String,
    pub bytes: u64,
    pub seconds: f64,
    /// Average since it started; absent in its first tenth of a second.
    pub bytes_per_second: Option<u64>,
}

impl Live {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Entry>> {
        // The map holds descriptions only; after a panic elsewhere it is still usable.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Enters a session; it leaves when the returned presence is dropped.
    pub(crate) fn enter(&self, info: &crate::SessionInfo, account: &str) -> Presence {
        let since_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0);
        let serial = self.serial.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(
            serial,
            Entry {
                id: info.id.clone(),
                service: info.service.clone(),
                protocol: info.protocol,
                account: account.to_owned(),
                remote: info.remote,
                since_us,
                cut: info.cut.clone(),
                transfers: Vec::new(),
            },
        );
        Presence {
            live: self.clone(),
            serial,
        }
    }

    /// Every open session, oldest first, with its transfers in flight.
    pub fn list(&self) -> Vec<SessionView> {
        let mut entries = self.lock();
        let mut views: Vec<SessionView> = entries
            .values_mut()
            .map(|entry| {
                entry.transfers.retain(|t| t.strong_count() > 0);
                SessionView {
                    id: entry.id.clone(),
                    service: entry.service.clone(),
                    protocol: entry.protocol,
                    account: entry.account.clone(),
                    remote: entry.remote.map(|r| r.to_string()),
                    since_us: entry.since_us,
                    disconnecting: entry.cut.is_pulled(),
                    transfers: entry
                        .transfers
                        .iter()
                        .filter_map(Weak::upgrade)
                        .map(|t| t.view())
                        .collect(),
                }
            })
            .collect();
        views.sort_by(|a, b| a.since_us.cmp(&b.since_us).then(a.id.cmp(&b.id)));
        views
    }

    /// One open session.
    pub fn get(&self, id: &str) -> Option<SessionView> {
        self.list().into_iter().find(|s| s.id == id)
    }

    /// Pulls the cut of session `id`'s connection (every session of that connection
    /// ends with it); the session as it was, or `None` when none is open under that id
    /// that is not already being disconnected.
    pub fn disconnect(&self, id: &str) -> Option<SessionView> {
        let view = self.get(id).filter(|v| !v.disconnecting)?;
        let cuts: Vec<Cut> = self
            .lock()
            .values()
            .filter(|e| e.id == id && !e.cut.is_pulled())
            .map(|e| e.cut.clone())
            .collect();
        if cuts.is_empty() {
            return None;
        }
        // Pulled with the registry unlocked: a cut's hooks may drop sessions, which
        // leave the registry.
        for cut in cuts {
            cut.pull();
        }
        Some(view)
    }

    /// How many sessions are open on each service.
    pub fn count_by_service(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for entry in self.lock().values() {
            *counts.entry(entry.service.clone()).or_insert(0) += 1;
        }
        counts
    }
}

/// A session's place in the registry; leaving it is dropping this.
pub(crate) struct Presence {
    live: Live,
    serial: u64,
}

impl Presence {
    /// Shows `transfer` under this session while it lives.
    pub(crate) fn track(&self, transfer: &Arc<Transfer>) {
        if let Some(entry) = self.live.lock().get_mut(&self.serial) {
            entry.transfers.retain(|t| t.strong_count() > 0);
            entry.transfers.push(Arc::downgrade(transfer));
        }
    }
}

impl Drop for Presence {
    fn drop(&mut self) {
        self.live.lock().remove(&self.serial);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str, cut: &Cut) -> crate::SessionInfo {
        crate::SessionInfo {
            id: id.into(),
            service: "sftp".into(),
            protocol: Protocol::Sftp,
            remote: Some("127.0.0.1:5000".parse().unwrap()),
            max_file_size: None,
            cut: cut.clone(),
        }
    }

    #[test]
    fn a_session_is_listed_while_it_lives() {
        let live = Live::default();
        let cut = Cut::default();
        let presence = live.enter(&info("c1-1", &cut), "alice");
        let transfer = Transfer::new(Direction::Upload, "/a.bin".into(), cut.clone());
        presence.track(&transfer);
        transfer.add(4096);
        let listed = live.list();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].account, "alice");
        assert_eq!(listed[0].transfers[0].bytes, 4096);
        drop(transfer);
        assert!(live.list()[0].transfers.is_empty());
        assert_eq!(live.count_by_service().get("sftp"), Some(&1));
        drop(presence);
        assert!(live.list().is_empty());
    }

    #[tokio::test]
    async fn disconnect_pulls_the_connection_cut_and_fails_its_transfers() {
        let live = Live::default();
        let cut = Cut::default();
        let _presence = live.enter(&info("c2-1", &cut), "bob");
        let transfer = Transfer::new(Direction::Download, "/b".into(), cut.clone());
        assert!(transfer.check().is_ok());
        assert!(live.disconnect("nobody").is_none());
        let waiting = tokio::spawn({
            let cut = cut.clone();
            async move { cut.pulled().await }
        });
        assert_eq!(
            live.disconnect("c2-1").map(|s| s.account),
            Some("bob".into())
        );
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("the watcher saw the cut")
            .expect("watcher task");
        assert_eq!(
            transfer.check().map_err(|e| e.message),
            Err(DISCONNECTED.into())
        );
        // Listed as ending until it is gone, and not disconnected twice.
        assert!(live.get("c2-1").is_some_and(|s| s.disconnecting));
        assert!(live.disconnect("c2-1").is_none());
    }

    #[test]
    fn hooks_run_once_when_the_cut_is_pulled() {
        let cut = Cut::default();
        let runs = Arc::new(AtomicU64::new(0));
        let counted = |runs: &Arc<AtomicU64>| {
            let runs = Arc::clone(runs);
            move || {
                runs.fetch_add(1, Ordering::SeqCst);
            }
        };
        // Given again under one name, it is kept once.
        for _ in 0..100 {
            cut.when_pulled("login", counted(&runs));
        }
        cut.when_pulled("other", counted(&runs));
        assert_eq!(cut.0.hooks.lock().map(|h| h.len()).unwrap_or(0), 2);
        assert_eq!(runs.load(Ordering::SeqCst), 0);
        cut.pull();
        cut.pull();
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        // A hook given after the pull runs at once.
        cut.when_pulled("late", counted(&runs));
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }
}
