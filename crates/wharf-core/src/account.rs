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
/// Equal accounts act alike (rules compare as written), so a login kept across requests
/// can tell whether the account changed since its session was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// The largest file the account may make, in bytes (the smallest its account record
    /// and groups set); `None` leaves it to the service, or to [`DEFAULT_MAX_FILE_SIZE`].
    pub max_file_size: Option<u64>,
}

/// The largest file any upload, copy or size change may make when neither the service,
/// the account nor its groups say otherwise: 64 GiB. A client chooses offsets and sizes
/// for free, and every byte of a file up to its size is hashed when it is stored, holes
/// included, so the bound is what one request can cost the server.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 64 << 30;

impl Account {
    /// True when the account may use `protocol`.
    pub fn may_use(&self, protocol: Protocol) -> bool {
        self.protocols.is_empty() || self.protocols.contains(&protocol)
    }
}
