//! SSH public keys in OpenSSH's one-line format.

pub use russh::keys::ssh_key::PublicKey;
use russh::keys::ssh_key::{Algorithm, HashAlg};

/// Parses one `authorized_keys`-style line (`type base64 [comment]`). Only Ed25519, ECDSA
/// and RSA keys are accepted.
pub fn parse_public_key(line: &str) -> Result<PublicKey, String> {
    let line = line.trim();
    if line.len() > 16 * 1024 {
        return Err("key line longer than 16 KiB".to_owned());
    }
    let key =
        PublicKey::from_openssh(line).map_err(|e| format!("not an OpenSSH public key: {e}"))?;
    match key.algorithm() {
        Algorithm::Ed25519 | Algorithm::Ecdsa { .. } | Algorithm::Rsa { .. } => Ok(key),
        other => Err(format!("key type {} is not accepted", other.as_str())),
    }
}

/// The key's SHA-256 fingerprint as OpenSSH prints it (`SHA256:...`).
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}
