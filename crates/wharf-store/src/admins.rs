//! Manager administrators (role, enabled, second factor) and their API tokens.
//!
//! A token row keeps only the SHA-256 of the token, so a copy of the store (a backup, a
//! read replica) lends no one the Manager's REST interface; a request finds its token by
//! that digest in one indexed read ([`Store::admin_token_by_hash`]). Removing an
//! administrator removes their tokens in the same transaction, and a token is only made
//! for an administrator who exists at that moment: no token outlives its administrator to
//! serve a namesake made later.
//!
//! This module never decides what a role may do, whether a disabled administrator's token
//! still works or whether the last administrator may go: the Manager does, with
//! [`Store::enabled_admin_count_with_role`] to tell. Role texts are stored as given.

use std::fmt;

use crate::backend::{Backing, Fetch, on_pool};
use crate::{Store, StoreError, now_us};

/// A Manager administrator as stored.
///
/// `Debug` leaves out the password hash and the second factor's secret.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminRecord {
    /// Login name.
    pub name: String,
    /// PHC-format password hash.
    pub password_hash: String,
    /// `admin`, `operator` or `auditor`; the store keeps what it is given, callers check it.
    pub role: String,
    /// Disabled administrators cannot log in.
    pub enabled: bool,
    /// The enrolled second factor (TOTP secret and recovery-code digests), as JSON.
    pub second_factor: Option<String>,
    /// Logins need a second factor (with or without one enrolled: without, they fail).
    pub require_second_factor: bool,
    /// When the administrator was made (µs since the Unix epoch); set by the store.
    pub created_us: i64,
    /// When the record last changed (µs since the Unix epoch); set by the store.
    pub updated_us: i64,
}

/// Enabled administrators with the `admin` role other than `$1`.
const OTHER_ADMINS: &str =
    "SELECT COUNT(*) FROM admins WHERE enabled = 1 AND role = 'admin' AND name <> $1";

/// How a guarded change of an administrator ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminWrite {
    /// Written; the new `updated_us` (0 for a removal).
    Done(i64),
    /// No administrator of that name.
    Missing,
    /// Changed by someone else since it was read: read it again.
    Changed,
    /// It would leave no enabled administrator with the `admin` role.
    LastAdmin,
}

/// An API token of the Manager's REST interface, as stored.
///
/// `Debug` leaves out the token's digest.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminTokenRecord {
    /// The token's name, unique; how administrators list and revoke it.
    pub name: String,
    /// The token's SHA-256, in lowercase hex; the token itself is never stored.
    pub token_hash: String,
    /// The administrator the token acts for.
    pub admin: String,
    /// The role the token acts with (callers keep it within its administrator's).
    pub role: String,
    /// When the token was made (µs since the Unix epoch).
    pub created_us: i64,
    /// When the token stops working (µs since the Unix epoch).
    pub expires_us: i64,
    /// When the token was last used (µs since the Unix epoch); `None`: never.
    pub used_us: Option<i64>,
}

/// Stands for a secret in `Debug` output.
struct Hidden;

impl fmt::Debug for Hidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("…")
    }
}

impl fmt::Debug for AdminRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Records end up in logs and panic messages; whether a second factor is enrolled
        // shows, its secret does not.
        f.debug_struct("AdminRecord")
            .field("name", &self.name)
            .field("password_hash", &Hidden)
            .field("role", &self.role)
            .field("enabled", &self.enabled)
            .field(
                "second_factor",
                &self.second_factor.as_ref().map(|_| Hidden),
            )
            .field("require_second_factor", &self.require_second_factor)
            .field("created_us", &self.created_us)
            .field("updated_us", &self.updated_us)
            .finish()
    }
}

impl fmt::Debug for AdminTokenRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A digest is no password, but it is what a request is looked up by: kept out of
        // logs all the same.
        f.debug_struct("AdminTokenRecord")
            .field("name", &self.name)
            .field("token_hash", &Hidden)
            .field("admin", &self.admin)
            .field("role", &self.role)
            .field("created_us", &self.created_us)
            .field("expires_us", &self.expires_us)
            .field("used_us", &self.used_us)
            .finish()
    }
}

