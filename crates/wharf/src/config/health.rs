//! `[health]`: the listener a load balancer probes (`/live`, `/ready`) and how long a node
//! stopping on SIGTERM first says it is not ready. Absent: no listener, no draining.
//! This module only reads and checks the keys; `crate::health` serves them.

use std::net::SocketAddr;

use serde::Deserialize;
use toml::Spanned;

/// The longest drain accepted, in seconds.
pub const MAX_DRAIN_SECONDS: u64 = 3600;

/// `[health]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSection {
    /// `ADDRESS:PORT` of the plain-HTTP health listener, such as `127.0.0.1:8081`.
    pub listen: Spanned<String>,
    /// Seconds a node answers not ready, still serving, between SIGTERM and stopping.
    #[serde(default = "no_drain")]
    pub drain_seconds: Spanned<u64>,
}

fn no_drain() -> Spanned<u64> {
    Spanned::new(0..0, 0)
}

impl HealthSection {
    /// The socket to listen on, or why `listen` is not one.
    pub fn address(&self) -> Result<SocketAddr, String> {
        self.listen.get_ref().parse().map_err(|_| {
            format!(
                "{:?} is not ADDRESS:PORT; write \"127.0.0.1:8081\" or \"[::1]:8081\" (host names are not accepted)",
                self.listen.get_ref()
            )
        })
    }

    /// Checks `listen` and `drain_seconds`.
    pub fn validate(&self, issue: &mut dyn FnMut(std::ops::Range<usize>, String, String)) {
        match self.address() {
            Err(e) => issue(self.listen.span(), "health.listen".into(), e),
            Ok(a) if a.port() == 0 => issue(
                self.listen.span(),
                "health.listen".into(),
                "port 0 is not allowed; choose a port such as 8081".into(),
            ),
            Ok(_) => {}
        }
        if *self.drain_seconds.get_ref() > MAX_DRAIN_SECONDS {
            issue(
                self.drain_seconds.span(),
                "health.drain_seconds".into(),
                format!("at most {MAX_DRAIN_SECONDS} seconds"),
            );
        }
    }
}
