//! The Twirp RoomService subset the LiveKit server SDKs call.
//!
//! `POST /twirp/livekit.RoomService/<Method>` with a bearer token, in
//! protobuf or JSON. Errors are Twirp JSON errors.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use conclave_signal::{RoomSettings, SignalError};
use conclave_token::{Claims, TokenError};
use conclave_types::{ParticipantIdentity, RoomName};
use livekit_protocol as lk;
use prost::Message;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::AppState;

/// Largest request body.
pub(crate) const MAX_BODY: usize = 256 * 1024;

struct TwirpError {
    status: StatusCode,
    code: &'static str,
    msg: String,
}

impl TwirpError {
    fn new(status: StatusCode, code: &'static str, msg: impl Into<String>) -> Self {
        Self {
            status,
            code,
            msg: msg.into(),
        }
    }
}

impl IntoResponse for TwirpError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "code": self.code, "msg": self.msg });
        (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response()
    }
}

impl From<TokenError> for TwirpError {
    fn from(e: TokenError) -> Self {
        if e.http_status() == 403 {
            TwirpError::new(StatusCode::FORBIDDEN, "permission_denied", e.to_string())
        } else {
            TwirpError::new(StatusCode::UNAUTHORIZED, "unauthenticated", e.to_string())
        }
    }
}

impl From<SignalError> for TwirpError {
    fn from(e: SignalError) -> Self {
        let (status, code) = match e {
            SignalError::RoomNotFound | SignalError::ParticipantNotFound | SignalError::TrackNotFound => {
                (StatusCode::NOT_FOUND, "not_found")
            }
            SignalError::NotAllowed => (StatusCode::FORBIDDEN, "permission_denied"),
            SignalError::RoomFull => (StatusCode::TOO_MANY_REQUESTS, "resource_exhausted"),
            SignalError::InvalidRequest | SignalError::UnknownConnection => {
                (StatusCode::BAD_REQUEST, "invalid_argument")
            }
        };
        TwirpError::new(status, code, e.to_string())
    }
}

#[derive(Clone, Copy)]
enum Format {
    Protobuf,
    Json,
}

fn format_of(headers: &HeaderMap) -> Result<Format, TwirpError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct.starts_with("application/protobuf") || ct.starts_with("application/x-protobuf") {
        Ok(Format::Protobuf)
    } else if ct.starts_with("application/json") {
        Ok(Format::Json)
    } else {
        Err(TwirpError::new(
            StatusCode::BAD_REQUEST,
            "malformed",
            "unsupported content type",
        ))
    }
}

fn decode<T: Message + Default + DeserializeOwned>(format: Format, body: &[u8]) -> Result<T, TwirpError> {
    let bad = || {
        TwirpError::new(
            StatusCode::BAD_REQUEST,
            "malformed",
            "the request body could not be decoded",
        )
    };
    match format {
        Format::Protobuf => T::decode(body).map_err(|_| bad()),
        Format::Json => {
            if body.iter().all(u8::is_ascii_whitespace) {
                return Ok(T::default());
            }
            serde_json::from_slice(body).map_err(|_| bad())
        }
    }
}

fn encode<T: Message + Serialize>(format: Format, value: &T) -> Response {
    match format {
        Format::Protobuf => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/protobuf")],
            value.encode_to_vec(),
        )
            .into_response(),
        Format::Json => match serde_json::to_vec(value) {
            Ok(body) => (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
            Err(_) => TwirpError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "encoding failed")
                .into_response(),
        },
    }
}

fn claims(state: &AppState, headers: &HeaderMap) -> Result<Claims, TwirpError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            TwirpError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "missing access token",
            )
        })?;
    Ok(state.verifier.verify(token, crate::unix_now())?)
}

fn room_name(s: &str) -> Result<RoomName, TwirpError> {
    RoomName::new(s).map_err(|e| TwirpError::new(StatusCode::BAD_REQUEST, "invalid_argument", e.to_string()))
}

fn identity(s: &str) -> Result<ParticipantIdentity, TwirpError> {
    ParticipantIdentity::new(s)
        .map_err(|e| TwirpError::new(StatusCode::BAD_REQUEST, "invalid_argument", e.to_string()))
}

fn engine_gone() -> TwirpError {
    TwirpError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the media engine is not running",
    )
}

