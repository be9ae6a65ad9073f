//! SHA-256 digests remembered on the file itself, in the `user.wharf.sha256` extended
//! attribute, stamped with the file's size and modification time.
//!
//! A download names its digest (HTTP `Repr-Digest`, FTP `HASH`) without reading the file
//! again when the stamp still matches. A stale or foreign value is never trusted: a
//! different size or time means the digest is computed afresh. Where the filesystem has no
//! user extended attributes, nothing is remembered and nothing fails.

use std::fs::File;

use rustix::fs::XattrFlags;

const ATTRIBUTE: &str = "user.wharf.sha256";

/// Size and modification time, as the remembered digest's stamp.
pub(crate) fn stamp(file: &File) -> Option<String> {
    let st = rustix::fs::fstat(file).ok()?;
    Some(format!(
        "{} {}.{:09}",
        st.st_size, st.st_mtime, st.st_mtime_nsec
    ))
}

/// The remembered digest, if its stamp matches the file as it is now.
pub(crate) fn recall(file: &File) -> Option<String> {
    let mut buf = [0u8; 160];
    let len = rustix::fs::fgetxattr(file, ATTRIBUTE, &mut buf[..]).ok()?;
    let text = std::str::from_utf8(buf.get(..len)?).ok()?;
    let (stamped, hex) = text.rsplit_once(' ')?;
    let valid = hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit());
    (valid && Some(stamped) == stamp(file).as_deref()).then(|| hex.to_ascii_lowercase())
}

/// Forgets the remembered digest. Called before a change that a client can make look like
/// no change to the stamp (a size change followed by setting the time back, a write in
/// place): a stamp made of size and time vouches only for changes no client chose.
pub(crate) fn forget(fd: impl std::os::fd::AsFd) {
    let _ = rustix::fs::fremovexattr(fd, ATTRIBUTE);
}

/// Remembers `hex` for the file, if it still has the stamp `before` (taken before hashing,
/// so a file that changed while it was read is not given a digest of mixed content).
pub(crate) fn remember(file: &File, before: Option<&str>, hex: &str) {
    let Some(now) = stamp(file) else { return };
    if before.is_some_and(|b| b != now) {
        return;
    }
    let _ = rustix::fs::fsetxattr(
        file,
        ATTRIBUTE,
        format!("{now} {hex}").as_bytes(),
        XattrFlags::empty(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn remembered_until_the_file_changes() {
        let dir = std::env::temp_dir().join(format!("wharf-digest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        let mut file = File::create(&path).unwrap();
        file.write_all(b"one").unwrap();
        let hex = "a".repeat(64);
        remember(&file, None, &hex);
        if recall(&file).is_none() {
            // No user xattrs on this filesystem: nothing to check.
            return;
        }
        assert_eq!(recall(&file).as_deref(), Some(hex.as_str()));
        file.write_all(b"two").unwrap();
        assert_eq!(
            recall(&file),
            None,
            "a changed file has no remembered digest"
        );
        let before = stamp(&file);
        file.write_all(b"three").unwrap();
        remember(&file, before.as_deref(), &hex);
        assert_eq!(recall(&file), None, "changed while hashed: not remembered");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
