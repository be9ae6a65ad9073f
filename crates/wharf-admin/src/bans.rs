//! Bans an administrator sets or lifts. Running nodes follow the store's bans within two
//! seconds (the ban engine polls its changes); these operations only write the store and
//! record who did it.

use std::net::IpAddr;

use wharf_core::EventKind;
use wharf_store::BanRecord;
use wharf_types::IpNetwork;

use crate::{Actor, AdminError, Need, Operations};

/// The widest IPv4 network an administrator may ban: a mistyped `0.0.0.0/0` would shut out
/// every client, administrators included.
pub const MIN_IPV4_PREFIX: u8 = 8;
/// The widest IPv6 network an administrator may ban.
pub const MIN_IPV6_PREFIX: u8 = 32;

/// The longest ban an administrator may set (ten years): keeps the end time representable.
pub const MAX_ADMIN_BAN_SECS: u64 = 10 * 365 * 24 * 3600;

impl Operations {
    /// The bans in force.
    pub async fn bans(&self, actor: &Actor) -> Result<Vec<BanRecord>, AdminError> {
        actor.require(Need::Read, "list bans")?;
        Ok(self.store.active_bans(crate::now_us()).await?)
    }

    /// The networks `address` may name: itself as written, then the network the ban
    /// engine bans it by (its /64 for IPv6 by default).
    fn networks(&self, address: &str) -> Result<Vec<IpNetwork>, AdminError> {
        let given = address.parse::<IpNetwork>().map_err(|_| {
            AdminError::invalid(format!(
                "{address:?} is not an IP address or network (like 203.0.113.7 or 2001:db8::/64)"
            ))
        })?;
        let mut candidates = vec![given];
        if let Ok(addr) = address
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            candidates.push(self.settings().ban_policy.network_of(addr));
        }
        Ok(candidates)
    }

    /// Lifts the ban on `address` (a network, or an address whose network is banned);
    /// returns the network.
    pub async fn lift_ban(&self, actor: &Actor, address: &str) -> Result<IpNetwork, AdminError> {
        actor.require(Need::Operate, "lift bans")?;
        for network in self.networks(address)? {
            let before = self.store.ban(&network.to_string()).await?;
            if self
                .store
                .remove_ban(&network.to_string(), crate::now_us())
                .await?
            {
                let before = before.as_ref().map(crate::views::ban_view);
                let event = actor
                    .change(
                        EventKind::BanRemoved,
                        &network.to_string(),
                        before.as_ref(),
                        None,
                        format!("ban of {network} lifted"),
                    )
                    .attr("network", network.to_string());
                self.record(event).await?;
                return Ok(network);
            }
        }
        Err(AdminError::NotFound(format!(
            "no ban for {address}; the list of bans shows those in force"
        )))
    }

    /// Bans `address`'s network (as the engine would ban the address) for `seconds` (the
    /// policy's ban time when `None`); returns the ban.
    pub async fn set_ban(
        &self,
        actor: &Actor,
        address: &str,
        seconds: Option<u64>,
        reason: &str,
    ) -> Result<BanRecord, AdminError> {
        actor.require(Need::Operate, "ban networks")?;
        let Some(network) = self.networks(address)?.last().copied() else {
            return Err(AdminError::invalid(format!("{address:?} names no network")));
        };
        let widest = if network.addr().is_ipv4() {
            MIN_IPV4_PREFIX
        } else {
            MIN_IPV6_PREFIX
        };
        if network.prefix() < widest {
            return Err(AdminError::invalid(format!(
                "{network} is too wide to ban: at most a /{MIN_IPV4_PREFIX} (IPv4) or a /{MIN_IPV6_PREFIX} (IPv6); \
                 to open the Manager to listed networks only, use the service's allow_from"
            )));
        }
        if let Some(own) = actor.remote
            && network.contains(own.ip())
        {
            return Err(AdminError::invalid(format!(
                "{network} holds your own address {}: you would lock yourself out",
                own.ip()
            )));
        }
        let seconds = seconds.unwrap_or(self.settings().ban_policy.ban_time.as_secs());
        if seconds == 0 || seconds > MAX_ADMIN_BAN_SECS {
            return Err(AdminError::invalid(format!(
                "a ban lasts 1 to {MAX_ADMIN_BAN_SECS} seconds"
            )));
        }
        if reason.len() > 500 {
            return Err(AdminError::invalid("a ban's reason is at most 500 bytes"));
        }
        let name = network.to_string();
        let strikes = self.store.ban(&name).await?.map_or(0, |b| b.strikes) + 1;
        let now = crate::now_us();
        let seconds_us = i64::try_from(seconds)
            .unwrap_or(i64::MAX)
            .saturating_mul(1_000_000);
        let ban = BanRecord {
            network: name.clone(),
            banned_us: now,
            until_us: now.saturating_add(seconds_us),
            strikes,
            reason: reason.to_owned(),
            node: self.settings().node.clone(),
        };
        self.store.put_ban(&ban).await?;
        let event = actor
            .change(
                EventKind::BanSet,
                &name,
                None,
                Some(&crate::views::ban_view(&ban)),
                format!("{network} banned: {reason}"),
            )
            .attr("network", name)
            .attr("until", crate::time_text(ban.until_us))
            .attr("seconds", seconds.to_string());
        self.record(event).await?;
        Ok(ban)
    }
}
