//! Who makes an administrative change, and how its record is written.

use std::net::SocketAddr;

use async_trait::async_trait;
use wharf_core::{Event, EventKind};
use wharf_types::Protocol;

use crate::{AdminError, Need, Role};

/// Who acts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    /// The operating-system user running a `wharf` command: whoever may read the
    /// configuration and its store may do everything, so it holds the admin role.
    Operator(String),
    /// A Manager administrator, logged in or through one of its API tokens.
    Admin {
        /// The administrator's name.
        name: String,
        /// The role in force (a token's, when one is used: never more than its owner's).
        role: Role,
        /// The API token's name, when the request came with one.
        token: Option<String>,
    },
}

/// An administrative change's author, where it came from and through which service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// Who.
    pub who: Who,
    /// The service it came through (`cli` for a command).
    pub service: String,
    /// The client's address (Manager requests).
    pub remote: Option<SocketAddr>,
    /// The connection the request came on (Manager requests), as its records name it.
    pub session: Option<String>,
}

impl Actor {
    /// The operating-system user `operator` running a command.
    pub fn cli(operator: impl Into<String>) -> Actor {
        Actor {
            who: Who::Operator(operator.into()),
            service: "cli".to_owned(),
            remote: None,
            session: None,
        }
    }

    /// A Manager administrator on `service`, from `remote`, on connection `session`.
    pub fn admin(
        name: impl Into<String>,
        role: Role,
        token: Option<String>,
        service: impl Into<String>,
        remote: SocketAddr,
        session: impl Into<String>,
    ) -> Actor {
        Actor {
            who: Who::Admin {
                name: name.into(),
                role,
                token,
            },
            service: service.into(),
            remote: Some(remote),
            session: Some(session.into()),
        }
    }

    /// The role in force.
    pub fn role(&self) -> Role {
        match &self.who {
            Who::Operator(_) => Role::Admin,
            Who::Admin { role, .. } => *role,
        }
    }

    /// The administrator's name, when it is one.
    pub fn admin_name(&self) -> Option<&str> {
        match &self.who {
            Who::Admin { name, .. } => Some(name),
            Who::Operator(_) => None,
        }
    }

    /// Who acted, in one word: the administrator's name, or `cli:USER` for a command.
    pub fn label(&self) -> String {
        match &self.who {
            Who::Admin { name, .. } => name.clone(),
            Who::Operator(user) => format!("cli:{user}"),
        }
    }

    /// Refuses unless the actor's role allows `need`; `what` names the request.
    pub(crate) fn require(&self, need: Need, what: &str) -> Result<(), AdminError> {
        if self.role().may(need) {
            return Ok(());
        }
        Err(AdminError::Forbidden(format!(
            "the {} role may not {what}",
            self.role()
        )))
    }

    /// A record of `kind` made by this actor.
    pub fn event(&self, kind: EventKind) -> Event {
        let mut event = Event::new(kind);
        event.protocol = Some(Protocol::Admin);
        event.service = Some(self.service.clone());
        event.remote = self.remote;
        event.session = self.session.clone();
        match &self.who {
            Who::Operator(user) => event.attr("operator", user.clone()),
            Who::Admin { name, token, .. } => {
                let event = event.attr("admin", name.clone());
                match token {
                    Some(token) => event.attr("token", token.clone()),
                    None => event,
                }
            }
        }
    }

    /// A record of a change to `target`, with what it was and what it is (JSON views that
    /// hold no secret).
    pub(crate) fn change(
        &self,
        kind: EventKind,
        target: &str,
        before: Option<&serde_json::Value>,
        after: Option<&serde_json::Value>,
        message: impl Into<String>,
    ) -> Event {
        let mut event = self
            .event(kind)
            .attr("target", target.to_owned())
            .message(message);
        if let Some(before) = before {
            event = event.attr("before", before.to_string());
        }
        if let Some(after) = after {
            event = event.attr("after", after.to_string());
        }
        event
    }
}

/// Where records go: the running server's bus (waiting until each is durable) or, for a
/// command, the audit writer directly.
#[async_trait]
pub trait Recorder: Send + Sync {
    /// Writes `event`; returns once it is durable.
    async fn record(&self, event: Event) -> Result<(), AdminError>;
}
