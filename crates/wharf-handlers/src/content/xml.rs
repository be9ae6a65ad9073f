//! Text out of XML, streamed: what is between the tags, with the predefined and numeric
//! entities decoded, and the attribute values as a stream of their own.
//!
//! In any XML, every tag separates text, so `<id>7</id><pan>4111...</pan>` reads as two
//! numbers. In an office document's parts (DOCX, XLSX, ODT: [`Mode::Office`]) only tags
//! that end a paragraph, a cell or a line separate; formatting tags become nothing, so a
//! number split over runs of text (`<w:t>4111 </w:t><w:t>1111</w:t>`) reads whole, as the
//! document shows it. Memory is a few bytes of state whatever the input.

/// Local tag names (after any prefix) that separate text.
const BREAKS: &[&[u8]] = &[
    b"p",
    b"br",
    b"tab",
    b"tr",
    b"tc",
    b"row",
    b"c",
    b"si",
    b"cr",
    b"h",
    b"line-break",
    b"table-cell",
    b"v",
    b"is",
];

/// How tags separate text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every tag is a break.
    Markup,
    /// Only paragraph, cell and line tags are breaks (office documents' parts).
    Office,
}

const MAX_NAME: usize = 32;
const MAX_ENTITY: usize = 32;

#[derive(Default)]
enum State {
    #[default]
    Text,
    /// Inside `<...>`, reading the name while `naming`; `quote` is the quote of an
    /// attribute value being read (a `>` there does not end the tag).
    Tag { naming: bool, quote: Option<u8> },
    /// Inside `&...;`; in an attribute value quoted so, when `quote` is set.
    Entity { quote: Option<u8> },
    /// Inside `<![CDATA[...]]>`: text as it is; `closing` counts the `]` seen.
    CData { closing: u8 },
}

/// Turns XML bytes into text bytes, a piece at a time.
pub struct Stripper {
    mode: Mode,
    state: State,
    name: Vec<u8>,
    entity: Vec<u8>,
}

impl Stripper {
    /// A stripper separating text as `mode` says.
    pub fn new(mode: Mode) -> Stripper {
        Stripper {
            mode,
            state: State::Text,
            name: Vec::new(),
            entity: Vec::new(),
        }
    }

