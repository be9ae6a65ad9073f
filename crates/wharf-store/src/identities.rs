//! Accounts and groups. (Manager administrators and their API tokens are in `admins.rs`.)

use serde::{Deserialize, Serialize};
use wharf_core::{Rule, UploadMode};
use wharf_types::{AccountName, AddressRules, Protocol};

use crate::backend::{Fetch, on_pool};
use crate::{Store, StoreError, now_us};

/// An account as stored. The password is only ever an Argon2id (or imported) hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRecord {
    /// Login name.
    pub name: AccountName,
    /// PHC-format password hash; `None` means password login is off.
    pub password_hash: Option<String>,
    /// Home folder; `None` means "from the first group with a home template".
    pub home: Option<String>,
    /// Disabled accounts cannot log in.
    pub enabled: bool,
    /// Group names, in rule-evaluation order.
    pub groups: Vec<String>,
    /// OpenSSH-format public keys (`type base64 [comment]`).
    pub keys: Vec<String>,
    /// The account's own rules, evaluated before its groups' rules.
    pub rules: Vec<Rule>,
    /// Where the account may log in from (with its groups' rules).
    pub addresses: AddressRules,
    /// When the account stops working (µs since the Unix epoch); `None`: never.
    pub expires_us: Option<i64>,
    /// The enrolled second factor (TOTP secret and recovery-code digests), as JSON.
    pub second_factor: Option<String>,
    /// Logins need a second factor (with or without one enrolled: without, they fail).
    pub require_second_factor: bool,
    /// The largest file the account may make, in bytes; `None`: its groups' or the
    /// service's bound, or the default.
    pub max_file_size: Option<u64>,
    /// Where notifications about the account go; `None`: nowhere. One plain address,
    /// checked by the administrative operations before it is stored.
    pub email: Option<String>,
}

/// A group as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    /// Group name.
    pub name: String,
    /// Home folder template; `${USER}` is replaced by the account name.
    pub home_template: Option<String>,
    /// Create members' home folders at their first login.
    pub create_home: bool,
    /// Permission rules for members.
    pub rules: Vec<Rule>,
    /// Protocols members may use; empty means all.
    pub protocols: Vec<Protocol>,
    /// Upload policy for members; `None` means the default (atomic).
    pub upload_mode: Option<UploadMode>,
    /// Where members may log in from.
    pub addresses: AddressRules,
    /// Members' logins need a second factor.
    pub require_second_factor: bool,
    /// The largest file a member may make, in bytes; `None`: no bound from this group.
    pub max_file_size: Option<u64>,
    /// Where notifications about the group go; `None`: nowhere (checked like an account's).
    pub email: Option<String>,
}

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "[]".to_owned())
}

fn parse<T: for<'de> Deserialize<'de>>(text: &str, what: &'static str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|source| StoreError::Corrupt { what, source })
}

/// A size as SQLite stores it (a signed 64-bit integer). Nothing is larger than 8 EiB, so a
/// bigger bound is stored as the largest one there is.
fn size_column(size: Option<u64>) -> Option<i64> {
    size.map(|s| i64::try_from(s).unwrap_or(i64::MAX))
}

fn size_from_row(row: &impl Fetch, what: &'static str) -> Result<Option<u64>, StoreError> {
    let stored = row.opt_int("max_file_size")?;
    stored
        .map(|s| {
            u64::try_from(s).map_err(|_| StoreError::Corrupt {
                what,
                source: serde::de::Error::custom(format!("negative size {s}")),
            })
        })
        .transpose()
}

fn account_from_row(row: &impl Fetch) -> Result<AccountRecord, StoreError> {
    let name = row.text("name")?;
    Ok(AccountRecord {
        name: AccountName::new(&name).map_err(|e| StoreError::Corrupt {
            what: "accounts.name",
            source: serde::de::Error::custom(e),
        })?,
        password_hash: row.opt_text("password_hash")?,
        home: row.opt_text("home")?,
        enabled: row.int("enabled")? != 0,
        groups: parse(&row.text("groups_json")?, "accounts.groups")?,
        keys: parse(&row.text("keys_json")?, "accounts.keys")?,
        rules: parse(&row.text("rules_json")?, "accounts.rules")?,
        addresses: parse(&row.text("addresses_json")?, "accounts.addresses")?,
        expires_us: row.opt_int("expires_us")?,
        second_factor: row.opt_text("second_factor_json")?,
        require_second_factor: row.int("require_second_factor")? != 0,
        max_file_size: size_from_row(row, "accounts.max_file_size")?,
        email: row.opt_text("email")?,
    })
}

