//! `[[location]]` and `[[transfer]]` in `wharf.toml`: where client-side transfers take files
//! from and deliver them to, and when. Everything is checked at load (names, types, keys
//! that belong to the type, patterns, cron expressions, key files), so a server never
//! starts with a transfer it cannot describe; secrets are read only when the server or a
//! command builds the transfers. This module never connects anywhere: wharf-transfers does.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use wharf_core::PathPattern;
use wharf_handlers::{Action, Filter, Handler};
use wharf_transfers::cron::Schedule;
use wharf_transfers::{
    After, Existing, FtpSecurity, HostKeys, Location, LocationKind, SftpLogin, Transfer, Trigger,
    Verify,
};

use crate::config::Loaded;
use crate::config::handler::{EventRef, event_id};

type Problem = (Range<usize>, String, String);

/// A value given once or as a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl OneOrMany {
    fn list(&self) -> Vec<String> {
        match self {
            OneOrMany::One(one) => vec![one.clone()],
            OneOrMany::Many(many) => many.clone(),
        }
    }
}

/// One `[[location]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocationSection {
    name: Spanned<String>,
    #[serde(rename = "type")]
    kind: Spanned<String>,
    #[serde(default)]
    folder: Option<Spanned<String>>,
    #[serde(default)]
    host: Option<Spanned<String>>,
    #[serde(default)]
    port: Option<Spanned<u16>>,
    #[serde(default)]
    username: Option<Spanned<String>>,
    #[serde(default)]
    password: Option<Spanned<String>>,
    #[serde(default)]
    key: Option<Spanned<String>>,
    #[serde(default)]
    key_passphrase: Option<Spanned<String>>,
    #[serde(default)]
    host_key: Option<Spanned<OneOrMany>>,
    #[serde(default)]
    known_hosts: Option<Spanned<String>>,
    #[serde(default)]
    tls: Option<Spanned<String>>,
    #[serde(default)]
    url: Option<Spanned<String>>,
    #[serde(default)]
    token: Option<Spanned<String>>,
    #[serde(default)]
    ca: Option<Spanned<String>>,
    #[serde(default)]
    certificate_sha256: Option<Spanned<OneOrMany>>,
    #[serde(default = "default_connect_timeout")]
    connect_timeout: Spanned<u64>,
    #[serde(default = "default_idle_timeout")]
    idle_timeout: Spanned<u64>,
    #[serde(default = "default_keepalive")]
    keepalive: Spanned<u64>,
}

fn default_connect_timeout() -> Spanned<u64> {
    Spanned::new(0..0, 30)
}

fn default_idle_timeout() -> Spanned<u64> {
    Spanned::new(0..0, 300)
}

fn default_keepalive() -> Spanned<u64> {
    Spanned::new(0..0, 60)
}

/// One `[[transfer]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferSection {
    name: Spanned<String>,
    source: Spanned<String>,
    #[serde(default = "root")]
    source_folder: Spanned<String>,
    #[serde(default)]
    files: Option<Spanned<String>>,
    #[serde(default)]
    recursive: bool,
    destination: Spanned<String>,
    #[serde(default = "root")]
    destination_folder: Spanned<String>,
    #[serde(default)]
    interval: Option<Spanned<u64>>,
    #[serde(default)]
    cron: Option<Spanned<String>>,
    #[serde(default)]
    on: Option<Spanned<Vec<EventRef>>>,
    #[serde(default)]
    on_path: Option<Spanned<String>>,
    #[serde(default)]
    on_accounts: Vec<String>,
    #[serde(default = "default_existing")]
    existing: Spanned<String>,
    #[serde(default = "default_verify")]
    verify: Spanned<String>,
    #[serde(default = "default_after")]
    after: Spanned<String>,
    #[serde(default)]
    move_to: Option<Spanned<String>>,
    #[serde(default = "default_attempts")]
    attempts: Spanned<u32>,
    #[serde(default = "default_retry_wait")]
    retry_wait: Spanned<u64>,
    #[serde(default = "default_parallel")]
    parallel: Spanned<u64>,
    #[serde(default = "zero")]
    rate: Spanned<u64>,
    #[serde(default = "default_min_age")]
    min_age: Spanned<u64>,
    #[serde(default = "default_max_files")]
    max_files: Spanned<u64>,
}

