//! The groups pages: the list with search and a form to create one, and a group's own
//! page (its members, its rules and protocols, edited all at once, and removal while it
//! has no member). Every change goes through [`wharf_admin::Operations`].

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::{Extension, Form};
use wharf_admin::{AdminError, GroupChange, Need};
use wharf_types::Protocol;

use super::{ListQuery, back_to, failed, parse_rules, rule_line, yes_no};
use crate::auth::Caller;
use crate::html::{csrf_field, escape, page, segment};
use crate::server::Shared;

/// The protocols a group may limit its members to, as the form offers them.
const PROTOCOLS: &[Protocol] = &[
    Protocol::Sftp,
    Protocol::Scp,
    Protocol::Ftp,
    Protocol::Ftps,
    Protocol::Https,
    Protocol::Webdav,
];

fn protocol_boxes(chosen: &[Protocol]) -> String {
    PROTOCOLS
        .iter()
        .map(|p| {
            format!(
                "<label class=\"check\"><input type=\"checkbox\" name=\"protocol-{p}\" value=\"on\"{}> {p}</label>",
                if chosen.contains(p) { " checked" } else { "" }
            )
        })
        .collect()
}

/// `GET /groups`.
pub(crate) async fn groups(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<ListQuery>,
) -> Response {
    let (list, accounts) = match (
        shared.ops.groups(&caller.actor).await,
        shared.ops.accounts(&caller.actor).await,
    ) {
        (Ok(g), Ok(a)) => (g, a),
        (Err(e), _) | (_, Err(e)) => return failed(&caller, "/groups", &e),
    };
    let wanted = query.q.to_lowercase();
    let rows: String = list
        .iter()
        .filter(|g| wanted.is_empty() || g.name.to_lowercase().contains(&wanted))
        .map(|g| {
            let members = accounts
                .iter()
                .filter(|a| a.groups.contains(&g.name))
                .count();
            let protocols: Vec<&str> = g.protocols.iter().map(|p| p.as_str()).collect();
            format!(
                "<tr><td><a href=\"/groups/{}\">{}</a></td><td class=\"num\">{members}</td>\
                 <td class=\"num\">{}</td><td>{}</td><td>{}</td><td class=\"wide\">{}</td></tr>",
                segment(&g.name),
                escape(&g.name),
                g.rules.len(),
                if protocols.is_empty() {
                    "all".to_owned()
                } else {
                    escape(&protocols.join(", "))
                },
                yes_no(g.require_second_factor),
                escape(g.home_template.as_deref().unwrap_or("")),
            )
        })
        .collect();
    let add = if caller.actor.role().may(Need::Operate) {
        format!(
            "<section><h2>New group</h2><form method=\"post\" action=\"/groups\" class=\"stack\">{}\
             <label>Name <input name=\"name\" required></label>\
             <label>Home folder template (optional; ${{USER}} is the account) <input name=\"home_template\" placeholder=\"/srv/wharf/${{USER}}\"></label>\
             <label class=\"check\"><input type=\"checkbox\" name=\"create_home\" value=\"on\"> create members' home folders at first login</label>\
             <label>Rules, one per line: PATTERN allow VERB,VERB deny VERB (after each member's own)\
             <textarea name=\"rules\" placeholder=\"/in/** allow list,write\"></textarea></label>\
             <fieldset><legend>Protocols (none ticked: all)</legend>{}</fieldset>\
             <button type=\"submit\">Create group</button></form></section>",
            csrf_field(&caller),
            protocol_boxes(&[]),
        )
    } else {
        String::new()
    };
    let body = format!(
        "<h1>Groups</h1><section><form method=\"get\" class=\"inline\"><label>Search <input name=\"q\" value=\"{}\"></label>\
         <button type=\"submit\" class=\"quiet\">Search</button></form>\
         <table id=\"groups\"><tr><th>name</th><th>members</th><th>rules</th><th>protocols</th>\
         <th>one-time code</th><th class=\"wide\">home template</th></tr>{}</table></section>{add}",
        escape(&query.q),
        if rows.is_empty() {
            "<tr><td colspan=\"6\" class=\"note\">No groups.</td></tr>".to_owned()
        } else {
            rows
        },
    );
    page(&caller, "/groups", "Groups", &body)
}

/// What the group forms send: `action`, `name`, `home_template`, `create_home`,
/// `rules`, and one `protocol-NAME` per protocol ticked.
type GroupForm = HashMap<String, String>;

fn field<'a>(form: &'a GroupForm, name: &str) -> &'a str {
    form.get(name).map_or("", String::as_str)
}

fn protocols_of(form: &GroupForm) -> Vec<Protocol> {
    PROTOCOLS
        .iter()
        .copied()
        .filter(|p| form.contains_key(&format!("protocol-{p}")))
        .collect()
}

