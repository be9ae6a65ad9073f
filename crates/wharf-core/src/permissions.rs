//! Path-rule permissions: what an account may do where.
//!
//! A rule is a pattern on the client-visible path plus the verbs it allows and the verbs it
//! denies. Rules are evaluated in order (the account's own rules first, then each group's in
//! the account's group order); the **first rule whose pattern matches and which names the
//! verb** decides. A path and verb that no rule names is denied.
//!
//! So `{ pattern = 're:\.(exe|js)$', deny = ["write"] }` followed by
//! `{ pattern = "/**", allow = ["all"] }` lets a partner do everything except upload
//! executables: reading an `.exe` is not decided by the first rule (it does not name
//! `read`), and falls through to the second.
//!
//! Patterns: `re:` followed by a regular expression (unanchored, matched against the whole
//! virtual path such as `/in/a.exe`), or a glob where `*` stays within one name and `**`
//! crosses folders. A glob that does not start with `/` matches at any depth (`*.txt` is
//! `**/*.txt`). Both engines match in linear time, so a hostile path cannot stall a check.

use globset::{Glob, GlobBuilder, GlobMatcher};
use regex::Regex;
use wharf_types::{Verb, VirtualPath};

/// A rule's pattern or verb list was refused.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct RuleError(pub String);

/// The decision a rule gives for a verb it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// The operation may proceed.
    Allow,
    /// The operation is refused.
    Deny,
}

/// The written form of a rule, as stored and as written in TOML.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// A glob, or `re:` followed by a regular expression.
    pub pattern: String,
    /// Verbs this rule allows (`all` for every verb).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// Verbs this rule denies (`all` for every verb). Deny wins over allow in one rule.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

