//! Logging in to the console: name and password, then the one-time code when the
//! administrator has enrolled one; logging out. The login forms carry a double-submit
//! CSRF value (cookie and field), so another site cannot log a browser in as someone else.
//! A login waiting for its code is kept like a session (any node finishes it), allows three
//! wrong codes, and lasts five minutes.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use serde::Deserialize;
use wharf_admin::{AdminError, LoginStep};
use wharf_core::web_sessions::{WebLogin, WebLoginKind};

use crate::auth::{
    Caller, LOGIN_COOKIE, MAX_SESSIONS, METHOD, PENDING_COOKIE, SESSION_COOKIE, cookie, csrf_of,
    hashed, kept_under, micros, now_us, random_token, same_secret, set_cookie,
};
use crate::html::{bare_page, escape};
use crate::server::{Conn, Shared};

/// How long a login waits for its one-time code.
const PENDING_FOR: Duration = Duration::from_secs(300);
/// Wrong codes allowed for one password login.
const CODE_TRIES: i64 = 3;

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
}

#[derive(Deserialize)]
pub(crate) struct CodeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: String,
}

fn with_cookie(mut response: Response, value: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(value) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

fn alert(message: Option<&str>) -> String {
    message
        .map(|m| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(m)))
        .unwrap_or_default()
}

fn login_page(status: StatusCode, message: Option<&str>) -> Response {
    let token = random_token();
    let page = bare_page(
        status,
        "Log in",
        &format!(
            "<section class=\"card login\"><h1>Wharf Manager</h1>\
             <form method=\"post\" action=\"/login\">{}\
             <input type=\"hidden\" name=\"csrf\" value=\"{token}\">\
             <label>Administrator <input name=\"name\" autocomplete=\"username\" required autofocus></label>\
             <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
             <button type=\"submit\">Log in</button></form></section>",
            alert(message)
        ),
    );
    with_cookie(
        page,
        &set_cookie(LOGIN_COOKIE, &token, Duration::from_secs(3600)),
    )
}

fn code_page(status: StatusCode, csrf: &str, message: Option<&str>) -> Response {
    bare_page(
        status,
        "One-time code",
        &format!(
            "<section class=\"card login\"><h1>Wharf Manager</h1>\
             <form method=\"post\" action=\"/login/code\">{}\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <label>One-time code (or a recovery code) <input name=\"code\" \
             autocomplete=\"one-time-code\" inputmode=\"numeric\" required autofocus></label>\
             <button type=\"submit\">Continue</button></form></section>",
            alert(message),
            escape(csrf)
        ),
    )
}

fn origin(shared: &Shared, conn: &Conn) -> wharf_admin::Origin {
    wharf_admin::Origin {
        service: shared.config.name.clone(),
        remote: conn.remote,
        session: conn.id.clone(),
    }
}

/// `GET /login`.
pub(crate) async fn form() -> Response {
    login_page(StatusCode::OK, None)
}

/// A login form sent from another origin (another site's page, or another service's on
/// this host, which could have set the double-submit cookie).
fn foreign(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    origin != format!("https://{host}")
}

/// Whether the form's CSRF value is the login cookie's.
fn double_submitted(headers: &HeaderMap, field: &str) -> bool {
    cookie(headers, LOGIN_COOKIE).is_some_and(|c| !field.is_empty() && same_secret(c, field))
}

fn unavailable(e: &AdminError) -> Response {
    tracing::warn!("Manager login could not be decided: {e}");
    crate::html::message_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Log in",
        "the login could not be checked now; try again shortly",
    )
}

/// Opens a browser session for `name` and sends the browser to the dashboard.
async fn open_session(shared: &Shared, conn: &Conn, name: &str, second_factor: bool) -> Response {
    let token = random_token();
    let now = now_us();
    let login = WebLogin {
        kind: WebLoginKind::Cookie,
        service: kept_under(shared, name),
        account: name.to_owned(),
        user: name.to_owned(),
        method: METHOD.to_owned(),
        second_factor,
        session_id: conn.id.clone(),
        csrf_hash: Some(hashed(&csrf_of(&token))),
        since_us: now,
        used_us: now,
        idle_us: micros(shared.config.session_timeout),
        expires_us: now.saturating_add(micros(shared.config.session_lifetime)),
        tries_left: 0,
    };
    match shared
        .sessions
        .add_web_login(&hashed(&token), &login, now, MAX_SESSIONS, true)
        .await
    {
        Ok(true) => {}
        _ => {
            return crate::html::message_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Log in",
                "the session could not be kept; try again shortly",
            );
        }
    }
    let response = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
    let response = with_cookie(
        response,
        &set_cookie(SESSION_COOKIE, &token, shared.config.session_lifetime),
    );
    with_cookie(response, &set_cookie(PENDING_COOKIE, "", Duration::ZERO))
}

