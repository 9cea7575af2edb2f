//! The LiveKit signalling endpoint: `/rtc` (protobuf over WebSocket) and
//! `/rtc/validate`.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use conclave_runtime::{ConnOut, EngineHandle, Resume};
use conclave_signal::{ConnId, JoinParams};
use conclave_token::{JoinGrant, TokenError};
use conclave_types::{ParticipantIdentity, ParticipantSid, Permissions, RoomName};
use futures_util::{SinkExt, StreamExt};
use livekit_protocol as lk;
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::AppState;
use crate::websocket::{self, Cork, Refusal, Socket, Upgrade};

/// Largest signalling message accepted from a client.
const MAX_SIGNAL_MESSAGE: usize = 1 << 20;
/// What a signalling connection reads at a time. The WebSocket library's
/// default (128 KiB) is allocated and zero-filled per connection, the
/// largest share of a participant's memory; client messages are mostly
/// small (a ping, a candidate; an offer or answer is one to a few KiB) and
/// a larger one still arrives whole, since the buffer grows to the length
/// its frame header announces.
const SIGNAL_READ_BUFFER: usize = 1024;

/// The most messages written to a client before a flush; more waiting
/// ones go in the next batch, after the client's own messages had a turn.
const MAX_BATCH: usize = 64;

/// Query parameters of a v0 connection.
type Params = HashMap<String, String>;

impl From<TokenError> for Refusal {
    fn from(e: TokenError) -> Self {
        let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::UNAUTHORIZED);
        tracing::info!(error = %e, "token refused");
        Refusal {
            status,
            message: "invalid or insufficient access token",
        }
    }
}

fn bearer(params: &Params, headers: &HeaderMap) -> Option<String> {
    if let Some(t) = params.get("access_token") {
        return Some(t.clone());
    }
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned)
}

/// Verifies the token and turns it into join parameters.
pub(crate) async fn join_params(
    state: &AppState,
    params: &Params,
    headers: &HeaderMap,
) -> Result<JoinParams, Refusal> {
    let token = bearer(params, headers).ok_or(Refusal {
        status: StatusCode::UNAUTHORIZED,
        message: "missing access token",
    })?;
    let claims = state.verifier.verify(&token, crate::unix_now())?;
    let grant = claims.join_grant(None)?;
    let mut join = to_join_params(grant, params)?;
    admit(state, &mut join, &token).await?;
    Ok(join)
}

/// The door of a meeting's room: only a token handed out at admission, while
/// that admission stands, opens it. The admission's current name,
/// permissions and attributes replace the token's, so a token cannot carry
/// rights the hosts have since taken away.
async fn admit(state: &AppState, join: &mut JoinParams, token: &str) -> Result<(), Refusal> {
    let refused = Refusal {
        status: StatusCode::FORBIDDEN,
        message: "not admitted to this meeting",
    };
    let Some(meetings) = &state.meetings else {
        if join.room.as_str().starts_with("mtg_") {
            return Err(refused);
        }
        return Ok(());
    };
    match meetings
        .check_join(&join.room, &join.identity, token, crate::unix_now() as i64)
        .await
    {
        None => Ok(()),
        Some(Ok(a)) => {
            // Meeting admissions are people; bots will be admitted as such.
            join.kind = lk::participant_info::Kind::Standard;
            join.name = a.name;
            join.permissions = a.permissions;
            join.attributes = a.attributes.into_iter().collect();
            join.metadata = String::new();
            Ok(())
        }
        Some(Err(e)) => {
            tracing::warn!(room = %join.room, error = %e, "refused a connection to a meeting without admission");
            Err(refused)
        }
    }
}

