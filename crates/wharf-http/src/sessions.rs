//! Logged-in HTTP clients: bearer tokens and a short-lived cache of HTTP Basic credentials,
//! each holding one core session.
//!
//! HTTP is stateless, but the core session (home folder, rules, `session.started`/`ended`)
//! is not: one is opened per login and kept while it is used. Basic credentials are
//! remembered only as a salted SHA-256, for a short absolute time, so a script making many
//! requests does not pay Argon2id each time and a changed password takes effect quickly.
//!
//! This module must never hold a password in clear.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wharf_core::Session;
use wharf_types::Protocol;

/// How long a Basic credential is trusted without checking it again.
const BASIC_LIFETIME: Duration = Duration::from_secs(120);

/// Logged-in clients held at once; the least recently used goes first beyond this.
const MAX_SESSIONS: usize = 10_000;

struct Entry {
    session: Arc<Session>,
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
    idle: Duration,
    salt: [u8; 32],
}

impl Sessions {
    pub(crate) fn new(idle: Duration) -> Sessions {
        Sessions {
            pending: Mutex::new(HashMap::new()),
            entries: Mutex::new(HashMap::new()),
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

    /// The session for `key`, if it is still valid; refreshes its idle time.
    pub(crate) fn get(&self, key: &str) -> Option<Arc<Session>> {
        self.get_entry(key).map(|(session, _)| session)
    }

    /// The browser session behind a cookie value.
    pub(crate) fn get_cookie(&self, cookie: &str) -> Option<CookieSession> {
        let (session, csrf) = self.get_entry(&format!("cookie:{cookie}"))?;
        Some(CookieSession {
            session,
            csrf: csrf?,
        })
    }

    fn get_entry(&self, key: &str) -> Option<(Arc<Session>, Option<String>)> {
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
        Some((Arc::clone(&entry.session), entry.csrf.clone()))
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

    /// Remembers a session under a Basic credential key.
    pub(crate) fn insert_basic(&self, key: String, session: Arc<Session>) {
        self.insert(key, session, true, None);
    }

    fn insert(&self, key: String, session: Arc<Session>, basic: bool, csrf: Option<String>) {
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
