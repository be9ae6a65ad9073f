//! Client-visible paths, normalised once at the edge.
//!
//! A [`VirtualPath`] is always absolute, uses `/` as its only separator, and has no empty,
//! `.` or `..` component: `..` is resolved lexically and can never climb above `/`, the root
//! of the account's home. NUL bytes, backslashes and other control characters are refused,
//! because the same bytes must mean the same thing on every protocol and every backend
//! (Windows separators, C-string truncation, log injection).

use std::fmt;

/// Longest path we accept, in bytes (Linux `PATH_MAX`).
pub const MAX_PATH_BYTES: usize = 4096;
/// Longest single name we accept, in bytes (Linux `NAME_MAX`).
pub const MAX_NAME_BYTES: usize = 255;

/// Why a client-supplied path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// The path holds a NUL byte.
    #[error("path contains a NUL byte")]
    Nul,
    /// The path holds a backslash, which some systems treat as a separator.
    #[error("path contains a backslash")]
    Backslash,
    /// The path holds a control character (below 0x20, or DEL).
    #[error("path contains a control character")]
    Control,
    /// The path is longer than [`MAX_PATH_BYTES`] or a name is longer than [`MAX_NAME_BYTES`].
    #[error("path or name too long")]
    TooLong,
    /// The path is not valid UTF-8 where UTF-8 is required.
    #[error("path is not valid UTF-8")]
    NotUtf8,
}

/// An absolute, normalised path inside an account's home (`/` is the home itself).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VirtualPath {
    // Invariant: starts with '/', no trailing '/' unless it is exactly "/", components are
    // non-empty, not "." or "..", and contain no NUL, '\\' or control characters.
    inner: String,
}

impl VirtualPath {
    /// The home folder itself.
    pub fn root() -> Self {
        VirtualPath {
            inner: "/".to_owned(),
        }
    }

    /// Normalises `input` (absolute, or relative to `base`) into a [`VirtualPath`].
    ///
    /// `..` never climbs above the root: `/../../etc` becomes `/etc`, *inside* the home.
    pub fn resolve(base: &VirtualPath, input: &[u8]) -> Result<Self, PathError> {
        if input.len() > MAX_PATH_BYTES {
            return Err(PathError::TooLong);
        }
        let text = std::str::from_utf8(input).map_err(|_| PathError::NotUtf8)?;
        for c in text.chars() {
            match c {
                '\0' => return Err(PathError::Nul),
                '\\' => return Err(PathError::Backslash),
                c if c.is_control() => return Err(PathError::Control),
                // Line and paragraph separators break one-event-per-line logs.
                '\u{2028}' | '\u{2029}' => return Err(PathError::Control),
                _ => {}
            }
        }
        let mut parts: Vec<&str> = if text.starts_with('/') {
            Vec::new()
        } else {
            base.components().collect()
        };
        for part in text.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    parts.pop();
                }
                name => {
                    if name.len() > MAX_NAME_BYTES {
                        return Err(PathError::TooLong);
                    }
                    parts.push(name);
                }
            }
        }
        let mut inner = String::with_capacity(text.len() + base.inner.len() + 1);
        for part in &parts {
            inner.push('/');
            inner.push_str(part);
        }
        if inner.is_empty() {
            inner.push('/');
        }
        if inner.len() > MAX_PATH_BYTES {
            return Err(PathError::TooLong);
        }
        Ok(VirtualPath { inner })
    }

    /// Parses an absolute or root-relative path with no base (relative means "from /").
    pub fn parse(input: &str) -> Result<Self, PathError> {
        Self::resolve(&Self::root(), input.as_bytes())
    }

    /// The path as text, always starting with `/`.
    pub fn as_str(&self) -> &str {
        &self.inner
    }

    /// True for the home folder itself.
    pub fn is_root(&self) -> bool {
        self.inner == "/"
    }

    /// The names from the root down, without separators.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.inner.split('/').filter(|c| !c.is_empty())
    }

    /// The last name, or `None` for the root.
    pub fn file_name(&self) -> Option<&str> {
        if self.is_root() {
            None
        } else {
            self.inner.rsplit('/').next()
        }
    }

    /// The containing folder; the root is its own parent.
    pub fn parent(&self) -> VirtualPath {
        match self.inner.rfind('/') {
            Some(0) | None => Self::root(),
            Some(i) => VirtualPath {
                inner: self.inner[..i].to_owned(),
            },
        }
    }

    /// This path with one more name appended.
    ///
    /// A `name` that is not a single component is resolved like any other relative input,
    /// so the result always keeps the invariant.
    pub fn join(&self, name: &str) -> Result<VirtualPath, PathError> {
        VirtualPath::resolve(self, name.as_bytes())
    }

    /// The path relative to the home, without the leading `/` (empty for the root).
    pub fn relative(&self) -> &str {
        &self.inner[1..]
    }

    /// True when `self` is `ancestor` or lies below it (component-wise, so `/ab` is not
    /// below `/a`).
    pub fn starts_with(&self, ancestor: &VirtualPath) -> bool {
        if ancestor.is_root() {
            return true;
        }
        self.inner == ancestor.inner
            || (self.inner.starts_with(&ancestor.inner)
                && self.inner.as_bytes().get(ancestor.inner.len()) == Some(&b'/'))
    }
}

