//! The LDAP / Active Directory authentication method, wrapping the ldap3 client.
//!
//! Two ways to find a user: *search then bind* (a service account searches `base_dn` with
//! `user_filter`, then Wharf binds as the entry found with the client's password), or a
//! *direct bind* to a DN made from `bind_template`. Empty passwords are refused before any
//! bind (an empty simple bind is an anonymous bind, which succeeds, RFC 4513 §5.1.2).
//! Filters and DNs are built with ldap3's escaping, never by pasting input.
//!
//! TLS is required unless the configuration says `insecure_plaintext`: `ldaps://` runs
//! TLS with our own rustls connector (so IPv6 literal addresses verify like any other)
//! over a socket pair handed to ldap3; `starttls` uses ldap3's StartTLS. Service-bound
//! connections are pooled and replaced when they fail; a user bind always gets a fresh
//! connection, closed afterwards. Every operation has a timeout. ldap3 panics on a
//! malformed entry, so entries are decoded under `catch_unwind`: a broken answer is an
//! error, never a crashed task.
//!
//! The account is the entry's own name (`name_attribute`, `uid` by default), never the
//! name as typed: directories match names without case, and `LARA` must not become a
//! second account beside `lara`. Groups map in the order `group_map` is written; a home
//! from `home_attribute` must lie beneath the method's [`HomeRoots`] (checked by the chain).
//!
//! A login kept across requests (HTTP) is looked up again with the service account
//! ([`LdapMethod::recheck`]): the entry must still exist and still be in the groups; no
//! password is remembered for it. A direct-bind method has nothing to look up with.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry, StdStream};
use wharf_store::AccountRecord;
use wharf_types::AccountName;

use crate::{Credential, HomeRoots, parse_public_key};

/// Idle service connections kept for searches.
const POOL_SIZE: usize = 4;

/// The LDAP method's settings (from `[[authentication]] type = "ldap"`).
#[derive(Debug, Clone)]
pub struct LdapSettings {
    /// `ldaps://host:636` or `ldap://host:389`.
    pub url: String,
    /// StartTLS on an `ldap://` URL.
    pub starttls: bool,
    /// Allow simple binds without TLS (a directory on this machine only).
    pub insecure_plaintext: bool,
    /// PEM CA certificates trusted for the directory (default: the system's).
    pub ca_pem: Option<Vec<u8>>,
    /// Connect and per-operation timeout.
    pub timeout: Duration,
    /// Search mode: the service account's DN and password.
    pub bind_dn: Option<String>,
    /// The service account's password.
    pub bind_password: Option<String>,
    /// Where users are searched.
    pub base_dn: String,
    /// `{user}` is replaced by the escaped login name.
    pub user_filter: String,
    /// Direct-bind mode: `{user}` is replaced by the DN-escaped login name.
    pub bind_template: Option<String>,
    /// Where groups are searched (`group_filter`); without it, `memberOf` of the user.
    pub group_base_dn: Option<String>,
    /// `{dn}` is replaced by the escaped user DN.
    pub group_filter: String,
    /// LDAP group DN (lowercase) → Wharf group name, in the order written: a user's Wharf
    /// groups come in this order, so the first one mapped gives the home template.
    pub group_map: Vec<(String, String)>,
    /// Wharf groups for a user in no mapped group.
    pub default_groups: Vec<String>,
    /// Refuse users in no mapped group instead.
    pub require_group: bool,
    /// Attribute holding the account's name (`uid`; Active Directory: `sAMAccountName`).
    pub name_attribute: String,
    /// Attribute holding the home folder.
    pub home_attribute: Option<String>,
    /// Where a home from `home_attribute` must lie.
    pub home_roots: HomeRoots,
    /// Attribute holding OpenSSH public keys.
    pub key_attribute: Option<String>,
    /// How long a successful password login is remembered (zero: never), so a client
    /// that logs in again and again does not reach the directory each time.
    pub cache: Duration,
}

/// Successful password logins remembered at most.
const MAX_CACHED: usize = 10_000;

/// What the directory said.
pub enum LdapVerdict {
    /// The user and their account.
    Accept(Box<AccountRecord>),
    /// No such user here.
    NotMine,
    /// The user exists and the credential is wrong (or the user is in no mapped group).
    Reject(crate::AuthFailure),
}

