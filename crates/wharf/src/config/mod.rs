//! `wharf.toml`: node-level settings, loaded strictly.
//!
//! Unknown keys are errors, and every error names the file, the line and the key, with what
//! to do about it. Relative paths are relative to the folder holding the configuration file.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use wharf_ssh::{Algorithms, Profile};

pub mod auth;
pub mod handler;
pub mod policy;
pub mod sink;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[server]`.
    #[serde(default)]
    pub server: ServerSection,
    /// `[store]`.
    #[serde(default)]
    pub store: StoreSection,
    /// `[audit]`.
    #[serde(default)]
    pub audit: AuditSection,
    /// `[[service]]`.
    #[serde(default, rename = "service")]
    pub services: Vec<ServiceSection>,
    /// `[tls]`.
    #[serde(default)]
    pub tls: Option<TlsSection>,
    /// `[ban]`.
    #[serde(default)]
    pub ban: crate::config::policy::BanSection,
    /// `[password_policy]`.
    #[serde(default)]
    pub password_policy: crate::config::policy::PasswordSection,
    /// `[[authentication]]`, in chain order.
    #[serde(default)]
    pub authentication: Vec<crate::config::auth::AuthenticationSection>,
    /// `[[handler]]`: event handlers.
    #[serde(default, rename = "handler")]
    pub handlers: Vec<crate::config::handler::HandlerSection>,
}

/// `[server]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Node name in audit records.
    #[serde(default = "default_node")]
    pub name: String,
    /// Data folder.
    #[serde(default = "default_data_dir")]
    pub data_dir: String,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            name: default_node(),
            data_dir: default_data_dir(),
        }
    }
}

fn default_node() -> String {
    "wharf-1".to_owned()
}

fn default_data_dir() -> String {
    "wharf-data".to_owned()
}

/// `[store]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// `sqlite:PATH`.
    #[serde(default = "default_store_url")]
    pub url: Spanned<String>,
}

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection {
            url: Spanned::new(0..0, default_store_url_text()),
        }
    }
}

fn default_store_url_text() -> String {
    "sqlite:wharf-data/wharf.db".to_owned()
}

fn default_store_url() -> Spanned<String> {
    Spanned::new(0..0, default_store_url_text())
}

/// `[audit]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// JSON-lines file receiving every record; empty to disable.
    #[serde(default = "default_jsonl")]
    pub jsonl: String,
    /// Rotate the JSON-lines file at this many bytes (0: never).
    #[serde(default)]
    pub rotate_size: u64,
    /// Rotate it when its first record is this many seconds old (0: never).
    #[serde(default)]
    pub rotate_age: u64,
    /// Rotated files kept (0: all).
    #[serde(default)]
    pub keep: usize,
    /// `[[audit.sink]]`: further copies, each with a filter.
    #[serde(default)]
    pub sink: Vec<crate::config::sink::SinkSection>,
}

impl Default for AuditSection {
    fn default() -> Self {
        AuditSection {
            jsonl: default_jsonl(),
            rotate_size: 0,
            rotate_age: 0,
            keep: 0,
            sink: Vec::new(),
        }
    }
}

fn default_jsonl() -> String {
    "wharf-data/audit.jsonl".to_owned()
}

/// `[tls]`: the certificate shared by the TLS services.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// PEM certificate chain.
    pub certificate: String,
    /// PEM private key.
    pub key: String,
}

/// An address: one literal, or a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Addresses {
    /// One address.
    One(String),
    /// Several.
    Many(Vec<String>),
}