impl Rule {
    /// A rule that allows every verb under `/`.
    pub fn allow_all() -> Rule {
        Rule {
            pattern: "/**".to_owned(),
            allow: vec!["all".to_owned()],
            deny: Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
enum Matcher {
    Glob(GlobMatcher),
    Regex(Regex),
}

impl Matcher {
    fn is_match(&self, path: &str) -> bool {
        match self {
            Matcher::Glob(g) => g.is_match(path),
            Matcher::Regex(r) => r.is_match(path),
        }
    }
}

#[derive(Debug, Clone)]
struct CompiledRule {
    matcher: Matcher,
    allow: u16,
    deny: u16,
    /// Where the rule can match, for deciding whether a folder may move (see
    /// [`RuleSet::alike_beneath`]).
    reach: Reach,
}

/// What is known of the paths a pattern can match, without trying them all.
#[derive(Debug, Clone)]
enum Reach {
    /// A glob: it only matches paths starting with `prefix` (its text up to the first
    /// wildcard); `uniform` when what follows is `**` or `**/NAME` (NAME without `/` or
    /// `**`), so below `prefix` it matches a path or not by its last name alone.
    Glob { prefix: String, uniform: bool },
    /// A regular expression that cannot match `/` and must end at the end of the path: it
    /// matches a path or not by its last name alone.
    LastName,
    /// Anything else: where it matches cannot be told in advance.
    Unknown,
}

impl Reach {
    fn of(pattern: &str) -> Reach {
        if let Some(re) = pattern.strip_prefix("re:") {
            return match regex_syntax::parse(re) {
                Ok(hir)
                    if !can_match_slash(&hir)
                        && hir
                            .properties()
                            .look_set_suffix()
                            .contains(regex_syntax::hir::Look::End) =>
                {
                    Reach::LastName
                }
                _ => Reach::Unknown,
            };
        }
        let anchored = anchor(pattern);
        let end = anchored
            .find(['*', '?', '[', '{', '\\'])
            .unwrap_or(anchored.len());
        let (prefix, rest) = anchored.split_at(end);
        let uniform = rest == "**"
            || rest
                .strip_prefix("**/")
                .is_some_and(|name| !name.contains('/') && !name.contains("**"));
        Reach::Glob {
            prefix: prefix.to_owned(),
            uniform,
        }
    }

    /// Whether the pattern decides alike at `a + s` and `b + s` for every non-empty `s`.
    fn alike_beneath(&self, a: &str, b: &str) -> bool {
        match self {
            Reach::LastName => true,
            Reach::Unknown => false,
            Reach::Glob { prefix, uniform } => {
                let under = |x: &str| {
                    let x = format!("{}/", x.trim_end_matches('/'));
                    (
                        x.starts_with(prefix.as_str()),
                        prefix.starts_with(x.as_str()),
                    )
                };
                let (a_in, a_over) = under(a);
                let (b_in, b_over) = under(b);
                let reaches_a = a_in || a_over;
                let reaches_b = b_in || b_over;
                if !reaches_a && !reaches_b {
                    return true;
                }
                // Above both, and past its prefix it looks at the last name only.
                a_in && b_in && *uniform
            }
        }
    }
}

/// Whether a regular expression can match a `/` anywhere (then it can look at folders).
fn can_match_slash(hir: &regex_syntax::hir::Hir) -> bool {
    use regex_syntax::hir::{Class, HirKind};
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => false,
        HirKind::Literal(literal) => literal.0.contains(&b'/'),
        HirKind::Class(Class::Unicode(class)) => class
            .ranges()
            .iter()
            .any(|r| r.start() <= '/' && '/' <= r.end()),
        HirKind::Class(Class::Bytes(class)) => class
            .ranges()
            .iter()
            .any(|r| r.start() <= b'/' && b'/' <= r.end()),
        HirKind::Repetition(rep) => can_match_slash(&rep.sub),
        HirKind::Capture(cap) => can_match_slash(&cap.sub),
        HirKind::Concat(all) | HirKind::Alternation(all) => all.iter().any(can_match_slash),
    }
}

/// A glob as it is matched: one that does not start with `/` matches at any depth.
fn anchor(pattern: &str) -> String {
    if pattern.starts_with('/') {
        pattern.to_owned()
    } else {
        format!("/**/{pattern}")
    }
}

/// Rules compiled for evaluation. Two sets are equal when they were compiled from the
/// same rules, written the same way, in the same order.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<CompiledRule>,
    /// The rules as written, in order: what the set is compared by.
    source: Vec<Rule>,
}

impl PartialEq for RuleSet {
    fn eq(&self, other: &RuleSet) -> bool {
        self.source == other.source
    }
}

impl Eq for RuleSet {}

fn verb_bit(verb: Verb) -> u16 {
    let index = Verb::ALL.iter().position(|v| *v == verb).unwrap_or(0);
    1 << index
}

fn parse_verbs(names: &[String]) -> Result<u16, RuleError> {
    let mut bits = 0;
    for name in names {
        if name == "all" || name == "*" {
            bits |= (1 << Verb::ALL.len()) - 1;
        } else {
            let verb: Verb = name.parse().map_err(|e| RuleError(format!("{e}")))?;
            bits |= verb_bit(verb);
        }
    }
    Ok(bits)
}

/// A path pattern with the rules' syntax (a glob, or `re:` and a regular expression), for
/// whoever else matches client-visible paths the way permission rules do (event handlers).
#[derive(Debug, Clone)]
pub struct PathPattern(Matcher);

impl PathPattern {
    /// Compiles `pattern`.
    pub fn new(pattern: &str) -> Result<PathPattern, RuleError> {
        compile_pattern(pattern).map(PathPattern)
    }

    /// Whether the client-visible `path` matches.
    pub fn is_match(&self, path: &str) -> bool {
        self.0.is_match(path)
    }
}

/// Compiles one pattern; exposed so configuration checks can report errors early.
fn compile_pattern(pattern: &str) -> Result<Matcher, RuleError> {
    if pattern.len() > 1024 {
        return Err(RuleError("pattern longer than 1024 characters".to_owned()));
    }
    if let Some(re) = pattern.strip_prefix("re:") {
        let regex = regex::RegexBuilder::new(re)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| RuleError(format!("invalid regular expression {re:?}: {e}")))?;
        return Ok(Matcher::Regex(regex));
    }
    if pattern.is_empty() {
        return Err(RuleError("empty pattern".to_owned()));
    }
    let anchored = anchor(pattern);
    let glob: Glob = GlobBuilder::new(&anchored)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| RuleError(format!("invalid glob {pattern:?}: {e}")))?;
    Ok(Matcher::Glob(glob.compile_matcher()))
}

