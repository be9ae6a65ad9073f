//! Backups the running server takes by itself (`[backup]`): one every `interval`, into
//! `folder`, named `wharf-backup-NODE-YYYYMMDDTHHMMSSZ.tar` (`.tar.age` when sealed), keeping
//! this node's newest `keep`. Each is recorded (`backup.made` or `backup.failed`).
//!
//! The next backup is due `interval` after the newest archive already in the folder, so a
//! server restarted more often than `interval` still backs up, and one whose folder is empty
//! backs up as soon as it starts. A failure is tried again after `interval` or five minutes,
//! whichever is shorter.
//!
//! This module must never remove a file that is not one of this node's archives.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, Result};
use time::OffsetDateTime;
use tokio::sync::watch;
use wharf_core::{Event, EventBus, EventKind};
use wharf_store::Store;

use crate::backup::make::{self, Source};
use crate::config::Loaded;

/// The longest wait before a failed backup is tried again.
const RETRY: Duration = Duration::from_secs(300);

/// The backups `[backup]` asks for.
pub struct Schedule {
    source: Source,
    store: Store,
    folder: PathBuf,
    interval: Duration,
    keep: usize,
    passphrase: Option<String>,
}

impl Schedule {
    /// The schedule `[backup]` describes, if any; its passphrase is read now, so a missing
    /// one stops the server at start rather than at the first backup.
    pub fn from_config(loaded: &Loaded, store: &Store) -> Result<Option<Schedule>> {
        let Some(section) = &loaded.config.backup else {
            return Ok(None);
        };
        let passphrase = section
            .passphrase
            .as_ref()
            .map(|spec| crate::config::auth::secret(loaded, spec.get_ref()))
            .transpose()
            .context("[backup] passphrase")?;
        if passphrase.as_deref() == Some("") {
            anyhow::bail!(
                "[backup] passphrase is empty: archives sealed with it could not be opened"
            );
        }
        Ok(Some(Schedule {
            source: Source::of(loaded),
            store: store.clone(),
            folder: loaded.resolve(section.folder.get_ref()),
            interval: Duration::from_secs(*section.interval.get_ref()),
            keep: *section.keep.get_ref() as usize,
            passphrase,
        }))
    }

    /// Takes backups until `stop`.
    pub async fn run(self, bus: EventBus, mut stop: watch::Receiver<bool>) {
        let mut last_try: Option<tokio::time::Instant> = None;
        loop {
            let mut wait = self.until_due();
            if let Some(tried) = last_try {
                let again = tried + self.interval.min(RETRY);
                wait = wait.max(again.saturating_duration_since(tokio::time::Instant::now()));
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            last_try = Some(tokio::time::Instant::now());
            // A stop does not wait for a backup under way: its archive is still being
            // written as FILE.partial, which the next backup's pruning removes.
            tokio::select! {
                event = self.take() => bus.emit(event),
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// How long until the next backup is due.
    fn until_due(&self) -> Duration {
        match self.newest() {
            Some(modified) => (modified + self.interval)
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO),
            None => Duration::ZERO,
        }
    }

    fn prefix(&self) -> String {
        let node: String = self
            .source
            .node
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("wharf-backup-{node}-")
    }

    /// This node's files in the folder that `keep` picks, oldest first (their names sort by
    /// time): its archives, or with `partial` its half-written ones.
    fn own_files(&self, partial: bool) -> Vec<PathBuf> {
        let prefix = self.prefix();
        let Ok(entries) = std::fs::read_dir(&self.folder) else {
            return Vec::new();
        };
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.strip_prefix(&prefix)
                    .and_then(archive_suffix)
                    .is_some_and(|is_partial| is_partial == partial)
            })
            .map(|e| e.path())
            .collect();
        found.sort();
        found
    }

    fn archives(&self) -> Vec<PathBuf> {
        self.own_files(false)
    }

    fn newest(&self) -> Option<SystemTime> {
        let newest = self.archives().pop()?;
        std::fs::metadata(newest).and_then(|m| m.modified()).ok()
    }

    /// Takes one backup and prunes; the event that records it.
    async fn take(&self) -> Event {
        let now = OffsetDateTime::now_utc();
        let name = format!(
            "{}{:04}{:02}{:02}T{:02}{:02}{:02}Z.{}",
            self.prefix(),
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second(),
            if self.passphrase.is_some() {
                "tar.age"
            } else {
                "tar"
            }
        );
        let file = self.folder.join(name);
        let made = async {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.folder)
                .with_context(|| format!("cannot create {}", self.folder.display()))?;
            make::make(&self.source, &self.store, &file, self.passphrase.clone()).await
        }
        .await;
        match made {
            Ok(made) => {
                let removed = self.prune(&made.file);
                made_event(&made, "schedule").attr("removed", removed.to_string())
            }
            Err(e) => {
                tracing::warn!("scheduled backup into {} failed: {e:#}", file.display());
                Event::new(EventKind::BackupFailed)
                    .failed(format!("{e:#}"))
                    .attr("file", file.display().to_string())
                    .attr("trigger", "schedule")
            }
        }
    }

