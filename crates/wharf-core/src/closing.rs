//! The record of a connection's end, made however the connection ends.
//!
//! A front-end makes its `connection.closed` record when its connection loop returns. A
//! connection can also end without returning: the server stops and its sessions are cut,
//! dropping the task. [`ClosingRecord`] holds the record from the start and sends it when it
//! is dropped if the front-end never did, saying the server cut the connection, so the trail
//! has an end for every connection it has a beginning for.
//!
//! This module must never decide when a connection ends; it only records that it did.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::{Event, EventBus};

/// What a cut connection's record says.
pub const CUT_BY_STOP: &str = "cut: the server stopped";

/// A `connection.closed` record waiting for its connection to end.
pub struct ClosingRecord {
    event: Option<Event>,
    bus: EventBus,
    started: Instant,
    account_source: Option<Arc<Mutex<Option<String>>>>,
}

impl ClosingRecord {
    /// Holds `event` (a `connection.closed` record, its fields as known at the start).
    pub fn new(event: Event, bus: EventBus) -> ClosingRecord {
        ClosingRecord {
            event: Some(event),
            bus,
            started: Instant::now(),
            account_source: None,
        }
    }

    /// Takes the account from `source` at the end (where the front-end keeps the name of
    /// the account the connection logged in as).
    pub fn account_from(mut self, source: Arc<Mutex<Option<String>>>) -> ClosingRecord {
        self.account_source = Some(source);
        self
    }

    /// Brings the waiting record up to date (the account once the connection has logged
    /// in, the protocol once it turned to TLS), for the record made on a cut.
    pub fn update(&mut self, change: impl FnOnce(&mut Event)) {
        if let Some(event) = &mut self.event {
            change(event);
        }
    }

    /// Sends the record with `reason`, its time and duration set now; `adjust` may fill in
    /// what only the end knows.
    pub fn close(mut self, reason: impl Into<String>, adjust: impl FnOnce(&mut Event)) {
        if let Some(event) = self.event.take() {
            let mut event = self.finish(event).message(reason);
            adjust(&mut event);
            self.bus.emit(event);
        }
    }

    fn finish(&self, mut event: Event) -> Event {
        event.time = time::OffsetDateTime::now_utc();
        if let Some(source) = &self.account_source
            && let Ok(name) = source.lock()
            && name.is_some()
        {
            event.account = name.clone();
        }
        event.duration_ms =
            Some(u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX));
        event
    }
}

impl Drop for ClosingRecord {
    fn drop(&mut self) {
        if let Some(event) = self.event.take() {
            // The client did not end it and got no orderly close: a failure, not a success.
            let event = self.finish(event).failed(CUT_BY_STOP);
            self.bus.emit(event);
        }
    }
}
