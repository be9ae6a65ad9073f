//! `[store]`: where accounts, groups, bans, jobs and the audit trail live.
//!
//! `url = "sqlite:PATH"` (the default, one machine) or `"postgres://USER@HOST:PORT/DB"` (a
//! cluster: every node names the same database). The PostgreSQL password is given apart, as
//! `env:NAME` or `file:PATH`, never in the URL, so the URL can appear in any message.
//! This module must never print the password it reads.

use std::ops::Range;

use anyhow::Result;
use serde::Deserialize;
use toml::Spanned;
use wharf_store::Backend;

use crate::config::Loaded;

/// `[store]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// `sqlite:PATH` or `postgres://USER@HOST:PORT/DB[?sslmode=verify-full]`.
    #[serde(default = "default_store_url")]
    pub url: Spanned<String>,
    /// PostgreSQL password, as `env:NAME` or `file:PATH`.
    #[serde(default)]
    pub password: Option<Spanned<String>>,
    /// PostgreSQL: the CA certificate (PEM) that signed the server's certificate.
    #[serde(default)]
    pub ca_file: Option<Spanned<String>>,
    /// PostgreSQL: connections this node keeps open (default 16).
    #[serde(default)]
    pub max_connections: Option<u32>,
}

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection {
            url: default_store_url(),
            password: None,
            ca_file: None,
            max_connections: None,
        }
    }
}

fn default_store_url() -> Spanned<String> {
    Spanned::new(0..0, "sqlite:wharf-data/wharf.db".to_owned())
}

impl StoreSection {
    /// Reports what cannot work as written.
    pub fn validate(&self, issue: &mut dyn FnMut(Range<usize>, String, String)) {
        let backend = match wharf_store::check_url(self.url.get_ref()) {
            Ok(backend) => backend,
            Err(e) => {
                issue(self.url.span(), "store.url".into(), e.to_string());
                return;
            }
        };
        crate::config::auth::secret_spec(&self.password, "store.password", issue);
        if backend == Backend::Sqlite {
            for (key, given) in [
                ("store.password", &self.password),
                ("store.ca_file", &self.ca_file),
            ] {
                if let Some(value) = given {
                    issue(
                        value.span(),
                        key.into(),
                        "only a postgres:// store takes this key; remove it or change store.url"
                            .into(),
                    );
                }
            }
        }
    }
}

/// How to open the store `loaded` names, reading its password.
pub fn connect(loaded: &Loaded) -> Result<wharf_store::Connect> {
    let section = &loaded.config.store;
    let password = match &section.password {
        Some(spec) => Some(crate::config::auth::secret(loaded, spec.get_ref())?),
        None => None,
    };
    Ok(wharf_store::Connect {
        url: section.url.get_ref().clone(),
        base: loaded.base.clone(),
        password,
        ca_file: section
            .ca_file
            .as_ref()
            .map(|c| loaded.resolve(c.get_ref())),
        application: format!("wharf {}", loaded.config.server.name),
        max_connections: section.max_connections.unwrap_or(0),
    })
}
