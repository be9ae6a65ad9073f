//! The account layer in front of every account-only route: a bearer token, a browser
//! session cookie, or HTTP Basic, resolved to a core session; or 401 (a redirect to the
//! login page for browser pages).
//!
//! A login is kept across requests (sessions.rs), but never trusted blindly: each request
//! passes the account checks again (enabled, expiry, its own address, its protocol, the
//! second factor) through [`wharf_auth::Authenticator::readmit`], against the account as
//! it is now (an LDAP or HTTP method's answer is trusted for `recheck_after` only), and
//! gets a copy of the kept session that records its own connection's address. When the
//! account resolves differently (rules, home, groups, limits...), a new core session is
//! opened for it and kept in place of the old. Only the credential's verification is saved.
//!
//! State-changing requests are refused (403 and an event) when they come from another
//! origin (`Origin` header), and, on a cookie session, when they do not echo the session's
//! CSRF token in `X-CSRF-Token`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use wharf_auth::{Attempt, Authenticated, Credential, Denied, Grant};
use wharf_core::web_sessions::WebLogin;
use wharf_core::{EventKind, Session, SessionInfo};
use wharf_types::Protocol;

use crate::server::{Conn, Shared};
use crate::sessions::Found;

/// The answer to a request without valid credentials.
pub(crate) fn unauthorized(message: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(
            header::WWW_AUTHENTICATE,
            "Basic realm=\"Wharf\", charset=\"UTF-8\"",
        )],
        axum::Json(serde_json::json!({ "error": message })),
    )
        .into_response()
}

/// The CSRF token of the browser session a request came with (a request extension).
#[derive(Clone)]
pub(crate) struct Csrf(pub(crate) String);

/// The session cookie's name: `__Host-` on HTTPS, so it can only be set by this origin.
pub(crate) fn cookie_name(https: bool) -> &'static str {
    if https { "__Host-wharf" } else { "wharf" }
}

pub(crate) use wharf_net::http_conn::cookie;

fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// True when a state-changing request names another origin than the one it reached.
pub(crate) fn cross_origin(shared: &Shared, request: &Request) -> bool {
    if !changes_state(request.method()) {
        return false;
    }
    let Some(origin) = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let host = request_host(request).unwrap_or("");
    let scheme = if shared.config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    origin != format!("{scheme}://{host}")
}

/// The host (and port) a request was sent to: HTTP/2's `:authority`, or `Host`.
pub(crate) fn request_host(request: &Request) -> Option<&str> {
    request.uri().authority().map(|a| a.as_str()).or_else(|| {
        request
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
    })
}

fn forbidden(shared: &Shared, conn: &Conn, why: &str) -> Response {
    shared.events.emit(
        shared
            .event(EventKind::CommandRefused, conn)
            .failed(why.to_owned()),
    );
    (
        StatusCode::FORBIDDEN,
        axum::Json(serde_json::json!({ "error": why })),
    )
        .into_response()
}

/// Middleware: puts the caller's `Arc<Session>` into the request, or refuses it.
pub(crate) async fn require_account(
    State(shared): State<Arc<Shared>>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(conn) = request.extensions().get::<Conn>().cloned() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    if cross_origin(&shared, &request) {
        return forbidden(&shared, &conn, "request from another origin refused");
    }
    // WebDAV clients log in with Basic; their sessions record `webdav`.
    let protocol = if request.uri().path().starts_with(crate::dav::PREFIX) {
        Protocol::Webdav
    } else {
        shared.config.protocol()
    };
    let name = cookie_name(shared.config.tls.is_some());
    if bearer(request.headers()).is_none()
        && let Some(value) = cookie(request.headers(), name)
    {
        let browser = match shared.sessions.get_cookie(value).await {
            Ok(Some(browser)) => browser,
            Ok(None) => return login_again(&request),
            Err(e) => return unavailable(&e),
        };
        let echoed = request
            .headers()
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok());
        if changes_state(request.method()) && !browser.echoed(echoed) {
            return forbidden(&shared, &conn, "missing or wrong CSRF token");
        }
        let found = browser.found;
        let Ok(session) = go_on(&shared, &conn, found, protocol, "cookie").await else {
            return login_again(&request);
        };
        request.extensions_mut().insert(session);
        request.extensions_mut().insert(Csrf(browser.csrf));
        return next.run(request).await;
    }
    match authenticate(&shared, &conn, request.headers(), protocol).await {
        Ok(session) => {
            request.extensions_mut().insert(session);
            next.run(request).await
        }
        Err(_) if is_page(&request) => login_again(&request),
        Err(response) => response,
    }
}