fn to_join_params(g: JoinGrant, params: &Params) -> Result<JoinParams, Refusal> {
    let bad = |message| Refusal {
        status: StatusCode::BAD_REQUEST,
        message,
    };
    let room = RoomName::new(g.room).map_err(|_| bad("invalid room name in token"))?;
    let identity = ParticipantIdentity::new(g.identity).map_err(|_| bad("invalid identity in token"))?;
    if g.hidden {
        // No participant may listen in unseen.
        return Err(Refusal {
            status: StatusCode::FORBIDDEN,
            message: "hidden participants are not allowed",
        });
    }
    let permissions = Permissions {
        can_subscribe: g.can_subscribe,
        can_publish: g.can_publish,
        sources: g.publish_sources.clone(),
        can_publish_data: g.can_publish_data,
        can_update_metadata: g.can_update_own_metadata,
        hidden: false,
        admin: g.room_admin,
    };
    Ok(JoinParams {
        room,
        identity,
        name: g.name,
        metadata: g.metadata,
        attributes: g.attributes.into_iter().collect(),
        permissions,
        create_room: true,
        auto_subscribe: params.get("auto_subscribe").is_none_or(|v| v != "0"),
        client_protocol: params.get("protocol").and_then(|p| p.parse().ok()).unwrap_or(0),
        kind: participant_kind(g.kind.as_deref()),
    })
}

/// The participant kind a token claims; anything unknown is a person.
fn participant_kind(kind: Option<&str>) -> lk::participant_info::Kind {
    use lk::participant_info::Kind;
    match kind {
        Some("ingress") => Kind::Ingress,
        Some("egress") => Kind::Egress,
        Some("sip") => Kind::Sip,
        Some("agent") => Kind::Agent,
        _ => Kind::Standard,
    }
}

/// `GET /rtc/validate`: tells a client why a connection would fail.
pub(crate) async fn validate(
    State(state): State<AppState>,
    Query(params): Query<Params>,
    headers: HeaderMap,
) -> Response {
    match join_params(&state, &params, &headers).await {
        Ok(_) => (StatusCode::OK, "success").into_response(),
        Err(r) => r.into_response(),
    }
}

/// `/rtc/v1`: the single-connection protocol is not offered; clients fall
/// back to `/rtc`.
pub(crate) async fn v1_not_supported() -> Response {
    (
        StatusCode::NOT_FOUND,
        "this server speaks the /rtc signalling path",
    )
        .into_response()
}

/// `GET /rtc`: the signalling WebSocket.
pub(crate) async fn connect(
    State(state): State<AppState>,
    Query(params): Query<Params>,
    headers: HeaderMap,
    ws: Upgrade,
) -> Response {
    let join = match join_params(&state, &params, &headers).await {
        Ok(j) => j,
        Err(r) => return r.into_response(),
    };
    let reconnect = params.get("reconnect").is_some_and(|v| v == "1");
    // A resume names the session; a malformed sid means a fresh join.
    let resume = if reconnect {
        params
            .get("sid")
            .and_then(|s| ParticipantSid::parse(s).ok())
            .map(|sid| Resume {
                sid,
                room: join.room.clone(),
                identity: join.identity.clone(),
            })
    } else {
        None
    };
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_SIGNAL_MESSAGE))
        .max_frame_size(Some(MAX_SIGNAL_MESSAGE))
        .read_buffer_size(SIGNAL_READ_BUFFER);
    let join = Box::new(join);
    ws.on_upgrade(config, move |socket, cork| {
        session(state, socket, cork, join, reconnect, resume)
    })
}

/// The session on an upgraded connection. The socket is split before the
/// future is built, and the join's parameters arrive boxed: what a future
/// captures stays in it for as long as it runs, and this one runs for the
/// whole session.
fn session(
    state: AppState,
    socket: Socket,
    cork: Cork,
    join: Box<JoinParams>,
    reconnect: bool,
    resume: Option<Resume>,
) -> impl Future<Output = ()> + Send + 'static {
    let (sink, stream) = socket.split();
    run_session(state, sink, stream, cork, join, reconnect, resume)
}

