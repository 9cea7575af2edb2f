//! Meetings over HTTP: the `/api/meetings` routes, and applying what the
//! meetings service decided to the SFU.
//!
//! Account requests use the session cookie (and, when they change
//! something, the session's CSRF token); requests from inside a meeting
//! carry the participant's access token as `Authorization: Bearer`, which
//! a browser never sends on its own. Every request that changes something
//! and carries no bearer token must come from this server's own pages
//! (`Origin`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use conclave_accounts::{Accounts, SessionLevel};
use conclave_meetings::{
    Account, Caller, Effect, Entrant, Entry, LobbyTarget, MeetingRole, MeetingSpec, Meetings, MeetingsError,
    Moderation, Right, Rights, TicketState,
};
use conclave_runtime::{EngineHandle, Engines};
use serde::Deserialize;
use serde_json::json;

use crate::accounts::{SESSION_COOKIE, cookie, request_client, same_origin};

/// Longest wait of a lobby poll.
const LOBBY_WAIT: Duration = Duration::from_secs(20);

#[derive(Clone)]
pub(crate) struct St {
    meetings: Arc<Meetings>,
    accounts: Arc<Accounts>,
    engines: Engines,
    trusted_proxies: Arc<Vec<IpAddr>>,
}

fn now() -> i64 {
    crate::unix_now() as i64
}

pub(crate) fn router(
    meetings: Arc<Meetings>,
    accounts: Arc<Accounts>,
    engines: Engines,
    trusted_proxies: Vec<IpAddr>,
) -> Router {
    let max_file = meetings.settings().max_file_bytes;
    let st = St {
        meetings,
        accounts,
        engines,
        trusted_proxies: Arc::new(trusted_proxies),
    };
    Router::new()
        .route("/", get(list).post(create))
        .route("/{id}", get(get_one).post(update))
        .route("/{id}/delete", post(delete))
        .route("/{id}/invitation", get(invitation))
        .route("/{id}/enter", post(enter))
        .route("/{id}/lobby/admit", post(admit))
        .route("/{id}/lobby/deny", post(deny))
        .route("/{id}/lobby/{ticket}", get(lobby))
        .route("/{id}/lobby/{ticket}/leave", post(leave_lobby))
        .route("/{id}/state", get(state))
        .route("/{id}/lock", post(lock))
        .route("/{id}/rights", post(rights))
        .route("/{id}/moderate", post(moderate))
        .route("/{id}/hand", post(hand))
        .route(
            "/{id}/files",
            post(upload).layer(DefaultBodyLimit::max(max_file.saturating_add(1))),
        )
        .route("/{id}/files/{file}", get(download))
        .route("/{id}/end", post(end))
        .layer(axum::middleware::from_fn(checks))
        .with_state(st)
}

/// Changes need this server's `Origin` unless they carry a bearer token;
/// answers are never cached.
async fn checks(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let writes = req.method() != Method::GET && req.method() != Method::HEAD;
    if writes && bearer(req.headers()).is_none() && !same_origin(req.headers()) {
        return error(MeetingsError::Forbidden);
    }
    let mut resp = next.run(req).await;
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

struct Peer(IpAddr);

impl FromRequestParts<St> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, st: &St) -> Result<Self, Self::Rejection> {
        Ok(Peer(request_client(parts, &st.trusted_proxies)))
    }
}

