//! `[[authentication]]` in `wharf.toml`: the ordered authentication chain (`local`, `http`,
//! `ldap`). Without any entry the chain is the store's accounts alone (`local`).
//!
//! Checked here so that `check-config` names the line: an `http://` URL only to this
//! machine, `home_roots` absolute and never `/`, and `group_map` kept in the order written
//! (a DN given twice, in any case or spacing, is an error). It builds the methods and never
//! decides a login itself: the chain in wharf-auth does.

use std::ops::Range;
use std::time::Duration;

use anyhow::{Context as _, Result};
use serde::Deserialize;
use std::path::PathBuf;
use toml::Spanned;

use wharf_auth::{HomeRoots, HttpMethod, LdapMethod, LdapSettings, Method, normalise_dn};

use crate::config::Loaded;

/// One `[[authentication]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthenticationSection {
    /// `local`, `http` or `ldap`.
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    /// Name in events (`attrs.authenticator`); default: the type.
    #[serde(default)]
    pub name: Option<Spanned<String>>,
    /// `http`: where to POST each attempt.
    #[serde(default)]
    pub url: Option<Spanned<String>>,
    /// `http`: seconds for the whole exchange.
    #[serde(default = "default_timeout")]
    pub timeout: Spanned<u64>,
    /// `http`: PEM file of the only CA trusted for the URL (default: the system's CAs).
    #[serde(default)]
    pub ca: Option<Spanned<String>>,
    /// `http`: a token sent as `Authorization: Bearer`, given as `env:NAME` or `file:PATH`.
    #[serde(default)]
    pub bearer_token: Option<Spanned<String>>,
    /// `ldap`: StartTLS on an `ldap://` URL.
    #[serde(default)]
    pub starttls: bool,
    /// `ldap`: allow binds without TLS (a directory on this machine only).
    #[serde(default)]
    pub insecure_plaintext: bool,
    /// `ldap`: the service account that searches (search, then bind).
    #[serde(default)]
    pub bind_dn: Option<Spanned<String>>,
    /// `ldap`: its password, as `env:NAME` or `file:PATH`.
    #[serde(default)]
    pub bind_password: Option<Spanned<String>>,
    /// `ldap`: where users are searched.
    #[serde(default)]
    pub base_dn: Option<Spanned<String>>,
    /// `ldap`: the user search filter; `{user}` is the escaped login name.
    #[serde(default)]
    pub user_filter: Option<Spanned<String>>,
    /// `ldap`: direct bind to this DN; `{user}` is the DN-escaped login name.
    #[serde(default)]
    pub bind_template: Option<Spanned<String>>,
    /// `ldap`: where groups are searched (else the user's `memberOf`).
    #[serde(default)]
    pub group_base_dn: Option<Spanned<String>>,
    /// `ldap`: the group filter; `{dn}` is the escaped user DN.
    #[serde(default)]
    pub group_filter: Option<Spanned<String>>,
    /// `ldap`: LDAP group DN → Wharf group, used in the order written (each value's
    /// position in the file gives it).
    #[serde(default)]
    pub group_map: Option<Spanned<std::collections::BTreeMap<String, Spanned<String>>>>,
    /// `ldap`: Wharf groups of a user in no mapped group.
    #[serde(default)]
    pub default_groups: Option<Spanned<Vec<String>>>,
    /// `ldap`: refuse users in no mapped group.
    #[serde(default)]
    pub require_group: bool,
    /// `ldap`: attribute holding the account's name (default `uid`).
    #[serde(default)]
    pub name_attribute: Option<Spanned<String>>,
    /// `ldap`: attribute holding the home folder.
    #[serde(default)]
    pub home_attribute: Option<Spanned<String>>,
    /// `http`, `ldap`: folders every home the method gives must lie beneath (default: the
    /// data folder's `homes` and the roots of the account's groups' home templates).
    #[serde(default)]
    pub home_roots: Option<Spanned<Vec<Spanned<String>>>>,
    /// `ldap`: attribute holding OpenSSH public keys.
    #[serde(default)]
    pub key_attribute: Option<Spanned<String>>,
    /// `ldap`: seconds a successful password login is remembered (0: never).
    #[serde(default)]
    pub cache_seconds: Option<Spanned<u64>>,
}

fn default_timeout() -> Spanned<u64> {
    Spanned::new(0..0, 10)
}

impl AuthenticationSection {
    /// The name events use.
    pub fn name(&self) -> String {
        self.name
            .as_ref()
            .map(|n| n.get_ref().clone())
            .unwrap_or_else(|| self.kind.get_ref().clone())
    }

