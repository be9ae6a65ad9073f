//! dav-server's lock system for one WebDAV request, translated onto the core's locks
//! ([`wharf_core::dav_state`]), which the store keeps for every node.
//!
//! It decides nothing itself: conflicts, permission rules, timeouts and limits are the
//! core's. It must fail closed: when the store cannot answer, a check reports a conflict
//! (423) rather than letting a write through a lock it could not see.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use dav_server::davpath::DavPath;
use dav_server::ls::{DavLock, DavLockSystem, LsFuture};
use wharf_core::Session;
use wharf_core::dav_state::{DavState, Holder, Lock, conflict, covering};
use wharf_types::VirtualPath;
use xmltree::{Element, EmitterConfig, Namespace};

use crate::dav::PREFIX;

/// The lock system dav-server sees: the core's locks, asked for one account's session.
#[derive(Clone)]
pub(crate) struct SessionLs {
    dav: DavState,
    session: Arc<Session>,
    /// The home's locks as this request first saw them: a listing asks about every entry,
    /// and one look at the store serves them all. Cleared when this request changes a lock.
    known: Arc<tokio::sync::Mutex<Option<Arc<Vec<Lock>>>>>,
}

impl std::fmt::Debug for SessionLs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionLs")
    }
}

/// A stand-in conflicting lock, for answers dav-server can only give as "locked" (423).
fn refusal(path: &DavPath) -> DavLock {
    DavLock {
        token: String::new(),
        path: Box::new(path.clone()),
        principal: None,
        owner: None,
        timeout_at: None,
        timeout: None,
        shared: false,
        deep: false,
    }
}

/// The `owner` element as XML text that parses back on its own: dav-server renames it
/// `D:owner`, so the `D` prefix is declared on it.
fn owner_xml(owner: &Element) -> Option<String> {
    let mut owner = owner.clone();
    owner.prefix = Some("D".to_owned());
    owner.namespace = Some("DAV:".to_owned());
    owner
        .namespaces
        .get_or_insert_with(Namespace::empty)
        .force_put("D", "DAV:");
    let mut out = Vec::new();
    let config = EmitterConfig::new().write_document_declaration(false);
    owner.write_with_config(&mut out, config).ok()?;
    String::from_utf8(out).ok()
}

/// The lock as dav-server reports it; `asked` stands in for a path that cannot be spelled.
fn to_dav(lock: &Lock, asked: &DavPath) -> DavLock {
    let url = format!("{PREFIX}{}", crate::path::encode(lock.path.as_str()));
    let path = DavPath::new(&url)
        .and_then(|mut p| p.set_prefix(PREFIX).map(|()| p))
        .unwrap_or_else(|_| asked.clone());
    let micros = u64::try_from(lock.expires_us).unwrap_or(0);
    DavLock {
        token: lock.token.clone(),
        path: Box::new(path),
        principal: Some(lock.account.clone()),
        owner: lock
            .owner
            .as_deref()
            .and_then(|xml| Element::parse(xml.as_bytes()).ok())
            .map(Box::new),
        timeout_at: Some(UNIX_EPOCH + Duration::from_micros(micros)),
        timeout: Some(Duration::from_secs(lock.timeout_s)),
        shared: lock.shared,
        deep: lock.deep,
    }
}

impl SessionLs {
    pub(crate) fn new(dav: DavState, session: Arc<Session>) -> SessionLs {
        SessionLs {
            dav,
            session,
            known: Arc::default(),
        }
    }

    async fn locks(&self) -> Result<Arc<Vec<Lock>>, wharf_core::CoreError> {
        let mut known = self.known.lock().await;
        if let Some(locks) = &*known {
            return Ok(Arc::clone(locks));
        }
        let locks = Arc::new(self.dav.all_locks(&self.session).await?);
        *known = Some(Arc::clone(&locks));
        Ok(locks)
    }

    async fn forget_known(&self) {
        *self.known.lock().await = None;
    }

    fn vpath(&self, path: &DavPath) -> Option<VirtualPath> {
        self.session
            .resolve(&VirtualPath::root(), path.as_bytes())
            .ok()
    }
}

