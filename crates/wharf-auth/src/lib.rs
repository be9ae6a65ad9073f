//! Wharf authentication: who may log in, and what account they become.
//!
//! [`LocalAuthenticator`] checks a password (Argon2id, in constant time and on the blocking
//! pool) or a verified SSH public key against the store, then resolves the account into a
//! [`wharf_core::Account`]: its home (given, or from its first group's template), its rules
//! (account first, then groups in order), its protocols and upload policy.
//!
//! Failures carry a reason for the audit trail ([`AuthFailure::reason`]) but the client is
//! only ever told "denied", the same for an unknown account and a wrong password. Passwords
//! never leave this crate except as hashes.

#![forbid(unsafe_code)]

mod ban;
mod keys;
mod password;
mod policy;
mod resolve;

use std::sync::Arc;

use wharf_core::Account;
use wharf_store::{AccountRecord, Store};
use wharf_types::Protocol;

pub use ban::{BanEngine, BanPolicy, MAX_TRACKED, Refusal, rfc3339};
pub use keys::{PublicKey, fingerprint, parse_public_key};
pub use password::{hash_password, verify_password};
pub use policy::{MAX_PASSWORD_CHARS, PasswordPolicy, PasswordRejected};
pub use resolve::{address_allowed, resolve_account, resolve_account_with};

/// A proof of identity offered by a client.
#[derive(Debug)]
pub enum Credential<'a> {
    /// A password, checked against the stored hash.
    Password(&'a str),
    /// A public key whose signature the transport has already verified.
    PublicKey(&'a PublicKey),
}

impl Credential<'_> {
    /// The method's name for the audit trail.
    pub fn method(&self) -> &'static str {
        match self {
            Credential::Password(_) => "password",
            Credential::PublicKey(_) => "publickey",
        }
    }
}

/// Why a login was refused; for the audit trail only.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthFailure {
    /// No account has that name.
    #[error("unknown account")]
    UnknownAccount,
    /// The account is disabled.
    #[error("account disabled")]
    Disabled,
    /// The password did not match.
    #[error("wrong password")]
    WrongPassword,
    /// The account has no password (key-only).
    #[error("password login not enabled for this account")]
    NoPassword,
    /// The key is not one of the account's keys.
    #[error("key not authorised for this account")]
    KeyNotAuthorised,
    /// The account's expiry date has passed.
    #[error("account expired")]
    Expired,
    /// The client's address is denied, or outside the allowed networks, for the account.
    #[error("address not allowed for this account")]
    AddressNotAllowed,
    /// None of the protocols this service offers are allowed for the account.
    #[error("protocol not allowed for this account")]
    ProtocolNotAllowed,
    /// The account's configuration cannot be turned into a session (no home, bad rule).
    #[error("account misconfigured: {0}")]
    Misconfigured(String),
    /// The store failed.
    #[error("store error: {0}")]
    Store(#[from] wharf_store::StoreError),
}

impl AuthFailure {
    /// A short reason for events.
    pub fn reason(&self) -> String {
        self.to_string()
    }

    /// A stable code for events (`attrs.cause`), which the ban engine scores.
    pub fn code(&self) -> &'static str {
        match self {
            AuthFailure::UnknownAccount => "unknown-account",
            AuthFailure::Disabled => "disabled",
            AuthFailure::WrongPassword => "wrong-password",
            AuthFailure::NoPassword => "no-password",
            AuthFailure::KeyNotAuthorised => "key-not-authorised",
            AuthFailure::Expired => "expired",
            AuthFailure::AddressNotAllowed => "address-not-allowed",
            AuthFailure::ProtocolNotAllowed => "protocol-not-allowed",
            AuthFailure::Misconfigured(_) => "misconfigured",
            AuthFailure::Store(_) => "store",
        }
    }
}

/// Authenticates against accounts in the store, and says which clients are banned.
#[derive(Clone)]
pub struct LocalAuthenticator {
    store: Store,
    bans: Option<Arc<BanEngine>>,
}

impl LocalAuthenticator {
    /// An authenticator over `store`, with no ban engine.
    pub fn new(store: Store) -> Self {
        LocalAuthenticator { store, bans: None }
    }

    /// The same, refusing the clients `bans` has banned.
    pub fn with_bans(mut self, bans: Arc<BanEngine>) -> Self {
        self.bans = Some(bans);
        self
    }

    /// Whether a connection from `addr` must be refused at once (before any handshake).
    pub fn refuses(&self, addr: std::net::IpAddr) -> Option<Refusal> {
        self.bans.as_ref().and_then(|b| b.refuses(addr))
    }

    /// Checks `credential` for `name`, for a service offering `protocols`, from a client
    /// at `from`.
    pub async fn authenticate(
        &self,
        name: &str,
        credential: Credential<'_>,
        protocols: &[Protocol],
        from: std::net::IpAddr,
    ) -> Result<Arc<Account>, AuthFailure> {
        let record = self.store.account(name).await?;
        let Some(record) = record else {
            if let Credential::Password(password) = credential {
                // Spend the same time as a real check so timing does not reveal names.
                password::burn_time(password).await;
            }
            return Err(AuthFailure::UnknownAccount);
        };
        self.check(&record, credential).await?;
        if !record.enabled {
            return Err(AuthFailure::Disabled);
        }
        if record.expires_us.is_some_and(|at| at <= now_us()) {
            return Err(AuthFailure::Expired);
        }
        let groups = resolve::load_groups(&self.store, &record).await?;
        if !address_allowed(&record, &groups, from) {
            return Err(AuthFailure::AddressNotAllowed);
        }
        let account = resolve::resolve_account_with(&record, &groups)?;
        if !protocols.iter().any(|p| account.may_use(*p)) {
            return Err(AuthFailure::ProtocolNotAllowed);
        }
        Ok(Arc::new(account))
    }

    async fn check(
        &self,
        record: &AccountRecord,
        credential: Credential<'_>,
    ) -> Result<(), AuthFailure> {
        match credential {
            Credential::Password(password) => {
                let Some(hash) = &record.password_hash else {
                    password::burn_time(password).await;
                    return Err(AuthFailure::NoPassword);
                };
                if verify_password(hash, password).await {
                    Ok(())
                } else {
                    Err(AuthFailure::WrongPassword)
                }
            }
            Credential::PublicKey(offered) => {
                let offered = offered.key_data();
                let known = record
                    .keys
                    .iter()
                    .filter_map(|line| parse_public_key(line).ok())
                    .any(|key| key.key_data() == offered);
                if known {
                    Ok(())
                } else {
                    Err(AuthFailure::KeyNotAuthorised)
                }
            }
        }
    }

    /// True when `name` has `key` among its keys (used before a signature is checked, so
    /// clients do not sign with keys that will be refused anyway).
    pub async fn has_key(&self, name: &str, key: &PublicKey) -> bool {
        match self.store.account(name).await {
            Ok(Some(record)) => record
                .keys
                .iter()
                .filter_map(|line| parse_public_key(line).ok())
                .any(|k| k.key_data() == key.key_data()),
            _ => false,
        }
    }
}

fn now_us() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    i64::try_from(now.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}