/// `POST /groups`: create one.
pub(crate) async fn group_add(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Form(form): Form<GroupForm>,
) -> Response {
    let made = async {
        let group = wharf_admin::GroupRecord {
            name: field(&form, "name").trim().to_owned(),
            home_template: Some(field(&form, "home_template").trim().to_owned())
                .filter(|t| !t.is_empty()),
            create_home: form.contains_key("create_home"),
            rules: parse_rules(field(&form, "rules"))?,
            protocols: protocols_of(&form),
            upload_mode: None,
            addresses: Default::default(),
            require_second_factor: false,
            max_file_size: None,
            email: None,
        };
        shared.ops.add_group(&caller.actor, group).await
    };
    match made.await {
        Ok(group) => back_to(&format!("/groups/{}", segment(&group.name))),
        Err(e) => failed(&caller, "/groups", &e),
    }
}

/// `GET /groups/{name}`.
pub(crate) async fn group(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Response {
    let here = format!("/groups/{}", segment(&name));
    let (group, accounts) = match (
        shared.ops.group(&caller.actor, &name).await,
        shared.ops.accounts(&caller.actor).await,
    ) {
        (Ok(g), Ok(a)) => (g, a),
        (Err(e), _) | (_, Err(e)) => return failed(&caller, "/groups", &e),
    };
    let members: String = accounts
        .iter()
        .filter(|a| a.groups.contains(&group.name))
        .map(|a| {
            format!(
                "<li><a href=\"/accounts/{}\">{}</a></li>",
                segment(a.name.as_str()),
                escape(a.name.as_str())
            )
        })
        .collect();
    let rules: Vec<String> = group.rules.iter().map(rule_line).collect();
    let edit = if caller.actor.role().may(Need::Operate) {
        let csrf = csrf_field(&caller);
        format!(
            "<section><h2>Rules and protocols</h2><form method=\"post\" class=\"stack\">{csrf}\
             <input type=\"hidden\" name=\"action\" value=\"change\">\
             <label>Rules, one per line (after each member's own)<textarea name=\"rules\">{}</textarea></label>\
             <fieldset><legend>Protocols (none ticked: all)</legend>{}</fieldset>\
             <button type=\"submit\">Save</button></form></section>\
             <section><h2>Remove</h2><form method=\"post\" data-confirm=\"Remove group {}?\">{csrf}\
             <input type=\"hidden\" name=\"action\" value=\"remove\">\
             <button type=\"submit\" class=\"danger\">Remove group</button></form>\
             <p class=\"note\">A group with members is not removed: move them first.</p></section>",
            escape(&rules.join("\n")),
            protocol_boxes(&group.protocols),
            escape(&group.name),
        )
    } else {
        format!(
            "<section><h2>Rules</h2><pre>{}</pre></section>",
            escape(&rules.join("\n"))
        )
    };
    let body = format!(
        "<h1>Group {}</h1><section><dl>\
         <dt>Home template</dt><dd>{}</dd><dt>Create homes</dt><dd>{}</dd>\
         <dt>One-time code required</dt><dd>{}</dd><dt>Largest file</dt><dd>{}</dd>\
         <dt>E-mail</dt><dd>{}</dd></dl>\
         <h2>Members</h2><ul id=\"members\">{}</ul></section>{edit}",
        escape(&group.name),
        escape(
            group
                .home_template
                .as_deref()
                .unwrap_or("(the server's default)")
        ),
        yes_no(group.create_home),
        yes_no(group.require_second_factor),
        group
            .max_file_size
            .map_or_else(|| "no bound".to_owned(), |b| format!("{b} bytes")),
        escape(group.email.as_deref().unwrap_or("none")),
        if members.is_empty() {
            "<li class=\"note\">No member.</li>".to_owned()
        } else {
            members
        },
    );
    page(&caller, &here, &format!("Group {}", group.name), &body)
}

/// `POST /groups/{name}`: its rules and protocols together, or its removal.
pub(crate) async fn group_change(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Form(form): Form<GroupForm>,
) -> Response {
    let here = format!("/groups/{}", segment(&name));
    let result = match field(&form, "action") {
        "change" => {
            let changes = parse_rules(field(&form, "rules")).map(|rules| {
                vec![
                    GroupChange::Rules(rules),
                    GroupChange::Protocols(protocols_of(&form)),
                ]
            });
            match changes {
                Ok(changes) => shared
                    .ops
                    .change_group(&caller.actor, &name, changes)
                    .await
                    .map(|_| here.clone()),
                Err(e) => Err(e),
            }
        }
        "remove" => shared
            .ops
            .remove_group(&caller.actor, &name)
            .await
            .map(|_| "/groups".to_owned()),
        other => Err(AdminError::Invalid(format!("unknown action {other:?}"))),
    };
    match result {
        Ok(to) => back_to(&to),
        Err(e) => failed(&caller, &here, &e),
    }
}
