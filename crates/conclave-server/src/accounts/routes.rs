//! The `/api/account` routes.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use conclave_accounts::{Accounts, AccountsError, CurrentSession, NewSession, Role};
use serde::Deserialize;
use serde_json::json;

use super::{OIDC_COOKIE, SESSION_COOKIE};

/// The state of the account routes: the service and the proxies whose
/// `X-Forwarded-For` is believed.
#[derive(Clone)]
pub(crate) struct St {
    accounts: Arc<Accounts>,
    trusted_proxies: Arc<Vec<IpAddr>>,
}

impl std::ops::Deref for St {
    type Target = Accounts;

    fn deref(&self) -> &Accounts {
        &self.accounts
    }
}

fn now() -> i64 {
    crate::unix_now() as i64
}

/// The accounts API, mounted at `/api/account`.
pub(crate) fn router(accounts: Arc<Accounts>, trusted_proxies: Vec<IpAddr>) -> Router {
    let state = St {
        accounts,
        trusted_proxies: Arc::new(trusted_proxies),
    };
    Router::new()
        .route("/config", get(config))
        .route("/register", post(register))
        .route("/confirm", post(confirm))
        .route("/invite/accept", post(accept_invite))
        .route("/password-reset/request", post(request_reset))
        .route("/password-reset", post(reset_password))
        .route("/sign-in", post(sign_in))
        .route("/sign-in/totp", post(sign_in_totp))
        .route("/sign-in/recovery", post(sign_in_recovery))
        .route("/sign-in/passkey/start", post(sign_in_passkey_start))
        .route("/sign-in/passkey/finish", post(sign_in_passkey_finish))
        .route("/sign-out", post(sign_out))
        .route("/me", get(me))
        .route("/totp/start", post(totp_start))
        .route("/totp/confirm", post(totp_confirm))
        .route("/totp/remove", post(totp_remove))
        .route("/passkeys/start", post(passkey_start))
        .route("/passkeys/finish", post(passkey_finish))
        .route("/passkeys/remove", post(passkey_remove))
        .route("/recovery-codes", post(recovery_codes))
        .route("/password", post(change_password))
        .route("/sessions", get(sessions))
        .route("/sessions/revoke", post(revoke_session))
        .route("/delete", post(delete_account))
        .route("/admin/users", get(admin_users))
        .route("/admin/invite", post(admin_invite))
        .route("/admin/user", post(admin_user))
        .route("/admin/audit", get(admin_audit))
        .route("/oidc/{provider}/start", get(oidc_start))
        .route("/oidc/{provider}/callback", get(oidc_callback))
        .layer(axum::middleware::from_fn(same_origin_only))
        .with_state(state)
}

// ---------- request checks ----------

/// Refuses a state-changing request whose `Origin` is not this server.
/// Browsers send `Origin` with every cross-origin and same-origin POST, so
/// a form or script on another site cannot reach these routes.
async fn same_origin_only(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if req.method() != Method::GET && req.method() != Method::HEAD && !same_origin(req.headers()) {
        return error(AccountsError::Forbidden);
    }
    let mut resp = next.run(req).await;
    // Account answers are personal: never cached.
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

pub(crate) fn same_origin(headers: &HeaderMap) -> bool {
    if headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v != "same-origin")
    {
        return false;
    }
    // Exactly one Origin and one Host.
    let mut origins = headers.get_all(header::ORIGIN).iter();
    let mut hosts = headers.get_all(header::HOST).iter();
    let (Some(origin), None, Some(host), None) = (origins.next(), origins.next(), hosts.next(), hosts.next())
    else {
        return false;
    };
    let (Ok(origin), Ok(host)) = (origin.to_str(), host.to_str()) else {
        return false;
    };
    let Some(rest) = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
    else {
        return false;
    };
    rest.eq_ignore_ascii_case(host)
}

/// The address the request came from: the connection's peer, or, when
/// the peer is a trusted proxy, the last address in `X-Forwarded-For`
/// that is not one (unspecified when unknown).
struct Peer(IpAddr);

impl FromRequestParts<St> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, st: &St) -> Result<Self, Self::Rejection> {
        Ok(Peer(request_client(parts, &st.trusted_proxies)))
    }
}

/// The client address of a request (see [`client_address`]).
pub(crate) fn request_client(parts: &Parts, trusted: &[IpAddr]) -> IpAddr {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    client_address(peer, &parts.headers, trusted)
}

pub(crate) fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse().ok())
        .collect();
    forwarded
        .into_iter()
        .rev()
        .find(|ip| !trusted.contains(ip))
        .unwrap_or(peer)
}

pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn user_agent(headers: &HeaderMap) -> &str {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The request's session; for state-changing requests, also its CSRF token.
async fn session(st: &St, headers: &HeaderMap, write: bool) -> Result<CurrentSession, AccountsError> {
    let token = cookie(headers, SESSION_COOKIE).ok_or(AccountsError::NotSignedIn)?;
    let s = st.session(token, now()).await?;
    if write && !st.csrf_ok(&s, headers.get("x-csrf-token").and_then(|v| v.to_str().ok())) {
        return Err(AccountsError::Forbidden);
    }
    Ok(s)
}

fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, AccountsError> {
    b.map(|Json(v)| v)
        .map_err(|_| AccountsError::Invalid("The request is not valid JSON of the expected form."))
}

// ---------- responses ----------

fn error(e: AccountsError) -> Response {
    if e.is_internal() {
        tracing::error!(error = %e, "account request failed");
    }
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, Json(json!({ "error": e.client_message() }))).into_response();
    if let AccountsError::Throttled { retry_after } = e
        && let Ok(v) = HeaderValue::from_str(&retry_after.to_string())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

fn reply(r: Result<serde_json::Value, AccountsError>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => error(e),
    }
}

fn session_cookie(s: &NewSession, max_age: i64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={}; Path=/; Max-Age={max_age}; Secure; HttpOnly; SameSite=Strict",
        s.token
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn clear_cookie(name: &'static str) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{name}=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Strict"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A response that hands the browser a new session.
fn with_session(st: &St, s: NewSession, extra: serde_json::Value) -> Response {
    let mut v = json!({ "level": s.level.as_str(), "csrf": s.csrf });
    if let (Some(obj), serde_json::Value::Object(more)) = (v.as_object_mut(), extra) {
        obj.extend(more);
    }
    let mut resp = Json(v).into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        session_cookie(&s, st.settings().session_absolute),
    );
    resp
}

// ---------- handlers ----------

async fn config(State(st): State<St>) -> Response {
    let providers: Vec<_> = st
        .oidc_providers()
        .into_iter()
        .map(|(id, name)| json!({ "id": id, "name": name }))
        .collect();
    Json(json!({
        "self_registration": st.settings().self_registration,
        "passkeys": st.passkeys_available(),
        "min_password_length": st.settings().password.min_chars,
        "oidc": providers,
    }))
    .into_response()
}

#[derive(Deserialize)]
struct RegisterReq {
    email: String,
    name: String,
    password: String,
}

async fn register(
    State(st): State<St>,
    Peer(peer): Peer,
    b: Result<Json<RegisterReq>, JsonRejection>,
) -> Response {
    let r = async {
        let b = body(b)?;
        st.register(&b.email, &b.name, &b.password, peer, now()).await?;
        Ok(json!({ "ok": true }))
    };
    reply(r.await)
}

#[derive(Deserialize)]
struct TokenReq {
    token: String,
}

async fn confirm(State(st): State<St>, b: Result<Json<TokenReq>, JsonRejection>) -> Response {
    let r = async {
        let b = body(b)?;
        st.confirm_email(&b.token, now()).await?;
        Ok(json!({ "ok": true }))
    };
    reply(r.await)
}

#[derive(Deserialize)]
struct AcceptReq {
    token: String,
    name: String,
    password: String,
}

async fn accept_invite(State(st): State<St>, b: Result<Json<AcceptReq>, JsonRejection>) -> Response {
    let r = async {
        let b = body(b)?;
        st.accept_invite(&b.token, &b.name, &b.password, now()).await?;
        Ok(json!({ "ok": true }))
    };
    reply(r.await)
}

#[derive(Deserialize)]
struct EmailReq {
    email: String,
}

async fn request_reset(
    State(st): State<St>,
    Peer(peer): Peer,
    b: Result<Json<EmailReq>, JsonRejection>,
) -> Response {
    let r = async {
        let b = body(b)?;
        st.request_password_reset(&b.email, peer, now()).await?;
        Ok(json!({ "ok": true }))
    };
    reply(r.await)
}

#[derive(Deserialize)]
struct ResetReq {
    token: String,
    password: String,
}

async fn reset_password(State(st): State<St>, b: Result<Json<ResetReq>, JsonRejection>) -> Response {
    let r = async {
        let b = body(b)?;
        st.reset_password(&b.token, &b.password, now()).await?;
        Ok(json!({ "ok": true }))
    };
    reply(r.await)
}

#[derive(Deserialize)]
struct SignInReq {
    email: String,
    password: String,
}

async fn sign_in(
    State(st): State<St>,
    Peer(peer): Peer,
    headers: HeaderMap,
    b: Result<Json<SignInReq>, JsonRejection>,
) -> Response {
    let b = match body(b) {
        Ok(b) => b,
        Err(e) => return error(e),
    };
    let old = cookie(&headers, SESSION_COOKIE);
    match st
        .sign_in(&b.email, &b.password, peer, user_agent(&headers), old, now())
        .await
    {
        Ok(s) => with_session(&st, s, json!({})),
        Err(e) => {
            let mut resp = error(e);
            if old.is_some() {
                resp.headers_mut()
                    .append(header::SET_COOKIE, clear_cookie(SESSION_COOKIE));
            }
            resp
        }
    }
}

#[derive(Deserialize)]
struct CodeReq {
    code: String,
}

async fn sign_in_totp(
    State(st): State<St>,
    headers: HeaderMap,
    b: Result<Json<CodeReq>, JsonRejection>,
) -> Response {
    let r = async {
        let s = session(&st, &headers, true).await?;
        let b = body(b)?;
        st.sign_in_totp(&s, &b.code, now()).await
    };
    match r.await {
        Ok(n) => with_session(&st, n, json!({})),
        Err(e) => error(e),
    }
}

async fn sign_in_recovery(
    State(st): State<St>,
    headers: HeaderMap,
    b: Result<Json<CodeReq>, JsonRejection>,
) -> Response {
    let r = async {
        let s = session(&st, &headers, true).await?;
        let b = body(b)?;
        st.sign_in_recovery(&s, &b.code, now()).await
    };
    match r.await {
        Ok(n) => with_session(&st, n, json!({})),
        Err(e) => error(e),
    }
}

async fn sign_in_passkey_start(State(st): State<St>, headers: HeaderMap) -> Response {
    let r = async {
        let s = session(&st, &headers, true).await?;
        st.passkey_sign_in_start(&s, now()).await
    };
    reply(r.await)
}

#[derive(Deserialize)]
struct CredentialReq {
    credential: serde_json::Value,
    #[serde(default)]
    name: String,
}

async fn sign_in_passkey_finish(
    State(st): State<St>,
    headers: HeaderMap,
    b: Result<Json<CredentialReq>, JsonRejection>,
) -> Response {
    let r = async {
        let s = session(&st, &headers, true).await?;
        let b = body(b)?;
        st.passkey_sign_in_finish(&s, b.credential, now()).await
    };
    match r.await {
        Ok(n) => with_session(&st, n, json!({})),
        Err(e) => error(e),
    }
}

async fn sign_out(State(st): State<St>, headers: HeaderMap) -> Response {
    let r = async {
        // Signing out needs the CSRF token too: another site must not end sessions.
        let _ = session(&st, &headers, true).await?;
        if let Some(token) = cookie(&headers, SESSION_COOKIE) {
            st.sign_out(token).await?;
        }
        Ok(())
    };
    match r.await {
        Ok(()) | Err(AccountsError::NotSignedIn) => {
            let mut resp = Json(json!({ "ok": true })).into_response();
            resp.headers_mut()
                .append(header::SET_COOKIE, clear_cookie(SESSION_COOKIE));
            resp
        }
        Err(e) => error(e),
    }
}

async fn me(State(st): State<St>, headers: HeaderMap) -> Response {
    let r = async {
        let s = session(&st, &headers, false).await?;
        let account = st.account(&s).await?;
        Ok(json!({ "level": s.level.as_str(), "csrf": s.csrf, "account": account }))
    };
    match r.await {
        Ok(v) => Json(v).into_response(),
        Err(AccountsError::NotSignedIn) => {
            let mut resp = error(AccountsError::NotSignedIn);
            if cookie(&headers, SESSION_COOKIE).is_some() {
                resp.headers_mut()
                    .append(header::SET_COOKIE, clear_cookie(SESSION_COOKIE));
            }
            resp
        }
        Err(e) => error(e),
    }
}

async fn totp_start(State(st): State<St>, headers: HeaderMap) -> Response {
    let r = async {
        let s = session(&st, &headers, true).await?;
        let setup = st.totp_begin(&s, now()).await?;
        Ok(json!({ "secret": setup.secret, "uri": setup.uri }))
    };
    reply(r.await)
}

/// The answer to an enrolment: recovery codes and perhaps a new session.
fn enrolled(st: &St, e: conclave_accounts::Enrolled) -> Response {
    let extra = json!({ "recovery_codes": e.recovery_codes });
    match e.session {
        Some(s) => with_session(st, s, extra),
        None => Json(extra).into_response(),
    }
}

async fn totp_confirm(
    State(st): State<St>,
    headers: HeaderMap,
    b: Result<Json<CodeReq>, JsonRejection>,
) -> Response {
    let r = async {
        let s = session(&st, &headers, true).await?;
        let b = body(b)?;
        st.totp_confirm(&s, &b.code, now()).await
    };
    match r.await {
        Ok(e) => enrolled(&st, e),
        Err(e) => error(e),
    }
}

#[derive(Deserialize)]
struct PasswordReq {
    #[serde(default)]
    password: String,
}

async fn totp_remove(
    State(st): State<St>,
    headers: HeaderMap,
    b: Result<Json<PasswordReq>, JsonRejection>,
) -> Response {
    let r = async {
        let s = session(&st, &headers, true).await?;
        let b = body(b)?;
        st.totp_remove(&s, &b.password, now()).await?;
        Ok(json!({ "ok": true }))
    };
    reply(r.await)
}

async fn passkey_start(State(st): State<St>, headers: HeaderMap) -> Response {
    let r = async {
        let s = session(&st, &headers, true).await?;
        st.passkey_register_start(&s, now()).await
    };
    reply(r.await)
}

async fn passkey_finish(
    State(st): State<St>,
    headers: HeaderMap,
    b: Result<Json<CredentialReq>, JsonRejection>,
) -> Response {
    let r = async {
        let s = session(&st, &headers, true).await?;
        let b = body(b)?;
        st.passkey_register_finish(&s, &b.name, b.credential, now()).await
    };
    match r.await {
        Ok(e) => enrolled(&st, e),
        Err(e) => error(e),
    }
}

#[derive(Deserialize)]
struct RemoveReq {
    id: String,
    #[serde(default)]
    password: String,
}

async fn passkey_remove(
    State(st): State<St>,
    headers: HeaderMap,
    b: Result<Json<RemoveReq>, JsonRejection>,
) -> Response {
    let r = async {
        let s = session(&st, &headers, true).await?;
        let b = body(b)?;
        st.passkey_remove(&s, &b.id, &b.password, now()).await?;
        Ok(json!({ "ok": true }))
    };
    reply(r.await)
}

async fn recovery_codes(
    State(st): State<St>,
    headers: HeaderMap,
    b: Result<Json<PasswordReq>, JsonRejection>,
) -> Response {
    let r = async {
        let s = session(&st, &headers, true).await?;
        let b = body(b)?;
        let codes = st.recovery_codes_renew(&s, &b.password, now()).await?;
        Ok(json!({ "recovery_codes": codes }))
    };
    reply(r.await)
}

#[derive(Deserialize)]
struct ChangePasswordReq {
    #[serde(default)]
    current: String,
    new: String,
}

async fn change_password(
    State(st): State<St>,
    headers: HeaderMap,
    b: Result<Json<ChangePasswordReq>, JsonRejection>,
) -> Response {
    let r = async {
        let s = session(&st, &headers, true).await?;
        let b = body(b)?;
        st.change_password(&s, &b.current, &b.new, now()).await?;
        Ok(json!({ "ok": true }))
    };
    reply(r.await)
}

async fn sessions(State(st): State<St>, headers: HeaderMap) -> Response {
    let r = async {
        let s = session(&st, &headers, false).await?;
        Ok(json!({ "sessions": st.sessions(&s).await? }))
    };
    reply(r.await)
}

#[derive(Deserialize)]
struct IdReq {
    id: String,
}

async fn revoke_session(
    State(st): State<St>,
    headers: HeaderMap,
    b: Result<Json<IdReq>, JsonRejection>,
) -> Response {
    let r = async {
        let s = session(&st, &headers, true).await?;
        let b = body(b)?;
        st.revoke_session(&s, &b.id, now()).await?;
        Ok(json!({ "ok": true }))
    };
    reply(r.await)
}

async fn delete_account(
    State(st): State<St>,
    headers: HeaderMap,
    b: Result<Json<PasswordReq>, JsonRejection>,
) -> Response {
    let r = async {
        let s = session(&st, &headers, true).await?;
        let b = body(b)?;
        st.delete_account(&s, &b.password, now()).await
    };
    match r.await {
        Ok(()) => {
            let mut resp = Json(json!({ "ok": true })).into_response();
            resp.headers_mut()
                .append(header::SET_COOKIE, clear_cookie(SESSION_COOKIE));
            resp
        }
        Err(e) => error(e),
    }
}

async fn admin_users(State(st): State<St>, headers: HeaderMap) -> Response {
    let r = async {
        let s = session(&st, &headers, false).await?;
        Ok(json!({ "users": st.admin_users(&s).await? }))
    };
    reply(r.await)
}

#[derive(Deserialize)]
struct InviteReq {
    email: String,
    #[serde(default)]
    role: String,
}

fn role(s: &str) -> Result<Role, AccountsError> {
    match s {
        "" | "user" => Ok(Role::User),
        "admin" => Ok(Role::Admin),
        _ => Err(AccountsError::Invalid("The role must be user or admin.")),
    }
}

async fn admin_invite(
    State(st): State<St>,
    headers: HeaderMap,
    b: Result<Json<InviteReq>, JsonRejection>,
) -> Response {
    let r = async {
        let s = session(&st, &headers, true).await?;
        let b = body(b)?;
        st.invite(&s, &b.email, role(&b.role)?, now()).await?;
        Ok(json!({ "ok": true }))
    };
    reply(r.await)
}

#[derive(Deserialize)]
struct AdminUserReq {
    id: String,
    action: String,
    #[serde(default)]
    role: String,
}

async fn admin_user(
    State(st): State<St>,
    headers: HeaderMap,
    b: Result<Json<AdminUserReq>, JsonRejection>,
) -> Response {
    let r = async {
        let s = session(&st, &headers, true).await?;
        let b = body(b)?;
        let t = now();
        match b.action.as_str() {
            "disable" => st.admin_set_enabled(&s, &b.id, false, t).await?,
            "enable" => st.admin_set_enabled(&s, &b.id, true, t).await?,
            "role" => st.admin_set_role(&s, &b.id, role(&b.role)?, t).await?,
            "delete" => st.admin_delete(&s, &b.id, t).await?,
            _ => return Err(AccountsError::Invalid("Unknown action.")),
        }
        Ok(json!({ "ok": true }))
    };
    reply(r.await)
}

async fn admin_audit(State(st): State<St>, headers: HeaderMap) -> Response {
    let r = async {
        let s = session(&st, &headers, false).await?;
        let entries: Vec<_> = st
            .admin_audit(&s, 200)
            .await?
            .into_iter()
            .map(|e| json!({ "at": e.at, "actor": e.actor, "action": e.action, "subject": e.subject, "detail": e.detail }))
            .collect();
        Ok(json!({ "entries": entries }))
    };
    reply(r.await)
}

fn redirect(to: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `GET /api/account/oidc/{provider}/start`: to the provider, with a cookie
/// that binds the answer to this browser.
async fn oidc_start(State(st): State<St>, Path(provider): Path<String>) -> Response {
    match st.oidc_start(&provider, now()).await {
        Ok((url, binding)) => {
            let mut resp = redirect(&url);
            if let Ok(v) = HeaderValue::from_str(&format!(
                "{OIDC_COOKIE}={binding}; Path=/; Max-Age=600; Secure; HttpOnly; SameSite=Lax"
            )) {
                resp.headers_mut().append(header::SET_COOKIE, v);
            }
            resp
        }
        Err(e) => {
            if e.is_internal() || matches!(e, AccountsError::External(_)) {
                tracing::error!(error = %e, "OpenID sign-in could not start");
            }
            redirect(&format!(
                "/account/sign-in#error={}",
                percent_encode(&e.client_message())
            ))
        }
    }
}

#[derive(Deserialize)]
struct CallbackQuery {
    #[serde(default)]
    code: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    error: String,
}

/// `GET /api/account/oidc/{provider}/callback`: the provider's answer.
async fn oidc_callback(
    State(st): State<St>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    query: Result<Query<CallbackQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let result = match query {
        Ok(Query(q)) if q.error.is_empty() => {
            st.oidc_finish(
                &provider,
                &q.code,
                &q.state,
                cookie(&headers, OIDC_COOKIE),
                user_agent(&headers),
                cookie(&headers, SESSION_COOKIE),
                now(),
            )
            .await
        }
        _ => Err(AccountsError::LinkInvalid),
    };
    let mut resp = match result {
        Ok(s) => {
            // The account page continues with whatever step is due.
            let mut resp = redirect("/account");
            resp.headers_mut().append(
                header::SET_COOKIE,
                session_cookie(&s, st.settings().session_absolute),
            );
            resp
        }
        Err(e) => {
            if e.is_internal() || matches!(e, AccountsError::External(_)) {
                tracing::error!(error = %e, "OpenID sign-in failed");
            }
            redirect(&format!(
                "/account/sign-in#error={}",
                percent_encode(&e.client_message())
            ))
        }
    };
    resp.headers_mut()
        .append(header::SET_COOKIE, clear_cookie(OIDC_COOKIE));
    resp
}
