//! The sessions page (open sessions on this node, each with its transfers in flight, and
//! a disconnect button for those whose role may), and the transfers table the dashboard
//! shows. Disconnecting goes through [`wharf_admin::Operations::disconnect`].

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use axum::{Extension, Form};
use serde::Deserialize;
use wharf_admin::Need;
use wharf_core::live::SessionView;

use super::{back_to, failed};
use crate::auth::Caller;
use crate::html::{csrf_field, escape, page};
use crate::server::Shared;

/// A byte count for people: 1.5 MiB.
pub(super) fn bytes_text(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The transfers in flight of `sessions`, one row each.
pub(super) fn transfer_rows(sessions: &[SessionView]) -> String {
    let rows: String = sessions
        .iter()
        .flat_map(|s| s.transfers.iter().map(move |t| (s, t)))
        .map(|(s, t)| {
            let rate = t
                .bytes_per_second
                .map(|r| format!("{}/s", bytes_text(r)))
                .unwrap_or_default();
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"wide\">{}</td>\
                 <td class=\"num\">{}</td><td class=\"num\">{rate}</td></tr>",
                escape(&s.account),
                s.protocol,
                if t.direction == wharf_core::live::Direction::Upload {
                    "upload"
                } else {
                    "download"
                },
                escape(&t.path),
                bytes_text(t.bytes),
            )
        })
        .collect();
    let rows = if rows.is_empty() {
        "<tr><td colspan=\"6\" class=\"note\">No transfer in flight.</td></tr>".to_owned()
    } else {
        rows
    };
    format!(
        "<table id=\"transfers\"><tr><th>account</th><th>protocol</th><th>direction</th>\
         <th class=\"wide\">file</th><th>bytes</th><th>rate</th></tr>{rows}</table>"
    )
}

/// `GET /sessions`.
pub(crate) async fn sessions(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let list = match shared.ops.sessions(&caller.actor, shared.events.live()) {
        Ok(list) => list,
        Err(e) => return failed(&caller, "/sessions", &e),
    };
    let operate = caller.actor.role().may(Need::Operate);
    let csrf = csrf_field(&caller);
    let rows: String = list
        .iter()
        .map(|s| {
            let button = if operate {
                format!(
                    "<form method=\"post\" class=\"inline\" data-confirm=\"Disconnect {} ({})?\">{csrf}\
                     <input type=\"hidden\" name=\"id\" value=\"{}\">\
                     <button type=\"submit\" class=\"quiet\">disconnect</button></form>",
                    escape(&s.account),
                    escape(s.remote.as_deref().unwrap_or("")),
                    escape(&s.id),
                )
            } else {
                String::new()
            };
            let moving: u64 = s.transfers.iter().map(|t| t.bytes).sum();
            format!(
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                 <td>{}</td><td class=\"num\">{}</td><td>{button}</td></tr>",
                escape(&s.id),
                escape(&s.service),
                s.protocol,
                escape(&s.account),
                escape(s.remote.as_deref().unwrap_or("")),
                escape(wharf_admin::session_view(s)["since"].as_str().unwrap_or("")),
                if s.transfers.is_empty() {
                    String::new()
                } else {
                    format!("{} ({})", s.transfers.len(), bytes_text(moving))
                },
            )
        })
        .collect();
    let rows = if rows.is_empty() {
        "<tr><td colspan=\"8\" class=\"note\">No session is open.</td></tr>".to_owned()
    } else {
        rows
    };
    let body = format!(
        "<h1>Sessions · node {}</h1>\
         <section><table id=\"sessions\"><tr><th>session</th><th>service</th><th>protocol</th>\
         <th>account</th><th>client</th><th>since</th><th>transfers</th><th></th></tr>{rows}</table>\
         <p class=\"note\">Disconnecting ends the client's connection with every session it \
         carries; transfers in flight fail and keep nothing under their final names. A web \
         login must log in again.</p></section>\
         <section><h2>Transfers in flight</h2>{}</section>",
        escape(&shared.node),
        transfer_rows(&list),
    );
    page(&caller, "/sessions", "Sessions", &body)
}

#[derive(Deserialize)]
pub(crate) struct SessionAction {
    #[serde(default)]
    id: String,
}

/// `POST /sessions`: disconnect one.
pub(crate) async fn sessions_change(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Form(form): Form<SessionAction>,
) -> Response {
    match shared
        .ops
        .disconnect(&caller.actor, shared.events.live(), &form.id)
        .await
    {
        Ok(_) => back_to("/sessions"),
        Err(e) => failed(&caller, "/sessions", &e),
    }
}
