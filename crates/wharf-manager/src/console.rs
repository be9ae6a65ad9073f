//! The console's pages, rendered here: the dashboard, accounts (with the rule tester),
//! events, bans, administrators and tokens, and the administrator's own page. Forms post
//! back to their page; every change goes through [`wharf_admin::Operations`] like the
//! API's, and a refused or invalid one answers with its reason.

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use serde::Deserialize;
use wharf_admin::{
    AccountChange, AdminChange, AdminError, AuditRecord, Need, NewAdmin, NewToken, Role,
};
use wharf_core::Rule;

use crate::api::{AccountBody, EventQuery, new_account, status_of};
use crate::auth::Caller;
use crate::html::{csrf_field, escape, page, segment};
use crate::server::Shared;

mod groups;
mod sessions;
mod transfers;
pub(crate) use groups::{group, group_add, group_change, groups};
pub(crate) use sessions::{sessions, sessions_change};
pub(crate) use transfers::{transfers, transfers_run};

const CSS: &str = include_str!("static/manager.css");
const JS: &str = include_str!("static/manager.js");

/// `GET /static/…`.
pub(crate) async fn asset(request: Request) -> Response {
    let (kind, body) = if request.uri().path().ends_with(".js") {
        ("text/javascript; charset=utf-8", JS)
    } else {
        ("text/css; charset=utf-8", CSS)
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

/// A refused or failed change, on a page of the console.
pub(super) fn failed(caller: &Caller, back: &str, e: &AdminError) -> Response {
    let mut response = page(
        caller,
        back,
        "Not done",
        &format!(
            "<section><h1>Not done</h1><p class=\"error\" role=\"alert\">{}</p>\
             <p><a href=\"{}\">Back</a></p></section>",
            escape(&e.to_string()),
            escape(back)
        ),
    );
    *response.status_mut() = status_of(e);
    response
}

pub(super) fn back_to(path: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, path.to_owned())]).into_response()
}

fn yes_no(on: bool) -> &'static str {
    if on { "yes" } else { "no" }
}

/// A rule as one line of the rules box: `PATTERN allow VERB,VERB deny VERB`.
fn rule_line(rule: &Rule) -> String {
    let mut line = rule.pattern.clone();
    if !rule.allow.is_empty() {
        line.push_str(&format!(" allow {}", rule.allow.join(",")));
    }
    if !rule.deny.is_empty() {
        line.push_str(&format!(" deny {}", rule.deny.join(",")));
    }
    line
}

/// The rules box read back, one rule per non-empty line.
fn parse_rules(text: &str) -> Result<Vec<Rule>, AdminError> {
    let mut rules = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some((pattern, rest)) = words.split_first() else {
            continue;
        };
        let mut rule = Rule {
            pattern: (*pattern).to_owned(),
            allow: Vec::new(),
            deny: Vec::new(),
        };
        let mut rest = rest.iter();
        while let Some(word) = rest.next() {
            let list = rest.next().ok_or_else(|| {
                AdminError::Invalid(format!("rule line {}: {word} needs verbs after it", n + 1))
            })?;
            let verbs = list.split(',').filter(|v| !v.is_empty()).map(str::to_owned);
            match *word {
                "allow" => rule.allow.extend(verbs),
                "deny" => rule.deny.extend(verbs),
                other => {
                    return Err(AdminError::Invalid(format!(
                        "rule line {}: {other:?}: write PATTERN allow VERB,VERB deny VERB",
                        n + 1
                    )));
                }
            }
        }
        rules.push(rule);
    }
    Ok(rules)
}

fn event_rows(records: &[AuditRecord]) -> String {
    if records.is_empty() {
        return "<tr><td colspan=\"7\" class=\"note\">No events.</td></tr>".to_owned();
    }
    records
        .iter()
        .rev()
        .map(|r| {
            let outcome_class = if r.outcome == "success" { "ok" } else { "bad" };
            format!(
                "<tr><td class=\"num\">{}</td><td>{}</td><td>{} <code>{}</code></td>\
                 <td class=\"{outcome_class}\">{}</td><td>{}</td><td class=\"wide\">{}</td>\
                 <td class=\"wide\">{}</td></tr>",
                r.seq,
                escape(&r.time),
                r.id,
                escape(&r.name),
                escape(&r.outcome),
                escape(r.account.as_deref().unwrap_or("")),
                escape(r.path.as_deref().or(r.remote.as_deref()).unwrap_or("")),
                escape(r.message.as_deref().unwrap_or("")),
            )
        })
        .collect()
}

const EVENT_HEAD: &str = "<tr><th>#</th><th>time</th><th>event</th><th>outcome</th>\
     <th>account</th><th class=\"wide\">path or address</th><th class=\"wide\">message</th></tr>";

/// Counts per hour over the last 24 hours, for the chart: logins, failures, bans.
async fn day_counts(
    shared: &Shared,
    caller: &Caller,
) -> Result<([[u32; 24]; 3], bool), AdminError> {
    let now = crate::auth::now_us();
    let start = now - 24 * 3_600_000_000;
    let mut counts = [[0u32; 24]; 3];
    let mut capped = false;
    let series: [(usize, &[u32]); 3] = [
        (0, &[20010, 50050]),
        (1, &[20011, 50051]),
        (2, &[20040, 50031]),
    ];
    for (row, ids) in series {
        for id in ids {
            let search = wharf_admin::EventSearch {
                since_us: Some(start),
                id: Some(*id),
                limit: wharf_admin::MAX_PAGE,
                ..Default::default()
            };
            let records = shared.ops.events(&caller.actor, search).await?;
            capped |= records.len() as i64 >= wharf_admin::MAX_PAGE;
            for record in records {
                let Ok(t) = wharf_types::rfc3339::parse(&record.time) else {
                    continue;
                };
                let us = i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(0);
                let hour = usize::try_from((us - start) / 3_600_000_000).unwrap_or(0);
                if let Some(slot) = counts[row].get_mut(hour) {
                    *slot += 1;
                }
            }
        }
    }
    Ok((counts, capped))
}

