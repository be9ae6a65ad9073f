//! Client requests.

use crate::attrs::FileAttrs;
use crate::kind;
use crate::wire::{DecodeError, Reader};

/// SSH_FXF_* open flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFlags(pub u32);

impl OpenFlags {
    /// Open for reading.
    pub const READ: u32 = 0x01;
    /// Open for writing.
    pub const WRITE: u32 = 0x02;
    /// Every write goes to the end.
    pub const APPEND: u32 = 0x04;
    /// Create if missing.
    pub const CREAT: u32 = 0x08;
    /// Truncate an existing file.
    pub const TRUNC: u32 = 0x10;
    /// Fail if it exists.
    pub const EXCL: u32 = 0x20;

    /// True when `flag` is set.
    pub fn has(self, flag: u32) -> bool {
        self.0 & flag != 0
    }
}

/// Extension requests Wharf understands; anything else is [`Extended::Unknown`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Extended {
    /// `posix-rename@openssh.com`: rename replacing the destination atomically.
    PosixRename {
        /// Source.
        from: Vec<u8>,
        /// Destination.
        to: Vec<u8>,
    },
    /// `statvfs@openssh.com`.
    Statvfs {
        /// Any path on the filesystem.
        path: Vec<u8>,
    },
    /// `fstatvfs@openssh.com`.
    Fstatvfs {
        /// An open handle.
        handle: Vec<u8>,
    },
    /// `hardlink@openssh.com`.
    Hardlink {
        /// Existing file.
        existing: Vec<u8>,
        /// New link.
        link: Vec<u8>,
    },
    /// `fsync@openssh.com`.
    Fsync {
        /// An open write handle.
        handle: Vec<u8>,
    },
    /// `limits@openssh.com`.
    Limits,
    /// `home-directory` (draft-ietf-secsh-filexfer-extensions).
    HomeDirectory {
        /// Account name (empty for "mine").
        user: Vec<u8>,
    },
    /// `expand-path@openssh.com`.
    ExpandPath {
        /// Path, possibly starting with `~`.
        path: Vec<u8>,
    },
    /// `copy-data` (draft-ietf-secsh-filexfer-extensions): server-side copy between handles.
    CopyData {
        /// Handle to read from.
        read_handle: Vec<u8>,
        /// Offset to read from.
        read_offset: u64,
        /// Bytes to copy; 0 means to end of file.
        length: u64,
        /// Handle to write to.
        write_handle: Vec<u8>,
        /// Offset to write at.
        write_offset: u64,
    },
    /// `check-file-name` (draft-ietf-secsh-filexfer-extensions): hash of a file by name.
    CheckFileName {
        /// The file.
        path: Vec<u8>,
        /// Comma-separated algorithm names the client accepts.
        algorithms: Vec<u8>,
        /// Start offset.
        start: u64,
        /// Length; 0 means to end of file.
        length: u64,
        /// Block size; 0 means one hash for the whole range.
        block_size: u32,
    },
    /// `check-file-handle`: the same, by handle.
    CheckFileHandle {
        /// An open handle.
        handle: Vec<u8>,
        /// Comma-separated algorithm names the client accepts.
        algorithms: Vec<u8>,
        /// Start offset.
        start: u64,
        /// Length; 0 means to end of file.
        length: u64,
        /// Block size; 0 means one hash for the whole range.
        block_size: u32,
    },
    /// An extension Wharf does not implement.
    Unknown {
        /// Its name.
        name: Vec<u8>,
    },
}

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestBody {
    /// SSH_FXP_OPEN.
    Open {
        /// Path.
        path: Vec<u8>,
        /// SSH_FXF_* flags.
        flags: OpenFlags,
        /// Attributes for a new file.
        attrs: FileAttrs,
    },
    /// SSH_FXP_CLOSE.
    Close {
        /// Handle.
        handle: Vec<u8>,
    },
    /// SSH_FXP_READ.
    Read {
        /// Handle.
        handle: Vec<u8>,
        /// Offset.
        offset: u64,
        /// Bytes wanted (clamped by the server).
        len: u32,
    },
    /// SSH_FXP_WRITE.
    Write {
        /// Handle.
        handle: Vec<u8>,
        /// Offset.
        offset: u64,
        /// Data.
        data: Vec<u8>,
    },
    /// SSH_FXP_LSTAT.
    Lstat {
        /// Path.
        path: Vec<u8>,
    },
    /// SSH_FXP_FSTAT.
    Fstat {
        /// Handle.
        handle: Vec<u8>,
    },
    /// SSH_FXP_SETSTAT.
    Setstat {
        /// Path.
        path: Vec<u8>,
        /// New attributes.
        attrs: FileAttrs,
    },
    /// SSH_FXP_FSETSTAT.
    Fsetstat {
        /// Handle.
        handle: Vec<u8>,
        /// New attributes.
        attrs: FileAttrs,
    },
    /// SSH_FXP_OPENDIR.
    Opendir {
        /// Path.
        path: Vec<u8>,
    },
    /// SSH_FXP_READDIR.
    Readdir {
        /// Handle.
        handle: Vec<u8>,
    },
    /// SSH_FXP_REMOVE.
    Remove {
        /// Path.
        path: Vec<u8>,
    },
    /// SSH_FXP_MKDIR.
    Mkdir {
        /// Path.
        path: Vec<u8>,
        /// Attributes.
        attrs: FileAttrs,
    },
    /// SSH_FXP_RMDIR.
    Rmdir {
        /// Path.
        path: Vec<u8>,
    },
    /// SSH_FXP_REALPATH.
    Realpath {
        /// Path.
        path: Vec<u8>,
    },
    /// SSH_FXP_STAT.
    Stat {
        /// Path.
        path: Vec<u8>,
    },
    /// SSH_FXP_RENAME.
    Rename {
        /// Source.
        from: Vec<u8>,
        /// Destination.
        to: Vec<u8>,
    },
    /// SSH_FXP_READLINK.
    Readlink {
        /// Path.
        path: Vec<u8>,
    },
    /// SSH_FXP_SYMLINK, its two paths in the order received. Which is which depends on
    /// the client: the draft sends the link's path first, then what it points to;
    /// OpenSSH's sftp-server reads them the other way round, and OpenSSH's and paramiko's
    /// clients send them in that order (see `wharf-ssh`'s `SymlinkOrder`).
    Symlink {
        /// The first path on the wire.
        first: Vec<u8>,
        /// The second path on the wire.
        second: Vec<u8>,
    },
    /// SSH_FXP_EXTENDED.
    Extended(Extended),
}