impl fmt::Display for VirtualPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner)
    }
}

impl fmt::Debug for VirtualPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(input: &str) -> Result<String, PathError> {
        VirtualPath::resolve(&VirtualPath::parse("/home/sub").unwrap(), input.as_bytes())
            .map(|p| p.inner)
    }

    #[test]
    fn dot_dot_never_climbs_above_root() {
        assert_eq!(r("../../../../etc/passwd").unwrap(), "/etc/passwd");
        assert_eq!(r("/..").unwrap(), "/");
        assert_eq!(r("....//x").unwrap(), "/home/sub/..../x");
        assert_eq!(r("a/./b//c/..").unwrap(), "/home/sub/a/b");
        assert_eq!(r("").unwrap(), "/home/sub");
        assert_eq!(r("/").unwrap(), "/");
    }

    #[test]
    fn hostile_bytes_are_refused() {
        assert_eq!(r("a\0b"), Err(PathError::Nul));
        assert_eq!(r("..\\..\\windows"), Err(PathError::Backslash));
        assert_eq!(r("a\nb"), Err(PathError::Control));
        assert_eq!(r("a\u{2028}b"), Err(PathError::Control));
        assert_eq!(
            VirtualPath::resolve(&VirtualPath::root(), b"\xff\xfe"),
            Err(PathError::NotUtf8)
        );
        assert_eq!(r(&"a".repeat(300)), Err(PathError::TooLong));
    }

    #[test]
    fn containment_is_component_wise() {
        let a = VirtualPath::parse("/a").unwrap();
        assert!(VirtualPath::parse("/a/b").unwrap().starts_with(&a));
        assert!(VirtualPath::parse("/a").unwrap().starts_with(&a));
        assert!(!VirtualPath::parse("/ab").unwrap().starts_with(&a));
        assert!(
            VirtualPath::parse("/x")
                .unwrap()
                .starts_with(&VirtualPath::root())
        );
    }

    #[test]
    fn parent_and_name() {
        let p = VirtualPath::parse("/a/b/c.txt").unwrap();
        assert_eq!(p.file_name(), Some("c.txt"));
        assert_eq!(p.parent().as_str(), "/a/b");
        assert_eq!(p.parent().parent().parent(), VirtualPath::root());
        assert_eq!(VirtualPath::root().file_name(), None);
        assert_eq!(p.relative(), "a/b/c.txt");
    }
}

/// The fuzz target's property on deterministic pseudo-random input (see `fuzz/`).
#[cfg(test)]
mod random_input {
    use super::*;

    #[test]
    fn resolved_paths_stay_normalised() {
        let alphabet: &[&[u8]] = &[
            b"/",
            b"..",
            b".",
            b"a",
            b"\\",
            b"\0",
            b"\n",
            "é".as_bytes(),
            b"//",
            b"\xff",
            b"~",
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let base = VirtualPath::parse("/x/y").unwrap();
        for _ in 0..100_000 {
            let mut input = Vec::new();
            for _ in 0..(state % 12) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                input.extend_from_slice(alphabet[(state % alphabet.len() as u64) as usize]);
            }
            if let Ok(p) = VirtualPath::resolve(&base, &input) {
                let text = p.as_str();
                assert!(text.starts_with('/'));
                assert!(!text.split('/').any(|c| c == ".." || c == "."));
                assert!(!text.contains('\0') && !text.contains('\\') && !text.contains('\n'));
                assert!(text == "/" || !text.ends_with('/'));
                assert_eq!(VirtualPath::parse(text), Ok(p.clone()));
            }
        }
    }
}
