//! Account and group names.

use std::fmt;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid name {0:?}: use 1-64 characters from letters, digits, '.', '_', '-' and '@', not starting with '.' or '-'"
)]
pub struct AccountNameError(pub String);

/// A validated account or group name.
///
/// Names are restricted so they are safe in paths (`${USER}` in home templates), log lines
/// and every protocol's user field: no separators, no control characters, no NUL.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AccountName(String);

impl AccountName {
    /// Validates `name`.
    pub fn new(name: &str) -> Result<Self, AccountNameError> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && !name.starts_with('.')
            && !name.starts_with('-')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
        if ok {
            Ok(AccountName(name.to_owned()))
        } else {
            Err(AccountNameError(name.chars().take(80).collect()))
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AccountName {
    type Error = AccountNameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        AccountName::new(&value)
    }
}

impl From<AccountName> for String {
    fn from(value: AccountName) -> Self {
        value.0
    }
}

impl fmt::Display for AccountName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for AccountName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(AccountName::new("alice").is_ok());
        assert!(AccountName::new("partner-1.ops@acme").is_ok());
        for bad in [
            "",
            ".x",
            "-x",
            "a/b",
            "a b",
            "a\0",
            "..",
            &"x".repeat(65),
            "a:)",
        ] {
            assert!(AccountName::new(bad).is_err(), "{bad:?}");
        }
    }
}
