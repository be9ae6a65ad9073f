//! Every route of the service in one table, each classed public or account-only.
//!
//! The router is built from the same groups the table names, and a test walks the table:
//! every account-only route must answer 401 without credentials, every public one must not,
//! and the OpenAPI document must list exactly these routes.

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::MethodRouter;

use crate::server::Shared;
use crate::{api, dav, web};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Anyone, before login.
    Public,
    /// An authenticated account only.
    Account,
}

/// One route.
#[derive(Debug)]
pub(crate) struct Route {
    pub(crate) path: &'static str,
    pub(crate) methods: &'static [&'static str],
    pub(crate) access: Access,
}

/// The whole surface of the service.
pub(crate) const ROUTES: &[Route] = &[
    Route {
        path: "/",
        methods: &["GET"],
        access: Access::Public,
    },
    Route {
        path: "/login",
        methods: &["GET", "POST"],
        access: Access::Public,
    },
    Route {
        path: "/login/code",
        methods: &["POST"],
        access: Access::Public,
    },
    Route {
        path: "/static/app.js",
        methods: &["GET"],
        access: Access::Public,
    },
    Route {
        path: "/static/app.css",
        methods: &["GET"],
        access: Access::Public,
    },
    Route {
        path: "/logout",
        methods: &["POST"],
        access: Access::Account,
    },
    Route {
        path: "/browse/",
        methods: &["GET"],
        access: Access::Account,
    },
    Route {
        path: "/browse/{path}",
        methods: &["GET"],
        access: Access::Account,
    },
    Route {
        path: "/dav/",
        methods: &["*"],
        access: Access::Account,
    },
    Route {
        path: "/dav/{path}",
        methods: &["*"],
        access: Access::Account,
    },
    Route {
        path: "/api/v1/openapi.json",
        methods: &["GET"],
        access: Access::Public,
    },
    Route {
        path: "/api/v1/token",
        methods: &["POST", "DELETE"],
        access: Access::Account,
    },
    Route {
        path: "/api/v1/files",
        methods: &["GET"],
        access: Access::Account,
    },
    Route {
        path: "/api/v1/files/{path}",
        methods: &["GET", "PUT", "DELETE"],
        access: Access::Account,
    },
    Route {
        path: "/api/v1/folders/{path}",
        methods: &["POST"],
        access: Access::Account,
    },
    Route {
        path: "/api/v1/stat/{path}",
        methods: &["GET"],
        access: Access::Account,
    },
    Route {
        path: "/api/v1/rename",
        methods: &["POST"],
        access: Access::Account,
    },
];

/// The handler of one method of one route. Only routes in [`ROUTES`] get a handler.
fn with_handler(
    methods: MethodRouter<Arc<Shared>>,
    path: &str,
    method: &str,
) -> MethodRouter<Arc<Shared>> {
    match (path, method) {
        ("/", "GET") => methods.get(web::index),
        ("/login", "GET") => methods.get(web::login_page),
        ("/login", "POST") => methods.post(web::login_submit),
        ("/login/code", "POST") => methods.post(web::login_code),
        ("/static/app.js" | "/static/app.css", "GET") => methods.get(web::asset),
        ("/logout", "POST") => methods.post(web::logout),
        ("/browse/" | "/browse/{path}", "GET") => methods.get(web::browse),
        // WebDAV takes every method, its own (PROPFIND, MKCOL, MOVE, LOCK...) included.
        ("/dav/" | "/dav/{path}", "*") => axum::routing::any(dav::handle),
        ("/api/v1/openapi.json", "GET") => methods.get(api::openapi),
        ("/api/v1/token", "POST") => methods.post(api::token_create),
        ("/api/v1/token", "DELETE") => methods.delete(api::token_delete),
        ("/api/v1/files" | "/api/v1/files/{path}", "GET") => methods.get(api::files_get),
        ("/api/v1/files/{path}", "PUT") => methods.put(api::files_put),
        ("/api/v1/files/{path}", "DELETE") => methods.delete(api::files_delete),
        ("/api/v1/folders/{path}", "POST") => methods.post(api::folder_create),
        ("/api/v1/stat/{path}", "GET") => methods.get(api::stat),
        ("/api/v1/rename", "POST") => methods.post(api::rename),
        // A table entry without a handler: the route-walking test fails on it.
        _ => methods,
    }
}

