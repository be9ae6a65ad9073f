//! `[[service]]` in `wharf.toml`: each section made, once at load, into a typed [`Service`]
//! whose [`ServiceKind`] has one variant per type.
//!
//! A key is accepted only by the types it means something to, and any other key is refused
//! with its line, saying which types it belongs to. Code after loading matches on
//! `ServiceKind`; it never compares the `type` string. This module never opens a socket or
//! reads a key file: `validate` only checks that the files exist, `serve` does the rest.

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use wharf_ssh::{Algorithms, Profile};

use super::{Addresses, keys};

mod check;

/// The time a balancer has to send a whole PROXY header once connected (HAProxy sends it
/// at once, with or before the client's first bytes).
pub const PROXY_HEADER_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// What a section's checks report: where, which key (`service[N].KEY`), what to do.
pub type Found = (Range<usize>, String, String);

/// One `[[service]]`, typed.
#[derive(Debug)]
pub struct Service {
    /// Its place among the `[[service]]` sections, as messages name it (`service[N]`).
    pub index: usize,
    /// Unique name.
    pub name: Spanned<String>,
    /// Where `type` is written, for problems of the section as a whole.
    pub type_span: Range<usize>,
    /// IPv4 or IPv6 literal, or a list; `::` listens on both families.
    pub address: Spanned<Addresses>,
    /// TCP port; the type's default when absent.
    pub port: Option<Spanned<u16>>,
    /// Connections at once.
    pub max_connections: Spanned<usize>,
    /// Connections at once from one network.
    pub max_per_ip: Spanned<usize>,
    /// Largest file a session may make, in bytes.
    pub max_file_size: Option<Spanned<u64>>,
    /// Every connection starts with a load balancer's PROXY protocol header.
    pub proxy_protocol: Spanned<bool>,
    /// The balancers allowed to send it: addresses or networks.
    pub proxy_from: Option<Spanned<Vec<String>>>,
    /// The type and its own keys.
    pub kind: ServiceKind,
    /// The section's keys and values written canonically (what a reload compares).
    pub written: String,
}

/// The service types, with the keys each one takes beyond those of every service.
#[derive(Debug)]
pub enum ServiceKind {
    /// `ssh`: SFTP and SCP.
    Ssh { login: LoginKeys, ssh: SshKeys },
    /// `ftp`: FTP with explicit TLS (`AUTH TLS`), or plain.
    Ftp {
        login: LoginKeys,
        ftp: FtpKeys,
        tls: Spanned<FtpTls>,
    },
    /// `ftps-implicit`: TLS from the first byte.
    FtpsImplicit { login: LoginKeys, ftp: FtpKeys },
    /// `http`: the web client, REST API and WebDAV in clear.
    Http {
        http: HttpKeys,
        redirect_to_https: Option<Spanned<u16>>,
    },
    /// `https`: the same over TLS.
    Https { http: HttpKeys },
    /// `manager`: the administrators' web console and admin REST API, over TLS.
    Manager { manager: ManagerKeys },
}

/// An `ftp` service's TLS policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FtpTls {
    /// No login and no data in the clear (the default).
    Required,
    /// TLS offered, the clear allowed.
    Optional,
    /// Plain FTP.
    Off,
}

/// The keys every service takes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommonKeys {
    name: Spanned<String>,
    #[serde(rename = "type")]
    kind: Spanned<String>,
    #[serde(default = "default_address")]
    address: Spanned<Addresses>,
    #[serde(default)]
    port: Option<Spanned<u16>>,
    #[serde(default = "default_max_connections")]
    max_connections: Spanned<usize>,
    #[serde(default = "default_max_per_ip")]
    max_per_ip: Spanned<usize>,
    #[serde(default)]
    max_file_size: Option<Spanned<u64>>,
    #[serde(default = "no")]
    proxy_protocol: Spanned<bool>,
    #[serde(default)]
    proxy_from: Option<Spanned<Vec<String>>>,
}

/// Keys of the services with a login per connection (SSH and FTP).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginKeys {
    /// Seconds a connection may stay idle.
    #[serde(default = "default_idle")]
    pub idle_timeout: Spanned<u64>,
    /// Seconds to authenticate.
    #[serde(default = "default_grace")]
    pub login_grace_time: Spanned<u64>,
    /// Authentication attempts per connection (the type's default when absent).
    #[serde(default)]
    pub max_auth_tries: Option<Spanned<usize>>,
}