fn error(e: MeetingsError) -> Response {
    let status = match &e {
        MeetingsError::NotFound => StatusCode::NOT_FOUND,
        MeetingsError::Locked | MeetingsError::Passcode | MeetingsError::Forbidden => StatusCode::FORBIDDEN,
        MeetingsError::TooMany { .. } | MeetingsError::LobbyFull => StatusCode::TOO_MANY_REQUESTS,
        MeetingsError::Invalid(_) => StatusCode::BAD_REQUEST,
        MeetingsError::File(conclave_meetings::FileRefusal::TooLarge) => StatusCode::PAYLOAD_TOO_LARGE,
        MeetingsError::File(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        MeetingsError::Store(_) | MeetingsError::Internal(_) => {
            tracing::error!(error = %e, "meeting request failed");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    let mut body = json!({ "error": e.client_message() });
    match &e {
        MeetingsError::Locked => body["locked"] = json!(true),
        MeetingsError::Passcode => body["passcode"] = json!(true),
        _ => {}
    }
    let mut resp = (status, Json(body)).into_response();
    if let MeetingsError::TooMany { retry_after } = e
        && let Ok(v) = HeaderValue::from_str(&retry_after.max(1).to_string())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

fn not_signed_in() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({ "error": "Please sign in." })),
    )
        .into_response()
}

fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, MeetingsError> {
    b.map(|Json(v)| v)
        .map_err(|_| MeetingsError::Invalid("the request is not valid JSON of the expected form"))
}

/// The signed-in account of the request, if any; with `write`, the CSRF
/// token must match too. A session that still owes a second factor does
/// not count.
async fn account(st: &St, headers: &HeaderMap, write: bool) -> Option<Account> {
    let token = cookie(headers, SESSION_COOKIE)?;
    let s = st.accounts.session(token, now()).await.ok()?;
    if s.level != SessionLevel::Full {
        return None;
    }
    if write
        && !st
            .accounts
            .csrf_ok(&s, headers.get("x-csrf-token").and_then(|v| v.to_str().ok()))
    {
        return None;
    }
    let attributes: serde_json::Value = serde_json::from_str(&s.user.attributes).unwrap_or_default();
    let groups = match attributes.get("groups") {
        Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
        Some(serde_json::Value::String(g)) => g.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    };
    let verified = s
        .user
        .email
        .as_deref()
        .and_then(|e| e.rsplit_once('@'))
        .map(|(_, d)| d.to_owned());
    Some(Account {
        id: s.user.id.clone(),
        email: s.user.email.clone(),
        name: s.user.display_name.clone(),
        groups,
        verified,
    })
}

/// The participant who holds the request's bearer token in meeting `id`.
fn caller(st: &St, headers: &HeaderMap, id: &str) -> Result<Caller, MeetingsError> {
    let token = bearer(headers).ok_or(MeetingsError::Forbidden)?;
    st.meetings.authenticate(id, token, now())
}

/// Applies what the meetings service decided to the SFU, in order; the
/// effects on one engine's rooms in a row are carried out together.
pub(crate) async fn apply(engines: &Engines, effects: Vec<Effect>) {
    let mut effects = effects.into_iter().peekable();
    while let Some(first) = effects.next() {
        let engine = engines.for_room(first.room());
        let mut run = vec![first];
        while let Some(next) = effects.next_if(|e| std::ptr::eq(engines.for_room(e.room()), engine)) {
            run.push(next);
        }
        apply_on(engine, run).await;
    }
}

async fn apply_on(engine: &EngineHandle, effects: Vec<Effect>) {
    let done = engine
        .with(move |sfu, _| {
            for e in effects {
                // A participant who is not connected has nothing to change.
                let _ = match e {
                    Effect::Permissions {
                        room,
                        identity,
                        permissions,
                    } => sfu.set_permissions(&room, &identity, permissions),
                    Effect::Attributes {
                        room,
                        identity,
                        attributes,
                    } => sfu
                        .update_participant(
                            &room,
                            &identity,
                            None,
                            None,
                            attributes.into_iter().collect(),
                            None,
                        )
                        .map(|_| ()),
                    Effect::Mute {
                        room,
                        identity,
                        sources,
                    } => sfu.mute_sources(&room, &identity, &sources).map(|_| ()),
                    Effect::Remove { room, identity } => sfu.remove_participant_by_identity(&room, &identity),
                    Effect::Notify {
                        room,
                        to,
                        topic,
                        payload,
                    } => {
                        let to: Vec<String> = to.iter().map(ToString::to_string).collect();
                        if to.is_empty() && topic == "conclave.lobby" {
                            // Nobody moderates yet: nobody to tell.
                            Ok(())
                        } else {
                            sfu.send_data(&room, payload.into_bytes(), true, &to, Some(topic.to_owned()))
                        }
                    }
                    Effect::Close { room } => sfu.delete_room(&room),
                };
            }
        })
        .await;
    if done.is_err() {
        tracing::error!("the media engine stopped; a meeting change was not applied");
    }
}

async fn reply(st: &St, r: Result<(serde_json::Value, Vec<Effect>), MeetingsError>) -> Response {
    match r {
        Ok((v, effects)) => {
            apply(&st.engines, effects).await;
            Json(v).into_response()
        }
        Err(e) => error(e),
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<serde_json::Value, MeetingsError> {
    serde_json::to_value(v).map_err(|_| MeetingsError::Internal("serialise"))
}

// ---------- meetings of an account ----------

async fn list(State(st): State<St>, headers: HeaderMap) -> Response {
    let Some(a) = account(&st, &headers, false).await else {
        return not_signed_in();
    };
    let r = st
        .meetings
        .list(&a)
        .await
        .and_then(|l| Ok((json!({ "meetings": to_json(&l)? }), Vec::new())));
    reply(&st, r).await
}

async fn create(
    State(st): State<St>,
    headers: HeaderMap,
    b: Result<Json<MeetingSpec>, JsonRejection>,
) -> Response {
    let Some(a) = account(&st, &headers, true).await else {
        return not_signed_in();
    };
    let r = async {
        let spec = body(b)?;
        let v = st.meetings.create(&a, spec, now()).await?;
        Ok((to_json(&v)?, Vec::new()))
    }
    .await;
    reply(&st, r).await
}

async fn get_one(State(st): State<St>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let Some(a) = account(&st, &headers, false).await else {
        return not_signed_in();
    };
    let r = async { Ok((to_json(&st.meetings.get(&a, &id).await?)?, Vec::new())) }.await;
    reply(&st, r).await
}

async fn update(
    State(st): State<St>,
    headers: HeaderMap,
    Path(id): Path<String>,
    b: Result<Json<MeetingSpec>, JsonRejection>,
) -> Response {
    let Some(a) = account(&st, &headers, true).await else {
        return not_signed_in();
    };
    let r = async {
        let spec = body(b)?;
        let (v, effects) = st.meetings.update(&a, &id, spec, now()).await?;
        Ok((to_json(&v)?, effects))
    }
    .await;
    reply(&st, r).await
}

async fn delete(State(st): State<St>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let Some(a) = account(&st, &headers, true).await else {
        return not_signed_in();
    };
    let r = async {
        Ok((
            json!({ "deleted": true }),
            st.meetings.delete(&a, &id, now()).await?,
        ))
    }
    .await;
    reply(&st, r).await
}

// ---------- entering ----------

async fn invitation(
    State(st): State<St>,
    headers: HeaderMap,
    peer: Peer,
    Path(id): Path<String>,
) -> Response {
    let a = account(&st, &headers, false).await;
    let r = async {
        let v = st.meetings.invitation(a.as_ref(), &id, peer.0, now()).await?;
        let mut v = to_json(&v)?;
        v["signed_in"] = json!(a.is_some());
        Ok((v, Vec::new()))
    }
    .await;
    reply(&st, r).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnterReq {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    passcode: Option<String>,
}

fn admitted_json(a: &conclave_meetings::Admitted) -> serde_json::Value {
    json!({ "state": "admitted", "token": a.token, "identity": a.identity, "role": a.role, "room": a.room })
}

async fn enter(
    State(st): State<St>,
    headers: HeaderMap,
    peer: Peer,
    Path(id): Path<String>,
    b: Result<Json<EnterReq>, JsonRejection>,
) -> Response {
    // With a session cookie the request must carry its CSRF token; without
    // one it is a guest's.
    let signed_in = cookie(&headers, SESSION_COOKIE).is_some();
    let a = account(&st, &headers, true).await;
    let r = async {
        let req = body(b)?;
        let who = match (a, signed_in) {
            (Some(a), _) => Entrant::Account(a),
            (None, true) => return Err(MeetingsError::Forbidden),
            (None, false) => Entrant::Guest {
                name: req.name.clone().ok_or(MeetingsError::NotFound)?,
            },
        };
        let (entry, effects) = st
            .meetings
            .enter(who, &id, req.passcode.as_deref(), peer.0, now())
            .await?;
        let v = match entry {
            Entry::Admitted(a) => admitted_json(&a),
            Entry::Waiting { ticket } => json!({ "state": "waiting", "ticket": ticket }),
        };
        Ok((v, effects))
    }
    .await;
    match r {
        Ok((v, effects)) => {
            apply(&st.engines, effects).await;
            let status = if v["state"] == "waiting" {
                StatusCode::ACCEPTED
            } else {
                StatusCode::OK
            };
            (status, Json(v)).into_response()
        }
        Err(e) => error(e),
    }
}

async fn lobby(
    State(st): State<St>,
    Path((id, ticket)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let wait = q.get("wait").is_some_and(|v| v == "1").then_some(LOBBY_WAIT);
    let r = async {
        let v = match st.meetings.lobby_state(&id, &ticket, wait).await? {
            TicketState::Waiting => json!({ "state": "waiting" }),
            TicketState::Admitted { token } => {
                let c = st.meetings.authenticate(&id, &token, now())?;
                json!({ "state": "admitted", "token": token, "identity": c.identity.to_string(),
                        "role": c.role, "room": id })
            }
            TicketState::Denied => json!({ "state": "denied" }),
            TicketState::Ended => json!({ "state": "ended" }),
        };
        Ok((v, Vec::new()))
    }
    .await;
    reply(&st, r).await
}

async fn leave_lobby(State(st): State<St>, Path((id, ticket)): Path<(String, String)>) -> Response {
    let r = st
        .meetings
        .leave_lobby(&id, &ticket)
        .map(|e| (json!({ "left": true }), e));
    reply(&st, r).await
}

// ---------- inside a meeting ----------

async fn state(State(st): State<St>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let r = async {
        let c = caller(&st, &headers, &id)?;
        Ok((to_json(&st.meetings.state(&c).await?)?, Vec::new()))
    }
    .await;
    reply(&st, r).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LobbyReq {
    #[serde(default)]
    ticket: Option<String>,
    #[serde(default)]
    all: bool,
}

async fn decide(
    st: St,
    headers: HeaderMap,
    id: String,
    b: Result<Json<LobbyReq>, JsonRejection>,
    admit: bool,
) -> Response {
    let r = async {
        let c = caller(&st, &headers, &id)?;
        let req = body(b)?;
        let target = match (req.all, req.ticket) {
            (true, None) => LobbyTarget::All,
            (false, Some(t)) => LobbyTarget::One(
                conclave_meetings::Ticket::parse(&t)
                    .ok_or(MeetingsError::Invalid("nobody with this ticket is waiting"))?,
            ),
            _ => return Err(MeetingsError::Invalid("name a ticket or all")),
        };
        Ok((
            json!({ "done": true }),
            st.meetings.decide(&c, target, admit, now()).await?,
        ))
    }
    .await;
    reply(&st, r).await
}

async fn admit(
    State(st): State<St>,
    headers: HeaderMap,
    Path(id): Path<String>,
    b: Result<Json<LobbyReq>, JsonRejection>,
) -> Response {
    decide(st, headers, id, b, true).await
}

async fn deny(
    State(st): State<St>,
    headers: HeaderMap,
    Path(id): Path<String>,
    b: Result<Json<LobbyReq>, JsonRejection>,
) -> Response {
    decide(st, headers, id, b, false).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LockReq {
    locked: bool,
}

async fn lock(
    State(st): State<St>,
    headers: HeaderMap,
    Path(id): Path<String>,
    b: Result<Json<LockReq>, JsonRejection>,
) -> Response {
    let r = async {
        let c = caller(&st, &headers, &id)?;
        let req = body(b)?;
        Ok((
            json!({ "locked": req.locked }),
            st.meetings.lock(&c, req.locked, now()).await?,
        ))
    }
    .await;
    reply(&st, r).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RightsReq {
    rights: Rights,
}

async fn rights(
    State(st): State<St>,
    headers: HeaderMap,
    Path(id): Path<String>,
    b: Result<Json<RightsReq>, JsonRejection>,
) -> Response {
    let r = async {
        let c = caller(&st, &headers, &id)?;
        let req = body(b)?;
        Ok((
            json!({ "rights": req.rights }),
            st.meetings.set_rights(&c, req.rights, now()).await?,
        ))
    }
    .await;
    reply(&st, r).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModerateReq {
    identity: String,
    action: String,
    #[serde(default)]
    source: Option<Right>,
    #[serde(default)]
    role: Option<MeetingRole>,
    #[serde(default)]
    rights: Option<std::collections::BTreeMap<Right, bool>>,
}

async fn moderate(
    State(st): State<St>,
    headers: HeaderMap,
    Path(id): Path<String>,
    b: Result<Json<ModerateReq>, JsonRejection>,
) -> Response {
    let r = async {
        let c = caller(&st, &headers, &id)?;
        let req = body(b)?;
        let action = match req.action.as_str() {
            "mute" => Moderation::Mute,
            "stop_camera" => Moderation::StopCamera,
            "stop_screen_share" => Moderation::StopScreenShare,
            "lower_hand" => Moderation::LowerHand,
            "ask_unmute" => Moderation::AskUnmute(req.source.unwrap_or(Right::Microphone)),
            "remove" => Moderation::Remove,
            "ban" => {
                let effects = st.meetings.ban(&c, &req.identity, now()).await?;
                return Ok((json!({ "done": true }), effects));
            }
            "set_role" => Moderation::SetRole(req.role.ok_or(MeetingsError::Invalid("name the role"))?),
            "grant" => Moderation::Grant(req.rights.ok_or(MeetingsError::Invalid("name the rights"))?),
            other => {
                // There is no action that switches anyone's microphone or
                // camera on; asking for one is recorded.
                if other.contains("unmute") || other.contains("enable") || other.contains("start") {
                    tracing::warn!(meeting = %c.meeting, "refused a request to switch on someone else's device");
                }
                return Err(MeetingsError::Invalid("no such action"));
            }
        };
        Ok((json!({ "done": true }), st.meetings.moderate(&c, &req.identity, action).await?))
    }
    .await;
    reply(&st, r).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HandReq {
    raised: bool,
}

async fn hand(
    State(st): State<St>,
    headers: HeaderMap,
    Path(id): Path<String>,
    b: Result<Json<HandReq>, JsonRejection>,
) -> Response {
    let r = async {
        let c = caller(&st, &headers, &id)?;
        let req = body(b)?;
        let now_ms = i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis()),
        )
        .unwrap_or(0);
        Ok((
            json!({ "raised": req.raised }),
            st.meetings.hand(&c, req.raised, now_ms)?,
        ))
    }
    .await;
    reply(&st, r).await
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

async fn upload(State(st): State<St>, headers: HeaderMap, Path(id): Path<String>, data: Bytes) -> Response {
    let r = async {
        let c = caller(&st, &headers, &id)?;
        let name = headers
            .get("x-file-name")
            .and_then(|v| v.to_str().ok())
            .and_then(percent_decode)
            .ok_or(MeetingsError::Invalid("name the file in X-File-Name"))?;
        let (view, effects) = st.meetings.upload(&c, &name, &data, now()).await?;
        Ok((to_json(&view)?, effects))
    }
    .await;
    reply(&st, r).await
}

async fn download(
    State(st): State<St>,
    headers: HeaderMap,
    Path((id, file)): Path<(String, String)>,
) -> Response {
    let r = async {
        let c = caller(&st, &headers, &id)?;
        st.meetings.download(&c, &file).await
    }
    .await;
    match r {
        Ok((f, data)) => {
            let ascii: String = f
                .name
                .chars()
                .map(|ch| {
                    if ch.is_ascii_alphanumeric() || "._- ".contains(ch) {
                        ch
                    } else {
                        '_'
                    }
                })
                .collect();
            let mut resp = (StatusCode::OK, data).into_response();
            let h = resp.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&f.content_type) {
                h.insert(header::CONTENT_TYPE, v);
            }
            if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{ascii}\"")) {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("sandbox; default-src 'none'"),
            );
            h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
            resp
        }
        Err(e) => error(e),
    }
}

async fn end(State(st): State<St>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let r = async {
        let c = caller(&st, &headers, &id)?;
        Ok((json!({ "ended": true }), st.meetings.end(&c, now()).await?))
    }
    .await;
    reply(&st, r).await
}

/// Forgets expired admissions and lobby tickets now and then.
pub(crate) fn spawn_housekeeping(meetings: Arc<Meetings>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            meetings.housekeeping(now());
        }
    });
}
