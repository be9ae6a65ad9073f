//! The sections a cluster shares: `[[authentication]]`, `[ban]`, `[password_policy]` and
//! `[[handler]]` — policy, as opposed to a node's own services, addresses, ports, paths,
//! store and sinks. A revision of them is published in the store (`wharf cluster
//! configuration publish`, the Manager); every node lays the newest over its own file,
//! replacing those four sections whole (a section the revision leaves out takes its
//! default), and applies it within two seconds.
//!
//! A revision is read as strictly as the file, and its problems name it the way the file's
//! name the file: `cluster configuration, revision 3:12: ban.threshold: …`.
//!
//! This module must never read the store: the caller gives it the revision.

use std::path::PathBuf;

use serde::Deserialize;
use wharf_store::ClusterRevision;

use crate::config::auth::AuthenticationSection;
use crate::config::handler::HandlerSection;
use crate::config::policy::{BanSection, PasswordSection};
use crate::config::{Issue, Issues, Loaded};

/// The top-level names a revision may hold.
pub const SECTIONS: [&str; 4] = ["authentication", "ban", "password_policy", "handler"];

/// The largest revision taken (as the Manager takes the largest file).
pub const MAX_TEXT: usize = 512 * 1024;

/// The shared sections of the file at `path`, as TOML (comments are not kept): what a
/// first revision starts from.
pub fn sections_of_file(path: &std::path::Path) -> String {
    let Some(table) = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
    else {
        return String::new();
    };
    let shared: toml::Table = table
        .into_iter()
        .filter(|(k, _)| SECTIONS.contains(&k.as_str()))
        .collect();
    toml::to_string(&shared).unwrap_or_default()
}

/// The problems `text` would have as revision `number` on the node whose file is at
/// `path`, checked as the node will check it when it applies it.
pub fn check_revision(path: &std::path::Path, number: i64, text: &str) -> Result<(), Issues> {
    let mut loaded = Loaded::load(path)?;
    loaded.lay_cluster(&ClusterRevision {
        revision: number,
        text: text.to_owned(),
        admin: String::new(),
        published_us: 0,
    })
}

/// What a revision holds.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Shared {
    #[serde(default)]
    authentication: Vec<AuthenticationSection>,
    #[serde(default)]
    ban: BanSection,
    #[serde(default)]
    password_policy: PasswordSection,
    #[serde(default)]
    handler: Vec<HandlerSection>,
}

/// The revision a loaded configuration took its shared sections from.
#[derive(Debug, Clone)]
pub struct Source {
    /// Its number.
    pub revision: i64,
    /// Who published it.
    pub admin: String,
    /// Its text.
    pub text: String,
    /// When it was published.
    pub published_us: i64,
}

impl Source {
    /// The revision again, as the store holds it.
    pub fn as_revision(&self) -> ClusterRevision {
        ClusterRevision {
            revision: self.revision,
            text: self.text.clone(),
            admin: self.admin.clone(),
            published_us: self.published_us,
        }
    }
}

/// How problems of revision `number` name their origin.
pub fn origin(number: i64) -> PathBuf {
    PathBuf::from(format!("cluster configuration, revision {number}"))
}

impl Loaded {
    /// Puts the shared sections of `revision` in place of the file's; when the revision has
    /// problems here, says which and leaves the configuration as it was.
    pub fn lay_cluster(&mut self, revision: &ClusterRevision) -> Result<(), Issues> {
        let file = origin(revision.revision);
        let text = revision.text.as_str();
        let shared: Shared = toml::from_str(text).map_err(|e| {
            let mut issue = crate::config::parse_issue(&file, text, &e);
            // Only an unknown section, not an unknown key inside a known one.
            if e.message().starts_with("unknown field") && e.message().contains("`password_policy`")
            {
                issue.message = format!(
                    "{}; a cluster revision holds only [[authentication]], [ban], \
                     [password_policy] and [[handler]]: a node's own sections stay in its wharf.toml",
                    e.message().trim()
                );
            }
            Issues(vec![issue])
        })?;
        let mut was = Shared {
            authentication: std::mem::replace(
                &mut self.config.authentication,
                shared.authentication,
            ),
            ban: std::mem::replace(&mut self.config.ban, shared.ban),
            password_policy: std::mem::replace(
                &mut self.config.password_policy,
                shared.password_policy,
            ),
            handler: std::mem::replace(&mut self.config.handlers, shared.handler),
        };
        let was_source = self.cluster.replace(Source {
            revision: revision.revision,
            admin: revision.admin.clone(),
            text: revision.text.clone(),
            published_us: revision.published_us,
        });
        let checked = self.check_shared(&file, text);
        if checked.is_err() {
            std::mem::swap(&mut self.config.authentication, &mut was.authentication);
            std::mem::swap(&mut self.config.ban, &mut was.ban);
            std::mem::swap(&mut self.config.password_policy, &mut was.password_policy);
            std::mem::swap(&mut self.config.handlers, &mut was.handler);
            self.cluster = was_source;
        }
        checked
    }

