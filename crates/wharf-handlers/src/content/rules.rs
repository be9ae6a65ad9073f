//! What a `content-check` looks for: its rules, and the built-in detectors that check a
//! candidate's own checksum (Luhn for payment cards, ISO 13616 for IBANs, the national
//! identifiers' check digits), so a number that merely looks like one is not counted.
//!
//! Matching is on bytes, so text in any ASCII-compatible encoding is seen; what a rule
//! matched is counted, never kept.

use regex::bytes::Regex;

/// A match longer than this is not guaranteed to be seen whole (the scanner keeps this
/// much of the previous window).
pub const MAX_MATCH: usize = 1024;

/// A built-in detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    /// Payment card numbers (13 to 19 digits, spaces or dashes allowed, Luhn-checked).
    CardNumber,
    /// International bank account numbers (ISO 13616, mod-97 checked).
    Iban,
    /// Spanish DNI and NIE (check letter).
    EsDni,
    /// French social security numbers (NIR, key mod 97).
    FrNir,
    /// Dutch citizen service numbers (BSN, eleven test).
    NlBsn,
}

impl Builtin {
    /// Every detector with its configuration name.
    pub const ALL: &'static [(&'static str, Builtin)] = &[
        ("card-number", Builtin::CardNumber),
        ("iban", Builtin::Iban),
        ("es-dni", Builtin::EsDni),
        ("fr-nir", Builtin::FrNir),
        ("nl-bsn", Builtin::NlBsn),
    ];

    /// The detector of this configuration name.
    pub fn parse(name: &str) -> Option<Builtin> {
        Builtin::ALL
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, b)| *b)
    }

    /// The candidates' shape; [`Builtin::accepts`] checks each one.
    fn pattern(self) -> &'static str {
        match self {
            Builtin::CardNumber => r"(?-u)\b[2-6](?:[ -]?[0-9]){12,18}\b",
            Builtin::Iban => r"(?-u)\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}\b",
            Builtin::EsDni => r"(?-u)\b[0-9XYZxyz][0-9]{7}[ -]?[A-Za-z]\b",
            Builtin::FrNir => {
                r"(?-u)\b[12378] ?[0-9]{2} ?[0-9]{2} ?(?:[0-9]{2}|2[ABab]) ?[0-9]{3} ?[0-9]{3} ?[0-9]{2}\b"
            }
            Builtin::NlBsn => r"(?-u)\b[0-9]{9}\b",
        }
    }

    /// Whether a candidate passes the detector's checksum.
    fn accepts(self, candidate: &[u8]) -> bool {
        let kept: Vec<u8> = candidate
            .iter()
            .copied()
            .filter(|b| !matches!(b, b' ' | b'-'))
            .collect();
        match self {
            Builtin::CardNumber => (13..=19).contains(&kept.len()) && luhn(&kept),
            Builtin::Iban => iban(&kept),
            Builtin::EsDni => es_dni(&kept),
            Builtin::FrNir => fr_nir(&kept),
            Builtin::NlBsn => nl_bsn(&kept),
        }
    }
}

fn digit(b: u8) -> Option<u32> {
    b.is_ascii_digit().then(|| u32::from(b - b'0'))
}

/// The Luhn check of a string of ASCII digits.
pub fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0;
    for (i, b) in digits.iter().rev().enumerate() {
        let Some(mut d) = digit(*b) else {
            return false;
        };
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    !digits.is_empty() && sum % 10 == 0
}

/// The ISO 13616 check: the country and check digits moved to the end, letters as
/// 10 to 35, the whole number mod 97 is 1.
pub fn iban(text: &[u8]) -> bool {
    if !(15..=34).contains(&text.len()) || !text.iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    let (head, tail) = text.split_at(4);
    let mut rest = 0u32;
    for b in tail.iter().chain(head) {
        let b = b.to_ascii_uppercase();
        let value = if b.is_ascii_digit() {
            u32::from(b - b'0')
        } else {
            u32::from(b - b'A') + 10
        };
        rest = if value < 10 {
            (rest * 10 + value) % 97
        } else {
            (rest * 100 + value) % 97
        };
    }
    rest == 1
}

