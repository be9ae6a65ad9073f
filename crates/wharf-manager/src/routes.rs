//! Every route of the Manager in one table, with the role each method needs (`None`:
//! anyone, before login). The router is built from this table, the guard reads it, and a
//! test walks it: every route and method with no caller and with a token of every role,
//! and the OpenAPI document must list exactly the `/api/v1/` routes.

use std::sync::Arc;

use axum::Router;
use axum::http::Method;
use axum::routing::{MethodFilter, MethodRouter, on};
use wharf_admin::Need;

use crate::server::Shared;
use crate::{api, cluster_configuration, configuration, console, login, metrics};

/// How a route's refusals look: JSON for the API, pages for the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Surface {
    Console,
    Api,
}

/// One route.
#[derive(Debug)]
pub(crate) struct Route {
    pub(crate) path: &'static str,
    /// Each method with the role it needs (`None`: public).
    pub(crate) methods: &'static [(&'static str, Option<Need>)],
}

const READ: Option<Need> = Some(Need::Read);
const OPERATE: Option<Need> = Some(Need::Operate);
const ADMINISTER: Option<Need> = Some(Need::Administer);

/// The whole surface of the Manager.
pub(crate) const ROUTES: &[Route] = &[
    // The console.
    Route {
        path: "/",
        methods: &[("GET", READ)],
    },
    Route {
        path: "/login",
        methods: &[("GET", None), ("POST", None)],
    },
    Route {
        path: "/login/code",
        methods: &[("POST", None)],
    },
    Route {
        path: "/logout",
        methods: &[("POST", READ)],
    },
    Route {
        path: "/static/manager.css",
        methods: &[("GET", None)],
    },
    Route {
        path: "/static/manager.js",
        methods: &[("GET", None)],
    },
    Route {
        path: "/accounts",
        methods: &[("GET", READ), ("POST", OPERATE)],
    },
    Route {
        path: "/accounts/{name}",
        methods: &[("GET", READ), ("POST", OPERATE)],
    },
    Route {
        path: "/groups",
        methods: &[("GET", READ), ("POST", OPERATE)],
    },
    Route {
        path: "/groups/{name}",
        methods: &[("GET", READ), ("POST", OPERATE)],
    },
    Route {
        path: "/events",
        methods: &[("GET", READ)],
    },
    Route {
        path: "/events/live",
        methods: &[("GET", READ)],
    },
    Route {
        path: "/bans",
        methods: &[("GET", READ), ("POST", OPERATE)],
    },
    Route {
        path: "/jobs",
        methods: &[("GET", READ), ("POST", OPERATE)],
    },
    Route {
        path: "/sessions",
        methods: &[("GET", READ), ("POST", OPERATE)],
    },
    Route {
        path: "/transfers",
        methods: &[("GET", READ), ("POST", OPERATE)],
    },
    Route {
        path: "/admins",
        methods: &[("GET", READ), ("POST", ADMINISTER)],
    },
    Route {
        path: "/configuration",
        methods: &[("GET", ADMINISTER), ("POST", ADMINISTER)],
    },
    Route {
        path: "/configuration/cluster",
        methods: &[("GET", ADMINISTER), ("POST", ADMINISTER)],
    },
    Route {
        path: "/me",
        methods: &[("GET", READ), ("POST", READ)],
    },
    // The admin API.
    Route {
        path: "/api/v1/openapi.json",
        methods: &[("GET", None)],
    },
    Route {
        path: "/api/v1/me",
        methods: &[("GET", READ), ("PATCH", READ)],
    },
    Route {
        path: "/api/v1/metrics",
        methods: &[("GET", READ)],
    },
    Route {
        path: "/api/v1/services",
        methods: &[("GET", READ)],
    },
    Route {
        path: "/api/v1/accounts",
        methods: &[("GET", READ), ("POST", OPERATE)],
    },
    Route {
        path: "/api/v1/accounts/{name}",
        methods: &[("GET", READ), ("PATCH", OPERATE), ("DELETE", OPERATE)],
    },
    Route {
        path: "/api/v1/accounts/{name}/may",
        methods: &[("GET", READ)],
    },
    Route {
        path: "/api/v1/groups",
        methods: &[("GET", READ), ("POST", OPERATE)],
    },
    Route {
        path: "/api/v1/groups/{name}",
        methods: &[("GET", READ), ("PATCH", OPERATE), ("DELETE", OPERATE)],
    },
    Route {
        path: "/api/v1/bans",
        methods: &[("GET", READ), ("POST", OPERATE)],
    },
    Route {
        path: "/api/v1/bans/{network}",
        methods: &[("DELETE", OPERATE)],
    },
    Route {
        path: "/api/v1/events",
        methods: &[("GET", READ)],
    },
    Route {
        path: "/api/v1/configuration",
        methods: &[("GET", ADMINISTER), ("PUT", ADMINISTER)],
    },
    Route {
        path: "/api/v1/configuration/check",
        methods: &[("POST", ADMINISTER)],
    },
    Route {
        path: "/api/v1/cluster/nodes",
        methods: &[("GET", READ)],
    },
    Route {
        path: "/api/v1/cluster/configuration",
        methods: &[("GET", ADMINISTER), ("PUT", ADMINISTER)],
    },
    Route {
        path: "/api/v1/cluster/configuration/check",
        methods: &[("POST", ADMINISTER)],
    },
    Route {
        path: "/api/v1/cluster/configuration/history",
        methods: &[("GET", ADMINISTER)],
    },
    Route {
        path: "/api/v1/jobs",
        methods: &[("GET", READ)],
    },
    Route {
        path: "/api/v1/jobs/{id}/retry",
        methods: &[("POST", OPERATE)],
    },
    Route {
        path: "/api/v1/jobs/{id}/cancel",
        methods: &[("POST", OPERATE)],
    },
    Route {
        path: "/api/v1/transfers",
        methods: &[("GET", READ)],
    },
    Route {
        path: "/api/v1/transfers/{name}/runs",
        methods: &[("GET", READ)],
    },
    Route {
        path: "/api/v1/transfers/{name}/run",
        methods: &[("POST", OPERATE)],
    },
    Route {
        path: "/api/v1/sessions",
        methods: &[("GET", READ)],
    },
    Route {
        path: "/api/v1/sessions/{id}",
        methods: &[("GET", READ), ("DELETE", OPERATE)],
    },
    Route {
        path: "/api/v1/admins",
        methods: &[("GET", READ), ("POST", ADMINISTER)],
    },
    Route {
        path: "/api/v1/admins/{name}",
        methods: &[("GET", READ), ("PATCH", ADMINISTER), ("DELETE", ADMINISTER)],
    },
    Route {
        path: "/api/v1/tokens",
        methods: &[("GET", READ), ("POST", ADMINISTER)],
    },
    Route {
        path: "/api/v1/tokens/{name}",
        methods: &[("DELETE", ADMINISTER)],
    },
];