impl DavLockSystem for SessionLs {
    fn lock(
        &'_ self,
        path: &DavPath,
        _principal: Option<&str>,
        owner: Option<&Element>,
        timeout: Option<Duration>,
        shared: bool,
        deep: bool,
    ) -> LsFuture<'_, Result<DavLock, DavLock>> {
        let asked = path.clone();
        let owner = owner.and_then(owner_xml);
        Box::pin(async move {
            let path = self.vpath(&asked).ok_or_else(|| refusal(&asked))?;
            self.forget_known().await;
            match self
                .dav
                .lock(&self.session, &path, owner, timeout, shared, deep)
                .await
            {
                Ok(Ok(lock)) => Ok(to_dav(&lock, &asked)),
                Ok(Err(conflict)) => Err(to_dav(&conflict, &asked)),
                Err(_) => Err(refusal(&asked)),
            }
        })
    }

    fn unlock(&'_ self, path: &DavPath, token: &str) -> LsFuture<'_, Result<(), ()>> {
        let asked = path.clone();
        let token = token.to_owned();
        Box::pin(async move {
            let path = self.vpath(&asked).ok_or(())?;
            self.forget_known().await;
            match self.dav.unlock(&self.session, &path, &token).await {
                Ok(true) => Ok(()),
                _ => Err(()),
            }
        })
    }

    fn refresh(
        &'_ self,
        path: &DavPath,
        token: &str,
        timeout: Option<Duration>,
    ) -> LsFuture<'_, Result<DavLock, ()>> {
        let asked = path.clone();
        let token = token.to_owned();
        Box::pin(async move {
            let path = self.vpath(&asked).ok_or(())?;
            match self
                .dav
                .refresh(&self.session, &path, &token, timeout)
                .await
            {
                Ok(Some(lock)) => Ok(to_dav(&lock, &asked)),
                _ => Err(()),
            }
        })
    }

    fn check(
        &'_ self,
        path: &DavPath,
        principal: Option<&str>,
        ignore_principal: bool,
        deep: bool,
        submitted_tokens: &[String],
    ) -> LsFuture<'_, Result<(), DavLock>> {
        let asked = path.clone();
        let principal = principal.map(str::to_owned);
        let tokens = submitted_tokens.to_vec();
        Box::pin(async move {
            let path = self.vpath(&asked).ok_or_else(|| refusal(&asked))?;
            let holder = Holder {
                account: principal.as_deref(),
                ignore_account: ignore_principal,
                tokens: &tokens,
            };
            let locks = self.locks().await.map_err(|_| refusal(&asked))?;
            match conflict(&locks, &path, holder, false, deep) {
                None => Ok(()),
                Some(lock) => Err(to_dav(&lock, &asked)),
            }
        })
    }

    fn discover(&'_ self, path: &DavPath) -> LsFuture<'_, Vec<DavLock>> {
        let asked = path.clone();
        Box::pin(async move {
            let Some(path) = self.vpath(&asked) else {
                return Vec::new();
            };
            match self.locks().await {
                Ok(locks) => covering(&locks, &path)
                    .iter()
                    .map(|l| to_dav(l, &asked))
                    .collect(),
                Err(_) => Vec::new(),
            }
        })
    }

    fn delete(&'_ self, path: &DavPath) -> LsFuture<'_, Result<(), ()>> {
        let asked = path.clone();
        Box::pin(async move {
            let path = self.vpath(&asked).ok_or(())?;
            self.forget_known().await;
            self.dav
                .forget_locks(&self.session, &path)
                .await
                .map_err(|_| ())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owner_comes_back_as_given() {
        // As dav-server hands it over: the client's element, renamed with the `D` prefix.
        let mut owner = Element::parse(
            &b"<owner xmlns=\"DAV:\"><href>mailto:a@example.com</href> litmus</owner>"[..],
        )
        .expect("owner");
        owner.prefix = Some("D".to_owned());
        let xml = owner_xml(&owner).expect("serialised");
        let lock = Lock {
            token: "urn:uuid:1".into(),
            path: VirtualPath::parse("/a b/%41.txt").expect("path"),
            account: "alice".into(),
            owner: Some(xml),
            shared: false,
            deep: false,
            timeout_s: 600,
            expires_us: 0,
        };
        let asked = DavPath::new("/dav/other").expect("path");
        let dav = to_dav(&lock, &asked);
        let back = dav.owner.expect("owner kept");
        assert_eq!(back.name, "owner");
        assert!(back.get_text().is_some_and(|t| t.contains("litmus")));
        assert_eq!(
            dav.path.with_prefix().as_url_string(),
            "/dav/a%20b/%2541.txt"
        );
    }
}
