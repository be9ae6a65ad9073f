//! `[[authentication]]` in `wharf.toml`: the ordered authentication chain. Without any
//! entry the chain is the store's accounts alone (`local`).

use std::ops::Range;
use std::time::Duration;

use anyhow::{Context as _, Result};
use serde::Deserialize;
use toml::Spanned;
use wharf_auth::{HttpMethod, Method};

use crate::config::Loaded;

/// One `[[authentication]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthenticationSection {
    /// `local` or `http` (`ldap` arrives later).
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
}

/// Reports what is wrong with the chain through `issue(span, key, message)`.
pub fn validate(
    chain: &[AuthenticationSection],
    issue: &mut dyn FnMut(Range<usize>, String, String),
) {
    let mut names = std::collections::HashSet::new();
    for (i, entry) in chain.iter().enumerate() {
        let key = |k: &str| format!("authentication[{i}].{k}");
        let http_keys = [
            ("url", entry.url.as_ref().map(|v| v.span())),
            ("ca", entry.ca.as_ref().map(|v| v.span())),
            (
                "bearer_token",
                entry.bearer_token.as_ref().map(|v| v.span()),
            ),
        ];
        match entry.kind.get_ref().as_str() {
            "local" => {
                for (k, span) in http_keys {
                    if let Some(span) = span {
                        issue(span, key(k), "applies to type \"http\" only".into());
                    }
                }
            }
            "http" => {
                match &entry.url {
                    None => issue(
                        entry.kind.span(),
                        key("url"),
                        "an http method needs url = \"https://...\"".into(),
                    ),
                    Some(url) => {
                        let text = url.get_ref();
                        if !(text.starts_with("https://") || text.starts_with("http://")) {
                            issue(
                                url.span(),
                                key("url"),
                                "must start with https:// (or http://)".into(),
                            );
                        }
                    }
                }
                if let Some(token) = &entry.bearer_token
                    && !(token.get_ref().starts_with("env:")
                        || token.get_ref().starts_with("file:"))
                {
                    issue(
                        token.span(),
                        key("bearer_token"),
                        "give the token as env:NAME or file:PATH, never literally".into(),
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
            "ldap" => issue(
                entry.kind.span(),
                key("type"),
                "LDAP authentication is not available in this version yet; use local or http"
                    .into(),
            ),
            other => issue(
                entry.kind.span(),
                key("type"),
                format!("unknown authentication type {other:?}; use local or http"),
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

/// Reads a secret given as `env:NAME` or `file:PATH` (relative to the configuration).
fn secret(loaded: &Loaded, spec: &str) -> Result<String> {
    if let Some(name) = spec.strip_prefix("env:") {
        return std::env::var(name)
            .with_context(|| format!("environment variable {name} is not set"));
    }
    let path = loaded.resolve(spec.strip_prefix("file:").unwrap_or(spec));
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
                    let ca = match &entry.ca {
                        Some(path) => {
                            let path = loaded.resolve(path.get_ref());
                            Some(std::fs::read(&path).with_context(|| {
                                format!(
                                    "[[authentication]] {name}: cannot read ca {}",
                                    path.display()
                                )
                            })?)
                        }
                        None => None,
                    };
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
                        .with_context(|| format!("[[authentication]] {name}"))?,
                    )
                }
                _ => Method::Local,
            })
        })
        .collect()
}
