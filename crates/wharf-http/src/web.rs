//! The browser web client: login and logout with a session cookie, and the folder page.
//! Pages are rendered here as HTML; the small script in `web/app.js` does uploads (with a
//! progress bar per file), new folders, renames and deletes through the REST API, sending
//! the session's CSRF token.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use serde::Deserialize;
use wharf_core::vfs::FileKind;
use wharf_core::{EventKind, Session};
use wharf_types::VirtualPath;

use crate::auth::{Csrf, LoggedIn, cookie, cookie_name, cross_origin};
use crate::path::encode;
use crate::server::{Conn, Shared};

const APP_JS: &str = include_str!("web/app.js");
const APP_CSS: &str = include_str!("web/app.css");

/// Pages may run only our own script and style, and talk only to this origin.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'";

pub(crate) use wharf_types::html::escape;

fn page(status: StatusCode, title: &str, csrf: Option<&str>, body: &str) -> Response {
    let csrf_meta = csrf
        .map(|t| format!("<meta name=\"csrf-token\" content=\"{}\">", escape(t)))
        .unwrap_or_default();
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         {csrf_meta}<title>{} · Wharf</title><link rel=\"icon\" href=\"data:,\">\
         <link rel=\"stylesheet\" href=\"/static/app.css\">\
         <script src=\"/static/app.js\" defer></script></head>\
         <body>{body}</body></html>",
        escape(title)
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, PAGE_POLICY),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response()
}