/// `[[service]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSection {
    /// Unique name.
    pub name: Spanned<String>,
    /// `ssh` (others arrive with their services).
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    /// IPv4 or IPv6 literal, or a list; `::` listens on both families.
    #[serde(default = "default_address")]
    pub address: Spanned<Addresses>,
    /// TCP port; defaults to 2222 (ssh), 2121 (ftp) or 2990 (ftps-implicit).
    #[serde(default)]
    pub port: Option<Spanned<u16>>,
    /// SSH: banner shown before login.
    #[serde(default)]
    pub banner: Option<String>,
    /// Seconds a connection may stay idle.
    #[serde(default = "default_idle")]
    pub idle_timeout: Spanned<u64>,
    /// Seconds to authenticate.
    #[serde(default = "default_grace")]
    pub login_grace_time: Spanned<u64>,
    /// Connections at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: Spanned<usize>,
    /// Authentication attempts per connection (SSH: 6, FTP: 3).
    #[serde(default)]
    pub max_auth_tries: Option<Spanned<usize>>,
    /// FTP: `required` (default), `optional` or `off`.
    #[serde(default)]
    pub tls: Option<Spanned<String>>,
    /// FTP: a TLS data connection must resume the control connection's TLS session.
    #[serde(default = "yes")]
    pub require_tls_session_reuse: bool,
    /// FTP: IPv4 address announced in PASV replies (the public address behind NAT).
    #[serde(default)]
    pub passive_address: Option<Spanned<String>>,
    /// FTP: allow data connections to or from another address than the client's (FXP).
    #[serde(default)]
    pub allow_foreign_data: bool,
    /// Largest file a session may make, in bytes (every service type).
    #[serde(default)]
    pub max_file_size: Option<Spanned<u64>>,
    /// HTTP: largest upload in bytes.
    #[serde(default = "default_max_upload")]
    pub max_upload_size: Spanned<u64>,
    /// HTTP: seconds a logged-in client may stay idle before logging in again.
    #[serde(default = "default_session_timeout")]
    pub session_timeout: Spanned<u64>,
    /// HTTP: seconds a token or browser session lasts after its login, used or not.
    #[serde(default = "default_session_lifetime")]
    pub session_lifetime: Spanned<u64>,
    /// HTTP: seconds a Basic credential is remembered, and an LDAP or HTTP method's answer
    /// about a kept login trusted, before the method is asked again.
    #[serde(default = "default_recheck_after")]
    pub recheck_after: Spanned<u64>,
    /// HTTP: seconds to receive a request's headers (and keep-alive idle time).
    #[serde(default = "default_header_timeout")]
    pub header_timeout: Spanned<u64>,
    /// HTTP: seconds a request body may stall.
    #[serde(default = "default_body_timeout")]
    pub body_timeout: Spanned<u64>,
    /// HTTP: redirect every request to HTTPS on this port.
    #[serde(default)]
    pub redirect_to_https: Option<Spanned<u16>>,
    /// FTP: passive data port range `[first, last]`.
    #[serde(default)]
    pub passive_ports: Option<Spanned<Vec<u16>>>,
    /// FTP: seconds to wait for a data connection.
    #[serde(default = "default_data_timeout")]
    pub data_timeout: Spanned<u64>,
    /// FTP: connections at once from one address.
    #[serde(default = "default_max_per_ip")]
    pub max_per_ip: Spanned<usize>,
    /// FTP: allow active mode (PORT/EPRT), to the client's own address only.
    #[serde(default = "yes")]
    pub active_mode: bool,
    /// SSH: host key files (OpenSSH format).
    #[serde(default = "no_keys")]
    pub host_keys: Spanned<Vec<String>>,
    /// SSH: the algorithm profile the lists below default to.
    #[serde(default)]
    pub algorithms: Option<Spanned<String>>,
    /// SSH: key exchange algorithms.
    #[serde(default)]
    pub kex: Option<Spanned<Vec<String>>>,
    /// SSH: ciphers.
    #[serde(default)]
    pub ciphers: Option<Spanned<Vec<String>>>,
    /// SSH: MACs.
    #[serde(default)]
    pub macs: Option<Spanned<Vec<String>>>,
    /// SSH: host key algorithms.
    #[serde(default)]
    pub host_key_algorithms: Option<Spanned<Vec<String>>>,
}

impl ServiceSection {
    /// The configured port, or the type's default.
    pub fn port(&self) -> u16 {
        match &self.port {
            Some(p) => *p.get_ref(),
            None => match self.kind.get_ref().as_str() {
                "ftp" => 2121,
                "ftps-implicit" => 2990,
                "http" => 8080,
                "https" => 8443,
                _ => 2222,
            },
        }
    }

