//! SSH public keys in OpenSSH's one-line format.

pub use russh::keys::ssh_key::PublicKey;
use russh::keys::ssh_key::{Algorithm, HashAlg};

/// Longest key line read; RSA keys of 16384 bits fit several times over.
const MAX_KEY_LINE: usize = 16 * 1024;

/// Why a public key line was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The line is longer than any key Wharf accepts.
    #[error("key line longer than 16 KiB")]
    TooLong,
    /// The line is not `type base64 [comment]` with a key OpenSSH can read. (The reason is
    /// in the message, not a source, so a chain printed in full says it once.)
    #[error("not an OpenSSH public key: {0}")]
    NotOpenSsh(russh::keys::ssh_key::Error),
    /// A key of a type other than Ed25519, ECDSA or RSA (DSA, security keys...).
    #[error("key type {0} is not accepted")]
    Refused(String),
}

/// Parses one `authorized_keys`-style line (`type base64 [comment]`). Only Ed25519, ECDSA
/// and RSA keys are accepted.
pub fn parse_public_key(line: &str) -> Result<PublicKey, KeyError> {
    let line = line.trim();
    if line.len() > MAX_KEY_LINE {
        return Err(KeyError::TooLong);
    }
    let key = PublicKey::from_openssh(line).map_err(KeyError::NotOpenSsh)?;
    match key.algorithm() {
        Algorithm::Ed25519 | Algorithm::Ecdsa { .. } | Algorithm::Rsa { .. } => Ok(key),
        other => Err(KeyError::Refused(other.as_str().to_owned())),
    }
}

/// The key's SHA-256 fingerprint as OpenSSH prints it (`SHA256:...`).
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBWnhQp7VhWWuzdPsvWZbJO60IXuEJdH5UK+YxG269rD wharf-test";
    const DSA: &str = "ssh-dss AAAAB3NzaC1kc3MAAACBAPoF+oQwCcR9zLUOzOweEL83f3b7JW52ApVu4blftBDEgJa2GQp3XO0X7+PQIArHL1eZVBC1uWHr7Hu2ap6pk/pEunygZ5fDTu/xOqmI3D9vBh0u/ZaGuMNrXL0h2Yk8F+kuLimEwIlMTd14aI96U87TjcyM/mkF5ZkQJEOihT0RAAAAFQCMwxP5LqV9SxaM1WJcBtJkgBzmXQAAAIEAhrY24/Kx+5LC9+hbW6AIPETokExm/WpSKgHdUyxJohz1jYtWAuBslE0greWUa07PPm17UxZz/YIYQzxnZKCtA35yJHUXrV7xGnHCTZ7OGRUNjchKmtj7YVxpkCD4vMU2UTwQb81OfxgvrkA+c3Gp8Vji8JlKVBWEVBfeRD2XqbYAAACBALerDQLCP+/ukfCaP4CYhNYBXu8tKVrnTSqa/jePsCesQfL3WYkCQmN6wq3Ah3wWkbvqCGtC/HwZ6HJrqur30ng9ztwtlZcUGXsKYmS/6tI6KipHUV7pNK87+MI41utGGX40F6lVhx6uRJDUN10L/h5hvKvLaPVSeYULpGl8DAqR";

    #[test]
    fn accepts_ed25519_and_says_why_it_refuses() {
        assert!(parse_public_key(&format!("  {ED25519}\n")).is_ok());
        let refused = parse_public_key(DSA).unwrap_err();
        assert!(matches!(refused, KeyError::Refused(_)), "{refused:?}");
        assert_eq!(refused.to_string(), "key type ssh-dss is not accepted");
        let garbage = parse_public_key("ssh-ed25519 not-base64").unwrap_err();
        assert!(matches!(garbage, KeyError::NotOpenSsh(_)), "{garbage:?}");
        assert!(
            garbage
                .to_string()
                .starts_with("not an OpenSSH public key: ")
        );
        let long = format!("{ED25519} {}", "x".repeat(MAX_KEY_LINE));
        let too_long = parse_public_key(&long).unwrap_err();
        assert_eq!(too_long.to_string(), "key line longer than 16 KiB");
    }
}
