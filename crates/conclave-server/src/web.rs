//! The embedded web app, the open-rooms join endpoint, health and metrics.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use conclave_token::{ApiKey, ApiSecret, Claims, VideoGrant};
use serde::Deserialize;

use crate::AppState;

mod assets {
    include!(concat!(env!("OUT_DIR"), "/assets.rs"));
}

/// The Content-Security-Policy of every page: nothing inline, nothing from
/// elsewhere.
pub(crate) const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
media-src 'self' blob:; connect-src 'self' ws: wss:; worker-src 'self' blob:; frame-ancestors 'none'; \
base-uri 'none'; form-action 'self'; object-src 'none'";

const NOT_BUILT: &str = "<!doctype html><title>Conclave</title><p>The web app is not part of this build. \
Build it with <code>cargo xtask build-web</code> and rebuild the server.</p>";

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" | "map" => "application/json",
        "wav" => "audio/wav",
        "ogg" => "audio/ogg",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn find(path: &str) -> Option<&'static [u8]> {
    assets::ASSETS.iter().find(|(p, _)| *p == path).map(|(_, b)| *b)
}

/// Serves a file of the web app, or `index.html` for app routes.
pub(crate) async fn static_file(uri: Uri) -> Response {
    let path = uri.path();
    let (path, body) = match find(path) {
        Some(b) => (path, b),
        None => {
            let looks_like_file = path.rsplit('/').next().is_some_and(|last| last.contains('.'));
            if looks_like_file {
                return (StatusCode::NOT_FOUND, "not found").into_response();
            }
            match find("/index.html") {
                Some(b) => ("/index.html", b),
                None => {
                    return (
                        StatusCode::OK,
                        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                        NOT_BUILT,
                    )
                        .into_response();
                }
            }
        }
    };
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(path)));
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

#[derive(Deserialize)]
pub(crate) struct JoinRequest {
    room: String,
    name: String,
}

fn json_error(status: StatusCode, msg: &str) -> Response {
    (status, Json(serde_json::json!({ "error": msg }))).into_response()
}

/// Checks the room name the web app allows: 1 to 64 of `A-Z a-z 0-9 _ -`.
pub(crate) fn valid_room(room: &str) -> bool {
    !room.is_empty()
        && room.len() <= 64
        && room
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Checks a display name: 1 to 64 characters, no control characters.
pub(crate) fn valid_name(name: &str) -> bool {
    let n = name.trim().chars().count();
    (1..=64).contains(&n) && !name.chars().any(char::is_control)
}

/// `POST /api/join`: a token for a room by name, in open-rooms mode only.
pub(crate) async fn join(
    State(state): State<AppState>,
    body: Result<Json<JoinRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if !state.open_join {
        return json_error(
            StatusCode::FORBIDDEN,
            "joining by room name is switched off on this server; ask for an invitation link",
        );
    }
    let Ok(Json(req)) = body else {
        return json_error(StatusCode::BAD_REQUEST, "expected JSON with room and name");
    };
    if !valid_room(&req.room) {
        return json_error(
            StatusCode::BAD_REQUEST,
            "room names use 1 to 64 letters, digits, '-' or '_'",
        );
    }
    if !valid_name(&req.name) {
        return json_error(StatusCode::BAD_REQUEST, "names have 1 to 64 characters");
    }
    if req.room.starts_with("mtg_") {
        // A meeting's room is entered through the meeting, never by name.
        return json_error(
            StatusCode::FORBIDDEN,
            "this name belongs to a meeting; use its invitation link",
        );
    }
    let identity = format!("u_{}", conclave_types::random_base62(12));
    match mint(
        &state.api_key,
        &state.api_secret,
        &req.room,
        &identity,
        req.name.trim(),
        6 * 3600,
    ) {
        Ok(token) => Json(serde_json::json!({ "token": token, "identity": identity })).into_response(),
        Err(_) => json_error(StatusCode::INTERNAL_SERVER_ERROR, "could not issue a token"),
    }
}

/// A participant token with the ordinary grants.
pub(crate) fn mint(
    key: &ApiKey,
    secret: &ApiSecret,
    room: &str,
    identity: &str,
    name: &str,
    ttl_secs: u64,
) -> Result<String, conclave_token::TokenError> {
    let mut claims = Claims::for_join(identity, room, crate::unix_now(), ttl_secs);
    claims.name = name.to_owned();
    claims.video = VideoGrant {
        room_join: true,
        room: room.to_owned(),
        can_publish: Some(true),
        can_subscribe: Some(true),
        can_publish_data: Some(true),
        ..VideoGrant::default()
    };
    conclave_token::sign(&claims, key, secret)
}

pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// Ready when every media engine answers.
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    match engine_stats(&state).await {
        Some(_) => (StatusCode::OK, "ready").into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "media engine stopped").into_response(),
    }
}