    /// The problems of the shared sections in force, read from `text` (at `file`).
    fn check_shared(&self, file: &std::path::Path, text: &str) -> Result<(), Issues> {
        let file = file.to_owned();
        let mut issues: Vec<Issue> = Vec::new();
        {
            let mut issue = crate::config::collector(&file, text, &mut issues);
            self.config.ban.validate(&mut issue);
            self.config.password_policy.validate(&mut issue);
            crate::config::auth::validate(&self.config.authentication, &mut issue);
            crate::config::handler::validate_list(self, &mut issue);
        }
        if !issues.is_empty() {
            return Err(Issues(issues));
        }
        // Built as the server builds them: a secret that cannot be read here, or a chain
        // that cannot be made, is a problem of this revision on this node.
        if let Err(e) = crate::config::handler::handlers(self) {
            return Err(Issues(vec![Issue {
                file,
                line: None,
                key: "handler".to_owned(),
                message: format!("{e:#}"),
            }]));
        }
        if let Err(e) = crate::config::auth::methods(self) {
            return Err(Issues(vec![Issue {
                file,
                line: None,
                key: "authentication".to_owned(),
                message: format!("{e:#}"),
            }]));
        }
        Ok(())
    }

    /// The `[[handler]]` and `[handlers]` sections in force, written canonically: a reload
    /// compares them to tell whether the handlers changed.
    pub fn handler_sections(&self) -> String {
        let table = |text: &str| text.parse::<toml::Table>().ok();
        let file = std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|t| table(&t));
        let list = match &self.cluster {
            Some(source) => table(&source.text).and_then(|t| t.get("handler").cloned()),
            None => file.as_ref().and_then(|t| t.get("handler").cloned()),
        }
        // `handler = []` and no handler at all are the same handlers.
        .filter(|v| v.as_array().is_none_or(|a| !a.is_empty()));
        let queue = file.as_ref().and_then(|t| t.get("handlers").cloned());
        // Transfers started by events add handlers of their own.
        let transfers = file.as_ref().and_then(|t| t.get("transfer").cloned());
        format!(
            "{:?}{:?}{:?}",
            list.map(|v| v.to_string()),
            queue.map(|v| v.to_string()),
            transfers.map(|v| v.to_string())
        )
    }
}

#[cfg(test)]
mod tests {
    use wharf_store::ClusterRevision;

    use crate::config::Loaded;

    fn node(dir: &std::path::Path) -> Loaded {
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let path = dir.join("wharf.toml");
        std::fs::write(
            &path,
            "[server]\ndata_dir = \"data\"\n[ban]\nthreshold = 3\n[password_policy]\nmin_length = 8\n",
        )
        .unwrap();
        Loaded::load(&path).unwrap()
    }

    fn revision(text: &str) -> ClusterRevision {
        ClusterRevision {
            revision: 4,
            text: text.to_owned(),
            admin: "ann".to_owned(),
            published_us: 0,
        }
    }

    #[test]
    fn a_revision_replaces_the_shared_sections_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut loaded = node(dir.path());
        loaded
            .lay_cluster(&revision("[ban]\nthreshold = 9\n"))
            .unwrap();
        assert_eq!(*loaded.config.ban.threshold.get_ref(), 9);
        // Left out of the revision: the default, not the node file's 8.
        assert_eq!(
            *loaded.config.password_policy.min_length.get_ref(),
            crate::config::policy::PasswordSection::default()
                .min_length
                .get_ref()
                .to_owned()
        );
        assert_eq!(loaded.cluster.as_ref().map(|c| c.revision), Some(4));
    }

    #[test]
    fn a_revision_s_problems_name_it_with_line_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let mut loaded = node(dir.path());
        let issues = loaded
            .lay_cluster(&revision("# shared\n[ban]\nthreshold = 0\n"))
            .expect_err("refused");
        // Refused: the file's own sections stay in force.
        assert_eq!(*loaded.config.ban.threshold.get_ref(), 3);
        assert!(loaded.cluster.is_none());
        let text = issues.to_string();
        assert!(
            text.starts_with("cluster configuration, revision 4:3: ban.threshold:"),
            "{text}"
        );
        let issues = loaded
            .lay_cluster(&revision("[[service]]\nname = \"x\"\n"))
            .expect_err("refused");
        let text = issues.to_string();
        assert!(
            text.contains("a node's own sections stay in its wharf.toml"),
            "{text}"
        );
    }
}
