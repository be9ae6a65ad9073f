//! WebDAV locks and dead properties: what they mean, their bounds, and who may use them.
//!
//! Both are kept in the store (through the [`DavStore`] trait the store implements), so that
//! every node of a cluster sees the same locks. They are keyed by the account's home folder
//! on the server and the path in it, so two accounts sharing a home share its locks and
//! properties. This module decides (conflicts, permission rules, limits); the store only
//! keeps rows and applies a change atomically.
//!
//! It must never touch files: a front-end calls it beside the [`Session`] operations, and the
//! rules are asked through the session (a lock needs an upload verb on the path, reading
//! properties needs `read`, changing them `setattr`).
//!
//! Locks are enforced for the HTTP front-end (WebDAV and, through
//! [`DavState::check_unlocked`], the REST API and web client); SFTP, SCP and FTP do not ask
//! about them yet (docs/protocols.md says so).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use wharf_types::{Verb, VirtualPath};

use crate::error::{CoreError, ErrorKind};
use crate::events::EventKind;
use crate::session::Session;

/// A lock lasts this long when the client names no timeout (or an infinite one).
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(600);
/// The longest a lock lasts without a refresh, whatever the client asks.
pub const MAX_LOCK_TIMEOUT: Duration = Duration::from_secs(3600);
/// Locks in force at once for one account.
pub const MAX_LOCKS_PER_ACCOUNT: usize = 1000;
/// Bytes of a lock's `owner` element kept (a longer one is dropped, the lock still made).
pub const MAX_OWNER_BYTES: usize = 1024;
/// Dead properties on one file or folder.
pub const MAX_PROPS_PER_ENTRY: usize = 100;
/// Dead properties of one account in all.
pub const MAX_PROPS_PER_ACCOUNT: usize = 10_000;
/// Bytes of one property as XML (its name, namespace and value).
pub const MAX_PROP_BYTES: usize = 4096;

/// One lock, as kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    /// The lock token (`urn:uuid:…`).
    pub token: String,
    /// The path locked.
    pub path: VirtualPath,
    /// The account that holds it.
    pub account: String,
    /// The client's `owner` element, as XML.
    pub owner: Option<String>,
    /// Shared rather than exclusive.
    pub shared: bool,
    /// Covers everything beneath the path too (`Depth: infinity`).
    pub deep: bool,
    /// The timeout granted, in seconds.
    pub timeout_s: u64,
    /// When it ends, µs since the Unix epoch.
    pub expires_us: i64,
}

/// One dead property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadProp {
    /// Its XML namespace (empty for none).
    pub namespace: String,
    /// Its local name.
    pub name: String,
    /// The whole property element as XML.
    pub xml: Vec<u8>,
}

/// One change of a PROPPATCH, applied in the order the client gave them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PropChange {
    /// Sets (adds or replaces) a property.
    Set(DeadProp),
    /// Removes a property (namespace, name); removing one that is not there is no error.
    Remove(String, String),
}

/// Where locks and properties are kept (the store). `scope` is the home folder on the
/// server; paths are [`VirtualPath`] texts. Every method is one atomic change or read.
#[async_trait]
pub trait DavStore: Send + Sync {
    /// The locks in force at `now_us` on `path`, on the folders above it, and beneath it.
    async fn locks_around(
        &self,
        scope: &str,
        path: &str,
        now_us: i64,
    ) -> Result<Vec<Lock>, CoreError>;
    /// Adds `lock` in one transaction with asking `conflict` about the locks around its path
    /// (and forgets expired locks). Refused with the conflicting lock, or with
    /// [`ErrorKind::LimitReached`] when the account holds `max_per_account` locks already.
    async fn add_lock(
        &self,
        scope: &str,
        lock: &Lock,
        now_us: i64,
        max_per_account: usize,
        conflict: &(dyn for<'x> Fn(&'x [Lock]) -> Option<Lock> + Send + Sync),
    ) -> Result<Result<(), Lock>, CoreError>;
    /// Gives the lock `token` of `account` a new timeout; `None` when it is not in force.
    async fn refresh_lock(
        &self,
        scope: &str,
        account: &str,
        token: &str,
        timeout_s: u64,
        now_us: i64,
    ) -> Result<Option<Lock>, CoreError>;
    /// Removes the lock `token` of `account`; whether there was one.
    async fn remove_lock(&self, scope: &str, account: &str, token: &str)
    -> Result<bool, CoreError>;
    /// Removes every lock on `path` and beneath it.
    async fn remove_locks(&self, scope: &str, path: &str) -> Result<(), CoreError>;
    /// The dead properties of `path`.
    async fn props(&self, scope: &str, path: &str) -> Result<Vec<DeadProp>, CoreError>;
    /// The paths in `scope` that have dead properties.
    async fn prop_paths(&self, scope: &str) -> Result<Vec<String>, CoreError>;
    /// Applies `changes` to the properties of `path`, in order, all or none; refused with
    /// [`ErrorKind::LimitReached`] when `path` would hold more than `max_per_entry` or the
    /// account more than `max_per_account`.
    async fn patch_props(
        &self,
        scope: &str,
        account: &str,
        path: &str,
        changes: &[PropChange],
        limits: (usize, usize),
    ) -> Result<(), CoreError>;
    /// Moves the properties of `from` and beneath it to `to` (replacing what was there).
    async fn move_props(&self, scope: &str, from: &str, to: &str) -> Result<(), CoreError>;
    /// Copies the properties of `from` itself to `to` (replacing what was there).
    async fn copy_props(
        &self,
        scope: &str,
        account: &str,
        from: &str,
        to: &str,
    ) -> Result<(), CoreError>;
    /// Removes the properties of `path` and beneath it.
    async fn remove_props(&self, scope: &str, path: &str) -> Result<(), CoreError>;
}