fn zero() -> Spanned<u64> {
    Spanned::new(0..0, 0)
}
fn root() -> Spanned<String> {
    Spanned::new(0..0, "/".to_owned())
}
fn default_existing() -> Spanned<String> {
    Spanned::new(0..0, "fail".to_owned())
}
fn default_verify() -> Spanned<String> {
    Spanned::new(0..0, "auto".to_owned())
}
fn default_after() -> Spanned<String> {
    Spanned::new(0..0, "keep".to_owned())
}
fn default_attempts() -> Spanned<u32> {
    Spanned::new(0..0, 5)
}
fn default_retry_wait() -> Spanned<u64> {
    Spanned::new(0..0, 30)
}
fn default_parallel() -> Spanned<u64> {
    Spanned::new(0..0, 4)
}
fn default_min_age() -> Spanned<u64> {
    Spanned::new(0..0, 10)
}
fn default_max_files() -> Spanned<u64> {
    Spanned::new(0..0, 10_000)
}

const TYPES: &[&str] = &["local", "sftp", "ftps", "ftp", "https"];
const PARALLEL: std::ops::RangeInclusive<u64> = 1..=64;
const MAX_FILES: std::ops::RangeInclusive<u64> = 1..=100_000;

fn check_name(name: &Spanned<String>, key: String) -> Result<(), Problem> {
    let n = name.get_ref();
    if n.is_empty()
        || n.len() > 64
        || !n
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err((
            name.span(),
            key,
            "use 1 to 64 letters, digits, '-', '_' or '.'".into(),
        ));
    }
    Ok(())
}

fn folder_path(value: &Spanned<String>, key: String) -> Result<String, Problem> {
    let v = value.get_ref();
    if !v.starts_with('/') || v.split('/').any(|part| part == "..") || v.contains('\0') {
        return Err((
            value.span(),
            key,
            format!(
                "{v:?}: give an absolute folder on the location, such as \"/outbox\", without \"..\""
            ),
        ));
    }
    Ok(v.clone())
}

impl LocationSection {
    fn kind_problem(&self, key: &dyn Fn(&str) -> String) -> Option<Problem> {
        let kind = self.kind.get_ref().as_str();
        if !TYPES.contains(&kind) {
            return Some((
                self.kind.span(),
                key("type"),
                format!("{kind:?} is not a location type; use {}", TYPES.join(", ")),
            ));
        }
        let given: [(&str, bool); 14] = [
            ("folder", self.folder.is_some()),
            ("host", self.host.is_some()),
            ("port", self.port.is_some()),
            ("username", self.username.is_some()),
            ("password", self.password.is_some()),
            ("key", self.key.is_some()),
            ("key_passphrase", self.key_passphrase.is_some()),
            ("host_key", self.host_key.is_some()),
            ("known_hosts", self.known_hosts.is_some()),
            ("tls", self.tls.is_some()),
            ("ca", self.ca.is_some()),
            ("certificate_sha256", self.certificate_sha256.is_some()),
            ("url", self.url.is_some()),
            ("token", self.token.is_some()),
        ];
        let allowed: &[&str] = match kind {
            "local" => &["folder"],
            "ftps" => &[
                "host",
                "port",
                "username",
                "password",
                "tls",
                "ca",
                "certificate_sha256",
            ],
            "ftp" => &["host", "port", "username", "password"],
            "https" => &[
                "url",
                "username",
                "password",
                "token",
                "ca",
                "certificate_sha256",
            ],
            _ => &[
                "host",
                "port",
                "username",
                "password",
                "key",
                "key_passphrase",
                "host_key",
                "known_hosts",
            ],
        };
        given
            .iter()
            .find(|(k, set)| *set && !allowed.contains(k))
            .map(|(k, _)| {
                (
                    self.kind.span(),
                    key(k),
                    format!("does not apply to type = \"{kind}\"; remove it"),
                )
            })
    }