    /// The FTP TLS policy as written (`required` when absent).
    pub fn tls_policy(&self) -> &str {
        self.tls
            .as_ref()
            .map(|t| t.get_ref().as_str())
            .unwrap_or("required")
    }
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

/// One problem found in the file.
#[derive(Debug, Clone)]
pub struct Issue {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// Dotted key.
    pub key: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(
                f,
                "{}:{}: {}: {}",
                self.file.display(),
                line,
                self.key,
                self.message
            ),
            None => write!(f, "{}: {}: {}", self.file.display(), self.key, self.message),
        }
    }
}

/// All problems found.
#[derive(Debug)]
pub struct Issues(pub Vec<Issue>);

impl fmt::Display for Issues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{issue}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Issues {}

/// A loaded, validated configuration with its location.
pub struct Loaded {
    /// The parsed file.
    pub config: Config,
    /// The file's path.
    pub path: PathBuf,
    /// Folder relative paths start from.
    pub base: PathBuf,
}

fn line_of(text: &str, offset: usize) -> Option<usize> {
    if offset == 0 && text.is_empty() {
        return None;
    }
    Some(text[..offset.min(text.len())].matches('\n').count() + 1)
}

impl Loaded {
    /// Reads, parses and validates `path`.
    pub fn load(path: &Path) -> Result<Loaded, Issues> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Issues(vec![Issue {
                file: path.to_owned(),
                line: None,
                key: "(file)".to_owned(),
                message: format!("cannot read: {e}; run `wharf init` to create one"),
            }])
        })?;
        let config: Config = toml::from_str(&text).map_err(|e| {
            let line = e.span().and_then(|s| line_of(&text, s.start));
            Issues(vec![Issue {
                file: path.to_owned(),
                line,
                key: e
                    .message()
                    .split('`')
                    .nth(1)
                    .unwrap_or("(syntax)")
                    .to_owned(),
                message: format!(
                    "{}; see docs/configuration.md for the allowed keys",
                    e.message().trim()
                ),
            }])
        })?;
        let base = path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            })
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let loaded = Loaded {
            config,
            path: path.to_owned(),
            base,
        };
        let issues = loaded.validate(&text);
        if issues.is_empty() {
            Ok(loaded)
        } else {
            Err(Issues(issues))
        }
    }

    /// Resolves a configured path against the configuration's folder.
    pub fn resolve(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.base.join(p)
        }
    }

    fn validate(&self, text: &str) -> Vec<Issue> {
        let mut issues = Vec::new();
        let mut issue = |span: std::ops::Range<usize>, key: String, message: String| {
            issues.push(Issue {
                file: self.path.clone(),
                line: if span == (0..0) {
                    None
                } else {
                    line_of(text, span.start)
                },
                key,
                message,
            });
        };
        self.config.ban.validate(&mut issue);
        self.config.password_policy.validate(&mut issue);
        crate::config::auth::validate(&self.config.authentication, &mut issue);
        crate::config::handler::validate(self, &mut issue);
        crate::config::sink::validate(self, &mut issue);
        if let Err(e) = wharf_store::Store::check_url(self.config.store.url.get_ref()) {
            issue(
                self.config.store.url.span(),
                "store.url".into(),
                e.to_string(),
            );
        }
        if !self.resolve(&self.config.server.data_dir).is_dir() {
            issue(
                0..0,
                "server.data_dir".into(),
                format!(
                    "{:?} is not a folder; create it or run `wharf init`",
                    self.config.server.data_dir
                ),
            );
        }
        if let Some(tls) = &self.config.tls {
            for (key, file) in [("tls.certificate", &tls.certificate), ("tls.key", &tls.key)] {
                if !self.resolve(file).is_file() {
                    issue(
                        0..0,
                        key.into(),
                        format!("{file:?} does not exist; give a PEM file or remove [tls]"),
                    );
                }
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, service) in self.config.services.iter().enumerate() {
            let key = |k: &str| format!("service[{i}].{k}");
            if !names.insert(service.name.get_ref().clone()) {
                issue(
                    service.name.span(),
                    key("name"),
                    format!(
                        "duplicate service name {:?}; names must be unique",
                        service.name.get_ref()
                    ),
                );
            }
            match service.kind.get_ref().as_str() {
                "ssh" => {}
                "ftp" => {
                    if !matches!(service.tls_policy(), "required" | "optional" | "off") {
                        issue(
                            service.tls.as_ref().map(Spanned::span).unwrap_or(0..0),
                            key("tls"),
                            format!(
                                "tls = {:?} is not a policy; use \"required\", \"optional\" or \"off\"",
                                service.tls_policy()
                            ),
                        );
                    } else if service.tls_policy() != "off" && self.config.tls.is_none() {
                        issue(
                            service.kind.span(),
                            key("tls"),
                            "FTPS needs a certificate: add a [tls] section, or set tls = \"off\" for plain FTP".into(),
                        );
                    }
                }
                "ftps-implicit" => {
                    if let Some(tls) = &service.tls {
                        issue(
                            tls.span(),
                            key("tls"),
                            "an ftps-implicit service is always TLS; remove this key".into(),
                        );
                    }
                    if self.config.tls.is_none() {
                        issue(
                            service.kind.span(),
                            key("type"),
                            "implicit FTPS needs a certificate: add a [tls] section".into(),
                        );
                    }
                }
                "http" => {}
                "https" => {
                    if self.config.tls.is_none() {
                        issue(
                            service.kind.span(),
                            key("type"),
                            "HTTPS needs a certificate: add a [tls] section".into(),
                        );
                    }
                }
                "manager" => issue(
                    service.kind.span(),
                    key("type"),
                    format!(
                        "service type {:?} is not available in this version yet; remove this [[service]] or change it to \"ssh\"",
                        service.kind.get_ref()
                    ),
                ),
                other => issue(
                    service.kind.span(),
                    key("type"),
                    format!(
                        "unknown service type {other:?}; use ssh, ftp, ftps-implicit, http, https or manager"
                    ),
                ),
            }
            if let Some(port) = &service.redirect_to_https
                && service.kind.get_ref() != "http"
            {
                issue(
                    port.span(),
                    key("redirect_to_https"),
                    "redirect_to_https applies to an http service only".into(),
                );
            }
            if let Err(e) = parse_addresses(service.address.get_ref(), 1) {
                issue(service.address.span(), key("address"), e);
            }
            if let Some(port) = &service.port
                && *port.get_ref() == 0
            {
                issue(
                    port.span(),
                    key("port"),
                    "port 0 is not allowed; choose a port such as 2222".into(),
                );
            }
            for (field, value) in [
                ("idle_timeout", &service.idle_timeout),
                ("login_grace_time", &service.login_grace_time),
            ] {
                if *value.get_ref() == 0 {
                    issue(value.span(), key(field), "must be at least 1 second".into());
                }
            }
            if *service.max_connections.get_ref() == 0 {
                issue(
                    service.max_connections.span(),
                    key("max_connections"),
                    "must be at least 1".into(),
                );
            }
            if let Some(tries) = &service.max_auth_tries {
                if *tries.get_ref() == 0 {
                    issue(
                        tries.span(),
                        key("max_auth_tries"),
                        "must be at least 1".into(),
                    );
                } else if matches!(service.kind.get_ref().as_str(), "http" | "https") {
                    issue(
                        tries.span(),
                        key("max_auth_tries"),
                        "applies to ssh and ftp services (HTTP has no login per connection)".into(),
                    );
                }
            }
            if let Some(ports) = &service.passive_ports {
                match ports.get_ref().as_slice() {
                    [first, last] if first <= last && *first >= 1024 => {}
                    _ => issue(
                        ports.span(),
                        key("passive_ports"),
                        "give [first, last] with 1024 <= first <= last, such as [50000, 50100]"
                            .into(),
                    ),
                }
            }
            if *service.data_timeout.get_ref() == 0 {
                issue(
                    service.data_timeout.span(),
                    key("data_timeout"),
                    "must be at least 1 second".into(),
                );
            }
            if let Some(address) = &service.passive_address
                && address.get_ref().parse::<std::net::Ipv4Addr>().is_err()
            {
                issue(
                    address.span(),
                    key("passive_address"),
                    format!(
                        "{:?} is not an IPv4 address; PASV announces IPv4 only (EPSV needs no address)",
                        address.get_ref()
                    ),
                );
            }
            for (field, value) in [
                ("session_timeout", &service.session_timeout),
                ("session_lifetime", &service.session_lifetime),
                ("recheck_after", &service.recheck_after),
                ("header_timeout", &service.header_timeout),
                ("body_timeout", &service.body_timeout),
                ("max_upload_size", &service.max_upload_size),
            ] {
                if *value.get_ref() == 0 {
                    issue(value.span(), key(field), "must be at least 1".into());
                }
            }
            if *service.recheck_after.get_ref() > 3600 {
                issue(
                    service.recheck_after.span(),
                    key("recheck_after"),
                    "at most 3600 seconds: an LDAP or HTTP method's answer is not trusted longer"
                        .into(),
                );
            }
            if let Some(size) = &service.max_file_size
                && *size.get_ref() == 0
            {
                issue(
                    size.span(),
                    key("max_file_size"),
                    "must be at least 1".into(),
                );
            }
            if *service.max_per_ip.get_ref() == 0 {
                issue(
                    service.max_per_ip.span(),
                    key("max_per_ip"),
                    "must be at least 1".into(),
                );
            }
            if service.kind.get_ref() == "ssh" {
                if service.host_keys.get_ref().is_empty() {
                    issue(
                        service.host_keys.span(),
                        key("host_keys"),
                        "an SSH service needs at least one host key file".into(),
                    );
                }
                for file in service.host_keys.get_ref() {
                    if !self.resolve(file).exists() {
                        issue(
                            service.host_keys.span(),
                            key("host_keys"),
                            format!(
                                "host key {file:?} does not exist; generate one with `ssh-keygen -t ed25519 -N '' -f {file}`"
                            ),
                        );
                    }
                }
                if let Some(name) = &service.algorithms
                    && Profile::parse(name.get_ref()).is_none()
                {
                    issue(
                        name.span(),
                        key("algorithms"),
                        format!(
                            "{:?} is not a profile; use {}",
                            name.get_ref(),
                            Profile::NAMES
                        ),
                    );
                }
                let algorithms = self.algorithms(service);
                if let Err(e) = algorithms.validate() {
                    let (span, field) = match e.what {
                        "kex" => (service.kex.as_ref().map(Spanned::span), "kex"),
                        "cipher" => (service.ciphers.as_ref().map(Spanned::span), "ciphers"),
                        "mac" => (service.macs.as_ref().map(Spanned::span), "macs"),
                        _ => (
                            service.host_key_algorithms.as_ref().map(Spanned::span),
                            "host_key_algorithms",
                        ),
                    };
                    issue(span.unwrap_or(0..0), key(field), e.to_string());
                }
            }
        }
        issues
    }

    /// The algorithm policy of an SSH service.
    pub fn algorithms(&self, service: &ServiceSection) -> Algorithms {
        let profile = service
            .algorithms
            .as_ref()
            .and_then(|name| Profile::parse(name.get_ref()))
            .unwrap_or_default();
        let defaults = Algorithms::profile(profile);
        let pick = |v: &Option<Spanned<Vec<String>>>, d: Vec<String>| {
            v.as_ref().map(|s| s.get_ref().clone()).unwrap_or(d)
        };
        Algorithms {
            kex: pick(&service.kex, defaults.kex),
            ciphers: pick(&service.ciphers, defaults.ciphers),
            macs: pick(&service.macs, defaults.macs),
            host_keys: pick(&service.host_key_algorithms, defaults.host_keys),
        }
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

/// Seconds as a duration.
pub fn secs(value: &Spanned<u64>) -> Duration {
    Duration::from_secs(*value.get_ref())
}
