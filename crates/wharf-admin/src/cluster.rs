//! The configuration a cluster shares, as administrators publish it: each publish is a new
//! revision in the store that every node applies within two seconds.
//!
//! The text is validated by the caller (the binary, which owns the configuration's
//! sections) before it comes here; this operation checks the role, writes the revision on
//! top of the one the administrator read, and records who published what. The record
//! holds the revision's number and digest, never its text: a section may name a secret's
//! place, and the text itself is kept, per revision, in the store.

use serde_json::{Value, json};
use wharf_core::EventKind;
use wharf_store::{ClusterRevision, Publish};

use crate::{Actor, AdminError, Need, Operations};

/// The most revisions one history listing returns.
pub const MAX_REVISIONS: i64 = 200;

/// A revision as the API and the console show it (`text` only when asked).
pub fn revision_view(revision: &ClusterRevision, with_text: bool) -> Value {
    let mut view = json!({
        "revision": revision.revision,
        "published_by": revision.admin,
        "published": crate::time_text(revision.published_us),
    });
    if with_text {
        view["text"] = Value::String(revision.text.clone());
        view["sha256"] = Value::String(digest(&revision.text));
    }
    view
}

fn digest(text: &str) -> String {
    wharf_types::hex(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes()).as_ref(),
    )
}

impl Operations {
    /// Revision `number`, or the newest; `None` when none was ever published.
    pub async fn cluster_configuration(
        &self,
        actor: &Actor,
        number: Option<i64>,
    ) -> Result<Option<ClusterRevision>, AdminError> {
        actor.require(Need::Administer, "read the cluster configuration")?;
        Ok(self.store.cluster_configuration(number).await?)
    }

    /// The newest revisions, newest first, without their text.
    pub async fn cluster_configuration_history(
        &self,
        actor: &Actor,
    ) -> Result<Vec<ClusterRevision>, AdminError> {
        actor.require(Need::Administer, "read the cluster configuration")?;
        Ok(self
            .store
            .cluster_configuration_history(MAX_REVISIONS)
            .await?)
    }

    /// Publishes `text` (already validated by the caller) as the revision after `head`,
    /// the newest the actor read (0: none yet); returns its number.
    pub async fn publish_cluster_configuration(
        &self,
        actor: &Actor,
        head: i64,
        text: &str,
    ) -> Result<i64, AdminError> {
        actor.require(Need::Administer, "publish the cluster configuration")?;
        let revision = match self
            .store
            .publish_cluster_configuration(head, text, &actor.label())
            .await?
        {
            Publish::Published(revision) => revision,
            Publish::Moved { head: now } => {
                return Err(AdminError::Conflict(format!(
                    "revision {now} was published since revision {head} was read: \
                     read it, make the change again, and publish"
                )));
            }
        };
        self.record(
            actor
                .change(
                    EventKind::ClusterConfigurationPublished,
                    &revision.to_string(),
                    None,
                    None,
                    format!("cluster configuration revision {revision} published"),
                )
                .attr("revision", revision.to_string())
                .attr("previous", head.to_string())
                .attr("sha256", digest(text))
                .attr("bytes", text.len().to_string()),
        )
        .await?;
        Ok(revision)
    }
}
