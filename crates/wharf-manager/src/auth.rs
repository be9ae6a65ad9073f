//! Who is calling: a browser session (its cookie, kept where every node finds it) or an
//! API token; the role each route needs; and, for a browser's changes, the CSRF token and
//! the origin. One guard runs before every handler, from the route table.
//!
//! A browser session is a kept login of this service's name (`method` `manager`): a file
//! service's cookie is not one, whatever it holds. Every request checks the administrator
//! again (removed or disabled: logged out; its role as it is now). Only the SHA-256 of a
//! cookie or token is ever looked up or kept; a session's CSRF token is an HMAC of its
//! cookie, so any node can give it to the session's pages.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use wharf_admin::Actor;
use wharf_core::EventKind;
use wharf_core::web_sessions::{WebLogin, WebLoginKind};

use crate::routes::{Surface, route_need};
use crate::server::{Conn, Shared};

/// The browser session's cookie (`__Host-`: only this origin, over TLS, may set it).
pub(crate) const SESSION_COOKIE: &str = "__Host-wharf-manager";
/// A login whose password was accepted, waiting for its one-time code.
pub(crate) const PENDING_COOKIE: &str = "__Host-wharf-manager-pending";
/// The login form's double-submit CSRF value.
pub(crate) const LOGIN_COOKIE: &str = "__Host-wharf-manager-login";
/// What a Manager browser session's kept login names as its method.
pub(crate) const METHOD: &str = "manager";
/// The largest form body a browser sends the console (CSRF is read from it).
// A configuration (at most `MAX_CONFIGURATION`) URL-encoded may take three times as many
// bytes, and the form's other fields a few more.
const MAX_FORM: usize = 3 * crate::MAX_CONFIGURATION + 16 * 1024;
/// Browser sessions (and, apart, logins waiting for a code) one administrator holds at
/// once; beyond, its own least recently used goes first. Kept per administrator, so nobody
/// can push another administrator's sessions out by logging in many times.
pub(crate) const MAX_SESSIONS: usize = 20;

/// The name a kept login is filed under: the service and the administrator, so the cap on
/// logins applies to each administrator alone.
pub(crate) fn kept_under(shared: &Shared, admin: &str) -> String {
    format!("{}/{admin}", shared.config.name)
}

/// The caller of a request that passed the guard (a request extension).
#[derive(Clone, Debug)]
pub(crate) struct Caller {
    pub(crate) actor: Actor,
    /// The session's CSRF token, for the forms of its pages (`None` for an API token).
    pub(crate) csrf: Option<String>,
    /// The browser session's sealing key (`None` for an API token).
    pub(crate) seal: Option<SealKey>,
}

/// A key only a browser session's own requests derive (from its HttpOnly cookie, never
/// shown to a page), sealing what a page hands the browser and must get back unchanged: a
/// drafted authenticator waiting for its first code.
#[derive(Clone)]
pub(crate) struct SealKey([u8; 32]);

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(..)")
    }
}

impl SealKey {
    fn of(cookie: &str) -> SealKey {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, cookie.as_bytes());
        let derived = aws_lc_rs::hmac::sign(&key, b"wharf manager sealing key");
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(&derived.as_ref()[..32]);
        SealKey(bytes)
    }

    /// The seal of `data`, hex.
    pub(crate) fn seal(&self, data: &[u8]) -> String {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &self.0);
        wharf_types::hex(aws_lc_rs::hmac::sign(&key, data).as_ref())
    }

    /// Whether `seal` is this key's seal of `data` (compared in constant time).
    pub(crate) fn opens(&self, data: &[u8], seal: &str) -> bool {
        aws_lc_rs::constant_time::verify_slices_are_equal(
            self.seal(data).as_bytes(),
            seal.as_bytes(),
        )
        .is_ok()
    }
}

pub(crate) fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

pub(crate) fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

pub(crate) fn random_token() -> String {
    wharf_types::hex(&rand::random::<[u8; 32]>())
}

/// The SHA-256 of a token, as kept logins are keyed.
pub(crate) fn hashed(token: &str) -> String {
    wharf_types::hex(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()).as_ref(),
    )
}

/// A session's CSRF token: an HMAC keyed by its cookie.
pub(crate) fn csrf_of(cookie: &str) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, cookie.as_bytes());
    wharf_types::hex(aws_lc_rs::hmac::sign(&key, b"wharf manager csrf token").as_ref())
}

/// Compares two secrets in constant time.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

pub(crate) use wharf_net::http_conn::cookie;

/// A `Set-Cookie` value for this origin only, unreadable by scripts, never sent by
/// another site's request.
pub(crate) fn set_cookie(name: &str, value: &str, max_age: Duration) -> String {
    format!(
        "{name}={value}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={}",
        max_age.as_secs()
    )
}

fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// A browser's change sent from another origin (a page elsewhere posting a form here).
pub(crate) fn cross_origin(request: &Request) -> bool {
    let Some(origin) = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let host = request
        .uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| {
            request
                .headers()
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
        })
        .unwrap_or("");
    origin != format!("https://{host}")
}

/// The browser session a cookie names, if it is one of this service's and in force.
pub(crate) async fn session_of(shared: &Shared, cookie: &str) -> Option<WebLogin> {
    let touch_after = micros(shared.config.session_timeout) / 8;
    let login = shared
        .sessions
        .web_login(&hashed(cookie), WebLoginKind::Cookie, now_us(), touch_after)
        .await
        .ok()
        .flatten()?;
    (login.service == kept_under(shared, &login.account) && login.method == METHOD).then_some(login)
}

/// What the guard found out about the caller.
enum Found {
    Nobody,
    Caller(Caller),
    /// Credentials were given and are not good: a bad token (recorded as a failed login).
    Refused,
    /// The store could not say (down, restarting): not the caller's fault.
    Unavailable,
}

