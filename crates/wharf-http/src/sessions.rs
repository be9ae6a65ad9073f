//! Logged-in HTTP clients: bearer tokens, browser sessions and a short-lived cache of HTTP
//! Basic credentials, each holding one core session and the [`Grant`] its login made.
//!
//! HTTP is stateless, but the core session (home folder, rules, `session.started`/`ended`)
//! is not: one is opened per login and kept while it is used. What is kept saves only the
//! credential's verification (Argon2id, a directory bind, a call to the authentication
//! service): every request is checked again against the account as it is now and the
//! request's own address and protocol ([`wharf_auth::Authenticator::readmit`], in
//! `auth.rs`), and acts through a copy of the session that names its own connection.
//!
//! Tokens, browser sessions and logins waiting for their one-time code are kept where
//! every node of a cluster finds them ([`WebSessionStore`], the store), by the SHA-256 of
//! their token; a browser session's CSRF token is derived from its cookie (an HMAC) and
//! kept as its SHA-256 only. Every request asks the store once, by that hash, whether the
//! login is still in force, so a logout or an expiry on another node applies at the next
//! request here: only the core session opened for it is remembered in this process, and a
//! node that has none (the login was made on another node) opens one, after the account
//! checks ([`wharf_auth::Authenticator::resume`]). A login's last use is written at most
//! every eighth of the idle time (30 s at most), so a read is all most requests cost and
//! an idle login may end that much early.
//!
//! Basic credentials are remembered in this process only, as a salted SHA-256, for a short
//! absolute time (`recheck_after`): any node can check them itself. A Basic login whose
//! password carried a one-time code is remembered for its own connection only: the code
//! was good once, so another connection (or address) sending the same header must log in
//! again, and is refused as a reused code.
//!
//! Tokens and browser sessions end when unused for `session_timeout`, and in any case
//! `session_lifetime` after the login that made them (a token made with a token keeps
//! its login's age). When the account resolves differently on a later request, the entry
//! is given the new session ([`Sessions::renew`]), so the change applies from then on.
//!
//! This module must never hold a password in clear, nor write a token where others read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use wharf_auth::Grant;
use wharf_core::web_sessions::{WebLogin, WebLoginKind, WebSessionStore};
use wharf_core::{CoreError, ErrorKind, Session};
use wharf_types::Protocol;

/// How long a Basic credential is trusted without checking it again, and how long an
/// external method's answer about a kept login holds, unless the service says otherwise.
pub(crate) const DEFAULT_RECHECK_AFTER: Duration = Duration::from_secs(120);

/// How long a token or browser session may live at most, unless the service says otherwise.
pub(crate) const DEFAULT_SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3600);

/// Tokens and browser sessions of one service held at once (in the store, and sessions
/// opened in this process); the least recently used goes first beyond this.
const MAX_SESSIONS: usize = 10_000;

/// A login's last use is written when the one kept is older than this part of the idle
/// time (and at most [`MAX_TOUCH_AFTER`]).
const TOUCH_FRACTION: u32 = 8;
const MAX_TOUCH_AFTER: Duration = Duration::from_secs(30);

struct Entry {
    session: Arc<Session>,
    /// What every request of this login is checked against; `None` (never expected) makes
    /// the entry unusable.
    grant: Option<Grant>,
    last_used: Instant,
    created: Instant,
    basic: bool,
}

/// A browser session found by its cookie.
pub(crate) struct CookieSession {
    pub(crate) found: Found,
    /// Its CSRF token, for its pages.
    pub(crate) csrf: String,
    /// The SHA-256 its row keeps of it.
    csrf_hash: Option<String>,
}

impl CookieSession {
    /// Whether `echoed` is the session's CSRF token, checked against the hash its row
    /// keeps.
    pub(crate) fn echoed(&self, echoed: Option<&str>) -> bool {
        echoed.is_some_and(|e| self.csrf_hash.as_deref() == Some(hashed(e).as_str()))
    }
}

