//! The configuration page and API: the node's `wharf.toml` as it is, its problems per line
//! as `wharf check-config` names them, a diff of what an edit would change, and apply (the
//! file written, then reloaded by the running server without a restart).
//!
//! The Manager never reads or writes the file itself: the binary gives it a
//! [`Configuration`], which validates exactly as the CLI does and applies through the same
//! reload as `wharf reload`.

use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form, Json};
use serde::{Deserialize, Serialize};
use wharf_admin::Need;

use crate::auth::Caller;
use crate::extract::Raw;
use crate::html::{csrf_field, escape, page};
use crate::server::Shared;

/// The largest configuration file the Manager takes.
pub const MAX_CONFIGURATION: usize = 512 * 1024;
/// The most lines a diff compares (each side); beyond, it says so instead.
const MAX_DIFF_LINES: usize = 4000;

/// One problem of a configuration, as `wharf check-config` names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigIssue {
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The dotted key.
    pub key: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// The node's configuration file, as the binary keeps it.
#[async_trait]
pub trait Configuration: Send + Sync {
    /// The file's text now.
    fn text(&self) -> Result<String, String>;
    /// The problems of `text` were it the file (none: it would load).
    fn check(&self, text: &str) -> Vec<ConfigIssue>;
    /// Writes `text` as the file, once it checks, and has the running server apply it;
    /// returns what the reload did, or the problems and nothing written.
    async fn apply(&self, text: &str) -> Result<String, Vec<ConfigIssue>>;
    /// The problems `text` would have on this node as cluster configuration revision
    /// `number` (none: this node would apply it).
    fn check_shared(&self, number: i64, text: &str) -> Vec<ConfigIssue>;
    /// The file's shared sections, as TOML: what a first revision starts from.
    fn shared_of_file(&self) -> String;
    /// Has the running server apply its configuration (file and newest revision) now.
    async fn reload(&self) -> Result<String, String>;
    /// Has the running server apply cluster configuration revision `revision`, unless a
    /// reload already put it (or a newer one) in force.
    async fn apply_revision(&self, revision: i64) -> Result<String, String>;
    /// The node's metrics in Prometheus's text format (`None`: none are recorded).
    async fn metrics(&self) -> Option<String>;
    /// The client-side transfers the file configures (no secret read).
    fn transfers(&self) -> Vec<wharf_admin::TransferInfo>;
}