    /// Strips `input`, appending the text to `out` and the attribute values (each
    /// followed by a line break) to `values`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>, values: &mut Vec<u8>) {
        for &b in input {
            match self.state {
                State::Text => match b {
                    b'<' => {
                        self.name.clear();
                        self.state = State::Tag {
                            naming: true,
                            quote: None,
                        };
                    }
                    b'&' => {
                        self.entity.clear();
                        self.state = State::Entity { quote: None };
                    }
                    _ => out.push(b),
                },
                State::Tag {
                    naming: false,
                    quote: Some(q),
                } => {
                    if b == q {
                        values.push(b'\n');
                        self.state = State::Tag {
                            naming: false,
                            quote: None,
                        };
                    } else if b == b'&' {
                        self.entity.clear();
                        self.state = State::Entity { quote: Some(q) };
                    } else {
                        values.push(b);
                    }
                }
                State::Tag { naming, .. } => match b {
                    b'>' => {
                        if self.breaks() {
                            out.push(b'\n');
                        }
                        self.state = State::Text;
                    }
                    b'"' | b'\'' if !naming => {
                        self.state = State::Tag {
                            naming: false,
                            quote: Some(b),
                        };
                    }
                    b' ' | b'\t' | b'\r' | b'\n' | b'/' if naming && !self.name.is_empty() => {
                        self.state = State::Tag {
                            naming: false,
                            quote: None,
                        };
                    }
                    b'/' | b'?' | b'!' if naming && self.name.is_empty() => {}
                    _ if naming && self.name.len() < MAX_NAME => {
                        self.name.push(b);
                        if self.name == b"[CDATA[" {
                            self.state = State::CData { closing: 0 };
                        }
                    }
                    _ => {}
                },
                State::CData { closing } => match (b, closing) {
                    (b']', 0 | 1) => {
                        self.state = State::CData {
                            closing: closing + 1,
                        }
                    }
                    (b']', _) => out.push(b']'),
                    (b'>', 2) => self.state = State::Text,
                    _ => {
                        out.extend(std::iter::repeat_n(b']', usize::from(closing)));
                        out.push(b);
                        self.state = State::CData { closing: 0 };
                    }
                },
                State::Entity { quote } => {
                    let (target, back) = match quote {
                        Some(q) => (
                            &mut *values,
                            State::Tag {
                                naming: false,
                                quote: Some(q),
                            },
                        ),
                        None => (&mut *out, State::Text),
                    };
                    if b == b';' {
                        self.decode(target);
                        self.state = back;
                    } else if self.entity.len() < MAX_ENTITY && Some(b) != quote {
                        self.entity.push(b);
                    } else {
                        // Not an entity after all: keep what was read as text.
                        target.push(b'&');
                        target.extend_from_slice(&self.entity);
                        self.state = back;
                        if Some(b) == quote {
                            // The quote ends the value (`target` is the values).
                            target.push(b'\n');
                            self.state = State::Tag {
                                naming: false,
                                quote: None,
                            };
                        } else {
                            target.push(b);
                        }
                    }
                }
            }
        }
    }

    fn breaks(&self) -> bool {
        if self.mode == Mode::Markup {
            return true;
        }
        let local = match self.name.iter().rposition(|b| *b == b':') {
            Some(i) => &self.name[i + 1..],
            None => &self.name[..],
        };
        BREAKS.contains(&local)
    }

    fn decode(&self, out: &mut Vec<u8>) {
        let e = &self.entity[..];
        let ch = match e {
            b"amp" => Some('&'),
            b"lt" => Some('<'),
            b"gt" => Some('>'),
            b"quot" => Some('"'),
            b"apos" => Some('\''),
            [b'#', b'x' | b'X', hex @ ..] => std::str::from_utf8(hex)
                .ok()
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .and_then(char::from_u32),
            [b'#', dec @ ..] => std::str::from_utf8(dec)
                .ok()
                .and_then(|d| d.parse::<u32>().ok())
                .and_then(char::from_u32),
            _ => None,
        };
        match ch {
            Some(c) => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
            None => {
                out.push(b'&');
                out.extend_from_slice(e);
                out.push(b';');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip_as(mode: Mode, pieces: &[&[u8]]) -> (String, String) {
        let mut s = Stripper::new(mode);
        let (mut out, mut values) = (Vec::new(), Vec::new());
        for p in pieces {
            s.feed(p, &mut out, &mut values);
        }
        (
            String::from_utf8(out).expect("utf-8"),
            String::from_utf8(values).expect("utf-8"),
        )
    }

    fn strip(pieces: &[&[u8]]) -> String {
        strip_as(Mode::Office, pieces).0
    }

    #[test]
    fn any_xml_separates_at_every_tag_and_keeps_attribute_values() {
        let doc: &[u8] = br#"<?xml version="1.0"?><rows><row pan="4111 1111 &#49;111 1111" n='a&amp;b'/><id>7</id><pan>4111111111111111</pan></rows>"#;
        let (text, values) = strip_as(Mode::Markup, &[doc]);
        assert_eq!(
            text.split_whitespace().collect::<Vec<_>>(),
            ["7", "4111111111111111"]
        );
        assert_eq!(values, "1.0\n4111 1111 1111 1111\na&b\n");
        let bytes: Vec<&[u8]> = doc.chunks(1).collect();
        assert_eq!(strip_as(Mode::Markup, &bytes), (text, values));
        // An ampersand that starts no entity, up to the closing quote.
        let (_, values) = strip_as(Mode::Markup, &[br#"<a v="x & y&z"/>"#]);
        assert_eq!(values, "x & y&z\n");
    }

    #[test]
    fn runs_join_and_paragraphs_break() {
        let doc: &[u8] = br#"<?xml version="1.0"?><w:body><w:p><w:r><w:rPr><w:b/></w:rPr><w:t>4111 </w:t></w:r><w:r><w:t xml:space="preserve">1111 1111 1111</w:t></w:r></w:p><w:p><w:r><w:t>Tom &amp; Jerry &#x41;&#66;</w:t></w:r></w:p></w:body>"#;
        let whole = strip(&[doc]);
        assert_eq!(whole, "\n4111 1111 1111 1111\n\nTom & Jerry AB\n");
        // Byte by byte, the same.
        let bytes: Vec<&[u8]> = doc.chunks(1).collect();
        assert_eq!(strip(&bytes), whole);
    }

    #[test]
    fn cdata_quoted_brackets_and_long_entities_keep_their_text() {
        let doc: &[u8] = br#"<a t="x > y"><![CDATA[4111 1111]]></a><b>&#00000000000052;]]</b>"#;
        assert_eq!(strip(&[doc]), "4111 1111\u{0}4]]".replace('\u{0}', ""));
        let bytes: Vec<&[u8]> = doc.chunks(1).collect();
        assert_eq!(strip(&bytes), strip(&[doc]));
    }

    #[test]
    fn cells_break() {
        let sheet = br#"<row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1"><v>4111111111111111</v></c></row>"#;
        let text = strip(&[sheet]);
        assert_eq!(
            text.split_whitespace().collect::<Vec<_>>(),
            ["0", "4111111111111111"]
        );
    }
}