fn es_dni(text: &[u8]) -> bool {
    const LETTERS: &[u8; 23] = b"TRWAGMYFPDXBNJZSQVHLCKE";
    let [first, middle @ .., letter] = text else {
        return false;
    };
    if middle.len() != 7 {
        return false;
    }
    let lead = match first.to_ascii_uppercase() {
        b'X' => 0,
        b'Y' => 1,
        b'Z' => 2,
        b => match digit(b) {
            Some(d) => d,
            None => return false,
        },
    };
    let mut number = lead;
    for b in middle {
        let Some(d) = digit(*b) else { return false };
        number = number * 10 + d;
    }
    LETTERS[(number % 23) as usize] == letter.to_ascii_uppercase()
}

fn fr_nir(text: &[u8]) -> bool {
    if text.len() != 15 {
        return false;
    }
    // Corsica's departments 2A and 2B count as 19 and 18 less a million and two million.
    let (body, key) = text.split_at(13);
    let mut number: u64 = 0;
    let mut correction: u64 = 0;
    for (i, b) in body.iter().enumerate() {
        let d = match (i, b.to_ascii_uppercase()) {
            (6, b'A') => {
                correction = 1_000_000;
                0
            }
            (6, b'B') => {
                correction = 2_000_000;
                0
            }
            (_, b) => match digit(b) {
                Some(d) => u64::from(d),
                None => return false,
            },
        };
        number = number * 10 + d;
    }
    let Some(number) = number.checked_sub(correction) else {
        return false;
    };
    let (Some(k1), Some(k2)) = (digit(key[0]), digit(key[1])) else {
        return false;
    };
    u64::from(k1 * 10 + k2) == 97 - number % 97
}

fn nl_bsn(text: &[u8]) -> bool {
    if text.len() != 9 || text.iter().all(|b| *b == b'0') {
        return false;
    }
    let mut sum: i64 = 0;
    for (i, b) in text.iter().enumerate() {
        let Some(d) = digit(*b) else { return false };
        let weight = if i == 8 { -1 } else { 9 - i as i64 };
        sum += weight * i64::from(d);
    }
    sum % 11 == 0
}

/// What a rule looks for.
pub enum Detector {
    /// A built-in detector (a shape, then its checksum).
    Builtin(Builtin, Regex),
    /// An administrator's regular expression.
    Pattern(Regex),
    /// Words from a dictionary, in any case (one expression of alternatives, longest
    /// first); the scanner takes a match only as a whole word (see [`whole_word`]).
    Words(Regex),
}

impl Detector {
    /// The detector of a built-in.
    pub fn builtin(builtin: Builtin) -> Detector {
        // The patterns are constants, tested below.
        let regex = Regex::new(builtin.pattern()).unwrap_or_else(|_| never_matches());
        Detector::Builtin(builtin, regex)
    }

    /// A detector from an administrator's regular expression (bytes, Unicode classes on).
    pub fn pattern(text: &str) -> Result<Detector, regex::Error> {
        bounded(regex::bytes::RegexBuilder::new(text)).map(Detector::Pattern)
    }

    /// A detector for dictionary words: one word or phrase a line, `#` starts a comment.
    ///
    /// The expression has no `\b`: a Unicode word boundary makes the regex engine leave
    /// its fast automaton for a slow one on any non-ASCII byte, which with thousands of
    /// words is seconds per 64 KiB. Word boundaries are checked on each match instead.
    pub fn words(text: &str) -> Result<Detector, String> {
        let mut words: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        if words.is_empty() {
            return Err("the dictionary holds no words".into());
        }
        if words.len() > MAX_WORDS {
            return Err(format!("the dictionary holds more than {MAX_WORDS} words"));
        }
        if let Some(long) = words.iter().find(|w| w.len() > MAX_WORD) {
            let start: String = long.chars().take(20).collect();
            return Err(format!(
                "a dictionary line is longer than {MAX_WORD} bytes (\"{start}...\")"
            ));
        }
        // Longest first: at one place, the longest word is tried before its prefixes.
        words.sort_by_key(|w| std::cmp::Reverse(w.len()));
        let words: Vec<String> = words.into_iter().map(regex::escape).collect();
        let text = format!(r"(?i)(?:{})", words.join("|"));
        bounded(regex::bytes::RegexBuilder::new(&text))
            .map(Detector::Words)
            .map_err(|e| e.to_string())
    }

    /// Whether a match counts only as a whole word.
    pub(crate) fn whole_words(&self) -> bool {
        matches!(self, Detector::Words(_))
    }