/// The 24-hour chart, drawn here as SVG: three bars an hour.
fn chart(counts: &[[u32; 24]; 3]) -> String {
    let top = counts.iter().flatten().copied().max().unwrap_or(0).max(1);
    let (width, height, bottom) = (720.0_f64, 160.0_f64, 140.0_f64);
    let slot = width / 24.0;
    let bar = slot / 4.0;
    let mut bars = String::new();
    for (row, (class, hours)) in ["logins", "failures", "bans"]
        .iter()
        .zip(counts)
        .enumerate()
    {
        for (hour, value) in hours.iter().enumerate() {
            let h = f64::from(*value) / f64::from(top) * (bottom - 10.0);
            let x = hour as f64 * slot + bar * (row as f64 + 0.5);
            bars.push_str(&format!(
                "<rect class=\"{class}\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar:.1}\" height=\"{h:.1}\"><title>{class}: {value}</title></rect>",
                bottom - h
            ));
        }
    }
    format!(
        "<svg class=\"chart\" viewBox=\"0 0 {width} {height}\" role=\"img\" \
         aria-label=\"Logins, failures and bans per hour over the last 24 hours\">{bars}\
         <line x1=\"0\" y1=\"{bottom}\" x2=\"{width}\" y2=\"{bottom}\" stroke=\"#dde3ea\"/>\
         <text x=\"0\" y=\"155\">24 h ago</text><text x=\"{}\" y=\"155\">now</text>\
         <text x=\"0\" y=\"10\">{top}</text></svg>\
         <p class=\"legend\"><span><i class=\"l\"></i>logins</span><span><i class=\"f\"></i>failed logins</span>\
         <span><i class=\"b\"></i>bans</span></p>",
        width - 22.0
    )
}

/// `GET /`: the dashboard.
pub(crate) async fn dashboard(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let services = shared.services.borrow().clone();
    let live = shared.events.live();
    let open = live.count_by_service();
    let service_rows: String = services
        .iter()
        .map(|s| {
            let addresses: Vec<String> = s.addresses.iter().map(|a| a.to_string()).collect();
            let class = if s.state == "running" { "ok" } else { "bad" };
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"{class}\">{}</td><td class=\"num\">{}</td></tr>",
                escape(&s.name),
                escape(&s.kind),
                escape(&addresses.join(" ")),
                escape(&s.state),
                open.get(&s.name).copied().unwrap_or(0),
            )
        })
        .collect();
    let in_flight = match shared.ops.sessions(&caller.actor, live) {
        Ok(list) => sessions::transfer_rows(&list),
        Err(e) => return failed(&caller, "/", &e),
    };
    let queue = queue_tiles(&shared, &caller).await;
    let nodes = node_section(&shared, &caller).await;
    let accounts = shared.ops.accounts(&caller.actor).await;
    let bans = shared.ops.bans(&caller.actor).await;
    let day = day_counts(&shared, &caller).await;
    let recent = shared
        .ops
        .events(
            &caller.actor,
            wharf_admin::EventSearch {
                limit: 15,
                ..Default::default()
            },
        )
        .await;
    let (accounts, bans, recent) = match (accounts, bans, recent) {
        (Ok(a), Ok(b), Ok(r)) => (a, b, r),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return failed(&caller, "/", &e),
    };
    let (chart_html, totals) = match &day {
        Ok((counts, capped)) => {
            let sum = |row: usize| counts[row].iter().sum::<u32>();
            let more = if *capped { "+" } else { "" };
            (
                chart(counts),
                (
                    format!("{}{more}", sum(0)),
                    format!("{}{more}", sum(1)),
                    format!("{}{more}", sum(2)),
                ),
            )
        }
        Err(e) => (
            format!("<p class=\"error\">{}</p>", escape(&e.to_string())),
            Default::default(),
        ),
    };
    let body = format!(
        "<h1>Dashboard · node {}</h1>\
         <div class=\"tiles\">\
         <div class=\"tile\"><strong>{}</strong><span>accounts</span></div>\
         <div class=\"tile\"><strong>{}</strong><span>logins, 24 h</span></div>\
         <div class=\"tile\"><strong>{}</strong><span>failed logins, 24 h</span></div>\
         <div class=\"tile\"><strong>{}</strong><span>bans in force</span></div>{queue}</div>\
         <section><h2>Services</h2><table id=\"services\"><tr><th>name</th><th>type</th><th>addresses</th><th>state</th>\
         <th>open sessions</th></tr>{service_rows}</table></section>\
         {nodes}<section><h2>Transfers in flight</h2>{in_flight}<p><a href=\"/sessions\">Sessions</a></p></section>\
         <section><h2>Last 24 hours</h2>{chart_html}<p class=\"note\">{} bans set in 24 h.</p></section>\
         <section><h2>Latest events</h2><table>{EVENT_HEAD}{}</table>\
         <p><a href=\"/events\">All events</a></p></section>",
        escape(&shared.node),
        accounts.len(),
        totals.0,
        totals.1,
        bans.len(),
        totals.2,
        event_rows(&recent),
    );
    page(&caller, "/", "Dashboard", &body)
}

/// The cluster's nodes, where there are several: state, host, version, sessions, last
/// heartbeat and services.
async fn node_section(shared: &Shared, caller: &Caller) -> String {
    let nodes = match shared.ops.nodes(&caller.actor).await {
        Ok(nodes) if nodes.len() > 1 => nodes,
        Ok(_) => return String::new(),
        Err(e) => return format!("<p class=\"error\">{}</p>", escape(&e.to_string())),
    };
    let now = i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000)
        .unwrap_or(i64::MAX);
    let rows: String = nodes
        .iter()
        .map(|n| {
            let view = wharf_admin::node_view(n, now);
            let state = view["state"].as_str().unwrap_or_default();
            let class = if state == "up" { "ok" } else { "bad" };
            let services: Vec<String> = n
                .services
                .iter()
                .map(|s| format!("{} {}", s.name, s.addresses.join(" ")))
                .collect();
            format!(
                "<tr><td>{}</td><td class=\"{class}\">{state}</td><td>{}</td><td>{}</td>\
                 <td class=\"num\">{}</td><td>{:.1} s ago</td><td>{}</td></tr>",
                escape(&n.name),
                escape(&n.host),
                escape(&n.version),
                n.sessions,
                view["seconds_since_seen"].as_f64().unwrap_or_default(),
                escape(&services.join("; ")),
            )
        })
        .collect();
    format!(
        "<section><h2>Nodes</h2><table id=\"nodes\"><tr><th>node</th><th>state</th><th>host</th>\
         <th>version</th><th>sessions</th><th>last seen</th><th>services</th></tr>{rows}</table></section>"
    )
}

