//! The authenticated principal a session acts for.

use std::path::PathBuf;

use wharf_types::{AccountName, Protocol};

use crate::permissions::RuleSet;

/// What happens to the bytes of an upload that does not finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UploadMode {
    /// Bytes go to a hidden temporary file in the destination folder; on success it is
    /// fsynced and renamed over the final name; on failure or disconnect it is removed. No
    /// partial file ever appears under its final name. Resuming needs the client's own
    /// partial copy, so `reput` after a cut connection starts from what was committed.
    #[default]
    Atomic,
    /// Like `atomic` while the upload runs, but an upload cut short is kept under its final
    /// name (the audit event says so) so the client can resume it with `reput` / `REST`.
    /// A resumed upload then writes in place, from the offset the client gives.
    Resumable,
}

/// An authenticated account with everything a session needs, resolved once at login.
#[derive(Debug, Clone)]
pub struct Account {
    /// The account's name.
    pub name: AccountName,
    /// The host folder that is `/` for this account.
    pub home: PathBuf,
    /// The Wharf groups the account belongs to, in its order.
    pub groups: Vec<String>,

    /// Create `home` at login when it does not exist.
    pub create_home: bool,
    /// The account's rules followed by its groups' rules.
    pub rules: RuleSet,
    /// Protocols the account may use; empty means all.
    pub protocols: Vec<Protocol>,
    /// The upload policy in force.
    pub upload_mode: UploadMode,
}

impl Account {
    /// True when the account may use `protocol`.
    pub fn may_use(&self, protocol: Protocol) -> bool {
        self.protocols.is_empty() || self.protocols.contains(&protocol)
    }
}
