//! The sessions open now on this node, as administrators see them: list them, and
//! disconnect one. The registry itself is the core's (`wharf_core::live`); this adds the
//! role check and the record naming who disconnected whom.

use wharf_core::live::SessionView;
use wharf_core::{EventKind, Live};

use crate::{Actor, AdminError, Need, Operations};

/// A session as the API and the console show it.
pub fn session_view(session: &SessionView) -> serde_json::Value {
    let mut view = serde_json::to_value(session).unwrap_or_default();
    if let Some(fields) = view.as_object_mut() {
        fields.insert("since".into(), crate::time_text(session.since_us).into());
    }
    view
}

impl Operations {
    /// The sessions open on this node, oldest first, with their transfers in flight.
    pub fn sessions(&self, actor: &Actor, live: &Live) -> Result<Vec<SessionView>, AdminError> {
        actor.require(Need::Read, "list open sessions")?;
        Ok(live.list())
    }

    /// Ends session `id`'s connection (with every session it carries: an SSH connection's
    /// other channels too): transfers in flight fail, the client is disconnected, and a
    /// web login must log in again.
    pub async fn disconnect(
        &self,
        actor: &Actor,
        live: &Live,
        id: &str,
    ) -> Result<SessionView, AdminError> {
        actor.require(Need::Operate, "disconnect sessions")?;
        let Some(session) = live.disconnect(id) else {
            return Err(AdminError::NotFound(format!(
                "no session {id:?} is open on this node (or it is being disconnected already)"
            )));
        };
        let mut event = actor
            .change(
                EventKind::SessionDisconnected,
                id,
                Some(&session_view(&session)),
                None,
                format!(
                    "{} session {id} of {} disconnected",
                    session.protocol, session.account
                ),
            )
            .attr("account", session.account.clone());
        if let Some(remote) = &session.remote {
            event = event.attr("client", remote.clone());
        }
        self.record(event).await?;
        Ok(session)
    }
}
