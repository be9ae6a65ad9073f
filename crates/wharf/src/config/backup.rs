//! `[backup]`: backups the running server takes by itself, into a folder, keeping the last
//! few. Absent: none (`wharf backup FILE` still works at any time).
//! This module only reads and checks the keys; `crate::backup::schedule` takes the backups.

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

/// The shortest interval accepted, in seconds.
pub const MIN_INTERVAL: u64 = 5;
/// The longest interval accepted, in seconds (31 days).
pub const MAX_INTERVAL: u64 = 31 * 86_400;

/// `[backup]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupSection {
    /// Folder the archives go into (relative to the configuration's folder).
    #[serde(default = "default_folder")]
    pub folder: Spanned<String>,
    /// Seconds between backups.
    #[serde(default = "default_interval")]
    pub interval: Spanned<u64>,
    /// How many of this node's archives to keep in the folder (older ones are removed).
    #[serde(default = "default_keep")]
    pub keep: Spanned<u32>,
    /// Seal each archive with this passphrase (`env:NAME` or `file:PATH`).
    #[serde(default)]
    pub passphrase: Option<Spanned<String>>,
}

fn default_folder() -> Spanned<String> {
    Spanned::new(0..0, "wharf-data/backups".to_owned())
}

fn default_interval() -> Spanned<u64> {
    Spanned::new(0..0, 86_400)
}

fn default_keep() -> Spanned<u32> {
    Spanned::new(0..0, 7)
}

impl BackupSection {
    /// Checks every key.
    pub fn validate(&self, issue: &mut dyn FnMut(Range<usize>, String, String)) {
        if self.folder.get_ref().trim().is_empty() {
            issue(
                self.folder.span(),
                "backup.folder".into(),
                "name a folder, such as \"wharf-data/backups\"".into(),
            );
        }
        let interval = *self.interval.get_ref();
        if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&interval) {
            issue(
                self.interval.span(),
                "backup.interval".into(),
                format!(
                    "give the seconds between backups, {MIN_INTERVAL} to {MAX_INTERVAL} (86400 is daily)"
                ),
            );
        }
        if *self.keep.get_ref() == 0 {
            issue(
                self.keep.span(),
                "backup.keep".into(),
                "keep at least 1 archive".into(),
            );
        }
        crate::config::auth::secret_spec(&self.passphrase, "backup.passphrase", issue);
    }
}