/// Keys of an `ssh` service.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshKeys {
    /// Host key files (OpenSSH format).
    #[serde(default = "no_keys")]
    pub host_keys: Spanned<Vec<String>>,
    /// Banner shown before login.
    #[serde(default)]
    pub banner: Option<String>,
    /// The algorithm profile the lists below default to.
    #[serde(default)]
    pub algorithms: Option<Spanned<String>>,
    /// Key exchange algorithms.
    #[serde(default)]
    pub kex: Option<Spanned<Vec<String>>>,
    /// Ciphers.
    #[serde(default)]
    pub ciphers: Option<Spanned<Vec<String>>>,
    /// MACs.
    #[serde(default)]
    pub macs: Option<Spanned<Vec<String>>>,
    /// Host key algorithms.
    #[serde(default)]
    pub host_key_algorithms: Option<Spanned<Vec<String>>>,
}

/// Keys of the FTP services (`ftp` and `ftps-implicit`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FtpKeys {
    /// A TLS data connection must resume the control connection's TLS session.
    #[serde(default = "yes")]
    pub require_tls_session_reuse: bool,
    /// IPv4 address announced in PASV replies (the public address behind NAT).
    #[serde(default)]
    pub passive_address: Option<Spanned<String>>,
    /// Passive data port range `[first, last]`.
    #[serde(default)]
    pub passive_ports: Option<Spanned<Vec<u16>>>,
    /// Allow data connections to or from another address than the client's (FXP).
    #[serde(default)]
    pub allow_foreign_data: bool,
    /// Seconds to wait for a data connection.
    #[serde(default = "default_data_timeout")]
    pub data_timeout: Spanned<u64>,
    /// Allow active mode (PORT/EPRT), to the client's own address only.
    #[serde(default = "yes")]
    pub active_mode: bool,
}

/// The key of an `ftp` service alone.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FtpTlsKey {
    #[serde(default)]
    tls: Option<Spanned<String>>,
}

/// Keys of the HTTP services (`http` and `https`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpKeys {
    /// Largest upload in bytes.
    #[serde(default = "default_max_upload")]
    pub max_upload_size: Spanned<u64>,
    /// Seconds a logged-in client may stay idle before logging in again.
    #[serde(default = "default_session_timeout")]
    pub session_timeout: Spanned<u64>,
    /// Seconds a token or browser session lasts after its login, used or not.
    #[serde(default = "default_session_lifetime")]
    pub session_lifetime: Spanned<u64>,
    /// Seconds a Basic credential is remembered, and an LDAP or HTTP method's answer about a
    /// kept login trusted, before the method is asked again.
    #[serde(default = "default_recheck_after")]
    pub recheck_after: Spanned<u64>,
    /// Seconds to receive a request's headers (and keep-alive idle time).
    #[serde(default = "default_header_timeout")]
    pub header_timeout: Spanned<u64>,
    /// Seconds a request body may stall.
    #[serde(default = "default_body_timeout")]
    pub body_timeout: Spanned<u64>,
}

/// Keys of the `manager` service.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagerKeys {
    /// Seconds a browser session may stay unused before its administrator logs in again.
    #[serde(default = "default_manager_session_timeout")]
    pub session_timeout: Spanned<u64>,
    /// Seconds a browser session lasts after its login, used or not.
    #[serde(default = "default_session_lifetime")]
    pub session_lifetime: Spanned<u64>,
    /// Seconds for a TLS handshake and a request's headers (and keep-alive idle time).
    #[serde(default = "default_header_timeout")]
    pub header_timeout: Spanned<u64>,
    /// The networks the Manager is open to; every other client is refused at accept.
    #[serde(default)]
    pub allow_from: Option<Spanned<Vec<String>>>,
}

fn default_manager_session_timeout() -> Spanned<u64> {
    Spanned::new(0..0, 900)
}

/// The key of an `http` service alone.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpPlainKey {
    #[serde(default)]
    redirect_to_https: Option<Spanned<u16>>,
}

