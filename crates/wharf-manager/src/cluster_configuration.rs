//! The configuration the cluster shares, as the Manager shows and publishes it: the newest
//! revision with who published it and when, its problems on this node, a diff of an edit,
//! and publish — a new revision in the store, applied at once here and by every other node
//! within two seconds.
//!
//! Reading and publishing go through the administrative operations (role, conflict with a
//! revision published meanwhile, the 5xxxx record); checking a text goes through the
//! binary's [`crate::Configuration`], which validates a revision exactly as a node does when
//! it applies one.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form, Json};
use serde::Deserialize;
use serde_json::json;
use wharf_admin::{AdminError, ClusterRevision, revision_view};

use crate::auth::Caller;
use crate::configuration::{ConfigIssue, body_text, diff_html, issues_html, refused};
use crate::extract::{Params, Raw};
use crate::html::{csrf_field, escape, page};
use crate::server::Shared;

/// Revisions listed on the page.
const HISTORY_SHOWN: usize = 20;

/// What a publish came to.
enum Published {
    /// Revision `.0`, and what this node's reload did.
    Done(i64, Result<String, String>),
    /// The text has problems on this node: nothing published.
    Issues(Vec<ConfigIssue>),
    /// Refused or failed (a revision published meanwhile, the role, the store).
    Failed(AdminError),
}

/// The revision after `head`, a number the client gave: refused unless it is one a store
/// could hold (0 or more, and not the last number there is).
fn after(head: i64) -> Result<i64, AdminError> {
    head.checked_add(1).filter(|_| head >= 0).ok_or_else(|| {
        AdminError::Invalid(format!(
            "head {head}: give the revision read (0 before any)"
        ))
    })
}

/// Checks `text` as the revision after `head` and publishes it; this node applies it now.
async fn publish(shared: &Shared, caller: &Caller, head: i64, text: &str) -> Published {
    let next = match after(head) {
        Ok(next) => next,
        Err(e) => return Published::Failed(e),
    };
    let issues = shared.configuration.check_shared(next, text);
    if !issues.is_empty() {
        return Published::Issues(issues);
    }
    match shared
        .ops
        .publish_cluster_configuration(&caller.actor, head, text)
        .await
    {
        Ok(revision) => Published::Done(
            revision,
            shared.configuration.apply_revision(revision).await,
        ),
        Err(e) => Published::Failed(e),
    }
}

/// The newest revision, if any.
async fn newest(shared: &Shared, caller: &Caller) -> Result<Option<ClusterRevision>, AdminError> {
    shared.ops.cluster_configuration(&caller.actor, None).await
}

fn outcome_line(revision: i64, here: &Result<String, String>) -> String {
    match here {
        Ok(line) => format!(
            "revision {revision} published; this node applied it ({line}); every other node applies it within 2 s"
        ),
        Err(why) => format!("revision {revision} published, but this node did not apply it: {why}"),
    }
}

async fn cluster_page(
    shared: &Shared,
    caller: &Caller,
    text: Option<&str>,
    issues: Option<&[ConfigIssue]>,
    extra: &str,
) -> Response {
    let current = match newest(shared, caller).await {
        Ok(current) => current,
        Err(e) => return crate::console::failed(caller, "/configuration", &e),
    };
    let head = current.as_ref().map_or(0, |r| r.revision);
    let (shown, about) = match &current {
        Some(r) => (
            r.text.clone(),
            format!(
                "<p id=\"revision\">Revision <strong>{}</strong>, published by {} at {}.</p>",
                r.revision,
                escape(&r.admin),
                escape(
                    revision_view(r, false)["published"]
                        .as_str()
                        .unwrap_or_default()
                )
            ),
        ),
        None => (
            shared.configuration.shared_of_file(),
            "<p id=\"revision\">No revision was published yet: below are this node's file's \
             shared sections. Publishing makes them revision 1, and every node follows it.</p>"
                .to_owned(),
        ),
    };
    let text = text.unwrap_or(&shown);
    let issues = match issues {
        Some(issues) => issues.to_vec(),
        None => shared
            .configuration
            .check_shared(head.saturating_add(1), text),
    };
    let history = shared
        .ops
        .cluster_configuration_history(&caller.actor)
        .await
        .unwrap_or_default();
    let rows: String = history
        .iter()
        .take(HISTORY_SHOWN)
        .map(|r| {
            let view = revision_view(r, false);
            format!(
                "<tr><td class=\"num\">{}</td><td>{}</td><td>{}</td></tr>",
                r.revision,
                escape(view["published"].as_str().unwrap_or_default()),
                escape(&r.admin)
            )
        })
        .collect();
    let body = format!(
        "<h1>Cluster configuration</h1>{extra}{about}\
         <section><h2>Problems on this node</h2>{}</section>\
         <section><form method=\"post\" action=\"/configuration/cluster\" class=\"stack\">{}\
         <input type=\"hidden\" name=\"head\" value=\"{head}\">\
         <label>Shared sections <textarea name=\"text\" rows=\"24\" spellcheck=\"false\">{}</textarea></label>\
         <div class=\"inline\"><button type=\"submit\" name=\"action\" value=\"check\" class=\"quiet\">Check and show the changes</button>\
         <button type=\"submit\" name=\"action\" value=\"publish\">Publish</button></div></form>\
         <p class=\"note\">A revision holds only <code>[[authentication]]</code>, <code>[ban]</code>, \
         <code>[password_policy]</code> and <code>[[handler]]</code>; it replaces those sections of every \
         node's file (a section left out takes its default). Services, addresses, ports, paths, the store \
         and the audit sinks stay in each node's <a href=\"/configuration\">file</a>.</p></section>\
         <section><h2>Revisions</h2><table id=\"history\"><tr><th>revision</th><th>published</th><th>by</th></tr>{rows}</table></section>",
        issues_html(&issues),
        csrf_field(caller),
        escape(text)
    );
    page(caller, "/configuration", "Cluster configuration", &body)
}

