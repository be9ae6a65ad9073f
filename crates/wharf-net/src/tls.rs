//! TLS for the front-ends that speak it (FTPS, HTTPS, the Manager): the certificate and key
//! read from PEM files, and the rustls server configuration built on aws-lc-rs. The pair is
//! held by [`Certificates`], which a reload replaces: handshakes after it present the new
//! certificate, connections already made keep theirs.
//!
//! TLS 1.2 and 1.3 only, with rustls's safe cipher suites; no client certificates. Session
//! resumption is per front-end policy: a front-end clones the configuration and gives it its
//! own session store and ticket keys (FTPS: per control connection, so a data connection's
//! resumed session tells which login it belongs to).
//!
//! This module must never read or write a network stream itself.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

pub use tokio_rustls::TlsAcceptor;
pub use tokio_rustls::server::TlsStream;

/// Why the TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file is missing, unreadable or holds no certificate.
    #[error("{path}: cannot read a PEM certificate: {reason}")]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The key file is missing, unreadable or holds no private key.
    #[error("{path}: cannot read a PEM private key: {reason}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// rustls refused the pair (key does not match, unsupported algorithm).
    #[error("certificate and key cannot be used together: {0}")]
    Pair(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Reads a PEM certificate chain and its PEM private key, and checks that they belong
/// together.
fn certified(certificate: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(certificate)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Certificate {
            path: certificate.to_owned(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Certificate {
            path: certificate.to_owned(),
            reason: "no CERTIFICATE block found".to_owned(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.to_owned(),
        reason: e.to_string(),
    })?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(|e| TlsError::Pair(e.to_string()))
}

/// The certificate every TLS service presents, replaceable while they run.
#[derive(Debug)]
pub struct Certificates {
    current: RwLock<Arc<CertifiedKey>>,
}

impl Certificates {
    /// Reads the pair from PEM files.
    pub fn load(certificate: &Path, key: &Path) -> Result<Arc<Certificates>, TlsError> {
        Ok(Arc::new(Certificates {
            current: RwLock::new(Arc::new(certified(certificate, key)?)),
        }))
    }

    /// Reads the pair again (a renewed certificate, another file); the next handshakes
    /// present it. On an error the one in use stays.
    pub fn reload(&self, certificate: &Path, key: &Path) -> Result<(), TlsError> {
        let fresh = Arc::new(certified(certificate, key)?);
        let mut current = self
            .current
            .write()
            .map_err(|_| TlsError::Pair("the certificate holder was poisoned".to_owned()))?;
        *current = fresh;
        Ok(())
    }

    /// The server configuration presenting these certificates.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, TlsError> {
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Pair(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| Arc::clone(&c))
    }
}

/// Builds a server configuration from a PEM certificate chain and a PEM private key.
pub fn server_config(certificate: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    Certificates::load(certificate, key)?.server_config()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_name_the_file() {
        let err = server_config(Path::new("/nonexistent/cert.pem"), Path::new("/x"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.starts_with("/nonexistent/cert.pem: cannot read a PEM certificate"),
            "{err}"
        );
    }

    #[test]
    fn a_key_in_place_of_a_certificate_is_refused() {
        let dir = std::env::temp_dir().join(format!("wharf-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("not-a-cert.pem");
        std::fs::write(
            &file,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let err = server_config(&file, &file)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("no CERTIFICATE block"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