pub(crate) async fn asset(request: Request) -> Response {
    let (kind, body) = match request.uri().path() {
        "/static/app.js" => ("text/javascript; charset=utf-8", APP_JS),
        _ => ("text/css; charset=utf-8", APP_CSS),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

pub(crate) async fn index(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let logged_in = match cookie(request.headers(), cookie_name(shared.config.tls.is_some())) {
        Some(c) => matches!(shared.sessions.get_cookie(c).await, Ok(Some(_))),
        None => false,
    };
    let to = if logged_in { "/browse/" } else { "/login" };
    (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response()
}

/// The login form's own CSRF cookie (double submit: the form carries the same value).
fn login_cookie_name(https: bool) -> &'static str {
    if https {
        "__Host-wharf-login"
    } else {
        "wharf-login"
    }
}

fn login_form(shared: &Shared, status: StatusCode, message: Option<&str>) -> Response {
    let message = message
        .map(|m| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(m)))
        .unwrap_or_default();
    let token = crate::sessions::random_token();
    let https = shared.config.tls.is_some();
    let mut response = page(
        status,
        "Log in",
        None,
        &format!(
            "<main class=\"login\"><h1>Wharf</h1>\
             <form method=\"post\" action=\"/login\" class=\"card\">\
             <h2>Log in</h2>{message}\
             <input type=\"hidden\" name=\"csrf\" value=\"{token}\">\
             <label>Account <input name=\"user\" autocomplete=\"username\" required autofocus></label>\
             <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
             <button type=\"submit\">Log in</button></form></main>"
        ),
    );
    let cookie = format!(
        "{}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age=3600{}",
        login_cookie_name(https),
        if https { "; Secure" } else { "" }
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

/// The second step: the one-time code, for a login whose password was accepted. It keeps
/// the login form's CSRF value (cookie and hidden field) and the pending login's token.
fn code_form(status: StatusCode, csrf: &str, pending: &str, message: Option<&str>) -> Response {
    let message = message
        .map(|m| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(m)))
        .unwrap_or_default();
    page(
        status,
        "Verification code",
        None,
        &format!(
            "<main class=\"login\"><h1>Wharf</h1>\
             <form method=\"post\" action=\"/login/code\" class=\"card\">\
             <h2>Verification code</h2>{message}\
             <p>Enter the code from your authenticator app, or a recovery code.</p>\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <input type=\"hidden\" name=\"pending\" value=\"{}\">\
             <label>Code <input name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" \
             maxlength=\"32\" required autofocus></label>\
             <button type=\"submit\">Verify</button></form></main>",
            escape(csrf),
            escape(pending)
        ),
    )
}

pub(crate) async fn login_page(State(shared): State<Arc<Shared>>) -> Response {
    login_form(&shared, StatusCode::OK, None)
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    /// Missing in a forged post: defaulting lets it reach the CSRF check and its event.
    #[serde(default)]
    csrf: String,
    user: String,
    password: String,
}

/// A login or code form that may be forged: recorded, and the login page again.
fn forged(shared: &Shared, conn: &Conn, why: &str, shown: &str) -> Response {
    shared
        .events
        .emit(shared.event(EventKind::CommandRefused, conn).failed(why));
    login_form(shared, StatusCode::FORBIDDEN, Some(shown))
}

pub(crate) async fn login_submit(
    State(shared): State<Arc<Shared>>,
    Extension(conn): Extension<Conn>,
    request: Request,
) -> Response {
    if cross_origin(&shared, &request) {
        return forged(
            &shared,
            &conn,
            "login form posted from another origin",
            "This form must be sent from this site.",
        );
    }
    let https = shared.config.tls.is_some();
    let expected = cookie(request.headers(), login_cookie_name(https)).map(str::to_owned);
    let Ok(Form(form)) = Form::<LoginForm>::from_request(request, &()).await else {
        return login_form(
            &shared,
            StatusCode::BAD_REQUEST,
            Some("Give an account and a password."),
        );
    };
    if form.csrf.is_empty() || expected.as_deref() != Some(form.csrf.as_str()) {
        return forged(
            &shared,
            &conn,
            "login form without its CSRF token",
            "This form has expired; please log in again.",
        );
    }
    let protocol = shared.config.protocol();
    let login = crate::auth::log_in(&shared, &conn, &form.user, &form.password, protocol, false);
    match login.await {
        Ok(LoggedIn::Session(session)) => browse_with(&shared, session).await,
        Ok(LoggedIn::NeedsCode { account, by, user }) => {
            let name = account.name.to_string();
            match shared.sessions.insert_pending(&name, &by, &user).await {
                Ok(token) => code_form(StatusCode::OK, &form.csrf, &token, None),
                Err(e) => store_down(&shared, &e),
            }
        }
        Err(_) => login_form(
            &shared,
            StatusCode::UNAUTHORIZED,
            Some("Wrong account or password."),
        ),
    }
}

/// The login page again when kept logins cannot be written (the store is unreachable).
fn store_down(shared: &Shared, e: &wharf_core::CoreError) -> Response {
    tracing::warn!("web login not kept: {e}");
    login_form(
        shared,
        StatusCode::SERVICE_UNAVAILABLE,
        Some("Logins are not possible at the moment; please try again later."),
    )
}

/// Starts the browser session: its cookie, and on to the folder page.
async fn browse_with(shared: &Shared, session: Arc<wharf_core::Session>) -> Response {
    let value = match shared.sessions.insert_cookie(session).await {
        Ok(value) => value,
        Err(e) => return store_down(shared, &e),
    };
    let https = shared.config.tls.is_some();
    let cookie = format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Strict{}",
        cookie_name(https),
        if https { "; Secure" } else { "" }
    );
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, "/browse/")]).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

#[derive(Deserialize)]
pub(crate) struct CodeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    pending: String,
    #[serde(default)]
    code: String,
}

