//! The client-side transfers page: every configured transfer with where it stands and its
//! last run, a "run now" button for those whose role may, and the newest runs. Asking for a
//! run goes through [`wharf_admin::Operations::run_transfer`].

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use axum::{Extension, Form};
use serde::Deserialize;
use wharf_admin::Need;

use super::sessions::bytes_text;
use super::{back_to, failed};
use crate::auth::Caller;
use crate::html::{csrf_field, escape, page};
use crate::server::Shared;

/// `GET /transfers`.
pub(crate) async fn transfers(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let catalog = shared.configuration.transfers();
    let views = match shared.ops.transfers(&caller.actor, &catalog).await {
        Ok(views) => views,
        Err(e) => return failed(&caller, "/transfers", &e),
    };
    let operate = caller.actor.role().may(Need::Operate);
    let csrf = csrf_field(&caller);
    let text = |v: &serde_json::Value, key: &str| escape(v[key].as_str().unwrap_or(""));
    let rows: String = views
        .iter()
        .map(|v| {
            let last = &v["last_run"];
            let last_text = if last.is_null() {
                "never run".to_owned()
            } else {
                format!(
                    "{} {} ({} files, {}, {} failed)",
                    text(last, "started"),
                    text(last, "state"),
                    last["files"].as_i64().unwrap_or(0),
                    bytes_text(last["bytes"].as_u64().unwrap_or(0)),
                    last["failures"].as_i64().unwrap_or(0)
                )
            };
            let class = match last["state"].as_str() {
                Some("failure") => "bad",
                Some("success") => "ok",
                _ => "",
            };
            let button = if operate {
                format!(
                    "<form method=\"post\" class=\"inline\">{csrf}<input type=\"hidden\" name=\"name\" value=\"{}\">\
                     <button type=\"submit\" class=\"quiet\">run now</button></form>",
                    text(v, "name")
                )
            } else {
                String::new()
            };
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{class} wide\">{last_text}</td><td>{button}</td></tr>",
                text(v, "name"),
                text(v, "source"),
                text(v, "destination"),
                text(v, "when"),
                text(v, "state"),
            )
        })
        .collect();
    let mut runs = String::new();
    for info in &catalog {
        if let Ok(list) = shared
            .ops
            .transfer_runs(&caller.actor, &info.name, &catalog, 5)
            .await
        {
            for run in list {
                runs.push_str(&format!(
                    "<tr><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td>\
                     <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"wide\">{}</td></tr>",
                    run.id,
                    escape(&run.transfer),
                    escape(&run.node),
                    escape(&run.trigger),
                    escape(&run.state),
                    run.files,
                    escape(&bytes_text(u64::try_from(run.bytes).unwrap_or(0))),
                    run.failures,
                    escape(run.message.as_deref().unwrap_or("")),
                ));
            }
        }
    }
    let body = format!(
        "<h1>Transfers</h1><section><table id=\"transfers\"><tr><th>name</th><th>from</th><th>to</th><th>when</th>\
         <th>now</th><th class=\"wide\">last run</th><th></th></tr>{}</table></section>\
         <section><h2>Recent runs</h2><table id=\"runs\"><tr><th>#</th><th>transfer</th><th>node</th><th>trigger</th>\
         <th>state</th><th>files</th><th>bytes</th><th>failed</th><th class=\"wide\">message</th></tr>{}</table></section>",
        if rows.is_empty() {
            "<tr><td colspan=\"7\" class=\"note\">No transfers are configured on this node ([[transfer]] in its configuration).</td></tr>".to_owned()
        } else {
            rows
        },
        if runs.is_empty() {
            "<tr><td colspan=\"9\" class=\"note\">No runs yet.</td></tr>".to_owned()
        } else {
            runs
        }
    );
    page(&caller, "/transfers", "Transfers", &body)
}

#[derive(Deserialize)]
pub(crate) struct RunForm {
    #[serde(default)]
    name: String,
}

/// `POST /transfers`: ask for a run now.
pub(crate) async fn transfers_run(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Form(form): Form<RunForm>,
) -> Response {
    let catalog = shared.configuration.transfers();
    match shared
        .ops
        .run_transfer(&caller.actor, &form.name, &catalog)
        .await
    {
        Ok(()) => back_to("/transfers"),
        Err(e) => failed(&caller, "/transfers", &e),
    }
}
