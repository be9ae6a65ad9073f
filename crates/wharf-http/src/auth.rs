//! The account layer in front of every account-only route: HTTP Basic or a bearer token,
//! resolved to a core session, or 401.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use wharf_auth::Credential;
use wharf_core::{EventKind, Session, SessionInfo};

use crate::server::{Conn, Shared};

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

/// Middleware: puts the caller's `Arc<Session>` into the request, or answers 401.
pub(crate) async fn require_account(
    State(shared): State<Arc<Shared>>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(conn) = request.extensions().get::<Conn>().cloned() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    match authenticate(&shared, &conn, request.headers()).await {
        Ok(session) => {
            request.extensions_mut().insert(session);
            next.run(request).await
        }
        Err(response) => response,
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

async fn authenticate(
    shared: &Arc<Shared>,
    conn: &Conn,
    headers: &HeaderMap,
) -> Result<Arc<Session>, Response> {
    if let Some(token) = bearer(headers) {
        return shared
            .sessions
            .get(&format!("token:{token}"))
            .ok_or_else(|| {
                shared.events.emit(
                    shared
                        .event(EventKind::LoginFailed, conn)
                        .failed("unknown or expired token")
                        .attr("method", "token"),
                );
                unauthorized("unknown or expired token; log in again")
            });
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
    let key = shared.sessions.basic_key(user, password);
    if let Some(session) = shared.sessions.get(&key) {
        return Ok(session);
    }
    let user: String = user.chars().take(64).collect();
    let protocol = shared.config.protocol();
    match shared
        .auth
        .authenticate(&user, Credential::Password(password), &[protocol])
        .await
    {
        Ok(account) => {
            let mut ok = shared
                .event(EventKind::LoginSucceeded, conn)
                .attr("method", "password");
            ok.account = Some(user.clone());
            shared.events.emit(ok);
            let info = SessionInfo {
                id: conn.id.clone(),
                service: shared.config.name.clone(),
                protocol,
                remote: Some(conn.remote),
            };
            let session = Session::open(account, info, shared.events.clone())
                .await
                .map_err(|e| {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        axum::Json(serde_json::json!({ "error": e.message })),
                    )
                        .into_response()
                })?;
            let session = Arc::new(session);
            shared.sessions.insert_basic(key, Arc::clone(&session));
            Ok(session)
        }
        Err(failure) => {
            let mut failed = shared
                .event(EventKind::LoginFailed, conn)
                .failed(failure.reason())
                .attr("method", "password");
            failed.account = Some(user);
            shared.events.emit(failed);
            // Slows guessing, as the other protocols do.
            tokio::time::sleep(Duration::from_secs(1)).await;
            Err(unauthorized("login incorrect"))
        }
    }
}