    fn build(&self, i: usize, loaded: &Loaded, resolve_secrets: bool) -> Result<Location, Problem> {
        let key = |k: &str| format!("location[{i}].{k}");
        check_name(&self.name, key("name"))?;
        if let Some(problem) = self.kind_problem(&key) {
            return Err(problem);
        }
        for (k, v) in [
            ("connect_timeout", &self.connect_timeout),
            ("idle_timeout", &self.idle_timeout),
            ("keepalive", &self.keepalive),
        ] {
            if !(1..=86_400).contains(v.get_ref()) {
                return Err((v.span(), key(k), "give 1 to 86400 seconds".into()));
            }
        }
        let kind = match self.kind.get_ref().as_str() {
            "local" => {
                let Some(folder) = &self.folder else {
                    return Err((
                        self.name.span(),
                        key("folder"),
                        "a local location needs the folder it stands for".into(),
                    ));
                };
                let path = loaded.resolve(folder.get_ref());
                if !path.is_dir() {
                    return Err((
                        folder.span(),
                        key("folder"),
                        format!("{} is not a folder; create it", path.display()),
                    ));
                }
                LocationKind::Local {
                    folder: std::path::absolute(&path).unwrap_or(path),
                }
            }
            "ftps" | "ftp" => self.ftp(&key, loaded, resolve_secrets)?,
            "https" => self.https(&key, loaded, resolve_secrets)?,
            _ => self.sftp(&key, loaded, resolve_secrets)?,
        };
        Ok(Location {
            name: self.name.get_ref().clone(),
            kind,
            connect_timeout: Duration::from_secs(*self.connect_timeout.get_ref()),
            idle_timeout: Duration::from_secs(*self.idle_timeout.get_ref()),
            keepalive: Duration::from_secs(*self.keepalive.get_ref()),
            unusable: None,
        })
    }

    fn host(&self, key: &dyn Fn(&str) -> String) -> Result<String, Problem> {
        self.host
            .as_ref()
            .map(|h| {
                h.get_ref()
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned()
            })
            .filter(|h| !h.is_empty())
            .ok_or_else(|| {
                (
                    self.name.span(),
                    key("host"),
                    "give the server's host name, IPv4 or IPv6 address".into(),
                )
            })
    }

    fn username(&self, key: &dyn Fn(&str) -> String) -> Result<String, Problem> {
        self.username
            .as_ref()
            .map(|u| u.get_ref().clone())
            .filter(|u| !u.is_empty())
            .ok_or_else(|| {
                (
                    self.name.span(),
                    key("username"),
                    "give the account's name on the server".into(),
                )
            })
    }

