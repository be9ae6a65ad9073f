//! Which key exchanges, ciphers, MACs and host-key types the service offers.
//!
//! Defaults are modern only: the ML-KEM/X25519 hybrid and Curve25519 key exchanges,
//! ChaCha20-Poly1305 and AES-GCM, AES-CTR only with encrypt-then-MAC SHA-2, no SHA-1, no
//! CBC, no compression. Strict key exchange (Terrapin) is always advertised.

use std::borrow::Cow;

use russh::keys::Algorithm;
use russh::keys::ssh_key::{EcdsaCurve, HashAlg};
use russh::{Preferred, cipher, compression, kex, mac};

/// An algorithm name Wharf does not offer.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown or refused {what} algorithm {name:?}; allowed: {allowed}")]
pub struct AlgorithmError {
    /// kex, cipher, mac or host-key.
    pub what: &'static str,
    /// The name given.
    pub name: String,
    /// What may be used instead.
    pub allowed: String,
}

/// Algorithm lists, in preference order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Algorithms {
    /// Key exchanges.
    pub kex: Vec<String>,
    /// Ciphers.
    pub ciphers: Vec<String>,
    /// MACs (used only with the CTR ciphers).
    pub macs: Vec<String>,
    /// Host-key signature algorithms.
    pub host_keys: Vec<String>,
}

const KEX_ALLOWED: &[&str] = &[
    "mlkem768x25519-sha256",
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
    "ecdh-sha2-nistp256",
    "ecdh-sha2-nistp384",
    "ecdh-sha2-nistp521",
    "diffie-hellman-group16-sha512",
    "diffie-hellman-group18-sha512",
];
const CIPHERS_ALLOWED: &[&str] = &[
    "chacha20-poly1305@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-gcm@openssh.com",
    "aes256-ctr",
    "aes192-ctr",
    "aes128-ctr",
];
const MACS_ALLOWED: &[&str] = &[
    "hmac-sha2-512-etm@openssh.com",
    "hmac-sha2-256-etm@openssh.com",
    "hmac-sha2-512",
    "hmac-sha2-256",
];
const HOST_KEYS_ALLOWED: &[&str] = &[
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "rsa-sha2-512",
    "rsa-sha2-256",
];

fn owned(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

impl Default for Algorithms {
    fn default() -> Self {
        Algorithms {
            kex: owned(&KEX_ALLOWED[..3]),
            ciphers: owned(CIPHERS_ALLOWED),
            macs: owned(&MACS_ALLOWED[..2]),
            host_keys: owned(HOST_KEYS_ALLOWED),
        }
    }
}

fn check(what: &'static str, names: &[String], allowed: &[&str]) -> Result<(), AlgorithmError> {
    for name in names {
        if !allowed.contains(&name.as_str()) {
            return Err(AlgorithmError {
                what,
                name: name.clone(),
                allowed: allowed.join(", "),
            });
        }
    }
    if names.is_empty() {
        return Err(AlgorithmError {
            what,
            name: String::new(),
            allowed: allowed.join(", "),
        });
    }
    Ok(())
}

fn host_key_algorithm(name: &str) -> Option<Algorithm> {
    Some(match name {
        "ssh-ed25519" => Algorithm::Ed25519,
        "ecdsa-sha2-nistp256" => Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP256,
        },
        "ecdsa-sha2-nistp384" => Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP384,
        },
        "ecdsa-sha2-nistp521" => Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP521,
        },
        "rsa-sha2-512" => Algorithm::Rsa {
            hash: Some(HashAlg::Sha512),
        },
        "rsa-sha2-256" => Algorithm::Rsa {
            hash: Some(HashAlg::Sha256),
        },
        _ => return None,
    })
}

impl Algorithms {
    /// Refuses names outside the allowed sets (SHA-1, CBC, group1/14 are never allowed).
    pub fn validate(&self) -> Result<(), AlgorithmError> {
        check("kex", &self.kex, KEX_ALLOWED)?;
        check("cipher", &self.ciphers, CIPHERS_ALLOWED)?;
        check("mac", &self.macs, MACS_ALLOWED)?;
        check("host-key", &self.host_keys, HOST_KEYS_ALLOWED)
    }

    /// The russh preference lists; call [`Algorithms::validate`] first.
    pub fn preferred(&self) -> Preferred {
        let mut kexes: Vec<kex::Name> = self
            .kex
            .iter()
            .filter_map(|n| kex::Name::try_from(n.as_str()).ok())
            .collect();
        kexes.push(kex::EXTENSION_SUPPORT_AS_SERVER);
        kexes.push(kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER);
        Preferred {
            kex: Cow::Owned(kexes),
            key: Cow::Owned(
                self.host_keys
                    .iter()
                    .filter_map(|n| host_key_algorithm(n))
                    .collect(),
            ),
            cipher: Cow::Owned(
                self.ciphers
                    .iter()
                    .filter_map(|n| cipher::Name::try_from(n.as_str()).ok())
                    .collect(),
            ),
            mac: Cow::Owned(
                self.macs
                    .iter()
                    .filter_map(|n| mac::Name::try_from(n.as_str()).ok())
                    .collect(),
            ),
            compression: Cow::Borrowed(&[compression::NONE]),
            ..Preferred::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_weak_ones_refused() {
        Algorithms::default().validate().unwrap();
        let p = Algorithms::default().preferred();
        assert_eq!(p.compression.len(), 1);
        for (field, bad) in [
            ("kex", "diffie-hellman-group14-sha1"),
            ("cipher", "aes128-cbc"),
            ("mac", "hmac-sha1"),
            ("host", "ssh-rsa"),
        ] {
            let mut a = Algorithms::default();
            match field {
                "kex" => a.kex = vec![bad.into()],
                "cipher" => a.ciphers = vec![bad.into()],
                "mac" => a.macs = vec![bad.into()],
                _ => a.host_keys = vec![bad.into()],
            }
            assert!(a.validate().is_err(), "{bad} accepted");
        }
    }
}