/// `POST /login`.
pub(crate) async fn submit(
    State(shared): State<Arc<Shared>>,
    Extension(conn): Extension<Conn>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if !double_submitted(&headers, &form.csrf) || foreign(&headers) {
        return login_page(
            StatusCode::FORBIDDEN,
            Some("The form expired; log in again."),
        );
    }
    let step = shared
        .ops
        .login(&origin(&shared, &conn), &form.name, &form.password)
        .await;
    match step {
        Ok(LoginStep::Done(identity)) => open_session(&shared, &conn, &identity.name, false).await,
        Ok(LoginStep::NeedsCode) => {
            let token = random_token();
            let now = now_us();
            let pending = WebLogin {
                kind: WebLoginKind::Pending,
                service: kept_under(&shared, &form.name),
                account: form.name.clone(),
                user: form.name.clone(),
                method: METHOD.to_owned(),
                second_factor: false,
                session_id: conn.id.clone(),
                csrf_hash: None,
                since_us: now,
                used_us: now,
                idle_us: micros(PENDING_FOR),
                expires_us: now.saturating_add(micros(PENDING_FOR)),
                tries_left: CODE_TRIES,
            };
            match shared
                .sessions
                .add_web_login(&hashed(&token), &pending, now, MAX_SESSIONS, true)
                .await
            {
                Ok(true) => with_cookie(
                    code_page(StatusCode::OK, &form.csrf, None),
                    &set_cookie(PENDING_COOKIE, &token, PENDING_FOR),
                ),
                _ => crate::html::message_page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Log in",
                    "the login could not be kept; try again shortly",
                ),
            }
        }
        Err(AdminError::LoginFailed) => login_page(
            StatusCode::UNAUTHORIZED,
            Some("Wrong name or password, or this administrator may not log in."),
        ),
        Err(e) => unavailable(&e),
    }
}

/// `POST /login/code`.
pub(crate) async fn code(
    State(shared): State<Arc<Shared>>,
    Extension(conn): Extension<Conn>,
    headers: HeaderMap,
    Form(form): Form<CodeForm>,
) -> Response {
    if !double_submitted(&headers, &form.csrf) || foreign(&headers) {
        return login_page(
            StatusCode::FORBIDDEN,
            Some("The form expired; log in again."),
        );
    }
    let Some(token) = cookie(&headers, PENDING_COOKIE) else {
        return login_page(StatusCode::UNAUTHORIZED, Some("Log in again."));
    };
    // Taken, not read: one attempt at a time, on whichever node, uses it.
    let pending = shared
        .sessions
        .take_web_login(&hashed(token), WebLoginKind::Pending)
        .await
        .ok()
        .flatten()
        .filter(|p| {
            p.service == kept_under(&shared, &p.account)
                && p.method == METHOD
                && p.in_force(now_us())
        });
    let Some(pending) = pending else {
        return login_page(StatusCode::UNAUTHORIZED, Some("Log in again."));
    };
    match shared
        .ops
        .login_code(&origin(&shared, &conn), &pending.account, &form.code)
        .await
    {
        Ok(identity) => open_session(&shared, &conn, &identity.name, true).await,
        Err(AdminError::LoginFailed) if pending.tries_left > 1 => {
            let again = WebLogin {
                tries_left: pending.tries_left - 1,
                ..pending
            };
            let _ = shared
                .sessions
                .add_web_login(&hashed(token), &again, now_us(), MAX_SESSIONS, true)
                .await;
            code_page(
                StatusCode::UNAUTHORIZED,
                &form.csrf,
                Some("Wrong code; try the current one."),
            )
        }
        Err(AdminError::LoginFailed) => login_page(
            StatusCode::UNAUTHORIZED,
            Some("Too many wrong codes; log in again."),
        ),
        Err(e) => unavailable(&e),
    }
}

/// `POST /logout`.
pub(crate) async fn logout(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Response {
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        let _ = shared
            .sessions
            .take_web_login(&hashed(token), WebLoginKind::Cookie)
            .await;
    }
    if let Err(e) = shared.ops.logged_out(&caller.actor).await {
        tracing::warn!("cannot record a logout: {e}");
    }
    let response = (StatusCode::SEE_OTHER, [(header::LOCATION, "/login")]).into_response();
    with_cookie(response, &set_cookie(SESSION_COOKIE, "", Duration::ZERO))
}
