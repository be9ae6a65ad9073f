//! A bound on how deeply the XML body of a WebDAV request (PROPFIND, PROPPATCH, LOCK) may
//! nest, checked before any XML parser sees it: the parsers below recurse per level, so a
//! few kilobytes of `<a><a><a>…` would otherwise overflow a worker's stack and abort the
//! whole process. Pure: bytes in, verdict out; it never allocates per element.

/// Deepest nesting a WebDAV body may have. Real clients send a handful of levels
/// (`propertyupdate/set/prop/value`); litmus's deepest property value is far below this.
pub(crate) const MAX_DEPTH: usize = 64;

/// Whether `body` nests elements deeper than `max`. Counts start tags (not `</…>`,
/// `<?…?>`, `<!…>` or `<…/>`) minus end tags; text, attributes and comments are skipped
/// over as bytes. It errs on the side of counting a level too many, never too few.
pub(crate) fn too_deep(body: &[u8], max: usize) -> bool {
    let mut depth: usize = 0;
    let mut i = 0;
    while i < body.len() {
        if body[i] != b'<' {
            i += 1;
            continue;
        }
        // Comments and CDATA sections may hold `<` and `>`: skip them whole.
        if let Some(skip) = special_section(&body[i..]) {
            match skip {
                Some(len) => {
                    i += len;
                    continue;
                }
                None => return false,
            }
        }
        // The end of this markup: the first `>` outside quoted attribute values (which may
        // hold `/>` and must not make a start tag look self-closing).
        let Some(end) = tag_end(body, i) else {
            return false;
        };
        match body.get(i + 1) {
            Some(b'/') => depth = depth.saturating_sub(1),
            Some(b'?') | Some(b'!') => {}
            _ if body[end - 1] == b'/' => {}
            _ => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
        }
        i = end + 1;
    }
    false
}

/// For text starting with a comment or CDATA section: `Some(Some(length))` of the whole
/// section, `Some(None)` when it never ends; `None` for other markup.
fn special_section(at: &[u8]) -> Option<Option<usize>> {
    for (open, close) in [(&b"<!--"[..], &b"-->"[..]), (b"<![CDATA[", b"]]>")] {
        if at.starts_with(open) {
            return Some(find(&at[open.len()..], close).map(|p| open.len() + p + close.len()));
        }
    }
    None
}

/// The index of the `>` closing the markup that starts at `start`, skipping quoted values.
fn tag_end(body: &[u8], start: usize) -> Option<usize> {
    let mut quote = None;
    for (at, &b) in body.iter().enumerate().skip(start) {
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'"' || b == b'\'' => quote = Some(b),
            None if b == b'>' => return Some(at),
            None => {}
        }
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_bodies_pass_and_deep_ones_do_not() {
        let propfind = br#"<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:getetag/><D:resourcetype/></D:prop></D:propfind>"#;
        assert!(!too_deep(propfind, MAX_DEPTH));
        let deep = format!(
            "<D:prop>{}{}</D:prop>",
            "<a>".repeat(1000),
            "</a>".repeat(1000)
        );
        assert!(too_deep(deep.as_bytes(), MAX_DEPTH));
        let flat = "<a></a>".repeat(10_000);
        assert!(!too_deep(flat.as_bytes(), MAX_DEPTH));
        let siblings = "<a/>".repeat(10_000);
        assert!(!too_deep(siblings.as_bytes(), MAX_DEPTH));
        assert!(!too_deep(b"<!-- <a><a><a> -->", 1));
        assert!(!too_deep(b"<x><![CDATA[<a><a><a>]]></x>", 1));
        assert!(too_deep(b"<a><b><c>", 2));
        // A `/>` inside an attribute value does not make a start tag self-closing.
        let quoted = "<a x=\"/>\">".repeat(100);
        assert!(too_deep(quoted.as_bytes(), MAX_DEPTH));
        assert!(!too_deep(b"<a x='>'/><b/>", 1));
    }
}
