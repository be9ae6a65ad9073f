//! `[ban]` and `[password_policy]` in `wharf.toml`: the security policies, checked strictly
//! like every section. They are enforced in wharf-auth, never here.

use std::ops::Range;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use wharf_auth::{BanPolicy, PasswordPolicy};
use wharf_types::IpNetwork;

/// `[ban]`. Durations are in seconds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BanSection {
    /// Score failures and ban (bans already in the store are honoured either way).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Score at which a network is banned.
    #[serde(default = "default_threshold")]
    pub threshold: Spanned<u32>,
    /// Seconds a failure counts for.
    #[serde(default = "default_window")]
    pub window: Spanned<u64>,
    /// Seconds of a first ban.
    #[serde(default = "default_ban_time")]
    pub ban_time: Spanned<u64>,
    /// Each later ban of the same network is this many percent longer.
    #[serde(default = "default_growth")]
    pub growth_percent: u32,
    /// Longest ban, in seconds.
    #[serde(default = "default_max_ban_time")]
    pub max_ban_time: Spanned<u64>,
    /// Seconds after a ban ends before the network's strikes are forgotten.
    #[serde(default = "default_max_ban_time")]
    pub forget_after: Spanned<u64>,
    /// IPv4 clients are scored and banned by this prefix.
    #[serde(default = "default_v4")]
    pub ipv4_prefix: Spanned<u8>,
    /// IPv6 clients are scored and banned by this prefix.
    #[serde(default = "default_v6")]
    pub ipv6_prefix: Spanned<u8>,
    /// Networks never banned (`10.0.0.0/8`, `2001:db8::/48`, or single addresses).
    #[serde(default = "no_networks")]
    pub safelist: Spanned<Vec<String>>,
    /// Score of a failed login for an existing account.
    #[serde(default = "one")]
    pub score_failed_login: u32,
    /// Score of a login for an account that does not exist.
    #[serde(default = "two")]
    pub score_unknown_account: u32,
    /// Score of a protocol violation.
    #[serde(default = "two")]
    pub score_protocol_error: u32,
    /// New connections one network may open a minute, on all services together (0: no limit).
    #[serde(default = "default_connection_rate")]
    pub connection_rate: Spanned<u32>,
    /// How many of those may come at once.
    #[serde(default = "default_connection_burst")]
    pub connection_burst: Spanned<u32>,
    /// Score of each connection refused for coming faster than `connection_rate`.
    #[serde(default = "one")]
    pub score_refused_connection: u32,
}

impl Default for BanSection {
    fn default() -> Self {
        BanSection {
            enabled: true,
            threshold: default_threshold(),
            window: default_window(),
            ban_time: default_ban_time(),
            growth_percent: default_growth(),
            max_ban_time: default_max_ban_time(),
            forget_after: default_max_ban_time(),
            ipv4_prefix: default_v4(),
            ipv6_prefix: default_v6(),
            safelist: no_networks(),
            score_failed_login: 1,
            score_unknown_account: 2,
            score_protocol_error: 2,
            connection_rate: default_connection_rate(),
            connection_burst: default_connection_burst(),
            score_refused_connection: 1,
        }
    }
}

fn no_networks() -> Spanned<Vec<String>> {
    Spanned::new(0..0, Vec::new())
}
fn yes() -> bool {
    true
}
fn one() -> u32 {
    1
}
fn two() -> u32 {
    2
}
fn default_threshold() -> Spanned<u32> {
    Spanned::new(0..0, BanPolicy::default().threshold)
}
fn default_window() -> Spanned<u64> {
    Spanned::new(0..0, BanPolicy::default().window.as_secs())
}
fn default_ban_time() -> Spanned<u64> {
    Spanned::new(0..0, BanPolicy::default().ban_time.as_secs())
}
fn default_growth() -> u32 {
    BanPolicy::default().growth_percent
}
fn default_max_ban_time() -> Spanned<u64> {
    Spanned::new(0..0, BanPolicy::default().max_ban_time.as_secs())
}
fn default_connection_rate() -> Spanned<u32> {
    Spanned::new(0..0, BanPolicy::default().connection_rate)
}
fn default_connection_burst() -> Spanned<u32> {
    Spanned::new(0..0, BanPolicy::default().connection_burst)
}
fn default_v4() -> Spanned<u8> {
    Spanned::new(0..0, 32)
}
fn default_v6() -> Spanned<u8> {
    Spanned::new(0..0, 64)
}