/// Locks and properties for the sessions of one service. Cheap to clone.
#[derive(Clone)]
pub struct DavState {
    store: Arc<dyn DavStore>,
}

impl std::fmt::Debug for DavState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DavState")
    }
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// The timeout granted for what the client asked (`None`: none or infinite).
pub fn bounded_timeout(asked: Option<Duration>) -> Duration {
    asked
        .unwrap_or(DEFAULT_LOCK_TIMEOUT)
        .clamp(Duration::from_secs(1), MAX_LOCK_TIMEOUT)
}

/// What a lock check is about: the account asking and the tokens it submitted.
#[derive(Debug, Clone, Copy)]
pub struct Holder<'a> {
    /// The account that must hold a submitted lock (`None`: any, when `ignore_account`).
    pub account: Option<&'a str>,
    /// A submitted token counts whoever holds it (for `If` header evaluation).
    pub ignore_account: bool,
    /// The tokens submitted.
    pub tokens: &'a [String],
}

impl Holder<'_> {
    fn holds(&self, lock: &Lock) -> bool {
        self.tokens.contains(&lock.token)
            && (self.ignore_account || self.account == Some(lock.account.as_str()))
    }
}

/// Whether `lock` covers `path`: on it, or deep on a folder above it.
fn covers(lock: &Lock, path: &VirtualPath) -> bool {
    lock.path == *path || (lock.deep && path.starts_with(&lock.path))
}

/// The locks among `locks` that cover `path` (what a `lockdiscovery` shows).
pub fn covering(locks: &[Lock], path: &VirtualPath) -> Vec<Lock> {
    locks.iter().filter(|l| covers(l, path)).cloned().collect()
}

/// The lock among `locks` that stops `holder` at `path`, if any (RFC 4918 §6, §7): an
/// exclusive lock covering the path that the holder does not hold; a shared one unless
/// `shared_ok` or the holder holds one of the covering locks; with `deep`, any such lock
/// beneath the path as well.
pub fn conflict(
    locks: &[Lock],
    path: &VirtualPath,
    holder: Holder<'_>,
    shared_ok: bool,
    deep: bool,
) -> Option<Lock> {
    let mut holds_one = false;
    let mut first_shared: Option<&Lock> = None;
    for lock in locks.iter().filter(|l| covers(l, path)) {
        if holder.holds(lock) {
            holds_one = true;
        } else if !lock.shared {
            return Some(lock.clone());
        } else if !shared_ok {
            first_shared.get_or_insert(lock);
        }
    }
    if !holds_one && let Some(lock) = first_shared {
        return Some(lock.clone());
    }
    if deep {
        return locks
            .iter()
            .filter(|l| l.path.starts_with(path))
            .find(|l| (!l.shared || !shared_ok) && !holder.holds(l))
            .cloned();
    }
    None
}

impl DavState {
    /// Locks and properties kept in `store`.
    pub fn new(store: Arc<dyn DavStore>) -> DavState {
        DavState { store }
    }