/// A type as written in `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    Ssh,
    Ftp,
    FtpsImplicit,
    Http,
    Https,
    Manager,
}

/// A group of keys, one struct each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    Common,
    Login,
    Ssh,
    Ftp,
    FtpTls,
    Http,
    HttpPlain,
    Manager,
}

impl Group {
    fn keys(self) -> &'static [&'static str] {
        match self {
            Group::Common => keys::of::<CommonKeys>(),
            Group::Login => keys::of::<LoginKeys>(),
            Group::Ssh => keys::of::<SshKeys>(),
            Group::Ftp => keys::of::<FtpKeys>(),
            Group::FtpTls => keys::of::<FtpTlsKey>(),
            Group::Http => keys::of::<HttpKeys>(),
            Group::HttpPlain => keys::of::<HttpPlainKey>(),
            Group::Manager => keys::of::<ManagerKeys>(),
        }
    }
}

impl Type {
    const ALL: [Type; 6] = [
        Type::Ssh,
        Type::Ftp,
        Type::FtpsImplicit,
        Type::Http,
        Type::Https,
        Type::Manager,
    ];

    fn parse(name: &str) -> Option<Type> {
        Type::ALL.into_iter().find(|t| t.name() == name)
    }

    fn name(self) -> &'static str {
        match self {
            Type::Ssh => "ssh",
            Type::Ftp => "ftp",
            Type::FtpsImplicit => "ftps-implicit",
            Type::Http => "http",
            Type::Https => "https",
            Type::Manager => "manager",
        }
    }

    /// The protocol family, as the messages name a key's owners.
    fn family(self) -> &'static str {
        match self {
            Type::Ssh => "ssh",
            Type::Ftp | Type::FtpsImplicit => "ftp",
            Type::Http | Type::Https => "http",
            Type::Manager => "manager",
        }
    }

    fn groups(self) -> &'static [Group] {
        match self {
            Type::Ssh => &[Group::Common, Group::Login, Group::Ssh],
            Type::Ftp => &[Group::Common, Group::Login, Group::Ftp, Group::FtpTls],
            Type::FtpsImplicit => &[Group::Common, Group::Login, Group::Ftp],
            Type::Http => &[Group::Common, Group::Http, Group::HttpPlain],
            Type::Https => &[Group::Common, Group::Http],
            Type::Manager => &[Group::Common, Group::Manager],
        }
    }

    fn takes(self, key: &str) -> bool {
        self.groups().iter().any(|g| g.keys().contains(&key))
    }
}

impl Service {
    /// The configured port, or the type's default.
    pub fn port(&self) -> u16 {
        match &self.port {
            Some(p) => *p.get_ref(),
            None => match self.kind {
                ServiceKind::Ssh { .. } => 2222,
                ServiceKind::Ftp { .. } => 2121,
                ServiceKind::FtpsImplicit { .. } => 2990,
                ServiceKind::Http { .. } => 8080,
                ServiceKind::Https { .. } => 8443,
                ServiceKind::Manager { .. } => 9443,
            },
        }
    }

    /// The sockets to listen on.
    pub fn socket_addresses(&self) -> Result<Vec<SocketAddr>, String> {
        parse_addresses(self.address.get_ref(), self.port())
    }

