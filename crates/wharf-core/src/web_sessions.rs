//! The web client's and REST API's kept logins (browser sessions, bearer tokens, and
//! logins waiting for their one-time code), as rows every node of a cluster reads, so a
//! request may reach any node and a node's death logs nobody out.
//!
//! A login is found by the SHA-256 of its token (cookie value, bearer token or pending
//! login's token) and never by the token itself, and a browser session's CSRF token is
//! kept as its SHA-256 too: whoever reads the rows cannot use them. The HTTP front-end
//! decides what a row means (which login, which checks); the store keeps rows through the
//! [`WebSessionStore`] trait it implements. [`MemoryWebSessions`] keeps them in one
//! process, for a service given no store (tests).
//!
//! It must never hold a token or a password in clear.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::error::{CoreError, ErrorKind};

/// What a kept login is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebLoginKind {
    /// A browser session (its cookie), with a CSRF token.
    Cookie,
    /// A bearer token of the REST API.
    Token,
    /// A login whose password was accepted, waiting for its one-time code.
    Pending,
}

impl WebLoginKind {
    /// Its name in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            WebLoginKind::Cookie => "cookie",
            WebLoginKind::Token => "token",
            WebLoginKind::Pending => "pending",
        }
    }
}

/// One kept login, as a row. Times are µs since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebLogin {
    /// What it is.
    pub kind: WebLoginKind,
    /// The service it was made on (logins are kept per service name, which every node of a
    /// cluster shares).
    pub service: String,
    /// The account, as the method that vouched for it names it.
    pub account: String,
    /// The name as typed at login (what a one-time code is checked for).
    pub user: String,
    /// The authentication method that vouched for it.
    pub method: String,
    /// A one-time code was accepted for it.
    pub second_factor: bool,
    /// The id of the core session its requests record.
    pub session_id: String,
    /// SHA-256 of a browser session's CSRF token (lowercase hex).
    pub csrf_hash: Option<String>,
    /// When its credential was verified; its absolute lifetime counts from here.
    pub since_us: i64,
    /// When it was last seen used (written at most every so often, see the front-end).
    pub used_us: i64,
    /// How long it may stay unused.
    pub idle_us: i64,
    /// When it ends, used or not.
    pub expires_us: i64,
    /// Wrong one-time codes still allowed (pending logins).
    pub tries_left: i64,
}

impl WebLogin {
    /// Whether it may still be used at `now_us`.
    pub fn in_force(&self, now_us: i64) -> bool {
        now_us < self.expires_us && now_us < self.used_us.saturating_add(self.idle_us)
    }
}

/// Where kept logins live: the store (every node) or one process's memory.
#[async_trait]
pub trait WebSessionStore: Send + Sync {
    /// Keeps `login` under `hash`, first forgetting every login no longer in force at
    /// `now_us`. When its service already holds `max` logins of its class (browser
    /// sessions and tokens together; pending logins apart), the least recently used of
    /// that class goes first when `evict`, or the new one is refused (`false`).
    async fn add_web_login(
        &self,
        hash: &str,
        login: &WebLogin,
        now_us: i64,
        max: usize,
        evict: bool,
    ) -> Result<bool, CoreError>;

    /// The login of `kind` under `hash` if it is in force at `now_us` (one it finds ended
    /// is forgotten); its last use becomes `now_us` when the one kept is older than
    /// `touch_after_us`.
    async fn web_login(
        &self,
        hash: &str,
        kind: WebLoginKind,
        now_us: i64,
        touch_after_us: i64,
    ) -> Result<Option<WebLogin>, CoreError>;

    /// Removes the login of `kind` under `hash` and returns it (in force or not): only one
    /// caller, on any node, gets it.
    async fn take_web_login(
        &self,
        hash: &str,
        kind: WebLoginKind,
    ) -> Result<Option<WebLogin>, CoreError>;
}

/// Kept logins in this process only.
#[derive(Default)]
pub struct MemoryWebSessions {
    rows: Mutex<HashMap<String, WebLogin>>,
}

fn poisoned() -> CoreError {
    CoreError::new(ErrorKind::Failure, "kept logins unavailable")
}

fn class(kind: WebLoginKind) -> bool {
    kind == WebLoginKind::Pending
}

#[async_trait]
impl WebSessionStore for MemoryWebSessions {
    async fn add_web_login(
        &self,
        hash: &str,
        login: &WebLogin,
        now_us: i64,
        max: usize,
        evict: bool,
    ) -> Result<bool, CoreError> {
        let mut rows = self.rows.lock().map_err(|_| poisoned())?;
        rows.retain(|_, l| l.in_force(now_us));
        let same = |l: &WebLogin| l.service == login.service && class(l.kind) == class(login.kind);
        if rows.values().filter(|l| same(l)).count() >= max {
            if !evict {
                return Ok(false);
            }
            if let Some(oldest) = rows
                .iter()
                .filter(|(_, l)| same(l))
                .min_by_key(|(_, l)| l.used_us)
                .map(|(k, _)| k.clone())
            {
                rows.remove(&oldest);
            }
        }
        rows.insert(hash.to_owned(), login.clone());
        Ok(true)
    }

    async fn web_login(
        &self,
        hash: &str,
        kind: WebLoginKind,
        now_us: i64,
        touch_after_us: i64,
    ) -> Result<Option<WebLogin>, CoreError> {
        let mut rows = self.rows.lock().map_err(|_| poisoned())?;
        let Some(login) = rows.get_mut(hash).filter(|l| l.kind == kind) else {
            return Ok(None);
        };
        if !login.in_force(now_us) {
            rows.remove(hash);
            return Ok(None);
        }
        if login.used_us < now_us.saturating_sub(touch_after_us) {
            login.used_us = now_us;
        }
        Ok(Some(login.clone()))
    }

    async fn take_web_login(
        &self,
        hash: &str,
        kind: WebLoginKind,
    ) -> Result<Option<WebLogin>, CoreError> {
        let mut rows = self.rows.lock().map_err(|_| poisoned())?;
        if rows.get(hash).is_some_and(|l| l.kind == kind) {
            return Ok(rows.remove(hash));
        }
        Ok(None)
    }
}
