//! The rules run over a stream of text in bounded memory: a window of at most
//! [`CHUNK`] + [`MAX_MATCH`] bytes slides over the stream, and a match counts once.
//!
//! A match is taken only when it starts early enough in the window that the window holds
//! [`MAX_MATCH`] bytes after its start (or the stream has ended), so a match cut by the
//! window's end is seen whole in the next window instead; each rule remembers where its
//! last match ended, so nothing is counted twice. A few bytes before the window are kept
//! too, so a word boundary at its start is judged as in the whole text.

use super::rules::{Judged, MAX_MATCH, Rule, whole_word};

/// Bytes added to the window before it is searched.
pub const CHUNK: usize = 64 * 1024;

/// Bytes kept before the searched part, for look-behind such as `\b`.
const CONTEXT: usize = 16;

/// Counts the matches of each rule in one stream.
pub struct Scanner<'r> {
    rules: &'r [Rule],
    window: Vec<u8>,
    /// The stream offset of `window[0]`.
    base: u64,
    /// Per rule: no match may start before this stream offset.
    next: Vec<u64>,
    counts: Vec<u64>,
}

impl<'r> Scanner<'r> {
    /// A scanner for `rules`, counting from zero.
    pub fn new(rules: &'r [Rule]) -> Scanner<'r> {
        Scanner {
            rules,
            window: Vec::with_capacity(CHUNK + MAX_MATCH + CONTEXT),
            base: 0,
            next: vec![0; rules.len()],
            counts: vec![0; rules.len()],
        }
    }

    /// Adds bytes of the stream.
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let room = (CHUNK + MAX_MATCH + CONTEXT).saturating_sub(self.window.len());
            let take = room.min(data.len());
            self.window.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.window.len() >= CHUNK + MAX_MATCH + CONTEXT {
                self.search(false);
            }
        }
    }

    /// Ends the stream (what is left is searched to its end) and starts a new one: matches
    /// never span two streams (two files of an archive).
    pub fn end_stream(&mut self) {
        self.search(true);
        self.window.clear();
        self.base = 0;
        self.next.iter_mut().for_each(|n| *n = 0);
    }

    /// A scanner for the same rules, from zero: for a stream read beside this one (the
    /// attribute values of an XML part), whose counts [`Scanner::absorb`] adds.
    pub fn beside(&self) -> Scanner<'r> {
        Scanner::new(self.rules)
    }

    /// Adds `other`'s counts to this scanner's.
    pub fn absorb(&mut self, other: &Scanner<'_>) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts()) {
            *mine += theirs;
        }
    }

    /// The counts so far, rule by rule.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    fn search(&mut self, last: bool) {
        let len = self.window.len();
        let limit = if last {
            len
        } else {
            len.saturating_sub(MAX_MATCH)
        };
        for (i, rule) in self.rules.iter().enumerate() {
            let regex = rule.detector.regex();
            let mut at = usize::try_from(self.next[i].saturating_sub(self.base)).unwrap_or(len);
            while at < limit {
                let Some(m) = regex.find_at(&self.window, at) else {
                    break;
                };
                if m.start() >= limit {
                    break;
                }
                let m = if rule.detector.whole_words() {
                    match whole_word_at(regex, &self.window, m) {
                        Some(m) => m,
                        None => {
                            at = m.start() + 1;
                            continue;
                        }
                    }
                } else {
                    m
                };
                // An empty match moves on by one byte.
                at = match rule.detector.judge(m.as_bytes()) {
                    Judged::Valid(end) => {
                        self.counts[i] += 1;
                        m.start() + end.max(1)
                    }
                    Judged::Invalid(next) => m.start() + next.max(1),
                };
            }
            self.next[i] = self.base + at.max(limit) as u64;
        }
        if last {
            return;
        }
        let drop = limit.saturating_sub(CONTEXT);
        self.window.drain(..drop);
        self.base += drop as u64;
    }
}