/// The answer when kept logins cannot be read or written (the store is unreachable): the
/// request is refused, never let through.
pub(crate) fn unavailable(e: &wharf_core::CoreError) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(serde_json::json!({
            "error": format!("logins cannot be checked now: {}", e.message)
        })),
    )
        .into_response()
}

/// Browser pages (as opposed to the API) send people to the login page.
fn is_page(request: &Request) -> bool {
    let path = request.uri().path();
    path.starts_with("/browse") || path == "/logout"
}

fn login_again(request: &Request) -> Response {
    if is_page(request) {
        (StatusCode::SEE_OTHER, [(header::LOCATION, "/login")]).into_response()
    } else {
        unauthorized("session expired; log in again")
    }
}

/// The bearer token of a request, if any.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// What a password login led to.
pub(crate) enum LoggedIn {
    /// A core session.
    Session(Arc<Session>),
    /// The password is right; the one-time code is still to come (the web client's second
    /// step). Nothing is open yet.
    NeedsCode {
        account: Arc<wharf_core::Account>,
        by: String,
        user: String,
    },
}

/// Checks a user name and password: the events, the failure delay, and a new core session.
/// `code_appended`: a one-time code, if the account has one, follows the password (HTTP
/// Basic); otherwise it is asked for afterwards ([`LoggedIn::NeedsCode`]).
pub(crate) async fn log_in(
    shared: &Arc<Shared>,
    conn: &Conn,
    user: &str,
    password: &str,
    protocol: Protocol,
    code_appended: bool,
) -> Result<LoggedIn, Response> {
    match shared
        .auth
        .authenticate(
            user,
            Credential::Password(password),
            Attempt {
                service: &shared.config.name,
                protocol,
                offers: &[protocol],
                remote: conn.remote,
                code_appended,
            },
        )
        .await
    {
        Ok(Authenticated {
            account,
            by,
            needs_code: true,
            ..
        }) => Ok(LoggedIn::NeedsCode {
            account,
            by,
            user: user.to_owned(),
        }),
        Ok(authenticated) => open_login(shared, conn, authenticated.grant(), user, protocol)
            .await
            .map(LoggedIn::Session),
        Err(failure) => {
            let mut failed = shared
                .event(EventKind::LoginFailed, conn)
                .failed(failure.reason())
                .attr("method", "password")
                .attr("cause", failure.code())
                .attr("authenticator", failure.by());
            failed.account = Some(wharf_core::shown_name(user));
            failed.protocol = Some(protocol);
            shared.events.emit(failed);
            // Slows guessing, as the other protocols do.
            tokio::time::sleep(Duration::from_secs(1)).await;
            Err(unauthorized("login incorrect"))
        }
    }
}

/// Records a successful login whose one-time code came in a second step (on this node or
/// another), and opens its core session for the account as it resolves now.
pub(crate) async fn open_after_code(
    shared: &Arc<Shared>,
    conn: &Conn,
    pending: &WebLogin,
    protocol: Protocol,
) -> Result<Arc<Session>, Response> {
    let attempt = Attempt {
        service: &shared.config.name,
        protocol,
        offers: &[protocol],
        remote: conn.remote,
        code_appended: true,
    };
    let recheck_after = shared.sessions.recheck_after();
    let resumed = shared
        .auth
        .resume(
            &pending.account,
            &pending.method,
            true,
            Instant::now(),
            attempt,
            recheck_after,
        )
        .await;
    match resumed {
        Ok(grant) => open_login(shared, conn, grant, &pending.user, protocol).await,
        Err(denied) => {
            let account = pending.account.clone();
            Err(refuse(shared, conn, &denied, account, protocol, "one-time-code").await)
        }
    }
}

/// Records a successful login and opens its core session.
async fn open_login(
    shared: &Arc<Shared>,
    conn: &Conn,
    grant: Grant,
    user: &str,
    protocol: Protocol,
) -> Result<Arc<Session>, Response> {
    let account = Arc::clone(&grant.account);
    let mut ok = shared
        .event(EventKind::LoginSucceeded, conn)
        .attr("method", "password")
        .attr("authenticator", &grant.by);
    if grant.second_factor {
        ok = ok.attr("second_factor", "totp");
    }
    // The account is the name the method gave (a directory's own spelling); the name as
    // typed is kept beside it when it differs.
    if user != account.name.as_str() {
        ok = ok.attr("login_name", wharf_core::shown_name(user));
    }
    ok.account = Some(account.name.to_string());
    ok.protocol = Some(protocol);
    shared.events.emit(ok);
    shared.sessions.register(grant);
    let info = SessionInfo {
        id: conn.id.clone(),
        service: shared.config.name.clone(),
        protocol,
        remote: Some(conn.remote),
        max_file_size: shared.config.max_file_size,
        cut: Default::default(),
    };
    open_core(shared, account, info).await
}

