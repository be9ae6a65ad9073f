//! `[handler.content-check]` and `[handler.antivirus]` in `wharf.toml`: the handler actions
//! that look inside files. Rules, dictionaries and limits are checked at load (a regular
//! expression that does not compile, a dictionary that cannot be read, a clamd address of
//! no known form), so a server never starts with a check it cannot run. It never scans a
//! file itself: wharf-handlers does.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;
use wharf_handlers::content::{Builtin, Detector, Limits, Outcome, Rule};
use wharf_handlers::{
    AntivirusAction, Clamd, ContentAction, WhenInfected, WhenUnreachable, WhenUnscannable,
};

use crate::config::Loaded;

/// A problem: where, which key, what.
type Problem = (Range<usize>, String, String);

/// `[handler.content-check]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContentSection {
    #[serde(default)]
    rule: Vec<ContentRuleSection>,
    #[serde(default)]
    unscannable: Option<Spanned<String>>,
    #[serde(default)]
    quarantine: Option<String>,
    #[serde(default)]
    max_bytes: Option<u64>,
    #[serde(default)]
    max_entries: Option<u64>,
    #[serde(default)]
    max_ratio: Option<u64>,
    #[serde(default)]
    max_depth: Option<u32>,
}

/// `[[handler.content-check.rule]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContentRuleSection {
    name: Spanned<String>,
    #[serde(default)]
    detect: Option<Spanned<String>>,
    #[serde(default)]
    regex: Option<Spanned<String>>,
    #[serde(default)]
    words: Option<Spanned<String>>,
    #[serde(default = "one")]
    min_matches: u64,
    #[serde(default)]
    action: Option<Spanned<String>>,
}

fn one() -> u64 {
    1
}

/// `[handler.antivirus]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AntivirusSection {
    clamd: Spanned<String>,
    #[serde(default)]
    infected: Option<Spanned<String>>,
    #[serde(default)]
    unreachable: Option<Spanned<String>>,
    #[serde(default)]
    quarantine: Option<String>,
}

/// A dictionary file larger than this is not a list of words.
const MAX_DICTIONARY: u64 = 4 << 20;

fn word<T: Copy>(
    value: &Option<Spanned<String>>,
    choices: &[(&str, T)],
    default: T,
    key: String,
) -> Result<T, Problem> {
    let Some(value) = value else {
        return Ok(default);
    };
    choices
        .iter()
        .find(|(w, _)| *w == value.get_ref())
        .map(|(_, t)| *t)
        .ok_or_else(|| {
            let names: Vec<String> = choices.iter().map(|(w, _)| format!("{w:?}")).collect();
            (value.span(), key, format!("use {}", names.join(" or ")))
        })
}

impl ContentRuleSection {
    fn build(&self, loaded: &Loaded, key: &dyn Fn(&str) -> String) -> Result<Rule, Problem> {
        let name = self.name.get_ref();
        if !crate::config::handler::plain_name(name) {
            return Err((
                self.name.span(),
                key("name"),
                "use 1 to 64 letters, digits, '-', '_' or '.' (the name is the file's tag)".into(),
            ));
        }
        let given = [&self.detect, &self.regex, &self.words];
        if given.iter().filter(|g| g.is_some()).count() != 1 {
            return Err((
                self.name.span(),
                key("detect"),
                "give exactly one of detect (a built-in detector), regex or words (a dictionary file)"
                    .into(),
            ));
        }
        let detector = if let Some(d) = &self.detect {
            let builtin = Builtin::parse(d.get_ref()).ok_or_else(|| {
                let names: Vec<String> =
                    Builtin::ALL.iter().map(|(n, _)| format!("{n:?}")).collect();
                (d.span(), key("detect"), format!("use {}", names.join(", ")))
            })?;
            Detector::builtin(builtin)
        } else if let Some(r) = &self.regex {
            Detector::pattern(r.get_ref()).map_err(|e| (r.span(), key("regex"), e.to_string()))?
        } else if let Some(w) = &self.words {
            let path = loaded.resolve(w.get_ref());
            let problem = |m: String| (w.span(), key("words"), m);
            let size = std::fs::metadata(&path)
                .map_err(|e| problem(format!("cannot read {}: {e}", path.display())))?
                .len();
            if size > MAX_DICTIONARY {
                return Err(problem(format!(
                    "{} is larger than {MAX_DICTIONARY} bytes",
                    path.display()
                )));
            }
            let text = std::fs::read_to_string(&path).map_err(|e| {
                problem(format!("cannot read {} as UTF-8 text: {e}", path.display()))
            })?;
            Detector::words(&text).map_err(|e| problem(format!("{}: {e}", path.display())))?
        } else {
            return Err((self.name.span(), key("detect"), "no detector".into()));
        };
        if self.min_matches == 0 {
            return Err((
                self.name.span(),
                key("min_matches"),
                "must be at least 1".into(),
            ));
        }
        let outcome = word(
            &self.action,
            &[
                ("tag", Outcome::Tag),
                ("quarantine", Outcome::Quarantine),
                ("deny", Outcome::Deny),
            ],
            Outcome::Quarantine,
            key("action"),
        )?;
        Ok(Rule {
            name: name.clone(),
            detector,
            min_matches: self.min_matches,
            outcome,
        })
    }
}

