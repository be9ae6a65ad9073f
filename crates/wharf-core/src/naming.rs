//! Unique names given to uploads as they commit.
//!
//! Where a partner's uploads must never replace one another (a drop folder that an event
//! handler empties), the name a file is stored under is chosen when the upload commits: a
//! UUID before the client's name, in the same folder, created without replacing anything.
//! Choosing it then, and not in a handler afterwards, means no later upload of the same
//! name can replace the file before it is renamed, on any protocol.
//!
//! This module only holds the question and the answer's shape; which uploads get unique
//! names is decided by whoever the server registers on the [`crate::EventBus`] (the event
//! handlers' `uuid-prefix` filters).

use crate::events::Event;

/// Decides whether an upload is committed under a unique name.
pub trait UploadNaming: Send + Sync {
    /// Asked once per upload, just before it commits, with the `upload.finished` record it
    /// will produce (account, groups, service, protocol, path, size, SHA-256 filled in).
    fn unique_name(&self, finished: &Event) -> bool;
}

/// The unique form of `name`: a random UUID, a hyphen, then the client's name, cut so the
/// whole stays within one file name's 255 bytes.
pub fn unique_form(name: &str) -> String {
    let prefix = uuid::Uuid::new_v4().to_string();
    let room = wharf_types::MAX_NAME_BYTES - prefix.len() - 1;
    let mut end = name.len().min(room);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{prefix}-{}", &name[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_fit_one_name() {
        let short = unique_form("dup.txt");
        assert_eq!(short.len(), 36 + 1 + 7);
        assert!(short.ends_with("-dup.txt"));
        assert_ne!(unique_form("dup.txt"), short);
        let long = unique_form(&"é".repeat(127));
        assert!(long.len() <= 255);
        assert!(long.is_char_boundary(long.len()));
    }
}