/// The method.
pub struct LdapMethod {
    /// Name in events.
    pub name: String,
    settings: LdapSettings,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// `ldaps://` to this address, with this name for the certificate.
    ldaps: Option<(String, u16, rustls::pki_types::ServerName<'static>)>,
    pool: Mutex<Vec<Ldap>>,
    /// Salted SHA-256 of name and password → the account and when it was checked.
    cached: Mutex<HashMap<String, (std::time::Instant, AccountRecord)>>,
    salt: [u8; 32],
}

/// A configuration or directory failure.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LdapMethodError(pub String);

fn err(what: &str, e: impl std::fmt::Display) -> LdapMethodError {
    LdapMethodError(format!("{what}: {e}"))
}

impl LdapMethod {
    /// Checks the settings and prepares TLS.
    pub fn new(name: String, settings: LdapSettings) -> Result<LdapMethod, LdapMethodError> {
        let url = url::Url::parse(&settings.url).map_err(|e| err("url", e))?;
        let host = url
            .host()
            .ok_or_else(|| LdapMethodError("url has no host".into()))?;
        let (tls_wanted, ldaps) = match url.scheme() {
            "ldaps" => (true, true),
            "ldap" => (settings.starttls, false),
            other => {
                return Err(LdapMethodError(format!(
                    "url scheme {other:?}: use ldaps:// or ldap://"
                )));
            }
        };
        if !tls_wanted && !settings.insecure_plaintext {
            return Err(LdapMethodError(
                "passwords would cross the network in clear: use ldaps://, or starttls = true"
                    .into(),
            ));
        }
        let server_name = match &host {
            url::Host::Domain(d) => rustls::pki_types::ServerName::try_from(d.to_string()),
            url::Host::Ipv4(a) => Ok(rustls::pki_types::ServerName::from(IpAddr::V4(*a))),
            url::Host::Ipv6(a) => Ok(rustls::pki_types::ServerName::from(IpAddr::V6(*a))),
        }
        .map_err(|e| err("host", e))?;
        if settings.starttls && matches!(host, url::Host::Ipv6(_)) {
            return Err(LdapMethodError(
                "StartTLS to an IPv6 address is not supported; use ldaps://[address]:636".into(),
            ));
        }
        if settings.bind_dn.is_none() && settings.bind_template.is_none() {
            return Err(LdapMethodError(
                "set bind_dn (search, then bind) or bind_template (direct bind)".into(),
            ));
        }
        let tls = if tls_wanted {
            Some(
                wharf_net::post::client_config(settings.ca_pem.as_deref())
                    .map_err(|e| err("TLS", e))?,
            )
        } else {
            None
        };
        let port = url.port().unwrap_or(if ldaps { 636 } else { 389 });
        let ldaps = ldaps.then(|| {
            let host = match &host {
                url::Host::Domain(d) => d.to_string(),
                url::Host::Ipv4(a) => a.to_string(),
                url::Host::Ipv6(a) => a.to_string(),
            };
            (host, port, server_name)
        });
        Ok(LdapMethod {
            name,
            settings,
            tls,
            ldaps,
            pool: Mutex::new(Vec::new()),
            cached: Mutex::new(HashMap::new()),
            salt: rand_salt()?,
        })
    }

