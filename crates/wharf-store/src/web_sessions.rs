//! The HTTP services' kept logins (browser sessions, bearer tokens, logins waiting for
//! their one-time code), one row each, for every node that uses the store.
//!
//! A row is keyed by the SHA-256 of its token; the token itself is never written, nor a
//! browser session's CSRF token (its SHA-256 only). What a row means is decided by the
//! front-end (`wharf_core::web_sessions`); this module keeps rows, finds one with a single
//! indexed read, and forgets rows no longer in force (when a login is added, and when one
//! is found ended). A pending login is taken by one delete, so two nodes never both get it.
//!
//! The cap on logins per service is kept without a table lock: logins made at the same
//! instant on several nodes may pass it by their number, which bounds nothing less.

use async_trait::async_trait;
use wharf_core::web_sessions::{WebLogin, WebLoginKind, WebSessionStore};
use wharf_core::{CoreError, ErrorKind};

use crate::backend::{Fetch, on_pool};
use crate::{Store, StoreError};

fn failure(e: impl Into<StoreError>) -> CoreError {
    CoreError::new(ErrorKind::Failure, e.into().to_string())
}

const COLUMNS: &str = "kind, service, account, login_name, method, second_factor, session_id,
     csrf_hash, since_us, used_us, idle_us, expires_us, tries_left";

fn kind_of(name: &str) -> Result<WebLoginKind, CoreError> {
    match name {
        "cookie" => Ok(WebLoginKind::Cookie),
        "token" => Ok(WebLoginKind::Token),
        "pending" => Ok(WebLoginKind::Pending),
        other => Err(failure(StoreError::Missing(format!(
            "unknown kind of kept login {other:?}"
        )))),
    }
}

fn login(row: &impl Fetch) -> Result<WebLogin, CoreError> {
    Ok(WebLogin {
        kind: kind_of(&row.text("kind").map_err(failure)?)?,
        service: row.text("service").map_err(failure)?,
        account: row.text("account").map_err(failure)?,
        user: row.text("login_name").map_err(failure)?,
        method: row.text("method").map_err(failure)?,
        second_factor: row.int("second_factor").map_err(failure)? != 0,
        session_id: row.text("session_id").map_err(failure)?,
        csrf_hash: row.opt_text("csrf_hash").map_err(failure)?,
        since_us: row.int("since_us").map_err(failure)?,
        used_us: row.int("used_us").map_err(failure)?,
        idle_us: row.int("idle_us").map_err(failure)?,
        expires_us: row.int("expires_us").map_err(failure)?,
        tries_left: row.int("tries_left").map_err(failure)?,
    })
}

/// The kinds counted together against a service's cap.
fn class(kind: WebLoginKind) -> (&'static str, &'static str) {
    match kind {
        WebLoginKind::Pending => ("pending", "pending"),
        _ => ("cookie", "token"),
    }
}

