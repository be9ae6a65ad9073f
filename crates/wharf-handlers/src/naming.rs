//! Which uploads the core commits under a unique name: those a `uuid-prefix` handler on
//! `upload.finished` would act on, by the same filters the engine matches with (account,
//! group, protocol, service, path, size).
//!
//! Naming an upload as it commits, rather than renaming it afterwards, is what keeps a
//! second upload of the same name from replacing the first before its handler runs. This
//! module only answers the core's question; it never touches a file.

use std::sync::Arc;

use wharf_core::{Event, EventKind, UploadNaming};

use crate::spec::{Action, Facts, Handler};

/// The answer to [`UploadNaming`] from the configured handlers.
pub struct UniqueUploadNames {
    handlers: Arc<Vec<Handler>>,
}

impl UniqueUploadNames {
    /// Answers for `handlers`; `None` when no `uuid-prefix` handler acts on uploads, so the
    /// core need not ask.
    pub fn new(handlers: Arc<Vec<Handler>>) -> Option<UniqueUploadNames> {
        handlers
            .iter()
            .any(names_uploads)
            .then_some(UniqueUploadNames { handlers })
    }
}

fn names_uploads(handler: &Handler) -> bool {
    matches!(handler.action, Action::UuidPrefix)
        && handler.on.contains(&EventKind::UploadFinished.id())
}

impl UploadNaming for UniqueUploadNames {
    fn unique_name(&self, finished: &Event) -> bool {
        let facts = Facts::of_event(finished);
        self.handlers.iter().any(|h| {
            names_uploads(h) && h.filter.matches_facts(&facts, &[finished.path.as_deref()])
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Filter;
    use std::time::Duration;

    fn handler(action: Action, on: u32, path: &str, accounts: &[&str]) -> Handler {
        Handler {
            name: "h".into(),
            on: vec![on],
            filter: Filter {
                accounts: accounts.iter().map(|a| a.to_string()).collect(),
                path: Some(wharf_core::PathPattern::new(path).unwrap()),
                ..Filter::default()
            },
            attempts: 1,
            retry_wait: Duration::from_secs(1),
            delay: Duration::ZERO,
            timeout: Duration::from_secs(1),
            action,
        }
    }

    fn upload(account: &str, path: &str) -> Event {
        let mut event = Event::new(EventKind::UploadFinished).path(path);
        event.account = Some(account.into());
        event.bytes = Some(3);
        event
    }

    #[test]
    fn uploads_a_uuid_prefix_handler_would_act_on_are_named() {
        let names = UniqueUploadNames::new(Arc::new(vec![handler(
            Action::UuidPrefix,
            EventKind::UploadFinished.id(),
            "/drop/*",
            &["acme"],
        )]))
        .unwrap();
        assert!(names.unique_name(&upload("acme", "/drop/dup.txt")));
        assert!(!names.unique_name(&upload("acme", "/other/dup.txt")));
        assert!(!names.unique_name(&upload("zed", "/drop/dup.txt")));
    }

    #[test]
    fn other_handlers_name_nothing() {
        let renamed = handler(Action::UuidPrefix, EventKind::EntryRenamed.id(), "/**", &[]);
        assert!(UniqueUploadNames::new(Arc::new(vec![renamed])).is_none());
    }
}