/// The handler queue's depth and failures, as dashboard tiles (counted up to
/// [`wharf_admin::MAX_JOBS`] each).
async fn queue_tiles(shared: &Shared, caller: &Caller) -> String {
    let mut tiles = String::new();
    for (state, label) in [
        (wharf_admin::JobState::Queued, "handler jobs queued"),
        (wharf_admin::JobState::Failed, "handler jobs failed"),
    ] {
        let shown = match shared.ops.count_jobs(&caller.actor, state).await {
            Ok(count) if count >= wharf_admin::MAX_JOBS => format!("{count}+"),
            Ok(count) => count.to_string(),
            Err(_) => "?".to_owned(),
        };
        tiles.push_str(&format!(
            "<div class=\"tile\"><strong><a href=\"/jobs?state={}\">{shown}</a></strong><span>{label}</span></div>",
            state.as_str()
        ));
    }
    tiles
}

#[derive(Deserialize, Default)]
pub(crate) struct ListQuery {
    #[serde(default)]
    q: String,
}

/// `GET /accounts`.
pub(crate) async fn accounts(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<ListQuery>,
) -> Response {
    let list = match shared.ops.accounts(&caller.actor).await {
        Ok(list) => list,
        Err(e) => return failed(&caller, "/", &e),
    };
    let wanted = query.q.to_lowercase();
    let rows: String = list
        .iter()
        .filter(|a| wanted.is_empty() || a.name.as_str().to_lowercase().contains(&wanted))
        .map(|a| {
            format!(
                "<tr><td><a href=\"/accounts/{}\">{}</a></td><td class=\"{}\">{}</td><td>{}</td>\
                 <td class=\"num\">{}</td><td>{}</td></tr>",
                segment(a.name.as_str()),
                escape(a.name.as_str()),
                if a.enabled { "ok" } else { "bad" },
                if a.enabled { "enabled" } else { "disabled" },
                escape(&a.groups.join(", ")),
                a.keys.len(),
                yes_no(a.second_factor.is_some()),
            )
        })
        .collect();
    let add = if caller.actor.role().may(Need::Operate) {
        format!(
            "<section><h2>New account</h2><form method=\"post\" action=\"/accounts\" class=\"stack\">{}\
             <label>Name <input name=\"name\" required></label>\
             <label>Password (optional) <input name=\"password\" type=\"password\" autocomplete=\"new-password\"></label>\
             <label>Groups (comma-separated; default users) <input name=\"groups\"></label>\
             <label>SSH public key (optional) <textarea name=\"key\" placeholder=\"ssh-ed25519 AAAA… comment\"></textarea></label>\
             <label>Rules, one per line: PATTERN allow VERB,VERB deny VERB (the account's own, before its groups')\
             <textarea name=\"rules\" placeholder=\"/** allow all\"></textarea></label>\
             <button type=\"submit\">Create account</button></form></section>",
            csrf_field(&caller)
        )
    } else {
        String::new()
    };
    let body = format!(
        "<h1>Accounts</h1><section><form method=\"get\" action=\"/accounts\" class=\"inline\">\
         <label>Search <input name=\"q\" value=\"{}\"></label><button type=\"submit\" class=\"quiet\">Search</button></form>\
         <table><tr><th>name</th><th>state</th><th>groups</th><th>keys</th><th>one-time codes</th></tr>{rows}</table></section>{add}",
        escape(&query.q)
    );
    page(&caller, "/accounts", "Accounts", &body)
}

#[derive(Deserialize)]
pub(crate) struct AccountForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    groups: String,
    #[serde(default)]
    key: String,
    #[serde(default)]
    rules: String,
}

/// `POST /accounts`.
pub(crate) async fn account_add(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Form(form): Form<AccountForm>,
) -> Response {
    let rules = match parse_rules(&form.rules) {
        Ok(rules) => rules,
        Err(e) => return failed(&caller, "/accounts", &e),
    };
    let groups: Vec<String> = form
        .groups
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::to_owned)
        .collect();
    let body = AccountBody::from_form(form.name, form.password, form.key, rules, groups);
    let result = match new_account(body) {
        Ok(new) => shared.ops.add_account(&caller.actor, new).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(record) => back_to(&format!("/accounts/{}", segment(record.name.as_str()))),
        Err(e) => failed(&caller, "/accounts", &e),
    }
}

#[derive(Deserialize, Default)]
pub(crate) struct TesterQuery {
    #[serde(default)]
    verb: String,
    #[serde(default)]
    path: String,
}

