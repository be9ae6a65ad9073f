//! What a node answers its load balancers' health probes (`[health]`): live while the
//! process answers; ready while the store answers, every service is listening and the node
//! is not draining. The listener itself, and its bounds, are `wharf_net::health`'s.
//!
//! Draining: on SIGTERM a node with `drain_seconds` answers not ready for that long, still
//! serving every connection, so the balancers send new clients elsewhere before it stops.
//! A probe never waits on the store longer than [`STORE_WAIT`]; this module never changes
//! anything, it only looks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;
use wharf_net::health::{Answer, HealthListener, Probe};
use wharf_store::Store;

/// The longest a readiness probe waits for the store.
pub const STORE_WAIT: Duration = Duration::from_secs(2);

/// The node's state as the probes see it. Cheap to clone.
#[derive(Clone)]
pub struct Health {
    inner: Arc<State>,
}

struct State {
    node: String,
    store: Store,
    listening: AtomicBool,
    draining: AtomicBool,
}

impl Health {
    /// A node named `node` on `store`, not yet listening.
    pub fn new(node: String, store: Store) -> Health {
        Health {
            inner: Arc::new(State {
                node,
                store,
                listening: AtomicBool::new(false),
                draining: AtomicBool::new(false),
            }),
        }
    }

    /// Every service is (true) or is no longer (false) listening.
    pub fn set_listening(&self, listening: bool) {
        self.inner.listening.store(listening, Ordering::SeqCst);
    }

    /// The node is stopping: it answers not ready from now on.
    pub fn start_draining(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
    }

    async fn answer(self, probe: Probe) -> Answer {
        let state = &self.inner;
        match probe {
            Probe::Live => Answer {
                ok: true,
                body: json!({"status": "live", "node": state.node}).to_string(),
            },
            Probe::Ready => {
                let store = match tokio::time::timeout(STORE_WAIT, state.store.ping()).await {
                    Ok(Ok(())) => "ok".to_owned(),
                    Ok(Err(e)) => format!("unreachable: {e}"),
                    Err(_) => format!("no answer within {} s", STORE_WAIT.as_secs()),
                };
                let listening = state.listening.load(Ordering::SeqCst);
                let draining = state.draining.load(Ordering::SeqCst);
                let ok = store == "ok" && listening && !draining;
                Answer {
                    ok,
                    body: json!({
                        "status": if ok { "ready" } else { "not ready" },
                        "node": state.node,
                        "store": store,
                        "listening": listening,
                        "draining": draining,
                    })
                    .to_string(),
                }
            }
        }
    }

    /// Binds `address` and answers probes on it until `shutdown`.
    pub async fn listen(
        &self,
        address: SocketAddr,
        shutdown: watch::Receiver<bool>,
    ) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
        let listener = HealthListener::bind(address).await?;
        let bound = listener.local_addr()?;
        let health = self.clone();
        let task =
            tokio::spawn(listener.serve(shutdown, move |probe| health.clone().answer(probe)));
        Ok((bound, task))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(answer: &Answer) -> serde_json::Value {
        serde_json::from_str(&answer.body).unwrap()
    }

    #[tokio::test]
    async fn ready_only_while_the_store_answers_the_services_listen_and_no_drain() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("w.db")).await.unwrap();
        let health = Health::new("node-a".into(), store.clone());
        let live = health.clone().answer(Probe::Live).await;
        assert!(live.ok);
        assert_eq!(body(&live)["node"], "node-a");
        // Not yet listening: alive, not ready.
        let ready = health.clone().answer(Probe::Ready).await;
        assert!(!ready.ok && body(&ready)["listening"] == false);
        health.set_listening(true);
        let ready = health.clone().answer(Probe::Ready).await;
        assert!(ready.ok, "{}", ready.body);
        assert_eq!(body(&ready)["store"], "ok");
        // The store gone: not ready, and the answer says why; still alive.
        store.close().await;
        let ready = health.clone().answer(Probe::Ready).await;
        assert!(!ready.ok);
        assert!(
            body(&ready)["store"]
                .as_str()
                .unwrap()
                .starts_with("unreachable"),
            "{}",
            ready.body
        );
        assert!(health.clone().answer(Probe::Live).await.ok);

        let store = Store::open_sqlite(&dir.path().join("w2.db")).await.unwrap();
        let health = Health::new("node-a".into(), store);
        health.set_listening(true);
        health.start_draining();
        let ready = health.clone().answer(Probe::Ready).await;
        assert!(!ready.ok && body(&ready)["draining"] == true);
    }
}
