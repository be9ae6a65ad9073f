//! WebDAV locks and dead properties, kept for every node that uses the store.
//!
//! Rows are keyed by a scope (the home folder on the server) and a path in it. The core
//! (`wharf_core::dav_state`) decides what conflicts and what is allowed; this module keeps the
//! rows and makes each change atomic (a lock is added in the transaction that looked for
//! conflicting ones). Expired locks are never returned and are forgotten when a lock is added.

use async_trait::async_trait;
use sqlx::Row;
use wharf_core::dav_state::{DavStore, DeadProp, Lock, PropChange};
use wharf_core::{CoreError, ErrorKind};
use wharf_types::VirtualPath;

use crate::backend::{Backing as _, Fetch, on_pool};
use crate::{Store, StoreError};

fn failure(e: impl Into<StoreError>) -> CoreError {
    CoreError::new(ErrorKind::Failure, e.into().to_string())
}

/// The prefix of everything beneath `path`.
fn beneath(path: &str) -> String {
    if path == "/" {
        "/".to_owned()
    } else {
        format!("{path}/")
    }
}

fn lock(row: &impl Fetch) -> Result<Lock, CoreError> {
    let path = row.text("path").map_err(failure)?;
    Ok(Lock {
        token: row.text("token").map_err(failure)?,
        path: VirtualPath::parse(&path).map_err(|e| failure(StoreError::Missing(e.to_string())))?,
        account: row.text("account").map_err(failure)?,
        owner: row.opt_text("owner").map_err(failure)?,
        shared: row.int("shared").map_err(failure)? != 0,
        deep: row.int("deep").map_err(failure)? != 0,
        timeout_s: u64::try_from(row.int("timeout_s").map_err(failure)?).unwrap_or(0),
        expires_us: row.int("expires_us").map_err(failure)?,
    })
}

/// Locks in force on a path, the folders above it and beneath it: `$1` scope, `$2` path,
/// `$3` now, `$4` the prefix of what is beneath the path.
const AROUND: &str = "SELECT token, path, account, owner, shared, deep, timeout_s, expires_us
     FROM dav_locks WHERE scope = $1 AND expires_us > $3
       AND (path = $2 OR path = '/' OR substr($2, 1, length(path) + 1) = path || '/'
            OR substr(path, 1, length($4)) = $4)";

impl Store {
    /// Runs `delete`, one of this module's DELETE statements taking scope ($1), path ($2)
    /// and the prefix of what lies beneath it ($3).
    async fn remove_tree(
        &self,
        delete: &'static str,
        scope: &str,
        path: &str,
    ) -> Result<(), CoreError> {
        on_pool!(self, pool => {
            sqlx::query(delete)
                .bind(scope)
                .bind(path)
                .bind(beneath(path))
                .execute(pool)
                .await
                .map_err(failure)?;
            Ok(())
        })
    }
}

#[async_trait]
impl DavStore for Store {
    async fn locks_around(
        &self,
        scope: &str,
        path: &str,
        now_us: i64,
    ) -> Result<Vec<Lock>, CoreError> {
        on_pool!(self, pool => {
            let rows = sqlx::query(AROUND)
                .bind(scope)
                .bind(path)
                .bind(now_us)
                .bind(beneath(path))
                .fetch_all(pool)
                .await
                .map_err(failure)?;
            rows.iter().map(lock).collect()
        })
    }