/// A decoded request with its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Request id, echoed in the reply.
    pub id: u32,
    /// The request.
    pub body: RequestBody,
}

/// Decodes SSH_FXP_INIT; returns the client's version.
pub fn decode_init(payload: &[u8]) -> Result<u32, DecodeError> {
    let mut r = Reader::new(payload);
    match r.u8()? {
        kind::INIT => r.u32(),
        other => Err(DecodeError::UnknownType(other)),
    }
}

impl Request {
    /// The request id of a packet, if it has one (for replying to undecodable requests).
    pub fn peek_id(payload: &[u8]) -> Option<u32> {
        let mut r = Reader::new(payload);
        r.u8().ok()?;
        r.u32().ok()
    }

    /// Decodes one packet payload (the bytes after the length field).
    pub fn decode(payload: &[u8]) -> Result<Request, DecodeError> {
        let mut r = Reader::new(payload);
        let kind = r.u8().map_err(|_| DecodeError::Empty)?;
        let id = r.u32()?;
        let body = match kind {
            kind::OPEN => RequestBody::Open {
                path: r.string()?,
                flags: OpenFlags(r.u32()?),
                attrs: FileAttrs::decode(&mut r)?,
            },
            kind::CLOSE => RequestBody::Close {
                handle: r.string()?,
            },
            kind::READ => RequestBody::Read {
                handle: r.string()?,
                offset: r.u64()?,
                len: r.u32()?,
            },
            kind::WRITE => RequestBody::Write {
                handle: r.string()?,
                offset: r.u64()?,
                data: r.string()?,
            },
            kind::LSTAT => RequestBody::Lstat { path: r.string()? },
            kind::FSTAT => RequestBody::Fstat {
                handle: r.string()?,
            },
            kind::SETSTAT => RequestBody::Setstat {
                path: r.string()?,
                attrs: FileAttrs::decode(&mut r)?,
            },
            kind::FSETSTAT => RequestBody::Fsetstat {
                handle: r.string()?,
                attrs: FileAttrs::decode(&mut r)?,
            },
            kind::OPENDIR => RequestBody::Opendir { path: r.string()? },
            kind::READDIR => RequestBody::Readdir {
                handle: r.string()?,
            },
            kind::REMOVE => RequestBody::Remove { path: r.string()? },
            kind::MKDIR => RequestBody::Mkdir {
                path: r.string()?,
                attrs: FileAttrs::decode(&mut r)?,
            },
            kind::RMDIR => RequestBody::Rmdir { path: r.string()? },
            kind::REALPATH => RequestBody::Realpath { path: r.string()? },
            kind::STAT => RequestBody::Stat { path: r.string()? },
            kind::RENAME => RequestBody::Rename {
                from: r.string()?,
                to: r.string()?,
            },
            kind::READLINK => RequestBody::Readlink { path: r.string()? },
            kind::SYMLINK => RequestBody::Symlink {
                first: r.string()?,
                second: r.string()?,
            },
            kind::EXTENDED => RequestBody::Extended(decode_extended(&mut r)?),
            other => return Err(DecodeError::UnknownType(other)),
        };
        Ok(Request { id, body })
    }
}

fn decode_extended(r: &mut Reader<'_>) -> Result<Extended, DecodeError> {
    let name = r.bytes()?;
    Ok(match name {
        b"posix-rename@openssh.com" => Extended::PosixRename {
            from: r.string()?,
            to: r.string()?,
        },
        b"statvfs@openssh.com" => Extended::Statvfs { path: r.string()? },
        b"fstatvfs@openssh.com" => Extended::Fstatvfs {
            handle: r.string()?,
        },
        b"hardlink@openssh.com" => Extended::Hardlink {
            existing: r.string()?,
            link: r.string()?,
        },
        b"fsync@openssh.com" => Extended::Fsync {
            handle: r.string()?,
        },
        b"limits@openssh.com" => Extended::Limits,
        b"home-directory" => Extended::HomeDirectory { user: r.string()? },
        b"expand-path@openssh.com" => Extended::ExpandPath { path: r.string()? },
        b"copy-data" => Extended::CopyData {
            read_handle: r.string()?,
            read_offset: r.u64()?,
            length: r.u64()?,
            write_handle: r.string()?,
            write_offset: r.u64()?,
        },
        b"check-file-name" => Extended::CheckFileName {
            path: r.string()?,
            algorithms: r.string()?,
            start: r.u64()?,
            length: r.u64()?,
            block_size: r.u32()?,
        },
        // paramiko and others send the handle form under the plain name.
        b"check-file-handle" | b"check-file" => Extended::CheckFileHandle {
            handle: r.string()?,
            algorithms: r.string()?,
            start: r.u64()?,
            length: r.u64()?,
            block_size: r.u32()?,
        },
        other => Extended::Unknown {
            name: other.iter().take(128).copied().collect(),
        },
    })
}
