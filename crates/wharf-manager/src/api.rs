//! The admin REST API under `/api/v1/`: JSON in and out, each handler a thin caller of
//! [`wharf_admin::Operations`] (which checks the role again, validates, writes and
//! records). Its document is `openapi.json`, which a test holds to the route table.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};
use wharf_admin::AccountRecord;
use wharf_admin::{
    AccountChange, AdminChange, AdminError, EventSearch, NewAccount, NewAdmin, NewToken, Role,
    account_view, admin_view, ban_view, token_view,
};
use wharf_core::Rule;

use crate::auth::Caller;
use crate::extract::{Body, Params, Segment};
use crate::server::Shared;

const OPENAPI: &str = include_str!("openapi.json");

/// The status an operation's error answers with, on the API and the console alike.
pub(crate) fn status_of(e: &AdminError) -> StatusCode {
    match e {
        AdminError::Forbidden(_) => StatusCode::FORBIDDEN,
        AdminError::NotFound(_) => StatusCode::NOT_FOUND,
        AdminError::Exists(_) | AdminError::Conflict(_) => StatusCode::CONFLICT,
        AdminError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        AdminError::LoginFailed => StatusCode::UNAUTHORIZED,
        AdminError::Store(_) | AdminError::Audit(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// An operation's error as an answer.
pub(crate) fn failure(e: AdminError) -> Response {
    (status_of(&e), Json(json!({"error": e.to_string()}))).into_response()
}

fn ok(value: Value) -> Response {
    Json(value).into_response()
}

/// Reads a field that a change may leave out (`None`: unchanged), set to null (`Some(None)`)
/// or give (`Some(Some(value))`); with `#[serde(default)]`, serde alone would not tell the
/// first two apart.
fn given<'de, D, T>(from: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(from).map(Some)
}

fn created(value: Value) -> Response {
    (StatusCode::CREATED, Json(value)).into_response()
}

/// `GET /api/v1/openapi.json`.
pub(crate) async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// `GET /api/v1/me`.
pub(crate) async fn me(Extension(caller): Extension<Caller>) -> Response {
    let token = match &caller.actor.who {
        wharf_admin::Who::Admin { token, .. } => token.clone(),
        wharf_admin::Who::Operator(_) => None,
    };
    ok(json!({
        "name": caller.actor.admin_name(),
        "role": caller.actor.role().as_str(),
        "token": token,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PasswordChange {
    current_password: String,
    password: String,
}

/// `PATCH /api/v1/me`: an administrator's own password, from its browser session only
/// (an API token may not turn into its owner's login); its sessions end.
pub(crate) async fn me_change(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Body(body): Body<PasswordChange>,
) -> Response {
    match shared
        .ops
        .change_own_password(&caller.actor, &body.current_password, &body.password)
        .await
    {
        Ok(()) => ok(json!({"changed": true, "logged_out": true})),
        Err(e) => failure(e),
    }
}

/// `GET /api/v1/services`.
pub(crate) async fn services(State(shared): State<Arc<Shared>>) -> Response {
    let services = shared.services.borrow().clone();
    ok(json!({"node": shared.node, "services": services}))
}

/// `GET /api/v1/cluster/nodes`.
pub(crate) async fn nodes(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let now = i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000)
        .unwrap_or(i64::MAX);
    match shared.ops.nodes(&caller.actor).await {
        Ok(list) => ok(json!({
            "nodes": list.iter().map(|n| wharf_admin::node_view(n, now)).collect::<Vec<_>>(),
        })),
        Err(e) => failure(e),
    }
}

/// `GET /api/v1/accounts`.
pub(crate) async fn accounts(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
) -> Response {
    match shared.ops.accounts(&caller.actor).await {
        Ok(list) => ok(json!({"accounts": list.iter().map(account_view).collect::<Vec<_>>()})),
        Err(e) => failure(e),
    }
}

/// `GET /api/v1/accounts/{name}`.
pub(crate) async fn account(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Segment(name): Segment<String>,
) -> Response {
    match shared.ops.account(&caller.actor, &name).await {
        Ok(record) => ok(account_view(&record)),
        Err(e) => failure(e),
    }
}

/// A new account as the API takes it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AccountBody {
    name: String,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    home: Option<String>,
    #[serde(default)]
    groups: Option<Vec<String>>,
    #[serde(default)]
    keys: Vec<String>,
    #[serde(default)]
    rules: Vec<Rule>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    require_second_factor: bool,
    /// Where its notifications go; null or empty: nowhere.
    #[serde(default)]
    email: Option<String>,
}

/// Builds the account an API body or a console form describes.
pub(crate) fn new_account(body: AccountBody) -> Result<NewAccount, AdminError> {
    let name = wharf_admin::account_name(&body.name)?;
    Ok(NewAccount {
        record: AccountRecord {
            name,
            password_hash: None,
            home: body.home.filter(|h| !h.is_empty()),
            enabled: body.enabled.unwrap_or(true),
            groups: body.groups.unwrap_or_else(|| vec!["users".to_owned()]),
            keys: body
                .keys
                .iter()
                .map(|k| k.trim().to_owned())
                .filter(|k| !k.is_empty())
                .collect(),
            rules: body.rules,
            addresses: Default::default(),
            expires_us: None,
            second_factor: None,
            require_second_factor: body.require_second_factor,
            max_file_size: None,
            email: body.email,
        },
        password: body.password.filter(|p| !p.is_empty()),
    })
}

impl AccountBody {
    pub(crate) fn from_form(
        name: String,
        password: String,
        key: String,
        rules: Vec<Rule>,
        groups: Vec<String>,
    ) -> AccountBody {
        AccountBody {
            name,
            password: Some(password),
            home: None,
            groups: (!groups.is_empty()).then_some(groups),
            keys: vec![key],
            rules,
            enabled: None,
            require_second_factor: false,
            email: None,
        }
    }
}

/// `POST /api/v1/accounts`.
pub(crate) async fn account_add(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Body(body): Body<AccountBody>,
) -> Response {
    let new = match new_account(body) {
        Ok(new) => new,
        Err(e) => return failure(e),
    };
    match shared.ops.add_account(&caller.actor, new).await {
        Ok(record) => created(account_view(&record)),
        Err(e) => failure(e),
    }
}

/// The changes `PATCH /api/v1/accounts/{name}` takes, applied in this order.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AccountPatch {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    add_keys: Vec<String>,
    #[serde(default)]
    remove_keys: Vec<String>,
    #[serde(default)]
    rules: Option<Vec<Rule>>,
    #[serde(default)]
    reset_second_factor: bool,
    /// A new address; null or empty removes it.
    #[serde(default, deserialize_with = "given")]
    email: Option<Option<String>>,
}

/// `PATCH /api/v1/accounts/{name}`.
pub(crate) async fn account_change(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Segment(name): Segment<String>,
    Body(patch): Body<AccountPatch>,
) -> Response {
    let mut changes = Vec::new();
    if let Some(on) = patch.enabled {
        changes.push(AccountChange::Enabled(on));
    }
    if let Some(password) = patch.password {
        changes.push(AccountChange::Password(password));
    }
    changes.extend(patch.add_keys.into_iter().map(AccountChange::AddKey));
    changes.extend(patch.remove_keys.into_iter().map(AccountChange::RemoveKey));
    if let Some(rules) = patch.rules {
        changes.push(AccountChange::Rules(rules));
    }
    if patch.reset_second_factor {
        changes.push(AccountChange::ResetSecondFactor);
    }
    if let Some(email) = patch.email {
        changes.push(AccountChange::Email(email));
    }
    if changes.is_empty() {
        return failure(AdminError::Invalid(
            "nothing to change: give enabled, password, add_keys, remove_keys, rules, reset_second_factor or email".into(),
        ));
    }
    match shared
        .ops
        .change_account(&caller.actor, &name, changes)
        .await
    {
        Ok(record) => ok(account_view(&record)),
        Err(e) => failure(e),
    }
}

/// `DELETE /api/v1/accounts/{name}`.
pub(crate) async fn account_remove(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Segment(name): Segment<String>,
) -> Response {
    match shared.ops.remove_account(&caller.actor, &name).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => failure(e),
    }
}

/// The question `GET /api/v1/accounts/{name}/may` asks.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MayQuery {
    verb: String,
    path: String,
}

/// `GET /api/v1/accounts/{name}/may?verb=VERB&path=PATH`: the rule tester.
pub(crate) async fn account_may(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Segment(name): Segment<String>,
    Params(query): Params<MayQuery>,
) -> Response {
    match shared
        .ops
        .test_rule(&caller.actor, &name, &query.verb, &query.path)
        .await
    {
        Ok(verdict) => ok(json!({
            "allowed": verdict.allowed,
            "rule": verdict.rule,
            "from": verdict.from,
        })),
        Err(e) => failure(e),
    }
}

/// `GET /api/v1/bans`.
pub(crate) async fn bans(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
) -> Response {
    match shared.ops.bans(&caller.actor).await {
        Ok(list) => ok(json!({"bans": list.iter().map(ban_view).collect::<Vec<_>>()})),
        Err(e) => failure(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BanBody {
    address: String,
    #[serde(default)]
    seconds: Option<u64>,
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /api/v1/bans`.
pub(crate) async fn ban_add(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Body(body): Body<BanBody>,
) -> Response {
    let reason = body
        .reason
        .unwrap_or_else(|| "banned by an administrator".to_owned());
    match shared
        .ops
        .set_ban(&caller.actor, &body.address, body.seconds, &reason)
        .await
    {
        Ok(ban) => created(ban_view(&ban)),
        Err(e) => failure(e),
    }
}

/// `DELETE /api/v1/bans/{network}` (an IPv6 network's `/` written `%2F`).
pub(crate) async fn ban_lift(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Segment(network): Segment<String>,
) -> Response {
    match shared.ops.lift_ban(&caller.actor, &network).await {
        Ok(lifted) => ok(json!({"lifted": lifted.to_string()})),
        Err(e) => failure(e),
    }
}

/// The filters of `GET /api/v1/events`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventQuery {
    pub(crate) since: Option<String>,
    pub(crate) id: Option<String>,
    pub(crate) account: Option<String>,
    pub(crate) protocol: Option<String>,
    pub(crate) outcome: Option<String>,
    pub(crate) node: Option<String>,
    pub(crate) after: Option<i64>,
    pub(crate) before: Option<i64>,
    pub(crate) limit: Option<i64>,
    pub(crate) format: Option<String>,
}

impl EventQuery {
    pub(crate) fn search(&self) -> Result<EventSearch, AdminError> {
        let text = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        let mut search = EventSearch {
            since_us: text(&self.since)
                .as_deref()
                .map(wharf_admin::parse_since)
                .transpose()?,
            account: text(&self.account),
            protocol: text(&self.protocol),
            outcome: text(&self.outcome)
                .as_deref()
                .map(wharf_admin::parse_outcome)
                .transpose()?,
            node: text(&self.node),
            after_seq: self.after,
            before_seq: self.before,
            limit: self.limit.unwrap_or(100),
            ..EventSearch::default()
        };
        if let Some(ids) = text(&self.id) {
            wharf_admin::parse_ids(&ids, &mut search)?;
        }
        if search.after_seq.is_some() && search.before_seq.is_some() {
            return Err(AdminError::Invalid(
                "give after (reading forward) or before (paging back), not both".to_owned(),
            ));
        }
        Ok(search)
    }
}

/// One CSV field, quoted when it must be (RFC 4180), and never read as a formula by a
/// spreadsheet.
fn csv_field(text: &str) -> String {
    let guarded = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if guarded.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}

/// `GET /api/v1/events`: JSON (`format=json`, the default), JSON lines (`jsonl`) or CSV.
pub(crate) async fn events(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Params(query): Params<EventQuery>,
) -> Response {
    let search = match query.search() {
        Ok(search) => search,
        Err(e) => return failure(e),
    };
    let records = match shared.ops.events(&caller.actor, search).await {
        Ok(records) => records,
        Err(e) => return failure(e),
    };
    match query.format.as_deref().unwrap_or("json") {
        "json" => {
            // `next_after` reads on forward from the newest record shown; `next_before`
            // pages back from the oldest (absent when the page was not full).
            let next = records.last().map(|r| r.seq);
            let asked = match query.limit {
                Some(l) if l > 0 => l.min(wharf_admin::MAX_PAGE),
                Some(_) => wharf_admin::MAX_PAGE,
                None => 100,
            };
            let full = records.len() as i64 >= asked;
            let back = records.first().filter(|_| full).map(|r| r.seq);
            ok(json!({"events": records, "next_after": next, "next_before": back}))
        }
        "jsonl" => {
            let mut body = String::new();
            for record in &records {
                body.push_str(&serde_json::to_string(record).unwrap_or_default());
                body.push('\n');
            }
            (
                [
                    (header::CONTENT_TYPE, "application/jsonl"),
                    (
                        header::CONTENT_DISPOSITION,
                        "attachment; filename=\"events.jsonl\"",
                    ),
                ],
                body,
            )
                .into_response()
        }
        "csv" => {
            let mut body = String::from(
                "seq,time,node,id,name,outcome,service,protocol,account,remote,path,path2,bytes,sha256,message\n",
            );
            for r in &records {
                let fields = [
                    r.seq.to_string(),
                    r.time.clone(),
                    r.node.clone(),
                    r.id.to_string(),
                    r.name.clone(),
                    r.outcome.clone(),
                    r.service.clone().unwrap_or_default(),
                    r.protocol.clone().unwrap_or_default(),
                    r.account.clone().unwrap_or_default(),
                    r.remote.clone().unwrap_or_default(),
                    r.path.clone().unwrap_or_default(),
                    r.path2.clone().unwrap_or_default(),
                    r.bytes.map(|b| b.to_string()).unwrap_or_default(),
                    r.sha256.clone().unwrap_or_default(),
                    r.message.clone().unwrap_or_default(),
                ];
                let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
                body.push_str(&line.join(","));
                body.push_str("\r\n");
            }
            (
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                    (
                        header::CONTENT_DISPOSITION,
                        "attachment; filename=\"events.csv\"",
                    ),
                ],
                body,
            )
                .into_response()
        }
        other => failure(AdminError::Invalid(format!(
            "format {other:?}: use json, jsonl or csv"
        ))),
    }
}

/// `GET /api/v1/admins`.
pub(crate) async fn admins(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
) -> Response {
    match shared.ops.admins(&caller.actor).await {
        Ok(list) => ok(json!({"admins": list.iter().map(admin_view).collect::<Vec<_>>()})),
        Err(e) => failure(e),
    }
}

/// `GET /api/v1/admins/{name}`.
pub(crate) async fn admin(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Segment(name): Segment<String>,
) -> Response {
    match shared.ops.admin(&caller.actor, &name).await {
        Ok(record) => ok(admin_view(&record)),
        Err(e) => failure(e),
    }
}

fn role(text: &str) -> Result<Role, AdminError> {
    text.parse().map_err(AdminError::Invalid)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AdminBody {
    name: String,
    password: String,
    role: String,
    #[serde(default)]
    require_second_factor: bool,
}

/// `POST /api/v1/admins`.
pub(crate) async fn admin_add(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Body(body): Body<AdminBody>,
) -> Response {
    let role = match role(&body.role) {
        Ok(role) => role,
        Err(e) => return failure(e),
    };
    let new = NewAdmin {
        name: body.name,
        password: body.password,
        role,
        require_second_factor: body.require_second_factor,
    };
    match shared.ops.add_admin(&caller.actor, new).await {
        Ok(record) => created(admin_view(&record)),
        Err(e) => failure(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AdminPatch {
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    require_second_factor: Option<bool>,
    #[serde(default)]
    reset_second_factor: bool,
}

/// `PATCH /api/v1/admins/{name}`.
pub(crate) async fn admin_change(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Segment(name): Segment<String>,
    Body(patch): Body<AdminPatch>,
) -> Response {
    let mut changes = Vec::new();
    if let Some(password) = patch.password {
        changes.push(AdminChange::Password(password));
    }
    if let Some(text) = &patch.role {
        match role(text) {
            Ok(role) => changes.push(AdminChange::Role(role)),
            Err(e) => return failure(e),
        }
    }
    if let Some(on) = patch.enabled {
        changes.push(AdminChange::Enabled(on));
    }
    if let Some(on) = patch.require_second_factor {
        changes.push(AdminChange::RequireSecondFactor(on));
    }
    if patch.reset_second_factor {
        changes.push(AdminChange::ResetSecondFactor);
    }
    if changes.is_empty() {
        return failure(AdminError::Invalid(
            "nothing to change: give password, role, enabled, require_second_factor or reset_second_factor".into(),
        ));
    }
    match shared.ops.change_admin(&caller.actor, &name, changes).await {
        Ok(record) => ok(admin_view(&record)),
        Err(e) => failure(e),
    }
}

/// `DELETE /api/v1/admins/{name}`.
pub(crate) async fn admin_remove(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Segment(name): Segment<String>,
) -> Response {
    match shared.ops.remove_admin(&caller.actor, &name).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => failure(e),
    }
}

/// `GET /api/v1/tokens`.
pub(crate) async fn tokens(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
) -> Response {
    match shared.ops.tokens(&caller.actor).await {
        Ok(list) => ok(json!({"tokens": list.iter().map(token_view).collect::<Vec<_>>()})),
        Err(e) => failure(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenBody {
    name: String,
    role: String,
    #[serde(default)]
    admin: Option<String>,
    #[serde(default)]
    days: Option<u32>,
}

/// `POST /api/v1/tokens`: the answer holds the token, the only time it is shown.
pub(crate) async fn token_add(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Body(body): Body<TokenBody>,
) -> Response {
    let role = match role(&body.role) {
        Ok(role) => role,
        Err(e) => return failure(e),
    };
    let new = NewToken {
        name: body.name,
        owner: body.admin,
        role,
        days: body.days.unwrap_or(90),
    };
    match shared.ops.add_token(&caller.actor, new).await {
        Ok(made) => {
            let mut view = token_view(&made.record);
            view["token"] = Value::String(made.token);
            created(view)
        }
        Err(e) => failure(e),
    }
}

/// `DELETE /api/v1/tokens/{name}`.
pub(crate) async fn token_remove(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Segment(name): Segment<String>,
) -> Response {
    match shared.ops.remove_token(&caller.actor, &name).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => failure(e),
    }
}

/// The filters of `GET /api/v1/jobs`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct JobQuery {
    pub(crate) state: Option<String>,
    pub(crate) limit: Option<i64>,
}

impl JobQuery {
    pub(crate) fn state(&self) -> Result<Option<wharf_admin::JobState>, AdminError> {
        self.state
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(wharf_admin::job_state)
            .transpose()
    }
}

/// The limit of `GET /api/v1/transfers/{name}/runs`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunsQuery {
    limit: Option<i64>,
}

/// `GET /api/v1/transfers`.
pub(crate) async fn transfers(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let catalog = shared.configuration.transfers();
    match shared.ops.transfers(&caller.actor, &catalog).await {
        Ok(list) => ok(json!({ "transfers": list })),
        Err(e) => failure(e),
    }
}

/// `GET /api/v1/transfers/{name}/runs`.
pub(crate) async fn transfer_runs(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Segment(name): Segment<String>,
    Params(query): Params<RunsQuery>,
) -> Response {
    let catalog = shared.configuration.transfers();
    match shared
        .ops
        .transfer_runs(&caller.actor, &name, &catalog, query.limit.unwrap_or(20))
        .await
    {
        Ok(list) => {
            ok(json!({"runs": list.iter().map(wharf_admin::transfer_run_view).collect::<Vec<_>>()}))
        }
        Err(e) => failure(e),
    }
}

/// `POST /api/v1/transfers/{name}/run`.
pub(crate) async fn transfer_run(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Segment(name): Segment<String>,
) -> Response {
    let catalog = shared.configuration.transfers();
    match shared
        .ops
        .run_transfer(&caller.actor, &name, &catalog)
        .await
    {
        Ok(()) => ok(json!({"transfer": name, "state": "asked for"})),
        Err(e) => failure(e),
    }
}

/// `GET /api/v1/sessions`.
pub(crate) async fn sessions(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
) -> Response {
    match shared.ops.sessions(&caller.actor, shared.events.live()) {
        Ok(list) => ok(
            json!({"node": shared.node, "sessions": list.iter().map(wharf_admin::session_view).collect::<Vec<_>>()}),
        ),
        Err(e) => failure(e),
    }
}

/// `GET /api/v1/sessions/{id}`.
pub(crate) async fn session(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Segment(id): Segment<String>,
) -> Response {
    match shared.ops.sessions(&caller.actor, shared.events.live()) {
        Ok(list) => match list.iter().find(|s| s.id == id) {
            Some(found) => ok(wharf_admin::session_view(found)),
            None => failure(AdminError::NotFound(format!(
                "no session {id:?} is open on this node"
            ))),
        },
        Err(e) => failure(e),
    }
}

/// `DELETE /api/v1/sessions/{id}`.
pub(crate) async fn session_disconnect(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Segment(id): Segment<String>,
) -> Response {
    match shared
        .ops
        .disconnect(&caller.actor, shared.events.live(), &id)
        .await
    {
        Ok(gone) => ok(json!({"disconnected": wharf_admin::session_view(&gone)})),
        Err(e) => failure(e),
    }
}

/// `GET /api/v1/jobs`.
pub(crate) async fn jobs(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Params(query): Params<JobQuery>,
) -> Response {
    let state = match query.state() {
        Ok(state) => state,
        Err(e) => return failure(e),
    };
    match shared
        .ops
        .jobs(&caller.actor, state, query.limit.unwrap_or(100))
        .await
    {
        Ok(list) => ok(json!({"jobs": list.iter().map(wharf_admin::job_view).collect::<Vec<_>>()})),
        Err(e) => failure(e),
    }
}

/// `POST /api/v1/jobs/{id}/retry`.
pub(crate) async fn job_retry(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Segment(id): Segment<i64>,
) -> Response {
    match shared.ops.retry_job(&caller.actor, id).await {
        Ok(()) => ok(json!({"id": id, "state": "queued"})),
        Err(e) => failure(e),
    }
}

/// `POST /api/v1/jobs/{id}/cancel`.
pub(crate) async fn job_cancel(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Segment(id): Segment<i64>,
) -> Response {
    match shared.ops.cancel_job(&caller.actor, id).await {
        Ok(()) => ok(json!({"id": id, "state": "failed"})),
        Err(e) => failure(e),
    }
}

/// `GET /api/v1/groups`.
pub(crate) async fn groups(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
) -> Response {
    match shared.ops.groups(&caller.actor).await {
        Ok(list) => {
            ok(json!({"groups": list.iter().map(wharf_admin::group_view).collect::<Vec<_>>()}))
        }
        Err(e) => failure(e),
    }
}

/// `GET /api/v1/groups/{name}`.
pub(crate) async fn group(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Segment(name): Segment<String>,
) -> Response {
    match shared.ops.group(&caller.actor, &name).await {
        Ok(group) => ok(wharf_admin::group_view(&group)),
        Err(e) => failure(e),
    }
}

/// A new group as the API takes it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GroupBody {
    name: String,
    #[serde(default)]
    home_template: Option<String>,
    #[serde(default)]
    create_home: bool,
    #[serde(default)]
    rules: Vec<Rule>,
    #[serde(default)]
    protocols: Vec<wharf_types::Protocol>,
    #[serde(default)]
    require_second_factor: bool,
    #[serde(default)]
    max_file_size: Option<u64>,
    /// Where notifications about it go; null or empty: nowhere.
    #[serde(default)]
    email: Option<String>,
}

/// `POST /api/v1/groups`.
pub(crate) async fn group_add(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Body(body): Body<GroupBody>,
) -> Response {
    let group = wharf_admin::GroupRecord {
        name: body.name,
        home_template: body.home_template,
        create_home: body.create_home,
        rules: body.rules,
        protocols: body.protocols,
        upload_mode: None,
        addresses: Default::default(),
        require_second_factor: body.require_second_factor,
        max_file_size: body.max_file_size,
        email: body.email,
    };
    match shared.ops.add_group(&caller.actor, group).await {
        Ok(group) => created(wharf_admin::group_view(&group)),
        Err(e) => failure(e),
    }
}

/// The changes `PATCH /api/v1/groups/{name}` takes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GroupPatch {
    #[serde(default)]
    rules: Option<Vec<Rule>>,
    #[serde(default)]
    protocols: Option<Vec<wharf_types::Protocol>>,
    /// A new address; null or empty removes it.
    #[serde(default, deserialize_with = "given")]
    email: Option<Option<String>>,
}

/// `PATCH /api/v1/groups/{name}`.
pub(crate) async fn group_change(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Segment(name): Segment<String>,
    Body(patch): Body<GroupPatch>,
) -> Response {
    let mut changes = Vec::new();
    if let Some(rules) = patch.rules {
        changes.push(wharf_admin::GroupChange::Rules(rules));
    }
    if let Some(list) = patch.protocols {
        changes.push(wharf_admin::GroupChange::Protocols(list));
    }
    if let Some(email) = patch.email {
        changes.push(wharf_admin::GroupChange::Email(email));
    }
    if changes.is_empty() {
        return failure(AdminError::Invalid(
            "nothing to change: give rules, protocols or email".into(),
        ));
    }
    match shared.ops.change_group(&caller.actor, &name, changes).await {
        Ok(group) => ok(wharf_admin::group_view(&group)),
        Err(e) => failure(e),
    }
}

/// `DELETE /api/v1/groups/{name}`.
pub(crate) async fn group_remove(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Segment(name): Segment<String>,
) -> Response {
    match shared.ops.remove_group(&caller.actor, &name).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => failure(e),
    }
}