impl ContentSection {
    /// The action, or what is wrong with it; `span` points at the handler.
    pub fn build(
        &self,
        loaded: &Loaded,
        span: Range<usize>,
        key: &dyn Fn(&str) -> String,
        quarantine: PathBuf,
    ) -> Result<ContentAction, Problem> {
        let key = |k: &str| key(&format!("content-check.{k}"));
        let mut names = std::collections::HashSet::new();
        let mut rules = Vec::new();
        for (i, rule) in self.rule.iter().enumerate() {
            let key = |k: &str| key(&format!("rule[{i}].{k}"));
            if !names.insert(rule.name.get_ref().as_str()) {
                return Err((
                    rule.name.span(),
                    key("name"),
                    format!("duplicate rule name {:?}", rule.name.get_ref()),
                ));
            }
            rules.push(rule.build(loaded, &key)?);
        }
        if rules.is_empty() {
            return Err((
                span,
                key("rule"),
                "add [[handler.content-check.rule]] entries".into(),
            ));
        }
        let defaults = Limits::default();
        let limits = Limits {
            max_bytes: self.max_bytes.unwrap_or(defaults.max_bytes),
            max_entries: self.max_entries.unwrap_or(defaults.max_entries),
            max_ratio: self.max_ratio.unwrap_or(defaults.max_ratio),
            max_depth: self.max_depth.unwrap_or(defaults.max_depth),
            nested: defaults.nested,
        };
        if limits.max_bytes == 0 || limits.max_entries == 0 || limits.max_ratio == 0 {
            return Err((
                span,
                key("max_bytes"),
                "max_bytes, max_entries and max_ratio must be at least 1".into(),
            ));
        }
        if limits.max_depth > 8 {
            return Err((
                span,
                key("max_depth"),
                "give 0 to 8 levels of archives".into(),
            ));
        }
        Ok(ContentAction {
            rules: Arc::from(rules),
            limits,
            unscannable: word(
                &self.unscannable,
                &[
                    ("quarantine", WhenUnscannable::Quarantine),
                    ("pass", WhenUnscannable::Pass),
                ],
                WhenUnscannable::Quarantine,
                key("unscannable"),
            )?,
            quarantine,
            // PDF documents are read by this program in a process of its own, limited
            // (`wharf pdf-text`); the running executable, even if replaced on disk since.
            pdf: Some(wharf_handlers::content::PdfReader {
                program: "/proc/self/exe".into(),
                args: vec!["pdf-text".into()],
            }),
        })
    }

    /// The quarantine folder given, if any.
    pub fn quarantine(&self) -> &Option<String> {
        &self.quarantine
    }
}

impl AntivirusSection {
    /// The action, or what is wrong with it.
    pub fn build(
        &self,
        loaded: &Loaded,
        key: &dyn Fn(&str) -> String,
        quarantine: PathBuf,
    ) -> Result<AntivirusAction, Problem> {
        let key = |k: &str| key(&format!("antivirus.{k}"));
        let given = self.clamd.get_ref();
        let clamd = if let Some(path) = given.strip_prefix("unix:") {
            Clamd::Unix(loaded.resolve(path))
        } else if let Some(addr) = given.strip_prefix("tcp:")
            && addr
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
        {
            Clamd::Tcp(addr.to_owned())
        } else {
            return Err((
                self.clamd.span(),
                key("clamd"),
                "give \"unix:/run/clamav/clamd.ctl\" (clamd's LocalSocket) or \"tcp:HOST:PORT\" \
                 (its TCPSocket)"
                    .into(),
            ));
        };
        Ok(AntivirusAction {
            clamd,
            infected: word(
                &self.infected,
                &[
                    ("quarantine", WhenInfected::Quarantine),
                    ("delete", WhenInfected::Delete),
                ],
                WhenInfected::Quarantine,
                key("infected"),
            )?,
            unreachable: word(
                &self.unreachable,
                &[
                    ("hold", WhenUnreachable::Hold),
                    ("pass", WhenUnreachable::Pass),
                ],
                WhenUnreachable::Hold,
                key("unreachable"),
            )?,
            quarantine,
        })
    }

    /// The quarantine folder given, if any.
    pub fn quarantine(&self) -> &Option<String> {
        &self.quarantine
    }
}