/// A line diff of `before` and `after` (`-`, `+`, or ` ` and the line), shortest edit by
/// longest common subsequence; `None` when a side is too long to compare here.
pub(crate) fn diff(before: &str, after: &str) -> Option<Vec<(char, String)>> {
    let a: Vec<&str> = before.lines().collect();
    let b: Vec<&str> = after.lines().collect();
    if a.len() > MAX_DIFF_LINES || b.len() > MAX_DIFF_LINES {
        return None;
    }
    // Common lines at both ends need no table.
    let head = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let tail = a[head..]
        .iter()
        .rev()
        .zip(b[head..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (ma, mb) = (&a[head..a.len() - tail], &b[head..b.len() - tail]);
    let mut lcs = vec![vec![0u32; mb.len() + 1]; ma.len() + 1];
    for i in (0..ma.len()).rev() {
        for j in (0..mb.len()).rev() {
            lcs[i][j] = if ma[i] == mb[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut out: Vec<(char, String)> = a[..head].iter().map(|l| (' ', (*l).to_owned())).collect();
    let (mut i, mut j) = (0, 0);
    while i < ma.len() || j < mb.len() {
        if i < ma.len() && j < mb.len() && ma[i] == mb[j] {
            out.push((' ', ma[i].to_owned()));
            i += 1;
            j += 1;
        } else if j < mb.len() && (i == ma.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push(('+', mb[j].to_owned()));
            j += 1;
        } else {
            out.push(('-', ma[i].to_owned()));
            i += 1;
        }
    }
    out.extend(a[a.len() - tail..].iter().map(|l| (' ', (*l).to_owned())));
    Some(out)
}

pub(crate) fn issues_html(issues: &[ConfigIssue]) -> String {
    if issues.is_empty() {
        return "<p class=\"ok\" id=\"issues\">No problem: the server would load this.</p>"
            .to_owned();
    }
    let rows: String = issues
        .iter()
        .map(|i| {
            format!(
                "<tr><td class=\"num\">{}</td><td><code>{}</code></td><td>{}</td></tr>",
                i.line.map(|l| l.to_string()).unwrap_or_default(),
                escape(&i.key),
                escape(&i.message)
            )
        })
        .collect();
    format!(
        "<table id=\"issues\" class=\"error\"><tr><th>line</th><th>key</th><th>problem</th></tr>{rows}</table>"
    )
}

pub(crate) fn diff_html(before: &str, after: &str) -> String {
    let Some(lines) = diff(before, after) else {
        return "<p class=\"note\">Too long to compare here.</p>".to_owned();
    };
    let changed = lines.iter().filter(|(m, _)| *m != ' ').count();
    if changed == 0 {
        return "<p class=\"note\" id=\"diff\">No change.</p>".to_owned();
    }
    // Only the changed lines and two lines around each.
    let near = |k: usize| {
        lines[k.saturating_sub(2)..(k + 3).min(lines.len())]
            .iter()
            .any(|(m, _)| *m != ' ')
    };
    let shown: String = lines
        .iter()
        .enumerate()
        .filter(|(k, _)| near(*k))
        .map(|(_, (mark, line))| {
            let class = match mark {
                '+' => "added",
                '-' => "removed",
                _ => "same",
            };
            format!("<span class=\"{class}\">{mark} {}</span>\n", escape(line))
        })
        .collect();
    format!(
        "<pre id=\"diff\" class=\"diff\">{shown}</pre><p class=\"note\">{changed} lines change.</p>"
    )
}

fn configuration_page(
    caller: &Caller,
    text: &str,
    issues: &[ConfigIssue],
    extra: &str,
) -> Response {
    let administer = caller.actor.role().may(Need::Administer);
    let actions = if administer {
        format!(
            "{}<div class=\"inline\"><button type=\"submit\" name=\"action\" value=\"check\" class=\"quiet\">Check and show the changes</button>\
             <button type=\"submit\" name=\"action\" value=\"apply\">Apply</button></div>",
            csrf_field(caller)
        )
    } else {
        String::new()
    };
    let readonly = if administer { "" } else { " readonly" };
    let body = format!(
        "<h1>Configuration</h1>{extra}\
         <section><h2>Problems</h2>{}</section>\
         <section><form method=\"post\" action=\"/configuration\" class=\"stack\">\
         <label>wharf.toml <textarea name=\"text\" rows=\"30\" spellcheck=\"false\"{readonly}>{}</textarea></label>\
         {actions}</form>\
         <p class=\"note\">Applying writes the file and has the running server reload it: new services start, \
         removed ones stop accepting while their sessions finish, the certificate and the handlers switch. \
         Accounts and groups are not in this file. \
         <a href=\"/configuration/cluster\">The cluster configuration</a> (authentication, bans, \
         password policy, handlers), once published, is kept in the store and takes the place of these sections of this file.</p></section>",
        issues_html(issues),
        escape(text)
    );
    page(caller, "/configuration", "Configuration", &body)
}

pub(crate) fn unavailable(why: &str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(serde_json::json!({"error": why})),
    )
        .into_response()
}

/// `GET /configuration`.
pub(crate) async fn show(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
) -> Response {
    match shared.configuration.text() {
        Ok(text) => {
            let issues = shared.configuration.check(&text);
            configuration_page(&caller, &text, &issues, "")
        }
        Err(why) => {
            crate::html::message_page(StatusCode::SERVICE_UNAVAILABLE, "Configuration", &why)
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct ConfigurationForm {
    #[serde(default)]
    action: String,
    #[serde(default)]
    text: String,
}

/// `POST /configuration`: check (problems and diff) or apply.
pub(crate) async fn change(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Form(form): Form<ConfigurationForm>,
) -> Response {
    // Browsers send a textarea's lines with CRLF.
    let text = form.text.replace("\r\n", "\n");
    let current = shared.configuration.text().unwrap_or_default();
    match form.action.as_str() {
        "apply" => match shared.configuration.apply(&text).await {
            Ok(outcome) => {
                record(&shared, &caller, &current, &text, &outcome).await;
                let extra = format!(
                    "<p class=\"ok\" role=\"status\" id=\"outcome\">Applied: {}</p>",
                    escape(&outcome)
                );
                configuration_page(&caller, &text, &[], &extra)
            }
            Err(issues) => {
                let mut response = configuration_page(
                    &caller,
                    &text,
                    &issues,
                    "<p class=\"error\" role=\"alert\" id=\"outcome\">Not applied: nothing changed.</p>",
                );
                *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
                response
            }
        },
        _ => {
            let issues = shared.configuration.check(&text);
            configuration_page(&caller, &text, &issues, &diff_html(&current, &text))
        }
    }
}

/// Records the change with who made it: the reload's outcome and how many lines changed,
/// not the text (it may hold what only the file should).
async fn record(shared: &Shared, caller: &Caller, before: &str, after: &str, outcome: &str) {
    let changed = diff(before, after).map_or(0, |d| d.iter().filter(|(m, _)| *m != ' ').count());
    let event = caller
        .actor
        .event(wharf_core::EventKind::ConfigurationChanged)
        .message(format!(
            "configuration file changed ({changed} lines) and reloaded: {outcome}"
        ))
        .attr("lines", changed.to_string());
    if let Err(e) = shared.ops.record_event(event).await {
        tracing::warn!("cannot record a configuration change: {e}");
    }
}

/// `GET /api/v1/configuration`: the file's text.
pub(crate) async fn api_text(State(shared): State<Arc<Shared>>) -> Response {
    match shared.configuration.text() {
        Ok(text) => (
            [(header::CONTENT_TYPE, "application/toml; charset=utf-8")],
            text,
        )
            .into_response(),
        Err(why) => unavailable(&why),
    }
}

/// A request body as the file's text: at most [`MAX_CONFIGURATION`] bytes of UTF-8.
pub(crate) fn body_text(body: &Bytes) -> Result<String, (StatusCode, &'static str)> {
    if body.len() > MAX_CONFIGURATION {
        return Err((StatusCode::PAYLOAD_TOO_LARGE, "at most 512 KiB"));
    }
    String::from_utf8(body.to_vec())
        .map_err(|_| (StatusCode::UNPROCESSABLE_ENTITY, "the file must be UTF-8"))
}

pub(crate) fn refused((status, why): (StatusCode, &'static str)) -> Response {
    (status, Json(serde_json::json!({"error": why}))).into_response()
}

/// `POST /api/v1/configuration/check`: the problems a text would have as the file.
pub(crate) async fn api_check(State(shared): State<Arc<Shared>>, Raw(body): Raw) -> Response {
    let text = match body_text(&body) {
        Ok(text) => text,
        Err(why) => return refused(why),
    };
    let issues = shared.configuration.check(&text);
    Json(serde_json::json!({"ok": issues.is_empty(), "issues": issues})).into_response()
}

/// `PUT /api/v1/configuration`: write and apply.
pub(crate) async fn api_apply(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Raw(body): Raw,
) -> Response {
    let text = match body_text(&body) {
        Ok(text) => text,
        Err(why) => return refused(why),
    };
    let current = shared.configuration.text().unwrap_or_default();
    match shared.configuration.apply(&text).await {
        Ok(outcome) => {
            record(&shared, &caller, &current, &text, &outcome).await;
            Json(serde_json::json!({"applied": true, "outcome": outcome})).into_response()
        }
        Err(issues) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(serde_json::json!({"applied": false, "issues": issues})),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::diff;

    #[test]
    fn the_diff_shows_what_changes() {
        let d = diff("a\nb\nc\nd\n", "a\nc\nd\ne\n").expect("short");
        let marks: Vec<(char, &str)> = d.iter().map(|(m, l)| (*m, l.as_str())).collect();
        assert_eq!(
            marks,
            [(' ', "a"), ('-', "b"), (' ', "c"), (' ', "d"), ('+', "e")]
        );
        assert!(
            diff("same\n", "same\n")
                .expect("short")
                .iter()
                .all(|(m, _)| *m == ' ')
        );
        let long = "x\n".repeat(5000);
        assert!(diff(&long, "y").is_none());
    }
}
