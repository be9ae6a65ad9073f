//! The authentication chain: the configured methods, asked in order.

use std::net::SocketAddr;
use std::sync::Arc;

use wharf_core::Account;
use wharf_store::{AccountRecord, Store};
use wharf_types::{AccountName, Protocol};

use crate::http_method::{HttpMethod, HttpVerdict};
use crate::ldap_method::{LdapMethod, LdapVerdict};
use crate::totp::{CodeCheck, SecondFactor};
use crate::{
    AuthFailure, BanEngine, Credential, Refusal, address_allowed, parse_public_key, password,
    resolve, verify_password,
};

/// One link of the chain.
pub enum Method {
    /// Accounts in the store.
    Local,
    /// An HTTP API (`[[authentication]] type = "http"`).
    Http(HttpMethod),
    /// An LDAP directory or Active Directory (`type = "ldap"`); boxed, as it is large.
    Ldap(Box<LdapMethod>),
}

impl Method {
    /// The method's name in events: `local`, or the configured name.
    pub fn name(&self) -> &str {
        match self {
            Method::Local => "local",
            Method::Http(h) => &h.name,
            Method::Ldap(l) => &l.name,
        }
    }
}

/// Where a login attempt comes from.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    /// The service's name from the configuration.
    pub service: &'a str,
    /// The connection's protocol (`ssh`, `ftp`, `ftps`, `https`...).
    pub protocol: Protocol,
    /// The file protocols the service offers; the account must be allowed one of them.
    pub offers: &'a [Protocol],
    /// The client.
    pub remote: SocketAddr,
    /// The protocol has no second step, so a one-time code comes appended to the password
    /// (FTP, HTTP Basic, the web login form). SSH asks for it separately.
    pub code_appended: bool,
}

/// A successful login.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// The account to open sessions for.
    pub account: Arc<Account>,
    /// The method that vouched for it.
    pub by: String,
    /// The first factor is good; the session may start only after
    /// [`Authenticator::verify_code`] accepts a one-time code.
    pub needs_code: bool,
    /// A one-time code came with the password and was accepted.
    pub code_used: bool,
}

/// A refused login.
#[derive(Debug)]
pub struct Denied {
    /// Why.
    pub failure: AuthFailure,
    /// The method that decided; `None` when no method knew the name.
    pub by: Option<String>,
}

impl Denied {
    /// A short reason for events.
    pub fn reason(&self) -> String {
        self.failure.reason()
    }

    /// A stable code for events (`attrs.cause`).
    pub fn code(&self) -> &'static str {
        self.failure.code()
    }

    /// The deciding method's name for events (`attrs.authenticator`), `none` if none.
    pub fn by(&self) -> &str {
        self.by.as_deref().unwrap_or("none")
    }
}

/// The authenticator every service shares: the chain, the store, and the ban engine.
#[derive(Clone)]
pub struct Authenticator {
    store: Store,
    methods: Arc<Vec<Method>>,
    bans: Option<Arc<BanEngine>>,
}

impl Authenticator {
    /// An authenticator with the store's accounts only, and no ban engine.
    pub fn new(store: Store) -> Self {
        Authenticator {
            store,
            methods: Arc::new(vec![Method::Local]),
            bans: None,
        }
    }