/// `POST /twirp/livekit.RoomService/{method}`.
pub(crate) async fn room_service(
    State(state): State<AppState>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match dispatch(&state, &method, &headers, &body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn dispatch(
    state: &AppState,
    method: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, TwirpError> {
    let format = format_of(headers)?;
    let claims = claims(state, headers)?;
    let engines = &state.engines;
    match method {
        "CreateRoom" => {
            claims.require_room_create()?;
            let req: lk::CreateRoomRequest = decode(format, body)?;
            let name = room_name(&req.name)?;
            let defaults = state.room_defaults.clone();
            let settings = RoomSettings {
                empty_timeout: if req.empty_timeout > 0 {
                    req.empty_timeout
                } else {
                    defaults.empty_timeout
                },
                departure_timeout: if req.departure_timeout > 0 {
                    req.departure_timeout
                } else {
                    defaults.departure_timeout
                },
                max_participants: req.max_participants,
                metadata: req.metadata,
            };
            let room = engines
                .for_room(&name)
                .with(move |sfu, now| sfu.create_room(now, name, settings))
                .await
                .map_err(|_| engine_gone())?;
            Ok(encode(format, &room))
        }
        "ListRooms" => {
            claims.require_room_list()?;
            let req: lk::ListRoomsRequest = decode(format, body)?;
            let names = req
                .names
                .iter()
                .map(|n| room_name(n))
                .collect::<Result<Vec<_>, _>>()?;
            let mut rooms = Vec::new();
            for engine in engines.all() {
                let names = names.clone();
                rooms.extend(
                    engine
                        .with(move |sfu, _| sfu.list_rooms(&names))
                        .await
                        .map_err(|_| engine_gone())?,
                );
            }
            Ok(encode(format, &lk::ListRoomsResponse { rooms }))
        }
        "DeleteRoom" => {
            claims.require_room_create()?;
            let req: lk::DeleteRoomRequest = decode(format, body)?;
            let name = room_name(&req.room)?;
            engines
                .for_room(&name)
                .with(move |sfu, _| sfu.delete_room(&name))
                .await
                .map_err(|_| engine_gone())??;
            Ok(encode(format, &lk::DeleteRoomResponse {}))
        }
        "ListParticipants" => {
            let req: lk::ListParticipantsRequest = decode(format, body)?;
            claims.require_room_admin(&req.room)?;
            let name = room_name(&req.room)?;
            let participants = engines
                .for_room(&name)
                .with(move |sfu, _| sfu.list_participants(&name))
                .await
                .map_err(|_| engine_gone())??;
            Ok(encode(format, &lk::ListParticipantsResponse { participants }))
        }
        "GetParticipant" => {
            let req: lk::RoomParticipantIdentity = decode(format, body)?;
            claims.require_room_admin(&req.room)?;
            let (name, who) = (room_name(&req.room)?, identity(&req.identity)?);
            let info = engines
                .for_room(&name)
                .with(move |sfu, _| sfu.get_participant(&name, &who))
                .await
                .map_err(|_| engine_gone())??;
            Ok(encode(format, &info))
        }
        "RemoveParticipant" => {
            let req: lk::RoomParticipantIdentity = decode(format, body)?;
            claims.require_room_admin(&req.room)?;
            let (name, who) = (room_name(&req.room)?, identity(&req.identity)?);
            engines
                .for_room(&name)
                .with(move |sfu, _| sfu.remove_participant_by_identity(&name, &who))
                .await
                .map_err(|_| engine_gone())??;
            Ok(encode(format, &lk::RemoveParticipantResponse {}))
        }
        "MutePublishedTrack" => {
            let req: lk::MuteRoomTrackRequest = decode(format, body)?;
            claims.require_room_admin(&req.room)?;
            let (name, who) = (room_name(&req.room)?, identity(&req.identity)?);
            let (track, muted) = (req.track_sid.clone(), req.muted);
            let info = engines
                .for_room(&name)
                .with(move |sfu, _| sfu.mute_published_track(&name, &who, &track, muted))
                .await
                .map_err(|_| engine_gone())??;
            Ok(encode(format, &lk::MuteRoomTrackResponse { track: Some(info) }))
        }
        "UpdateParticipant" => {
            let req: lk::UpdateParticipantRequest = decode(format, body)?;
            claims.require_room_admin(&req.room)?;
            let (name, who) = (room_name(&req.room)?, identity(&req.identity)?);
            if req.permission.as_ref().is_some_and(|p| p.hidden) {
                return Err(TwirpError::new(
                    StatusCode::FORBIDDEN,
                    "permission_denied",
                    "hidden participants are not allowed",
                ));
            }
            let new_name = (!req.name.is_empty()).then_some(req.name);
            let metadata = (!req.metadata.is_empty()).then_some(req.metadata);
            let attributes: HashMap<String, String> = req.attributes;
            let permission = req.permission;
            let info = engines
                .for_room(&name)
                .with(move |sfu, _| {
                    sfu.update_participant(&name, &who, new_name, metadata, attributes, permission.as_ref())
                })
                .await
                .map_err(|_| engine_gone())??;
            Ok(encode(format, &info))
        }
        "SendData" => {
            let req: lk::SendDataRequest = decode(format, body)?;
            claims.require_room_admin(&req.room)?;
            let name = room_name(&req.room)?;
            let reliable = req.kind != lk::data_packet::Kind::Lossy as i32;
            let (data, destinations, topic) = (req.data, req.destination_identities, req.topic);
            engines
                .for_room(&name)
                .with(move |sfu, _| sfu.send_data(&name, data, reliable, &destinations, topic))
                .await
                .map_err(|_| engine_gone())??;
            Ok(encode(format, &lk::SendDataResponse {}))
        }
        _ => Err(TwirpError::new(
            StatusCode::NOT_FOUND,
            "bad_route",
            "unknown method",
        )),
    }
}