    /// A new connection (not bound).
    async fn connect(&self) -> Result<Ldap, LdapMethodError> {
        let timeout = self.settings.timeout;
        let (conn, ldap) = match (&self.ldaps, &self.tls) {
            (Some((host, port, name)), Some(config)) => {
                // TLS here, then plain LDAP over one end of a socket pair for ldap3.
                let tcp = tokio::time::timeout(
                    timeout,
                    tokio::net::TcpStream::connect((host.as_str(), *port)),
                )
                .await
                .map_err(|_| {
                    LdapMethodError(format!("no connection within {} s", timeout.as_secs()))
                })?
                .map_err(|e| err("cannot connect", e))?;
                let tls = tokio::time::timeout(
                    timeout,
                    tokio_rustls::TlsConnector::from(Arc::clone(config)).connect(name.clone(), tcp),
                )
                .await
                .map_err(|_| LdapMethodError("TLS handshake timed out".into()))?
                .map_err(|e| err("TLS handshake failed", e))?;
                let (ours, theirs) =
                    std::os::unix::net::UnixStream::pair().map_err(|e| err("socket pair", e))?;
                ours.set_nonblocking(true)
                    .map_err(|e| err("socket pair", e))?;
                let ours =
                    tokio::net::UnixStream::from_std(ours).map_err(|e| err("socket pair", e))?;
                tokio::spawn(async move {
                    let (mut ours, mut tls) = (ours, tls);
                    let _ = tokio::io::copy_bidirectional(&mut ours, &mut tls).await;
                });
                let settings = LdapConnSettings::new()
                    .set_conn_timeout(timeout)
                    .set_std_stream(StdStream::Unix(theirs));
                LdapConnAsync::with_settings(settings, "ldapi://wharf-bridge")
                    .await
                    .map_err(|e| err("LDAP", e))?
            }
            _ => {
                let mut settings = LdapConnSettings::new()
                    .set_conn_timeout(timeout)
                    .set_starttls(self.settings.starttls);
                if let Some(config) = &self.tls {
                    settings = settings.set_config(Arc::clone(config));
                }
                LdapConnAsync::with_settings(settings, &self.settings.url)
                    .await
                    .map_err(|e| err("cannot connect", e))?
            }
        };
        ldap3::drive!(conn);
        Ok(ldap)
    }

    /// A service-bound connection from the pool (`true`: reused, it may have gone stale),
    /// or a new one.
    async fn service(&self) -> Result<(Ldap, bool), LdapMethodError> {
        if let Some(ldap) = self.pool.lock().ok().and_then(|mut p| p.pop()) {
            return Ok((ldap, true));
        }
        Ok((self.new_service().await?, false))
    }

    /// A new service-bound connection.
    async fn new_service(&self) -> Result<Ldap, LdapMethodError> {
        let mut ldap = self.connect().await?;
        let dn = self.settings.bind_dn.clone().unwrap_or_default();
        let password = self.settings.bind_password.clone().unwrap_or_default();
        let result = ldap
            .with_timeout(self.settings.timeout)
            .simple_bind(&dn, &password)
            .await
            .map_err(|e| err("service bind", e))?;
        if result.rc != 0 {
            return Err(LdapMethodError(format!(
                "service bind as {dn} refused (result {}: {})",
                result.rc, result.text
            )));
        }
        Ok(ldap)
    }

    fn give_back(&self, ldap: Ldap) {
        if let Ok(mut pool) = self.pool.lock()
            && pool.len() < POOL_SIZE
        {
            pool.push(ldap);
        }
    }