fn surface_of(path: &str) -> Surface {
    if path.starts_with("/api/") {
        Surface::Api
    } else {
        Surface::Console
    }
}

/// The surface of the route matched as `path`, and what `method` needs on it; `None` when
/// the table does not give the method.
pub(crate) fn route_need(path: &str, method: &Method) -> Option<(Surface, Option<Need>)> {
    let route = ROUTES.iter().find(|r| r.path == path)?;
    let method = if *method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    let (_, need) = route.methods.iter().find(|(m, _)| *m == method)?;
    Some((surface_of(path), *need))
}

/// The handler of `path` for `method`: the one place a route meets its code.
fn handler(path: &str, method: &str) -> Option<MethodRouter<Arc<Shared>>> {
    use axum::routing::{delete, get, patch, post, put};
    let router = match (path, method) {
        ("/", "GET") => get(console::dashboard),
        ("/login", "GET") => get(login::form),
        ("/login", "POST") => post(login::submit),
        ("/login/code", "POST") => post(login::code),
        ("/logout", "POST") => post(login::logout),
        ("/static/manager.css" | "/static/manager.js", "GET") => get(console::asset),
        ("/accounts", "GET") => get(console::accounts),
        ("/accounts", "POST") => post(console::account_add),
        ("/accounts/{name}", "GET") => get(console::account),
        ("/accounts/{name}", "POST") => post(console::account_change),
        ("/groups", "GET") => get(console::groups),
        ("/groups", "POST") => post(console::group_add),
        ("/groups/{name}", "GET") => get(console::group),
        ("/groups/{name}", "POST") => post(console::group_change),
        ("/events", "GET") => get(console::events),
        ("/events/live", "GET") => get(console::live),
        ("/bans", "GET") => get(console::bans),
        ("/bans", "POST") => post(console::bans_change),
        ("/jobs", "GET") => get(console::jobs),
        ("/jobs", "POST") => post(console::jobs_change),
        ("/api/v1/jobs", "GET") => get(api::jobs),
        ("/api/v1/jobs/{id}/retry", "POST") => post(api::job_retry),
        ("/api/v1/jobs/{id}/cancel", "POST") => post(api::job_cancel),
        ("/transfers", "GET") => get(console::transfers),
        ("/transfers", "POST") => post(console::transfers_run),
        ("/api/v1/transfers", "GET") => get(api::transfers),
        ("/api/v1/transfers/{name}/runs", "GET") => get(api::transfer_runs),
        ("/api/v1/transfers/{name}/run", "POST") => post(api::transfer_run),
        ("/sessions", "GET") => get(console::sessions),
        ("/sessions", "POST") => post(console::sessions_change),
        ("/api/v1/sessions", "GET") => get(api::sessions),
        ("/api/v1/sessions/{id}", "GET") => get(api::session),
        ("/api/v1/sessions/{id}", "DELETE") => delete(api::session_disconnect),
        ("/admins", "GET") => get(console::admins),
        ("/admins", "POST") => post(console::admins_change),
        ("/configuration", "GET") => get(configuration::show),
        ("/configuration", "POST") => post(configuration::change),
        ("/api/v1/configuration", "GET") => get(configuration::api_text),
        ("/api/v1/configuration", "PUT") => put(configuration::api_apply),
        ("/api/v1/configuration/check", "POST") => post(configuration::api_check),
        ("/configuration/cluster", "GET") => get(cluster_configuration::show),
        ("/configuration/cluster", "POST") => post(cluster_configuration::change),
        ("/api/v1/cluster/nodes", "GET") => get(api::nodes),
        ("/api/v1/cluster/configuration", "GET") => get(cluster_configuration::api_show),
        ("/api/v1/cluster/configuration", "PUT") => put(cluster_configuration::api_publish),
        ("/api/v1/cluster/configuration/check", "POST") => post(cluster_configuration::api_check),
        ("/api/v1/cluster/configuration/history", "GET") => get(cluster_configuration::api_history),
        ("/me", "GET") => get(console::me),
        ("/me", "POST") => post(console::me_change),
        ("/api/v1/openapi.json", "GET") => get(api::openapi),
        ("/api/v1/me", "GET") => get(api::me),
        ("/api/v1/me", "PATCH") => patch(api::me_change),
        ("/api/v1/services", "GET") => get(api::services),
        ("/api/v1/metrics", "GET") => get(metrics::metrics),
        ("/api/v1/accounts", "GET") => get(api::accounts),
        ("/api/v1/accounts", "POST") => post(api::account_add),
        ("/api/v1/accounts/{name}", "GET") => get(api::account),
        ("/api/v1/accounts/{name}", "PATCH") => patch(api::account_change),
        ("/api/v1/accounts/{name}", "DELETE") => delete(api::account_remove),
        ("/api/v1/accounts/{name}/may", "GET") => get(api::account_may),
        ("/api/v1/groups", "GET") => get(api::groups),
        ("/api/v1/groups", "POST") => post(api::group_add),
        ("/api/v1/groups/{name}", "GET") => get(api::group),
        ("/api/v1/groups/{name}", "PATCH") => patch(api::group_change),
        ("/api/v1/groups/{name}", "DELETE") => delete(api::group_remove),
        ("/api/v1/bans", "GET") => get(api::bans),
        ("/api/v1/bans", "POST") => post(api::ban_add),
        ("/api/v1/bans/{network}", "DELETE") => delete(api::ban_lift),
        ("/api/v1/events", "GET") => get(api::events),
        ("/api/v1/admins", "GET") => get(api::admins),
        ("/api/v1/admins", "POST") => post(api::admin_add),
        ("/api/v1/admins/{name}", "GET") => get(api::admin),
        ("/api/v1/admins/{name}", "PATCH") => patch(api::admin_change),
        ("/api/v1/admins/{name}", "DELETE") => delete(api::admin_remove),
        ("/api/v1/tokens", "GET") => get(api::tokens),
        ("/api/v1/tokens", "POST") => post(api::token_add),
        ("/api/v1/tokens/{name}", "DELETE") => delete(api::token_remove),
        _ => return None,
    };
    Some(router)
}

/// The router: exactly the table's routes and methods, behind the guard and the headers.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let mut router = Router::new();
    for route in ROUTES {
        let mut methods: MethodRouter<Arc<Shared>> = on(MethodFilter::GET, || async {
            axum::http::StatusCode::METHOD_NOT_ALLOWED
        });
        let mut first = true;
        for (method, _) in route.methods {
            let Some(one) = handler(route.path, method) else {
                // A table entry without a handler: `routes_and_handlers_agree` fails.
                continue;
            };
            methods = if first { one } else { methods.merge(one) };
            first = false;
        }
        router = router.route(route.path, methods);
    }
    router
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&shared),
            crate::auth::guard,
        ))
        .layer(axum::middleware::from_fn(crate::html::security_headers))
        .layer(axum::extract::DefaultBodyLimit::max(1024 * 1024))
        .with_state(shared)
}

#[cfg(test)]
mod tests;