    /// Removes this node's archives beyond the newest `keep`, and archives a stopped server
    /// left half-written; how many archives.
    fn prune(&self, just_made: &Path) -> usize {
        for half in self.own_files(true) {
            std::fs::remove_file(half).ok();
        }
        let archives = self.archives();
        let excess = archives.len().saturating_sub(self.keep);
        let mut removed = 0;
        for old in archives
            .iter()
            .take(excess)
            .filter(|p| p.as_path() != just_made)
        {
            match std::fs::remove_file(old) {
                Ok(()) => removed += 1,
                Err(e) => tracing::warn!("cannot remove the old backup {}: {e}", old.display()),
            }
        }
        removed
    }
}

/// What follows a node's prefix in its archives' names: `YYYYMMDDTHHMMSSZ.tar` or
/// `.tar.age`, possibly `.partial`. Whether it is a partial one; `None` for any other name
/// (another node's, whose name starts like this one's, included).
fn archive_suffix(rest: &str) -> Option<bool> {
    let (stamp, kind) = rest.split_at_checked(16)?;
    let stamp_ok = stamp.bytes().enumerate().all(|(i, b)| match i {
        8 => b == b'T',
        15 => b == b'Z',
        _ => b.is_ascii_digit(),
    });
    if !stamp_ok {
        return None;
    }
    let (kind, partial) = match kind.strip_suffix(".partial") {
        Some(kind) => (kind, true),
        None => (kind, false),
    };
    matches!(kind, ".tar" | ".tar.age").then_some(partial)
}

/// The record of a finished backup.
pub fn made_event(made: &make::Made, trigger: &str) -> Event {
    let mut event = Event::new(EventKind::BackupMade)
        .message(format!(
            "backup written to {} ({} bytes, {} files, {} accounts, {} audit records{})",
            made.file.display(),
            made.bytes,
            made.manifest.files.len(),
            made.manifest.store.accounts,
            made.manifest.store.records,
            if made.encrypted { ", encrypted" } else { "" }
        ))
        .attr("file", made.file.display().to_string())
        .attr("files", made.manifest.files.len().to_string())
        .attr("accounts", made.manifest.store.accounts.to_string())
        .attr("records", made.manifest.store.records.to_string())
        .attr("encrypted", made.encrypted.to_string())
        .attr("trigger", trigger);
    event.bytes = Some(made.bytes);
    event
}

#[cfg(test)]
mod tests {
    use super::archive_suffix;

    #[test]
    fn only_this_nodes_archive_names_match() {
        assert_eq!(archive_suffix("20261201T120000Z.tar"), Some(false));
        assert_eq!(
            archive_suffix("20261201T120000Z.tar.age.partial"),
            Some(true)
        );
        // Node "n" must not take node "n-2"'s archives for its own.
        assert_eq!(archive_suffix("2-20261201T120000Z.tar"), None);
        assert_eq!(archive_suffix("20261201T120000Z.tar.gz"), None);
        assert_eq!(archive_suffix("notes.txt"), None);
    }
}
