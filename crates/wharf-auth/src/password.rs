//! Password hashing: Argon2id for every new hash, checked on the blocking pool.

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

/// Longest password accepted; longer input is refused without hashing it.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Hashes `password` with Argon2id and a random salt, as a PHC string.
pub fn hash_password(password: &str) -> Result<String, String> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(format!("password longer than {MAX_PASSWORD_BYTES} bytes"));
    }
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| format!("cannot hash password: {e}"))
}

/// Checks `password` against a PHC `hash` without blocking the runtime.
pub async fn verify_password(hash: &str, password: &str) -> bool {
    if password.is_empty() || password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    let (hash, password) = (hash.to_owned(), password.to_owned());
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .verify_password(password.as_bytes(), hash.as_str())
            .is_ok()
    })
    .await
    .unwrap_or(false)
}

/// Does the work of a verification whose answer is already known to be "no".
pub(crate) async fn burn_time(password: &str) {
    let password = password.chars().take(64).collect::<String>();
    let _ = tokio::task::spawn_blocking(move || {
        let _ = Argon2::default().hash_password(password.as_bytes());
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(!hash.contains("correct horse"));
        assert!(verify_password(&hash, "correct horse").await);
        assert!(!verify_password(&hash, "wrong").await);
        assert!(!verify_password(&hash, "").await);
        assert!(!verify_password("not a hash", "x").await);
    }
}