    async fn search(
        &self,
        ldap: &mut Ldap,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
    ) -> Result<Vec<SearchEntry>, LdapMethodError> {
        let (entries, _) = ldap
            .with_timeout(self.settings.timeout)
            .with_search_options(ldap3::SearchOptions::new().sizelimit(16))
            .search(base, scope, filter, attrs.to_vec())
            .await
            .map_err(|e| err("search", e))?
            .non_error()
            .map_err(|e| err("search", e))?;
        entries
            .into_iter()
            .map(|raw| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    SearchEntry::construct(raw)
                }))
                .map_err(|_| LdapMethodError("malformed entry from the directory".into()))
            })
            .collect()
    }

    /// Where a home from the directory must lie.
    pub fn home_roots(&self) -> &HomeRoots {
        &self.settings.home_roots
    }

    fn wanted(&self) -> Vec<&str> {
        let mut attrs = vec!["memberOf", self.settings.name_attribute.as_str()];
        attrs.extend(self.settings.home_attribute.as_deref());
        attrs.extend(self.settings.key_attribute.as_deref());
        attrs
    }

    /// Asks the directory about one attempt (or remembers a recent success).
    pub async fn check(
        &self,
        username: &str,
        credential: &Credential<'_>,
    ) -> Result<LdapVerdict, LdapMethodError> {
        let key = match credential {
            Credential::Password(p) if !self.settings.cache.is_zero() && !p.is_empty() => {
                Some(self.cache_key(username, p))
            }
            _ => None,
        };
        if let Some(key) = &key
            && let Some(record) = self.remembered(key)
        {
            return Ok(LdapVerdict::Accept(Box::new(record)));
        }
        let verdict = if self.settings.bind_dn.is_some() {
            self.search_then_bind(username, credential).await
        } else {
            self.direct_bind(username, credential).await
        }?;
        if let (Some(key), LdapVerdict::Accept(record)) = (key, &verdict)
            && let Ok(mut cached) = self.cached.lock()
        {
            let ttl = self.settings.cache;
            cached.retain(|_, (at, _)| at.elapsed() < ttl);
            if cached.len() < MAX_CACHED {
                cached.insert(key, (std::time::Instant::now(), (**record).clone()));
            }
        }
        Ok(verdict)
    }

    fn cache_key(&self, username: &str, password: &str) -> String {
        let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        context.update(&self.salt);
        context.update(username.as_bytes());
        context.update(&[0]);
        context.update(password.as_bytes());
        wharf_types::hex(context.finish().as_ref())
    }

    fn remembered(&self, key: &str) -> Option<AccountRecord> {
        let cached = self.cached.lock().ok()?;
        let (at, record) = cached.get(key)?;
        (at.elapsed() < self.settings.cache).then(|| record.clone())
    }

    /// The one entry `user_filter` finds for `username` (`None`: none), with the
    /// service-bound connection that found it, to be given back.
    async fn find_user(
        &self,
        username: &str,
    ) -> Result<(Ldap, Option<SearchEntry>), LdapMethodError> {
        let (mut service, reused) = self.service().await?;
        let filter = self
            .settings
            .user_filter
            .replace("{user}", &ldap3::ldap_escape(username));
        let base = self.settings.base_dn.as_str();
        let wanted = self.wanted();
        let found = self
            .search(&mut service, base, Scope::Subtree, &filter, &wanted)
            .await;
        // A failed connection is dropped, not pooled; one that waited in the pool may have
        // been closed by the directory meanwhile, so the search is tried once more afresh.
        let mut entries = match found {
            Ok(entries) => entries,
            Err(_) if reused => {
                service = self.new_service().await?;
                self.search(&mut service, base, Scope::Subtree, &filter, &wanted)
                    .await?
            }
            Err(e) => return Err(e),
        };
        if entries.len() > 1 {
            self.give_back(service);
            return Err(LdapMethodError(format!(
                "{} entries match {filter}; the filter must find one user",
                entries.len()
            )));
        }
        let entry = entries.pop();
        Ok((service, entry))
    }

    /// Looks the account `username` up again with the service account, without its
    /// password, for a login kept across requests: the entry must still exist, match
    /// `user_filter` and be in a mapped group where one is required. `None` when this
    /// method has no service account (direct bind): only the user's password could tell.
    pub async fn recheck(&self, username: &str) -> Result<Option<LdapVerdict>, LdapMethodError> {
        if self.settings.bind_dn.is_none() {
            return Ok(None);
        }
        let (mut service, entry) = self.find_user(username).await?;
        let Some(entry) = entry else {
            self.give_back(service);
            return Ok(Some(LdapVerdict::NotMine));
        };
        let groups = self.groups_of(&mut service, &entry).await;
        self.give_back(service);
        self.account(username, &entry, groups?).map(Some)
    }

    async fn search_then_bind(
        &self,
        username: &str,
        credential: &Credential<'_>,
    ) -> Result<LdapVerdict, LdapMethodError> {
        let (mut service, entry) = self.find_user(username).await?;
        let Some(entry) = entry else {
            self.give_back(service);
            return Ok(LdapVerdict::NotMine);
        };
        match credential {
            Credential::Password(password) => {
                if let Some(refused) = self.bind_as(&entry.dn, password).await? {
                    self.give_back(service);
                    return Ok(LdapVerdict::Reject(refused));
                }
            }
            Credential::PublicKey(offered) => {
                let known = self.settings.key_attribute.as_ref().is_some_and(|attr| {
                    entry.attrs.get(attr).is_some_and(|lines| {
                        lines
                            .iter()
                            .filter_map(|l| parse_public_key(l).ok())
                            .any(|k| k.key_data() == offered.key_data())
                    })
                });
                if !known {
                    self.give_back(service);
                    return Ok(LdapVerdict::Reject(crate::AuthFailure::KeyNotAuthorised));
                }
            }
        }
        let groups = self.groups_of(&mut service, &entry).await;
        self.give_back(service);
        self.account(username, &entry, groups?)
    }

    async fn direct_bind(
        &self,
        username: &str,
        credential: &Credential<'_>,
    ) -> Result<LdapVerdict, LdapMethodError> {
        let Credential::Password(password) = credential else {
            // Without a service account there is nothing to read keys with.
            return Ok(LdapVerdict::NotMine);
        };
        let template = self.settings.bind_template.clone().unwrap_or_default();
        let dn = template.replace("{user}", &ldap3::dn_escape(username));
        if password.is_empty() {
            return Ok(LdapVerdict::Reject(crate::AuthFailure::WrongPassword));
        }
        let mut ldap = self.connect().await?;
        let result = ldap
            .with_timeout(self.settings.timeout)
            .simple_bind(&dn, password)
            .await
            .map_err(|e| err("bind", e))?;
        if result.rc == 49 {
            // A direct bind cannot tell an unknown user from a wrong password: it decides.
            let _ = ldap.unbind().await;
            return Ok(LdapVerdict::Reject(crate::AuthFailure::WrongPassword));
        }
        if result.rc != 0 {
            let _ = ldap.unbind().await;
            return Err(LdapMethodError(format!(
                "bind refused (result {}: {})",
                result.rc, result.text
            )));
        }
        let entries = self
            .search(
                &mut ldap,
                &dn,
                Scope::Base,
                "(objectClass=*)",
                &self.wanted(),
            )
            .await;
        let entry = match entries {
            Ok(mut e) if !e.is_empty() => e.swap_remove(0),
            Ok(_) => SearchEntry {
                dn: dn.clone(),
                attrs: HashMap::new(),
                bin_attrs: HashMap::new(),
            },
            Err(e) => {
                let _ = ldap.unbind().await;
                return Err(e);
            }
        };
        let groups = self.groups_of(&mut ldap, &entry).await;
        let _ = ldap.unbind().await;
        self.account(username, &entry, groups?)
    }

    /// Binds as `dn` on a fresh connection; `Some(failure)` when the directory refuses.
    async fn bind_as(
        &self,
        dn: &str,
        password: &str,
    ) -> Result<Option<crate::AuthFailure>, LdapMethodError> {
        if password.is_empty() {
            return Ok(Some(crate::AuthFailure::WrongPassword));
        }
        let mut ldap = self.connect().await?;
        let result = ldap
            .with_timeout(self.settings.timeout)
            .simple_bind(dn, password)
            .await
            .map_err(|e| err("bind", e))?;
        let _ = ldap.unbind().await;
        match result.rc {
            0 => Ok(None),
            49 => Ok(Some(crate::AuthFailure::WrongPassword)),
            rc => Err(LdapMethodError(format!(
                "bind refused (result {rc}: {})",
                result.text
            ))),
        }
    }

    /// The user's LDAP group DNs, lowercase.
    async fn groups_of(
        &self,
        ldap: &mut Ldap,
        entry: &SearchEntry,
    ) -> Result<Vec<String>, LdapMethodError> {
        let dns: Vec<String> = match &self.settings.group_base_dn {
            Some(base) => {
                let filter = self
                    .settings
                    .group_filter
                    .replace("{dn}", &ldap3::ldap_escape(entry.dn.as_str()));
                self.search(ldap, base, Scope::Subtree, &filter, &["cn"])
                    .await?
                    .into_iter()
                    .map(|g| g.dn)
                    .collect()
            }
            None => entry.attrs.get("memberOf").cloned().unwrap_or_default(),
        };
        Ok(dns.iter().map(|d| normalise_dn(d)).collect())
    }

    fn account(
        &self,
        username: &str,
        entry: &SearchEntry,
        ldap_groups: Vec<String>,
    ) -> Result<LdapVerdict, LdapMethodError> {
        let mut groups: Vec<String> = Vec::new();
        for (dn, group) in &self.settings.group_map {
            if ldap_groups.contains(dn) && !groups.contains(group) {
                groups.push(group.clone());
            }
        }
        if groups.is_empty() {
            if self.settings.require_group {
                return Ok(LdapVerdict::Reject(crate::AuthFailure::NotInGroup));
            }
            groups = self.settings.default_groups.clone();
        }
        let attr = |name: &Option<String>| {
            name.as_ref()
                .and_then(|a| entry.attrs.get(a))
                .cloned()
                .unwrap_or_default()
        };
        let home = attr(&self.settings.home_attribute).into_iter().next();
        let Some(name) = self.own_name(username, entry) else {
            return Ok(LdapVerdict::Reject(crate::AuthFailure::Misconfigured(
                format!(
                    "the entry {} has no usable {} (name_attribute): the account's name comes from it",
                    entry.dn, self.settings.name_attribute
                ),
            )));
        };
        Ok(LdapVerdict::Accept(Box::new(AccountRecord {
            name,
            password_hash: None,
            home,
            enabled: true,
            groups,
            keys: attr(&self.settings.key_attribute),
            rules: Vec::new(),
            addresses: Default::default(),
            expires_us: None,
            second_factor: None,
            require_second_factor: false,
            max_file_size: None,
            email: None,
        })))
    }
}

