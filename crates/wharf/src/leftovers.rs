//! The sweep of leftover upload files: at start and every 10 minutes, the temporary files
//! of uploads that lost their owner (a crash in the middle of an upload) are removed from
//! every folder homes can be in, and each removal is recorded.
//!
//! Where homes are: the data folder's `homes`, every account's own home, and the fixed part
//! of every group's home template (what comes before `${USER}`). Local folders that
//! client-side transfers deliver to are swept too (a transfer killed mid-copy leaves the
//! same kind of file). The walk itself, and what
//! it may remove, is `wharf_core::vfs::leftovers`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::watch;
use wharf_core::vfs::leftovers::{self, Leftover};
use wharf_core::{Event, EventBus, EventKind};
use wharf_store::Store;

/// Time between two sweeps.
const EVERY: Duration = Duration::from_secs(600);
/// A temporary file nobody wrote to for this long, and that no upload of this process
/// owns, is a leftover. Longer than any idle timeout, so that an upload on another node
/// sharing the storage is never taken for one.
const IDLE: Duration = Duration::from_secs(3600);
/// Entries one sweep looks at in each folder.
const BUDGET: usize = 2_000_000;

/// Sweeps now and every 10 minutes until `stop` says so.
pub async fn run(
    store: Store,
    fixed: Vec<PathBuf>,
    bus: EventBus,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let roots = roots(&store, &fixed).await;
        let swept = tokio::task::spawn_blocking(move || sweep_all(&roots)).await;
        for leftover in swept.unwrap_or_default() {
            bus.emit(record(&leftover));
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = stop.changed() => return,
        }
    }
}

fn sweep_all(roots: &BTreeSet<PathBuf>) -> Vec<Leftover> {
    let mut removed = Vec::new();
    for root in roots {
        // Each folder has its own budget, so one large tree cannot keep the others unswept.
        let mut budget = BUDGET;
        match leftovers::sweep(root, IDLE, &mut budget) {
            Ok(found) => removed.extend(found),
            Err(e) => tracing::warn!("leftover sweep of {}: {e}", root.display()),
        }
    }
    removed
}

fn record(leftover: &Leftover) -> Event {
    let mut event = Event::new(EventKind::LeftoverSwept)
        .path(leftover.path.clone())
        .attr("root", leftover.root.to_string_lossy());
    if let Some(kept) = &leftover.kept_as {
        event = event.attr("kept_as", kept.clone());
    }
    event.bytes = Some(leftover.bytes);
    event
}

/// The folders to sweep, without one inside another.
async fn roots(store: &Store, fixed: &[PathBuf]) -> BTreeSet<PathBuf> {
    let mut all = fixed.to_vec();
    if let Ok(accounts) = store.accounts().await {
        all.extend(
            accounts
                .into_iter()
                .filter_map(|a| a.home)
                .map(PathBuf::from),
        );
    }
    if let Ok(groups) = store.groups().await {
        all.extend(
            groups
                .into_iter()
                .filter_map(|g| g.home_template)
                .filter_map(|t| fixed_part(&t)),
        );
    }
    let mut roots = BTreeSet::new();
    all.sort();
    for root in all {
        if !root.is_absolute() || roots.iter().any(|r: &PathBuf| root.starts_with(r)) {
            continue;
        }
        roots.insert(root);
    }
    roots
}

/// The folder a home template always lies in: everything before its first `${`, up to the
/// last whole folder name (`/srv/partners/${USER}` gives `/srv/partners`). A template that
/// would make that the file system's root is not swept.
fn fixed_part(template: &str) -> Option<PathBuf> {
    let fixed = &template[..template.find("${").unwrap_or(template.len())];
    let folder = match fixed.rfind('/') {
        Some(i) if fixed.len() > i + 1 && !template.contains("${") => fixed,
        Some(i) => &fixed[..i],
        None => return None,
    };
    (folder.len() > 1).then(|| PathBuf::from(folder))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_roots() {
        assert_eq!(
            fixed_part("/srv/partners/${USER}"),
            Some("/srv/partners".into())
        );
        assert_eq!(fixed_part("/srv/p-${USER}/in"), Some("/srv".into()));
        assert_eq!(fixed_part("/${USER}"), None);
        assert_eq!(fixed_part("/srv/shared"), Some("/srv/shared".into()));
        assert_eq!(fixed_part("relative/${USER}"), Some("relative".into()));
    }
}