/// A kept login found by its token, cookie or Basic credential.
pub(crate) struct Kept {
    /// Where it is kept, for [`Sessions::renew`].
    pub(crate) key: String,
    pub(crate) session: Arc<Session>,
    pub(crate) grant: Option<Grant>,
}

/// A token or browser session in force: open in this process, or made on another node
/// (or before this process last saw it) and to be resumed here.
pub(crate) enum Found {
    Kept(Kept),
    Resume { key: String, login: WebLogin },
}

pub(crate) fn random_token() -> String {
    wharf_types::hex(&rand::random::<[u8; 32]>())
}

/// The SHA-256 of a token, as the store keys it.
fn hashed(token: &str) -> String {
    wharf_types::hex(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()).as_ref(),
    )
}

/// A browser session's CSRF token: an HMAC of its cookie, so every node can give it to
/// the session's pages, and neither it nor the row kept for it gives the cookie away.
pub(crate) fn csrf_of(cookie: &str) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, cookie.as_bytes());
    wharf_types::hex(aws_lc_rs::hmac::sign(&key, b"wharf csrf token").as_ref())
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// The store key kind of a local key (`cookie:HASH`, `token:HASH`), and the hash.
fn stored_key(key: &str) -> Option<(WebLoginKind, &str)> {
    if let Some(hash) = key.strip_prefix("cookie:") {
        Some((WebLoginKind::Cookie, hash))
    } else {
        key.strip_prefix("token:")
            .map(|hash| (WebLoginKind::Token, hash))
    }
}

/// How long a password-checked login waits for its one-time code.
const PENDING_LIFETIME: Duration = Duration::from_secs(300);

/// Wrong codes allowed for one password-checked login.
const PENDING_TRIES: i64 = 3;

/// Logins of one service waiting for their code, held at once.
const MAX_PENDING: usize = 10_000;

/// The logged-in clients of one service.
pub(crate) struct Sessions {
    /// Where tokens, browser sessions and pending logins are kept.
    store: Arc<dyn WebSessionStore>,
    /// The service's name: its logins are kept under it.
    service: String,
    /// Sessions opened in this process, by key; Basic credentials are kept here alone.
    entries: Arc<Mutex<HashMap<String, Entry>>>,
    /// The grant of each open login, by the address of its account (which every copy of
    /// its session shares), so a token or cookie made from a session knows its login.
    grants: Mutex<HashMap<usize, Grant>>,
    idle: Duration,
    /// Tokens and browser sessions end this long after their login, used or not.
    lifetime: Duration,
    /// Basic credentials are remembered this long; external answers trusted as long.
    recheck_after: Duration,
    salt: [u8; 32],
}

impl Sessions {
    pub(crate) fn new(store: Arc<dyn WebSessionStore>, service: &str, idle: Duration) -> Sessions {
        Sessions {
            store,
            service: service.to_owned(),
            entries: Arc::new(Mutex::new(HashMap::new())),
            grants: Mutex::new(HashMap::new()),
            idle,
            lifetime: DEFAULT_SESSION_LIFETIME,
            recheck_after: DEFAULT_RECHECK_AFTER,
            salt: rand::random(),
        }
    }

    /// The same, with the service's absolute lifetime of a login and its re-check time.
    pub(crate) fn with_limits(mut self, lifetime: Duration, recheck_after: Duration) -> Sessions {
        self.lifetime = lifetime;
        self.recheck_after = recheck_after;
        self
    }

    /// How long an external method's answer about a kept login is trusted.
    pub(crate) fn recheck_after(&self) -> Duration {
        self.recheck_after
    }

