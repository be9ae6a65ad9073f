//! The configuration every node of a cluster shares: the sections that are policy rather
//! than a node's own addresses, ports and paths, kept as TOML text with a revision number.
//! Each publish writes a new row; rows are never changed, so the history stays readable
//! and any node can tell from one number whether it runs the newest.
//!
//! [`Store::publish_cluster_configuration`] writes under the table's writer lock and only
//! on top of the revision its caller read, so two administrators publishing at once (on any
//! node) cannot both pass: the second is told the head moved.
//!
//! This module must never parse or judge the text: the binary validates it before a publish
//! and again on every node that applies it.

use crate::backend::{Backing, Fetch, on_pool};
use crate::{Store, StoreError, now_us};

/// One published revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterRevision {
    /// 1, 2, 3…: one more than the revision it replaced.
    pub revision: i64,
    /// The shared sections, as TOML.
    pub text: String,
    /// Who published it: an administrator's name, or `cli:USER`.
    pub admin: String,
    /// When (µs since the Unix epoch, the publishing node's clock).
    pub published_us: i64,
}

/// The answer to [`Store::publish_cluster_configuration`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Publish {
    /// Written as this revision.
    Published(i64),
    /// Another revision was published since the caller read `head`: nothing written.
    Moved {
        /// The head now.
        head: i64,
    },
}

fn revision(row: &impl Fetch) -> Result<ClusterRevision, StoreError> {
    Ok(ClusterRevision {
        revision: row.int("revision")?,
        text: row.text("text")?,
        admin: row.text("admin")?,
        published_us: row.int("published_us")?,
    })
}

impl Store {
    /// The newest revision's number; 0 when none was ever published. One indexed read:
    /// every node asks it each second.
    pub async fn cluster_configuration_head(&self) -> Result<i64, StoreError> {
        on_pool!(self, pool => {
            let head: i64 =
                sqlx::query_scalar("SELECT COALESCE(MAX(revision), 0) FROM cluster_configuration")
                    .fetch_one(pool)
                    .await?;
            Ok(head)
        })
    }

    /// Revision `number`, or the newest when `None`.
    pub async fn cluster_configuration(
        &self,
        number: Option<i64>,
    ) -> Result<Option<ClusterRevision>, StoreError> {
        on_pool!(self, pool => {
            let row = match number {
                Some(n) => sqlx::query(
                    "SELECT revision, text, admin, published_us FROM cluster_configuration \
                     WHERE revision = $1",
                )
                .bind(n)
                .fetch_optional(pool)
                .await?,
                None => sqlx::query(
                    "SELECT revision, text, admin, published_us FROM cluster_configuration \
                     ORDER BY revision DESC LIMIT 1",
                )
                .fetch_optional(pool)
                .await?,
            };
            row.as_ref().map(revision).transpose()
        })
    }

    /// The newest `limit` revisions, newest first, without their text.
    pub async fn cluster_configuration_history(
        &self,
        limit: i64,
    ) -> Result<Vec<ClusterRevision>, StoreError> {
        on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT revision, '' AS text, admin, published_us FROM cluster_configuration \
                 ORDER BY revision DESC LIMIT $1",
            )
            .bind(limit)
            .fetch_all(pool)
            .await?;
            rows.iter().map(revision).collect()
        })
    }

    /// Writes `text` as revision `head + 1`, provided `head` is still the newest.
    pub async fn publish_cluster_configuration(
        &self,
        head: i64,
        text: &str,
        admin: &str,
    ) -> Result<Publish, StoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin_write("cluster_configuration").await?;
            let now: i64 =
                sqlx::query_scalar("SELECT COALESCE(MAX(revision), 0) FROM cluster_configuration")
                    .fetch_one(&mut *tx)
                    .await?;
            if now != head {
                return Ok(Publish::Moved { head: now });
            }
            let next = head.saturating_add(1);
            sqlx::query(
                "INSERT INTO cluster_configuration (revision, text, admin, published_us) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(next)
            .bind(text)
            .bind(admin)
            .bind(now_us())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(Publish::Published(next))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Publish;

    #[tokio::test]
    async fn revisions_follow_each_other_and_a_stale_head_is_refused() {
        for t in crate::testing::backends().await {
            let s = &t.store;
            assert_eq!(
                s.cluster_configuration_head().await.unwrap(),
                0,
                "{}",
                t.name
            );
            assert_eq!(
                s.cluster_configuration(None).await.unwrap(),
                None,
                "{}",
                t.name
            );
            assert_eq!(
                s.publish_cluster_configuration(0, "[ban]\nthreshold = 5\n", "ann")
                    .await
                    .unwrap(),
                Publish::Published(1),
                "{}",
                t.name
            );
            // A second writer that read revision 0 too is refused and writes nothing.
            assert_eq!(
                s.publish_cluster_configuration(0, "[ban]\nthreshold = 9\n", "bea")
                    .await
                    .unwrap(),
                Publish::Moved { head: 1 },
                "{}",
                t.name
            );
            assert_eq!(
                s.publish_cluster_configuration(1, "[ban]\nthreshold = 7\n", "cli:root")
                    .await
                    .unwrap(),
                Publish::Published(2),
                "{}",
                t.name
            );
            let newest = s.cluster_configuration(None).await.unwrap().unwrap();
            assert_eq!(
                (newest.revision, newest.text.as_str(), newest.admin.as_str()),
                (2, "[ban]\nthreshold = 7\n", "cli:root"),
                "{}",
                t.name
            );
            let first = s.cluster_configuration(Some(1)).await.unwrap().unwrap();
            assert_eq!(first.admin, "ann", "{}", t.name);
            let history = s.cluster_configuration_history(10).await.unwrap();
            let numbers: Vec<i64> = history.iter().map(|r| r.revision).collect();
            assert_eq!(numbers, [2, 1], "{}", t.name);
            assert_eq!(
                s.cluster_configuration_head().await.unwrap(),
                2,
                "{}",
                t.name
            );
        }
    }
}
