//! The Manager service wired to this node: its settings from `[[service]]`, the operations
//! over the node's store recording through the running bus (each change answered once its
//! record is durable), and the kept logins in the store.

use std::sync::Arc;

use wharf_admin::{AdminError, Operations, Recorder};
use wharf_core::{Event, EventBus};
use wharf_manager::ManagerConfig;

use crate::config::{Loaded, ManagerKeys, Service, secs};

/// The running server's records: through the bus, each waited for until durable.
struct BusRecorder(EventBus);

#[async_trait::async_trait]
impl Recorder for BusRecorder {
    async fn record(&self, event: Event) -> Result<(), AdminError> {
        self.0
            .emit_durable(event)
            .await
            .map_err(|e| AdminError::Audit(e.0))
    }
}

/// The operations the Manager calls, recording on `bus`.
pub fn operations(loaded: &Loaded, store: &wharf_store::Store, bus: &EventBus) -> Operations {
    Operations::new(
        store.clone(),
        Arc::new(BusRecorder(bus.clone())),
        crate::context::admin_settings(loaded),
    )
}

/// A `manager` service's settings.
pub fn config(
    service: &Service,
    keys: &ManagerKeys,
    addresses: Vec<std::net::SocketAddr>,
    tls: Arc<rustls::ServerConfig>,
) -> ManagerConfig {
    ManagerConfig {
        name: service.name.get_ref().clone(),
        addresses,
        tls,
        max_connections: *service.max_connections.get_ref(),
        max_per_ip: *service.max_per_ip.get_ref(),
        header_timeout: secs(&keys.header_timeout),
        session_timeout: secs(&keys.session_timeout),
        session_lifetime: secs(&keys.session_lifetime),
        allow_from: keys
            .allow_from
            .as_ref()
            .map(|list| {
                list.get_ref()
                    .iter()
                    .filter_map(|n| n.parse().ok())
                    .collect()
            })
            .unwrap_or_default(),
        proxy: service.proxy(),
    }
}
