//! `wharf serve --standby [--for NODE]` and `wharf takeover`: the passive node of an
//! active-passive pair.
//!
//! A standby holds the same configuration, host keys and certificate as the active node
//! (restored from its backup), opens its store, listens on nothing, and waits for either:
//!
//! - `wharf takeover`, run with the standby's configuration on its machine: a request file
//!   in its data folder. This works on either store (on SQLite the standby's store is its
//!   own, restored from the latest backup).
//! - On PostgreSQL, the active node's heartbeat stopping: once no live process holds the
//!   active's name (its heartbeat is older than `node_timeout`, it stopped, or it ran on
//!   this machine and its process is gone).
//!
//! The active is the node `--for` names; without it, the standby's own name (a standby
//! restored whole, which continues that node's trail). On a shared store the pair's nodes
//! have names of their own (`wharf restore --node`), so each keeps its own audit chain and
//! JSON-lines file; taking over then *fences* the active: its row is marked stopped, so a
//! hung active that wakes up finds its name gone at its next heartbeat and stops. A live
//! active (a planned `wharf takeover`) is given one heartbeat to stop before the standby
//! listens. The takeover is recorded (`node.took_over`) and `serve` goes on as usual.
//!
//! This module must never take over from a live node unless an operator asked for it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use tokio::signal::unix::{SignalKind, signal};
use wharf_core::{Event, EventKind};
use wharf_store::{Backend, NodeRecord, NodeState, Store};

use crate::cluster::{describe, now_us};
use crate::config::Loaded;
use crate::context::Context;

/// How often a standby looks for a request or at the active node's heartbeat.
const POLL: Duration = Duration::from_millis(250);
/// The request file's name, in the data folder.
const REQUEST: &str = "takeover-requested";

/// Why a standby took over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// `wharf takeover`.
    Command,
    /// The active node's heartbeat stopped.
    Heartbeat,
}

impl Cause {
    fn as_str(self) -> &'static str {
        match self {
            Cause::Command => "command",
            Cause::Heartbeat => "heartbeat",
        }
    }
}

/// A standby's decision to serve.
#[derive(Debug, Clone)]
pub struct Takeover {
    /// Why.
    pub cause: Cause,
    /// How long it stood by.
    pub waited: Duration,
    /// The node taken over from.
    pub active: String,
    /// The process that held the active's name when the standby took over, if one had
    /// not stopped cleanly.
    pub holder: Option<NodeRecord>,
}

impl Takeover {
    /// Whether the holder was still beating (a planned switch-over): it needs one of its
    /// heartbeats to notice it was fenced.
    pub fn holder_was_live(&self) -> bool {
        self.holder.as_ref().is_some_and(|h| {
            h.state(now_us()) == NodeState::Up && !crate::cluster::process_is_gone(h)
        })
    }
}

/// The takeover request file of the node `loaded` describes.
pub fn request_path(loaded: &Loaded) -> PathBuf {
    loaded.resolve(&loaded.config.server.data_dir).join(REQUEST)
}

/// Stands by for the node `active` (default: this node's own name) until a takeover is
/// due; `None` when a signal stopped the standby first.
pub async fn wait(ctx: &Context, active: Option<&str>) -> Result<Option<Takeover>> {
    hold_standby_lock(&ctx.loaded)?;
    let request = request_path(&ctx.loaded);
    // A request left from before this standby started is not for it.
    remove(&request)?;
    let name = active.unwrap_or(&ctx.loaded.config.server.name).to_owned();
    let watching = ctx.store.backend() == Backend::Postgres;
    let mut event = Event::new(EventKind::NodeStandby).message(if watching {
        format!(
            "standing by for node {name}: taking over when its heartbeat stops or on `wharf takeover`"
        )
    } else {
        format!("standing by for node {name}: taking over on `wharf takeover`")
    });
    event.service = Some("standby".to_owned());
    ctx.audit.write(&[event]).await?;
    eprintln!(
        "wharf: standing by as node {name:?}, listening on nothing; `wharf --config {} takeover` starts it{}",
        ctx.loaded.path.display(),
        if watching {
            ", as does the active node's heartbeat stopping"
        } else {
            ""
        }
    );
    let started = tokio::time::Instant::now();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = term.recv() => return Ok(None),
            _ = int.recv() => return Ok(None),
        }
        let asked = request.exists();
        let Ok(holder) = holder_of(&ctx.store, &name).await else {
            // A store that does not answer is no reason to take over (the active cannot
            // reach it either); a request still is, once the store answers.
            continue;
        };
        let gone = holder.as_ref().is_none_or(|h| {
            h.state(now_us()) != NodeState::Up || crate::cluster::process_is_gone(h)
        });
        let cause = if asked {
            remove(&request)?;
            Some(Cause::Command)
        } else if watching && gone {
            Some(Cause::Heartbeat)
        } else {
            None
        };
        if let Some(cause) = cause {
            return Ok(Some(Takeover {
                cause,
                waited: started.elapsed(),
                active: name,
                holder: holder.filter(|h| h.stopped_us.is_none()),
            }));
        }
    }
}

