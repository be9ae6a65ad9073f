//! Wharf authentication: who may log in, and what account they become.
//!
//! [`Authenticator`] runs the configured chain of methods in order ([`Method`]): accounts
//! in the store (a password checked against its Argon2id hash in constant time on the
//! blocking pool, or a verified SSH public key), or an HTTP API the administrator runs. A
//! method that does not know the name passes to the next; one that knows it decides. The
//! account is then resolved into a [`wharf_core::Account`]: its home (given, or from its
//! first group's template), its rules (account first, then groups in order), its protocols
//! and upload policy, after its expiry and its allowed networks are checked. A home that
//! an LDAP directory or an HTTP service gives must lie beneath the configured roots
//! ([`HomeRoots`]). A login kept across requests (HTTP) is checked again on each one
//! ([`Authenticator::readmit`]) against the account as it is now: only the credential's
//! verification is remembered, and an LDAP directory's or HTTP service's answer only for a
//! short time, after which the directory is asked again or the login ends.
//!
//! Failures carry a reason for the audit trail ([`AuthFailure::reason`]) but the client is
//! only ever told "denied", the same for an unknown account and a wrong password. Passwords
//! leave this crate only as hashes, or to an HTTP method the configuration names.
//!
//! The ban engine ([`BanEngine`]) lives here too: it scores the failures this crate's
//! decisions produce, and the services ask [`Authenticator::refuses`] at accept.

#![forbid(unsafe_code)]

mod ban;
mod chain;
mod homes;
mod http_method;
mod keys;
mod ldap_method;
mod password;
mod policy;
mod resolve;
mod shared_accounts;
mod totp;

pub use ban::{
    Admission, Admitted, BanEngine, BanPolicy, Limits, MAX_TRACKED, OpenConnections, ProxyPolicy,
    Refusal, TurnedAway,
};
pub use chain::{Attempt, Authenticated, Authenticator, Denied, Grant, Method};
pub use homes::{HomeRoots, normalise_home, template_root};
pub use http_method::{HttpMethod, HttpMethodError};
pub use keys::{KeyError, PublicKey, fingerprint, parse_public_key};
pub use ldap_method::{LdapMethod, LdapMethodError, LdapSettings, normalise_dn};
pub use password::{PasswordError, burn_time, hash_password, verify_password};
pub use policy::{MAX_PASSWORD_CHARS, PasswordPolicy, PasswordRejected};
pub use resolve::{address_allowed, resolve_account, resolve_account_with};
pub use totp::{CodeCheck, NoRandomness, SecondFactor, split_appended};

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
    /// The home an LDAP directory or HTTP service gave is relative, or not beneath any of
    /// the method's `home_roots`.
    #[error("home folder refused: {0}")]
    HomeNotAllowed(String),
    /// An external method refused the login (HTTP 403), with its message if any.
    #[error("refused by the authentication service{}", .0.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Refused(Option<String>),
    /// The one-time code (or recovery code) was wrong, already used, or missing.
    #[error("wrong or reused one-time code")]
    WrongCode,
    /// A second factor is required for the account, and none is enrolled.
    #[error("second factor required but not enrolled")]
    SecondFactorNotEnrolled,
    /// A login kept across requests must be made again: the method that vouched for it
    /// cannot check the account again without its credential (the HTTP method, a
    /// direct-bind directory), and its answer is older than the service allows.
    #[error("log in again: {0}")]
    LoginExpired(String),
    /// The directory knows the user, but in no group Wharf maps (and groups are required).
    #[error("in no group Wharf maps")]
    NotInGroup,
    /// An external method could not decide (unreachable, timeout, bad answer): the chain
    /// stops there and the login fails.
    #[error("authentication service failed: {0}")]
    ServiceFailed(String),
    /// The store failed: the login fails closed. Out of reach (PostgreSQL down or
    /// restarting), it says so: `store unreachable: …`.
    #[error("{}", store_reason(.0))]
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
            AuthFailure::HomeNotAllowed(_) => "home-outside-roots",
            AuthFailure::Refused(_) => "refused",
            AuthFailure::NotInGroup => "not-in-group",
            AuthFailure::LoginExpired(_) => "login-expired",
            AuthFailure::WrongCode => "wrong-code",
            AuthFailure::SecondFactorNotEnrolled => "second-factor-not-enrolled",
            AuthFailure::ServiceFailed(_) => "service-failed",
            AuthFailure::Store(_) => "store",
        }
    }
}

fn store_reason(error: &wharf_store::StoreError) -> String {
    if error.is_unreachable() {
        format!("store unreachable: {error}")
    } else {
        format!("store error: {error}")
    }
}

fn now_us() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    i64::try_from(now.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}
