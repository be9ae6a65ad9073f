//! FTPS: the TLS configurations of one control connection and of its data connections, and
//! what a data connection may resume.
//!
//! When resumption is required, a data connection must resume a TLS session of its own login
//! (vsftpd's `require_ssl_reuse`, ProFTPD's default): a third party who connects to the
//! passive port first cannot complete a resumed handshake. Two ways to resume:
//! - tickets (TLS 1.3, and TLS 1.2 for clients that ask for them: Go's TLS knows no other),
//!   keyed per control connection, see [`crate::tickets`];
//! - TLS 1.2 session IDs, for clients without tickets: a store of this control connection's
//!   own sessions, which data connections read and never fill, so nothing evicts them.
//!
//! Neither is consumed by use: OpenSSL and GnuTLS clients offer one session for every data
//! connection, however many transfers a control connection makes.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::server::StoresServerSessions;
use wharf_net::tls::TlsAcceptor;

use crate::tickets::{Families, FamilyHandle};

/// Session IDs kept per control connection (one per control handshake; AUTH runs once).
const SESSIONS_PER_CONNECTION: usize = 4;

#[derive(Debug, Default)]
struct ConnectionSessions {
    entries: Mutex<VecDeque<(Vec<u8>, Vec<u8>)>>,
}

impl StoresServerSessions for ConnectionSessions {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        let Ok(mut entries) = self.entries.lock() else {
            return false;
        };
        entries.retain(|(k, _)| *k != key);
        if entries.len() >= SESSIONS_PER_CONNECTION {
            entries.pop_front();
        }
        entries.push_back((key, value));
        true
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        let entries = self.entries.lock().ok()?;
        entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.get(key)
    }

    fn can_cache(&self) -> bool {
        true
    }
}

/// The control connection's session IDs as a data connection sees them: resumable, never
/// added to (a data connection's own full handshake is refused anyway, and must not push
/// the control connection's session out).
#[derive(Debug)]
struct ReadOnlySessions(Arc<ConnectionSessions>);

impl StoresServerSessions for ReadOnlySessions {
    fn put(&self, _key: Vec<u8>, _value: Vec<u8>) -> bool {
        false
    }
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.0.get(key)
    }
    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.0.get(key)
    }
    fn can_cache(&self) -> bool {
        false
    }
}

/// TLS acceptors for one control connection and for its data connections.
pub(crate) struct ConnectionTls {
    pub(crate) control: TlsAcceptor,
    /// Downloads and listings: the client reads to the end, new tickets included.
    pub(crate) download: TlsAcceptor,
    /// Uploads: no TLS 1.3 tickets (see [`connection_acceptors`]).
    pub(crate) upload: TlsAcceptor,
    family: FamilyHandle,
}

impl ConnectionTls {
    /// The account logged in on the control connection: its data connections may then
    /// resume sessions of the same login's other control connections.
    pub(crate) fn bind_login(&self, account: Option<String>) {
        self.family.bind(account);
    }

    /// Call before each data handshake.
    pub(crate) fn begin_data(&self) {
        self.family.forget_resumed();
    }

    /// A data connection refused without [`Self::resumed_own_login`] (a full handshake):
    /// the tickets its handshake received never become good.
    pub(crate) fn data_refused(&self) {
        self.family.forget_resumed();
    }

    /// After a resumed data handshake: whether the session belongs to this login (see
    /// [`FamilyHandle::resumed_own_login`]).
    pub(crate) async fn resumed_own_login(&self, wait: Duration) -> Result<(), &'static str> {
        self.family.resumed_own_login(wait).await
    }
}

/// TLS 1.3 tickets sent on the control connection: as many as a rustls client keeps (it
/// spends one per data connection; OpenSSL and GnuTLS clients reuse one).
const CONTROL_TICKETS: usize = 8;

/// The acceptors for one control connection from `peer` and its data connections.
pub(crate) fn connection_acceptors(
    service: &Arc<ServerConfig>,
    families: &Arc<Families>,
    peer: IpAddr,
) -> Option<ConnectionTls> {
    let family = families.open(peer)?;
    let sessions = Arc::new(ConnectionSessions::default());
    let mut control = ServerConfig::clone(service);
    control.session_storage = Arc::clone(&sessions) as Arc<dyn StoresServerSessions + Send + Sync>;
    control.ticketer = family.control_tickets();
    control.send_tls13_tickets = CONTROL_TICKETS;
    // No 0-RTT: a replayed first flight must never run a command or a transfer.
    control.max_early_data_size = 0;
    let mut download = control.clone();
    download.session_storage = Arc::new(ReadOnlySessions(sessions));
    // Data connections' tickets open only once their connection passed the check (see
    // crate::tickets).
    download.ticketer = family.data_tickets();
    download.send_tls13_tickets = 2;
    // An uploading client never reads its data connection, and closing a socket with unread
    // bytes (a ticket) makes a TCP reset that discards the end of the upload still in its
    // send buffer. So no TLS 1.3 tickets there (TLS 1.2 tickets are part of the handshake).
    let mut upload = download.clone();
    upload.send_tls13_tickets = 0;
    Some(ConnectionTls {
        control: TlsAcceptor::from(Arc::new(control)),
        download: TlsAcceptor::from(Arc::new(download)),
        upload: TlsAcceptor::from(Arc::new(upload)),
        family,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_keeps_sessions_reusable_and_bounded() {
        let store = ConnectionSessions::default();
        assert!(store.put(b"a".to_vec(), b"1".to_vec()));
        assert_eq!(store.take(b"a"), Some(b"1".to_vec()));
        assert_eq!(store.take(b"a"), Some(b"1".to_vec()));
        for i in 0..100u32 {
            store.put(i.to_be_bytes().to_vec(), vec![]);
        }
        assert_eq!(store.get(b"a"), None);
        assert!(store.entries.lock().map(|e| e.len()).unwrap_or(0) <= SESSIONS_PER_CONNECTION);
    }

    #[test]
    fn data_connections_never_fill_the_store() {
        let store = Arc::new(ConnectionSessions::default());
        store.put(b"control".to_vec(), b"1".to_vec());
        let data = ReadOnlySessions(Arc::clone(&store));
        for i in 0..100u32 {
            assert!(!data.put(i.to_be_bytes().to_vec(), vec![]));
        }
        assert_eq!(data.take(b"control"), Some(b"1".to_vec()));
    }
}