/// `GET /accounts/{name}`, with the rule tester's answer when it was asked.
pub(crate) async fn account(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(tester): Query<TesterQuery>,
) -> Response {
    let record = match shared.ops.account(&caller.actor, &name).await {
        Ok(record) => record,
        Err(e) => return failed(&caller, "/accounts", &e),
    };
    let verdict = if tester.verb.is_empty() || tester.path.is_empty() {
        String::new()
    } else {
        match shared
            .ops
            .test_rule(&caller.actor, &name, &tester.verb, &tester.path)
            .await
        {
            Ok(v) => {
                let decided = match (&v.rule, &v.from) {
                    (Some(rule), Some(from)) => format!(
                        "decided by the {from} rule <code>{}</code>",
                        escape(&rule_line(rule))
                    ),
                    _ => "no rule names this verb here: refused by default".to_owned(),
                };
                format!(
                    "<p id=\"verdict\" role=\"status\" class=\"{}\"><strong>{}</strong>: {} {} at {} — {decided}</p>",
                    if v.allowed { "ok" } else { "bad" },
                    if v.allowed { "Allowed" } else { "Refused" },
                    escape(&name),
                    escape(&tester.verb),
                    escape(&tester.path),
                )
            }
            Err(e) => format!(
                "<p id=\"verdict\" class=\"error\">{}</p>",
                escape(&e.to_string())
            ),
        }
    };
    let keys: String = record
        .keys
        .iter()
        .map(|k| {
            let print = key_print(k);
            let remove = if caller.actor.role().may(Need::Operate) {
                format!(
                    "<form method=\"post\" class=\"inline\">{}<input type=\"hidden\" name=\"action\" value=\"remove-key\">\
                     <input type=\"hidden\" name=\"key\" value=\"{}\"><button class=\"danger\" type=\"submit\">Remove</button></form>",
                    csrf_field(&caller),
                    escape(k)
                )
            } else {
                String::new()
            };
            format!("<tr><td><code>{}</code></td><td>{remove}</td></tr>", escape(&print))
        })
        .collect();
    let rules_text: Vec<String> = record.rules.iter().map(rule_line).collect();
    let csrf = csrf_field(&caller);
    let operate = caller.actor.role().may(Need::Operate);
    let actions = if operate {
        let toggle = if record.enabled { "disable" } else { "enable" };
        format!(
            "<section><h2>Change</h2>\
             <form method=\"post\" class=\"inline\">{csrf}<input type=\"hidden\" name=\"action\" value=\"{toggle}\">\
             <button type=\"submit\" class=\"quiet\">{} account</button></form>\
             <form method=\"post\" class=\"stack\">{csrf}<input type=\"hidden\" name=\"action\" value=\"add-key\">\
             <label>Add an SSH public key <textarea name=\"key\" required></textarea></label>\
             <button type=\"submit\">Add key</button></form>\
             <form method=\"post\" class=\"stack\">{csrf}<input type=\"hidden\" name=\"action\" value=\"rules\">\
             <label>The account's own rules, one per line: PATTERN allow VERB,VERB deny VERB\
             <textarea name=\"rules\">{}</textarea></label><button type=\"submit\">Save rules</button></form>\
             <form method=\"post\" class=\"inline\" data-confirm=\"Remove {}?\">{csrf}\
             <input type=\"hidden\" name=\"action\" value=\"delete\">\
             <button type=\"submit\" class=\"danger\">Remove account</button></form></section>",
            if record.enabled { "Disable" } else { "Enable" },
            escape(&rules_text.join("\n")),
            escape(&name),
        )
    } else {
        String::new()
    };
    let body = format!(
        "<h1>Account {}</h1><section><table>\
         <tr><th>state</th><td>{}</td></tr><tr><th>groups</th><td>{}</td></tr>\
         <tr><th>home</th><td>{}</td></tr><tr><th>password</th><td>{}</td></tr>\
         <tr><th>one-time codes</th><td>{}</td></tr><tr><th>e-mail</th><td>{}</td></tr><tr><th>own rules</th><td><pre>{}</pre></td></tr></table></section>\
         <section><h2>Keys</h2><table>{keys}</table></section>\
         <section><h2>Rule tester</h2><form method=\"get\" class=\"inline\">\
         <label>Verb <select name=\"verb\">{}</select></label>\
         <label>Path <input name=\"path\" value=\"{}\" placeholder=\"/upload/report.pdf\" required></label>\
         <button type=\"submit\">Test</button></form>{verdict}</section>{actions}",
        escape(&name),
        if record.enabled {
            "enabled"
        } else {
            "disabled"
        },
        record
            .groups
            .iter()
            .map(|g| format!("<a href=\"/groups/{}\">{}</a>", segment(g), escape(g)))
            .collect::<Vec<_>>()
            .join(", "),
        escape(
            record
                .home
                .as_deref()
                .unwrap_or("(from a group's template)")
        ),
        if record.password_hash.is_some() {
            "set"
        } else {
            "none"
        },
        if record.second_factor.is_some() {
            "enrolled"
        } else {
            "none"
        },
        escape(record.email.as_deref().unwrap_or("none")),
        escape(&rules_text.join("\n")),
        verb_options(&tester.verb),
        escape(&tester.path),
    );
    page(&caller, "/accounts", &format!("Account {name}"), &body)
}

/// A key as the page lists it: its fingerprint and comment.
fn key_print(line: &str) -> String {
    let comment: Vec<&str> = line.split_whitespace().skip(2).collect();
    let print = wharf_auth::parse_public_key(line)
        .map(|k| wharf_auth::fingerprint(&k))
        .unwrap_or_else(|_| "unreadable key".to_owned());
    format!("{print} {}", comment.join(" "))
}

fn verb_options(selected: &str) -> String {
    [
        "list",
        "read",
        "write",
        "overwrite",
        "append",
        "delete",
        "rename",
        "mkdir",
        "rmdir",
        "setattr",
    ]
    .iter()
    .map(|v| {
        let on = if *v == selected { " selected" } else { "" };
        format!("<option{on}>{v}</option>")
    })
    .collect()
}

#[derive(Deserialize)]
pub(crate) struct AccountAction {
    #[serde(default)]
    action: String,
    #[serde(default)]
    key: String,
    #[serde(default)]
    rules: String,
}

/// `POST /accounts/{name}`.
pub(crate) async fn account_change(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Form(form): Form<AccountAction>,
) -> Response {
    let here = format!("/accounts/{}", segment(&name));
    let change = match form.action.as_str() {
        "enable" => AccountChange::Enabled(true),
        "disable" => AccountChange::Enabled(false),
        "add-key" => AccountChange::AddKey(form.key),
        "remove-key" => AccountChange::RemoveKey(form.key),
        "rules" => match parse_rules(&form.rules) {
            Ok(rules) => AccountChange::Rules(rules),
            Err(e) => return failed(&caller, &here, &e),
        },
        "reset-second-factor" => AccountChange::ResetSecondFactor,
        "delete" => {
            return match shared.ops.remove_account(&caller.actor, &name).await {
                Ok(()) => back_to("/accounts"),
                Err(e) => failed(&caller, &here, &e),
            };
        }
        other => {
            return failed(
                &caller,
                &here,
                &AdminError::Invalid(format!("unknown action {other:?}")),
            );
        }
    };
    match shared
        .ops
        .change_account(&caller.actor, &name, vec![change])
        .await
    {
        Ok(_) => back_to(&here),
        Err(e) => failed(&caller, &here, &e),
    }
}

