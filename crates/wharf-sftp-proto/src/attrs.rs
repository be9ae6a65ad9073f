//! File attributes (the ATTRS structure of draft-02 §5).

use crate::wire::{DecodeError, Put, Reader};

const SIZE: u32 = 0x1;
const UIDGID: u32 = 0x2;
const PERMISSIONS: u32 = 0x4;
const ACMODTIME: u32 = 0x8;
const EXTENDED: u32 = 0x8000_0000;

/// Most extended attribute pairs one ATTRS may carry (they are ignored anyway).
const MAX_EXTENDED: u32 = 64;

/// Optional file attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileAttrs {
    /// Size in bytes.
    pub size: Option<u64>,
    /// Owner and group ids.
    pub uid_gid: Option<(u32, u32)>,
    /// Mode bits, including the file type bits.
    pub permissions: Option<u32>,
    /// Access and modification times, seconds since the epoch.
    pub atime_mtime: Option<(u32, u32)>,
}

impl FileAttrs {
    /// Decodes an ATTRS structure.
    pub fn decode(r: &mut Reader<'_>) -> Result<FileAttrs, DecodeError> {
        let flags = r.u32()?;
        let mut attrs = FileAttrs::default();
        if flags & SIZE != 0 {
            attrs.size = Some(r.u64()?);
        }
        if flags & UIDGID != 0 {
            attrs.uid_gid = Some((r.u32()?, r.u32()?));
        }
        if flags & PERMISSIONS != 0 {
            attrs.permissions = Some(r.u32()?);
        }
        if flags & ACMODTIME != 0 {
            attrs.atime_mtime = Some((r.u32()?, r.u32()?));
        }
        if flags & EXTENDED != 0 {
            let count = r.u32()?;
            if count > MAX_EXTENDED {
                return Err(DecodeError::Truncated);
            }
            for _ in 0..count {
                r.bytes()?;
                r.bytes()?;
            }
        }
        Ok(attrs)
    }

    /// Appends the ATTRS structure.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut flags = 0;
        if self.size.is_some() {
            flags |= SIZE;
        }
        if self.uid_gid.is_some() {
            flags |= UIDGID;
        }
        if self.permissions.is_some() {
            flags |= PERMISSIONS;
        }
        if self.atime_mtime.is_some() {
            flags |= ACMODTIME;
        }
        out.put_u32(flags);
        if let Some(size) = self.size {
            out.put_u64(size);
        }
        if let Some((uid, gid)) = self.uid_gid {
            out.put_u32(uid);
            out.put_u32(gid);
        }
        if let Some(perm) = self.permissions {
            out.put_u32(perm);
        }
        if let Some((a, m)) = self.atime_mtime {
            out.put_u32(a);
            out.put_u32(m);
        }
    }
}
