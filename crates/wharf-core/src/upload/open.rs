//! How a client asks to open a file for writing, in one value the session decides at once
//! against the file it really opens: exclusive creation (SFTP `CREAT|EXCL`, WebDAV's
//! create-new), a file that must already be there (SFTP without `CREAT`), truncation,
//! appending, and the offset a resumed upload continues from (FTP `REST`). Front-ends
//! translate their protocol's flags into it and never look at the file first: a check
//! made before the open is a race with whoever changes the file in between, and a look
//! (`stat`) needs `list`, which a drop folder's account does not have.

use super::WriteMode;

/// What the client asked for when it opened a file for writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadOpen {
    /// Replace from byte 0, keep the content, or append. A `Resume` or `Append` of a name
    /// with no file creates one (recorded as `create`).
    pub mode: WriteMode,
    /// Refuse (`AlreadyExists`) when a file is at the name; and when one appears there
    /// before the upload commits, the commit fails rather than replace it.
    pub exclusive: bool,
    /// Refuse (`NotFound`) when no file is at the name.
    pub must_exist: bool,
    /// For `Resume`: the offset the client continues from, which must be the size of the
    /// file opened (`InvalidOffset` otherwise); writes pushed with
    /// [`crate::Upload::push`] start there.
    pub resume_at: Option<u64>,
}

impl UploadOpen {
    /// A new file, or an existing one replaced from byte 0 (`STOR`, `PUT`, `scp`).
    pub fn create() -> UploadOpen {
        UploadOpen::from(WriteMode::Create)
    }

    /// A new file only: refused when one is there.
    pub fn exclusive(mut self) -> UploadOpen {
        self.exclusive = true;
        self
    }

    /// Only a file already there.
    pub fn existing(mut self) -> UploadOpen {
        self.must_exist = true;
        self
    }

    /// Continues the file from `offset`, which must be its size (FTP `REST` + `STOR`).
    pub fn resume_at(offset: u64) -> UploadOpen {
        UploadOpen {
            resume_at: Some(offset),
            ..UploadOpen::from(WriteMode::Resume)
        }
    }
}

impl From<WriteMode> for UploadOpen {
    fn from(mode: WriteMode) -> UploadOpen {
        UploadOpen {
            mode,
            exclusive: false,
            must_exist: false,
            resume_at: None,
        }
    }
}