/// A core session for `account`, or 503 when its home cannot be opened.
async fn open_core(
    shared: &Shared,
    account: Arc<wharf_core::Account>,
    info: SessionInfo,
) -> Result<Arc<Session>, Response> {
    let session = Session::open(account, info, shared.events.clone())
        .await
        .map_err(|e| {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({ "error": e.message })),
            )
                .into_response()
        })?;
    Ok(Arc::new(session))
}

async fn authenticate(
    shared: &Arc<Shared>,
    conn: &Conn,
    headers: &HeaderMap,
    protocol: Protocol,
) -> Result<Arc<Session>, Response> {
    if let Some(token) = bearer(headers) {
        let found = shared
            .sessions
            .get_token(token)
            .await
            .map_err(|e| unavailable(&e))?;
        let Some(found) = found else {
            shared.events.emit(
                shared
                    .event(EventKind::LoginFailed, conn)
                    .failed("unknown or expired token")
                    .attr("method", "token"),
            );
            return Err(unauthorized("unknown or expired token; log in again"));
        };
        return go_on(shared, conn, found, protocol, "token").await;
    }
    let Some(basic) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    else {
        return Err(unauthorized("log in with HTTP Basic or a bearer token"));
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(basic.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok());
    let Some((user, password)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
        shared.events.emit(
            shared
                .event(EventKind::ProtocolError, conn)
                .failed("malformed Basic credentials"),
        );
        return Err(unauthorized("malformed Basic credentials"));
    };
    let key = shared.sessions.basic_key(protocol, user, password);
    if let Some(kept) = shared.sessions.get_basic(&key, &conn.id) {
        return readmit(shared, conn, kept, protocol, "password").await;
    }
    let LoggedIn::Session(session) = log_in(shared, conn, user, password, protocol, true).await?
    else {
        // With the code appended there is no second step to wait for.
        return Err(unauthorized("login incorrect"));
    };
    // A one-time code is good once: a header that carried one is remembered for this
    // connection only, so no other connection or address can replay it.
    let bound = shared
        .sessions
        .grant_of(&session)
        .is_none_or(|g| g.second_factor)
        .then_some(conn.id.as_str());
    shared
        .sessions
        .insert_basic(key, Arc::clone(&session), bound);
    Ok(session)
}

/// One more request of a token or browser session: of the session this node keeps for
/// it, or of one opened here now for a login made on another node.
async fn go_on(
    shared: &Arc<Shared>,
    conn: &Conn,
    found: Found,
    protocol: Protocol,
    method: &str,
) -> Result<Arc<Session>, Response> {
    match found {
        Found::Kept(kept) => readmit(shared, conn, kept, protocol, method).await,
        Found::Resume { key, login } => resume(shared, conn, key, login, protocol, method).await,
    }
}

/// A login kept in the store that this node has no session for: the account checks
/// (the account resolved as it is now), then a core session under the login's session id.
async fn resume(
    shared: &Arc<Shared>,
    conn: &Conn,
    key: String,
    login: WebLogin,
    protocol: Protocol,
    method: &str,
) -> Result<Arc<Session>, Response> {
    let age = login_age(login.since_us);
    let since = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
    let attempt = Attempt {
        service: &shared.config.name,
        protocol,
        offers: &[protocol],
        remote: conn.remote,
        code_appended: true,
    };
    let recheck_after = shared.sessions.recheck_after();
    let resumed = shared
        .auth
        .resume(
            &login.account,
            &login.method,
            login.second_factor,
            since,
            attempt,
            recheck_after,
        )
        .await;
    let grant = match resumed {
        Ok(grant) => grant,
        Err(denied) => {
            if ends_login(&denied)
                && let Err(e) = shared.sessions.end(&key).await
            {
                tracing::warn!("kept login not ended: {e}");
            }
            return Err(refuse(shared, conn, &denied, login.account, protocol, method).await);
        }
    };
    let info = SessionInfo {
        id: login.session_id,
        service: shared.config.name.clone(),
        protocol,
        remote: Some(conn.remote),
        max_file_size: shared.config.max_file_size,
        cut: Default::default(),
    };
    let session = open_core(shared, Arc::clone(&grant.account), info).await?;
    shared.sessions.adopt(key, Arc::clone(&session), grant);
    Ok(Arc::new(session.readdressed(conn.remote, protocol)))
}

/// How long ago `since_us` (µs since the Unix epoch) was; nothing when it is ahead of this
/// node's clock.
fn login_age(since_us: i64) -> Duration {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let since = Duration::from_micros(u64::try_from(since_us).unwrap_or(0));
    now.saturating_sub(since)
}

/// One more request of a kept login (`method`: `password` for remembered Basic
/// credentials, `token`, `cookie`): the account checks again, for this request's address
/// and protocol, then a copy of the session that records this connection's address and
/// acts in this request's protocol (a token made over the REST API follows no link under
/// `/dav/`). When the account resolves differently now, the copy is of a new session
/// opened for the account as it is, which the login keeps from then on.
async fn readmit(
    shared: &Arc<Shared>,
    conn: &Conn,
    kept: crate::sessions::Kept,
    protocol: Protocol,
    method: &str,
) -> Result<Arc<Session>, Response> {
    if kept.session.info().cut.is_pulled() {
        // An administrator disconnected this login while this request was on its way (the
        // disconnect itself ended it here and in the store).
        if let Err(e) = shared.sessions.end(&kept.key).await {
            tracing::warn!("disconnected login not ended: {e}");
        }
        return Err(unauthorized(&format!(
            "{}; log in again",
            wharf_core::live::DISCONNECTED
        )));
    }
    let account = kept.session.account().name.to_string();
    let Some(grant) = &kept.grant else {
        // Never expected: a kept login whose grant is unknown is not used.
        let failure = wharf_auth::AuthFailure::Misconfigured(
            "the login's account is no longer known".to_owned(),
        );
        let denied = Denied { failure, by: None };
        return Err(refuse(shared, conn, &denied, account, protocol, method).await);
    };
    let attempt = Attempt {
        service: &shared.config.name,
        protocol,
        offers: &[protocol],
        remote: conn.remote,
        code_appended: true,
    };
    let recheck_after = shared.sessions.recheck_after();
    let renewed = match shared.auth.readmit(grant, attempt, recheck_after).await {
        Ok(renewed) => renewed,
        Err(denied) => {
            if ends_login(&denied)
                && let Err(e) = shared.sessions.end(&kept.key).await
            {
                tracing::warn!("kept login not ended: {e}");
            }
            return Err(refuse(shared, conn, &denied, account, protocol, method).await);
        }
    };
    let session = match renewed {
        None => kept.session,
        Some(renewed) => {
            let session = if Arc::ptr_eq(&renewed.account, &grant.account) {
                Arc::clone(&kept.session)
            } else {
                // The account changed since the session was opened: the login goes on in
                // a session for the account as it is now, under the same session id.
                let info = kept.session.info().clone();
                open_core(shared, Arc::clone(&renewed.account), info).await?
            };
            shared
                .sessions
                .renew(&kept.key, &kept.session, Arc::clone(&session), renewed);
            session
        }
    };
    Ok(Arc::new(session.readdressed(conn.remote, protocol)))
}

/// Whether a refusal ends the kept login for good: the account is gone or no longer
/// vouched for, and only a new login can tell otherwise. A refusal of this request alone
/// (its address, its protocol) or of the account's settings keeps the login for later.
fn ends_login(denied: &Denied) -> bool {
    matches!(
        denied.code(),
        "login-expired" | "unknown-account" | "refused" | "not-in-group"
    )
}

/// Records a kept login's refusal and answers 401 (after the failure delay).
async fn refuse(
    shared: &Arc<Shared>,
    conn: &Conn,
    denied: &Denied,
    account: String,
    protocol: Protocol,
    method: &str,
) -> Response {
    let mut failed = shared
        .event(EventKind::LoginFailed, conn)
        .failed(denied.reason())
        .attr("method", method)
        .attr("cause", denied.code())
        .attr("authenticator", denied.by());
    failed.account = Some(account);
    failed.protocol = Some(protocol);
    shared.events.emit(failed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    if denied.code() == "login-expired" {
        unauthorized("session expired; log in again")
    } else {
        unauthorized("login incorrect")
    }
}