    /// The PROXY-protocol policy, when `proxy_protocol = true` (its balancers as checked by
    /// `validate`; an entry that does not parse is left out, never widened).
    pub fn proxy(&self) -> Option<wharf_auth::ProxyPolicy> {
        if !*self.proxy_protocol.get_ref() {
            return None;
        }
        let from = self
            .proxy_from
            .as_ref()
            .map(|list| {
                list.get_ref()
                    .iter()
                    .filter_map(|n| n.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        Some(wharf_auth::ProxyPolicy {
            from,
            wait: PROXY_HEADER_WAIT,
        })
    }

    /// The type as written in `type`.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            ServiceKind::Ssh { .. } => "ssh",
            ServiceKind::Ftp { .. } => "ftp",
            ServiceKind::FtpsImplicit { .. } => "ftps-implicit",
            ServiceKind::Http { .. } => "http",
            ServiceKind::Https { .. } => "https",
            ServiceKind::Manager { .. } => "manager",
        }
    }

    /// Makes section `index` typed, or says everything wrong with its keys.
    pub fn from_section(
        index: usize,
        section: Spanned<DeValue<'_>>,
    ) -> Result<Service, Vec<Found>> {
        let key = |k: &str| format!("service[{index}].{k}");
        let span = section.span();
        let DeValue::Table(table) = section.into_inner() else {
            return Err(vec![(
                span,
                format!("service[{index}]"),
                "write each service as a [[service]] section".into(),
            )]);
        };
        let ty = match table.get("type").map(|v| (v.span(), v.get_ref())) {
            None => {
                return Err(vec![(
                    span,
                    key("type"),
                    "required: ssh, ftp, ftps-implicit, http or https".into(),
                )]);
            }
            Some((at, DeValue::String(name))) => match Type::parse(name) {
                Some(ty) => ty,
                None => {
                    return Err(vec![(
                        at,
                        key("type"),
                        format!(
                            "unknown service type {:?}; use ssh, ftp, ftps-implicit, http, https or manager",
                            name.as_ref()
                        ),
                    )]);
                }
            },
            Some((at, _)) => {
                return Err(vec![(
                    at,
                    key("type"),
                    "a string: ssh, ftp, ftps-implicit, http or https".into(),
                )]);
            }
        };

        let mut found = Vec::new();
        let mut parts: Vec<(Group, DeTable<'_>)> =
            ty.groups().iter().map(|g| (*g, DeTable::new())).collect();
        for (name, value) in table {
            let written = name.get_ref().as_ref();
            match parts.iter_mut().find(|(g, _)| g.keys().contains(&written)) {
                Some((_, part)) => {
                    part.insert(name, value);
                }
                None => found.push((name.span(), key(written), refusal(written, ty))),
            }
        }
        let mut take = Parts {
            parts,
            span,
            index,
            found: &mut found,
        };
        let common: Option<CommonKeys> = take.part(Group::Common);
        let kind = match ty {
            Type::Ssh => take
                .part(Group::Login)
                .zip(take.part(Group::Ssh))
                .map(|(login, ssh)| ServiceKind::Ssh { login, ssh }),
            Type::Ftp => {
                let tls = take
                    .part::<FtpTlsKey>(Group::FtpTls)
                    .and_then(|t| ftp_tls(t.tls, &key, take.found));
                take.part(Group::Login)
                    .zip(take.part(Group::Ftp))
                    .zip(tls)
                    .map(|((login, ftp), tls)| ServiceKind::Ftp { login, ftp, tls })
            }
            Type::FtpsImplicit => take
                .part(Group::Login)
                .zip(take.part(Group::Ftp))
                .map(|(login, ftp)| ServiceKind::FtpsImplicit { login, ftp }),
            Type::Http => take.part(Group::Http).zip(take.part(Group::HttpPlain)).map(
                |(http, plain): (HttpKeys, HttpPlainKey)| ServiceKind::Http {
                    http,
                    redirect_to_https: plain.redirect_to_https,
                },
            ),
            Type::Https => take
                .part(Group::Http)
                .map(|http| ServiceKind::Https { http }),
            Type::Manager => take
                .part(Group::Manager)
                .map(|manager| ServiceKind::Manager { manager }),
        };
        match (common, kind) {
            (Some(common), Some(kind)) if found.is_empty() => Ok(Service {
                index,
                name: common.name,
                type_span: common.kind.span(),
                address: common.address,
                port: common.port,
                max_connections: common.max_connections,
                max_per_ip: common.max_per_ip,
                max_file_size: common.max_file_size,
                proxy_protocol: common.proxy_protocol,
                proxy_from: common.proxy_from,
                kind,
                written: String::new(),
            }),
            _ => {
                found.sort_by_key(|(span, _, _)| span.start);
                Err(found)
            }
        }
    }
}

/// The keys of one section, sorted into their groups, read group by group.
struct Parts<'i, 'f> {
    parts: Vec<(Group, DeTable<'i>)>,
    span: Range<usize>,
    index: usize,
    found: &'f mut Vec<Found>,
}

impl Parts<'_, '_> {
    /// Reads `group`'s keys into `T`; a value of the wrong kind is reported at its key.
    fn part<T: for<'de> Deserialize<'de>>(&mut self, group: Group) -> Option<T> {
        let at = self.parts.iter().position(|(g, _)| *g == group)?;
        let (_, table) = std::mem::replace(&mut self.parts[at], (group, DeTable::new()));
        let written: Vec<(String, Range<usize>)> = table
            .iter()
            .map(|(k, v)| (k.get_ref().to_string(), v.span()))
            .collect();
        let value = Spanned::new(self.span.clone(), DeValue::Table(table));
        match T::deserialize(ValueDeserializer::from(value)) {
            Ok(part) => Some(part),
            Err(e) => {
                let span = e.span().unwrap_or(self.span.clone());
                let message = e.message().trim().to_owned();
                // The key whose value is at fault, or the one the message names (a missing
                // required key has no place of its own).
                let name = written
                    .iter()
                    .find(|(_, s)| s.start <= span.start && span.end <= s.end)
                    .map(|(k, _)| k.clone())
                    .or_else(|| message.split('`').nth(1).map(str::to_owned))
                    .unwrap_or_default();
                let key = if name.is_empty() {
                    format!("service[{}]", self.index)
                } else {
                    format!("service[{}].{name}", self.index)
                };
                self.found.push((span, key, message));
                None
            }
        }
    }
}

/// The policy an `ftp` service's `tls` names (`required` when absent).
fn ftp_tls(
    written: Option<Spanned<String>>,
    key: &dyn Fn(&str) -> String,
    found: &mut Vec<Found>,
) -> Option<Spanned<FtpTls>> {
    let Some(written) = written else {
        return Some(Spanned::new(0..0, FtpTls::Required));
    };
    let policy = match written.get_ref().as_str() {
        "required" => FtpTls::Required,
        "optional" => FtpTls::Optional,
        "off" => FtpTls::Off,
        other => {
            found.push((
                written.span(),
                key("tls"),
                format!(
                    "tls = {other:?} is not a policy; use \"required\", \"optional\" or \"off\""
                ),
            ));
            return None;
        }
    };
    Some(Spanned::new(written.span(), policy))
}

/// Why `key` is refused on a service of type `ty`, and what to do.
fn refusal(key: &str, ty: Type) -> String {
    let owners: Vec<Type> = Type::ALL.into_iter().filter(|t| t.takes(key)).collect();
    if owners.is_empty() {
        let all = Type::ALL
            .into_iter()
            .flat_map(|t| t.groups())
            .flat_map(|g| g.keys().iter().copied());
        let guess = keys::nearest(
            key,
            ty.groups().iter().flat_map(|g| g.keys().iter().copied()),
        )
        .or_else(|| keys::nearest(key, all));
        return match guess {
            Some(near) if ty.takes(near) => format!(
                "`{key}` is not a setting of any service; did you mean `{near}`? Correct it or remove it"
            ),
            Some(near) => format!(
                "`{key}` is not a setting of any service (`{near}` is a setting of {}, not of an {} service); remove it",
                owners_text(near),
                ty.name()
            ),
            None => format!(
                "`{key}` is not a setting of any service; remove it (docs/configuration.md lists the keys of an {} service)",
                ty.name()
            ),
        };
    }
    let why = match (key, ty) {
        ("tls", Type::FtpsImplicit) => " (an ftps-implicit service is always TLS)",
        ("max_auth_tries", Type::Http | Type::Https) => " (HTTP has no login per connection)",
        ("idle_timeout" | "login_grace_time", Type::Http | Type::Https) => {
            " (HTTP services have header_timeout and body_timeout)"
        }
        ("redirect_to_https", Type::Https) => " (it already is HTTPS)",
        _ => "",
    };
    format!(
        "`{key}` is not a setting of an {} service{why}; it applies to {}; remove it",
        ty.name(),
        owners_text(key)
    )
}

/// The services that take `key`, by family where a whole family does: "ssh services",
/// "ssh and ftp services (ssh, ftp and ftps-implicit)", "ftp services (type ftp only)".
fn owners_text(key: &str) -> String {
    let owners: Vec<Type> = Type::ALL.into_iter().filter(|t| t.takes(key)).collect();
    let mut names: Vec<&str> = Vec::new();
    let mut partial = false;
    for family in ["ssh", "ftp", "http", "manager"] {
        let members = Type::ALL.into_iter().filter(|t| t.family() == family);
        let (owned, missing): (Vec<Type>, Vec<Type>) = members.partition(|t| owners.contains(t));
        if missing.is_empty() {
            names.push(family);
        } else {
            partial |= !owned.is_empty();
            names.extend(owned.iter().map(|t| t.name()));
        }
    }
    let types: Vec<&str> = owners.iter().map(|t| t.name()).collect();
    let families = join(&names);
    if types == names && partial {
        format!("{families} services (type {} only)", join(&types))
    } else if types == names {
        format!("{families} services")
    } else {
        format!("{families} services ({})", join(&types))
    }
}

fn join(words: &[&str]) -> String {
    match words {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

impl SshKeys {
    /// The algorithm policy: the profile's lists, each replaced by the one written.
    pub fn algorithms(&self) -> Algorithms {
        let profile = self
            .algorithms
            .as_ref()
            .and_then(|name| Profile::parse(name.get_ref()))
            .unwrap_or_default();
        let defaults = Algorithms::profile(profile);
        let pick = |v: &Option<Spanned<Vec<String>>>, d: Vec<String>| {
            v.as_ref().map(|s| s.get_ref().clone()).unwrap_or(d)
        };
        Algorithms {
            kex: pick(&self.kex, defaults.kex),
            ciphers: pick(&self.ciphers, defaults.ciphers),
            macs: pick(&self.macs, defaults.macs),
            host_keys: pick(&self.host_key_algorithms, defaults.host_keys),
        }
    }
}

impl LoginKeys {
    /// Authentication attempts per connection, or the type's `default`.
    pub fn max_auth_tries(&self, default: usize) -> usize {
        self.max_auth_tries
            .as_ref()
            .map_or(default, |t| *t.get_ref())
    }
}

/// Socket addresses for `addresses` on `port`.
pub fn parse_addresses(addresses: &Addresses, port: u16) -> Result<Vec<SocketAddr>, String> {
    let list = match addresses {
        Addresses::One(a) => vec![a.clone()],
        Addresses::Many(v) => v.clone(),
    };
    if list.is_empty() {
        return Err("give at least one address, such as \"::\" or \"127.0.0.1\"".into());
    }
    list.iter()
        .map(|a| {
            let trimmed = a.trim_start_matches('[').trim_end_matches(']');
            trimmed
                .parse::<IpAddr>()
                .map(|ip| SocketAddr::new(ip, port))
                .map_err(|_| {
                    format!("{a:?} is not an IPv4 or IPv6 literal (host names are not accepted)")
                })
        })
        .collect()
}

fn default_address() -> Spanned<Addresses> {
    Spanned::new(0..0, Addresses::One("::".to_owned()))
}
fn default_max_upload() -> Spanned<u64> {
    Spanned::new(0..0, 10 << 30)
}
fn default_session_timeout() -> Spanned<u64> {
    Spanned::new(0..0, 900)
}
fn default_session_lifetime() -> Spanned<u64> {
    Spanned::new(0..0, 8 * 3600)
}
fn default_recheck_after() -> Spanned<u64> {
    Spanned::new(0..0, 120)
}
fn default_header_timeout() -> Spanned<u64> {
    Spanned::new(0..0, 30)
}
fn default_body_timeout() -> Spanned<u64> {
    Spanned::new(0..0, 60)
}
fn default_data_timeout() -> Spanned<u64> {
    Spanned::new(0..0, 60)
}
fn default_max_per_ip() -> Spanned<usize> {
    Spanned::new(0..0, 20)
}
fn yes() -> bool {
    true
}
fn no() -> Spanned<bool> {
    Spanned::new(0..0, false)
}
fn no_keys() -> Spanned<Vec<String>> {
    Spanned::new(0..0, Vec::new())
}
fn default_idle() -> Spanned<u64> {
    Spanned::new(0..0, 600)
}
fn default_grace() -> Spanned<u64> {
    Spanned::new(0..0, 120)
}
fn default_max_connections() -> Spanned<usize> {
    Spanned::new(0..0, 256)
}

#[cfg(test)]
mod tests;
