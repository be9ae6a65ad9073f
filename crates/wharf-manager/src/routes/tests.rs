//! The route table walked: every route and method with no caller and with a token of each
//! role; the router and the handlers agree with the table; the OpenAPI document lists
//! exactly the API's routes with the role each needs.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use tower::ServiceExt;
use wharf_admin::{Actor, AdminError, NewAdmin, NewToken, Operations, Recorder, Role, Settings};
use wharf_core::web_sessions::MemoryWebSessions;
use wharf_core::{Event, EventBus};

use super::*;
use crate::server::{Conn, ManagerConfig, Shared};

#[derive(Default)]
struct Kept(Mutex<Vec<Event>>);

#[async_trait]
impl Recorder for Kept {
    async fn record(&self, event: Event) -> Result<(), AdminError> {
        self.0
            .lock()
            .map_err(|_| AdminError::Audit("poisoned".into()))?
            .push(event);
        Ok(())
    }
}

/// A configuration file in memory: every text checks, applying keeps it; every cluster
/// revision checks too.
#[derive(Default)]
struct Remembered(Mutex<String>);

#[async_trait]
impl crate::Configuration for Remembered {
    fn text(&self) -> Result<String, String> {
        self.0
            .lock()
            .map(|t| t.clone())
            .map_err(|_| "poisoned".to_owned())
    }
    fn check(&self, _: &str) -> Vec<crate::ConfigIssue> {
        Vec::new()
    }
    async fn apply(&self, text: &str) -> Result<String, Vec<crate::ConfigIssue>> {
        if let Ok(mut kept) = self.0.lock() {
            *kept = text.to_owned();
        }
        Ok("kept".to_owned())
    }
    fn check_shared(&self, _: i64, _: &str) -> Vec<crate::ConfigIssue> {
        Vec::new()
    }
    fn shared_of_file(&self) -> String {
        String::new()
    }
    async fn reload(&self) -> Result<String, String> {
        Ok("reloaded".to_owned())
    }
    async fn apply_revision(&self, _: i64) -> Result<String, String> {
        Ok("reloaded".to_owned())
    }
    async fn metrics(&self) -> Option<String> {
        Some("# TYPE wharf_connections_total counter\nwharf_connections_total 0\n".to_owned())
    }
    fn transfers(&self) -> Vec<wharf_admin::TransferInfo> {
        vec![wharf_admin::TransferInfo {
            name: "nightly".into(),
            source: "bank:/out".into(),
            destination: "finance:/in".into(),
            when: "cron \"0 2 * * *\"".into(),
        }]
    }
}

#[derive(Debug)]
struct NoCertificate;

impl rustls::server::ResolvesServerCert for NoCertificate {
    fn resolve(
        &self,
        _: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        None
    }
}

fn tls() -> Arc<rustls::ServerConfig> {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_cert_resolver(Arc::new(NoCertificate));
    Arc::new(config)
}

struct Fixture {
    router: axum::Router,
    tokens: BTreeMap<Role, String>,
    cookies: BTreeMap<Role, String>,
    recorded: Arc<Kept>,
    _dir: tempfile::TempDir,
    _events: tokio::sync::mpsc::UnboundedReceiver<Event>,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("scratch");
    let store = wharf_store::Store::open_sqlite(&dir.path().join("store.db"))
        .await
        .expect("store");
    let recorded = Arc::new(Kept::default());
    let ops = Operations::new(
        store,
        Arc::clone(&recorded) as Arc<dyn Recorder>,
        Settings {
            password_policy: Default::default(),
            ban_policy: Default::default(),
            issuer: "Wharf (test)".into(),
            node: "test".into(),
        },
    );
    let cli = Actor::cli("tester");
    let mut tokens = BTreeMap::new();
    for role in Role::ALL {
        let name = format!("admin-{role}");
        ops.add_admin(
            &cli,
            NewAdmin {
                name: name.clone(),
                password: "correct horse battery staple".into(),
                role,
                require_second_factor: false,
            },
        )
        .await
        .expect("admin");
        let made = ops
            .add_token(
                &cli,
                NewToken {
                    name: format!("token-{role}"),
                    owner: Some(name),
                    role,
                    days: 1,
                },
            )
            .await
            .expect("token");
        tokens.insert(role, made.token);
    }
    // A browser session for each role, kept as the login form would keep it.
    let sessions = Arc::new(MemoryWebSessions::default());
    let mut cookies = BTreeMap::new();
    for role in Role::ALL {
        let cookie = crate::auth::random_token();
        let now = crate::auth::now_us();
        let login = wharf_core::web_sessions::WebLogin {
            kind: wharf_core::web_sessions::WebLoginKind::Cookie,
            service: format!("manager/admin-{role}"),
            account: format!("admin-{role}"),
            user: format!("admin-{role}"),
            method: crate::auth::METHOD.into(),
            second_factor: false,
            session_id: "c0ffee".into(),
            csrf_hash: Some(crate::auth::hashed(&crate::auth::csrf_of(&cookie))),
            since_us: now,
            used_us: now,
            idle_us: 600_000_000,
            expires_us: now + 3_600_000_000,
            tries_left: 0,
        };
        use wharf_core::web_sessions::WebSessionStore as _;
        sessions
            .add_web_login(&crate::auth::hashed(&cookie), &login, now, 100, true)
            .await
            .expect("session");
        cookies.insert(role, cookie);
    }
    let (events, receiver) = EventBus::new();
    let (_, services) = tokio::sync::watch::channel(Vec::new());
    let shared = Arc::new(Shared {
        config: ManagerConfig {
            name: "manager".into(),
            addresses: Vec::new(),
            tls: tls(),
            max_connections: 8,
            max_per_ip: 8,
            header_timeout: Duration::from_secs(5),
            session_timeout: Duration::from_secs(600),
            session_lifetime: Duration::from_secs(3600),
            allow_from: Vec::new(),
            proxy: None,
        },
        ops,
        events,
        sessions,
        services,
        node: "test".into(),
        configuration: Arc::new(Remembered::default()),
    });
    Fixture {
        router: router(shared),
        tokens,
        cookies,
        recorded,
        _dir: dir,
        _events: receiver,
    }
}