/// The bearer token of `Authorization`, the scheme matched case-insensitively (RFC 9110).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The caller of a request on `surface`: the admin API takes an API token or the browser
/// session's cookie; the console takes the cookie only, so a token never drives the forms
/// a person uses (an administrator's own password and one-time codes among them).
async fn find_caller(shared: &Shared, conn: &Conn, headers: &HeaderMap, surface: Surface) -> Found {
    if surface == Surface::Api
        && let Some(token) = bearer(headers)
    {
        return match shared.ops.token_identity(token).await {
            Ok(Some(found)) => Found::Caller(Caller {
                actor: Actor::admin(
                    found.identity.name,
                    found.identity.role,
                    Some(found.token),
                    &shared.config.name,
                    conn.remote,
                    &conn.id,
                ),
                csrf: None,
                seal: None,
            }),
            Ok(None) => {
                let event = shared
                    .event(EventKind::AdminLoginFailed, conn)
                    .failed("Manager API token refused: unknown, expired, or its administrator disabled or removed")
                    .attr("cause", "unknown-token");
                shared.events.emit(event);
                Found::Refused
            }
            Err(e) => {
                tracing::warn!("Manager token check failed: {e}");
                Found::Unavailable
            }
        };
    }
    let Some(cookie) = cookie(headers, SESSION_COOKIE) else {
        return Found::Nobody;
    };
    let Some(login) = session_of(shared, cookie).await else {
        return Found::Nobody;
    };
    match shared.ops.readmit(&login.account).await {
        Ok(Some(identity)) => Found::Caller(Caller {
            actor: Actor::admin(
                identity.name,
                identity.role,
                None,
                &shared.config.name,
                conn.remote,
                &conn.id,
            ),
            csrf: Some(csrf_of(cookie)),
            seal: Some(SealKey::of(cookie)),
        }),
        Ok(None) => Found::Nobody,
        Err(e) => {
            tracing::warn!("Manager session check failed: {e}");
            Found::Unavailable
        }
    }
}

fn unauthenticated(surface: Surface) -> Response {
    match surface {
        Surface::Api => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer realm=\"wharf-manager\"")],
            axum::Json(serde_json::json!({"error": "log in, or send an API token"})),
        )
            .into_response(),
        Surface::Console => (StatusCode::SEE_OTHER, [(header::LOCATION, "/login")]).into_response(),
    }
}

pub(crate) fn refusal(surface: Surface, status: StatusCode, message: &str) -> Response {
    match surface {
        Surface::Api => (status, axum::Json(serde_json::json!({"error": message}))).into_response(),
        Surface::Console => crate::html::message_page(status, "Refused", message),
    }
}

/// Reads a form body (bounded) for its `csrf` field and gives the request back whole.
async fn form_csrf(request: Request) -> Result<(Request, Option<String>), Response> {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_FORM).await.map_err(|_| {
        refusal(
            Surface::Console,
            StatusCode::PAYLOAD_TOO_LARGE,
            "the form is too large",
        )
    })?;
    let csrf = form_urlencoded_field(&bytes, "csrf");
    Ok((Request::from_parts(parts, Body::from(bytes)), csrf))
}

/// One field of an `application/x-www-form-urlencoded` body.
fn form_urlencoded_field(body: &[u8], name: &str) -> Option<String> {
    form_urlencoded::parse(body)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The guard every route passes: the route's need for the method, the caller, its role,
/// and for a browser's change its origin and CSRF token.
pub(crate) async fn guard(
    State(shared): State<Arc<Shared>>,
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let Some(matched) = matched else {
        return next.run(request).await;
    };
    let Some((surface, need)) = route_need(matched.as_str(), request.method()) else {
        // The router answers 405 for a method the table does not give.
        return next.run(request).await;
    };
    let Some(need) = need else {
        return next.run(request).await;
    };
    let Some(conn) = request.extensions().get::<Conn>().cloned() else {
        return refusal(surface, StatusCode::INTERNAL_SERVER_ERROR, "no connection");
    };
    let caller = match find_caller(&shared, &conn, request.headers(), surface).await {
        Found::Caller(caller) => caller,
        Found::Nobody => return unauthenticated(surface),
        Found::Refused => {
            return refusal(
                surface,
                StatusCode::UNAUTHORIZED,
                "the API token is not valid",
            );
        }
        Found::Unavailable => {
            return refusal(
                surface,
                StatusCode::SERVICE_UNAVAILABLE,
                "the store cannot be reached; try again shortly",
            );
        }
    };
    if !caller.actor.role().may(need) {
        let what = format!("{} {}", request.method(), request.uri().path());
        if let Err(e) = shared.ops.refused(&caller.actor, &what).await {
            tracing::warn!("cannot record a refusal: {e}");
        }
        return refusal(
            surface,
            StatusCode::FORBIDDEN,
            &format!("the {} role may not do this", caller.actor.role()),
        );
    }
    let mut request = request;
    if let Some(expected) = &caller.csrf
        && changes_state(request.method())
    {
        if cross_origin(&request) {
            return refusal(
                surface,
                StatusCode::FORBIDDEN,
                "cross-origin request refused",
            );
        }
        let header = request
            .headers()
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let given = match header {
            Some(given) => Some(given),
            None => {
                let (whole, field) = match form_csrf(request).await {
                    Ok(read) => read,
                    Err(refused) => return refused,
                };
                request = whole;
                field
            }
        };
        if !given.is_some_and(|g| same_secret(&g, expected)) {
            return refusal(
                surface,
                StatusCode::FORBIDDEN,
                "the form's CSRF token is missing or wrong; reload the page",
            );
        }
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}
