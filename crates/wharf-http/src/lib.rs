//! Wharf's HTTP and HTTPS file service: the browser web client and the REST file API under
//! `/api/v1/`, every file operation through the core session.
//!
//! Routes are declared once in [`routes`], each classed as public or account-only; the
//! account layer authenticates (HTTP Basic or a bearer token) before any account-only
//! handler runs. Request paths are decoded once by [`path`], which refuses traversal in
//! every encoding before the core sees the path. Uploads stream to the core's atomic upload;
//! nothing is buffered whole in memory.
//!
//! It must never touch a file or the store except through [`wharf_core::Session`] and
//! [`wharf_auth::Authenticator`].

#![forbid(unsafe_code)]

mod api;
mod auth;
mod dav;
mod dav_locks;
mod headers;
pub mod path;
pub mod range;
mod routes;
mod server;
mod sessions;
mod upload_body;
mod web;
mod xml_guard;

pub use server::{HttpConfig, HttpService};