    /// The home folder as the kernel names it, so accounts whose homes are spelt
    /// differently (`/srv/x/`, `/srv//x`, a link to it) share its locks and properties.
    fn scope(session: &Session) -> String {
        let home = &session.account().home;
        std::fs::canonicalize(home)
            .unwrap_or_else(|_| home.clone())
            .to_string_lossy()
            .into_owned()
    }

    /// Refuses unless some upload verb (`write`, `overwrite`, `append`) applies at `path`.
    fn check_may_write(session: &Session, path: &VirtualPath) -> Result<(), CoreError> {
        let rules = &session.account().rules;
        if [Verb::Write, Verb::Overwrite, Verb::Append]
            .iter()
            .any(|v| rules.allows(*v, path))
        {
            return Ok(());
        }
        session.check(Verb::Write, path)
    }

    /// A lock keeps others from changing what it covers, so it needs the right to change it
    /// oneself: `overwrite` or `append` on an existing entry, `write` on a new name.
    async fn check_may_lock(session: &Session, path: &VirtualPath) -> Result<(), CoreError> {
        let exists = session.upload_exists(path).await?;
        let verbs: &[Verb] = if exists {
            &[Verb::Overwrite, Verb::Append]
        } else {
            &[Verb::Write]
        };
        if verbs
            .iter()
            .any(|v| session.account().rules.allows(*v, path))
        {
            return Ok(());
        }
        session.check(verbs[0], path)
    }

    /// Locks `path` for the session's account, unless a lock in force conflicts (returned
    /// as `Ok(Err(lock))`). Needs the right to change it (see `check_may_lock`).
    pub async fn lock(
        &self,
        session: &Session,
        path: &VirtualPath,
        owner: Option<String>,
        timeout: Option<Duration>,
        shared: bool,
        deep: bool,
    ) -> Result<Result<Lock, Lock>, CoreError> {
        Self::check_may_lock(session, path).await?;
        let timeout = bounded_timeout(timeout);
        let now = now_us();
        let lock = Lock {
            token: uuid::Uuid::new_v4().urn().to_string(),
            path: path.clone(),
            account: session.account().name.to_string(),
            owner: owner.filter(|o| o.len() <= MAX_OWNER_BYTES),
            shared,
            deep,
            timeout_s: timeout.as_secs(),
            expires_us: now.saturating_add(i64::try_from(timeout.as_micros()).unwrap_or(0)),
        };
        let nobody = Holder {
            account: None,
            ignore_account: false,
            tokens: &[],
        };
        let decide = |locks: &[Lock]| conflict(locks, path, nobody, shared, deep);
        let added = self
            .store
            .add_lock(
                &Self::scope(session),
                &lock,
                now,
                MAX_LOCKS_PER_ACCOUNT,
                &decide,
            )
            .await;
        if let Err(e) = &added
            && e.kind == ErrorKind::LimitReached
        {
            session.emit(
                session
                    .event(EventKind::CommandRefused)
                    .failed(format!("lock refused: {}", e.message))
                    .path(path.to_string()),
            );
        }
        let added = added?;
        let event = session
            .event(EventKind::EntryLocked)
            .path(path.to_string())
            .attr("scope", if shared { "shared" } else { "exclusive" })
            .attr("depth", if deep { "infinity" } else { "0" })
            .attr("timeout", lock.timeout_s.to_string());
        match &added {
            Ok(()) => session.emit(event),
            Err(other) => session.emit(event.failed(format!("locked already ({})", other.path))),
        }
        Ok(added.map(|()| lock))
    }

    /// Ends the lock `token` that the session's account holds on `path` (or on a folder
    /// above it); whether there was such a lock.
    pub async fn unlock(
        &self,
        session: &Session,
        path: &VirtualPath,
        token: &str,
    ) -> Result<bool, CoreError> {
        Self::check_may_write(session, path)?;
        let scope = Self::scope(session);
        let account = session.account().name.to_string();
        let ours = self
            .store
            .locks_around(&scope, path.as_str(), now_us())
            .await?
            .into_iter()
            .any(|l| l.token == token && l.account == account && covers(&l, path));
        if !ours {
            return Ok(false);
        }
        let removed = self.store.remove_lock(&scope, &account, token).await?;
        if removed {
            session.emit(
                session
                    .event(EventKind::EntryUnlocked)
                    .path(path.to_string()),
            );
        }
        Ok(removed)
    }

