//! Opening the store a URL names: `sqlite:PATH` (one machine) or `postgres://USER@HOST:PORT/DB`
//! (a cluster), and the failures that can say what went wrong without printing a secret.
//!
//! A PostgreSQL password never sits in the URL: it is given apart ([`Connect::password`],
//! which the configuration reads from `env:` or `file:`), so the URL can be printed in any
//! message. TLS is rustls; `sslmode=verify-full` with a CA file checks the server's name.
//!
//! This module must never log or format [`Connect::password`].

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::StoreError;
use crate::backend::Pool;

/// How long a PostgreSQL connection may take before the store is called unreachable. Logins
/// wait at most this long for the store before failing closed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What opening the store needs.
#[derive(Clone, Default)]
pub struct Connect {
    /// `sqlite:PATH` or `postgres://USER@HOST:PORT/DB[?sslmode=…]`.
    pub url: String,
    /// Where a relative SQLite path or CA file is found (the configuration's folder).
    pub base: PathBuf,
    /// The PostgreSQL password, if the server asks for one.
    pub password: Option<String>,
    /// The CA certificate (PEM) that signed the PostgreSQL server's certificate.
    pub ca_file: Option<PathBuf>,
    /// The name this node gives its PostgreSQL connections (`application_name`).
    pub application: String,
    /// Connections in the pool (PostgreSQL; SQLite uses its own small pool).
    pub max_connections: u32,
}

impl std::fmt::Debug for Connect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connect")
            .field("url", &self.url)
            .field("password", &self.password.as_ref().map(|_| "…"))
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

/// Which backend a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// Checks a store URL without opening it.
pub fn check_url(url: &str) -> Result<Backend, StoreError> {
    if url.starts_with("sqlite:") {
        return Ok(Backend::Sqlite);
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        if has_password(url) {
            return Err(StoreError::BadUrl(format!(
                "{}: the password must not be in the URL; give it as [store] password = \"env:NAME\" or \"file:PATH\"",
                redacted(url)
            )));
        }
        PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::BadUrl(format!("{}: {e}", redacted(url))))?;
        return Ok(Backend::Postgres);
    }
    Err(StoreError::UnsupportedUrl(redacted(url)))
}

/// `url` without any password it holds, for messages.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let tail = match tail.split_once('?') {
        Some((path, _)) => {
            let kept: Vec<String> = query_pairs(url)
                .map(|(key, value)| {
                    if key.eq_ignore_ascii_case("password") {
                        format!("{key}=…")
                    } else {
                        format!("{key}={value}")
                    }
                })
                .collect();
            format!("{path}?{}", kept.join("&"))
        }
        None => tail.to_owned(),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}@{host}{tail}")
        }
        None => format!("{scheme}://{authority}{tail}"),
    }
}

/// Whether `url` holds a password: in its authority (`user:password@host`) or as a
/// `password=` parameter of its query.
fn has_password(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
        || query_pairs(url).any(|(key, _)| key.eq_ignore_ascii_case("password"))
}

/// The `key=value` pairs of `url`'s query.
fn query_pairs(url: &str) -> impl Iterator<Item = (&str, &str)> {
    url.split_once('?')
        .map_or("", |(_, query)| query)
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
}

pub(crate) async fn open(connect: &Connect) -> Result<Pool, StoreError> {
    match check_url(&connect.url)? {
        Backend::Sqlite => {
            let rest = connect.url.trim_start_matches("sqlite:");
            let path = connect.base.join(rest.trim_start_matches("//"));
            Ok(Pool::Sqlite(open_sqlite(&path).await?))
        }
        Backend::Postgres => open_postgres(connect).await.map(Pool::Postgres),
    }
}

pub(crate) async fn open_sqlite(path: &Path) -> Result<sqlx::SqlitePool, StoreError> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10));
    Ok(SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await?)
}

async fn open_postgres(connect: &Connect) -> Result<sqlx::PgPool, StoreError> {
    let mut options = PgConnectOptions::from_str(&connect.url)
        .map_err(|e| StoreError::BadUrl(format!("{}: {e}", redacted(&connect.url))))?;
    if let Some(password) = &connect.password {
        options = options.password(password);
    }
    if let Some(ca) = &connect.ca_file {
        options = options.ssl_root_cert(connect.base.join(ca));
    }
    if !connect.application.is_empty() {
        options = options.application_name(&connect.application);
    }
    let place = format!("{}:{}", options.get_host(), options.get_port());
    let max = if connect.max_connections == 0 {
        16
    } else {
        connect.max_connections
    };
    let opened = PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(CONNECT_TIMEOUT)
        .connect_with(options.clone())
        .await;
    match opened {
        Ok(pool) => Ok(pool),
        // The pool retries a refused connection until its timeout and then says only that
        // it timed out: one more attempt tells why (refused, unknown host, bad password).
        Err(sqlx::Error::PoolTimedOut) => {
            let why = match tokio::time::timeout(CONNECT_TIMEOUT, options.connect()).await {
                Ok(Err(e)) => format!("{} (for {} s)", reason(&e), CONNECT_TIMEOUT.as_secs()),
                _ => format!("no answer in {} s", CONNECT_TIMEOUT.as_secs()),
            };
            Err(StoreError::Unreachable { place, why })
        }
        Err(e) => Err(unreachable(&place, e)),
    }
}

fn reason(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(db) => db.message().to_owned(),
        sqlx::Error::PoolTimedOut => "no answer in time".to_owned(),
        other => other.to_string(),
    }
}

/// A connection failure, named by the server's host and port.
pub(crate) fn unreachable(place: &str, error: sqlx::Error) -> StoreError {
    StoreError::Unreachable {
        place: place.to_owned(),
        why: reason(&error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_redacted() {
        assert_eq!(check_url("sqlite:wharf.db").unwrap(), Backend::Sqlite);
        assert_eq!(
            check_url("postgres://wharf@127.0.0.1:5432/wharf?sslmode=verify-full").unwrap(),
            Backend::Postgres
        );
        let with_password = check_url("postgres://wharf:hunter2@db:5432/wharf").unwrap_err();
        assert!(
            !with_password.to_string().contains("hunter2"),
            "{with_password}"
        );
        assert!(
            with_password.to_string().contains("env:NAME"),
            "{with_password}"
        );
        let unknown = check_url("mysql://u:hunter2@h/db").unwrap_err();
        assert!(!unknown.to_string().contains("hunter2"), "{unknown}");
        assert_eq!(
            redacted("postgres://u:p@h:1/d?x=y"),
            "postgres://u@h:1/d?x=y"
        );
        let in_query = check_url("postgres://u@h:1/d?sslmode=require&password=hunter2")
            .unwrap_err()
            .to_string();
        assert!(!in_query.contains("hunter2"), "{in_query}");
        assert_eq!(
            redacted("postgres://u@h:1/d?password=hunter2&sslmode=require"),
            "postgres://u@h:1/d?password=…&sslmode=require"
        );
    }
}
