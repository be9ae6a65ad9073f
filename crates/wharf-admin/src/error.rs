//! One error for every operation, with the kinds a caller maps to its own answer (an HTTP
//! status, a command's message).

use wharf_store::StoreError;

/// Why an operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The actor's role does not allow it.
    #[error("{0}")]
    Forbidden(String),
    /// What it names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// What it would create exists already.
    #[error("{0}")]
    Exists(String),
    /// What it changes was changed by someone else since it was read: try again.
    #[error("{0}")]
    Conflict(String),
    /// The request is not valid as given; the message says how to fix it.
    #[error("{0}")]
    Invalid(String),
    /// A login was refused (the message never says whether the name exists).
    #[error("login failed")]
    LoginFailed,
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The change was made but its record could not be written durably.
    #[error("audit trail: {0}")]
    Audit(String),
}

impl AdminError {
    pub(crate) fn invalid(message: impl Into<String>) -> AdminError {
        AdminError::Invalid(message.into())
    }
}