    /// How a TLS location's server is trusted: pinned certificates, a CA file, or the
    /// system's CAs.
    fn trust(
        &self,
        key: &dyn Fn(&str) -> String,
        loaded: &Loaded,
    ) -> Result<wharf_transfers::tls::Trust, Problem> {
        match (&self.certificate_sha256, &self.ca) {
            (Some(_), Some(ca)) => Err((
                ca.span(),
                key("ca"),
                "give certificate_sha256 (pinned) or ca (verified), not both".into(),
            )),
            (Some(pins), None) => {
                let mut list = Vec::new();
                for pin in pins.get_ref().list() {
                    match wharf_transfers::tls::normalise_pin(&pin) {
                        Some(hex) => list.push(hex),
                        None => {
                            return Err((
                                pins.span(),
                                key("certificate_sha256"),
                                format!(
                                    "{pin:?} is not a SHA-256 fingerprint; give it as `openssl x509 -noout -fingerprint -sha256` prints it"
                                ),
                            ));
                        }
                    }
                }
                Ok(wharf_transfers::tls::Trust::Pinned(list))
            }
            (None, Some(ca)) => {
                let path = loaded.resolve(ca.get_ref());
                let pem = std::fs::read(&path).map_err(|e| {
                    (
                        ca.span(),
                        key("ca"),
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                wharf_net::post::client_config(Some(&pem))
                    .map_err(|e| (ca.span(), key("ca"), e.to_string()))?;
                Ok(wharf_transfers::tls::Trust::Authority(Some(pem)))
            }
            (None, None) => Ok(wharf_transfers::tls::Trust::Authority(None)),
        }
    }

    fn https(
        &self,
        key: &dyn Fn(&str) -> String,
        loaded: &Loaded,
        resolve_secrets: bool,
    ) -> Result<LocationKind, Problem> {
        let Some(written) = &self.url else {
            return Err((
                self.name.span(),
                key("url"),
                "give the WebDAV folder's URL, such as \"https://dav.example.com/dav/\"".into(),
            ));
        };
        let url = url::Url::parse(written.get_ref())
            .map_err(|e| (written.span(), key("url"), format!("not a URL: {e}")))?;
        if url.scheme() != "https" || url.host_str().is_none_or(str::is_empty) {
            return Err((
                written.span(),
                key("url"),
                "give an https:// URL with a host: credentials never travel in the clear".into(),
            ));
        }
        if !url.username().is_empty() || url.password().is_some() || url.query().is_some() {
            return Err((
                written.span(),
                key("url"),
                "no credentials or query in the URL: use username and password, or token".into(),
            ));
        }
        let mut problems = Vec::new();
        for (value, k) in [(&self.password, "password"), (&self.token, "token")] {
            crate::config::auth::secret_spec(value, &key(k), &mut |s, k, m| {
                problems.push((s, k, m))
            });
        }
        if let Some(problem) = problems.into_iter().next() {
            return Err(problem);
        }
        let read = |spec: &Spanned<String>, k: &str| -> Result<String, Problem> {
            if resolve_secrets {
                crate::config::auth::secret(loaded, spec.get_ref())
                    .map_err(|e| (spec.span(), key(k), e.to_string()))
            } else {
                Ok(String::new())
            }
        };
        let login = match (&self.username, &self.password, &self.token) {
            (Some(user), Some(password), None) => wharf_transfers::DavLogin::Basic {
                username: user.get_ref().clone(),
                password: read(password, "password")?,
            },
            (None, None, Some(token)) => wharf_transfers::DavLogin::Bearer(read(token, "token")?),
            _ => {
                return Err((
                    self.name.span(),
                    key("username"),
                    "give username and password (HTTP Basic), or token (Bearer)".into(),
                ));
            }
        };
        Ok(LocationKind::Https {
            url,
            login,
            trust: self.trust(key, loaded)?,
        })
    }

    fn ftp(
        &self,
        key: &dyn Fn(&str) -> String,
        loaded: &Loaded,
        resolve_secrets: bool,
    ) -> Result<LocationKind, Problem> {
        let host = self.host(key)?;
        let username = self.username(key)?;
        let Some(password_spec) = &self.password else {
            return Err((
                self.name.span(),
                key("password"),
                "give the password as env:NAME or file:PATH".into(),
            ));
        };
        let mut problems = Vec::new();
        crate::config::auth::secret_spec(&self.password, &key("password"), &mut |s, k, m| {
            problems.push((s, k, m))
        });
        if let Some(problem) = problems.into_iter().next() {
            return Err(problem);
        }
        let (security, default_port) = if self.kind.get_ref() == "ftp" {
            (FtpSecurity::Plain, 21)
        } else {
            let trust = self.trust(key, loaded)?;
            match self.tls.as_ref().map(|t| t.get_ref().as_str()) {
                None | Some("explicit") => (FtpSecurity::Explicit(trust), 21),
                Some("implicit") => (FtpSecurity::Implicit(trust), 990),
                Some(other) => {
                    let span = self.tls.as_ref().map_or(0..0, |t| t.span());
                    return Err((
                        span,
                        key("tls"),
                        format!("{other:?} is not explicit or implicit"),
                    ));
                }
            }
        };
        let password = if resolve_secrets {
            crate::config::auth::secret(loaded, password_spec.get_ref())
                .map_err(|e| (password_spec.span(), key("password"), e.to_string()))?
        } else {
            String::new()
        };
        Ok(LocationKind::Ftp {
            host,
            port: self.port.as_ref().map_or(default_port, |p| *p.get_ref()),
            username,
            password,
            security,
        })
    }

    fn sftp(
        &self,
        key: &dyn Fn(&str) -> String,
        loaded: &Loaded,
        resolve_secrets: bool,
    ) -> Result<LocationKind, Problem> {
        let span = self.name.span();
        let host = self
            .host
            .as_ref()
            .map(|h| {
                h.get_ref()
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned()
            })
            .filter(|h| !h.is_empty())
            .ok_or_else(|| {
                (
                    span.clone(),
                    key("host"),
                    "give the server's host name, IPv4 or IPv6 address".into(),
                )
            })?;
        let username = self
            .username
            .as_ref()
            .map(|u| u.get_ref().clone())
            .filter(|u| !u.is_empty())
            .ok_or_else(|| {
                (
                    span.clone(),
                    key("username"),
                    "give the account's name on the server".into(),
                )
            })?;
        if self.password.is_none() && self.key.is_none() {
            return Err((
                span.clone(),
                key("password"),
                "give a password (env:NAME or file:PATH), a key file, or both".into(),
            ));
        }
        let mut problems = Vec::new();
        crate::config::auth::secret_spec(&self.password, &key("password"), &mut |s, k, m| {
            problems.push((s, k, m))
        });
        crate::config::auth::secret_spec(
            &self.key_passphrase,
            &key("key_passphrase"),
            &mut |s, k, m| problems.push((s, k, m)),
        );
        if let Some(problem) = problems.into_iter().next() {
            return Err(problem);
        }
        let host_keys = match (&self.host_key, &self.known_hosts) {
            (Some(pins), None) => {
                let list = pins.get_ref().list();
                if list.is_empty() {
                    return Err((
                        pins.span(),
                        key("host_key"),
                        "name at least one fingerprint".into(),
                    ));
                }
                if let Some(bad) = list
                    .iter()
                    .find(|f| !f.starts_with("SHA256:") || f.len() < 20)
                {
                    return Err((
                        pins.span(),
                        key("host_key"),
                        format!(
                            "{bad:?} is not a SHA-256 fingerprint; give it as `ssh-keygen -lf` prints it (SHA256:…)"
                        ),
                    ));
                }
                HostKeys::Fingerprints(list)
            }
            (None, Some(file)) => {
                let path = loaded.resolve(file.get_ref());
                if !path.is_file() {
                    return Err((
                        file.span(),
                        key("known_hosts"),
                        format!("{} does not exist", path.display()),
                    ));
                }
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                if text.lines().any(|l| l.trim_start().starts_with('@')) {
                    return Err((
                        file.span(),
                        key("known_hosts"),
                        format!(
                            "{}: markers (@revoked, @cert-authority) are not supported; list the trusted keys only",
                            path.display()
                        ),
                    ));
                }
                HostKeys::KnownHosts(path)
            }
            _ => {
                return Err((
                    span,
                    key("host_key"),
                    "give the server's host key fingerprint(s) (host_key) or a known_hosts file, not both: unknown host keys are refused".into(),
                ));
            }
        };
        let password = match (&self.password, resolve_secrets) {
            (Some(p), true) => Some(
                crate::config::auth::secret(loaded, p.get_ref())
                    .map_err(|e| (p.span(), key("password"), e.to_string()))?,
            ),
            _ => None,
        };
        let key_file = match &self.key {
            None => None,
            Some(k) => {
                let path = loaded.resolve(k.get_ref());
                if !path.is_file() {
                    return Err((
                        k.span(),
                        key("key"),
                        format!("{} does not exist", path.display()),
                    ));
                }
                // A key is checked at load; an encrypted one opens with its passphrase
                // when the server or a command reads the secrets.
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                match russh::keys::decode_secret_key(&text, None) {
                    Ok(_) => {}
                    Err(russh::keys::Error::KeyIsEncrypted) if self.key_passphrase.is_some() => {}
                    Err(russh::keys::Error::KeyIsEncrypted) => {
                        return Err((
                            k.span(),
                            key("key"),
                            format!(
                                "{} is encrypted: give key_passphrase (env:NAME or file:PATH)",
                                path.display()
                            ),
                        ));
                    }
                    Err(e) => {
                        return Err((
                            k.span(),
                            key("key"),
                            format!("{}: not an OpenSSH or PEM private key: {e}", path.display()),
                        ));
                    }
                }
                if resolve_secrets {
                    let passphrase = match &self.key_passphrase {
                        Some(p) => Some(
                            crate::config::auth::secret(loaded, p.get_ref())
                                .map_err(|e| (p.span(), key("key_passphrase"), e.to_string()))?,
                        ),
                        None => None,
                    };
                    let private = russh::keys::load_secret_key(&path, passphrase.as_deref())
                        .map_err(|e| {
                            (
                                k.span(),
                                key("key"),
                                format!(
                                    "{}: not a private key this server can use: {e}",
                                    path.display()
                                ),
                            )
                        })?;
                    Some(Arc::new(private))
                } else {
                    None
                }
            }
        };
        Ok(LocationKind::Sftp {
            host,
            port: self.port.as_ref().map_or(22, |p| *p.get_ref()),
            login: SftpLogin {
                username,
                password,
                key: key_file,
            },
            host_keys,
        })
    }
}

fn choice<T: Copy>(
    value: &Spanned<String>,
    key: String,
    options: &[(&str, T)],
) -> Result<T, Problem> {
    options
        .iter()
        .find(|(name, _)| name == value.get_ref())
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            (
                value.span(),
                key,
                format!(
                    "{:?} is not one of {}",
                    value.get_ref(),
                    options
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })
}

impl TransferSection {
    fn build(
        &self,
        i: usize,
        locations: &HashMap<String, Arc<Location>>,
    ) -> Result<Transfer, Problem> {
        let key = |k: &str| format!("transfer[{i}].{k}");
        check_name(&self.name, key("name"))?;
        let location = |name: &Spanned<String>, k: &str| {
            locations.get(name.get_ref()).cloned().ok_or_else(|| {
                (
                    name.span(),
                    key(k),
                    format!("no [[location]] is named {:?}", name.get_ref()),
                )
            })
        };
        let source = location(&self.source, "source")?;
        let destination = location(&self.destination, "destination")?;
        let source_folder = folder_path(&self.source_folder, key("source_folder"))?;
        let destination_folder = folder_path(&self.destination_folder, key("destination_folder"))?;
        if overlap(
            &source,
            &source_folder,
            &destination,
            &destination_folder,
            self.recursive,
        ) {
            return Err((
                self.destination_folder.span(),
                key("destination_folder"),
                "the destination is the source, or inside it: delivered files would be taken again"
                    .into(),
            ));
        }
        let files = self
            .files
            .as_ref()
            .map(|p| {
                PathPattern::new(p.get_ref()).map_err(|e| (p.span(), key("files"), e.to_string()))
            })
            .transpose()?;
        let mut triggers = Vec::new();
        if let Some(every) = &self.interval {
            if !(1..=31 * 86_400).contains(every.get_ref()) {
                return Err((
                    every.span(),
                    key("interval"),
                    "give 1 second to 31 days, in seconds".into(),
                ));
            }
            triggers.push(Trigger::Interval(Duration::from_secs(*every.get_ref())));
        }
        if let Some(cron) = &self.cron {
            let schedule = Schedule::parse(cron.get_ref())
                .map_err(|e| (cron.span(), key("cron"), e.to_string()))?;
            if schedule
                .next_after(time::OffsetDateTime::now_utc())
                .is_none()
            {
                return Err((
                    cron.span(),
                    key("cron"),
                    format!("{:?} never fires (no such day)", cron.get_ref()),
                ));
            }
            triggers.push(Trigger::Cron(schedule));
        }
        if self.on.is_some() {
            self.event_filter(&key)?;
            triggers.push(Trigger::Event);
        } else if self.on_path.is_some() || !self.on_accounts.is_empty() {
            return Err((
                self.name.span(),
                key("on"),
                "on_path and on_accounts narrow `on`: name the events too, such as on = [\"upload.finished\"]".into(),
            ));
        }
        let existing = choice(
            &self.existing,
            key("existing"),
            &[
                ("skip", Existing::Skip),
                ("replace", Existing::Replace),
                ("rename", Existing::Rename),
                ("fail", Existing::Fail),
            ],
        )?;
        let verify = choice(
            &self.verify,
            key("verify"),
            &[
                ("auto", Verify::Auto),
                ("size", Verify::Size),
                ("sha256", Verify::Sha256),
            ],
        )?;
        let after = match (self.after.get_ref().as_str(), &self.move_to) {
            ("keep", None) => After::Keep,
            ("delete", None) => After::Delete,
            ("move", Some(to)) => {
                let folder = folder_path(to, key("move_to"))?;
                let inside = |a: &str, b: &str| {
                    a.trim_end_matches('/') == b.trim_end_matches('/')
                        || a.starts_with(&format!("{}/", b.trim_end_matches('/')))
                };
                if inside(&source_folder, &folder) {
                    return Err((
                        to.span(),
                        key("move_to"),
                        "move_to is the source folder or holds it: every file would be left out"
                            .into(),
                    ));
                }
                After::Move(folder)
            }
            ("move", None) => {
                return Err((
                    self.after.span(),
                    key("move_to"),
                    "after = \"move\" needs move_to, the folder on the source location".into(),
                ));
            }
            ("keep" | "delete", Some(to)) => {
                return Err((
                    to.span(),
                    key("move_to"),
                    "only with after = \"move\"".into(),
                ));
            }
            (other, _) => {
                return Err((
                    self.after.span(),
                    key("after"),
                    format!("{other:?} is not one of keep, delete, move"),
                ));
            }
        };
        if *self.attempts.get_ref() == 0 || *self.attempts.get_ref() > 100 {
            return Err((
                self.attempts.span(),
                key("attempts"),
                "give 1 to 100".into(),
            ));
        }
        if !(1..=86_400).contains(self.retry_wait.get_ref()) {
            return Err((
                self.retry_wait.span(),
                key("retry_wait"),
                "give 1 to 86400 seconds".into(),
            ));
        }
        if !PARALLEL.contains(self.parallel.get_ref()) {
            return Err((
                self.parallel.span(),
                key("parallel"),
                format!(
                    "give {} to {} files at once",
                    PARALLEL.start(),
                    PARALLEL.end()
                ),
            ));
        }
        if !MAX_FILES.contains(self.max_files.get_ref()) {
            return Err((
                self.max_files.span(),
                key("max_files"),
                format!(
                    "give {} to {} files per listing",
                    MAX_FILES.start(),
                    MAX_FILES.end()
                ),
            ));
        }
        if *self.min_age.get_ref() > 30 * 86_400 {
            return Err((
                self.min_age.span(),
                key("min_age"),
                "give 0 to 30 days, in seconds".into(),
            ));
        }
        Ok(Transfer {
            name: self.name.get_ref().clone(),
            source,
            source_folder,
            files,
            recursive: self.recursive,
            destination,
            destination_folder,
            triggers,
            existing,
            verify,
            after,
            attempts: *self.attempts.get_ref(),
            retry_wait: Duration::from_secs(*self.retry_wait.get_ref()),
            parallel: *self.parallel.get_ref() as usize,
            rate: Some(*self.rate.get_ref()).filter(|r| *r > 0),
            min_age: Duration::from_secs(*self.min_age.get_ref()),
            max_files: *self.max_files.get_ref() as usize,
        })
    }

    /// The event ids and filter of `on`.
    fn event_filter(&self, key: &dyn Fn(&str) -> String) -> Result<(Vec<u32>, Filter), Problem> {
        let Some(on) = &self.on else {
            return Ok((Vec::new(), Filter::default()));
        };
        let mut ids = Vec::new();
        for event in on.get_ref() {
            match event_id(event) {
                Some(id) => ids.push(id),
                None => {
                    return Err((
                        on.span(),
                        key("on"),
                        "name events of the catalogue (docs/events.md), such as \"upload.finished\" or 30002".into(),
                    ));
                }
            }
        }
        if ids.is_empty() {
            return Err((on.span(), key("on"), "name at least one event".into()));
        }
        if ids.iter().any(|id| (60_000..70_000).contains(id)) {
            return Err((
                on.span(),
                key("on"),
                "a transfer is not started by transfer events (it would start itself)".into(),
            ));
        }
        let path = self
            .on_path
            .as_ref()
            .map(|p| {
                PathPattern::new(p.get_ref()).map_err(|e| (p.span(), key("on_path"), e.to_string()))
            })
            .transpose()?;
        Ok((
            ids,
            Filter {
                accounts: self.on_accounts.clone(),
                path,
                ..Filter::default()
            },
        ))
    }
}

/// Whether a transfer's destination folder is its source folder, or inside it (recursive):
/// on one location, or on two local ones over the same folders.
fn overlap(
    source: &Location,
    source_folder: &str,
    destination: &Location,
    destination_folder: &str,
    recursive: bool,
) -> bool {
    let place = |location: &Location, folder: &str| match &location.kind {
        LocationKind::Local { folder: root } => {
            let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.clone());
            format!(
                "local:{}",
                wharf_transfers::join(&root.to_string_lossy(), folder)
            )
        }
        _ => format!("{}:{folder}", location.name),
    };
    let from = place(source, source_folder);
    let to = place(destination, destination_folder);
    let from = from.trim_end_matches('/');
    let to = to.trim_end_matches('/');
    to == from || (recursive && to.starts_with(&format!("{from}/")))
}

/// The locations, by name.
fn locations(
    loaded: &Loaded,
    resolve_secrets: bool,
) -> Result<HashMap<String, Arc<Location>>, Problem> {
    let mut all = HashMap::new();
    for (i, section) in loaded.config.locations.iter().enumerate() {
        // A secret that cannot be read (an unset variable, a missing file) makes this
        // location unusable, not the server: its transfers fail with the reason, the
        // other services and transfers go on.
        let location = match section.build(i, loaded, resolve_secrets) {
            Ok(location) => location,
            Err((span, key, message)) if resolve_secrets => {
                let mut location = section.build(i, loaded, false)?;
                let line = crate::config::collector_line(loaded, span);
                location.unusable =
                    Some(format!("{}{line}: {key}: {message}", loaded.path.display()));
                location
            }
            Err(problem) => return Err(problem),
        };
        if all
            .insert(location.name.clone(), Arc::new(location))
            .is_some()
        {
            return Err((
                section.name.span(),
                format!("location[{i}].name"),
                format!("duplicate location name {:?}", section.name.get_ref()),
            ));
        }
    }
    Ok(all)
}

/// Reports what is wrong with `[[location]]` and `[[transfer]]`.
pub fn validate(loaded: &Loaded, issue: &mut dyn FnMut(Range<usize>, String, String)) {
    let locations = match locations(loaded, false) {
        Ok(locations) => locations,
        Err((span, key, message)) => return issue(span, key, message),
    };
    let mut names = std::collections::HashSet::new();
    for (i, section) in loaded.config.transfers.iter().enumerate() {
        if !names.insert(section.name.get_ref().as_str()) {
            issue(
                section.name.span(),
                format!("transfer[{i}].name"),
                format!("duplicate transfer name {:?}", section.name.get_ref()),
            );
        }
        if let Err((span, key, message)) = section.build(i, &locations) {
            issue(span, key, message);
        }
    }
}

/// The configured transfers, secrets read (the configuration was validated when it loaded).
pub fn transfers(loaded: &Loaded) -> anyhow::Result<Vec<Arc<Transfer>>> {
    let problem = |(_, key, message): Problem| anyhow::anyhow!("{key}: {message}");
    let locations = locations(loaded, true).map_err(problem)?;
    loaded
        .config
        .transfers
        .iter()
        .enumerate()
        .map(|(i, section)| section.build(i, &locations).map(Arc::new).map_err(problem))
        .collect()
}

/// The folders of the local locations (absolute), for the sweep of leftover uploads.
pub fn local_folders(loaded: &Loaded) -> Vec<std::path::PathBuf> {
    loaded
        .config
        .locations
        .iter()
        .filter(|l| l.kind.get_ref() == "local")
        .filter_map(|l| l.folder.as_ref())
        .map(|f| {
            let path = loaded.resolve(f.get_ref());
            std::path::absolute(&path).unwrap_or(path)
        })
        .collect()
}

/// The configured transfers as the Manager lists them (no secret read).
pub fn catalog(loaded: &Loaded) -> Vec<wharf_admin::TransferInfo> {
    let Ok(locations) = locations(loaded, false) else {
        return Vec::new();
    };
    loaded
        .config
        .transfers
        .iter()
        .enumerate()
        .filter_map(|(i, section)| section.build(i, &locations).ok())
        .map(|t| wharf_admin::TransferInfo {
            source: format!("{}:{}", t.source.name, t.source_folder),
            destination: format!("{}:{}", t.destination.name, t.destination_folder),
            when: t.when(),
            name: t.name,
        })
        .collect()
}

/// The handlers that ask for the runs of transfers started by events (`on`): they go on
/// the durable handler queue like any other, so an event is never missed, and the run
/// goes to whichever node holds the transfer's lease. Their names (`transfer:NAME`) hold a
/// character no configured handler's name may, so they never collide.
pub fn event_handlers(loaded: &Loaded) -> Vec<Handler> {
    loaded
        .config
        .transfers
        .iter()
        .filter_map(|section| {
            let (on, filter) = section.event_filter(&|k| k.to_owned()).ok()?;
            (!on.is_empty()).then(|| Handler {
                name: format!("transfer:{}", section.name.get_ref()),
                on,
                filter,
                attempts: 10,
                retry_wait: Duration::from_secs(2),
                delay: Duration::ZERO,
                timeout: Duration::from_secs(30),
                action: Action::RunTransfer(section.name.get_ref().clone()),
            })
        })
        .collect()
}