    async fn add_lock(
        &self,
        scope: &str,
        new: &Lock,
        now_us: i64,
        max_per_account: usize,
        conflict: &(dyn for<'x> Fn(&'x [Lock]) -> Option<Lock> + Send + Sync),
    ) -> Result<Result<(), Lock>, CoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin_write("dav_locks")
                .await
                .map_err(failure)?;
            sqlx::query("DELETE FROM dav_locks WHERE expires_us <= $1")
                .bind(now_us)
                .execute(&mut *tx)
                .await
                .map_err(failure)?;
            let held: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM dav_locks WHERE account = $1")
                .bind(&new.account)
                .fetch_one(&mut *tx)
                .await
                .map_err(failure)?;
            if usize::try_from(held).unwrap_or(usize::MAX) >= max_per_account {
                return Err(CoreError::new(
                    ErrorKind::LimitReached,
                    format!("an account holds at most {max_per_account} locks"),
                ));
            }
            let rows = sqlx::query(AROUND)
                .bind(scope)
                .bind(new.path.as_str())
                .bind(now_us)
                .bind(beneath(new.path.as_str()))
                .fetch_all(&mut *tx)
                .await
                .map_err(failure)?;
            let around = rows.iter().map(lock).collect::<Result<Vec<_>, _>>()?;
            if let Some(found) = conflict(&around) {
                return Ok(Err(found));
            }
            sqlx::query(
                "INSERT INTO dav_locks (token, scope, path, account, owner, shared, deep, timeout_s,
                   expires_us) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&new.token)
            .bind(scope)
            .bind(new.path.as_str())
            .bind(&new.account)
            .bind(&new.owner)
            .bind(i64::from(new.shared))
            .bind(i64::from(new.deep))
            .bind(i64::try_from(new.timeout_s).unwrap_or(i64::MAX))
            .bind(new.expires_us)
            .execute(&mut *tx)
            .await
            .map_err(failure)?;
            tx.commit().await.map_err(failure)?;
            Ok(Ok(()))
        })
    }

    async fn refresh_lock(
        &self,
        scope: &str,
        account: &str,
        token: &str,
        timeout_s: u64,
        now_us: i64,
    ) -> Result<Option<Lock>, CoreError> {
        on_pool!(self, pool => {
            let timeout = i64::try_from(timeout_s).unwrap_or(i64::MAX);
            let row = sqlx::query(
                "UPDATE dav_locks SET timeout_s = $4, expires_us = $5 + $4 * 1000000
                 WHERE scope = $1 AND account = $2 AND token = $3 AND expires_us > $5
                 RETURNING token, path, account, owner, shared, deep, timeout_s, expires_us",
            )
            .bind(scope)
            .bind(account)
            .bind(token)
            .bind(timeout)
            .bind(now_us)
            .fetch_optional(pool)
            .await
            .map_err(failure)?;
            row.as_ref().map(lock).transpose()
        })
    }

    async fn remove_lock(
        &self,
        scope: &str,
        account: &str,
        token: &str,
    ) -> Result<bool, CoreError> {
        on_pool!(self, pool => {
            let done =
                sqlx::query("DELETE FROM dav_locks WHERE scope = $1 AND account = $2 AND token = $3")
                    .bind(scope)
                    .bind(account)
                    .bind(token)
                    .execute(pool)
                    .await
                    .map_err(failure)?;
            Ok(done.rows_affected() > 0)
        })
    }

    async fn remove_locks(&self, scope: &str, path: &str) -> Result<(), CoreError> {
        self.remove_tree(
            "DELETE FROM dav_locks WHERE scope = $1
               AND (path = $2 OR substr(path, 1, length($3)) = $3)",
            scope,
            path,
        )
        .await
    }

    async fn props(&self, scope: &str, path: &str) -> Result<Vec<DeadProp>, CoreError> {
        on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT namespace, name, xml FROM dav_props WHERE scope = $1 AND path = $2
                 ORDER BY namespace, name",
            )
            .bind(scope)
            .bind(path)
            .fetch_all(pool)
            .await
            .map_err(failure)?;
            rows.iter()
                .map(|row| {
                    Ok(DeadProp {
                        namespace: row.try_get("namespace").map_err(failure)?,
                        name: row.try_get("name").map_err(failure)?,
                        xml: row.try_get("xml").map_err(failure)?,
                    })
                })
                .collect()
        })
    }

    async fn prop_paths(&self, scope: &str) -> Result<Vec<String>, CoreError> {
        on_pool!(self, pool => {
            sqlx::query_scalar("SELECT DISTINCT path FROM dav_props WHERE scope = $1")
                .bind(scope)
                .fetch_all(pool)
                .await
                .map_err(failure)
        })
    }

    async fn patch_props(
        &self,
        scope: &str,
        account: &str,
        path: &str,
        changes: &[PropChange],
        (max_per_entry, max_per_account): (usize, usize),
    ) -> Result<(), CoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin_write("dav_props")
                .await
                .map_err(failure)?;
            for change in changes {
                match change {
                    PropChange::Remove(namespace, name) => sqlx::query(
                        "DELETE FROM dav_props WHERE scope = $1 AND path = $2 AND namespace = $3
                           AND name = $4",
                    )
                    .bind(scope)
                    .bind(path)
                    .bind(namespace)
                    .bind(name),
                    PropChange::Set(prop) => sqlx::query(
                        "INSERT INTO dav_props (scope, path, namespace, name, account, xml)
                         VALUES ($1, $2, $3, $4, $5, $6)
                         ON CONFLICT (scope, path, namespace, name) DO UPDATE SET xml = excluded.xml",
                    )
                    .bind(scope)
                    .bind(path)
                    .bind(&prop.namespace)
                    .bind(&prop.name)
                    .bind(account)
                    .bind(&prop.xml),
                }
                .execute(&mut *tx)
                .await
                .map_err(failure)?;
            }
            let on_entry: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM dav_props WHERE scope = $1 AND path = $2")
                    .bind(scope)
                    .bind(path)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(failure)?;
            let of_account: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM dav_props WHERE account = $1")
                    .bind(account)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(failure)?;
            let over = |n: i64, max: usize| usize::try_from(n).unwrap_or(usize::MAX) > max;
            if over(on_entry, max_per_entry) || over(of_account, max_per_account) {
                // Dropping the transaction rolls the whole patch back.
                return Err(CoreError::new(
                    ErrorKind::LimitReached,
                    format!(
                        "at most {max_per_entry} properties an entry and {max_per_account} an account"
                    ),
                ));
            }
            tx.commit().await.map_err(failure)?;
            Ok(())
        })
    }

    async fn move_props(&self, scope: &str, from: &str, to: &str) -> Result<(), CoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin_write("dav_props")
                .await
                .map_err(failure)?;
            sqlx::query(
                "DELETE FROM dav_props WHERE scope = $1
                   AND (path = $2 OR substr(path, 1, length($3)) = $3)",
            )
            .bind(scope)
            .bind(to)
            .bind(beneath(to))
            .execute(&mut *tx)
            .await
            .map_err(failure)?;
            sqlx::query(
                "UPDATE dav_props SET path = $4 || substr(path, length($2) + 1) WHERE scope = $1
                   AND (path = $2 OR substr(path, 1, length($3)) = $3)",
            )
            .bind(scope)
            .bind(from)
            .bind(beneath(from))
            .bind(to)
            .execute(&mut *tx)
            .await
            .map_err(failure)?;
            tx.commit().await.map_err(failure)?;
            Ok(())
        })
    }

    async fn copy_props(
        &self,
        scope: &str,
        account: &str,
        from: &str,
        to: &str,
    ) -> Result<(), CoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin_write("dav_props")
                .await
                .map_err(failure)?;
            sqlx::query("DELETE FROM dav_props WHERE scope = $1 AND path = $2")
                .bind(scope)
                .bind(to)
                .execute(&mut *tx)
                .await
                .map_err(failure)?;
            sqlx::query(
                "INSERT INTO dav_props (scope, path, namespace, name, account, xml)
                 SELECT scope, $3, namespace, name, $4, xml FROM dav_props
                 WHERE scope = $1 AND path = $2",
            )
            .bind(scope)
            .bind(from)
            .bind(to)
            .bind(account)
            .execute(&mut *tx)
            .await
            .map_err(failure)?;
            tx.commit().await.map_err(failure)?;
            Ok(())
        })
    }

    async fn remove_props(&self, scope: &str, path: &str) -> Result<(), CoreError> {
        self.remove_tree(
            "DELETE FROM dav_props WHERE scope = $1
               AND (path = $2 OR substr(path, 1, length($3)) = $3)",
            scope,
            path,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(path: &str, token: &str, deep: bool) -> Lock {
        Lock {
            token: token.into(),
            path: VirtualPath::parse(path).unwrap(),
            account: "alice".into(),
            owner: Some("<D:owner>me</D:owner>".into()),
            shared: false,
            deep,
            timeout_s: 600,
            expires_us: 2_000,
        }
    }

    #[tokio::test]
    async fn locks_are_found_around_a_path_and_expire() {
        for under_test in crate::testing::backends().await {
            locks_are_found_around_a_path_and_expire_on(&under_test.store).await;
        }
    }

    async fn locks_are_found_around_a_path_and_expire_on(store: &Store) {
        let none = |_: &[Lock]| None;
        for l in [
            at("/a", "t1", true),
            at("/a/b/c", "t2", false),
            at("/ab", "t3", false),
        ] {
            assert_eq!(
                store.add_lock("/h", &l, 1_000, 10, &none).await.unwrap(),
                Ok(())
            );
        }
        let tokens = |v: Vec<Lock>| {
            let mut t: Vec<String> = v.into_iter().map(|l| l.token).collect();
            t.sort();
            t
        };
        let around = store.locks_around("/h", "/a/b", 1_500).await.unwrap();
        assert_eq!(tokens(around), ["t1", "t2"]);
        assert!(
            store
                .locks_around("/other", "/a/b", 1_500)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .locks_around("/h", "/a/b", 2_000)
                .await
                .unwrap()
                .is_empty()
        );
        // A conflict found in the transaction keeps the lock out.
        let refuse = |locks: &[Lock]| locks.first().cloned();
        let inner = at("/a/x", "t4", false);
        let outcome = store.add_lock("/h", &inner, 1_500, 10, &refuse).await;
        assert!(outcome.unwrap().is_err());
        // The per-account bound.
        let full = store
            .add_lock("/h", &at("/z", "t5", false), 1_500, 3, &none)
            .await;
        assert_eq!(full.unwrap_err().kind, ErrorKind::LimitReached);
        assert!(store.remove_lock("/h", "alice", "t1").await.unwrap());
        assert!(!store.remove_lock("/h", "bob", "t2").await.unwrap());
        let refreshed = store
            .refresh_lock("/h", "alice", "t2", 60, 1_500)
            .await
            .unwrap();
        assert_eq!(refreshed.unwrap().expires_us, 1_500 + 60_000_000);
        store.remove_locks("/h", "/a").await.unwrap();
        assert!(store.locks_around("/h", "/", 1_500).await.unwrap().len() == 1);
    }

    #[tokio::test]
    async fn properties_move_copy_and_stay_bounded() {
        for under_test in crate::testing::backends().await {
            properties_move_copy_and_stay_bounded_on(&under_test.store).await;
        }
    }

    async fn properties_move_copy_and_stay_bounded_on(store: &Store) {
        let prop = |name: &str| DeadProp {
            namespace: "urn:x".into(),
            name: name.into(),
            xml: format!("<x:{name} xmlns:x=\"urn:x\">v</x:{name}>").into_bytes(),
        };
        let limits = (2, 10);
        store
            .patch_props(
                "/h",
                "alice",
                "/d/f",
                &[PropChange::Set(prop("a")), PropChange::Set(prop("b"))],
                limits,
            )
            .await
            .unwrap();
        let over = store
            .patch_props("/h", "alice", "/d/f", &[PropChange::Set(prop("c"))], limits)
            .await;
        assert_eq!(over.unwrap_err().kind, ErrorKind::LimitReached);
        assert_eq!(store.props("/h", "/d/f").await.unwrap().len(), 2);
        // In order: set then removed is gone.
        let changes = [
            PropChange::Set(prop("z")),
            PropChange::Remove("urn:x".into(), "a".into()),
            PropChange::Remove("urn:x".into(), "z".into()),
        ];
        store
            .patch_props("/h", "alice", "/d/f", &changes, limits)
            .await
            .unwrap();
        store.move_props("/h", "/d", "/e").await.unwrap();
        assert!(store.props("/h", "/d/f").await.unwrap().is_empty());
        assert_eq!(store.props("/h", "/e/f").await.unwrap(), [prop("b")]);
        store.copy_props("/h", "alice", "/e/f", "/g").await.unwrap();
        let mut paths = store.prop_paths("/h").await.unwrap();
        paths.sort();
        assert_eq!(paths, ["/e/f", "/g"]);
        assert_eq!(store.props("/h", "/g").await.unwrap(), [prop("b")]);
        store.remove_props("/h", "/e").await.unwrap();
        assert!(store.props("/h", "/e/f").await.unwrap().is_empty());
    }
}