impl RuleSet {
    /// Compiles `rules` in order.
    pub fn compile<'a>(rules: impl IntoIterator<Item = &'a Rule>) -> Result<RuleSet, RuleError> {
        let mut compiled = Vec::new();
        let mut source = Vec::new();
        for rule in rules {
            let matcher = compile_pattern(&rule.pattern)?;
            let allow = parse_verbs(&rule.allow)?;
            let deny = parse_verbs(&rule.deny)?;
            if allow == 0 && deny == 0 {
                return Err(RuleError(format!(
                    "rule {:?} names no verb in allow or deny",
                    rule.pattern
                )));
            }
            compiled.push(CompiledRule {
                matcher,
                allow,
                deny,
                reach: Reach::of(&rule.pattern),
            });
            source.push(rule.clone());
        }
        Ok(RuleSet {
            rules: compiled,
            source,
        })
    }

    /// The rules as written, in the order they were compiled: what a set is compared by,
    /// so a caller can tell whether written rules would compile to this set without
    /// compiling them.
    pub fn source(&self) -> &[Rule] {
        &self.source
    }

    /// Checks one rule's written form without keeping it.
    pub fn validate(rule: &Rule) -> Result<(), RuleError> {
        RuleSet::compile(std::iter::once(rule)).map(|_| ())
    }

    /// The decision for `verb` on `path`: the first rule that matches and names the verb.
    pub fn decide(&self, verb: Verb, path: &VirtualPath) -> Effect {
        self.explain(verb, path).0
    }

    /// The decision for `verb` on `path` and the position (in [`RuleSet::source`]) of the
    /// rule that gave it; `None`: no rule named the verb there, so the default refused it.
    pub fn explain(&self, verb: Verb, path: &VirtualPath) -> (Effect, Option<usize>) {
        let bit = verb_bit(verb);
        let text = path.as_str();
        for (position, rule) in self.rules.iter().enumerate() {
            if (rule.allow | rule.deny) & bit == 0 {
                continue;
            }
            if rule.matcher.is_match(text) {
                let effect = if rule.deny & bit != 0 {
                    Effect::Deny
                } else {
                    Effect::Allow
                };
                return (effect, Some(position));
            }
        }
        (Effect::Deny, None)
    }

    /// True when `verb` is allowed on `path`.
    pub fn allows(&self, verb: Verb, path: &VirtualPath) -> bool {
        self.decide(verb, path) == Effect::Allow
    }

    /// A verb allowed at `to` that is refused at `from`, if any: what an entry would gain
    /// by being reached under `to` instead (a rename, a hard link).
    pub fn gained(&self, from: &VirtualPath, to: &VirtualPath, verbs: &[Verb]) -> Option<Verb> {
        verbs
            .iter()
            .copied()
            .find(|&verb| self.allows(verb, to) && !self.allows(verb, from))
    }

    /// Whether every rule decides alike for every path beneath folder `a` and the same path
    /// beneath folder `b`, so that moving a folder from `a` to `b` changes no right on
    /// anything inside it. Conservative: a rule whose reach cannot be told (a regular
    /// expression that can look at folders, a glob with folders after a wildcard) that
    /// could match beneath either makes the answer no.
    pub fn alike_beneath(&self, a: &VirtualPath, b: &VirtualPath) -> bool {
        self.rules
            .iter()
            .all(|rule| rule.reach.alike_beneath(a.as_str(), b.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(pattern: &str, allow: &[&str], deny: &[&str]) -> Rule {
        Rule {
            pattern: pattern.to_owned(),
            allow: allow.iter().map(|s| s.to_string()).collect(),
            deny: deny.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn p(s: &str) -> VirtualPath {
        VirtualPath::parse(s).unwrap()
    }

    #[test]
    fn default_is_deny() {
        let rules = RuleSet::compile(&[]).unwrap();
        assert!(!rules.allows(Verb::Read, &p("/a")));
    }

    #[test]
    fn regex_deny_falls_through_for_other_verbs() {
        let rules = [
            rule(r"re:\.(exe|js)$", &[], &["write", "overwrite"]),
            rule("/**", &["all"], &[]),
        ];
        let set = RuleSet::compile(&rules).unwrap();
        assert!(!set.allows(Verb::Write, &p("/in/tool.exe")));
        assert!(set.allows(Verb::Read, &p("/in/tool.exe")));
        assert!(set.allows(Verb::Write, &p("/in/tool.txt")));
        assert!(set.allows(Verb::Write, &p("/in/tool.exe.txt")));
    }

    #[test]
    fn read_only_group() {
        let set = RuleSet::compile(&[rule("/**", &["list", "read"], &[])]).unwrap();
        assert!(set.allows(Verb::List, &p("/")));
        assert!(set.allows(Verb::Read, &p("/x/y")));
        assert!(!set.allows(Verb::Write, &p("/x/y")));
        assert!(!set.allows(Verb::Delete, &p("/x/y")));
    }

    #[test]
    fn globs_respect_separators() {
        let set = RuleSet::compile(&[
            rule("/outbox/*", &["read"], &[]),
            rule("*.log", &["delete"], &[]),
        ])
        .unwrap();
        assert!(set.allows(Verb::Read, &p("/outbox/a")));
        assert!(!set.allows(Verb::Read, &p("/outbox/sub/a")));
        assert!(set.allows(Verb::Delete, &p("/deep/er/x.log")));
        assert!(set.allows(Verb::Delete, &p("/x.log")));
    }

    #[test]
    fn a_folder_glob_names_what_is_inside_not_the_folder() {
        let set = RuleSet::compile(&[
            rule("/secret/**", &[], &["list"]),
            rule("/**", &["all"], &[]),
        ])
        .unwrap();
        assert!(set.allows(Verb::List, &p("/secret")));
        assert!(!set.allows(Verb::List, &p("/secret/s.txt")));
        assert!(!set.allows(Verb::List, &p("/secret/a/b")));
    }

    #[test]
    fn folders_move_only_where_the_rules_are_alike() {
        let set = RuleSet::compile(&[
            rule("/ro/**", &[], &["write", "delete"]),
            rule("/secret/**", &[], &["list", "read"]),
            rule(r"re:\.(exe|js)$", &[], &["write"]),
            rule("*.tmp", &[], &["read"]),
            rule("/in", &["list"], &[]),
            rule("/**", &["all"], &[]),
        ])
        .unwrap();
        assert!(set.alike_beneath(&p("/rw/a"), &p("/rw/b")));
        assert!(set.alike_beneath(&p("/a"), &p("/b/c")));
        assert!(!set.alike_beneath(&p("/ro"), &p("/x")));
        assert!(!set.alike_beneath(&p("/x"), &p("/ro")));
        assert!(!set.alike_beneath(&p("/secret"), &p("/s2")));
        assert!(!set.alike_beneath(&p("/a"), &p("/ro/a")));
        assert!(!set.alike_beneath(&p("/"), &p("/x")));
        // A regular expression that can look at folders could decide anything.
        let folders = RuleSet::compile(&[
            rule("re:^/ro/", &[], &["write"]),
            rule("/**", &["all"], &[]),
        ])
        .unwrap();
        assert!(!folders.alike_beneath(&p("/a"), &p("/b")));
        let any = RuleSet::compile(&[rule(r"re:o.*\.exe$", &[], &["write"])]).unwrap();
        assert!(!any.alike_beneath(&p("/ro"), &p("/x")));
        assert_eq!(
            set.gained(&p("/secret/s.txt"), &p("/s.txt"), &Verb::ALL),
            Some(Verb::List)
        );
        assert_eq!(set.gained(&p("/rw/a"), &p("/ro/a"), &Verb::ALL), None);
    }

    #[test]
    fn bad_rules_are_reported() {
        assert!(RuleSet::compile(&[rule("re:(", &["read"], &[])]).is_err());
        assert!(RuleSet::compile(&[rule("/x", &["fly"], &[])]).is_err());
        assert!(RuleSet::compile(&[rule("/x", &[], &[])]).is_err());
    }

    #[test]
    fn pathological_pattern_is_linear() {
        let pattern = format!("re:{}b", "a*".repeat(40));
        let set = RuleSet::compile(&[rule(&pattern, &["read"], &[])]).unwrap();
        let path = p(&format!("/{}", "a".repeat(200)));
        let start = std::time::Instant::now();
        assert!(!set.allows(Verb::Read, &path));
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
    }
}
