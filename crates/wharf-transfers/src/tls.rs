//! Which TLS servers a location trusts: the certificates a CA file (or the system) vouches
//! for, under the location's host name, or exactly the pinned certificates (SHA-256 of the
//! server's certificate, as `openssl x509 -fingerprint -sha256` prints it), whatever they
//! name. Anything else ends the handshake.

use std::sync::Arc;

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use crate::endpoint::EndpointError;

/// How a TLS location's server is trusted.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Certificates a CA vouches for: the PEM file's, or the system's when `None`.
    Authority(Option<Vec<u8>>),
    /// Exactly these certificates (SHA-256 of their DER, lowercase hex without colons).
    Pinned(Vec<String>),
}

/// The normalised form of a pin as an administrator writes it (`AB:CD:…` or `abcd…`).
pub fn normalise_pin(pin: &str) -> Option<String> {
    let hex: String = pin
        .trim()
        .trim_start_matches("sha256:")
        .trim_start_matches("SHA256:")
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

#[derive(Debug)]
struct Pins {
    pins: Vec<String>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Pins {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, end_entity.as_ref());
        let seen = crate::run::hex(digest.as_ref());
        if self.pins.contains(&seen) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the server's certificate (SHA-256 {seen}) is not a pinned one"
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl Trust {
    /// A client configuration that trusts what this says (and resumes sessions, as FTPS
    /// servers that tie data connections to the control connection require).
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, EndpointError> {
        match self {
            Trust::Authority(ca) => wharf_net::post::client_config(ca.as_deref())
                .map_err(|e| EndpointError::location(e.to_string())),
            Trust::Pinned(pins) => {
                let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
                let config = rustls::ClientConfig::builder_with_provider(provider.clone())
                    .with_safe_default_protocol_versions()
                    .map_err(|e| EndpointError::location(format!("TLS: {e}")))?
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(Pins {
                        pins: pins.clone(),
                        provider,
                    }))
                    .with_no_client_auth();
                Ok(Arc::new(config))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_read_as_openssl_and_others_print_them() {
        let hex = "ab".repeat(32);
        let colons = (0..32).map(|_| "AB").collect::<Vec<_>>().join(":");
        assert_eq!(normalise_pin(&colons).as_deref(), Some(hex.as_str()));
        assert_eq!(
            normalise_pin(&format!("sha256:{hex}")).as_deref(),
            Some(hex.as_str())
        );
        assert_eq!(normalise_pin("abcd"), None);
        assert_eq!(normalise_pin(&"zz".repeat(32)), None);
    }
}