    /// Gives a lock the session's account holds on `path` a new timeout.
    pub async fn refresh(
        &self,
        session: &Session,
        path: &VirtualPath,
        token: &str,
        timeout: Option<Duration>,
    ) -> Result<Option<Lock>, CoreError> {
        Self::check_may_write(session, path)?;
        let scope = Self::scope(session);
        let account = session.account().name.to_string();
        let now = now_us();
        let covering = self
            .store
            .locks_around(&scope, path.as_str(), now)
            .await?
            .into_iter()
            .any(|l| l.token == token && covers(&l, path));
        if !covering {
            return Ok(None);
        }
        self.store
            .refresh_lock(
                &scope,
                &account,
                token,
                bounded_timeout(timeout).as_secs(),
                now,
            )
            .await
    }

    /// The lock that stops `holder` changing `path` (and, with `deep`, what is beneath it).
    pub async fn check(
        &self,
        session: &Session,
        path: &VirtualPath,
        holder: Holder<'_>,
        deep: bool,
    ) -> Result<Option<Lock>, CoreError> {
        let locks = self
            .store
            .locks_around(&Self::scope(session), path.as_str(), now_us())
            .await?;
        Ok(conflict(&locks, path, holder, false, deep))
    }

    /// Refuses a change to `path` (with `deep`, to anything beneath it as well) while a lock
    /// covers it: for requests that carry no lock token (the REST API, the web client).
    /// Records `command.refused`.
    pub async fn check_unlocked(
        &self,
        session: &Session,
        path: &VirtualPath,
        deep: bool,
    ) -> Result<(), CoreError> {
        let holder = Holder {
            account: None,
            ignore_account: false,
            tokens: &[],
        };
        let Some(lock) = self.check(session, path, holder, deep).await? else {
            return Ok(());
        };
        session.emit(
            session
                .event(EventKind::CommandRefused)
                .failed(format!("locked by a WebDAV client ({})", lock.path))
                .path(path.to_string()),
        );
        Err(CoreError::new(
            ErrorKind::PermissionDenied,
            format!("{} is locked by a WebDAV client", lock.path),
        ))
    }

    /// Every lock in force in the session's home: one look at the store for a request that
    /// asks about many paths (a listing's `lockdiscovery`), decided on with [`conflict`] and
    /// [`covering`].
    pub async fn all_locks(&self, session: &Session) -> Result<Vec<Lock>, CoreError> {
        self.store
            .locks_around(&Self::scope(session), "/", now_us())
            .await
    }

    /// The paths of the session's home that have dead properties (so that a listing asks
    /// the store only about those).
    pub async fn prop_paths(
        &self,
        session: &Session,
    ) -> Result<std::collections::HashSet<String>, CoreError> {
        Ok(self
            .store
            .prop_paths(&Self::scope(session))
            .await?
            .into_iter()
            .collect())
    }

    /// Forgets the locks on `path` and beneath it (it was deleted or moved away).
    pub async fn forget_locks(
        &self,
        session: &Session,
        path: &VirtualPath,
    ) -> Result<(), CoreError> {
        self.store
            .remove_locks(&Self::scope(session), path.as_str())
            .await
    }

    /// The dead properties of `path`; none when the rules refuse `read` there (asked
    /// quietly: a listing asks for every entry).
    pub async fn props(
        &self,
        session: &Session,
        path: &VirtualPath,
    ) -> Result<Vec<DeadProp>, CoreError> {
        if !session.account().rules.allows(Verb::Read, path) {
            return Ok(Vec::new());
        }
        self.store.props(&Self::scope(session), path.as_str()).await
    }