fn group_from_row(row: &impl Fetch) -> Result<GroupRecord, StoreError> {
    let upload_mode = row.opt_text("upload_mode")?;
    Ok(GroupRecord {
        name: row.text("name")?,
        home_template: row.opt_text("home_template")?,
        create_home: row.int("create_home")? != 0,
        rules: parse(&row.text("rules_json")?, "groups.rules")?,
        protocols: parse(&row.text("protocols_json")?, "groups.protocols")?,
        upload_mode: match upload_mode {
            Some(text) => Some(parse(&format!("{text:?}"), "groups.upload_mode")?),
            None => None,
        },
        addresses: parse(&row.text("addresses_json")?, "groups.addresses")?,
        require_second_factor: row.int("require_second_factor")? != 0,
        max_file_size: size_from_row(row, "groups.max_file_size")?,
        email: row.opt_text("email")?,
    })
}

fn upload_mode_text(mode: Option<UploadMode>) -> Option<&'static str> {
    mode.map(|m| match m {
        UploadMode::Atomic => "atomic",
        UploadMode::Resumable => "resumable",
    })
}

impl Store {
    /// Creates an account; fails if the name is taken.
    pub async fn create_account(&self, account: &AccountRecord) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            let now = now_us();
            let result = sqlx::query(
                "INSERT INTO accounts (name, password_hash, home, enabled, groups_json, keys_json, rules_json, addresses_json, expires_us, second_factor_json, require_second_factor, max_file_size, email, created_us, updated_us) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14) ON CONFLICT (name) DO NOTHING",
            )
            .bind(account.name.as_str())
            .bind(&account.password_hash)
            .bind(&account.home)
            .bind(i64::from(account.enabled))
            .bind(json(&account.groups))
            .bind(json(&account.keys))
            .bind(json(&account.rules))
            .bind(json(&account.addresses))
            .bind(account.expires_us)
            .bind(&account.second_factor)
            .bind(i64::from(account.require_second_factor))
            .bind(size_column(account.max_file_size))
            .bind(&account.email)
            .bind(now)
            .execute(pool)
            .await?;
            if result.rows_affected() == 0 {
                return Err(StoreError::Exists(format!("account {}", account.name)));
            }
            Ok(())
        })
    }

    /// Replaces an existing account's fields.
    pub async fn update_account(&self, account: &AccountRecord) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            let result = sqlx::query(
                "UPDATE accounts SET password_hash = $2, home = $3, enabled = $4, groups_json = $5, \
                 keys_json = $6, rules_json = $7, addresses_json = $8, expires_us = $9, \
                 second_factor_json = $10, require_second_factor = $11, max_file_size = $12, \
                 email = $13, updated_us = $14 WHERE name = $1",
            )
            .bind(account.name.as_str())
            .bind(&account.password_hash)
            .bind(&account.home)
            .bind(i64::from(account.enabled))
            .bind(json(&account.groups))
            .bind(json(&account.keys))
            .bind(json(&account.rules))
            .bind(json(&account.addresses))
            .bind(account.expires_us)
            .bind(&account.second_factor)
            .bind(i64::from(account.require_second_factor))
            .bind(size_column(account.max_file_size))
            .bind(&account.email)
            .bind(now_us())
            .execute(pool)
            .await?;
            if result.rows_affected() == 0 {
                return Err(StoreError::Missing(format!("account {}", account.name)));
            }
            Ok(())
        })
    }

    /// Replaces an account's second factor only if it is still `expected` (so a code or
    /// recovery code is used once even when two logins race); true when replaced.
    pub async fn swap_second_factor(
        &self,
        name: &str,
        expected: &str,
        next: Option<&str>,
    ) -> Result<bool, StoreError> {
        on_pool!(self, pool => {
            let result = sqlx::query(
                "UPDATE accounts SET second_factor_json = $3, updated_us = $4 \
                 WHERE name = $1 AND second_factor_json = $2",
            )
            .bind(name)
            .bind(expected)
            .bind(next)
            .bind(now_us())
            .execute(pool)
            .await?;
            Ok(result.rows_affected() == 1)
        })
    }

    /// One account by name.
    pub async fn account(&self, name: &str) -> Result<Option<AccountRecord>, StoreError> {
        on_pool!(self, pool => {
            let row = sqlx::query("SELECT * FROM accounts WHERE name = $1")
                .bind(name)
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(account_from_row).transpose()
        })
    }

    /// Every account, by name.
    pub async fn accounts(&self) -> Result<Vec<AccountRecord>, StoreError> {
        on_pool!(self, pool => {
            let rows = sqlx::query("SELECT * FROM accounts ORDER BY name")
                .fetch_all(pool)
                .await?;
            rows.iter().map(account_from_row).collect()
        })
    }

    /// Removes an account; false if there was none.
    pub async fn remove_account(&self, name: &str) -> Result<bool, StoreError> {
        on_pool!(self, pool => {
            let result = sqlx::query("DELETE FROM accounts WHERE name = $1")
                .bind(name)
                .execute(pool)
                .await?;
            Ok(result.rows_affected() > 0)
        })
    }

    /// Creates a group; fails if the name is taken.
    pub async fn create_group(&self, group: &GroupRecord) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            let now = now_us();
            let result = sqlx::query(
                "INSERT INTO groups (name, home_template, create_home, rules_json, protocols_json, upload_mode, addresses_json, require_second_factor, max_file_size, email, created_us, updated_us) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) ON CONFLICT (name) DO NOTHING",
            )
            .bind(&group.name)
            .bind(&group.home_template)
            .bind(i64::from(group.create_home))
            .bind(json(&group.rules))
            .bind(json(&group.protocols))
            .bind(upload_mode_text(group.upload_mode))
            .bind(json(&group.addresses))
            .bind(i64::from(group.require_second_factor))
            .bind(size_column(group.max_file_size))
            .bind(&group.email)
            .bind(now)
            .execute(pool)
            .await?;
            if result.rows_affected() == 0 {
                return Err(StoreError::Exists(format!("group {}", group.name)));
            }
            Ok(())
        })
    }

    /// Replaces an existing group's fields.
    pub async fn update_group(&self, group: &GroupRecord) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            let result = sqlx::query(
                "UPDATE groups SET home_template = $2, create_home = $3, rules_json = $4, protocols_json = $5, \
                 upload_mode = $6, addresses_json = $7, require_second_factor = $8, max_file_size = $9, \
                 email = $10, updated_us = $11 WHERE name = $1",
            )
            .bind(&group.name)
            .bind(&group.home_template)
            .bind(i64::from(group.create_home))
            .bind(json(&group.rules))
            .bind(json(&group.protocols))
            .bind(upload_mode_text(group.upload_mode))
            .bind(json(&group.addresses))
            .bind(i64::from(group.require_second_factor))
            .bind(size_column(group.max_file_size))
            .bind(&group.email)
            .bind(now_us())
            .execute(pool)
            .await?;
            if result.rows_affected() == 0 {
                return Err(StoreError::Missing(format!("group {}", group.name)));
            }
            Ok(())
        })
    }

    /// One group by name.
    pub async fn group(&self, name: &str) -> Result<Option<GroupRecord>, StoreError> {
        on_pool!(self, pool => {
            let row = sqlx::query("SELECT * FROM groups WHERE name = $1")
                .bind(name)
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(group_from_row).transpose()
        })
    }

    /// Every group, by name.
    pub async fn groups(&self) -> Result<Vec<GroupRecord>, StoreError> {
        on_pool!(self, pool => {
            let rows = sqlx::query("SELECT * FROM groups ORDER BY name")
                .fetch_all(pool)
                .await?;
            rows.iter().map(group_from_row).collect()
        })
    }

    /// Removes a group; false if there was none.
    pub async fn remove_group(&self, name: &str) -> Result<bool, StoreError> {
        on_pool!(self, pool => {
            let result = sqlx::query("DELETE FROM groups WHERE name = $1")
                .bind(name)
                .execute(pool)
                .await?;
            Ok(result.rows_affected() > 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn max_file_size_is_stored_cleared_and_bounded() {
        for under_test in crate::testing::backends().await {
            max_file_size_on(&under_test.store).await;
        }
    }

    async fn max_file_size_on(store: &Store) {
        let mut group = GroupRecord {
            name: "g".into(),
            home_template: Some("/srv/${USER}".into()),
            create_home: false,
            rules: Vec::new(),
            protocols: Vec::new(),
            upload_mode: None,
            addresses: AddressRules::default(),
            require_second_factor: false,
            max_file_size: Some(1 << 20),
            email: None,
        };
        store.create_group(&group).await.unwrap();
        assert_eq!(store.group("g").await.unwrap().unwrap(), group);
        group.max_file_size = None;
        store.update_group(&group).await.unwrap();
        assert_eq!(store.group("g").await.unwrap().unwrap(), group);

        let mut account = AccountRecord {
            name: AccountName::new("a").unwrap(),
            password_hash: None,
            home: None,
            enabled: true,
            groups: vec!["g".into()],
            keys: Vec::new(),
            rules: Vec::new(),
            addresses: AddressRules::default(),
            expires_us: None,
            second_factor: None,
            require_second_factor: false,
            max_file_size: None,
            email: None,
        };
        store.create_account(&account).await.unwrap();
        assert_eq!(store.account("a").await.unwrap().unwrap(), account);
        account.max_file_size = Some(512 << 10);
        store.update_account(&account).await.unwrap();
        assert_eq!(store.accounts().await.unwrap(), [account.clone()]);
        // Beyond what SQLite's integers hold, the largest bound there is is kept.
        account.max_file_size = Some(u64::MAX);
        store.update_account(&account).await.unwrap();
        let stored = store.account("a").await.unwrap().unwrap();
        assert_eq!(stored.max_file_size, Some(i64::MAX as u64));

        // A negative size (the database edited by hand) is reported, not wrapped.
        store
            .execute_raw("UPDATE accounts SET max_file_size = -1")
            .await;
        assert!(matches!(
            store.account("a").await,
            Err(StoreError::Corrupt {
                what: "accounts.max_file_size",
                ..
            })
        ));
    }

    #[tokio::test]
    async fn email_is_stored_changed_and_cleared() {
        for under_test in crate::testing::backends().await {
            email_on(&under_test.store).await;
        }
    }

    async fn email_on(store: &Store) {
        let mut group = GroupRecord {
            name: "partners".into(),
            home_template: Some("/srv/${USER}".into()),
            create_home: false,
            rules: Vec::new(),
            protocols: Vec::new(),
            upload_mode: None,
            addresses: AddressRules::default(),
            require_second_factor: false,
            max_file_size: None,
            email: Some("partners@example.org".into()),
        };
        store.create_group(&group).await.unwrap();
        assert_eq!(store.group("partners").await.unwrap().unwrap(), group);
        group.email = None;
        store.update_group(&group).await.unwrap();
        assert_eq!(store.groups().await.unwrap(), [group]);

        let mut account = AccountRecord {
            name: AccountName::new("acme").unwrap(),
            password_hash: None,
            home: Some("/srv/acme".into()),
            enabled: true,
            groups: vec!["partners".into()],
            keys: Vec::new(),
            rules: Vec::new(),
            addresses: AddressRules::default(),
            expires_us: None,
            second_factor: None,
            require_second_factor: false,
            max_file_size: Some(1 << 20),
            email: Some("ops@acme.example".into()),
        };
        store.create_account(&account).await.unwrap();
        assert_eq!(store.account("acme").await.unwrap().unwrap(), account);
        account.email = Some("it@acme.example".into());
        store.update_account(&account).await.unwrap();
        assert_eq!(store.accounts().await.unwrap(), [account.clone()]);
        account.email = None;
        store.update_account(&account).await.unwrap();
        // Clearing the address leaves the other columns as they were.
        let stored = store.account("acme").await.unwrap().unwrap();
        assert_eq!(stored, account);
        assert_eq!(stored.max_file_size, Some(1 << 20));
    }
}