/// `GET /events`.
pub(crate) async fn events(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<EventQuery>,
) -> Response {
    let records = match query.search() {
        Ok(search) => shared.ops.events(&caller.actor, search).await,
        Err(e) => Err(e),
    };
    let records = match records {
        Ok(records) => records,
        Err(e) => return failed(&caller, "/events", &e),
    };
    let value = |v: &Option<String>| escape(v.as_deref().unwrap_or(""));
    let mut filters = Vec::new();
    for (key, v) in [
        ("since", query.since.clone()),
        ("id", query.id.clone()),
        ("account", query.account.clone()),
        ("protocol", query.protocol.clone()),
        ("outcome", query.outcome.clone()),
        ("node", query.node.clone()),
        ("limit", query.limit.map(|l| l.to_string())),
    ] {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            filters.push(format!("{key}={}", segment(&v)));
        }
    }
    let export = |format: &str| {
        let mut all = filters.clone();
        all.push(format!("format={format}"));
        format!("/api/v1/events?{}", all.join("&"))
    };
    let limit = query.limit.filter(|l| *l > 0).unwrap_or(100);
    // Keyset paging: the next page back starts below the oldest record shown.
    let older = match records.first() {
        Some(oldest) if records.len() as i64 >= limit.min(wharf_admin::MAX_PAGE) => {
            let mut all = filters.clone();
            all.push(format!("before={}", oldest.seq));
            format!(
                "<a href=\"{}\" rel=\"next\">Older</a>",
                escape(&format!("/events?{}", all.join("&")))
            )
        }
        _ => String::new(),
    };
    let newest = if query.before.is_some() {
        format!(
            "<a href=\"{}\">Newest</a>",
            escape(&format!("/events?{}", filters.join("&")))
        )
    } else {
        String::new()
    };
    let choice = |name: &str, options: &[&str], chosen: &Option<String>| {
        let chosen = chosen.as_deref().unwrap_or("");
        let items: String = std::iter::once("")
            .chain(options.iter().copied())
            .map(|o| {
                format!(
                    "<option value=\"{o}\"{}>{}</option>",
                    if o == chosen { " selected" } else { "" },
                    if o.is_empty() { "any" } else { o }
                )
            })
            .collect();
        format!("<select name=\"{name}\">{items}</select>")
    };
    let body = format!(
        "<h1>Events</h1><section><form method=\"get\" action=\"/events\" class=\"inline\">\
         <label>Since (RFC 3339 or 15m, 2h, 7d) <input name=\"since\" value=\"{}\"></label>\
         <label>Event id or range <input name=\"id\" placeholder=\"30000-30099\" value=\"{}\"></label>\
         <label>Account <input name=\"account\" value=\"{}\"></label>\
         <label>Protocol {}</label><label>Outcome {}</label>\
         <label>Node <input name=\"node\" value=\"{}\"></label>\
         <label>At most <input name=\"limit\" inputmode=\"numeric\" value=\"{}\"></label>\
         <button type=\"submit\">Search</button></form>\
         <p>Export these: <a href=\"{}\">CSV</a> · <a href=\"{}\">JSON lines</a></p></section>\
         <section><p id=\"live\" data-src=\"{}\" class=\"note\">Live: new records appear at the top as they are written.</p>\
         <table id=\"events\">{EVENT_HEAD}{}</table><p class=\"pages\">{newest} {older}</p></section>",
        value(&query.since),
        value(&query.id),
        value(&query.account),
        choice(
            "protocol",
            &[
                "sftp", "scp", "ssh", "ftp", "ftps", "http", "https", "webdav", "admin"
            ],
            &query.protocol
        ),
        choice("outcome", &["success", "failure"], &query.outcome),
        value(&query.node),
        limit,
        escape(&export("csv")),
        escape(&export("jsonl")),
        escape(&format!("/events/live?{}", filters.join("&"))),
        event_rows(&records),
    );
    page(&caller, "/events", "Events", &body)
}

/// `GET /bans`.
pub(crate) async fn bans(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let list = match shared.ops.bans(&caller.actor).await {
        Ok(list) => list,
        Err(e) => return failed(&caller, "/", &e),
    };
    let csrf = csrf_field(&caller);
    let operate = caller.actor.role().may(Need::Operate);
    let rows: String = list
        .iter()
        .map(|b| {
            let lift = if operate {
                format!(
                    "<form method=\"post\" class=\"inline\">{csrf}<input type=\"hidden\" name=\"action\" value=\"lift\">\
                     <input type=\"hidden\" name=\"address\" value=\"{}\"><button type=\"submit\" class=\"quiet\">Lift</button></form>",
                    escape(&b.network)
                )
            } else {
                String::new()
            };
            format!(
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"wide\">{}</td><td>{lift}</td></tr>",
                escape(&b.network),
                escape(wharf_admin::ban_view(b)["until"].as_str().unwrap_or_default()),
                b.strikes,
                escape(&b.node),
                escape(&b.reason),
            )
        })
        .collect();
    let add = if operate {
        format!(
            "<section><h2>Ban a network</h2><form method=\"post\" class=\"inline\">{csrf}\
             <input type=\"hidden\" name=\"action\" value=\"add\">\
             <label>Address or network <input name=\"address\" required></label>\
             <label>Seconds (default: the ban policy's) <input name=\"seconds\" inputmode=\"numeric\"></label>\
             <label>Reason <input name=\"reason\"></label><button type=\"submit\">Ban</button></form></section>"
        )
    } else {
        String::new()
    };
    let body = format!(
        "<h1>Bans</h1><section><table><tr><th>network</th><th>until</th><th>strikes</th><th>by</th>\
         <th class=\"wide\">reason</th><th></th></tr>{}</table></section>{add}",
        if rows.is_empty() {
            "<tr><td colspan=\"6\" class=\"note\">No bans in force.</td></tr>".to_owned()
        } else {
            rows
        }
    );
    page(&caller, "/bans", "Bans", &body)
}

#[derive(Deserialize)]
pub(crate) struct BanAction {
    #[serde(default)]
    action: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    seconds: String,
    #[serde(default)]
    reason: String,
}

/// `POST /bans`.
pub(crate) async fn bans_change(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Form(form): Form<BanAction>,
) -> Response {
    let result = match form.action.as_str() {
        "lift" => shared
            .ops
            .lift_ban(&caller.actor, &form.address)
            .await
            .map(|_| ()),
        "add" => {
            let seconds = match form.seconds.trim() {
                "" => None,
                text => match text.parse::<u64>() {
                    Ok(n) => Some(n),
                    Err(_) => {
                        return failed(
                            &caller,
                            "/bans",
                            &AdminError::Invalid("seconds: a whole number".into()),
                        );
                    }
                },
            };
            let reason = if form.reason.trim().is_empty() {
                "banned by an administrator"
            } else {
                form.reason.trim()
            };
            shared
                .ops
                .set_ban(&caller.actor, &form.address, seconds, reason)
                .await
                .map(|_| ())
        }
        other => Err(AdminError::Invalid(format!("unknown action {other:?}"))),
    };
    match result {
        Ok(()) => back_to("/bans"),
        Err(e) => failed(&caller, "/bans", &e),
    }
}

