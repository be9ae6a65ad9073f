//! Accounts resolved once and shared by every login that resolves to the same thing.
//!
//! A partner often keeps many sessions open under one account; each used to hold its own
//! compiled copy of the same rules (a few KiB of glob and regex automata per session). This
//! keeps a weak reference to the account last compiled under each name and hands it out
//! again while some session still holds it and it is exactly what the new login resolves
//! to ([`Resolution::describes`]): a changed record, group or rule compiles anew.
//!
//! It must never keep an account alive on its own (the references are weak), nor decide
//! anything about a login: it is asked only after the login was admitted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use wharf_core::Account;
use wharf_types::AccountName;

use crate::AuthFailure;
use crate::resolve::Resolution;

/// Entries kept before the ones no session holds are dropped.
const FIRST_PRUNE: usize = 64;

#[derive(Default)]
pub(crate) struct SharedAccounts {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_name: HashMap<AccountName, Weak<Account>>,
    prune_at: usize,
}

impl SharedAccounts {
    /// The account `resolution` describes: one already in use, or compiled now.
    pub(crate) fn resolve(&self, resolution: Resolution<'_>) -> Result<Arc<Account>, AuthFailure> {
        let name = resolution.name().clone();
        let in_use = self.lock().by_name.get(&name).and_then(Weak::upgrade);
        if let Some(account) = in_use
            && resolution.describes(&account)
        {
            return Ok(account);
        }
        // Compiled outside the lock: a large rule set must not hold up other logins.
        let account = Arc::new(resolution.compile()?);
        let mut inner = self.lock();
        inner.by_name.insert(name, Arc::downgrade(&account));
        if inner.by_name.len() >= inner.prune_at.max(FIRST_PRUNE) {
            inner.by_name.retain(|_, weak| weak.strong_count() > 0);
            inner.prune_at = inner.by_name.len() * 2;
        }
        Ok(account)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().by_name.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_store::{AccountRecord, GroupRecord};

    fn record(name: &str, rules: &[&str]) -> AccountRecord {
        AccountRecord {
            name: AccountName::new(name).unwrap(),
            home: Some(format!("/srv/{name}")),
            groups: Vec::new(),
            rules: rules
                .iter()
                .map(|p| wharf_core::Rule {
                    pattern: (*p).to_owned(),
                    allow: vec!["read".to_owned()],
                    deny: Vec::new(),
                })
                .collect(),
            ..crate::resolve::tests::account(Default::default())
        }
    }

    fn resolve(shared: &SharedAccounts, record: &AccountRecord) -> Arc<Account> {
        let groups: [GroupRecord; 0] = [];
        shared
            .resolve(Resolution::of(record, &groups).unwrap())
            .unwrap()
    }

    #[test]
    fn logins_to_the_same_account_share_it_and_a_change_compiles_anew() {
        let shared = SharedAccounts::default();
        let first = resolve(&shared, &record("lara", &["/in/**"]));
        let second = resolve(&shared, &record("lara", &["/in/**"]));
        assert!(Arc::ptr_eq(&first, &second));

        let changed = resolve(&shared, &record("lara", &["/out/**"]));
        assert!(!Arc::ptr_eq(&first, &changed));
        assert_eq!(changed.rules.source()[0].pattern, "/out/**");
        // The sessions that hold the old account keep it as it was.
        assert_eq!(first.rules.source()[0].pattern, "/in/**");
    }

    #[test]
    fn an_account_no_session_holds_is_not_kept() {
        let shared = SharedAccounts::default();
        let weak = Arc::downgrade(&resolve(&shared, &record("gone", &[])));
        assert!(weak.upgrade().is_none());
        for n in 0..FIRST_PRUNE * 3 {
            drop(resolve(&shared, &record(&format!("a{n}"), &[])));
        }
        assert!(shared.len() < FIRST_PRUNE);
    }
}