fn concrete(path: &str) -> String {
    path.replace("{name}", "nobody")
        .replace("{network}", "192.0.2.1")
}

/// Who calls: nobody, an API token, or a browser session's cookie.
#[derive(Clone, Copy)]
enum Who<'a> {
    Nobody,
    Token(&'a str),
    Cookie(&'a str),
}

async fn call(
    router: &axum::Router,
    method: &str,
    path: &str,
    who: Who<'_>,
) -> axum::response::Response {
    let mut request = Request::builder().method(method).uri(concrete(path));
    match who {
        Who::Nobody => {}
        Who::Token(token) => {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        Who::Cookie(cookie) => {
            request = request
                .header(
                    header::COOKIE,
                    format!("{}={cookie}", crate::auth::SESSION_COOKIE),
                )
                .header("x-csrf-token", crate::auth::csrf_of(cookie));
        }
    }
    if matches!(method, "POST" | "PATCH") && path.starts_with("/api/") {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    let body = if path.starts_with("/api/") && matches!(method, "POST" | "PATCH") {
        Body::from("{}")
    } else {
        Body::empty()
    };
    let mut request = request.body(body).expect("request");
    request.extensions_mut().insert(Conn {
        id: "c0ffee".into(),
        remote: SocketAddr::from(([127, 0, 0, 1], 40000)),
    });
    router.clone().oneshot(request).await.expect("answer")
}

#[tokio::test]
async fn every_route_answers_every_role_as_the_table_says() {
    let f = fixture().await;
    // Logging out ends the session the walk goes on with: it comes last.
    let (last, first): (Vec<&Route>, Vec<&Route>) =
        ROUTES.iter().partition(|r| r.path == "/logout");
    for route in first.into_iter().chain(last) {
        for (method, need) in route.methods {
            let anonymous = call(&f.router, method, route.path, Who::Nobody).await;
            let status = anonymous.status();
            match need {
                None => assert!(
                    status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                    "{method} {} is public, answered {status}",
                    route.path
                ),
                Some(_) if route.path.starts_with("/api/") => assert_eq!(
                    status,
                    StatusCode::UNAUTHORIZED,
                    "{method} {} without a caller",
                    route.path
                ),
                Some(_) => {
                    assert_eq!(status, StatusCode::SEE_OTHER, "{method} {}", route.path);
                    assert_eq!(
                        anonymous.headers()[header::LOCATION],
                        "/login",
                        "{method} {}",
                        route.path
                    );
                }
            }
            let Some(need) = need else { continue };
            for role in &Role::ALL {
                // The API takes tokens; the console, browser sessions only.
                let who = if route.path.starts_with("/api/") {
                    Who::Token(&f.tokens[role])
                } else {
                    Who::Cookie(&f.cookies[role])
                };
                let status = call(&f.router, method, route.path, who).await.status();
                if role.may(*need) {
                    assert!(
                        status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                        "{role} may {method} {}, answered {status}",
                        route.path
                    );
                } else {
                    assert_eq!(
                        status,
                        StatusCode::FORBIDDEN,
                        "{role} may not {method} {}",
                        route.path
                    );
                }
            }
        }
    }
    // Every refusal for a role was recorded, naming the administrator and its token.
    let recorded = f.recorded.0.lock().expect("records");
    let refused: Vec<&Event> = recorded
        .iter()
        .filter(|e| e.kind == wharf_core::EventKind::AdminRefused)
        .collect();
    assert!(!refused.is_empty());
    assert!(refused.iter().all(|e| e.attrs.contains_key("admin")));
    assert!(refused.iter().any(|e| e.attrs.contains_key("token")));
}

#[tokio::test]
async fn a_bad_token_is_refused_and_counted_as_a_failed_login() {
    let f = fixture().await;
    for token in ["wharf_0000", "not-even-ours", ""] {
        let status = call(&f.router, "GET", "/api/v1/me", Who::Token(token))
            .await
            .status();
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
    }
}

#[tokio::test]
async fn methods_outside_the_table_are_not_served() {
    let f = fixture().await;
    for (method, path) in [
        ("DELETE", "/api/v1/events"),
        ("PUT", "/api/v1/accounts/x"),
        ("POST", "/api/v1/openapi.json"),
    ] {
        let status = call(&f.router, method, path, Who::Token(&f.tokens[&Role::Admin]))
            .await
            .status();
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
    }
    let status = call(&f.router, "GET", "/api/v1/nothing", Who::Nobody)
        .await
        .status();
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_token_is_no_console_session() {
    let f = fixture().await;
    let token = Who::Token(&f.tokens[&Role::Admin]);
    for (method, path) in [("GET", "/"), ("POST", "/me"), ("POST", "/admins")] {
        let answer = call(&f.router, method, path, token).await;
        assert_eq!(answer.status(), StatusCode::SEE_OTHER, "{method} {path}");
    }
    // Nor may it change its owner's password through the API.
    let mut request = Request::builder()
        .method("PATCH")
        .uri("/api/v1/me")
        .header(header::AUTHORIZATION, format!("Bearer {}", f.tokens[&Role::Admin]))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            r#"{"current_password":"correct horse battery staple","password":"another long pass phrase"}"#,
        ))
        .expect("request");
    request.extensions_mut().insert(Conn {
        id: "c0ffee".into(),
        remote: SocketAddr::from(([127, 0, 0, 1], 40000)),
    });
    let answer = f.router.clone().oneshot(request).await.expect("answer");
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);
}

#[test]
fn routes_and_handlers_agree() {
    for route in ROUTES {
        for (method, _) in route.methods {
            assert!(
                handler(route.path, method).is_some(),
                "{method} {} has no handler",
                route.path
            );
        }
    }
}

#[test]
fn the_openapi_document_lists_exactly_the_api_routes() {
    let doc: serde_json::Value =
        serde_json::from_str(include_str!("../openapi.json")).expect("openapi.json parses");
    let paths = doc["paths"].as_object().expect("paths");
    let mut documented = BTreeSet::new();
    for (path, methods) in paths {
        for (method, operation) in methods.as_object().expect("methods") {
            let role = operation.get("x-wharf-role").and_then(|r| r.as_str());
            documented.insert((path.clone(), method.to_uppercase(), role.map(str::to_owned)));
        }
    }
    let mut tabled = BTreeSet::new();
    for route in ROUTES.iter().filter(|r| r.path.starts_with("/api/")) {
        for (method, need) in route.methods {
            let role = need.map(|n| match n {
                Need::Read => "auditor".to_owned(),
                Need::Operate => "operator".to_owned(),
                Need::Administer => "admin".to_owned(),
            });
            tabled.insert((route.path.to_owned(), (*method).to_owned(), role));
        }
    }
    assert_eq!(documented, tabled);
}

#[tokio::test]
async fn refused_requests_answer_in_json_too() {
    let f = fixture().await;
    let token = &f.tokens[&Role::Admin];
    // Past axum's body limit, refused before a handler sees it; and past the Manager's own.
    let huge = "#".repeat(3 << 20);
    let large = "#".repeat(600 << 10);
    for (method, path, content_type, body) in [
        (
            "POST",
            "/api/v1/accounts",
            "application/json",
            r#"{"nope": 1}"#,
        ),
        ("PUT", "/api/v1/configuration", "application/toml", &huge),
        (
            "PUT",
            "/api/v1/cluster/configuration",
            "application/toml",
            &huge,
        ),
        (
            "POST",
            "/api/v1/cluster/configuration/check",
            "application/toml",
            &large,
        ),
        ("POST", "/api/v1/accounts", "text/plain", "{}"),
        ("POST", "/api/v1/accounts", "application/json", "not json"),
        ("GET", "/api/v1/events?limit=many", "application/json", ""),
        ("POST", "/api/v1/jobs/seven/retry", "application/json", ""),
    ] {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body.to_owned()))
            .expect("request");
        request.extensions_mut().insert(Conn {
            id: "c0ffee".into(),
            remote: SocketAddr::from(([127, 0, 0, 1], 40000)),
        });
        let answer = f.router.clone().oneshot(request).await.expect("answer");
        assert!(answer.status().is_client_error(), "{method} {path}");
        let bytes = axum::body::to_bytes(answer.into_body(), 1 << 16)
            .await
            .expect("body");
        let json: serde_json::Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| panic!("{method} {path}: {}", String::from_utf8_lossy(&bytes)));
        assert!(json["error"].is_string(), "{method} {path}: {json}");
    }
}
