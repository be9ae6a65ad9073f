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
//! Basic credentials are remembered only as a salted SHA-256, for a short absolute time. A
//! Basic login whose password carried a one-time code is remembered for its own connection
//! only: the code was good once, so another connection (or address) sending the same
//! header must log in again, and is refused as a reused code.
//!
//! This module must never hold a password in clear.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wharf_auth::Grant;
use wharf_core::Session;
use wharf_types::Protocol;

/// How long a Basic credential is trusted without checking it again.
const BASIC_LIFETIME: Duration = Duration::from_secs(120);

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
    pub(crate) session: Arc<Session>,
    pub(crate) csrf: String,
    pub(crate) grant: Option<Grant>,
}

/// A kept login found by its token or Basic credential.
pub(crate) struct Kept {
    pub(crate) session: Arc<Session>,
    pub(crate) grant: Option<Grant>,
}

pub(crate) fn random_token() -> String {
    (0..32)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
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
    salt: [u8; 32],
}

impl Sessions {
    pub(crate) fn new(idle: Duration) -> Sessions {
        Sessions {
            pending: Mutex::new(HashMap::new()),
            entries: Mutex::new(HashMap::new()),
            grants: Mutex::new(HashMap::new()),
            idle,
            salt: rand::random(),
        }
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
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        format!("basic:{hex}")
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
        self.get_entry(key)
            .or_else(|| self.get_entry(&bound_key(key, conn)))
            .map(|(session, _, grant)| Kept { session, grant })
    }

    /// The login behind a bearer token.
    pub(crate) fn get_token(&self, token: &str) -> Option<Kept> {
        self.get_entry(&format!("token:{token}"))
            .map(|(session, _, grant)| Kept { session, grant })
    }

    /// The browser session behind a cookie value.
    pub(crate) fn get_cookie(&self, cookie: &str) -> Option<CookieSession> {
        let (session, csrf, grant) = self.get_entry(&format!("cookie:{cookie}"))?;
        Some(CookieSession {
            session,
            csrf: csrf?,
            grant,
        })
    }

    fn get_entry(&self, key: &str) -> Option<(Arc<Session>, Option<String>, Option<Grant>)> {
        let mut entries = self.entries.lock().ok()?;
        let now = Instant::now();
        let entry = entries.get_mut(key)?;
        let expired = now.duration_since(entry.last_used) > self.idle
            || (entry.basic && now.duration_since(entry.created) > BASIC_LIFETIME);
        if expired {
            entries.remove(key);
            return None;
        }
        entry.last_used = now;
        Some((
            Arc::clone(&entry.session),
            entry.csrf.clone(),
            entry.grant.clone(),
        ))
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
        let idle = self.idle;
        entries.retain(|_, e| {
            now.duration_since(e.last_used) <= idle
                && !(e.basic && now.duration_since(e.created) > BASIC_LIFETIME)
        });
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
