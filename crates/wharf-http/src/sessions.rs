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
//! Basic credentials are remembered only as a salted SHA-256, for a short absolute time
//! (`recheck_after`). A Basic login whose password carried a one-time code is remembered
//! for its own connection only: the code was good once, so another connection (or
//! address) sending the same header must log in again, and is refused as a reused code.
//!
//! Tokens and browser sessions end when unused for `session_timeout`, and in any case
//! `session_lifetime` after the login that made them (a token made with a token keeps
//! its login's age). When the account resolves differently on a later request, the entry
//! is given the new session ([`Sessions::renew`]), so the change applies from then on.
//!
//! This module must never hold a password in clear.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wharf_auth::Grant;
use wharf_core::Session;
use wharf_types::Protocol;

/// How long a Basic credential is trusted without checking it again, and how long an
/// external method's answer about a kept login holds, unless the service says otherwise.
pub(crate) const DEFAULT_RECHECK_AFTER: Duration = Duration::from_secs(120);

/// How long a token or browser session may live at most, unless the service says otherwise.
pub(crate) const DEFAULT_SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3600);

/// Logged-in clients held at once; the least recently used goes first beyond this.
const MAX_SESSIONS: usize = 10_000;

struct Entry {
    session: Arc<Session>,
    /// What every request of this login is checked against; `None` (never expected) makes
    /// the entry unusable.
    grant: Option<Grant>,
    last_used: Instant,
    created: Instant,
    basic: bool,
    /// Browser sessions: the token every state-changing request must echo.
    csrf: Option<String>,
}

/// A browser session found by its cookie.
pub(crate) struct CookieSession {
    pub(crate) kept: Kept,
    pub(crate) csrf: String,
}

/// A kept login found by its token, cookie or Basic credential.
pub(crate) struct Kept {
    /// Where it is kept, for [`Sessions::renew`].
    pub(crate) key: String,
    pub(crate) session: Arc<Session>,
    pub(crate) grant: Option<Grant>,
}

pub(crate) fn random_token() -> String {
    wharf_types::hex(&rand::random::<[u8; 32]>())
}

/// How long a password-checked login waits for its one-time code.
const PENDING_LIFETIME: Duration = Duration::from_secs(300);

/// Wrong codes allowed for one password-checked login.
const PENDING_TRIES: u8 = 3;

/// Logins waiting for their code, held at once.
const MAX_PENDING: usize = 10_000;

/// A web login whose password was accepted, waiting for the one-time code.
pub(crate) struct PendingLogin {
    pub(crate) account: Arc<wharf_core::Account>,
    pub(crate) by: String,
    pub(crate) user: String,
    created: Instant,
    tries_left: u8,
}

/// The logged-in clients of one service.
pub(crate) struct Sessions {
    pending: Mutex<HashMap<String, PendingLogin>>,
    entries: Mutex<HashMap<String, Entry>>,
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
    pub(crate) fn new(idle: Duration) -> Sessions {
        Sessions {
            pending: Mutex::new(HashMap::new()),
            entries: Mutex::new(HashMap::new()),
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
    pub(crate) fn insert_pending(
        &self,
        account: Arc<wharf_core::Account>,
        by: String,
        user: String,
    ) -> String {
        let token = random_token();
        if let Ok(mut pending) = self.pending.lock() {
            pending.retain(|_, p| p.created.elapsed() < PENDING_LIFETIME);
            if pending.len() < MAX_PENDING {
                pending.insert(
                    token.clone(),
                    PendingLogin {
                        account,
                        by,
                        user,
                        created: Instant::now(),
                        tries_left: PENDING_TRIES,
                    },
                );
            }
        }
        token
    }

    /// Takes a pending login by its token (once; [`Sessions::retry_pending`] puts it back
    /// after a wrong code while tries are left).
    pub(crate) fn take_pending(&self, token: &str) -> Option<PendingLogin> {
        let mut pending = self.pending.lock().ok()?;
        let login = pending.remove(token)?;
        (login.created.elapsed() < PENDING_LIFETIME).then_some(login)
    }

    /// Puts a pending login back after a wrong code; false when no try is left.
    pub(crate) fn retry_pending(&self, token: &str, mut login: PendingLogin) -> bool {
        login.tries_left = login.tries_left.saturating_sub(1);
        if login.tries_left == 0 {
            return false;
        }
        match self.pending.lock() {
            Ok(mut pending) => {
                pending.insert(token.to_owned(), login);
                true
            }
            Err(_) => false,
        }
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
            .map(|(kept, _)| kept)
    }

    /// The login behind a bearer token.
    pub(crate) fn get_token(&self, token: &str) -> Option<Kept> {
        self.get_entry(format!("token:{token}"))
            .map(|(kept, _)| kept)
    }

    /// The browser session behind a cookie value.
    pub(crate) fn get_cookie(&self, cookie: &str) -> Option<CookieSession> {
        let (kept, csrf) = self.get_entry(format!("cookie:{cookie}"))?;
        Some(CookieSession { kept, csrf: csrf? })
    }

    fn get_entry(&self, key: String) -> Option<(Kept, Option<String>)> {
        let mut entries = self.entries.lock().ok()?;
        let now = Instant::now();
        let entry = entries.get_mut(&key)?;
        if self.expired(entry, now) {
            entries.remove(&key);
            return None;
        }
        entry.last_used = now;
        let csrf = entry.csrf.clone();
        let kept = Kept {
            session: Arc::clone(&entry.session),
            grant: entry.grant.clone(),
            key,
        };
        Some((kept, csrf))
    }

    /// Whether `entry` may no longer be used: idle too long, a Basic credential remembered
    /// too long, or its login older than the absolute lifetime.
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

    /// Forgets the login at `key`: its account no longer passes, and only a new login can
    /// make it good again.
    pub(crate) fn end(&self, key: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(key);
        }
    }

    /// Remembers a session under a new random token, which it returns.
    pub(crate) fn insert_token(&self, session: Arc<Session>) -> String {
        let token = random_token();
        self.insert(format!("token:{token}"), session, false, None);
        token
    }

    /// Starts a browser session; returns the cookie value.
    pub(crate) fn insert_cookie(&self, session: Arc<Session>) -> String {
        let cookie = random_token();
        self.insert(
            format!("cookie:{cookie}"),
            session,
            false,
            Some(random_token()),
        );
        cookie
    }

    /// Ends a browser session (logout).
    pub(crate) fn remove_cookie(&self, cookie: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(&format!("cookie:{cookie}"));
        }
    }

    /// Remembers a session under a Basic credential key; for connection `bound_to` only
    /// when given (a login that used a one-time code).
    pub(crate) fn insert_basic(&self, key: String, session: Arc<Session>, bound_to: Option<&str>) {
        let key = match bound_to {
            Some(conn) => bound_key(&key, conn),
            None => key,
        };
        self.insert(key, session, true, None);
    }

    fn insert(&self, key: String, session: Arc<Session>, basic: bool, csrf: Option<String>) {
        let grant = self.grant_of(&session);
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
                csrf,
            },
        );
    }

    /// Forgets a token (logout). True when it existed.
    pub(crate) fn remove_token(&self, token: &str) -> bool {
        self.entries
            .lock()
            .map(|mut e| e.remove(&format!("token:{token}")).is_some())
            .unwrap_or(false)
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