    pub(crate) fn regex(&self) -> &Regex {
        match self {
            Detector::Builtin(_, r) | Detector::Pattern(r) | Detector::Words(r) => r,
        }
    }

    #[cfg(test)]
    pub(crate) fn accepts(&self, candidate: &[u8]) -> bool {
        matches!(self.judge(candidate), Judged::Valid(_))
    }

    /// Whether `candidate` (a match of the detector's shape) holds a valid number.
    ///
    /// The shapes are greedy: a card followed by its expiry date (`4111 1111 1111 1111
    /// 12/27`), or an IBAN followed by a word (`... 7654 32 BIC`), is one longer candidate
    /// that fails its checksum. So the candidate is also tried shortened to each earlier
    /// group boundary (longest first); and when none is valid, the search goes on from its
    /// second group, so a number that starts inside it (`2024-01-15 4111 1111 ...`) is
    /// still found.
    pub(crate) fn judge(&self, candidate: &[u8]) -> Judged {
        let builtin = match self {
            Detector::Builtin(b, _) => *b,
            Detector::Pattern(_) | Detector::Words(_) => return Judged::Valid(candidate.len()),
        };
        if !matches!(builtin, Builtin::CardNumber | Builtin::Iban) {
            return if builtin.accepts(candidate) {
                Judged::Valid(candidate.len())
            } else {
                Judged::Invalid(candidate.len())
            };
        }
        // Group ends: where a separator follows, and the candidate's end.
        let mut ends: Vec<usize> = candidate
            .iter()
            .enumerate()
            .filter(|(_, b)| matches!(b, b' ' | b'-'))
            .map(|(i, _)| i)
            .collect();
        let second = ends.first().map_or(candidate.len(), |i| i + 1);
        ends.push(candidate.len());
        for end in ends.into_iter().rev() {
            if builtin.accepts(&candidate[..end]) {
                return Judged::Valid(end);
            }
        }
        Judged::Invalid(second)
    }
}

/// What a candidate held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Judged {
    /// A valid number in its first this-many bytes.
    Valid(usize),
    /// None; look again from this offset in it.
    Invalid(usize),
}

/// Dictionary words a rule may hold.
pub const MAX_WORDS: usize = 100_000;

/// Longest dictionary word or phrase, in bytes (well within [`MAX_MATCH`]).
const MAX_WORD: usize = 256;

/// Whether `text[start..end]` stands as a whole word: no letter, digit or `_` (in UTF-8,
/// any script) right before or after it.
pub(crate) fn whole_word(text: &[u8], start: usize, end: usize) -> bool {
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let before = (start.saturating_sub(4)..start)
        .find_map(|i| std::str::from_utf8(&text[i..start]).ok())
        .and_then(|s| s.chars().next_back());
    let after = (end + 1..=(end + 4).min(text.len()))
        .find_map(|i| std::str::from_utf8(&text[end..i]).ok())
        .and_then(|s| s.chars().next());
    !before.is_some_and(is_word) && !after.is_some_and(is_word)
}

/// Compiled expressions are bounded so one rule cannot take the server's memory.
fn bounded(mut builder: regex::bytes::RegexBuilder) -> Result<Regex, regex::Error> {
    builder
        .size_limit(64 << 20)
        .dfa_size_limit(16 << 20)
        .build()
}

fn never_matches() -> Regex {
    #[allow(clippy::unwrap_used)]
    Regex::new(r"[^\x00-\x{10FFFF}]").unwrap()
}

/// What a rule's match does to the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Tag it (an extended attribute, and `attrs.tags` in the event) and let it be.
    Tag,
    /// Move it to quarantine.
    Quarantine,
    /// Remove it.
    Deny,
}

impl Outcome {
    /// The configuration word.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Tag => "tag",
            Outcome::Quarantine => "quarantine",
            Outcome::Deny => "deny",
        }
    }

    /// The outcome of a configuration word.
    pub fn parse(word: &str) -> Option<Outcome> {
        [Outcome::Tag, Outcome::Quarantine, Outcome::Deny]
            .into_iter()
            .find(|o| o.as_str() == word)
    }
}

