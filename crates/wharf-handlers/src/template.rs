//! `${VAR}` templates in handler destinations and program arguments.
//!
//! A template is checked when the configuration loads (unknown variables and unclosed
//! `${` are errors), and expanded per event into one string: in a program's argument list
//! each template stays one argument whatever its values hold, since no shell ever sees it.
//! Destination paths are checked after expansion: absolute, no `..`, no empty name, and a
//! value that is one name (`${USER}`, `${NAME}`...) cannot bring a `/` in.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// Variables a template may use, with what they hold.
pub const VARIABLES: &[(&str, &str)] = &[
    ("USER", "the account name"),
    (
        "GROUP",
        "the account's first group (`nogroup` when it has none)",
    ),
    ("NAME", "the file's name"),
    ("DATE", "the event's UTC date, YYYY-MM-DD"),
    ("TIME", "the event's UTC time, HHMMSS"),
    (
        "UUID",
        "a UUID fixed for this handler and event (the same on every retry)",
    ),
    ("HOME", "the account's home folder on the server"),
    ("FILE", "the file's path on the server"),
    ("PATH", "the file's path as the account sees it"),
    ("SHA256", "the file's SHA-256 from the event, if any"),
    ("EVENT", "the event's name"),
    ("SEQ", "the event's sequence number"),
    ("MESSAGE", "the event's message"),
    ("OUTCOME", "the event's outcome (`success` or `failure`)"),
    ("PROTOCOL", "the event's protocol"),
    ("REMOTE", "the client's address and port"),
    (
        "EMAIL",
        "the account's e-mail address (`email` handlers; empty when it has none)",
    ),
    (
        "GROUP_EMAIL",
        "the e-mail addresses of the account's groups, comma-separated (`email` handlers)",
    ),
];

/// Variables that hold a path; the others hold at most one name.
const PATH_VARIABLES: &[&str] = &["HOME", "FILE", "PATH"];

/// A template that failed its check, or an expansion that is not a safe path.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(pub String);

/// A checked template.
#[derive(Debug, Clone)]
pub struct Template {
    text: String,
}

enum Piece<'a> {
    Text(&'a str),
    Var(&'a str),
}

fn pieces(text: &str) -> Result<Vec<Piece<'_>>, TemplateError> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        if start > 0 {
            out.push(Piece::Text(&rest[..start]));
        }
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| TemplateError(format!("{text:?}: `${{` is not closed")))?;
        let name = &after[..end];
        if !VARIABLES.iter().any(|(v, _)| *v == name) {
            let known: Vec<&str> = VARIABLES.iter().map(|(v, _)| *v).collect();
            return Err(TemplateError(format!(
                "{text:?}: unknown variable ${{{name}}}; use one of {}",
                known.join(", ")
            )));
        }
        out.push(Piece::Var(name));
        rest = &after[end + 1..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    Ok(out)
}

impl Template {
    /// Checks `text`.
    pub fn new(text: &str) -> Result<Template, TemplateError> {
        pieces(text)?;
        Ok(Template {
            text: text.to_owned(),
        })
    }

    /// The text as configured.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The folder written before the first variable (`/srv/reports` in
    /// `/srv/reports/${USER}/${NAME}`; the text's own folder when it has no variable), or
    /// `None` when the text starts with a variable. The administrator wrote it, so it is
    /// reached as written; what variables add beneath it is reached through no link.
    pub fn fixed_folder(&self) -> Option<PathBuf> {
        let fixed = self
            .text
            .find("${")
            .map_or(self.text.as_str(), |i| &self.text[..i]);
        let cut = fixed.rfind('/')?;
        let folder = Path::new(if cut == 0 { "/" } else { &fixed[..cut] });
        let plain = folder.is_absolute()
            && folder
                .components()
                .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
        plain.then(|| folder.to_owned())
    }

    /// Expands with `vars`; a variable without a value expands to nothing.
    pub fn expand(&self, vars: &BTreeMap<&'static str, String>) -> String {
        let mut out = String::new();
        // Checked at construction, so this cannot fail.
        for piece in pieces(&self.text).unwrap_or_default() {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Var(v) => out.push_str(vars.get(v).map_or("", String::as_str)),
            }
        }
        out
    }

    /// Expands into a server path: absolute, normal, and with single-name variables that
    /// stayed single names.
    pub fn expand_path(
        &self,
        vars: &BTreeMap<&'static str, String>,
    ) -> Result<PathBuf, TemplateError> {
        for piece in pieces(&self.text).unwrap_or_default() {
            if let Piece::Var(v) = piece
                && !PATH_VARIABLES.contains(&v)
                && vars.get(v).is_some_and(|value| value.contains('/'))
            {
                return Err(TemplateError(format!(
                    "${{{v}}} holds a \"/\"; it cannot be used in a path"
                )));
            }
        }
        let expanded = self.expand(vars);
        let path = Path::new(&expanded);
        if !path.is_absolute() {
            return Err(TemplateError(format!(
                "{expanded:?} is not an absolute path"
            )));
        }
        if expanded.contains('\0') || expanded.contains("//") || expanded.ends_with('/') {
            return Err(TemplateError(format!("{expanded:?} has an empty name")));
        }
        if path
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
        {
            return Err(TemplateError(format!(
                "{expanded:?} holds `.` or `..`; destinations must be plain paths"
            )));
        }
        Ok(path.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> BTreeMap<&'static str, String> {
        BTreeMap::from([
            ("USER", "acme".to_owned()),
            ("NAME", "report.csv".to_owned()),
            ("HOME", "/srv/wharf/acme".to_owned()),
        ])
    }

    #[test]
    fn expands_known_variables() {
        let t = Template::new("${HOME}/incoming/${USER}-${NAME}").unwrap();
        assert_eq!(
            t.expand_path(&vars()).unwrap(),
            PathBuf::from("/srv/wharf/acme/incoming/acme-report.csv")
        );
    }

    #[test]
    fn the_fixed_folder_is_the_text_before_the_first_variable() {
        let folder = |t: &str| Template::new(t).unwrap().fixed_folder();
        assert_eq!(
            folder("/srv/reports/${USER}/${NAME}"),
            Some(PathBuf::from("/srv/reports"))
        );
        assert_eq!(folder("/srv/re${USER}/x"), Some(PathBuf::from("/srv")));
        assert_eq!(folder("/${USER}/x"), Some(PathBuf::from("/")));
        assert_eq!(folder("/srv/out/a.csv"), Some(PathBuf::from("/srv/out")));
        assert_eq!(folder("${HOME}/incoming/${NAME}"), None);
        assert_eq!(folder("/srv/../etc/${NAME}"), None);
    }

    #[test]
    fn refuses_unknown_and_unclosed() {
        assert!(Template::new("/x/${NOPE}").is_err());
        assert!(Template::new("/x/${NAME").is_err());
    }

    #[test]
    fn refuses_escapes_after_expansion() {
        let mut v = vars();
        v.insert("NAME", "../etc".to_owned());
        let t = Template::new("/srv/${NAME}").unwrap();
        assert!(t.expand_path(&v).is_err());
        v.insert("NAME", "a/b".to_owned());
        assert!(t.expand_path(&v).is_err());
        assert!(
            Template::new("relative/${NAME}")
                .unwrap()
                .expand_path(&vars())
                .is_err()
        );
        assert!(
            Template::new("/srv/${GROUP}/x")
                .unwrap()
                .expand_path(&vars())
                .is_err()
        );
    }
}