/// The second step's answer: the code for a pending login.
pub(crate) async fn login_code(
    State(shared): State<Arc<Shared>>,
    Extension(conn): Extension<Conn>,
    request: Request,
) -> Response {
    let https = shared.config.tls.is_some();
    let expected = cookie(request.headers(), login_cookie_name(https)).map(str::to_owned);
    let cross = cross_origin(&shared, &request);
    let form = Form::<CodeForm>::from_request(request, &()).await;
    let Ok(Form(form)) = form else {
        return login_form(&shared, StatusCode::BAD_REQUEST, Some("Log in again."));
    };
    if cross || form.csrf.is_empty() || expected.as_deref() != Some(form.csrf.as_str()) {
        return forged(
            &shared,
            &conn,
            "code form without its CSRF token or from another origin",
            "This form has expired; please log in again.",
        );
    }
    let pending = match shared.sessions.take_pending(&form.pending).await {
        Ok(pending) => pending,
        Err(e) => return store_down(&shared, &e),
    };
    let Some(pending) = pending else {
        return login_form(
            &shared,
            StatusCode::UNAUTHORIZED,
            Some("This login has expired; please log in again."),
        );
    };
    let protocol = shared.config.protocol();
    let code: String = form.code.chars().take(32).collect();
    match shared.auth.verify_code(&pending.user, &code).await {
        Ok(()) => {
            let opened = crate::auth::open_after_code(&shared, &conn, &pending, protocol).await;
            match opened {
                Ok(session) => browse_with(&shared, session).await,
                Err(response) => response,
            }
        }
        Err(failure) => {
            let mut failed = shared
                .event(EventKind::LoginFailed, &conn)
                .failed(failure.reason())
                .attr("method", "one-time-code")
                .attr("cause", failure.code())
                .attr("authenticator", pending.method.clone());
            failed.account = Some(pending.user.clone());
            failed.protocol = Some(protocol);
            shared.events.emit(failed);
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            let token = form.pending.clone();
            if shared
                .sessions
                .retry_pending(&token, pending)
                .await
                .unwrap_or(false)
            {
                code_form(
                    StatusCode::UNAUTHORIZED,
                    &form.csrf,
                    &token,
                    Some("Wrong code; try again."),
                )
            } else {
                login_form(
                    &shared,
                    StatusCode::UNAUTHORIZED,
                    Some("Too many wrong codes; please log in again."),
                )
            }
        }
    }
}