fn admin_from_row(row: &impl Fetch) -> Result<AdminRecord, StoreError> {
    Ok(AdminRecord {
        name: row.text("name")?,
        password_hash: row.text("password_hash")?,
        role: row.text("role")?,
        enabled: row.int("enabled")? != 0,
        second_factor: row.opt_text("second_factor_json")?,
        require_second_factor: row.int("require_second_factor")? != 0,
        created_us: row.int("created_us")?,
        updated_us: row.int("updated_us")?,
    })
}

fn token_from_row(row: &impl Fetch) -> Result<AdminTokenRecord, StoreError> {
    Ok(AdminTokenRecord {
        name: row.text("name")?,
        token_hash: row.text("token_hash")?,
        admin: row.text("admin")?,
        role: row.text("role")?,
        created_us: row.int("created_us")?,
        expires_us: row.int("expires_us")?,
        used_us: row.opt_int("used_us")?,
    })
}

impl Store {
    /// Creates a Manager administrator; fails with [`StoreError::Exists`] if the name is
    /// taken. `created_us` and `updated_us` are set to now, whatever the record says.
    pub async fn create_admin(&self, admin: &AdminRecord) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            let result = sqlx::query(
                "INSERT INTO admins (name, password_hash, role, enabled, second_factor_json, require_second_factor, created_us, updated_us) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT (name) DO NOTHING",
            )
            .bind(&admin.name)
            .bind(&admin.password_hash)
            .bind(&admin.role)
            .bind(i64::from(admin.enabled))
            .bind(&admin.second_factor)
            .bind(i64::from(admin.require_second_factor))
            .bind(now_us())
            .execute(pool)
            .await?;
            if result.rows_affected() == 0 {
                return Err(StoreError::Exists(format!("administrator {}", admin.name)));
            }
            Ok(())
        })
    }

    /// One administrator by name.
    pub async fn admin(&self, name: &str) -> Result<Option<AdminRecord>, StoreError> {
        on_pool!(self, pool => {
            let row = sqlx::query("SELECT * FROM admins WHERE name = $1")
                .bind(name)
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(admin_from_row).transpose()
        })
    }

    /// Every administrator, by name.
    pub async fn admins(&self) -> Result<Vec<AdminRecord>, StoreError> {
        on_pool!(self, pool => {
            let rows = sqlx::query("SELECT * FROM admins ORDER BY name")
                .fetch_all(pool)
                .await?;
            rows.iter().map(admin_from_row).collect()
        })
    }

    /// Replaces an existing administrator's fields (all but the name and `created_us`) and
    /// sets `updated_us` to now; false if there is no such administrator.
    pub async fn update_admin(&self, admin: &AdminRecord) -> Result<bool, StoreError> {
        on_pool!(self, pool => {
            let result = sqlx::query(
                "UPDATE admins SET password_hash = $2, role = $3, enabled = $4, \
                 second_factor_json = $5, require_second_factor = $6, updated_us = $7 \
                 WHERE name = $1",
            )
            .bind(&admin.name)
            .bind(&admin.password_hash)
            .bind(&admin.role)
            .bind(i64::from(admin.enabled))
            .bind(&admin.second_factor)
            .bind(i64::from(admin.require_second_factor))
            .bind(now_us())
            .execute(pool)
            .await?;
            Ok(result.rows_affected() > 0)
        })
    }

    /// Removes an administrator and every token of theirs, in one transaction; false if
    /// there was no such administrator (their stray tokens, if any, go all the same).
    pub async fn remove_admin(&self, name: &str) -> Result<bool, StoreError> {
        on_pool!(self, pool => {
            // The administrators' writer lock: a token being made for this administrator at
            // the same moment waits for the commit, then finds them gone
            // (`create_admin_token`), instead of slipping in after the delete.
            let mut tx = pool.begin_write("admins").await?;
            sqlx::query("DELETE FROM admin_tokens WHERE admin = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?;
            let done = sqlx::query("DELETE FROM admins WHERE name = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// Writes `admin` only if its row is still as it was read (`updated_us` is `seen_us`),
    /// and never so that no enabled administrator with the `admin` role is left; all under
    /// the administrators' writer lock, so two such changes at once (on any node) cannot
    /// both pass. Returns the new `updated_us` when done.
    pub async fn write_admin(
        &self,
        admin: &AdminRecord,
        seen_us: i64,
    ) -> Result<AdminWrite, StoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin_write("admins").await?;
            let row = sqlx::query("SELECT role, enabled, updated_us FROM admins WHERE name = $1")
                .bind(&admin.name)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(row) = row else {
                return Ok(AdminWrite::Missing);
            };
            if row.int("updated_us")? != seen_us {
                return Ok(AdminWrite::Changed);
            }
            let was_admin = row.text("role")? == "admin" && row.int("enabled")? != 0;
            let stays_admin = admin.role == "admin" && admin.enabled;
            if was_admin && !stays_admin {
                let others: i64 = sqlx::query_scalar(OTHER_ADMINS)
                    .bind(&admin.name)
                    .fetch_one(&mut *tx)
                    .await?;
                if others == 0 {
                    return Ok(AdminWrite::LastAdmin);
                }
            }
            // Always later than what was read, even within one microsecond.
            let updated = now_us().max(seen_us.saturating_add(1));
            sqlx::query(
                "UPDATE admins SET password_hash = $2, role = $3, enabled = $4, \
                 second_factor_json = $5, require_second_factor = $6, updated_us = $7 \
                 WHERE name = $1",
            )
            .bind(&admin.name)
            .bind(&admin.password_hash)
            .bind(&admin.role)
            .bind(i64::from(admin.enabled))
            .bind(&admin.second_factor)
            .bind(i64::from(admin.require_second_factor))
            .bind(updated)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(AdminWrite::Done(updated))
        })
    }

    /// Removes an administrator and its tokens unless it is the last enabled one with the
    /// `admin` role, under the administrators' writer lock.
    pub async fn remove_admin_keeping_one(&self, name: &str) -> Result<AdminWrite, StoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin_write("admins").await?;
            let row = sqlx::query("SELECT role, enabled FROM admins WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(row) = row else {
                return Ok(AdminWrite::Missing);
            };
            let is_admin = row.text("role")? == "admin" && row.int("enabled")? != 0;
            if is_admin {
                let others: i64 = sqlx::query_scalar(OTHER_ADMINS)
                    .bind(name)
                    .fetch_one(&mut *tx)
                    .await?;
                if others == 0 {
                    return Ok(AdminWrite::LastAdmin);
                }
            }
            sqlx::query("DELETE FROM admin_tokens WHERE admin = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM admins WHERE name = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(AdminWrite::Done(0))
        })
    }

    /// Ends every Manager browser session and pending login of administrator `name` (its
    /// password changed, it was disabled, demoted or removed): their next request finds
    /// none.
    pub async fn end_admin_sessions(&self, name: &str) -> Result<u64, StoreError> {
        on_pool!(self, pool => {
            let done = sqlx::query("DELETE FROM web_sessions WHERE account = $1 AND method = 'manager'")
                .bind(name)
                .execute(pool)
                .await?;
            Ok(done.rows_affected())
        })
    }

    /// How many Manager administrators exist (enabled or not).
    pub async fn admin_count(&self) -> Result<i64, StoreError> {
        on_pool!(self, pool => {
            Ok(sqlx::query_scalar("SELECT COUNT(*) FROM admins")
                .fetch_one(pool)
                .await?)
        })
    }

    /// How many enabled administrators have `role`: the Manager refuses to remove, disable
    /// or demote the last enabled `admin`.
    pub async fn enabled_admin_count_with_role(&self, role: &str) -> Result<i64, StoreError> {
        on_pool!(self, pool => {
            Ok(sqlx::query_scalar("SELECT COUNT(*) FROM admins WHERE enabled = 1 AND role = $1")
                .bind(role)
                .fetch_one(pool)
                .await?)
        })
    }

    /// Records an API token. Fails with [`StoreError::Exists`] if its name is taken, and
    /// with [`StoreError::Missing`] if its administrator does not exist (removed meanwhile).
    pub async fn create_admin_token(&self, token: &AdminTokenRecord) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            // Under the same lock `remove_admin` takes, so the administrator cannot go
            // between the check and the insert.
            let mut tx = pool.begin_write("admins").await?;
            let admin: Option<String> =
                sqlx::query_scalar("SELECT name FROM admins WHERE name = $1")
                    .bind(&token.admin)
                    .fetch_optional(&mut *tx)
                    .await?;
            if admin.is_none() {
                return Err(StoreError::Missing(format!("administrator {}", token.admin)));
            }
            let result = sqlx::query(
                "INSERT INTO admin_tokens (name, token_hash, admin, role, created_us, expires_us, used_us) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name) DO NOTHING",
            )
            .bind(&token.name)
            .bind(&token.token_hash)
            .bind(&token.admin)
            .bind(&token.role)
            .bind(token.created_us)
            .bind(token.expires_us)
            .bind(token.used_us)
            .execute(&mut *tx)
            .await?;
            if result.rows_affected() == 0 {
                return Err(StoreError::Exists(format!("token {}", token.name)));
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Every API token, by name.
    pub async fn admin_tokens(&self) -> Result<Vec<AdminTokenRecord>, StoreError> {
        on_pool!(self, pool => {
            let rows = sqlx::query("SELECT * FROM admin_tokens ORDER BY name")
                .fetch_all(pool)
                .await?;
            rows.iter().map(token_from_row).collect()
        })
    }

    /// The token whose SHA-256 (lowercase hex) is `hash`, expired or not: one indexed read.
    pub async fn admin_token_by_hash(
        &self,
        hash: &str,
    ) -> Result<Option<AdminTokenRecord>, StoreError> {
        on_pool!(self, pool => {
            let row = sqlx::query("SELECT * FROM admin_tokens WHERE token_hash = $1")
                .bind(hash)
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(token_from_row).transpose()
        })
    }

    /// Notes that the token whose SHA-256 is `hash` was used at `now_us`: one indexed
    /// write, no transaction. A time older than the one recorded is ignored, so nodes
    /// touching the same token out of order never move it back. No such token: nothing.
    pub async fn touch_admin_token(&self, hash: &str, now_us: i64) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query(
                "UPDATE admin_tokens SET used_us = $2 \
                 WHERE token_hash = $1 AND (used_us IS NULL OR used_us < $2)",
            )
            .bind(hash)
            .bind(now_us)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// Removes (revokes) a token by name; false if there was none.
    pub async fn remove_admin_token(&self, name: &str) -> Result<bool, StoreError> {
        on_pool!(self, pool => {
            let result = sqlx::query("DELETE FROM admin_tokens WHERE name = $1")
                .bind(name)
                .execute(pool)
                .await?;
            Ok(result.rows_affected() > 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Pool;
    use crate::migrate;

    fn admin(name: &str, role: &str) -> AdminRecord {
        AdminRecord {
            name: name.to_owned(),
            password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$salt${name}"),
            role: role.to_owned(),
            enabled: true,
            second_factor: None,
            require_second_factor: false,
            // The store sets both times; these must not survive.
            created_us: 7,
            updated_us: 7,
        }
    }

    fn token(name: &str, admin: &str) -> AdminTokenRecord {
        AdminTokenRecord {
            name: name.to_owned(),
            // A stand-in digest, distinct per name.
            token_hash: format!(
                "{:0>64}",
                name.bytes().map(|b| format!("{b:02x}")).collect::<String>()
            ),
            admin: admin.to_owned(),
            role: "operator".to_owned(),
            created_us: 1_000,
            expires_us: 9_000,
            used_us: None,
        }
    }

    #[tokio::test]
    async fn guarded_writes_keep_one_admin_and_refuse_stale_reads() {
        for t in crate::testing::backends().await {
            let s = &t.store;
            s.create_admin(&admin("ann", "admin")).await.unwrap();
            s.create_admin(&admin("bea", "admin")).await.unwrap();
            let ann = s.admin("ann").await.unwrap().unwrap();
            // A change made from a stale read is refused, whoever wrote in between.
            let mut demoted = ann.clone();
            demoted.role = "auditor".into();
            let AdminWrite::Done(now) = s.write_admin(&demoted, ann.updated_us).await.unwrap()
            else {
                panic!("{}: first write", t.name);
            };
            assert!(now > ann.updated_us, "{}", t.name);
            assert_eq!(
                s.write_admin(&ann, ann.updated_us).await.unwrap(),
                AdminWrite::Changed,
                "{}",
                t.name
            );
            // Bea is now the last enabled admin: neither disabled, demoted nor removed.
            let bea = s.admin("bea").await.unwrap().unwrap();
            let mut off = bea.clone();
            off.enabled = false;
            assert_eq!(
                s.write_admin(&off, bea.updated_us).await.unwrap(),
                AdminWrite::LastAdmin,
                "{}",
                t.name
            );
            assert_eq!(
                s.remove_admin_keeping_one("bea").await.unwrap(),
                AdminWrite::LastAdmin,
                "{}",
                t.name
            );
            assert_eq!(
                s.remove_admin_keeping_one("ann").await.unwrap(),
                AdminWrite::Done(0),
                "{}",
                t.name
            );
            assert_eq!(
                s.remove_admin_keeping_one("ann").await.unwrap(),
                AdminWrite::Missing,
                "{}",
                t.name
            );
            assert_eq!(s.end_admin_sessions("bea").await.unwrap(), 0, "{}", t.name);
        }
    }

    #[tokio::test]
    async fn admins_are_created_read_updated_and_removed() {
        for t in crate::testing::backends().await {
            let s = &t.store;
            let mut zed = admin("zed", "operator");
            zed.second_factor = Some(r#"{"secret":"JBSWY3DPEHPK3PXP","recovery":[]}"#.into());
            zed.require_second_factor = true;
            s.create_admin(&zed).await.unwrap();
            s.create_admin(&admin("amy", "admin")).await.unwrap();

            let stored = s.admin("zed").await.unwrap().unwrap();
            assert!(stored.created_us > 7, "{}: the store sets the time", t.name);
            assert_eq!(stored.updated_us, stored.created_us, "{}", t.name);
            zed.created_us = stored.created_us;
            zed.updated_us = stored.updated_us;
            assert_eq!(stored, zed, "{}", t.name);
            assert_eq!(s.admin("nobody").await.unwrap(), None, "{}", t.name);
            let names: Vec<String> = s
                .admins()
                .await
                .unwrap()
                .into_iter()
                .map(|a| a.name)
                .collect();
            assert_eq!(names, ["amy", "zed"], "{}: by name", t.name);
            assert_eq!(s.admin_count().await.unwrap(), 2, "{}", t.name);
            assert_eq!(
                s.enabled_admin_count_with_role("admin").await.unwrap(),
                1,
                "{}",
                t.name
            );

            // Every field but the name and the creation time changes.
            zed.role = "admin".into();
            zed.enabled = false;
            zed.second_factor = None;
            zed.require_second_factor = false;
            zed.password_hash = "$argon2id$other".into();
            zed.created_us = 1;
            assert!(s.update_admin(&zed).await.unwrap(), "{}", t.name);
            let updated = s.admin("zed").await.unwrap().unwrap();
            assert_eq!(updated.created_us, stored.created_us, "{}", t.name);
            assert!(updated.updated_us >= stored.updated_us, "{}", t.name);
            zed.created_us = updated.created_us;
            zed.updated_us = updated.updated_us;
            assert_eq!(updated, zed, "{}", t.name);
            // A disabled admin does not count; an enabled one does.
            assert_eq!(
                s.enabled_admin_count_with_role("admin").await.unwrap(),
                1,
                "{}",
                t.name
            );
            assert_eq!(
                s.enabled_admin_count_with_role("operator").await.unwrap(),
                0,
                "{}",
                t.name
            );
            assert!(
                !s.update_admin(&admin("nobody", "admin")).await.unwrap(),
                "{}",
                t.name
            );

            assert!(s.remove_admin("zed").await.unwrap(), "{}", t.name);
            assert!(!s.remove_admin("zed").await.unwrap(), "{}", t.name);
            assert_eq!(s.admin("zed").await.unwrap(), None, "{}", t.name);
            assert_eq!(s.admin_count().await.unwrap(), 1, "{}", t.name);
        }
    }

    #[tokio::test]
    async fn taken_names_are_refused() {
        for t in crate::testing::backends().await {
            let s = &t.store;
            s.create_admin(&admin("amy", "admin")).await.unwrap();
            match s.create_admin(&admin("amy", "auditor")).await {
                Err(StoreError::Exists(what)) => assert_eq!(what, "administrator amy"),
                other => panic!("{}: {other:?}", t.name),
            }
            assert_eq!(
                s.admin("amy").await.unwrap().unwrap().role,
                "admin",
                "{}: the first one stays",
                t.name
            );

            s.create_admin_token(&token("ci", "amy")).await.unwrap();
            let mut again = token("ci", "amy");
            again.token_hash = "f".repeat(64);
            match s.create_admin_token(&again).await {
                Err(StoreError::Exists(what)) => assert_eq!(what, "token ci"),
                other => panic!("{}: {other:?}", t.name),
            }
            match s.create_admin_token(&token("lost", "nobody")).await {
                Err(StoreError::Missing(what)) => assert_eq!(what, "administrator nobody"),
                other => panic!("{}: {other:?}", t.name),
            }
            assert_eq!(
                s.admin_tokens().await.unwrap(),
                [token("ci", "amy")],
                "{}",
                t.name
            );
        }
    }

    #[tokio::test]
    async fn removing_an_admin_removes_their_tokens() {
        for t in crate::testing::backends().await {
            let s = &t.store;
            s.create_admin(&admin("amy", "admin")).await.unwrap();
            s.create_admin(&admin("bob", "operator")).await.unwrap();
            s.create_admin_token(&token("amy-ci", "amy")).await.unwrap();
            s.create_admin_token(&token("amy-cron", "amy"))
                .await
                .unwrap();
            s.create_admin_token(&token("bob-ci", "bob")).await.unwrap();

            assert!(s.remove_admin("amy").await.unwrap(), "{}", t.name);
            assert_eq!(
                s.admin_tokens().await.unwrap(),
                [token("bob-ci", "bob")],
                "{}",
                t.name
            );
            let gone = token("amy-ci", "amy").token_hash;
            assert_eq!(
                s.admin_token_by_hash(&gone).await.unwrap(),
                None,
                "{}",
                t.name
            );
            // A namesake made later gets none of the old tokens.
            s.create_admin(&admin("amy", "admin")).await.unwrap();
            assert_eq!(
                s.admin_token_by_hash(&gone).await.unwrap(),
                None,
                "{}",
                t.name
            );
        }
    }

    #[tokio::test]
    async fn tokens_are_found_by_hash_touched_and_removed() {
        for t in crate::testing::backends().await {
            let s = &t.store;
            s.create_admin(&admin("amy", "admin")).await.unwrap();
            let ci = token("ci", "amy");
            let cron = token("cron", "amy");
            s.create_admin_token(&cron).await.unwrap();
            s.create_admin_token(&ci).await.unwrap();
            assert_eq!(
                s.admin_tokens().await.unwrap(),
                [ci.clone(), cron.clone()],
                "{}: by name",
                t.name
            );
            assert_eq!(
                s.admin_token_by_hash(&ci.token_hash).await.unwrap(),
                Some(ci.clone()),
                "{}",
                t.name
            );
            assert_eq!(
                s.admin_token_by_hash(&"0".repeat(64)).await.unwrap(),
                None,
                "{}",
                t.name
            );

            s.touch_admin_token(&ci.token_hash, 5_000).await.unwrap();
            let used = |r: Option<AdminTokenRecord>| r.and_then(|r| r.used_us);
            assert_eq!(
                used(s.admin_token_by_hash(&ci.token_hash).await.unwrap()),
                Some(5_000),
                "{}",
                t.name
            );
            // Out of order: an older use never moves the time back.
            s.touch_admin_token(&ci.token_hash, 4_000).await.unwrap();
            assert_eq!(
                used(s.admin_token_by_hash(&ci.token_hash).await.unwrap()),
                Some(5_000),
                "{}",
                t.name
            );
            s.touch_admin_token(&ci.token_hash, 6_000).await.unwrap();
            assert_eq!(
                used(s.admin_token_by_hash(&ci.token_hash).await.unwrap()),
                Some(6_000),
                "{}",
                t.name
            );
            assert_eq!(
                used(s.admin_token_by_hash(&cron.token_hash).await.unwrap()),
                None,
                "{}: the other token is untouched",
                t.name
            );
            // Touching a token that is gone is no error.
            s.touch_admin_token(&"0".repeat(64), 6_000).await.unwrap();

            assert!(s.remove_admin_token("ci").await.unwrap(), "{}", t.name);
            assert!(!s.remove_admin_token("ci").await.unwrap(), "{}", t.name);
            assert_eq!(
                s.admin_token_by_hash(&ci.token_hash).await.unwrap(),
                None,
                "{}",
                t.name
            );
            assert_eq!(s.admin_tokens().await.unwrap(), [cron], "{}", t.name);
            assert!(s.admin("amy").await.unwrap().is_some(), "{}", t.name);
        }
    }

    #[test]
    fn debug_leaves_secrets_out() {
        let mut amy = admin("amy", "admin");
        amy.second_factor = Some(r#"{"secret":"JBSWY3DPEHPK3PXP"}"#.into());
        let shown = format!("{amy:?}");
        assert!(!shown.contains("argon2id"), "{shown}");
        assert!(!shown.contains("JBSWY3DPEHPK3PXP"), "{shown}");
        assert!(shown.contains("amy") && shown.contains("second_factor: Some(…)"));
        let ci = token("ci", "amy");
        let shown = format!("{ci:?}");
        assert!(!shown.contains(&ci.token_hash), "{shown}");
        assert!(shown.contains("token_hash: …"), "{shown}");
    }

    /// An administrator made by a Wharf from before migration 14 keeps working: an enabled
    /// `admin` with no second factor, last changed when made.
    #[tokio::test]
    async fn migration_14_keeps_older_admins() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.db");
        let mut urls = vec![("sqlite", format!("sqlite:{}", file.display()))];
        if std::env::var_os("WHARF_TEST_NO_POSTGRES").is_none() {
            urls.push(("postgres", crate::testing::new_database().await));
        } else {
            eprintln!("WHARF_TEST_NO_POSTGRES is set: the PostgreSQL half of this test is skipped");
        }
        for (name, url) in urls {
            let older = match name {
                "sqlite" => Store {
                    pool: Pool::Sqlite(crate::connect::open_sqlite(&file).await.unwrap()),
                },
                _ => Store {
                    pool: Pool::Postgres(sqlx::PgPool::connect(&url).await.unwrap()),
                },
            };
            let (migrations, schema) = match older.backend() {
                crate::Backend::Sqlite => (
                    migrate::SQLITE,
                    "CREATE TABLE wharf_schema (version INTEGER PRIMARY KEY, applied_us INTEGER NOT NULL)",
                ),
                crate::Backend::Postgres => (
                    migrate::POSTGRES,
                    "CREATE TABLE wharf_schema (version BIGINT PRIMARY KEY, applied_us BIGINT NOT NULL)",
                ),
            };
            // The store as an older Wharf left it: migrations 1 to 13, and one administrator.
            on_pool!(older, pool => {
                sqlx::raw_sql(schema).execute(pool).await.unwrap();
                for (version, sql) in migrations.iter().filter(|(v, _)| *v < 14) {
                    sqlx::raw_sql(*sql).execute(pool).await.unwrap();
                    sqlx::query("INSERT INTO wharf_schema (version, applied_us) VALUES ($1, 0)")
                        .bind(version)
                        .execute(pool)
                        .await
                        .unwrap();
                }
                sqlx::query(
                    "INSERT INTO admins (name, password_hash, created_us) VALUES ('old', 'hash', 5)",
                )
                .execute(pool)
                .await
                .unwrap();
            });
            older.close().await;

            // This Wharf opens it the ordinary way, applying migration 14.
            let store = Store::open_url(&url, dir.path()).await.unwrap();
            assert_eq!(
                store.admin("old").await.unwrap(),
                Some(AdminRecord {
                    name: "old".into(),
                    password_hash: "hash".into(),
                    role: "admin".into(),
                    enabled: true,
                    second_factor: None,
                    require_second_factor: false,
                    created_us: 5,
                    updated_us: 5,
                }),
                "{name}"
            );
            assert_eq!(
                store.enabled_admin_count_with_role("admin").await.unwrap(),
                1,
                "{name}"
            );
            store.close().await;
        }
    }
}