/// The lock that keeps a second standby off this folder, held until the process ends.
static STANDBY_LOCK: std::sync::OnceLock<std::fs::File> = std::sync::OnceLock::new();

/// Takes the folder's standby lock, or says which folder another standby holds.
fn hold_standby_lock(loaded: &Loaded) -> Result<()> {
    let path = loaded
        .resolve(&loaded.config.server.data_dir)
        .join("standby.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    if file.try_lock().is_err() {
        bail!(
            "another standby runs on {} already (it holds {})",
            loaded.path.display(),
            path.display()
        );
    }
    let _ = STANDBY_LOCK.set(file);
    Ok(())
}

/// The process holding `name`, as the store has it.
async fn holder_of(store: &Store, name: &str) -> Result<Option<NodeRecord>> {
    Ok(store.nodes().await?.into_iter().find(|n| n.name == name))
}

/// Marks the active node's process stopped, so it stops serving at its next heartbeat if it
/// is still running; false when it had stopped already or another process holds the name.
pub async fn fence(store: &Store, takeover: &Takeover) -> Result<bool> {
    let Some(holder) = &takeover.holder else {
        return Ok(false);
    };
    Ok(store
        .fence_node(&holder.name, &holder.incarnation, now_us())
        .await?)
}

/// The record of a takeover, once this node serves.
pub fn took_over(takeover: &Takeover) -> Event {
    let mut event = Event::new(EventKind::NodeTookOver)
        .message(match &takeover.holder {
            Some(old) => format!(
                "took over from node {}: {}; after standing by {:.1} s",
                takeover.active,
                describe(old, now_us()),
                takeover.waited.as_secs_f64()
            ),
            None => format!(
                "took over from node {} after standing by {:.1} s",
                takeover.active,
                takeover.waited.as_secs_f64()
            ),
        })
        .attr("cause", takeover.cause.as_str())
        .attr("from_node", takeover.active.clone())
        .attr("waited_ms", takeover.waited.as_millis().to_string());
    if let Some(old) = &takeover.holder {
        event = event
            .attr("from_host", old.host.clone())
            .attr("from_pid", old.pid.to_string());
    }
    event.service = Some("standby".to_owned());
    event
}

/// `wharf takeover`: asks this machine's standby to serve now, and waits until it does.
pub async fn request(ctx: &Context, wait: Duration) -> Result<()> {
    let request = request_path(&ctx.loaded);
    let name = &ctx.loaded.config.server.name;
    let before = ctx
        .store
        .nodes()
        .await?
        .into_iter()
        .find(|n| &n.name == name)
        .map(|n| n.incarnation);
    std::fs::write(&request, b"").with_context(|| format!("cannot write {}", request.display()))?;
    let deadline = tokio::time::Instant::now() + wait;
    let mut seen_taken = false;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        seen_taken |= !request.exists();
        if !seen_taken {
            continue;
        }
        let holder = ctx
            .store
            .nodes()
            .await?
            .into_iter()
            .find(|n| &n.name == name && n.stopped_us.is_none());
        if let Some(holder) = holder
            && Some(&holder.incarnation) != before.as_ref()
        {
            println!("node {name} now runs here: {}", describe(&holder, now_us()));
            return Ok(());
        }
    }
    if !seen_taken {
        remove(&request)?;
        bail!(
            "no standby took the request within {} s: is `wharf --config {} serve --standby` running?",
            wait.as_secs(),
            ctx.loaded.path.display()
        );
    }
    bail!(
        "the standby took the request but node {name} did not start within {} s; see its log",
        wait.as_secs()
    )
}

fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}