/// The longest match at `m`'s start that is a whole word (`m` itself, or a shorter
/// alternative: "new" in "new yorkers" when the dictionary holds "new york" too).
fn whole_word_at<'h>(
    regex: &regex::bytes::Regex,
    window: &'h [u8],
    m: regex::bytes::Match<'h>,
) -> Option<regex::bytes::Match<'h>> {
    let start = m.start();
    let mut m = m;
    loop {
        if whole_word(window, start, m.end()) {
            return Some(m);
        }
        if m.end() <= start + 1 {
            return None;
        }
        // Words are at most a few hundred bytes: this ends quickly.
        m = regex
            .find_at(&window[..m.end() - 1], start)
            .filter(|shorter| shorter.start() == start)?;
    }
}

#[cfg(test)]
mod tests {
    use super::super::rules::{Builtin, Detector, Outcome};
    use super::*;

    fn rules() -> Vec<Rule> {
        vec![
            Rule {
                name: "cards".into(),
                detector: Detector::builtin(Builtin::CardNumber),
                min_matches: 1,
                outcome: Outcome::Quarantine,
            },
            Rule {
                name: "code".into(),
                detector: Detector::pattern("PRJ-[0-9]{4}").expect("pattern"),
                min_matches: 1,
                outcome: Outcome::Tag,
            },
        ]
    }

    /// Every feeding of the same text counts the same, however it is cut.
    #[test]
    fn matches_across_windows_count_once() {
        let mut text = Vec::new();
        let mut expected = 0;
        for i in 0..40_000u32 {
            text.extend_from_slice(format!("row {i};").as_bytes());
            if i % 97 == 0 {
                text.extend_from_slice(b"4111 1111 1111 1111;PRJ-1234;");
                expected += 1;
            }
        }
        assert!(text.len() > 3 * CHUNK);
        let rules = rules();
        for piece in [1, 7, 4096, CHUNK - 3, CHUNK + 1, text.len()] {
            let mut scanner = Scanner::new(&rules);
            for part in text.chunks(piece) {
                scanner.feed(part);
            }
            scanner.end_stream();
            assert_eq!(scanner.counts(), [expected, expected], "fed by {piece}");
        }
    }

    #[test]
    fn dictionary_words_count_whole_in_any_script() {
        let rules = vec![Rule {
            name: "words".into(),
            detector: Detector::words("merger\nnew\nnew york\nréservé\n").expect("words"),
            min_matches: 1,
            outcome: Outcome::Tag,
        }];
        let mut scanner = Scanner::new(&rules);
        scanner
            .feed("Merger; mergers, émerger, new yorkers, New York, réservé, réservés".as_bytes());
        scanner.end_stream();
        // Merger, new (in "new yorkers"), New York, réservé.
        assert_eq!(scanner.counts(), [4]);
    }

    /// Thousands of words over non-ASCII text stay fast (no Unicode `\b`).
    #[test]
    fn a_large_dictionary_over_utf8_text_is_quick() {
        let words: String = (0..20_000).map(|i| format!("mot{i}x\n")).collect();
        let rules = vec![Rule {
            name: "words".into(),
            detector: Detector::words(&words).expect("words"),
            min_matches: 1,
            outcome: Outcome::Tag,
        }];
        let text = "été à Zürich — ".repeat(256 * 1024 / 18);
        // With a Unicode word boundary this took 49 s; it now takes milliseconds.
        let mut scanner = Scanner::new(&rules);
        scanner.feed(text.as_bytes());
        scanner.feed(b" mot19999x ");
        scanner.end_stream();
        assert_eq!(scanner.counts(), [1]);
    }

    #[test]
    fn streams_do_not_join() {
        let rules = rules();
        let mut scanner = Scanner::new(&rules);
        scanner.feed(b"4111 1111 ");
        scanner.end_stream();
        scanner.feed(b"1111 1111");
        scanner.end_stream();
        assert_eq!(scanner.counts(), [0, 0]);
    }
}