impl BanSection {
    /// Reports what is wrong through `issue(span, key, message)`.
    pub fn validate(&self, issue: &mut dyn FnMut(Range<usize>, String, String)) {
        let key = |k: &str| format!("ban.{k}");
        if *self.threshold.get_ref() == 0 {
            issue(
                self.threshold.span(),
                key("threshold"),
                "must be at least 1".into(),
            );
        }
        for (name, value) in [
            ("window", &self.window),
            ("ban_time", &self.ban_time),
            ("max_ban_time", &self.max_ban_time),
        ] {
            if *value.get_ref() == 0 {
                issue(value.span(), key(name), "must be at least 1 second".into());
            }
        }
        if self.max_ban_time.get_ref() < self.ban_time.get_ref() {
            issue(
                self.max_ban_time.span(),
                key("max_ban_time"),
                "must not be shorter than ban_time".into(),
            );
        }
        if !(8..=32).contains(self.ipv4_prefix.get_ref()) {
            issue(
                self.ipv4_prefix.span(),
                key("ipv4_prefix"),
                "must be 8 to 32 (32 bans one address)".into(),
            );
        }
        if !(32..=128).contains(self.ipv6_prefix.get_ref()) {
            issue(
                self.ipv6_prefix.span(),
                key("ipv6_prefix"),
                "must be 32 to 128 (64 bans one host's usual range)".into(),
            );
        }
        if *self.connection_burst.get_ref() == 0 {
            issue(
                self.connection_burst.span(),
                key("connection_burst"),
                "must be at least 1 (turn the limit off with connection_rate = 0)".into(),
            );
        }
        for entry in self.safelist.get_ref() {
            if let Err(e) = entry.parse::<IpNetwork>() {
                issue(self.safelist.span(), key("safelist"), e.to_string());
            }
        }
    }

    /// The engine's policy.
    pub fn policy(&self) -> BanPolicy {
        BanPolicy {
            enabled: self.enabled,
            threshold: *self.threshold.get_ref(),
            window: Duration::from_secs(*self.window.get_ref()),
            ban_time: Duration::from_secs(*self.ban_time.get_ref()),
            growth_percent: self.growth_percent,
            max_ban_time: Duration::from_secs(*self.max_ban_time.get_ref()),
            forget_after: Duration::from_secs(*self.forget_after.get_ref()),
            ipv4_prefix: *self.ipv4_prefix.get_ref(),
            ipv6_prefix: *self.ipv6_prefix.get_ref(),
            safelist: self
                .safelist
                .get_ref()
                .iter()
                .filter_map(|s| s.parse().ok())
                .collect(),
            score_failed_login: self.score_failed_login,
            score_unknown_account: self.score_unknown_account,
            score_protocol_error: self.score_protocol_error,
            connection_rate: *self.connection_rate.get_ref(),
            connection_burst: *self.connection_burst.get_ref(),
            score_refused_connection: self.score_refused_connection,
        }
    }
}

/// `[password_policy]`: what a new password for a local account must be.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordSection {
    /// Fewest characters.
    #[serde(default = "default_min_length")]
    pub min_length: Spanned<usize>,
    /// Refuse the built-in list of common passwords.
    #[serde(default = "yes")]
    pub refuse_common: bool,
    /// Refuse passwords containing the account name.
    #[serde(default = "yes")]
    pub refuse_account_name: bool,
}

impl Default for PasswordSection {
    fn default() -> Self {
        PasswordSection {
            min_length: default_min_length(),
            refuse_common: true,
            refuse_account_name: true,
        }
    }
}

fn default_min_length() -> Spanned<usize> {
    Spanned::new(0..0, PasswordPolicy::default().min_length)
}

impl PasswordSection {
    /// Reports what is wrong through `issue(span, key, message)`.
    pub fn validate(&self, issue: &mut dyn FnMut(Range<usize>, String, String)) {
        let length = *self.min_length.get_ref();
        if !(1..=wharf_auth::MAX_PASSWORD_CHARS).contains(&length) {
            issue(
                self.min_length.span(),
                "password_policy.min_length".into(),
                format!("must be 1 to {}", wharf_auth::MAX_PASSWORD_CHARS),
            );
        }
    }

    /// The policy.
    pub fn policy(&self) -> PasswordPolicy {
        PasswordPolicy {
            min_length: *self.min_length.get_ref(),
            refuse_common: self.refuse_common,
            refuse_account_name: self.refuse_account_name,
        }
    }
}