    /// The same, asking `methods` in order.
    pub fn with_methods(mut self, methods: Vec<Method>) -> Self {
        self.methods = Arc::new(methods);
        self
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

    /// The ban engine, which admission at accept asks ([`crate::Admission`]).
    pub fn bans(&self) -> Option<&Arc<BanEngine>> {
        self.bans.as_ref()
    }

    /// Asks the chain about `credential` for `name`.
    pub async fn authenticate(
        &self,
        name: &str,
        credential: Credential<'_>,
        attempt: Attempt<'_>,
    ) -> Result<Authenticated, Denied> {
        // A name no account can have (too long, or characters account names never hold)
        // goes to no method: external services see only names that could be accounts.
        let methods: &[Method] = if AccountName::new(name).is_ok() {
            &self.methods
        } else {
            &[]
        };
        for method in methods {
            let by = || Some(method.name().to_owned());
            let decided = |failure| Denied { failure, by: by() };
            let mut code_used = false;
            let record = match method {
                Method::Local => {
                    let record = self
                        .store
                        .account(name)
                        .await
                        .map_err(|e| decided(e.into()))?;
                    let Some(record) = record else {
                        continue;
                    };
                    match (&credential, attempt.code_appended, &record.second_factor) {
                        (Credential::Password(combined), true, Some(_)) => {
                            let Some((password, code)) = crate::split_appended(combined) else {
                                // Still spend the password check's time.
                                let _ = self.check(&record, &Credential::Password(combined)).await;
                                return Err(decided(AuthFailure::WrongCode));
                            };
                            self.check(&record, &Credential::Password(password))
                                .await
                                .map_err(decided)?;
                            self.use_code(&record, code).await.map_err(decided)?;
                            code_used = true;
                        }
                        _ => self.check(&record, &credential).await.map_err(decided)?,
                    }
                    record
                }
                Method::Http(http) => {
                    let verdict = http
                        .check(
                            name,
                            &credential,
                            attempt.protocol.as_str(),
                            attempt.service,
                            attempt.remote,
                        )
                        .await
                        .map_err(|e| decided(AuthFailure::ServiceFailed(e.to_string())))?;
                    match verdict {
                        HttpVerdict::NotMine => continue,
                        HttpVerdict::Reject(message) => {
                            return Err(decided(AuthFailure::Refused(message)));
                        }
                        HttpVerdict::Accept(record) => *record,
                    }
                }
                Method::Ldap(ldap) => {
                    let verdict = ldap
                        .check(name, &credential)
                        .await
                        .map_err(|e| decided(AuthFailure::ServiceFailed(e.to_string())))?;
                    match verdict {
                        LdapVerdict::NotMine => continue,
                        LdapVerdict::Reject(failure) => return Err(decided(failure)),
                        LdapVerdict::Accept(record) => *record,
                    }
                }
            };
            let (account, group_requires) = self.admit(&record, attempt).await.map_err(decided)?;
            let enrolled = record.second_factor.is_some();
            if !enrolled && (record.require_second_factor || group_requires) {
                return Err(decided(AuthFailure::SecondFactorNotEnrolled));
            }
            return Ok(Authenticated {
                account: Arc::new(account),
                by: method.name().to_owned(),
                needs_code: enrolled && !code_used,
                code_used,
            });
        }
        if let Credential::Password(password) = credential {
            // Spend the same time as a real check so timing does not reveal names.
            password::burn_time(password).await;
        }
        Err(Denied {
            failure: AuthFailure::UnknownAccount,
            by: None,
        })
    }

    /// What every accepted record must also pass, whichever method vouched for it.
    async fn admit(
        &self,
        record: &AccountRecord,
        attempt: Attempt<'_>,
    ) -> Result<(Account, bool), AuthFailure> {
        if !record.enabled {
            return Err(AuthFailure::Disabled);
        }
        if record.expires_us.is_some_and(|at| at <= crate::now_us()) {
            return Err(AuthFailure::Expired);
        }
        let groups = resolve::load_groups(&self.store, record).await?;
        if !address_allowed(record, &groups, attempt.remote.ip()) {
            return Err(AuthFailure::AddressNotAllowed);
        }
        let account = resolve::resolve_account_with(record, &groups)?;
        if !attempt.offers.iter().any(|p| account.may_use(*p)) {
            return Err(AuthFailure::ProtocolNotAllowed);
        }
        Ok((account, groups.iter().any(|g| g.require_second_factor)))
    }

    /// Checks the one-time code of an account whose first factor was accepted with
    /// `needs_code` (SSH keyboard-interactive, the web client's second step).
    pub async fn verify_code(&self, name: &str, code: &str) -> Result<(), AuthFailure> {
        let record = self.store.account(name).await?;
        let Some(record) = record else {
            return Err(AuthFailure::UnknownAccount);
        };
        self.use_code(&record, code).await
    }

    /// Accepts `code` for `record` once: the step (or recovery code) is recorded in the
    /// store only if nobody used the factor meanwhile.
    async fn use_code(&self, record: &AccountRecord, code: &str) -> Result<(), AuthFailure> {
        let Some(stored) = &record.second_factor else {
            return Err(AuthFailure::WrongCode);
        };
        let factor: SecondFactor = serde_json::from_str(stored)
            .map_err(|e| AuthFailure::Misconfigured(format!("second factor unreadable: {e}")))?;
        let now = u64::try_from(crate::now_us() / 1_000_000).unwrap_or(0);
        let used = factor.check(code, now);
        if used == CodeCheck::Wrong {
            return Err(AuthFailure::WrongCode);
        }
        let next = serde_json::to_string(&factor.after(&used))
            .map_err(|e| AuthFailure::Misconfigured(e.to_string()))?;
        if self
            .store
            .swap_second_factor(record.name.as_str(), stored, Some(&next))
            .await?
        {
            Ok(())
        } else {
            Err(AuthFailure::WrongCode)
        }
    }

    async fn check(
        &self,
        record: &AccountRecord,
        credential: &Credential<'_>,
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

    /// True when a signature with `key` is worth asking for: `name` is a stored account
    /// holding the key, or an external method in the chain may accept it. (The signed
    /// attempt then goes through the whole chain, which decides.)
    pub async fn has_key(&self, name: &str, key: &crate::PublicKey) -> bool {
        if self.methods.iter().any(|m| !matches!(m, Method::Local)) {
            return true;
        }
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
