//! FTPS: the TLS configuration of one control connection and the session store that binds
//! data-connection resumption to it.
//!
//! Each control connection gets its own copy of the service's rustls configuration with
//! its own small session store. A data connection can therefore resume only a session
//! this control connection negotiated, so when resumption is required a third party who
//! connects to the passive port first cannot complete a handshake (vsftpd's
//! `require_ssl_reuse`). Tickets are not consumed when used: clients such as OpenSSL's
//! keep one session and offer it for every data connection.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use rustls::ServerConfig;
use rustls::server::StoresServerSessions;
use wharf_net::tls::TlsAcceptor;

/// Sessions kept per control connection; older ones are dropped first.
const SESSIONS_PER_CONNECTION: usize = 32;

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

/// TLS acceptors for one control connection and for its data connections, sharing one
/// session store.
#[derive(Clone)]
pub(crate) struct ConnectionTls {
    pub(crate) control: TlsAcceptor,
    /// Downloads and listings: the client reads to the end, new tickets included.
    pub(crate) download: TlsAcceptor,
    /// Uploads: no new tickets (see [`connection_acceptors`]).
    pub(crate) upload: TlsAcceptor,
}

/// TLS 1.3 tickets sent on the control connection: as many as a rustls client keeps
/// (OpenSSL and GnuTLS clients reuse one session for every data connection).
const CONTROL_TICKETS: usize = 8;

/// The acceptors for one control connection and its data connections.
pub(crate) fn connection_acceptors(service: &Arc<ServerConfig>) -> ConnectionTls {
    let mut control = ServerConfig::clone(service);
    control.session_storage = Arc::new(ConnectionSessions::default());
    // Stateful resumption only: a ticket from another connection is meaningless here.
    control.ticketer = Arc::new(NoTickets);
    let mut download = control.clone();
    download.send_tls13_tickets = 2;
    control.send_tls13_tickets = CONTROL_TICKETS;
    // An uploading client never reads its data connection, and closing a socket with unread
    // bytes (a ticket) makes a TCP reset that discards the end of the upload still in its
    // send buffer. So no tickets there; the client resumes with one it already has.
    let mut upload = download.clone();
    upload.send_tls13_tickets = 0;
    ConnectionTls {
        control: TlsAcceptor::from(Arc::new(control)),
        download: TlsAcceptor::from(Arc::new(download)),
        upload: TlsAcceptor::from(Arc::new(upload)),
    }
}

#[derive(Debug)]
struct NoTickets;

impl rustls::server::ProducesTickets for NoTickets {
    fn enabled(&self) -> bool {
        false
    }
    fn lifetime(&self) -> u32 {
        0
    }
    fn encrypt(&self, _plain: &[u8]) -> Option<Vec<u8>> {
        None
    }
    fn decrypt(&self, _cipher: &[u8]) -> Option<Vec<u8>> {
        None
    }
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
}
