//! IP networks (`203.0.113.0/24`, `2001:db8::/64`, or a single address): what ban entries
//! and allow/deny rules are made of.
//!
//! A network is always stored with its host bits cleared, so two spellings of the same
//! network compare equal and print the same. An IPv4 address seen on a dual-stack socket as
//! `::ffff:a.b.c.d` is matched as the IPv4 address it is.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IPv4 or IPv6 network: an address with its host bits cleared and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNetwork {
    addr: IpAddr,
    prefix: u8,
}

/// Why a network could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IP address or network (like 203.0.113.0/24 or 2001:db8::/64)")]
pub struct NetworkParseError(String);

impl IpNetwork {
    /// The network of `prefix` bits holding `addr` (the prefix is capped at the address
    /// length: 32 for IPv4, 128 for IPv6).
    pub fn new(addr: IpAddr, prefix: u8) -> IpNetwork {
        let addr = addr.to_canonical();
        match addr {
            IpAddr::V4(v4) => {
                let prefix = prefix.min(32);
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                IpNetwork {
                    addr: IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask)),
                    prefix,
                }
            }
            IpAddr::V6(v6) => {
                let prefix = prefix.min(128);
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                IpNetwork {
                    addr: IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask)),
                    prefix,
                }
            }
        }
    }

    /// The network that groups `addr` with its neighbours: `v4_prefix` bits for IPv4,
    /// `v6_prefix` for IPv6 (a /64 is usually one host's or one site's range).
    pub fn around(addr: IpAddr, v4_prefix: u8, v6_prefix: u8) -> IpNetwork {
        match addr.to_canonical() {
            a @ IpAddr::V4(_) => IpNetwork::new(a, v4_prefix),
            a @ IpAddr::V6(_) => IpNetwork::new(a, v6_prefix),
        }
    }

    /// True when `addr` is inside this network.
    pub fn contains(&self, addr: IpAddr) -> bool {
        IpNetwork::new(addr, self.prefix) == *self
    }

    /// The prefix length in bits.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The network's first address (its host bits cleared).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }
}

impl fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for IpNetwork {
    type Err = NetworkParseError;

    fn from_str(text: &str) -> Result<IpNetwork, NetworkParseError> {
        let bad = || NetworkParseError(text.to_owned());
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| bad())?;
        let addr = addr.to_canonical();
        let longest = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => longest,
            // Digits only, no sign and no leading zero: one spelling per prefix.
            Some(p)
                if p == "0" || (!p.starts_with('0') && p.bytes().all(|b| b.is_ascii_digit())) =>
            {
                match p.parse::<u8>() {
                    Ok(p) if p <= longest => p,
                    _ => return Err(bad()),
                }
            }
            Some(_) => return Err(bad()),
        };
        Ok(IpNetwork::new(addr, prefix))
    }
}

impl serde::Serialize for IpNetwork {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for IpNetwork {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Where an account may log in from: a client inside any `deny` network is refused; when
/// `allow` is not empty, a client must be inside one of its networks.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AddressRules {
    /// Networks allowed (empty: any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<IpNetwork>,
    /// Networks refused, whatever `allow` says.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<IpNetwork>,
}

impl AddressRules {
    /// True when neither list has an entry.
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_clears_host_bits() {
        assert_eq!(net("203.0.113.77/24").to_string(), "203.0.113.0/24");
        assert_eq!(
            net("2001:db8:1:2:3:4:5:6/64").to_string(),
            "2001:db8:1:2::/64"
        );
        assert_eq!(net("192.0.2.1").to_string(), "192.0.2.1/32");
        assert_eq!(net("::1").to_string(), "::1/128");
        assert_eq!(net("[::1]/128").to_string(), "::1/128");
        assert_eq!(net("::ffff:192.0.2.9").to_string(), "192.0.2.9/32");
        assert_eq!(net("0.0.0.0/0").to_string(), "0.0.0.0/0");
        for bad in [
            "",
            "1.2.3.4/33",
            "::/129",
            "1.2.3/8",
            "1.2.3.4/",
            "1.2.3.4/+8",
            "x/1",
            "1.2.3.4/08",
        ] {
            assert!(bad.parse::<IpNetwork>().is_err(), "{bad}");
        }
    }

    #[test]
    fn contains_and_groups_neighbours() {
        let v4: IpAddr = "198.51.100.20".parse().unwrap();
        assert!(net("198.51.100.0/24").contains(v4));
        assert!(!net("198.51.101.0/24").contains(v4));
        assert!(net("0.0.0.0/0").contains(v4));
        assert!(!net("::/0").contains(v4));
        let mapped: IpAddr = "::ffff:198.51.100.20".parse().unwrap();
        assert!(net("198.51.100.0/24").contains(mapped));
        let a: IpAddr = "2001:db8:0:7::1".parse().unwrap();
        let b: IpAddr = "2001:db8:0:7:ffff::9".parse().unwrap();
        assert_eq!(IpNetwork::around(a, 32, 64), IpNetwork::around(b, 32, 64));
        assert_ne!(IpNetwork::around(a, 32, 128), IpNetwork::around(b, 32, 128));
        assert_eq!(
            IpNetwork::around(v4, 32, 64).to_string(),
            "198.51.100.20/32"
        );
    }
}