/// The router, built from [`ROUTES`]: public routes as they are, account-only ones behind
/// the account layer.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let mut public = Router::new();
    let mut account = Router::new();
    for route in ROUTES {
        let mut methods = MethodRouter::new();
        for method in route.methods {
            methods = with_handler(methods, route.path, method);
        }
        // `{path}` in the table (OpenAPI's spelling) is a catch-all that may hold slashes.
        let pattern = route.path.replace("{path}", "{*path}");
        match route.access {
            Access::Public => public = public.route(&pattern, methods),
            Access::Account => account = account.route(&pattern, methods),
        }
    }
    let account = account
        // Uploads stream through the core with their own size limit.
        .layer(DefaultBodyLimit::disable())
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&shared),
            crate::auth::require_account,
        ));
    public
        .merge(account)
        .fallback(api::not_found)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&shared),
            crate::headers::redirect_to_https,
        ))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&shared),
            crate::headers::security_headers,
        ))
        .with_state(shared)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt as _;

    /// Every route answers as its class says: account-only routes 401 without credentials,
    /// public ones 200 (405 for a method outside the table).
    #[tokio::test]
    async fn walk_every_route() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = wharf_store::Store::open_sqlite(&dir.path().join("w.db"))
            .await
            .expect("store");
        let (events, _receiver) = wharf_core::EventBus::new();
        let shared = Arc::new(Shared {
            config: crate::server::test_config(),
            auth: wharf_auth::Authenticator::new(store),
            events,
            sessions: crate::sessions::Sessions::new(
                Arc::new(wharf_core::web_sessions::MemoryWebSessions::default()),
                "http-test",
                std::time::Duration::from_secs(60),
            ),
            dav: None,
        });
        let app = router(shared);
        let conn = crate::server::Conn {
            id: "test".into(),
            remote: "127.0.0.1:1".parse().expect("address"),
        };
        for route in ROUTES {
            let uri = route.path.replace("{path}", "some/file.txt");
            for method in ["GET", "PUT", "POST", "DELETE"] {
                let request = Request::builder()
                    .method(method)
                    .uri(&uri)
                    .extension(conn.clone())
                    .body(Body::empty())
                    .expect("request");
                let status = app
                    .clone()
                    .oneshot(request)
                    .await
                    .expect("response")
                    .status();
                // Before login an account-only path answers 401 (pages: a redirect to the
                // login page) whatever the method, so nothing about it is revealed.
                match route.access {
                    Access::Account
                        if route.path.starts_with("/api/") || route.path.starts_with("/dav/") =>
                    {
                        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri}");
                    }
                    Access::Account => {
                        assert_eq!(status, StatusCode::SEE_OTHER, "{method} {uri}");
                    }
                    Access::Public if route.methods.contains(&method) => assert!(
                        status != StatusCode::UNAUTHORIZED
                            && status != StatusCode::METHOD_NOT_ALLOWED
                            && status != StatusCode::NOT_FOUND,
                        "{method} {uri}: {status}"
                    ),
                    Access::Public => {
                        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
                    }
                }
            }
        }
    }

    #[test]
    fn openapi_lists_exactly_the_routes() {
        let doc: serde_json::Value =
            serde_json::from_str(api::OPENAPI).expect("openapi.json is JSON");
        let paths = doc["paths"].as_object().expect("paths");
        let documented: std::collections::BTreeSet<String> = paths
            .iter()
            .flat_map(|(path, ops)| {
                ops.as_object()
                    .into_iter()
                    .flat_map(|o| o.keys())
                    .filter(|m| m.as_str() != "parameters")
                    .map(move |m| format!("{} {path}", m.to_uppercase()))
            })
            .collect();
        let declared: std::collections::BTreeSet<String> = ROUTES
            .iter()
            .filter(|r| r.path.starts_with("/api/"))
            .flat_map(|r| r.methods.iter().map(move |m| format!("{m} {}", r.path)))
            .collect();
        assert_eq!(documented, declared);
        for route in ROUTES.iter().filter(|r| r.path.starts_with("/api/")) {
            for method in route.methods {
                let op = &paths[route.path][method.to_lowercase()];
                let public = op["security"].as_array().is_some_and(|s| s.is_empty());
                assert_eq!(
                    public,
                    route.access == Access::Public,
                    "{method} {} security",
                    route.path
                );
            }
        }
    }
}