    /// Holds a login until its code arrives; returns the token the code form carries.
    pub(crate) async fn insert_pending(
        &self,
        account: &str,
        by: &str,
        user: &str,
    ) -> Result<String, CoreError> {
        let token = random_token();
        let now = now_us();
        let login = WebLogin {
            kind: WebLoginKind::Pending,
            service: self.service.clone(),
            account: account.to_owned(),
            user: user.to_owned(),
            method: by.to_owned(),
            second_factor: false,
            session_id: String::new(),
            csrf_hash: None,
            since_us: now,
            used_us: now,
            idle_us: micros(PENDING_LIFETIME),
            expires_us: now.saturating_add(micros(PENDING_LIFETIME)),
            tries_left: PENDING_TRIES,
        };
        // Past the cap the token leads nowhere: the code form says the login expired.
        self.store
            .add_web_login(&hashed(&token), &login, now, MAX_PENDING, false)
            .await?;
        Ok(token)
    }

    /// Takes a pending login by its token (once, whichever node asks;
    /// [`Sessions::retry_pending`] puts it back after a wrong code while tries are left).
    pub(crate) async fn take_pending(&self, token: &str) -> Result<Option<WebLogin>, CoreError> {
        let login = self
            .store
            .take_web_login(&hashed(token), WebLoginKind::Pending)
            .await?;
        Ok(login.filter(|l| l.service == self.service && l.in_force(now_us())))
    }

    /// Puts a pending login back after a wrong code; false when no try is left.
    pub(crate) async fn retry_pending(
        &self,
        token: &str,
        mut login: WebLogin,
    ) -> Result<bool, CoreError> {
        login.tries_left = login.tries_left.saturating_sub(1);
        if login.tries_left <= 0 {
            return Ok(false);
        }
        self.store
            .add_web_login(&hashed(token), &login, now_us(), MAX_PENDING, false)
            .await
    }

    /// The cache key of a Basic credential.
    pub(crate) fn basic_key(&self, protocol: Protocol, user: &str, password: &str) -> String {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        ctx.update(&self.salt);
        ctx.update(protocol.as_str().as_bytes());
        ctx.update(&[0]);
        ctx.update(user.as_bytes());
        ctx.update(&[0]);
        ctx.update(password.as_bytes());
        let digest = ctx.finish();
        format!("basic:{}", wharf_types::hex(digest.as_ref()))
    }

    /// Remembers the grant of a login whose session was just opened for `grant.account`.
    pub(crate) fn register(&self, grant: Grant) {
        if let Ok(mut grants) = self.grants.lock() {
            // A grant whose account nothing else holds belongs to a login that has ended.
            grants.retain(|_, g| Arc::strong_count(&g.account) > 1);
            grants.insert(account_key(&grant.account), grant);
        }
    }

    /// The grant of the login `session` (or the session it was copied from) belongs to.
    pub(crate) fn grant_of(&self, session: &Session) -> Option<Grant> {
        let grants = self.grants.lock().ok()?;
        grants.get(&account_key(session.account())).cloned()
    }

    /// The login remembered for a Basic credential: one remembered for any connection, or
    /// one remembered for connection `conn` only (its password carried a one-time code).
    pub(crate) fn get_basic(&self, key: &str, conn: &str) -> Option<Kept> {
        self.get_entry(key.to_owned())
            .or_else(|| self.get_entry(bound_key(key, conn)))
    }

    /// The login behind a bearer token, if in force.
    pub(crate) async fn get_token(&self, token: &str) -> Result<Option<Found>, CoreError> {
        Ok(self
            .get_stored(WebLoginKind::Token, token)
            .await?
            .map(|(found, _)| found))
    }

    /// The browser session behind a cookie value, if in force.
    pub(crate) async fn get_cookie(
        &self,
        cookie: &str,
    ) -> Result<Option<CookieSession>, CoreError> {
        Ok(self
            .get_stored(WebLoginKind::Cookie, cookie)
            .await?
            .map(|(found, login)| CookieSession {
                found,
                csrf: csrf_of(cookie),
                csrf_hash: login.csrf_hash,
            }))
    }