fn role_options(selected: Role) -> String {
    Role::ALL
        .iter()
        .rev()
        .map(|r| {
            let on = if *r == selected { " selected" } else { "" };
            format!("<option{on}>{r}</option>")
        })
        .collect()
}

/// `GET /admins`: administrators and API tokens.
pub(crate) async fn admins(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let (list, tokens) = match (
        shared.ops.admins(&caller.actor).await,
        shared.ops.tokens(&caller.actor).await,
    ) {
        (Ok(a), Ok(t)) => (a, t),
        (Err(e), _) | (_, Err(e)) => return failed(&caller, "/", &e),
    };
    let csrf = csrf_field(&caller);
    let administer = caller.actor.role().may(Need::Administer);
    let rows: String = list
        .iter()
        .map(|a| {
            let actions = if administer {
                let role: Role = a.role.parse().unwrap_or(Role::Auditor);
                format!(
                    "<form method=\"post\" class=\"inline\">{csrf}<input type=\"hidden\" name=\"action\" value=\"role\">\
                     <input type=\"hidden\" name=\"name\" value=\"{n}\"><select name=\"role\">{}</select>\
                     <button type=\"submit\" class=\"quiet\">Set role</button></form>\
                     <form method=\"post\" class=\"inline\">{csrf}<input type=\"hidden\" name=\"action\" value=\"{toggle}\">\
                     <input type=\"hidden\" name=\"name\" value=\"{n}\"><button type=\"submit\" class=\"quiet\">{toggle}</button></form>\
                     <form method=\"post\" class=\"inline\" data-confirm=\"Remove {n}?\">{csrf}\
                     <input type=\"hidden\" name=\"action\" value=\"remove\"><input type=\"hidden\" name=\"name\" value=\"{n}\">\
                     <button type=\"submit\" class=\"danger\">Remove</button></form>",
                    role_options(role),
                    n = escape(&a.name),
                    toggle = if a.enabled { "disable" } else { "enable" },
                )
            } else {
                String::new()
            };
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{actions}</td></tr>",
                escape(&a.name),
                escape(&a.role),
                if a.enabled { "enabled" } else { "disabled" },
                if a.second_factor.is_some() {
                    "enrolled"
                } else if a.require_second_factor {
                    "required, not enrolled"
                } else {
                    "none"
                },
            )
        })
        .collect();
    let token_rows: String = tokens
        .iter()
        .map(|t| {
            let view = wharf_admin::token_view(t);
            let revoke = if administer {
                format!(
                    "<form method=\"post\" class=\"inline\" data-confirm=\"Revoke {n}?\">{csrf}\
                     <input type=\"hidden\" name=\"action\" value=\"token-remove\"><input type=\"hidden\" name=\"name\" value=\"{n}\">\
                     <button type=\"submit\" class=\"danger\">Revoke</button></form>",
                    n = escape(&t.name)
                )
            } else {
                String::new()
            };
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{revoke}</td></tr>",
                escape(&t.name),
                escape(&t.admin),
                escape(&t.role),
                escape(view["expires"].as_str().unwrap_or_default()),
                escape(view["used"].as_str().unwrap_or("never")),
            )
        })
        .collect();
    let forms = if administer {
        format!(
            "<section><h2>New administrator</h2><form method=\"post\" class=\"inline\">{csrf}\
             <input type=\"hidden\" name=\"action\" value=\"add\">\
             <label>Name <input name=\"name\" required></label>\
             <label>Password <input name=\"password\" type=\"password\" autocomplete=\"new-password\" required></label>\
             <label>Role <select name=\"role\">{}</select></label>\
             <button type=\"submit\">Add</button></form></section>\
             <section><h2>New API token</h2><form method=\"post\" class=\"inline\">{csrf}\
             <input type=\"hidden\" name=\"action\" value=\"token-add\">\
             <label>Name <input name=\"name\" required></label>\
             <label>Role <select name=\"role\">{}</select></label>\
             <label>Days <input name=\"days\" value=\"90\" inputmode=\"numeric\"></label>\
             <button type=\"submit\">Make token</button></form></section>",
            role_options(Role::Operator),
            role_options(Role::Auditor),
        )
    } else {
        String::new()
    };
    let body = format!(
        "<h1>Administrators</h1><section><table><tr><th>name</th><th>role</th><th>state</th>\
         <th>one-time codes</th><th></th></tr>{rows}</table></section>\
         <section><h2>API tokens</h2><table><tr><th>name</th><th>acts as</th><th>role</th>\
         <th>expires</th><th>last used</th><th></th></tr>{token_rows}</table></section>{forms}"
    );
    page(&caller, "/admins", "Administrators", &body)
}

#[derive(Deserialize)]
pub(crate) struct AdminAction {
    #[serde(default)]
    action: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    days: String,
}