    /// `group_map` in the order written, DNs normalised, with each value's span.
    fn group_map_in_order(&self) -> Vec<(String, &Spanned<String>)> {
        let mut entries: Vec<(String, &Spanned<String>)> = self
            .group_map
            .as_ref()
            .map(|m| {
                m.get_ref()
                    .iter()
                    .map(|(dn, group)| (normalise_dn(dn), group))
                    .collect()
            })
            .unwrap_or_default();
        // TOML tables come back sorted by key; the values' places in the file say the order.
        entries.sort_by_key(|(_, group)| group.span().start);
        entries
    }
}

/// Reports what is wrong with the chain through `issue(span, key, message)`.
pub fn validate(
    chain: &[AuthenticationSection],
    issue: &mut dyn FnMut(Range<usize>, String, String),
) {
    let mut names = std::collections::HashSet::new();
    for (i, entry) in chain.iter().enumerate() {
        let key = |k: &str| format!("authentication[{i}].{k}");
        let present = |v: Option<Range<usize>>, k: &'static str| v.map(|span| (k, span));
        let http_only = [present(
            entry.bearer_token.as_ref().map(|v| v.span()),
            "bearer_token",
        )];
        let ldap_only = [
            present(entry.bind_dn.as_ref().map(|v| v.span()), "bind_dn"),
            present(
                entry.bind_password.as_ref().map(|v| v.span()),
                "bind_password",
            ),
            present(entry.base_dn.as_ref().map(|v| v.span()), "base_dn"),
            present(entry.user_filter.as_ref().map(|v| v.span()), "user_filter"),
            present(
                entry.bind_template.as_ref().map(|v| v.span()),
                "bind_template",
            ),
            present(
                entry.group_base_dn.as_ref().map(|v| v.span()),
                "group_base_dn",
            ),
            present(
                entry.group_filter.as_ref().map(|v| v.span()),
                "group_filter",
            ),
            present(entry.group_map.as_ref().map(|v| v.span()), "group_map"),
            present(
                entry.default_groups.as_ref().map(|v| v.span()),
                "default_groups",
            ),
            present(
                entry.home_attribute.as_ref().map(|v| v.span()),
                "home_attribute",
            ),
            present(
                entry.name_attribute.as_ref().map(|v| v.span()),
                "name_attribute",
            ),
            present(
                entry.key_attribute.as_ref().map(|v| v.span()),
                "key_attribute",
            ),
            present(
                entry.cache_seconds.as_ref().map(|v| v.span()),
                "cache_seconds",
            ),
        ];
        let shared = [
            present(entry.url.as_ref().map(|v| v.span()), "url"),
            present(entry.ca.as_ref().map(|v| v.span()), "ca"),
            present(entry.home_roots.as_ref().map(|v| v.span()), "home_roots"),
        ];
        let mut misplaced = |list: &[Option<(&'static str, Range<usize>)>], kind: &str| {
            for (k, span) in list.iter().flatten() {
                issue(
                    span.clone(),
                    key(k),
                    format!("applies to type \"{kind}\" only"),
                );
            }
        };
        match entry.kind.get_ref().as_str() {
            "local" => {
                misplaced(&http_only, "http");
                misplaced(&ldap_only, "ldap");
                for (k, span) in shared.iter().flatten() {
                    issue(
                        span.clone(),
                        key(k),
                        "applies to types \"http\" and \"ldap\" only".into(),
                    );
                }
            }
            "http" => {
                misplaced(&ldap_only, "ldap");
                match &entry.url {
                    None => issue(
                        entry.kind.span(),
                        key("url"),
                        "an http method needs url = \"https://...\"".into(),
                    ),
                    Some(url) => {
                        if let Err(why) =
                            wharf_net::post::check_url(url.get_ref(), entry.ca.is_some())
                        {
                            issue(url.span(), key("url"), why);
                        }
                    }
                }
                home_roots(entry, &key("home_roots"), issue);
                secret_spec(&entry.bearer_token, &key("bearer_token"), issue);
                if *entry.timeout.get_ref() == 0 {
                    issue(
                        entry.timeout.span(),
                        key("timeout"),
                        "must be at least 1 second".into(),
                    );
                }
            }
            "ldap" => {
                misplaced(&http_only, "http");
                match &entry.url {
                    None => issue(
                        entry.kind.span(),
                        key("url"),
                        "an ldap method needs url = \"ldaps://host:636\"".into(),
                    ),
                    Some(url) => {
                        let text = url.get_ref();
                        if !(text.starts_with("ldaps://") || text.starts_with("ldap://")) {
                            issue(
                                url.span(),
                                key("url"),
                                "must start with ldaps:// (or ldap:// with starttls)".into(),
                            );
                        } else if text.starts_with("ldap://")
                            && !entry.starttls
                            && !entry.insecure_plaintext
                        {
                            issue(
                                url.span(),
                                key("url"),
                                "passwords would cross the network in clear: use ldaps://, or starttls = true".into(),
                            );
                        }
                    }
                }
                match (&entry.bind_dn, &entry.bind_template) {
                    (None, None) => issue(
                        entry.kind.span(),
                        key("bind_dn"),
                        "set bind_dn (with bind_password and base_dn: search, then bind) or bind_template (direct bind)".into(),
                    ),
                    (Some(dn), _) => {
                        if entry.bind_password.is_none() {
                            issue(dn.span(), key("bind_password"), "bind_dn needs bind_password (env:NAME or file:PATH)".into());
                        }
                        if entry.base_dn.is_none() {
                            issue(dn.span(), key("base_dn"), "bind_dn needs base_dn, where users are searched".into());
                        }
                    }
                    (None, Some(t)) if !t.get_ref().contains("{user}") => {
                        issue(t.span(), key("bind_template"), "must contain {user}".into());
                    }
                    _ => {}
                }
                secret_spec(&entry.bind_password, &key("bind_password"), issue);
                home_roots(entry, &key("home_roots"), issue);
                if let Some(attribute) = &entry.name_attribute
                    && !is_attribute_name(attribute.get_ref())
                {
                    issue(
                        attribute.span(),
                        key("name_attribute"),
                        "give an LDAP attribute name, such as uid or sAMAccountName".into(),
                    );
                }
                let mut seen: Vec<String> = Vec::new();
                for (dn, group) in entry.group_map_in_order() {
                    if seen.contains(&dn) {
                        issue(
                            group.span(),
                            key("group_map"),
                            format!(
                                "{dn:?} is given twice (DNs compare without case and spaces); keep one"
                            ),
                        );
                    }
                    seen.push(dn);
                }
                if let Some(cache) = &entry.cache_seconds
                    && *cache.get_ref() > 3600
                {
                    issue(
                        cache.span(),
                        key("cache_seconds"),
                        "at most 3600: a changed password or group must take effect soon".into(),
                    );
                }
                if *entry.timeout.get_ref() == 0 {
                    issue(
                        entry.timeout.span(),
                        key("timeout"),
                        "must be at least 1 second".into(),
                    );
                }
            }
            other => issue(
                entry.kind.span(),
                key("type"),
                format!("unknown authentication type {other:?}; use local, http or ldap"),
            ),
        }
        let name = entry.name();
        if !names.insert(name.clone()) {
            let span = entry.name.as_ref().map_or(entry.kind.span(), |n| n.span());
            issue(
                span,
                key("name"),
                format!("the name {name:?} is used twice; give each method its own name"),
            );
        }
    }
}

/// Every `home_roots` entry must be absolute and narrower than `/`.
fn home_roots(
    entry: &AuthenticationSection,
    key: &str,
    issue: &mut dyn FnMut(Range<usize>, String, String),
) {
    let Some(roots) = &entry.home_roots else {
        return;
    };
    if roots.get_ref().is_empty() {
        issue(
            roots.span(),
            key.to_owned(),
            "give at least one folder (or leave the key out for the default)".into(),
        );
    }
    for root in roots.get_ref() {
        match wharf_auth::normalise_home(std::path::Path::new(root.get_ref())) {
            None => issue(
                root.span(),
                key.to_owned(),
                format!("{:?} is not an absolute path", root.get_ref()),
            ),
            Some(path) if path == std::path::Path::new("/") => issue(
                root.span(),
                key.to_owned(),
                "\"/\" would let a directory or service give any folder as a home; name the folder homes live in".into(),
            ),
            Some(_) => {}
        }
    }
}

fn is_attribute_name(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// The CA certificate file (PEM) the method `entry` trusts, read now, if it names one.
fn read_ca(
    loaded: &Loaded,
    entry: &AuthenticationSection,
    name: &str,
) -> anyhow::Result<Option<Vec<u8>>> {
    let Some(path) = &entry.ca else {
        return Ok(None);
    };
    let path = loaded.resolve(path.get_ref());
    let pem = std::fs::read(&path).with_context(|| {
        format!(
            "[[authentication]] {name}: cannot read ca {}",
            path.display()
        )
    })?;
    Ok(Some(pem))
}

/// Where homes given by the method `entry` must lie.
fn home_roots_of(loaded: &Loaded, entry: &AuthenticationSection) -> HomeRoots {
    match &entry.home_roots {
        Some(roots) => {
            HomeRoots::configured(roots.get_ref().iter().map(|r| PathBuf::from(r.get_ref())))
        }
        None => {
            let homes = loaded.resolve(&loaded.config.server.data_dir).join("homes");
            // Both spellings: as configured, and with links resolved (the default group's
            // template uses the latter).
            let canonical = std::fs::canonicalize(&homes).ok();
            HomeRoots::default_with(std::iter::once(homes).chain(canonical))
        }
    }
}

pub(crate) fn secret_spec(
    value: &Option<Spanned<String>>,
    key: &str,
    issue: &mut dyn FnMut(Range<usize>, String, String),
) {
    if let Some(v) = value
        && !(v.get_ref().starts_with("env:") || v.get_ref().starts_with("file:"))
    {
        issue(
            v.span(),
            key.to_owned(),
            "give the secret as env:NAME or file:PATH, never literally".into(),
        );
    }
}

/// Reads a secret given as `env:NAME` or `file:PATH` (relative to the configuration).
pub(crate) fn secret(loaded: &Loaded, spec: &str) -> Result<String> {
    secret_at(&loaded.base, spec)
}

/// Reads a secret given as `env:NAME` or `file:PATH` (a relative path from `base`).
pub(crate) fn secret_at(base: &std::path::Path, spec: &str) -> Result<String> {
    if let Some(name) = spec.strip_prefix("env:") {
        return std::env::var(name)
            .with_context(|| format!("environment variable {name} is not set"));
    }
    let path = base.join(spec.strip_prefix("file:").unwrap_or(spec));
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text.trim_end_matches(['\r', '\n']).to_owned())
}

/// The chain the configuration describes.
pub fn methods(loaded: &Loaded) -> Result<Vec<Method>> {
    let chain = &loaded.config.authentication;
    if chain.is_empty() {
        return Ok(vec![Method::Local]);
    }
    chain
        .iter()
        .map(|entry| {
            let name = entry.name();
            Ok(match entry.kind.get_ref().as_str() {
                "http" => {
                    let url = entry
                        .url
                        .as_ref()
                        .map(|u| u.get_ref().as_str())
                        .unwrap_or_default();
                    let ca = read_ca(loaded, entry, &name)?;
                    let bearer = entry
                        .bearer_token
                        .as_ref()
                        .map(|t| secret(loaded, t.get_ref()))
                        .transpose()
                        .with_context(|| format!("[[authentication]] {name}: bearer_token"))?;
                    Method::Http(
                        HttpMethod::new(
                            name.clone(),
                            url,
                            Duration::from_secs(*entry.timeout.get_ref()),
                            ca.as_deref(),
                            bearer,
                        )
                        .with_context(|| format!("[[authentication]] {name}"))?
                        .with_home_roots(home_roots_of(loaded, entry)),
                    )
                }
                "ldap" => {
                    let text =
                        |v: &Option<Spanned<String>>| v.as_ref().map(|s| s.get_ref().clone());
                    let ca = read_ca(loaded, entry, &name)?;
                    let bind_password = entry
                        .bind_password
                        .as_ref()
                        .map(|t| secret(loaded, t.get_ref()))
                        .transpose()
                        .with_context(|| format!("[[authentication]] {name}: bind_password"))?;
                    let settings = LdapSettings {
                        url: text(&entry.url).unwrap_or_default(),
                        starttls: entry.starttls,
                        insecure_plaintext: entry.insecure_plaintext,
                        ca_pem: ca,
                        timeout: Duration::from_secs(*entry.timeout.get_ref()),
                        bind_dn: text(&entry.bind_dn),
                        bind_password,
                        base_dn: text(&entry.base_dn).unwrap_or_default(),
                        user_filter: text(&entry.user_filter)
                            .unwrap_or_else(|| "(uid={user})".into()),
                        bind_template: text(&entry.bind_template),
                        group_base_dn: text(&entry.group_base_dn),
                        group_filter: text(&entry.group_filter)
                            .unwrap_or_else(|| "(|(member={dn})(uniqueMember={dn}))".into()),
                        group_map: entry
                            .group_map_in_order()
                            .into_iter()
                            .map(|(dn, group)| (dn, group.get_ref().clone()))
                            .collect(),
                        default_groups: entry
                            .default_groups
                            .as_ref()
                            .map(|g| g.get_ref().clone())
                            .unwrap_or_else(|| vec!["users".into()]),
                        require_group: entry.require_group,
                        name_attribute: text(&entry.name_attribute).unwrap_or_else(|| "uid".into()),
                        home_attribute: text(&entry.home_attribute),
                        home_roots: home_roots_of(loaded, entry),
                        key_attribute: text(&entry.key_attribute),
                        cache: Duration::from_secs(
                            entry.cache_seconds.as_ref().map_or(0, |s| *s.get_ref()),
                        ),
                    };
                    Method::Ldap(Box::new(
                        LdapMethod::new(name.clone(), settings)
                            .with_context(|| format!("[[authentication]] {name}"))?,
                    ))
                }
                _ => Method::Local,
            })
        })
        .collect()
}
