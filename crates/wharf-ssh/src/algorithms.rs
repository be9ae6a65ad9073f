//! Which key exchanges, ciphers, MACs and host-key types the service offers.
//!
//! Two profiles. `compatible` (the default) is what OpenSSH's own server accepts by default,
//! less everything with SHA-1 and the two families russh lacks (group exchange, sntrup761):
//! the common clients that are not OpenSSH (libssh2 before 1.11, so curl and PHP's ssh2;
//! JSch) find a key exchange and a MAC in it. `modern` is the narrower set: the ML-KEM/X25519
//! hybrid and Curve25519 key exchanges and encrypt-then-MAC only. In both: no SHA-1, no CBC,
//! no compression, no `ssh-rsa` signatures; strict key exchange (Terrapin) is always
//! advertised.

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

/// Every key exchange that may be configured, strongest first: the compatible profile's
/// list (the modern profile's are the first three).
const KEX_ALLOWED: &[&str] = &[
    "mlkem768x25519-sha256",
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
    "ecdh-sha2-nistp521",
    "ecdh-sha2-nistp384",
    "ecdh-sha2-nistp256",
    "diffie-hellman-group18-sha512",
    "diffie-hellman-group16-sha512",
    "diffie-hellman-group14-sha256",
];
/// Key exchanges of the modern profile.
const KEX_MODERN: usize = 3;
const CIPHERS_ALLOWED: &[&str] = &[
    "chacha20-poly1305@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-gcm@openssh.com",
    "aes256-ctr",
    "aes192-ctr",
    "aes128-ctr",
];
/// Every MAC that may be configured: the compatible profile's list (the modern profile's
/// are the first two, encrypt-then-MAC).
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

/// MACs of the modern profile.
const MACS_MODERN: usize = 2;

/// A service's default algorithm lists (`algorithms` in its configuration); its `kex`,
/// `ciphers`, `macs` and `host_key_algorithms` keys override single lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// What OpenSSH's server accepts by default, without SHA-1 (the default).
    #[default]
    Compatible,
    /// Curve25519 and ML-KEM key exchanges and encrypt-then-MAC MACs only.
    Modern,
}

impl Profile {
    /// The names accepted in the configuration.
    pub const NAMES: &'static str = "\"compatible\" or \"modern\"";

    /// The profile named `name` in the configuration.
    pub fn parse(name: &str) -> Option<Profile> {
        match name {
            "compatible" => Some(Profile::Compatible),
            "modern" => Some(Profile::Modern),
            _ => None,
        }
    }
}

impl Algorithms {
    /// The lists of `profile`.
    pub fn profile(profile: Profile) -> Algorithms {
        let (kex, macs) = match profile {
            Profile::Compatible => (KEX_ALLOWED, MACS_ALLOWED),
            Profile::Modern => (&KEX_ALLOWED[..KEX_MODERN], &MACS_ALLOWED[..MACS_MODERN]),
        };
        Algorithms {
            kex: owned(kex),
            ciphers: owned(CIPHERS_ALLOWED),
            macs: owned(macs),
            host_keys: owned(HOST_KEYS_ALLOWED),
        }
    }
}

impl Default for Algorithms {
    fn default() -> Self {
        Algorithms::profile(Profile::default())
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
            ("kex", "diffie-hellman-group-exchange-sha1"),
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

    #[test]
    fn profiles() {
        let compatible = Algorithms::profile(Profile::Compatible);
        let modern = Algorithms::profile(Profile::Modern);
        compatible.validate().unwrap();
        modern.validate().unwrap();
        assert_eq!(compatible, Algorithms::default());
        // What libssh2 1.10 and JSch need, without SHA-1.
        for kex in ["ecdh-sha2-nistp256", "diffie-hellman-group14-sha256"] {
            assert!(compatible.kex.iter().any(|k| k == kex));
            assert!(!modern.kex.iter().any(|k| k == kex));
        }
        assert!(compatible.macs.iter().any(|m| m == "hmac-sha2-256"));
        assert!(modern.macs.iter().all(|m| m.ends_with("-etm@openssh.com")));
        for list in [&compatible.kex, &compatible.macs] {
            assert!(list.iter().all(|n| !n.contains("sha1")));
        }
        // Every name is one russh implements.
        let p = compatible.preferred();
        assert_eq!(p.kex.len(), compatible.kex.len() + 2);
        assert_eq!(p.mac.len(), compatible.macs.len());
        assert_eq!(p.cipher.len(), compatible.ciphers.len());
        assert_eq!(Profile::parse("modern"), Some(Profile::Modern));
        assert_eq!(Profile::parse("fips"), None);
    }
}