    /// Sets and removes dead properties of `path`, in order, all or none. Needs `setattr`;
    /// refused beyond [`MAX_PROP_BYTES`] a property, [`MAX_PROPS_PER_ENTRY`] an entry or
    /// [`MAX_PROPS_PER_ACCOUNT`] in all. Records `attributes.changed`.
    pub async fn patch_props(
        &self,
        session: &Session,
        path: &VirtualPath,
        changes: &[PropChange],
    ) -> Result<(), CoreError> {
        session.check(Verb::Setattr, path)?;
        let set = changes
            .iter()
            .filter(|c| matches!(c, PropChange::Set(_)))
            .count();
        let event = session
            .event(EventKind::AttributesChanged)
            .path(path.to_string())
            .attr("properties_set", set.to_string())
            .attr("properties_removed", (changes.len() - set).to_string());
        let too_big = |c: &PropChange| match c {
            PropChange::Set(p) => p.xml.len() + p.name.len() + p.namespace.len() > MAX_PROP_BYTES,
            PropChange::Remove(ns, name) => ns.len() + name.len() > MAX_PROP_BYTES,
        };
        let result = if changes.len() > MAX_PROPS_PER_ENTRY || changes.iter().any(too_big) {
            Err(CoreError::new(
                ErrorKind::LimitReached,
                format!("at most {MAX_PROPS_PER_ENTRY} properties of {MAX_PROP_BYTES} bytes each"),
            ))
        } else {
            self.store
                .patch_props(
                    &Self::scope(session),
                    &session.account().name.to_string(),
                    path.as_str(),
                    changes,
                    (MAX_PROPS_PER_ENTRY, MAX_PROPS_PER_ACCOUNT),
                )
                .await
        };
        match &result {
            Ok(()) => session.emit(event),
            Err(e) => session.emit(event.failed(e.message.clone())),
        }
        result
    }

    /// Carries properties along a move the session made (`from` and beneath it).
    pub async fn moved(
        &self,
        session: &Session,
        from: &VirtualPath,
        to: &VirtualPath,
    ) -> Result<(), CoreError> {
        self.store
            .move_props(&Self::scope(session), from.as_str(), to.as_str())
            .await
    }

    /// Gives a copy the session made the properties of its original.
    pub async fn copied(
        &self,
        session: &Session,
        from: &VirtualPath,
        to: &VirtualPath,
    ) -> Result<(), CoreError> {
        self.store
            .copy_props(
                &Self::scope(session),
                &session.account().name.to_string(),
                from.as_str(),
                to.as_str(),
            )
            .await
    }

    /// Forgets the properties of something the session removed (and beneath it).
    pub async fn removed(&self, session: &Session, path: &VirtualPath) -> Result<(), CoreError> {
        self.store
            .remove_props(&Self::scope(session), path.as_str())
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(path: &str, token: &str, shared: bool, deep: bool) -> Lock {
        Lock {
            token: token.into(),
            path: VirtualPath::parse(path).unwrap(),
            account: "alice".into(),
            owner: None,
            shared,
            deep,
            timeout_s: 600,
            expires_us: i64::MAX,
        }
    }

    fn holder<'a>(tokens: &'a [String]) -> Holder<'a> {
        Holder {
            account: Some("alice"),
            ignore_account: false,
            tokens,
        }
    }

    #[test]
    fn an_exclusive_lock_stops_whoever_lacks_its_token() {
        let p = |s| VirtualPath::parse(s).unwrap();
        let locks = [lock("/a", "t1", false, true)];
        assert!(conflict(&locks, &p("/a/b"), holder(&[]), false, false).is_some());
        assert!(conflict(&locks, &p("/a/b"), holder(&["t1".into()]), false, false).is_none());
        assert!(conflict(&locks, &p("/c"), holder(&[]), false, false).is_none());
        // Held by alice: bob's request with her token is still refused.
        let theirs = ["t1".to_owned()];
        let bob = Holder {
            account: Some("bob"),
            ..holder(&theirs)
        };
        assert!(conflict(&locks, &p("/a"), bob, false, false).is_some());
    }

    #[test]
    fn shallow_locks_and_deep_checks() {
        let p = |s| VirtualPath::parse(s).unwrap();
        let locks = [
            lock("/a", "t1", false, false),
            lock("/x/y", "t2", true, false),
        ];
        assert!(conflict(&locks, &p("/a/b"), holder(&[]), false, false).is_none());
        assert!(conflict(&locks, &p("/x"), holder(&[]), false, true).is_some());
        assert!(conflict(&locks, &p("/x"), holder(&[]), true, true).is_none());
        assert!(conflict(&locks, &p("/x/y"), holder(&[]), true, false).is_none());
    }

    #[test]
    fn timeouts_are_bounded() {
        assert_eq!(bounded_timeout(None), DEFAULT_LOCK_TIMEOUT);
        assert_eq!(
            bounded_timeout(Some(Duration::from_secs(1 << 40))),
            MAX_LOCK_TIMEOUT
        );
        assert_eq!(
            bounded_timeout(Some(Duration::ZERO)),
            Duration::from_secs(1)
        );
    }
}