impl LdapMethod {
    /// The entry's own name for the account: its `name_attribute` value (the one equal to
    /// the name typed, without case, when it has several), whatever case was typed. `None`
    /// when the entry has no value that is a valid account name.
    fn own_name(&self, typed: &str, entry: &SearchEntry) -> Option<AccountName> {
        let attribute = &self.settings.name_attribute;
        // Attribute names are case-insensitive in LDAP; the directory answers in its own case.
        let values = entry
            .attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(attribute))
            .map(|(_, v)| v)?;
        let chosen = match values.as_slice() {
            [only] => only,
            several => several.iter().find(|v| v.eq_ignore_ascii_case(typed))?,
        };
        AccountName::new(chosen).ok()
    }
}

fn rand_salt() -> Result<[u8; 32], LdapMethodError> {
    let mut salt = [0u8; 32];
    aws_lc_rs::rand::fill(&mut salt)
        .map_err(|_| LdapMethodError("no randomness available".into()))?;
    Ok(salt)
}

/// A DN compared without case and without spaces after separators.
pub fn normalise_dn(dn: &str) -> String {
    dn.split(',')
        .map(|part| part.trim().to_lowercase())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str) -> LdapSettings {
        LdapSettings {
            url: url.into(),
            starttls: false,
            insecure_plaintext: false,
            ca_pem: None,
            timeout: Duration::from_secs(1),
            bind_dn: Some("cn=svc,dc=example,dc=org".into()),
            bind_password: Some("pw".into()),
            base_dn: "dc=example,dc=org".into(),
            user_filter: "(uid={user})".into(),
            bind_template: None,
            group_base_dn: None,
            group_filter: "(member={dn})".into(),
            group_map: Vec::new(),
            default_groups: vec!["users".into()],
            require_group: false,
            name_attribute: "uid".into(),
            home_attribute: None,
            home_roots: HomeRoots::default(),
            key_attribute: None,
            cache: Duration::ZERO,
        }
    }

    #[test]
    fn dns_compare_without_case_or_spaces() {
        assert_eq!(
            normalise_dn("CN=Partners, OU=Groups,DC=Example, DC=org"),
            "cn=partners,ou=groups,dc=example,dc=org"
        );
    }

    #[test]
    fn plaintext_and_unusable_urls_are_refused() {
        let refused = |s: LdapSettings| LdapMethod::new("x".into(), s).err().map(|e| e.0);
        assert!(
            refused(settings("ldap://127.0.0.1:389"))
                .unwrap()
                .contains("in clear")
        );
        assert!(
            refused(settings("http://127.0.0.1"))
                .unwrap()
                .contains("scheme")
        );
        let mut starttls_v6 = settings("ldap://[::1]:389");
        starttls_v6.starttls = true;
        assert!(refused(starttls_v6).unwrap().contains("IPv6"));
        let mut neither = settings("ldaps://127.0.0.1");
        neither.bind_dn = None;
        assert!(refused(neither).unwrap().contains("bind_template"));
        let mut local = settings("ldap://127.0.0.1:389");
        local.insecure_plaintext = true;
        assert!(refused(local).is_none());
    }
}
