//! The HTTP API authentication method: Wharf POSTs the login attempt as JSON to an
//! administrator's service, which answers 200 (accept, with the account's description),
//! 204 (accept with defaults), 401 (not mine: the next method decides) or 403 (reject).
//!
//! One request per attempt ([`wharf_net::post`]: no redirects, no proxies, a timeout over
//! the whole exchange), and an answer of at most [`MAX_ANSWER`] bytes. `https://` URLs are
//! verified against the system's CA certificates, or only against a configured CA. Anything
//! else the service answers, and any failure to reach it, is an error that stops the chain:
//! an authentication service that cannot be asked never lets anyone in.
//!
//! A 200 answer may name the account (`username`: the service's own spelling of the name,
//! which Wharf then uses whatever was typed) and its home, which must lie beneath the
//! method's [`HomeRoots`] (checked by the chain). `http://` URLs reach only this machine
//! ([`wharf_net::post::check_url`]).
//!
//! The contract has no question without the password, so a login kept across requests
//! cannot be checked with the service again: the chain ends it once the service's answer
//! is older than the caller allows ([`crate::Authenticator::readmit`]), and the client
//! logs in again. Wharf never keeps the password to ask with.

use std::net::SocketAddr;
use std::time::Duration;

use hyper::StatusCode;
use serde::{Deserialize, Serialize};
use wharf_core::Rule;
use wharf_net::post::{PostError, Poster};
use wharf_store::AccountRecord;
use wharf_types::AccountName;

use crate::{Credential, HomeRoots, fingerprint};

/// Largest answer read from the service.
pub const MAX_ANSWER: usize = 64 * 1024;

/// One configured HTTP method.
pub struct HttpMethod {
    /// Its name in events.
    pub name: String,
    poster: Poster,
    timeout: Duration,
    bearer: Option<String>,
    home_roots: HomeRoots,
}

/// What the service said.
pub enum HttpVerdict {
    /// 200 or 204: the account it described.
    Accept(Box<AccountRecord>),
    /// 401: another method decides.
    NotMine,
    /// 403, with the service's message if it gave one (recorded, never shown to clients).
    Reject(Option<String>),
}

/// Why the method could not be configured or could not decide.
#[derive(Debug, thiserror::Error)]
pub enum HttpMethodError {
    /// The configuration is unusable.
    #[error("{0}")]
    Config(String),
    /// The service could not be asked or gave an unusable answer.
    #[error("{0}")]
    Failed(String),
}

/// The request body.
#[derive(Serialize)]
struct Attempt<'a> {
    username: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    public_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    public_key_fingerprint: Option<String>,
    protocol: &'a str,
    service: &'a str,
    remote_address: String,
    remote_port: u16,
}

/// A 200 answer's account description.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Described {
    /// The account's own name, when the service matches names more loosely than Wharf
    /// (without case, by e-mail address...).
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    home: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    rules: Vec<Rule>,
    #[serde(default)]
    public_keys: Vec<String>,
}

#[derive(Deserialize)]
struct Refusal {
    #[serde(default)]
    message: Option<String>,
}

impl HttpMethod {
    /// A method POSTing to `url`; `ca_pem`: trust only this CA (PEM) instead of the system's.
    pub fn new(
        name: String,
        url: &str,
        timeout: Duration,
        ca_pem: Option<&[u8]>,
        bearer: Option<String>,
    ) -> Result<HttpMethod, HttpMethodError> {
        let poster = Poster::new(url, ca_pem).map_err(|e| match e {
            PostError::Config(m) => HttpMethodError::Config(m),
            PostError::Failed(m) => HttpMethodError::Failed(m),
        })?;
        Ok(HttpMethod {
            name,
            poster,
            timeout,
            bearer,
            home_roots: HomeRoots::default(),
        })
    }

    /// The same, confining the homes the service gives to `roots`.
    pub fn with_home_roots(mut self, roots: HomeRoots) -> HttpMethod {
        self.home_roots = roots;
        self
    }

    /// Where a home the service gives must lie.
    pub fn home_roots(&self) -> &HomeRoots {
        &self.home_roots
    }

    /// Asks the service about one attempt.
    pub async fn check(
        &self,
        username: &str,
        credential: &Credential<'_>,
        protocol: &str,
        service: &str,
        remote: SocketAddr,
    ) -> Result<HttpVerdict, HttpMethodError> {
        let (password, public_key, public_key_fingerprint) = match credential {
            Credential::Password(p) => (Some(*p), None, None),
            Credential::PublicKey(k) => (None, k.to_openssh().ok(), Some(fingerprint(k))),
        };
        let body = serde_json::to_vec(&Attempt {
            username,
            password,
            public_key,
            public_key_fingerprint,
            protocol,
            service,
            remote_address: remote.ip().to_string(),
            remote_port: remote.port(),
        })
        .map_err(|e| HttpMethodError::Failed(e.to_string()))?;
        let headers: Vec<(&str, String)> = self
            .bearer
            .iter()
            .map(|token| ("authorization", format!("Bearer {token}")))
            .collect();
        let (status, answer) = self
            .poster
            .post(body, &headers, self.timeout, MAX_ANSWER)
            .await
            .map_err(|e| HttpMethodError::Failed(e.to_string()))?;
        match StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR) {
            StatusCode::OK => {
                let described: Described = serde_json::from_slice(&answer).map_err(|e| {
                    HttpMethodError::Failed(format!(
                        "200 answer is not an account description: {e}"
                    ))
                })?;
                Ok(HttpVerdict::Accept(Box::new(
                    self.record(username, described)?,
                )))
            }
            StatusCode::NO_CONTENT => Ok(HttpVerdict::Accept(Box::new(self.record(
                username,
                Described {
                    username: None,
                    home: None,
                    groups: Vec::new(),
                    rules: Vec::new(),
                    public_keys: Vec::new(),
                },
            )?))),
            StatusCode::UNAUTHORIZED => Ok(HttpVerdict::NotMine),
            StatusCode::FORBIDDEN => Ok(HttpVerdict::Reject(
                serde_json::from_slice::<Refusal>(&answer)
                    .ok()
                    .and_then(|r| r.message)
                    .map(|m| m.chars().take(200).collect()),
            )),
            other => Err(HttpMethodError::Failed(format!(
                "unexpected answer {other} (200, 204, 401 or 403 expected)"
            ))),
        }
    }

    fn record(&self, username: &str, d: Described) -> Result<AccountRecord, HttpMethodError> {
        let bad = |what: String| HttpMethodError::Failed(format!("200 answer: {what}"));
        let name = AccountName::new(d.username.as_deref().unwrap_or(username))
            .map_err(|e| bad(format!("username: {e}")))?;
        for rule in &d.rules {
            wharf_core::RuleSet::validate(rule).map_err(|e| bad(e.to_string()))?;
        }
        Ok(AccountRecord {
            name,
            password_hash: None,
            home: d.home,
            enabled: true,
            groups: if d.groups.is_empty() {
                vec!["users".to_owned()]
            } else {
                d.groups
            },
            keys: d.public_keys,
            rules: d.rules,
            addresses: Default::default(),
            expires_us: None,
            second_factor: None,
            require_second_factor: false,
            max_file_size: None,
            email: None,
        })
    }
}
