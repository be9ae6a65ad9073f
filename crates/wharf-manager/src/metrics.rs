//! `GET /api/v1/metrics`: the node's metrics in Prometheus's text format, for a scraper
//! holding an API token of any role. What is counted is the binary's (behind
//! [`crate::Configuration::metrics`]); this module only answers.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::server::Shared;

/// Prometheus's text exposition format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /api/v1/metrics`.
pub(crate) async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    match shared.configuration.metrics().await {
        Some(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"error":"this process records no metrics"}"#,
        )
            .into_response(),
    }
}
