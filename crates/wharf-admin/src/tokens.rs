//! API tokens for automation: each made for an administrator, with a name, a role (never
//! more than its owner's) and an expiry. The token is shown once; the store keeps its
//! SHA-256. A request with a token acts as its owner, under the lesser of the token's role
//! and the owner's role now, and only while the owner is enabled.

use aws_lc_rs::digest;
use wharf_core::EventKind;
use wharf_store::AdminTokenRecord;
use wharf_types::AccountName;

use crate::admins::role_of_record;
use crate::views::token_view;
use crate::{Actor, AdminError, Identity, Need, Operations, Role};

/// The longest a token may live (ten years): keeps the expiry representable and makes
/// "forever" a choice someone wrote down.
pub const MAX_TOKEN_DAYS: u32 = 3650;

/// What every token starts with, so a leaked one is recognisable by secret scanners.
const PREFIX: &str = "wharf_";

/// A token to make.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// Its name (unique; the characters an account name may have).
    pub name: String,
    /// The administrator it acts as (the actor itself when `None`).
    pub owner: Option<String>,
    /// Its role.
    pub role: Role,
    /// Days until it expires (1 to [`MAX_TOKEN_DAYS`]).
    pub days: u32,
}

/// A token just made: the only time the token itself is seen.
#[derive(Debug, Clone)]
pub struct TokenMade {
    /// The bearer token.
    pub token: String,
    /// What the store keeps of it.
    pub record: AdminTokenRecord,
}

/// The SHA-256 (lowercase hex) a token is kept and found by.
fn digest_of(token: &str) -> String {
    wharf_types::hex(digest::digest(&digest::SHA256, token.as_bytes()).as_ref())
}

/// A request's token resolved: who it acts as, under which role, named how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenIdentity {
    /// The owner, with the role in force.
    pub identity: Identity,
    /// The token's name.
    pub token: String,
}

impl Operations {
    /// Every token, by name.
    pub async fn tokens(&self, actor: &Actor) -> Result<Vec<AdminTokenRecord>, AdminError> {
        actor.require(Need::Read, "list API tokens")?;
        Ok(self.store.admin_tokens().await?)
    }

    /// Makes a token.
    pub async fn add_token(&self, actor: &Actor, new: NewToken) -> Result<TokenMade, AdminError> {
        actor.require(Need::Administer, "make API tokens")?;
        let name = AccountName::new(&new.name)
            .map_err(|e| AdminError::invalid(format!("token name: {e}")))?;
        let owner_name = match (&new.owner, actor.admin_name()) {
            (Some(owner), _) => owner.clone(),
            (None, Some(own)) => own.to_owned(),
            (None, None) => {
                return Err(AdminError::invalid(
                    "name the administrator the token acts as (--admin NAME)",
                ));
            }
        };
        let owner = self.load_admin(&owner_name).await?;
        if new.role > role_of_record(&owner) {
            return Err(AdminError::invalid(format!(
                "a token cannot hold more than its administrator's role ({})",
                owner.role
            )));
        }
        if new.days == 0 || new.days > MAX_TOKEN_DAYS {
            return Err(AdminError::invalid(format!(
                "a token lives 1 to {MAX_TOKEN_DAYS} days"
            )));
        }
        let mut raw = [0u8; 32];
        rand::fill(&mut raw);
        let token = format!("{PREFIX}{}", wharf_types::hex(&raw));
        let now = crate::now_us();
        let record = AdminTokenRecord {
            name: name.as_str().to_owned(),
            token_hash: digest_of(&token),
            admin: owner.name.clone(),
            role: new.role.as_str().to_owned(),
            created_us: now,
            expires_us: now.saturating_add(i64::from(new.days) * 86_400_000_000),
            used_us: None,
        };
        self.store
            .create_admin_token(&record)
            .await
            .map_err(|e| match e {
                wharf_store::StoreError::Exists(what) => {
                    AdminError::Exists(format!("{what} already exists"))
                }
                other => other.into(),
            })?;
        self.record(actor.change(
            EventKind::TokenCreated,
            &record.name,
            None,
            Some(&token_view(&record)),
            format!(
                "API token {} made for {} with the {} role",
                record.name, record.admin, record.role
            ),
        ))
        .await?;
        Ok(TokenMade { token, record })
    }

    /// Revokes a token.
    pub async fn remove_token(&self, actor: &Actor, name: &str) -> Result<(), AdminError> {
        actor.require(Need::Administer, "revoke API tokens")?;
        let before = self
            .store
            .admin_tokens()
            .await?
            .into_iter()
            .find(|t| t.name == name);
        if !self.store.remove_admin_token(name).await? {
            return Err(AdminError::NotFound(format!("no API token named {name:?}")));
        }
        self.record(actor.change(
            EventKind::TokenRemoved,
            name,
            before.as_ref().map(token_view).as_ref(),
            None,
            format!("API token {name} revoked"),
        ))
        .await
    }

    /// Who a bearer token acts as: `None` for an unknown or expired token, or one whose
    /// owner is gone or disabled.
    pub async fn token_identity(&self, token: &str) -> Result<Option<TokenIdentity>, AdminError> {
        if !token.starts_with(PREFIX) || token.len() > 200 {
            return Ok(None);
        }
        let hash = digest_of(token);
        let Some(record) = self.store.admin_token_by_hash(&hash).await? else {
            return Ok(None);
        };
        let now = crate::now_us();
        if now >= record.expires_us {
            return Ok(None);
        }
        let Some(owner) = self.store.admin(&record.admin).await?.filter(|a| a.enabled) else {
            return Ok(None);
        };
        // Written at most once a minute: a busy script costs no write per request.
        if record.used_us.is_none_or(|used| now - used > 60_000_000) {
            self.store.touch_admin_token(&hash, now).await?;
        }
        let token_role = record.role.parse().unwrap_or(Role::Auditor);
        Ok(Some(TokenIdentity {
            identity: Identity {
                name: owner.name.clone(),
                role: token_role.min(role_of_record(&owner)),
            },
            token: record.name,
        }))
    }
}