async fn run_session(
    state: AppState,
    mut sink: WsSink,
    stream: WsStream,
    cork: Cork,
    join: Box<JoinParams>,
    reconnect: bool,
    resume: Option<Resume>,
) {
    // The room's engine: a resumed session is always the same room.
    let engine = state.engines.for_room(&join.room).clone();
    let conn: ConnId = engine.new_conn();
    let (tx, rx) = mpsc::channel::<ConnOut>(conclave_runtime::OUTBOX_CAPACITY);
    if reconnect {
        let resumed = match resume {
            Some(r) => matches!(engine.resume(conn, r, tx).await, Ok(Ok(()))),
            None => false,
        };
        if !resumed {
            // The session is gone: ask the client to join afresh.
            let leave = leave_message(
                lk::DisconnectReason::StateMismatch,
                lk::leave_request::Action::Reconnect,
            );
            let _ = websocket::send_binary(&mut sink, leave.into()).await;
            let _ = sink.send(Message::Close(None)).await;
            return;
        }
        pump(&engine, conn, sink, stream, cork, rx).await;
        return;
    }
    match engine.join(conn, join, tx).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::info!(error = %e, "join refused");
            let leave = leave_message(
                lk::DisconnectReason::JoinFailure,
                lk::leave_request::Action::Disconnect,
            );
            let _ = websocket::send_binary(&mut sink, leave.into()).await;
            let _ = sink
                .send(Message::Close(Some(CloseFrame {
                    code: CloseCode::Policy,
                    reason: e.to_string().into(),
                })))
                .await;
            return;
        }
        Err(_) => return,
    }
    pump(&engine, conn, sink, stream, cork, rx).await;
}

type WsSink = futures_util::stream::SplitSink<Socket, Message>;
type WsStream = futures_util::stream::SplitStream<Socket>;

