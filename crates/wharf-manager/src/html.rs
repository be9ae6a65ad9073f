//! The console's page frame (navigation by role, the session's CSRF token for the script),
//! HTML escaping, and the headers every answer carries.

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use wharf_admin::Need;

use crate::auth::Caller;

/// Pages run only their own script and style and talk only to this origin; nothing may
/// frame them.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'";

pub(crate) use wharf_types::html::escape;

/// Percent-encodes one path segment (an account or administrator name in a link).
pub(crate) fn segment(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// A hidden CSRF field for a form of `caller`'s page.
pub(crate) fn csrf_field(caller: &Caller) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        escape(caller.csrf.as_deref().unwrap_or(""))
    )
}

fn frame(title: &str, nav: &str, meta: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">{meta}\
         <title>{} · Wharf Manager</title><link rel=\"icon\" href=\"data:,\">\
         <link rel=\"stylesheet\" href=\"/static/manager.css\">\
         <script src=\"/static/manager.js\" defer></script></head>\
         <body>{nav}<main>{body}</main></body></html>",
        escape(title)
    )
}

fn html_response(status: StatusCode, html: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response()
}

/// A page of the console for `caller`, with the navigation its role may use.
pub(crate) fn page(caller: &Caller, current: &str, title: &str, body: &str) -> Response {
    let role = caller.actor.role();
    let mut links = vec![
        ("/", "Dashboard"),
        ("/accounts", "Accounts"),
        ("/groups", "Groups"),
        ("/events", "Events"),
    ];
    links.push(("/sessions", "Sessions"));
    links.push(("/bans", "Bans"));
    links.push(("/jobs", "Jobs"));
    links.push(("/transfers", "Transfers"));
    links.push(("/admins", "Administrators"));
    if role.may(Need::Administer) {
        links.push(("/configuration", "Configuration"));
    }
    links.push(("/me", "My account"));
    let items: String = links
        .iter()
        .map(|(href, label)| {
            let here = if *href == current {
                " aria-current=\"page\""
            } else {
                ""
            };
            format!("<a href=\"{href}\"{here}>{label}</a>")
        })
        .collect();
    let who = escape(caller.actor.admin_name().unwrap_or(""));
    let nav = format!(
        "<header><nav><strong>Wharf Manager</strong>{items}</nav>\
         <form method=\"post\" action=\"/logout\" class=\"logout\">{}\
         <span>{who} ({role})</span><button type=\"submit\">Log out</button></form></header>",
        csrf_field(caller)
    );
    let meta = format!(
        "<meta name=\"csrf-token\" content=\"{}\">",
        escape(caller.csrf.as_deref().unwrap_or(""))
    );
    let body = if role.may(Need::Operate) {
        body.to_owned()
    } else {
        format!("<p class=\"note\">Your role ({role}) reads; changes are refused.</p>{body}")
    };
    html_response(StatusCode::OK, frame(title, &nav, &meta, &body))
}

/// A page before login (no navigation).
pub(crate) fn bare_page(status: StatusCode, title: &str, body: &str) -> Response {
    html_response(status, frame(title, "", "", body))
}

/// A page that only says something (a refusal, an error).
pub(crate) fn message_page(status: StatusCode, title: &str, message: &str) -> Response {
    bare_page(
        status,
        title,
        &format!(
            "<section class=\"card\"><h1>{}</h1><p role=\"alert\">{}</p>\
             <p><a href=\"/\">Back to the Manager</a></p></section>",
            escape(title),
            escape(message)
        ),
    )
}

/// Adds the security headers to every answer.
pub(crate) async fn security_headers(request: Request, next: Next) -> Response {
    let is_page = !request.uri().path().starts_with("/api/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let policy = if is_page {
        PAGE_POLICY
    } else {
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    };
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(policy),
    );
    let fixed = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        // Not `no-referrer`: under it browsers send `Origin: null` with a form, and the
        // guard could no longer tell the console's own forms from another site's.
        (header::REFERRER_POLICY, "same-origin"),
        (
            header::HeaderName::from_static("cross-origin-resource-policy"),
            "same-origin",
        ),
        (
            header::HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
        (header::STRICT_TRANSPORT_SECURITY, "max-age=31536000"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
