//! The node's Prometheus metrics, rendered by the Manager at `/api/v1/metrics`.
//!
//! Counters and histograms are made from the audit records this node writes: every
//! protocol's connections, logins and transfers pass there once, so one place counts them
//! all alike (see [`observe`]); the handler engine counts its jobs' outcomes itself. Gauges that are a state
//! rather than a count (handler jobs waiting, bans in force) are read from the store when
//! scraped. Labels are bounded sets (protocols, outcomes, actions), never account names,
//! paths or addresses.
//!
//! Recording is a few atomic additions on the writer's task: it must never fail, block or
//! slow down the trail. Commands other than `serve` install no recorder, so their records
//! count nothing. Nothing here is ever served on a file service.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use wharf_core::EventKind;
use wharf_store::{AuditRecord, JobState, Store};

/// What a scrape reads besides the recorded counts.
struct Sources {
    handle: PrometheusHandle,
    store: Store,
}

static SOURCES: OnceLock<Sources> = OnceLock::new();

/// Seconds, for transfers: from a small file on loopback to a large one over a slow link.
const TRANSFER_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
];
/// Seconds, for the store's writes.
const STORE_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Installs the process's recorder (once; `serve` calls it before anything is recorded).
pub fn install(store: Store) {
    if SOURCES.get().is_some() {
        return;
    }
    let built = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("transfer_duration_seconds".into()),
            TRANSFER_BUCKETS,
        )
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Prefix("wharf_store_".into()), STORE_BUCKETS)
        })
        .and_then(|b| b.install_recorder());
    match built {
        Ok(handle) => {
            describe();
            let _ = SOURCES.set(Sources { handle, store });
        }
        Err(e) => tracing::warn!(error = %e, "metrics are not recorded"),
    }
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "wharf_connections_total",
        "Connections accepted, by protocol."
    );
    describe_counter!(
        "wharf_connections_refused_total",
        "Connections refused at accept (bans, rates, limits), by protocol and cause."
    );
    describe_gauge!(
        "wharf_connections_open",
        "Connections open now, by protocol."
    );
    describe_counter!(
        "wharf_logins_total",
        "Authentication attempts, by protocol and outcome (success, failure)."
    );
    describe_counter!(
        "wharf_bytes_total",
        "Bytes of finished transfers, by protocol and direction (upload, download)."
    );
    describe_counter!(
        "wharf_transfers_total",
        "Transfers ended, by protocol, direction and outcome (success, failure)."
    );
    describe_gauge!(
        "wharf_transfers_in_flight",
        "Uploads and downloads open now, by direction."
    );
    describe_histogram!(
        "wharf_transfer_duration_seconds",
        "Durations of finished uploads and downloads, by protocol and direction."
    );
    describe_counter!(
        "wharf_handler_outcomes_total",
        "Handler attempts that ended, by action and outcome (done, retrying, failed, refused)."
    );
    describe_gauge!(
        "wharf_handler_jobs",
        "Handler jobs in the cluster's queue, by state (queued, running)."
    );
    describe_gauge!("wharf_bans", "Client networks banned now (the cluster's).");
    describe_counter!("wharf_bans_added_total", "Bans this node made.");
    describe_histogram!(
        "wharf_store_write_seconds",
        "Time to append a batch of audit records to the store."
    );
    describe_histogram!(
        "wharf_store_read_seconds",
        "Time of the queries a scrape makes to the store."
    );
}

fn label(value: Option<&str>) -> String {
    value.unwrap_or("none").to_owned()
}

/// Counts what `records` (just written by this node) say happened.
pub fn observe(records: &[AuditRecord]) {
    if SOURCES.get().is_none() {
        return;
    }
    for record in records {
        let Some(kind) = EventKind::from_id(record.id) else {
            continue;
        };
        let protocol = label(record.protocol.as_deref());
        let transfer = |direction: &'static str, outcome: &'static str| {
            counter!("wharf_transfers_total", "protocol" => protocol.clone(), "direction" => direction, "outcome" => outcome).increment(1);
            gauge!("wharf_transfers_in_flight", "direction" => direction).decrement(1.0);
            if outcome == "success" {
                counter!("wharf_bytes_total", "protocol" => protocol.clone(), "direction" => direction)
                    .increment(record.bytes.unwrap_or(0));
                if let Some(ms) = record.duration_ms {
                    histogram!("wharf_transfer_duration_seconds", "protocol" => protocol.clone(), "direction" => direction)
                        .record(Duration::from_millis(ms).as_secs_f64());
                }
            }
        };
        match kind {
            EventKind::ConnectionOpened => {
                counter!("wharf_connections_total", "protocol" => protocol.clone()).increment(1);
                gauge!("wharf_connections_open", "protocol" => protocol).increment(1.0);
            }
            EventKind::ConnectionClosed => {
                gauge!("wharf_connections_open", "protocol" => protocol).decrement(1.0);
            }
            EventKind::ConnectionRefused => {
                let cause = label(record.attrs.get("cause").map(String::as_str));
                counter!("wharf_connections_refused_total", "protocol" => protocol, "cause" => cause)
                    .increment(1);
            }
            EventKind::LoginSucceeded => {
                counter!("wharf_logins_total", "protocol" => protocol, "outcome" => "success")
                    .increment(1);
            }
            EventKind::LoginFailed => {
                counter!("wharf_logins_total", "protocol" => protocol, "outcome" => "failure")
                    .increment(1);
            }
            EventKind::UploadStarted => {
                gauge!("wharf_transfers_in_flight", "direction" => "upload").increment(1.0);
            }
            EventKind::DownloadStarted => {
                gauge!("wharf_transfers_in_flight", "direction" => "download").increment(1.0);
            }
            EventKind::UploadFinished => transfer("upload", "success"),
            EventKind::UploadFailed => transfer("upload", "failure"),
            EventKind::DownloadFinished => transfer("download", "success"),
            EventKind::DownloadFailed => transfer("download", "failure"),
            EventKind::BanAdded => counter!("wharf_bans_added_total").increment(1),
            _ => {}
        }
    }
}

/// Times a store write.
pub fn store_write(took: Duration) {
    if SOURCES.get().is_some() {
        histogram!("wharf_store_write_seconds").record(took.as_secs_f64());
    }
}

/// The metrics in Prometheus's text format, with the gauges read from the store now;
/// `None` where `serve` installed no recorder.
pub async fn render() -> Option<String> {
    let sources = SOURCES.get()?;
    let started = std::time::Instant::now();
    let now_us = i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000)
        .unwrap_or(i64::MAX);
    // A count capped high enough to say "very many" without reading a huge queue.
    const CAP: i64 = 1_000_000;
    for state in [JobState::Queued, JobState::Running] {
        if let Ok(n) = sources.store.count_handler_jobs(state, CAP).await {
            gauge!("wharf_handler_jobs", "state" => state.as_str()).set(n as f64);
        }
    }
    if let Ok(bans) = sources.store.active_bans(now_us).await {
        gauge!("wharf_bans").set(bans.len() as f64);
    }
    histogram!("wharf_store_read_seconds").record(started.elapsed().as_secs_f64());
    Some(sources.handle.render())
}