/// The figures of each engine; `None` when one has stopped.
async fn engine_stats(state: &AppState) -> Option<Vec<conclave_signal::Stats>> {
    let mut each = Vec::new();
    for engine in state.engines.all() {
        each.push(engine.with(|sfu, _| sfu.stats()).await.ok()?);
    }
    Some(each)
}

/// A per-engine metric: name, type, help and how to read it.
type EngineFigure = (
    &'static str,
    &'static str,
    &'static str,
    fn(&conclave_signal::Stats) -> u64,
);

/// Prometheus text exposition of the server's figures.
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    let Some(each) = engine_stats(&state).await else {
        return (StatusCode::SERVICE_UNAVAILABLE, "media engine stopped").into_response();
    };
    let mut s = conclave_signal::Stats::default();
    for e in &each {
        s += *e;
    }
    let mut out = String::new();
    // Per engine, to see how rooms spread over them.
    let per_engine: [EngineFigure; 3] = [
        (
            "conclave_engine_rooms",
            "gauge",
            "Rooms open on a media engine.",
            |e| e.rooms as u64,
        ),
        (
            "conclave_engine_participants",
            "gauge",
            "Participants connected to a media engine.",
            |e| e.participants as u64,
        ),
        (
            "conclave_engine_rtp_forwarded_total",
            "counter",
            "RTP packets a media engine forwarded to subscribers.",
            |e| e.media.rtp_forwarded,
        ),
    ];
    for (name, kind, help, value) in per_engine {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (i, e) in each.iter().enumerate() {
            out.push_str(&format!("{name}{{engine=\"{i}\"}} {}\n", value(e)));
        }
    }
    let mut put = |name: &str, kind: &str, help: &str, value: u64| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    };
    put("conclave_rooms", "gauge", "Rooms open.", s.rooms as u64);
    put(
        "conclave_participants",
        "gauge",
        "Participants connected.",
        s.participants as u64,
    );
    put("conclave_tracks", "gauge", "Tracks published.", s.tracks as u64);
    put(
        "conclave_media_packets_in_total",
        "counter",
        "Datagrams received on the media socket.",
        s.media.packets_in,
    );
    put(
        "conclave_media_bytes_in_total",
        "counter",
        "Bytes received on the media socket.",
        s.media.bytes_in,
    );
    put(
        "conclave_media_packets_out_total",
        "counter",
        "Datagrams sent from the media socket.",
        s.media.packets_out,
    );
    put(
        "conclave_media_bytes_out_total",
        "counter",
        "Bytes sent from the media socket.",
        s.media.bytes_out,
    );
    put(
        "conclave_rtp_forwarded_total",
        "counter",
        "RTP packets forwarded to subscribers.",
        s.media.rtp_forwarded,
    );
    put(
        "conclave_nacks_received_total",
        "counter",
        "NACKs received from subscribers.",
        s.media.nacks_received,
    );
    put(
        "conclave_plis_received_total",
        "counter",
        "Keyframe requests (PLI, FIR) received from subscribers.",
        s.media.keyframe_requests_received,
    );
    put(
        "conclave_plis_sent_total",
        "counter",
        "Keyframe requests sent to publishers.",
        s.media.keyframe_requests_sent,
    );
    put(
        "conclave_red_packets_in_total",
        "counter",
        "Audio packets received with RFC 2198 redundancy (RED).",
        s.media.red_packets_in,
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_and_name_rules() {
        assert!(valid_room("team-weekly_2"));
        assert!(!valid_room(""));
        assert!(!valid_room("a b"));
        assert!(!valid_room(&"x".repeat(65)));
        assert!(valid_name("Ada Lovelace"));
        assert!(!valid_name("   "));
        assert!(!valid_name("a\u{7}"));
    }

    #[test]
    fn minted_tokens_verify() {
        let key = ApiKey::new("APItest");
        let secret = ApiSecret::new("0123456789abcdef0123456789abcdef");
        let token = mint(&key, &secret, "r1", "u_1", "Ada", 60).expect("mint");
        let mut v = conclave_token::Verifier::new();
        v.insert(key, secret).expect("insert");
        let claims = v.verify(&token, crate::unix_now()).expect("verify");
        let g = claims.join_grant(None).expect("grant");
        assert_eq!(
            (g.room.as_str(), g.identity.as_str(), g.name.as_str()),
            ("r1", "u_1", "Ada")
        );
        assert!(g.can_publish && g.can_subscribe && g.can_publish_data && !g.room_admin);
    }
}
