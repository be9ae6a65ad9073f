//! Wharf's Manager: the administrators' service (`type = "manager"`, HTTPS only). The web
//! console is served at `/` (pages rendered here, one small hand-written script), the admin
//! REST API under `/api/v1/` with its OpenAPI document at `/api/v1/openapi.json`.
//!
//! Every route is in one table ([`routes`]) with the role each method needs; one guard
//! authenticates the caller (a browser session's cookie, or an API token), checks its role
//! and, for a browser's changes, its CSRF token, before any handler runs. Handlers are thin
//! callers of [`wharf_admin::Operations`], which validates, writes and records every change,
//! exactly as the `wharf` commands do.
//!
//! It must never reach the store or a file except through [`wharf_admin::Operations`] and
//! the kept-logins trait ([`wharf_core::web_sessions::WebSessionStore`]), and never answer a
//! request the route table does not list.

#![forbid(unsafe_code)]

mod api;
mod auth;
mod cluster_configuration;
mod configuration;
mod console;
mod extract;
mod html;
mod login;
mod metrics;
mod routes;
mod server;

pub use configuration::{ConfigIssue, Configuration, MAX_CONFIGURATION};
pub use server::{ManagerConfig, ManagerService, Node, ServiceInfo};