/// `GET /configuration/cluster`.
pub(crate) async fn show(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
) -> Response {
    cluster_page(&shared, &caller, None, None, "").await
}

#[derive(Deserialize)]
pub(crate) struct ClusterForm {
    #[serde(default)]
    action: String,
    #[serde(default)]
    head: i64,
    #[serde(default)]
    text: String,
}

/// `POST /configuration/cluster`: check (problems and diff) or publish.
pub(crate) async fn change(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Form(form): Form<ClusterForm>,
) -> Response {
    let text = form.text.replace("\r\n", "\n");
    if text.len() > crate::MAX_CONFIGURATION {
        return crate::console::failed(
            &caller,
            "/configuration/cluster",
            &AdminError::Invalid("at most 512 KiB".to_owned()),
        );
    }
    if form.action != "publish" {
        let current = match newest(&shared, &caller).await {
            Ok(current) => current.map_or_else(String::new, |r| r.text),
            Err(e) => return crate::console::failed(&caller, "/configuration/cluster", &e),
        };
        let next = match after(form.head) {
            Ok(next) => next,
            Err(e) => return crate::console::failed(&caller, "/configuration/cluster", &e),
        };
        let issues = shared.configuration.check_shared(next, &text);
        let diff = diff_html(&current, &text);
        return cluster_page(&shared, &caller, Some(&text), Some(&issues), &diff).await;
    }
    match publish(&shared, &caller, form.head, &text).await {
        Published::Done(revision, here) => {
            let class = if here.is_ok() { "ok" } else { "error" };
            let extra = format!(
                "<p class=\"{class}\" role=\"status\" id=\"outcome\">{}</p>",
                escape(&outcome_line(revision, &here))
            );
            cluster_page(&shared, &caller, None, None, &extra).await
        }
        Published::Issues(issues) => {
            let mut response = cluster_page(
                &shared,
                &caller,
                Some(&text),
                Some(&issues),
                "<p class=\"error\" role=\"alert\" id=\"outcome\">Not published: nothing changed.</p>",
            )
            .await;
            *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            response
        }
        Published::Failed(e) => crate::console::failed(&caller, "/configuration/cluster", &e),
    }
}

/// `GET /api/v1/cluster/configuration`: the newest revision with its text (revision 0 and
/// this node's shared sections before any was published).
pub(crate) async fn api_show(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
) -> Response {
    match newest(&shared, &caller).await {
        Ok(Some(revision)) => Json(revision_view(&revision, true)).into_response(),
        Ok(None) => Json(json!({
            "revision": 0,
            "published_by": null,
            "published": null,
            "text": shared.configuration.shared_of_file(),
        }))
        .into_response(),
        Err(e) => crate::api::failure(e),
    }
}

/// `GET /api/v1/cluster/configuration/history`: the revisions, newest first.
pub(crate) async fn api_history(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
) -> Response {
    match shared
        .ops
        .cluster_configuration_history(&caller.actor)
        .await
    {
        Ok(list) => Json(json!({
            "revisions": list.iter().map(|r| revision_view(r, false)).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) => crate::api::failure(e),
    }
}

#[derive(Deserialize)]
pub(crate) struct HeadQuery {
    /// The revision the text was edited from; without it, the newest now.
    head: Option<i64>,
}

/// `POST /api/v1/cluster/configuration/check`: the problems a text would have here.
pub(crate) async fn api_check(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Raw(body): Raw,
) -> Response {
    let text = match body_text(&body) {
        Ok(text) => text,
        Err(why) => return refused(why),
    };
    let head = match newest(&shared, &caller).await {
        Ok(current) => current.map_or(0, |r| r.revision),
        Err(e) => return crate::api::failure(e),
    };
    let issues = shared
        .configuration
        .check_shared(head.saturating_add(1), &text);
    Json(json!({"ok": issues.is_empty(), "issues": issues})).into_response()
}

/// `PUT /api/v1/cluster/configuration[?head=N]`: publish a new revision.
pub(crate) async fn api_publish(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Params(query): Params<HeadQuery>,
    Raw(body): Raw,
) -> Response {
    let text = match body_text(&body) {
        Ok(text) => text,
        Err(why) => return refused(why),
    };
    let head = match query.head {
        Some(head) => head,
        None => match newest(&shared, &caller).await {
            Ok(current) => current.map_or(0, |r| r.revision),
            Err(e) => return crate::api::failure(e),
        },
    };
    match publish(&shared, &caller, head, &text).await {
        Published::Done(revision, here) => Json(json!({
            "revision": revision,
            "applied_here": here.is_ok(),
            "outcome": outcome_line(revision, &here),
        }))
        .into_response(),
        Published::Issues(issues) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"published": false, "issues": issues})),
        )
            .into_response(),
        Published::Failed(e) => crate::api::failure(e),
    }
}