/// One `[[handler.content-check.rule]]`.
pub struct Rule {
    /// Its name: the tag it gives, and what events say matched.
    pub name: String,
    /// What it looks for.
    pub detector: Detector,
    /// Matches needed before the rule counts as matched.
    pub min_matches: u64,
    /// What a match does.
    pub outcome: Outcome,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(b: Builtin, text: &str) -> Vec<String> {
        let d = Detector::builtin(b);
        d.regex()
            .find_iter(text.as_bytes())
            .filter(|m| d.accepts(m.as_bytes()))
            .map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned())
            .collect()
    }

    #[test]
    fn card_numbers_are_luhn_checked() {
        assert_eq!(
            found(
                Builtin::CardNumber,
                "visa 4111 1111 1111 1111, mc 5500-0000-0000-0004; amex 340000000000009"
            ),
            [
                "4111 1111 1111 1111",
                "5500-0000-0000-0004",
                "340000000000009"
            ]
        );
        assert!(
            found(
                Builtin::CardNumber,
                "4111 1111 1111 1112 and 1234567890123456"
            )
            .is_empty()
        );
        // Longer digit runs (an account number, a timestamp in ns) are not cut into cards.
        assert!(found(Builtin::CardNumber, "41111111111111110000000").is_empty());
    }

    /// Every valid number in `text`, as the scanner finds them.
    fn all(b: Builtin, text: &str) -> Vec<String> {
        let d = Detector::builtin(b);
        let bytes = text.as_bytes();
        let mut found = Vec::new();
        let mut at = 0;
        while let Some(m) = d.regex().find_at(bytes, at) {
            match d.judge(m.as_bytes()) {
                Judged::Valid(end) => {
                    found.push(text[m.start()..m.start() + end].to_owned());
                    at = m.start() + end;
                }
                Judged::Invalid(next) => at = m.start() + next.max(1),
            }
        }
        found
    }

    #[test]
    fn numbers_beside_other_numbers_are_found() {
        for text in [
            "card 4111 1111 1111 1111 12/27",
            "card 4111 1111 1111 1111 123",
            "2024-01-15 4111 1111 1111 1111",
            "qty 5 4111 1111 1111 1111",
        ] {
            assert_eq!(
                all(Builtin::CardNumber, text),
                ["4111 1111 1111 1111"],
                "{text}"
            );
        }
        for text in [
            "IBAN GB82 WEST 1234 5698 7654 32 BIC NWBKGB2L",
            "IBAN: GB82 WEST 1234 5698 7654 32 EUR",
        ] {
            assert_eq!(
                all(Builtin::Iban, text),
                ["GB82 WEST 1234 5698 7654 32"],
                "{text}"
            );
        }
        assert!(all(Builtin::CardNumber, "41111111111111110000000").is_empty());
    }

    #[test]
    fn ibans_are_mod97_checked() {
        assert_eq!(
            found(
                Builtin::Iban,
                "pay GB82 WEST 1234 5698 7654 32 or DE89370400440532013000."
            ),
            ["GB82 WEST 1234 5698 7654 32", "DE89370400440532013000"]
        );
        assert!(found(Builtin::Iban, "GB82 WEST 1234 5698 7654 33").is_empty());
    }

    #[test]
    fn national_identifiers_have_their_check_digits() {
        assert_eq!(
            found(Builtin::EsDni, "dni 12345678Z, x 12345678A"),
            ["12345678Z"]
        );
        assert_eq!(found(Builtin::EsDni, "nie X1234567L"), ["X1234567L"]);
        assert_eq!(
            found(
                Builtin::FrNir,
                "nir 2 55 08 14 168 025 38 / 255081416802539"
            ),
            ["2 55 08 14 168 025 38"]
        );
        assert_eq!(
            found(Builtin::FrNir, "corse 1 78 05 2A 123 456 85"),
            ["1 78 05 2A 123 456 85"]
        );
        assert_eq!(
            found(Builtin::NlBsn, "bsn 111222333 or 111222334"),
            ["111222333"]
        );
    }

    #[test]
    fn dictionary_words_are_whole_and_any_case() {
        let d = Detector::words("# secrets\nProject Falcon\nmerger\n").expect("words");
        let text = "PROJECT FALCON and the Merger; mergers, émerger, «merger»".as_bytes();
        let found: Vec<String> = d
            .regex()
            .find_iter(text)
            .filter(|m| whole_word(text, m.start(), m.end()))
            .map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned())
            .collect();
        assert_eq!(found, ["PROJECT FALCON", "Merger", "merger"]);
        assert!(Detector::words("# nothing\n\n").is_err());
        assert!(Detector::words(&"x".repeat(300)).is_err());
    }
}