    /// One read of the store: the login of `kind` behind `token` if it is in force, and
    /// the session this process opened for it, if any.
    async fn get_stored(
        &self,
        kind: WebLoginKind,
        token: &str,
    ) -> Result<Option<(Found, WebLogin)>, CoreError> {
        let hash = hashed(token);
        let key = format!("{}:{hash}", kind.as_str());
        let touch_after = (self.idle / TOUCH_FRACTION).min(MAX_TOUCH_AFTER);
        let found = self
            .store
            .web_login(&hash, kind, now_us(), micros(touch_after))
            .await?
            .filter(|l| l.service == self.service);
        let Some(login) = found else {
            self.forget_local(&key);
            return Ok(None);
        };
        let kept = self.get_entry(key.clone());
        let found = match kept {
            Some(kept) => Found::Kept(kept),
            None => Found::Resume {
                key,
                login: login.clone(),
            },
        };
        Ok(Some((found, login)))
    }

    fn forget_local(&self, key: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(key);
        }
    }

    fn get_entry(&self, key: String) -> Option<Kept> {
        let mut entries = self.entries.lock().ok()?;
        let now = Instant::now();
        let entry = entries.get_mut(&key)?;
        if self.expired(entry, now) {
            entries.remove(&key);
            return None;
        }
        entry.last_used = now;
        Some(Kept {
            session: Arc::clone(&entry.session),
            grant: entry.grant.clone(),
            key,
        })
    }

    /// Whether `entry` may no longer be used: idle too long, a Basic credential remembered
    /// too long, or its login older than the absolute lifetime. (For a token or browser
    /// session the store decides first; this only lets go of a session opened here.)
    fn expired(&self, entry: &Entry, now: Instant) -> bool {
        // The login's age: for a Basic credential from an LDAP directory or HTTP service,
        // also the age of the method's answer, so the credential is checked afresh (with
        // its password) just as that answer would need asking again.
        let since = entry
            .grant
            .as_ref()
            .map_or(entry.created, |g| g.since.min(entry.created));
        now.duration_since(entry.last_used) > self.idle
            || (entry.basic && now.duration_since(since) > self.recheck_after)
            || now.duration_since(since) > self.lifetime
    }

    /// Keeps `grant` for the login at `key` from now on, and `session` with it when the
    /// grant's account changed: only while the entry still holds `was` (a concurrent
    /// request may have renewed it first, and its session stays).
    pub(crate) fn renew(&self, key: &str, was: &Arc<Session>, session: Arc<Session>, grant: Grant) {
        // A token made from this login from now on starts from the renewed grant.
        self.register(grant.clone());
        if let Ok(mut entries) = self.entries.lock()
            && let Some(entry) = entries.get_mut(key)
            && Arc::ptr_eq(&entry.session, was)
        {
            entry.session = session;
            entry.grant = Some(grant);
        }
    }

    /// Keeps in this process the session just opened for a login found in the store.
    pub(crate) fn adopt(&self, key: String, session: Arc<Session>, grant: Grant) {
        self.register(grant.clone());
        self.insert_local(key, session, Some(grant), false);
    }

    /// Forgets the login at `key`, on every node: its account no longer passes, and only a
    /// new login can make it good again.
    pub(crate) async fn end(&self, key: &str) -> Result<(), CoreError> {
        self.forget_local(key);
        if let Some((kind, hash)) = stored_key(key) {
            self.store.take_web_login(hash, kind).await?;
        }
        Ok(())
    }

    /// Remembers a session under a new random token, which it returns.
    pub(crate) async fn insert_token(&self, session: Arc<Session>) -> Result<String, CoreError> {
        self.insert_stored(WebLoginKind::Token, session).await
    }

    /// Starts a browser session; returns the cookie value.
    pub(crate) async fn insert_cookie(&self, session: Arc<Session>) -> Result<String, CoreError> {
        self.insert_stored(WebLoginKind::Cookie, session).await
    }

    async fn insert_stored(
        &self,
        kind: WebLoginKind,
        session: Arc<Session>,
    ) -> Result<String, CoreError> {
        let grant = self.grant_of(&session).ok_or_else(|| {
            CoreError::new(ErrorKind::Failure, "the login's account is no longer known")
        })?;
        let token = random_token();
        let hash = hashed(&token);
        let now = now_us();
        let since = now.saturating_sub(micros(grant.since.elapsed()));
        let login = WebLogin {
            kind,
            service: self.service.clone(),
            account: session.account().name.to_string(),
            user: session.account().name.to_string(),
            method: grant.by.clone(),
            second_factor: grant.second_factor,
            session_id: session.info().id.clone(),
            csrf_hash: (kind == WebLoginKind::Cookie).then(|| hashed(&csrf_of(&token))),
            since_us: since,
            used_us: now,
            idle_us: micros(self.idle),
            expires_us: since.saturating_add(micros(self.lifetime)),
            tries_left: 0,
        };
        self.store
            .add_web_login(&hash, &login, now, MAX_SESSIONS, true)
            .await?;
        let key = format!("{}:{hash}", kind.as_str());
        self.insert_local(key, session, Some(grant), false);
        Ok(token)
    }

    /// Ends a browser session (logout), on every node.
    pub(crate) async fn remove_cookie(&self, cookie: &str) -> Result<(), CoreError> {
        self.end(&format!("cookie:{}", hashed(cookie))).await
    }

    /// Forgets a token (logout), on every node. True when it existed.
    pub(crate) async fn remove_token(&self, token: &str) -> Result<bool, CoreError> {
        let hash = hashed(token);
        self.forget_local(&format!("token:{hash}"));
        let taken = self
            .store
            .take_web_login(&hash, WebLoginKind::Token)
            .await?;
        Ok(taken.is_some_and(|l| l.service == self.service && l.in_force(now_us())))
    }

    /// An administrator's disconnect (the session's cut) ends the login at `key` at once:
    /// here, and in the store, so no node resumes it. Weakly held: the hook lives in the
    /// session, which the map holds.
    fn end_when_disconnected(&self, key: &str, session: &Session) {
        let entries = Arc::downgrade(&self.entries);
        let store = Arc::clone(&self.store);
        let key = key.to_owned();
        let name = format!("web login {key}");
        session.info().cut.when_pulled(&name, move || {
            let removed = entries
                .upgrade()
                .and_then(|entries| entries.lock().ok().and_then(|mut e| e.remove(&key)));
            drop(removed);
            if let Some((kind, hash)) = stored_key(&key)
                && let Ok(runtime) = tokio::runtime::Handle::try_current()
            {
                let hash = hash.to_owned();
                runtime.spawn(async move {
                    if let Err(e) = store.take_web_login(&hash, kind).await {
                        tracing::warn!("disconnected login not ended in the store: {e}");
                    }
                });
            }
        });
    }

    /// Remembers a session under a Basic credential key; for connection `bound_to` only
    /// when given (a login that used a one-time code).
    pub(crate) fn insert_basic(&self, key: String, session: Arc<Session>, bound_to: Option<&str>) {
        let key = match bound_to {
            Some(conn) => bound_key(&key, conn),
            None => key,
        };
        let grant = self.grant_of(&session);
        self.insert_local(key, session, grant, true);
    }

    fn insert_local(&self, key: String, session: Arc<Session>, grant: Option<Grant>, basic: bool) {
        self.end_when_disconnected(&key, &session);
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        let now = Instant::now();
        entries.retain(|_, e| !self.expired(e, now));
        if entries.len() >= MAX_SESSIONS
            && let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
        {
            entries.remove(&oldest);
        }
        entries.insert(
            key,
            Entry {
                session,
                grant,
                last_used: now,
                created: now,
                basic,
            },
        );
    }
}

/// A Basic credential's key for one connection.
fn bound_key(key: &str, conn: &str) -> String {
    format!("{key}@{conn}")
}

/// The registry key of an account: where it lives, shared by every copy of its session.
fn account_key(account: &wharf_core::Account) -> usize {
    std::ptr::from_ref(account) as usize
}
