//! The authentication chain: the configured methods, asked in order; and the re-check of a
//! login kept across requests ([`Authenticator::readmit`]), which never trusts what a
//! method said longer than the caller allows.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wharf_core::Account;
use wharf_store::{AccountRecord, GroupRecord, Store};
use wharf_types::{AccountName, Protocol};

use crate::http_method::{HttpMethod, HttpVerdict};
use crate::ldap_method::{LdapMethod, LdapVerdict};
use crate::shared_accounts::SharedAccounts;
use crate::totp::{CodeCheck, SecondFactor};
use crate::{
    AuthFailure, BanEngine, Credential, HomeRoots, OpenConnections, Refusal, address_allowed,
    parse_public_key, password, resolve, verify_password,
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

    /// Where a home this method gives must lie; `None` for the store's accounts, whose
    /// homes the administrator sets.
    fn home_roots(&self) -> Option<&HomeRoots> {
        match self {
            Method::Local => None,
            Method::Http(h) => Some(h.home_roots()),
            Method::Ldap(l) => Some(l.home_roots()),
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
    /// What an external method said (`None`: the store's accounts), for [`Grant`].
    verdict: Option<Verdict>,
}

impl Authenticated {
    /// The grant a login kept across requests is re-checked with.
    pub fn grant(&self) -> Grant {
        Grant {
            account: Arc::clone(&self.account),
            by: self.by.clone(),
            second_factor: self.code_used,
            since: self.verdict.as_ref().map_or_else(Instant::now, |v| v.at),
            verdict: self.verdict.clone(),
        }
    }
}

/// What an external method (LDAP, HTTP) vouched for, and when it said so.
#[derive(Debug, Clone)]
struct Verdict {
    /// The record as the method gave it (its home not yet confined, its groups unread).
    record: Arc<AccountRecord>,
    at: Instant,
}

/// A login kept across requests (HTTP Basic remembered, a bearer token, a browser
/// session): the account its session was opened for, the method that vouched for it, and
/// whether a one-time code was given. [`Authenticator::readmit`] checks it again for each
/// request.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The account the login's session acts for.
    pub account: Arc<Account>,
    /// The method that vouched for it (its name in events).
    pub by: String,
    /// A one-time code was accepted for this login.
    pub second_factor: bool,
    /// When the credential was verified: a kept login's absolute lifetime counts from
    /// here, and a grant renewed by [`Authenticator::readmit`] keeps it.
    pub since: Instant,
    /// External methods: what the method last said; `None` for the store's accounts (and
    /// for an external account, where it makes the next request ask the method again).
    verdict: Option<Verdict>,
}

impl Grant {
    /// The grant of a login the store's accounts decided, made now (a second step that
    /// took the code after [`Authenticated`] was seen).
    pub fn new(account: Arc<Account>, by: String, second_factor: bool) -> Grant {
        Grant {
            account,
            by,
            second_factor,
            since: Instant::now(),
            verdict: None,
        }
    }
}

/// An account that passed [`Authenticator::admit`].
struct Resolved {
    account: Arc<Account>,
    enrolled: bool,
    /// An external method's record, as it gave it.
    verdict: Option<Verdict>,
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
    /// The chain in force, shared by every clone: a reload replaces it for the next login
    /// (one already under way finishes with the chain it began with).
    methods: Arc<std::sync::RwLock<Arc<Vec<Method>>>>,
    bans: Option<Arc<BanEngine>>,
    connections: OpenConnections,
    /// Accounts in use, shared by the logins that resolve to them.
    accounts: Arc<SharedAccounts>,
}

impl Authenticator {
    /// An authenticator with the store's accounts only, and no ban engine.
    pub fn new(store: Store) -> Self {
        Authenticator {
            store,
            methods: Arc::new(std::sync::RwLock::new(Arc::new(vec![Method::Local]))),
            bans: None,
            connections: OpenConnections::default(),
            accounts: Arc::default(),
        }
    }

    /// The same, asking `methods` in order.
    pub fn with_methods(self, methods: Vec<Method>) -> Self {
        self.set_methods(methods);
        self
    }

    /// Replaces the chain for this authenticator and every clone of it (a reload).
    pub fn set_methods(&self, methods: Vec<Method>) {
        let mut current = self.methods.write().unwrap_or_else(|p| p.into_inner());
        *current = Arc::new(methods);
    }

    /// The chain in force now.
    fn methods(&self) -> Arc<Vec<Method>> {
        Arc::clone(&self.methods.read().unwrap_or_else(|p| p.into_inner()))
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

    /// The connections open on every service this authenticator serves (the admission
    /// gates count them).
    pub fn connections(&self) -> &OpenConnections {
        &self.connections
    }

    /// Asks the chain about `credential` for `name`.
    ///
    /// The account is the name the deciding method gives (an LDAP entry's own name, an
    /// HTTP service's `username`), whatever case was typed. When that differs from `name`,
    /// the methods before the deciding one are asked about that name too, and the first
    /// that knows it decides: a login typed as `LARA` ends exactly where `lara` would.
    ///
    /// A store out of reach fails the login closed (`cause` `store`, reason `store
    /// unreachable: …`), after at most the store's connect timeout, and says so in the log.
    pub async fn authenticate(
        &self,
        name: &str,
        credential: Credential<'_>,
        attempt: Attempt<'_>,
    ) -> Result<Authenticated, Denied> {
        let decided = self.decide(name, credential, attempt).await;
        if let Err(denied) = &decided {
            log_store_failure(denied, name, attempt);
        }
        decided
    }

    async fn decide(
        &self,
        name: &str,
        credential: Credential<'_>,
        attempt: Attempt<'_>,
    ) -> Result<Authenticated, Denied> {
        // A name no account can have (too long, or characters account names never hold)
        // goes to no method: external services see only names that could be accounts.
        let chain = self.methods();
        let methods: &[Method] = if AccountName::new(name).is_ok() {
            &chain
        } else {
            &[]
        };
        for (index, method) in methods.iter().enumerate() {
            let Some((record, code_used)) = self.ask(method, name, &credential, attempt).await?
            else {
                continue;
            };
            let canonical = record.name.as_str();
            if canonical != name {
                for earlier in &methods[..index] {
                    if let Some((known, code)) =
                        self.ask(earlier, canonical, &credential, attempt).await?
                    {
                        if known.name.as_str() != canonical {
                            return Err(Denied {
                                failure: AuthFailure::Misconfigured(format!(
                                    "{} and {} give different names to {name:?}",
                                    earlier.name(),
                                    method.name()
                                )),
                                by: Some(earlier.name().to_owned()),
                            });
                        }
                        return self.finish(earlier, known, code, attempt).await;
                    }
                }
            }
            return self.finish(method, record, code_used, attempt).await;
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

    /// What `method` says about `credential` for `name`: the account record it vouches
    /// for (and whether a one-time code came with the password and was used), `None` when
    /// it does not know the name, or the refusal.
    async fn ask(
        &self,
        method: &Method,
        name: &str,
        credential: &Credential<'_>,
        attempt: Attempt<'_>,
    ) -> Result<Option<(AccountRecord, bool)>, Denied> {
        let decided = |failure| Denied {
            failure,
            by: Some(method.name().to_owned()),
        };
        match method {
            Method::Local => {
                let record = self
                    .store
                    .account(name)
                    .await
                    .map_err(|e| decided(e.into()))?;
                let Some(record) = record else {
                    return Ok(None);
                };
                match (credential, attempt.code_appended, &record.second_factor) {
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
                        Ok(Some((record, true)))
                    }
                    _ => {
                        self.check(&record, credential).await.map_err(decided)?;
                        Ok(Some((record, false)))
                    }
                }
            }
            Method::Http(http) => {
                let verdict = http
                    .check(
                        name,
                        credential,
                        attempt.protocol.as_str(),
                        attempt.service,
                        attempt.remote,
                    )
                    .await
                    .map_err(|e| decided(AuthFailure::ServiceFailed(e.to_string())))?;
                match verdict {
                    HttpVerdict::NotMine => Ok(None),
                    HttpVerdict::Reject(message) => Err(decided(AuthFailure::Refused(message))),
                    HttpVerdict::Accept(record) => Ok(Some((*record, false))),
                }
            }
            Method::Ldap(ldap) => {
                let verdict = ldap
                    .check(name, credential)
                    .await
                    .map_err(|e| decided(AuthFailure::ServiceFailed(e.to_string())))?;
                match verdict {
                    LdapVerdict::NotMine => Ok(None),
                    LdapVerdict::Reject(failure) => Err(decided(failure)),
                    LdapVerdict::Accept(record) => Ok(Some((*record, false))),
                }
            }
        }
    }

    /// The account `method` vouched for, once it passes every check.
    async fn finish(
        &self,
        method: &Method,
        record: AccountRecord,
        code_used: bool,
        attempt: Attempt<'_>,
    ) -> Result<Authenticated, Denied> {
        let decided = |failure| Denied {
            failure,
            by: Some(method.name().to_owned()),
        };
        let account = self
            .admit(record, attempt, method.home_roots())
            .await
            .map_err(decided)?;
        Ok(Authenticated {
            account: account.account,
            by: method.name().to_owned(),
            needs_code: account.enrolled && !code_used,
            code_used,
            verdict: account.verdict,
        })
    }

    /// What every accepted record must also pass, whichever method vouched for it; `roots`:
    /// where a home the method gave must lie (external methods, whose record is also kept
    /// as the verdict a kept login trusts for a while).
    async fn admit(
        &self,
        record: AccountRecord,
        attempt: Attempt<'_>,
        roots: Option<&HomeRoots>,
    ) -> Result<Resolved, AuthFailure> {
        let verdict = roots.is_some().then(|| Verdict {
            record: Arc::new(record.clone()),
            at: Instant::now(),
        });
        let groups = resolve::load_groups(&self.store, &record).await?;
        let enrolled = self.account_checks(&record, &groups, attempt)?;
        let record = confined(record, &groups, roots)?;
        let account = self
            .accounts
            .resolve(resolve::Resolution::of(&record, &groups)?)?;
        Ok(Resolved {
            account,
            enrolled,
            verdict,
        })
    }

    /// The checks every login and every later request of a kept login pass: enabled, not
    /// expired, the client's address, one of the protocols offered, and a second factor
    /// enrolled where one is required. Answers whether a factor is enrolled.
    fn account_checks(
        &self,
        record: &AccountRecord,
        groups: &[GroupRecord],
        attempt: Attempt<'_>,
    ) -> Result<bool, AuthFailure> {
        if !record.enabled {
            return Err(AuthFailure::Disabled);
        }
        if record.expires_us.is_some_and(|at| at <= crate::now_us()) {
            return Err(AuthFailure::Expired);
        }
        if !address_allowed(record, groups, attempt.remote.ip()) {
            return Err(AuthFailure::AddressNotAllowed);
        }
        let protocols = resolve::protocols_of(groups);
        if !protocols.is_empty() && !attempt.offers.iter().any(|p| protocols.contains(p)) {
            return Err(AuthFailure::ProtocolNotAllowed);
        }
        let enrolled = record.second_factor.is_some();
        let required =
            record.require_second_factor || groups.iter().any(|g| g.require_second_factor);
        if !enrolled && required {
            return Err(AuthFailure::SecondFactorNotEnrolled);
        }
        Ok(enrolled)
    }

    /// Checks a kept login again for one more request (HTTP Basic remembered, a bearer
    /// token, a browser session): everything [`Authenticator::authenticate`] checks after
    /// the credential, against the account as it is now and the request's own `attempt`
    /// (its address, its protocol).
    ///
    /// The account is resolved again: a local one from the store, so one disabled,
    /// expired, removed or newly enrolled in a second factor is refused at once; an
    /// external one from what its method said, which is trusted for `recheck_after` only.
    /// After that the method is asked again without the password where it can be (LDAP
    /// with a service account looks the entry up again); where it cannot (the HTTP
    /// method, a direct-bind directory) the login has to be made again (`login-expired`).
    ///
    /// Answers `None` when the grant holds as it is, or the grant to keep from now on:
    /// with a fresher verdict, and, when the account resolves differently from the one
    /// the login's session acts for (home, groups, rules, protocols, upload mode, limits),
    /// a new [`Account`] (a different `Arc`) that a new session must be opened for.
    pub async fn readmit(
        &self,
        grant: &Grant,
        attempt: Attempt<'_>,
        recheck_after: Duration,
    ) -> Result<Option<Grant>, Denied> {
        self.readmit_as(Some(&grant.account), grant, attempt, recheck_after)
            .await
    }

    /// A kept login made on another node (or before this process's own memory of it):
    /// the grant of account `name`, vouched for by method `by` at `since`, checked as
    /// [`Authenticator::readmit`] checks a login, with the account resolved afresh. An
    /// external method is asked again without the password where it can be; where it
    /// cannot, the login has to be made again (`login-expired`).
    pub async fn resume(
        &self,
        name: &str,
        by: &str,
        second_factor: bool,
        since: Instant,
        attempt: Attempt<'_>,
        recheck_after: Duration,
    ) -> Result<Grant, Denied> {
        let denied = |failure| Denied {
            failure,
            by: Some(by.to_owned()),
        };
        let name = AccountName::new(name).map_err(|_| denied(AuthFailure::UnknownAccount))?;
        // Never used as an account: it only names the one to resolve.
        let unresolved = Grant {
            account: Arc::new(Account {
                name,
                home: std::path::PathBuf::new(),
                groups: Vec::new(),
                create_home: false,
                rules: wharf_core::RuleSet::default(),
                protocols: Vec::new(),
                upload_mode: wharf_core::UploadMode::default(),
                max_file_size: None,
            }),
            by: by.to_owned(),
            second_factor,
            since,
            verdict: None,
        };
        match self
            .readmit_as(None, &unresolved, attempt, recheck_after)
            .await?
        {
            Some(grant) => Ok(grant),
            None => Err(denied(AuthFailure::Misconfigured(
                "the login's account could not be resolved".to_owned(),
            ))),
        }
    }

    /// [`Authenticator::readmit`] of `grant`, whose session acts for `current` (`None`: no
    /// session yet, so the account is always resolved anew).
    async fn readmit_as(
        &self,
        current: Option<&Arc<Account>>,
        grant: &Grant,
        attempt: Attempt<'_>,
        recheck_after: Duration,
    ) -> Result<Option<Grant>, Denied> {
        let decided = |failure| Denied {
            failure,
            by: Some(grant.by.clone()),
        };
        let chain = self.methods();
        let Some(method) = chain.iter().find(|m| m.name() == grant.by) else {
            return Err(decided(AuthFailure::Misconfigured(format!(
                "the method {:?} is no longer configured",
                grant.by
            ))));
        };
        let name = &grant.account.name;
        let (record, renewed) = match (method, &grant.verdict) {
            (Method::Local, _) => (
                self.store
                    .account(name.as_str())
                    .await
                    .map_err(|e| decided(e.into()))?
                    .ok_or_else(|| decided(AuthFailure::UnknownAccount))?,
                None,
            ),
            (_, Some(verdict)) if verdict.at.elapsed() <= recheck_after => {
                ((*verdict.record).clone(), None)
            }
            _ => {
                let record = self.recheck(method, name).await.map_err(decided)?;
                let verdict = Verdict {
                    record: Arc::new(record.clone()),
                    at: Instant::now(),
                };
                (record, Some(verdict))
            }
        };
        let groups = resolve::load_groups(&self.store, &record)
            .await
            .map_err(decided)?;
        let enrolled = self
            .account_checks(&record, &groups, attempt)
            .map_err(decided)?;
        if enrolled && !grant.second_factor {
            // Enrolled since this login, which gave no code.
            return Err(decided(AuthFailure::WrongCode));
        }
        let record = confined(record, &groups, method.home_roots()).map_err(decided)?;
        let resolution = resolve::Resolution::of(&record, &groups).map_err(decided)?;
        let account = if current.is_some_and(|a| resolution.describes(a)) {
            None
        } else {
            Some(self.accounts.resolve(resolution).map_err(decided)?)
        };
        if account.is_none() && renewed.is_none() {
            return Ok(None);
        }
        Ok(Some(Grant {
            account: account.unwrap_or_else(|| Arc::clone(&grant.account)),
            by: grant.by.clone(),
            second_factor: grant.second_factor,
            since: grant.since,
            verdict: renewed.or_else(|| grant.verdict.clone()),
        }))
    }

    /// Asks an external `method` about the account `name` again, without its password:
    /// the record it vouches for now, or why not.
    async fn recheck(
        &self,
        method: &Method,
        name: &AccountName,
    ) -> Result<AccountRecord, AuthFailure> {
        let verdict = match method {
            Method::Local => {
                return Err(AuthFailure::Misconfigured(
                    "the store's accounts are read, not re-checked".to_owned(),
                ));
            }
            Method::Http(http) => {
                return Err(AuthFailure::LoginExpired(format!(
                    "{} is asked with the password only, and its answer is too old",
                    http.name
                )));
            }
            Method::Ldap(ldap) => ldap
                .recheck(name.as_str())
                .await
                .map_err(|e| AuthFailure::ServiceFailed(e.to_string()))?,
        };
        match verdict {
            None => Err(AuthFailure::LoginExpired(format!(
                "{} binds as the user (bind_template) and cannot look the entry up without the password",
                method.name()
            ))),
            Some(LdapVerdict::NotMine) => Err(AuthFailure::UnknownAccount),
            Some(LdapVerdict::Reject(failure)) => Err(failure),
            Some(LdapVerdict::Accept(record)) if record.name == *name => Ok(*record),
            Some(LdapVerdict::Accept(record)) => Err(AuthFailure::Misconfigured(format!(
                "the directory now names the account {:?}, not {:?}",
                record.name.as_str(),
                name.as_str()
            ))),
        }
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
        if self.methods().iter().any(|m| !matches!(m, Method::Local)) {
            return true;
        }
        match self.store.account(name).await {
            Ok(Some(record)) => record
                .keys
                .iter()
                .filter_map(|line| parse_public_key(line).ok())
                .any(|k| k.key_data() == key.key_data()),
            Ok(None) => false,
            // The signed attempt goes to the chain, which fails it closed and records why;
            // refusing the key here would leave the failure unexplained.
            Err(_) => true,
        }
    }
}

/// Logs a login refused because the store failed: the client hears only "denied", and
/// the audit record of it may itself wait for the store.
fn log_store_failure(denied: &Denied, name: &str, attempt: Attempt<'_>) {
    if matches!(denied.failure, AuthFailure::Store(_)) {
        // Debug form: a typed name may hold anything, line breaks included.
        tracing::warn!(
            service = attempt.service,
            remote = %attempt.remote,
            account = ?wharf_core::shown_name(name),
            "login refused: {}",
            denied.failure
        );
    }
}

/// `record` with the home an external method gave (`roots`: that method's) normalised and
/// checked beneath its roots; the store's accounts pass unchanged.
fn confined(
    mut record: AccountRecord,
    groups: &[GroupRecord],
    roots: Option<&HomeRoots>,
) -> Result<AccountRecord, AuthFailure> {
    if let (Some(roots), Some(given)) = (roots, record.home.as_deref()) {
        let home = roots.confine(given, groups)?;
        record.home = Some(home.to_string_lossy().into_owned());
    }
    Ok(record)
}
