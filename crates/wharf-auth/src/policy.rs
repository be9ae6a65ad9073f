//! The password policy for local accounts: a minimum length, a list of common passwords
//! refused, and no password containing the account's own name. It applies where a
//! password is chosen (`wharf account add`, `set-password`, `apply`), never at login, so
//! tightening it does not lock anyone out before their next change.

/// Passwords refused whatever their length, compared case-insensitively.
const COMMON: &str = include_str!("common_passwords.txt");

/// Longest password accepted (characters); Argon2 hashes any length, this bounds the work.
pub const MAX_PASSWORD_CHARS: usize = 1024;

/// The policy, from `[password_policy]` in the configuration.
#[derive(Debug, Clone)]
pub struct PasswordPolicy {
    /// Fewest characters (Unicode scalar values).
    pub min_length: usize,
    /// Refuse passwords on the built-in list of common passwords.
    pub refuse_common: bool,
    /// Refuse passwords that contain the account name (names of 3 characters or more).
    pub refuse_account_name: bool,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        PasswordPolicy {
            min_length: 12,
            refuse_common: true,
            refuse_account_name: true,
        }
    }
}

/// Why a password was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordRejected {
    /// Too short.
    #[error("password refused: shorter than {0} characters")]
    TooShort(usize),
    /// Too long.
    #[error("password refused: longer than {MAX_PASSWORD_CHARS} characters")]
    TooLong,
    /// On the list of common passwords.
    #[error("password refused: it is on the list of common passwords")]
    Common,
    /// Contains the account name.
    #[error("password refused: it contains the account name")]
    ContainsName,
}

impl PasswordPolicy {
    /// Checks a new password for `account`.
    pub fn check(&self, account: &str, password: &str) -> Result<(), PasswordRejected> {
        let chars = password.chars().count();
        if chars < self.min_length {
            return Err(PasswordRejected::TooShort(self.min_length));
        }
        if chars > MAX_PASSWORD_CHARS {
            return Err(PasswordRejected::TooLong);
        }
        let lower = password.to_lowercase();
        if self.refuse_common && COMMON.lines().any(|common| common == lower) {
            return Err(PasswordRejected::Common);
        }
        let name = account.to_lowercase();
        if self.refuse_account_name && name.chars().count() >= 3 && lower.contains(&name) {
            return Err(PasswordRejected::ContainsName);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_refuses_short_common_and_name_bearing_passwords() {
        let policy = PasswordPolicy::default();
        assert_eq!(
            policy.check("alice", "short-pw"),
            Err(PasswordRejected::TooShort(12))
        );
        assert_eq!(
            policy.check("alice", "Password1234"),
            Err(PasswordRejected::Common)
        );
        assert_eq!(
            policy.check("alice", "my-ALICE-password-7"),
            Err(PasswordRejected::ContainsName)
        );
        assert_eq!(
            policy.check("al", "al-is-fine-here"),
            Ok(()),
            "names shorter than 3 are not searched for"
        );
        assert_eq!(
            policy.check("alice", &"x".repeat(1025)),
            Err(PasswordRejected::TooLong)
        );
        // Length is counted in characters, not bytes.
        assert_eq!(
            policy.check("bob", "ééééééééééé"),
            Err(PasswordRejected::TooShort(12))
        );
        assert_eq!(policy.check("bob", "correct horse battery staple"), Ok(()));
        let lax = PasswordPolicy {
            min_length: 4,
            refuse_common: false,
            refuse_account_name: false,
        };
        assert_eq!(lax.check("alice", "alice123"), Ok(()));
    }

    #[test]
    fn the_common_list_is_lowercase_and_has_no_blank_lines() {
        for line in COMMON.lines() {
            assert!(!line.trim().is_empty());
            assert_eq!(line, line.to_lowercase());
            assert_eq!(line, line.trim());
        }
    }
}