/// Carries messages both ways until either side closes.
async fn pump(
    engine: &EngineHandle,
    conn: ConnId,
    mut sink: WsSink,
    mut stream: WsStream,
    cork: Cork,
    mut rx: mpsc::Receiver<ConnOut>,
) {
    loop {
        tokio::select! {
            out = rx.recv() => if !write_out(&mut sink, &cork, out, &mut rx).await {
                break;
            },
            inbound = stream.next() => match inbound {
                Some(Ok(Message::Binary(bytes))) => match lk::SignalRequest::decode(bytes.as_ref()) {
                    Ok(req) => {
                        if engine.request(conn, req).is_err() {
                            break;
                        }
                    }
                    Err(_) => {
                        tracing::info!("undecodable signalling message; closing");
                        let _ = sink.send(Message::Close(Some(CloseFrame { code: CloseCode::Invalid, reason: "invalid message".into() }))).await;
                        break;
                    }
                },
                Some(Ok(Message::Text(_))) => {
                    let _ = sink.send(Message::Close(Some(CloseFrame { code: CloseCode::Unsupported, reason: "binary protobuf expected".into() }))).await;
                    break;
                }
                Some(Ok(Message::Close(_))) => {
                    // Answer the client's close (RFC 6455, section 5.5.1).
                    let _ = sink.close().await;
                    break;
                }
                None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    engine.disconnect(conn);
}

/// Writes `first` and what else is already waiting for the client (at
/// most [`MAX_BATCH`] messages) to the corked connection, then flushes
/// once, so that they leave together. False when the session is over.
async fn write_out<S>(
    sink: &mut S,
    cork: &Cork,
    first: Option<ConnOut>,
    rx: &mut mpsc::Receiver<ConnOut>,
) -> bool
where
    S: futures_util::Sink<Message, Error = tokio_tungstenite::tungstenite::Error> + Unpin,
{
    cork.cork();
    let mut next = first;
    let mut written = 0;
    loop {
        match next {
            Some(ConnOut::Message(m)) => {
                if websocket::feed_binary(sink, m.encoded()).await.is_err() {
                    return false;
                }
            }
            Some(ConnOut::Close) | None => {
                // Sending the close flushes what was written before it.
                let _ = sink.send(Message::Close(None)).await;
                return false;
            }
        }
        written += 1;
        if written == MAX_BATCH {
            break;
        }
        next = match rx.try_recv() {
            Ok(m) => Some(m),
            Err(mpsc::error::TryRecvError::Empty) => break,
            Err(mpsc::error::TryRecvError::Disconnected) => None,
        };
    }
    sink.flush().await.is_ok()
}

fn leave_message(reason: lk::DisconnectReason, action: lk::leave_request::Action) -> Vec<u8> {
    lk::SignalResponse {
        message: Some(lk::signal_response::Message::Leave(lk::LeaveRequest {
            can_reconnect: action == lk::leave_request::Action::Reconnect,
            reason: reason as i32,
            action: action as i32,
            ..Default::default()
        })),
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pong(n: i64) -> ConnOut {
        ConnOut::Message(conclave_signal::Outgoing::new(
            lk::signal_response::Message::Pong(n),
        ))
    }

    /// What a client's WebSocket reads until `count` messages or the close.
    async fn read(
        client: &mut (
                 impl futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin
             ),
        count: usize,
    ) -> Vec<Option<i64>> {
        let mut got = Vec::new();
        while got.len() < count {
            match client.next().await {
                Some(Ok(Message::Binary(b))) => {
                    match lk::SignalResponse::decode(b.as_ref()).expect("decode").message {
                        Some(lk::signal_response::Message::Pong(n)) => got.push(Some(n)),
                        other => panic!("unexpected {other:?}"),
                    }
                }
                Some(Ok(Message::Close(_))) => {
                    got.push(None);
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        got
    }

    #[tokio::test]
    async fn waiting_messages_go_out_together_in_order_and_a_close_ends_the_batch() {
        use tokio_tungstenite::WebSocketStream;
        use tokio_tungstenite::tungstenite::protocol::Role;
        let (ours, theirs) = tokio::io::duplex(1 << 20);
        let config = WebSocketConfig::default().write_buffer_size(websocket::WRITE_EAGERLY);
        let (ours, cork) = websocket::Batched::new(ours);
        let mut server = WebSocketStream::from_raw_socket(ours, Role::Server, Some(config)).await;
        let mut client = WebSocketStream::from_raw_socket(theirs, Role::Client, None).await;
        let (tx, mut rx) = mpsc::channel(2 * MAX_BATCH);

        // More than one batch waits: the first write takes MAX_BATCH, the
        // rest stay for the next.
        for n in 1..MAX_BATCH as i64 + 3 {
            tx.try_send(pong(n)).expect("queue");
        }
        let first = rx.recv().await;
        assert!(write_out(&mut server, &cork, first, &mut rx).await);
        assert_eq!(rx.len(), 2, "what is past the batch stays queued");
        let expected: Vec<Option<i64>> = (1..=MAX_BATCH as i64).map(Some).collect();
        assert_eq!(read(&mut client, MAX_BATCH).await, expected);

        // A close among the waiting messages: those before it arrive, then
        // the close, and the session is over.
        tx.try_send(ConnOut::Close).expect("queue");
        tx.try_send(pong(99)).expect("queue");
        let first = rx.recv().await;
        assert!(!write_out(&mut server, &cork, first, &mut rx).await);
        let expected = vec![Some(MAX_BATCH as i64 + 1), Some(MAX_BATCH as i64 + 2), None];
        assert_eq!(read(&mut client, 4).await, expected);

        // The engine gone: the session is over too.
        drop(tx);
        assert!(!write_out(&mut server, &cork, None, &mut rx).await);
    }

    #[test]
    fn token_kinds_become_participant_kinds() {
        use lk::participant_info::Kind;
        assert_eq!(participant_kind(Some("egress")), Kind::Egress);
        assert_eq!(participant_kind(Some("sip")), Kind::Sip);
        assert_eq!(participant_kind(Some("agent")), Kind::Agent);
        assert_eq!(participant_kind(Some("ingress")), Kind::Ingress);
        assert_eq!(participant_kind(Some("standard")), Kind::Standard);
        assert_eq!(participant_kind(Some("ghost")), Kind::Standard);
        assert_eq!(participant_kind(None), Kind::Standard);
    }
}