#[async_trait]
impl WebSessionStore for Store {
    async fn add_web_login(
        &self,
        hash: &str,
        new: &WebLogin,
        now_us: i64,
        max: usize,
        evict: bool,
    ) -> Result<bool, CoreError> {
        let (a, b) = class(new.kind);
        on_pool!(self, pool => {
            sqlx::query("DELETE FROM web_sessions WHERE expires_us <= $1 OR idle_until_us <= $1")
                .bind(now_us)
                .execute(pool)
                .await
                .map_err(failure)?;
            let held: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM web_sessions WHERE service = $1 AND kind IN ($2, $3)",
            )
            .bind(&new.service)
            .bind(a)
            .bind(b)
            .fetch_one(pool)
            .await
            .map_err(failure)?;
            if usize::try_from(held).unwrap_or(usize::MAX) >= max {
                if !evict {
                    return Ok(false);
                }
                sqlx::query(
                    "DELETE FROM web_sessions WHERE token_hash IN (SELECT token_hash
                       FROM web_sessions WHERE service = $1 AND kind IN ($2, $3)
                       ORDER BY used_us LIMIT $4)",
                )
                .bind(&new.service)
                .bind(a)
                .bind(b)
                .bind(held.saturating_sub(i64::try_from(max).unwrap_or(i64::MAX)) + 1)
                .execute(pool)
                .await
                .map_err(failure)?;
            }
            sqlx::query(
                "INSERT INTO web_sessions (token_hash, kind, service, account, login_name, method,
                   second_factor, session_id, csrf_hash, since_us, used_us, idle_us,
                   idle_until_us, expires_us, tries_left)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
                 ON CONFLICT (token_hash) DO NOTHING",
            )
            .bind(hash)
            .bind(new.kind.as_str())
            .bind(&new.service)
            .bind(&new.account)
            .bind(&new.user)
            .bind(&new.method)
            .bind(i64::from(new.second_factor))
            .bind(&new.session_id)
            .bind(new.csrf_hash.as_deref())
            .bind(new.since_us)
            .bind(new.used_us)
            .bind(new.idle_us)
            .bind(new.used_us.saturating_add(new.idle_us))
            .bind(new.expires_us)
            .bind(new.tries_left)
            .execute(pool)
            .await
            .map_err(failure)
            .map(|done| done.rows_affected() == 1)
        })
    }

    async fn web_login(
        &self,
        hash: &str,
        kind: WebLoginKind,
        now_us: i64,
        touch_after_us: i64,
    ) -> Result<Option<WebLogin>, CoreError> {
        let select =
            format!("SELECT {COLUMNS} FROM web_sessions WHERE token_hash = $1 AND kind = $2");
        on_pool!(self, pool => {
            let row = sqlx::query(sqlx::AssertSqlSafe(select))
                .bind(hash)
                .bind(kind.as_str())
                .fetch_optional(pool)
                .await
                .map_err(failure)?;
            let Some(row) = row else {
                return Ok(None);
            };
            let mut found = login(&row)?;
            if !found.in_force(now_us) {
                sqlx::query("DELETE FROM web_sessions WHERE token_hash = $1")
                    .bind(hash)
                    .execute(pool)
                    .await
                    .map_err(failure)?;
                return Ok(None);
            }
            if found.used_us < now_us.saturating_sub(touch_after_us) {
                // Only forward: a slower node's older time never shortens the login.
                sqlx::query(
                    "UPDATE web_sessions SET used_us = $2, idle_until_us = $2 + idle_us
                     WHERE token_hash = $1 AND used_us < $2",
                )
                .bind(hash)
                .bind(now_us)
                .execute(pool)
                .await
                .map_err(failure)?;
                found.used_us = now_us;
            }
            Ok(Some(found))
        })
    }

    async fn take_web_login(
        &self,
        hash: &str,
        kind: WebLoginKind,
    ) -> Result<Option<WebLogin>, CoreError> {
        let delete = format!(
            "DELETE FROM web_sessions WHERE token_hash = $1 AND kind = $2 RETURNING {COLUMNS}"
        );
        on_pool!(self, pool => {
            let row = sqlx::query(sqlx::AssertSqlSafe(delete))
                .bind(hash)
                .bind(kind.as_str())
                .fetch_optional(pool)
                .await
                .map_err(failure)?;
            row.as_ref().map(login).transpose()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kind: WebLoginKind, service: &str, now: i64) -> WebLogin {
        WebLogin {
            kind,
            service: service.to_owned(),
            account: "alice".to_owned(),
            user: "Alice".to_owned(),
            method: "local".to_owned(),
            second_factor: true,
            session_id: "h1-7".to_owned(),
            csrf_hash: (kind == WebLoginKind::Cookie).then(|| "ab".repeat(32)),
            since_us: now - 5,
            used_us: now,
            idle_us: 1_000,
            expires_us: now + 10_000,
            tries_left: 3,
        }
    }

    #[tokio::test]
    async fn logins_are_found_touched_expired_and_taken() {
        for t in crate::testing::backends().await {
            let s = &t.store;
            let now = 1_000_000;
            let cookie = row(WebLoginKind::Cookie, "web", now);
            assert!(
                s.add_web_login("h-cookie", &cookie, now, 10, true)
                    .await
                    .unwrap(),
                "{}",
                t.name
            );
            // Found only as what it is.
            assert_eq!(
                s.web_login("h-cookie", WebLoginKind::Token, now, 100)
                    .await
                    .unwrap(),
                None,
                "{}",
                t.name
            );
            let found = s
                .web_login("h-cookie", WebLoginKind::Cookie, now + 50, 100)
                .await
                .unwrap();
            assert_eq!(
                found.as_ref(),
                Some(&cookie),
                "{}: not touched within the slack",
                t.name
            );
            // Used past the slack: the idle time counts from then.
            let found = s
                .web_login("h-cookie", WebLoginKind::Cookie, now + 900, 100)
                .await
                .unwrap();
            assert_eq!(found.map(|l| l.used_us), Some(now + 900), "{}", t.name);
            assert!(
                s.web_login("h-cookie", WebLoginKind::Cookie, now + 1_800, 100)
                    .await
                    .unwrap()
                    .is_some(),
                "{}: the touch kept it",
                t.name
            );
            // Idle too long: gone, and forgotten.
            assert_eq!(
                s.web_login("h-cookie", WebLoginKind::Cookie, now + 2_801, 100)
                    .await
                    .unwrap(),
                None,
                "{}",
                t.name
            );
            assert_eq!(
                s.take_web_login("h-cookie", WebLoginKind::Cookie)
                    .await
                    .unwrap(),
                None
            );
            // The absolute lifetime holds however it is used.
            let token = WebLogin {
                idle_us: 1_000_000,
                ..row(WebLoginKind::Token, "web", now)
            };
            assert!(
                s.add_web_login("h-token", &token, now, 10, true)
                    .await
                    .unwrap()
            );
            assert!(
                s.web_login("h-token", WebLoginKind::Token, now + 9_999, 0)
                    .await
                    .unwrap()
                    .is_some()
            );
            assert_eq!(
                s.web_login("h-token", WebLoginKind::Token, now + 10_000, 0)
                    .await
                    .unwrap(),
                None
            );
            // A pending login is taken once.
            let pending = row(WebLoginKind::Pending, "web", now);
            assert!(
                s.add_web_login("h-pending", &pending, now, 10, false)
                    .await
                    .unwrap()
            );
            assert_eq!(
                s.take_web_login("h-pending", WebLoginKind::Pending)
                    .await
                    .unwrap(),
                Some(pending),
                "{}",
                t.name
            );
            assert_eq!(
                s.take_web_login("h-pending", WebLoginKind::Pending)
                    .await
                    .unwrap(),
                None
            );
        }
    }

    #[tokio::test]
    async fn caps_evict_the_least_recently_used_or_refuse() {
        for t in crate::testing::backends().await {
            let s = &t.store;
            let now = 1_000_000;
            for (i, hash) in ["a", "b", "c"].iter().enumerate() {
                let mut l = row(WebLoginKind::Token, "web", now);
                l.used_us = now + i as i64;
                assert!(s.add_web_login(hash, &l, now, 3, true).await.unwrap());
            }
            // Another service's logins count apart.
            let other = row(WebLoginKind::Cookie, "other", now);
            assert!(s.add_web_login("o", &other, now, 3, true).await.unwrap());
            let newest = row(WebLoginKind::Cookie, "web", now + 10);
            assert!(s.add_web_login("d", &newest, now, 3, true).await.unwrap());
            assert_eq!(
                s.web_login("a", WebLoginKind::Token, now + 10, 1_000)
                    .await
                    .unwrap(),
                None,
                "{}",
                t.name
            );
            for hash in ["b", "c"] {
                assert!(
                    s.web_login(hash, WebLoginKind::Token, now + 10, 1_000)
                        .await
                        .unwrap()
                        .is_some()
                );
            }
            assert!(
                s.web_login("o", WebLoginKind::Cookie, now + 10, 1_000)
                    .await
                    .unwrap()
                    .is_some()
            );
            // Pending logins are refused past theirs, and do not count against the others.
            for hash in ["p1", "p2", "p3"] {
                let p = row(WebLoginKind::Pending, "web", now);
                assert!(s.add_web_login(hash, &p, now, 3, false).await.unwrap());
            }
            let p = row(WebLoginKind::Pending, "web", now);
            assert!(
                !s.add_web_login("p4", &p, now, 3, false).await.unwrap(),
                "{}",
                t.name
            );
            // Rows no longer in force are forgotten when a login is added.
            let late = now + 20_000;
            let fresh = row(WebLoginKind::Token, "web", late);
            assert!(s.add_web_login("e", &fresh, late, 3, true).await.unwrap());
            let left: i64 = on_pool!(s, pool => sqlx::query_scalar("SELECT COUNT(*) FROM web_sessions")
                .fetch_one(pool).await.unwrap());
            assert_eq!(left, 1, "{}", t.name);
        }
    }
}