pub(crate) async fn logout(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let https = shared.config.tls.is_some();
    if let Some(value) = cookie(request.headers(), cookie_name(https))
        && let Err(e) = shared.sessions.remove_cookie(value).await
    {
        return crate::auth::unavailable(&e);
    }
    let expired = format!(
        "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
        cookie_name(https),
        if https { "; Secure" } else { "" }
    );
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(&expired) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

fn human_size(size: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut value = size as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{size} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

pub(crate) async fn browse(
    State(shared): State<Arc<Shared>>,
    Extension(conn): Extension<Conn>,
    Extension(session): Extension<Arc<Session>>,
    csrf: Option<Extension<Csrf>>,
    request: Request,
) -> Response {
    let rest = request.uri().path().strip_prefix("/browse").unwrap_or("");
    let folder = match crate::path::decode(rest) {
        Ok(p) => p,
        Err(e) => {
            shared.events.emit(
                shared
                    .event(EventKind::ProtocolError, &conn)
                    .failed(format!("request path refused: {e}")),
            );
            return page(
                StatusCode::BAD_REQUEST,
                "Refused",
                None,
                "<p>Path refused.</p>",
            );
        }
    };
    let folder = match session.resolve(&VirtualPath::root(), folder.as_bytes()) {
        Ok(p) => p,
        Err(e) => {
            return page(
                StatusCode::BAD_REQUEST,
                "Refused",
                None,
                &escape(&e.message),
            );
        }
    };
    let entries = match session.list(&folder).await {
        Ok(e) => e,
        Err(e) => {
            let status = if e.kind == wharf_core::ErrorKind::NotFound {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::FORBIDDEN
            };
            return page(
                status,
                "Not available",
                None,
                &format!(
                    "<main><p class=\"error\">{}</p><p><a href=\"/browse/\">Home</a></p></main>",
                    escape(&e.message)
                ),
            );
        }
    };
    let mut rows = String::new();
    let mut sorted: Vec<_> = entries.iter().collect();
    sorted.sort_by(|a, b| {
        (b.metadata.kind == FileKind::Dir)
            .cmp(&(a.metadata.kind == FileKind::Dir))
            .then_with(|| a.name.to_lowercase().cmp(&b.name.to_lowercase()))
    });
    for entry in sorted {
        let child = folder.join(&entry.name).map(|p| p.as_str().to_owned());
        let Ok(child) = child else { continue };
        let is_dir = entry.metadata.kind == FileKind::Dir;
        let href = if is_dir {
            format!("/browse{}/", encode(&child))
        } else {
            format!("/api/v1/files{}", encode(&child))
        };
        let modified = time::OffsetDateTime::from_unix_timestamp(entry.metadata.mtime)
            .ok()
            .and_then(|t| {
                t.format(time::macros::format_description!(
                    "[year]-[month]-[day] [hour]:[minute]"
                ))
                .ok()
            })
            .unwrap_or_default();
        rows.push_str(&format!(
            "<tr data-name=\"{name}\" data-size=\"{size}\" data-modified=\"{mtime}\" data-path=\"{path}\" data-kind=\"{kind}\">\
             <td class=\"name\"><a href=\"{href}\"{download}><span class=\"icon {kind}\" aria-hidden=\"true\"></span>{name}</a></td>\
             <td class=\"size\">{hsize}</td><td class=\"modified\">{modified}</td>\
             <td class=\"actions\"><button type=\"button\" class=\"rename\">Rename</button>\
             <button type=\"button\" class=\"delete\">Delete</button></td></tr>",
            name = escape(&entry.name),
            size = if is_dir { 0 } else { entry.metadata.size },
            mtime = entry.metadata.mtime,
            path = escape(&child),
            kind = if is_dir { "folder" } else { "file" },
            href = escape(&href),
            download = if is_dir { "" } else { " download" },
            hsize = if is_dir { String::new() } else { human_size(entry.metadata.size) },
        ));
    }
    if rows.is_empty() {
        rows.push_str("<tr class=\"empty\"><td colspan=\"4\">This folder is empty. Drop files here to upload them.</td></tr>");
    }
    let mut crumbs = String::from("<a href=\"/browse/\">Home</a>");
    let mut walked = String::new();
    for part in folder.as_str().split('/').filter(|p| !p.is_empty()) {
        walked.push('/');
        walked.push_str(part);
        crumbs.push_str(&format!(
            " <span aria-hidden=\"true\">/</span> <a href=\"/browse{}/\">{}</a>",
            escape(&encode(&walked)),
            escape(part)
        ));
    }
    let account = escape(&session.account().name.to_string());
    let body = format!(
        "<header class=\"top\"><span class=\"brand\">Wharf</span>\
         <span class=\"who\">{account} <button type=\"button\" id=\"logout\">Log out</button></span></header>\
         <main id=\"browser\" data-folder=\"{folder}\">\
         <nav class=\"crumbs\" aria-label=\"Folder\">{crumbs}</nav>\
         <div class=\"toolbar\"><label class=\"button primary\">Upload files\
         <input type=\"file\" id=\"picker\" multiple hidden></label>\
         <button type=\"button\" id=\"new-folder\">New folder</button></div>\
         <div id=\"messages\" role=\"status\" aria-live=\"polite\"></div>\
         <ul id=\"uploads\"></ul>\
         <div id=\"drop\" class=\"drop\"><table id=\"entries\"><thead><tr>\
         <th><button type=\"button\" data-sort=\"name\">Name</button></th>\
         <th><button type=\"button\" data-sort=\"size\">Size</button></th>\
         <th><button type=\"button\" data-sort=\"modified\">Modified</button></th><th></th></tr></thead>\
         <tbody>{rows}</tbody></table></div></main>",
        folder = escape(folder.as_str()),
    );
    let token = csrf.map(|Extension(Csrf(t))| t);
    page(StatusCode::OK, folder.as_str(), token.as_deref(), &body)
}

use axum::extract::FromRequest as _;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_sizes() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(human_size(999), "999 B");
        assert_eq!(human_size(1_500_000), "1.5 MB");
    }
}