/// `POST /admins`.
pub(crate) async fn admins_change(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Form(form): Form<AdminAction>,
) -> Response {
    let role = || form.role.parse::<Role>().map_err(AdminError::Invalid);
    let ops = &shared.ops;
    let actor = &caller.actor;
    let result = match form.action.as_str() {
        "add" => match role() {
            Ok(role) => ops
                .add_admin(
                    actor,
                    NewAdmin {
                        name: form.name.clone(),
                        password: form.password.clone(),
                        role,
                        require_second_factor: false,
                    },
                )
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        },
        "role" => match role() {
            Ok(role) => ops
                .change_admin(actor, &form.name, vec![AdminChange::Role(role)])
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        },
        "enable" | "disable" => ops
            .change_admin(
                actor,
                &form.name,
                vec![AdminChange::Enabled(form.action == "enable")],
            )
            .await
            .map(|_| ()),
        "remove" => ops.remove_admin(actor, &form.name).await,
        "token-remove" => ops.remove_token(actor, &form.name).await,
        "token-add" => {
            let days = form.days.trim().parse::<u32>().unwrap_or(0);
            let made = match role() {
                Ok(role) => {
                    ops.add_token(
                        actor,
                        NewToken {
                            name: form.name.clone(),
                            owner: None,
                            role,
                            days,
                        },
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            return match made {
                Ok(made) => page(
                    &caller,
                    "/admins",
                    "New API token",
                    &format!(
                        "<section><h1>API token {}</h1><p>Copy it now: it is shown this once and \
                         never again.</p><p class=\"secret\" id=\"token\">{}</p>\
                         <p>Send it as <code>Authorization: Bearer …</code>.</p>\
                         <p><a href=\"/admins\">Back to administrators</a></p></section>",
                        escape(&made.record.name),
                        escape(&made.token)
                    ),
                ),
                Err(e) => failed(&caller, "/admins", &e),
            };
        }
        other => Err(AdminError::Invalid(format!("unknown action {other:?}"))),
    };
    match result {
        Ok(()) => back_to("/admins"),
        Err(e) => failed(&caller, "/admins", &e),
    }
}

/// `GET /me`: the administrator's own password and one-time codes.
pub(crate) async fn me(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let name = caller.actor.admin_name().unwrap_or_default().to_owned();
    let record = match shared.ops.admin(&caller.actor, &name).await {
        Ok(record) => record,
        Err(e) => return failed(&caller, "/", &e),
    };
    let csrf = csrf_field(&caller);
    let body = format!(
        "<h1>My account</h1><section><p>{} · role {} · one-time codes: {}</p></section>\
         <section><h2>Password</h2><form method=\"post\" class=\"inline\">{csrf}\
         <input type=\"hidden\" name=\"action\" value=\"password\">\
         <label>Current password <input name=\"current\" type=\"password\" autocomplete=\"current-password\" required></label>\
         <label>New password <input name=\"password\" type=\"password\" autocomplete=\"new-password\" required></label>\
         <button type=\"submit\">Change password</button></form><p class=\"note\">Your sessions end: log in again with the new one.</p></section>\
         <section><h2>One-time codes</h2><form method=\"post\" class=\"inline\">{csrf}\
         <input type=\"hidden\" name=\"action\" value=\"enrol\">\
         <button type=\"submit\">{}</button></form></section>",
        escape(&name),
        escape(&record.role),
        if record.second_factor.is_some() {
            "enrolled"
        } else {
            "none"
        },
        if record.second_factor.is_some() {
            "Enrol a new authenticator (the old one stops working)"
        } else {
            "Enrol an authenticator app"
        },
    );
    page(&caller, "/me", "My account", &body)
}

#[derive(Deserialize)]
pub(crate) struct MeAction {
    #[serde(default)]
    action: String,
    #[serde(default)]
    current: String,
    #[serde(default)]
    password: String,
    /// A drafted authenticator (JSON), with this session's seal of it.
    #[serde(default)]
    factor: String,
    #[serde(default)]
    seal: String,
    #[serde(default)]
    code: String,
}

/// A drafted authenticator: its secret (and, the first time, the URI and recovery codes),
/// and the form that confirms it with a first code. Nothing is kept until then.
fn enrolment_page(
    caller: &Caller,
    draft: &str,
    enrolment: &wharf_admin::Enrolment,
    error: Option<&str>,
) -> Response {
    let seal = caller
        .seal
        .as_ref()
        .map(|key| key.seal(draft.as_bytes()))
        .unwrap_or_default();
    let codes: String = enrolment
        .recovery_codes
        .iter()
        .map(|c| format!("<li><code>{}</code></li>", escape(c)))
        .collect();
    let shown = if codes.is_empty() {
        String::new()
    } else {
        format!(
            "<p class=\"secret\">{}</p>\
             <p>Recovery codes, each good once; keep them somewhere safe:</p><ul>{codes}</ul>",
            escape(&enrolment.uri)
        )
    };
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    page(
        caller,
        "/me",
        "One-time codes",
        &format!(
            "<section><h1>Enrol an authenticator</h1>\
             <p>Enter this secret in an authenticator app:</p>\
             <p class=\"secret\" id=\"secret\">{}</p>{shown}\
             <p>Nothing changes until the app's first code confirms it.</p>{error}\
             <form method=\"post\" class=\"inline\">{}\
             <input type=\"hidden\" name=\"action\" value=\"confirm\">\
             <input type=\"hidden\" name=\"factor\" value=\"{}\">\
             <input type=\"hidden\" name=\"seal\" value=\"{}\">\
             <label>Code from the app <input name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" required></label>\
             <button type=\"submit\">Confirm</button></form></section>",
            escape(&enrolment.secret),
            csrf_field(caller),
            escape(draft),
            escape(&seal),
        ),
    )
}

/// `POST /me`.
pub(crate) async fn me_change(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Form(form): Form<MeAction>,
) -> Response {
    match form.action.as_str() {
        "password" => match shared
            .ops
            .change_own_password(&caller.actor, &form.current, &form.password)
            .await
        {
            Ok(()) => back_to("/login"),
            Err(e) => failed(&caller, "/me", &e),
        },
        "enrol" => match shared.ops.draft_own_second_factor(&caller.actor) {
            Ok((factor, enrolment)) => {
                let draft = serde_json::to_string(&factor).unwrap_or_default();
                enrolment_page(&caller, &draft, &enrolment, None)
            }
            Err(e) => failed(&caller, "/me", &e),
        },
        "confirm" => {
            // The drafted authenticator comes back from the page: only as this session
            // sealed it, so no other secret can be slipped in.
            let sealed = caller
                .seal
                .as_ref()
                .is_some_and(|key| key.opens(form.factor.as_bytes(), &form.seal));
            let factor = serde_json::from_str::<wharf_admin::SecondFactor>(&form.factor);
            let (true, Ok(factor)) = (sealed, factor) else {
                return failed(
                    &caller,
                    "/me",
                    &AdminError::Invalid(
                        "the enrolment form was altered or belongs to another session; enrol again"
                            .into(),
                    ),
                );
            };
            match shared
                .ops
                .confirm_own_second_factor(&caller.actor, factor.clone(), &form.code)
                .await
            {
                Ok(()) => page(
                    &caller,
                    "/me",
                    "One-time codes",
                    "<section><h1>One-time codes enrolled</h1>\
                     <p id=\"confirmed\">Your authenticator is confirmed. From your next login, \
                     the Manager asks for a code after the password.</p>\
                     <p><a href=\"/me\">Done</a></p></section>",
                ),
                Err(AdminError::Invalid(why)) => {
                    let again = wharf_admin::Enrolment {
                        secret: factor.secret.clone(),
                        uri: String::new(),
                        recovery_codes: Vec::new(),
                    };
                    let mut response = enrolment_page(&caller, &form.factor, &again, Some(&why));
                    *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
                    response
                }
                Err(e) => failed(&caller, "/me", &e),
            }
        }
        other => failed(
            &caller,
            "/me",
            &AdminError::Invalid(format!("unknown action {other:?}")),
        ),
    }
}

/// How often the live tail asks the store for new records.
const TAIL_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// How long one live tail runs before the browser reconnects (it does so by itself).
const TAIL_FOR: std::time::Duration = std::time::Duration::from_secs(600);

/// `GET /events/live`: the records that arrive from now on, with the events page's filters,
/// as server-sent events (`record`, its JSON), for the events page's live tail.
pub(crate) async fn live(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<EventQuery>,
) -> Response {
    let mut search = match query.search() {
        Ok(search) => search,
        Err(e) => return failed(&caller, "/events", &e),
    };
    // From the newest record on: what was before is on the page already.
    let newest = shared
        .ops
        .events(
            &caller.actor,
            wharf_admin::EventSearch {
                limit: 1,
                ..Default::default()
            },
        )
        .await;
    search.after_seq = Some(match newest {
        Ok(records) => records.last().map_or(0, |r| r.seq),
        Err(e) => return failed(&caller, "/events", &e),
    });
    search.since_us = None;
    search.before_seq = None;
    search.limit = 200;
    let deadline = tokio::time::Instant::now() + TAIL_FOR;
    let state = (shared, caller, search, Vec::<AuditRecord>::new());
    let stream = futures_util::stream::unfold(
        state,
        move |(shared, caller, mut search, mut ready)| async move {
            loop {
                if let Some(record) = ready.pop() {
                    let event = axum::response::sse::Event::default()
                        .event("record")
                        .json_data(&record)
                        .unwrap_or_default();
                    return Some((
                        Ok::<_, std::convert::Infallible>(event),
                        (shared, caller, search, ready),
                    ));
                }
                if tokio::time::Instant::now() >= deadline {
                    return None;
                }
                tokio::time::sleep(TAIL_EVERY).await;
                match shared.ops.events(&caller.actor, search.clone()).await {
                    Ok(mut records) => {
                        if let Some(last) = records.last() {
                            search.after_seq = Some(last.seq);
                        }
                        // Handed out oldest first.
                        records.reverse();
                        ready = records;
                    }
                    // The store is away: the browser reconnects and asks again.
                    Err(_) => return None,
                }
            }
        },
    );
    axum::response::sse::Sse::new(stream)
        .keep_alive(axum::response::sse::KeepAlive::default())
        .into_response()
}

/// `GET /jobs`: the event handlers' queue.
pub(crate) async fn jobs(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<crate::api::JobQuery>,
) -> Response {
    let list = match query.state() {
        Ok(state) => {
            shared
                .ops
                .jobs(&caller.actor, state, query.limit.unwrap_or(200))
                .await
        }
        Err(e) => Err(e),
    };
    let list = match list {
        Ok(list) => list,
        Err(e) => return failed(&caller, "/jobs", &e),
    };
    let csrf = csrf_field(&caller);
    let operate = caller.actor.role().may(Need::Operate);
    let rows: String = list
        .iter()
        .map(|job| {
            let action = match (operate, job.state) {
                (true, wharf_admin::JobState::Failed) => "retry",
                (true, wharf_admin::JobState::Queued) => "cancel",
                _ => "",
            };
            let button = if action.is_empty() {
                String::new()
            } else {
                format!(
                    "<form method=\"post\" class=\"inline\">{csrf}<input type=\"hidden\" name=\"id\" value=\"{}\">\
                     <button type=\"submit\" name=\"action\" value=\"{action}\" class=\"quiet\">{action}</button></form>",
                    job.id
                )
            };
            let class = match job.state {
                wharf_admin::JobState::Failed => "bad",
                wharf_admin::JobState::Done => "ok",
                _ => "",
            };
            format!(
                "<tr><td class=\"num\">{}</td><td>{}</td><td class=\"{class}\">{}</td><td class=\"num\">{}</td>\
                 <td class=\"num\">{}</td><td class=\"wide\">{}</td><td>{button}</td></tr>",
                job.id,
                escape(&job.handler),
                job.state.as_str(),
                job.attempts,
                job.event_seq,
                escape(job.last_error.as_deref().unwrap_or("")),
            )
        })
        .collect();
    let body = format!(
        "<h1>Handler jobs</h1><section><form method=\"get\" class=\"inline\"><label>State <select name=\"state\">\
         <option value=\"\">all</option><option>queued</option><option>running</option><option>done</option><option>failed</option>\
         </select></label><button type=\"submit\" class=\"quiet\">Show</button></form>\
         <table id=\"jobs\"><tr><th>#</th><th>handler</th><th>state</th><th>attempts</th><th>record</th>\
         <th class=\"wide\">last error</th><th></th></tr>{}</table></section>",
        if rows.is_empty() {
            "<tr><td colspan=\"7\" class=\"note\">No jobs.</td></tr>".to_owned()
        } else {
            rows
        }
    );
    page(&caller, "/jobs", "Handler jobs", &body)
}

#[derive(Deserialize)]
pub(crate) struct JobAction {
    #[serde(default)]
    action: String,
    #[serde(default)]
    id: i64,
}

/// `POST /jobs`: retry or cancel one.
pub(crate) async fn jobs_change(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Form(form): Form<JobAction>,
) -> Response {
    let result = match form.action.as_str() {
        "retry" => shared.ops.retry_job(&caller.actor, form.id).await,
        "cancel" => shared.ops.cancel_job(&caller.actor, form.id).await,
        other => Err(AdminError::Invalid(format!("unknown action {other:?}"))),
    };
    match result {
        Ok(()) => back_to("/jobs"),
        Err(e) => failed(&caller, "/jobs", &e),
    }
}
