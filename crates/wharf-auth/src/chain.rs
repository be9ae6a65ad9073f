//! The authentication chain: the configured methods, asked in order.

use std::net::SocketAddr;
use std::sync::Arc;

use wharf_core::Account;
use wharf_store::{AccountRecord, Store};
use wharf_types::Protocol;

use crate::http_method::{HttpMethod, HttpVerdict};
use crate::ldap_method::{LdapMethod, LdapVerdict};
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
}

/// A successful login.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// The account to open sessions for.
    pub account: Arc<Account>,
    /// The method that vouched for it.
    pub by: String,
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

    /// Asks the chain about `credential` for `name`.
    pub async fn authenticate(
        &self,
        name: &str,
        credential: Credential<'_>,
        attempt: Attempt<'_>,
    ) -> Result<Authenticated, Denied> {
        for method in self.methods.iter() {
            let by = || Some(method.name().to_owned());
            let decided = |failure| Denied { failure, by: by() };
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
                    self.check(&record, &credential).await.map_err(decided)?;
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
            let account = self.admit(&record, attempt).await.map_err(decided)?;
            return Ok(Authenticated {
                account: Arc::new(account),
                by: method.name().to_owned(),
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
    ) -> Result<Account, AuthFailure> {
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
        Ok(account)
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
