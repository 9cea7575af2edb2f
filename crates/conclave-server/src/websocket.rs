//! The signalling WebSocket: the HTTP/1.1 upgrade (RFC 6455, section 4.2)
//! and the server's writes.
//!
//! A WebSocket connection keeps its write buffer at the capacity of the
//! largest frame it ever wrote. The largest message a participant gets is
//! its join response, whose roster grows with the room (about 85 bytes a
//! participant), so a room of 1000 would leave about 40 KiB behind in
//! every connection. Messages longer than [`FRAGMENT`] therefore go out as
//! a fragmented message (section 5.4) of frames no longer than that, each
//! flushed before the next; the client's WebSocket puts them back together.

use std::future::Future;

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use futures_util::{Sink, SinkExt};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Bytes, Error, Message};

/// An upgraded signalling connection.
pub(crate) type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// The longest frame the server writes.
pub(crate) const FRAGMENT: usize = 1024;

/// A request to upgrade to a WebSocket, checked.
pub(crate) struct Upgrade {
    key: HeaderValue,
    on_upgrade: OnUpgrade,
}

/// Why a connection was refused before the upgrade: not a WebSocket
/// request, or (in `rtc.rs`) no admission.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) message: &'static str,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.status, self.message).into_response()
    }
}

fn refuse(status: StatusCode, message: &'static str) -> Refusal {
    Refusal { status, message }
}

fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// The client's key, if the request asks for a WebSocket as RFC 6455 says.
fn check(parts: &Parts) -> Result<HeaderValue, Refusal> {
    if parts.version != Version::HTTP_11 {
        return Err(refuse(
            StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            "the signalling WebSocket needs HTTP/1.1",
        ));
    }
    if parts.method != Method::GET {
        return Err(refuse(StatusCode::METHOD_NOT_ALLOWED, "GET expected"));
    }
    let headers = &parts.headers;
    if !has_token(headers, header::CONNECTION, "upgrade") || !has_token(headers, header::UPGRADE, "websocket")
    {
        return Err(refuse(StatusCode::UPGRADE_REQUIRED, "WebSocket upgrade expected"));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err(refuse(StatusCode::BAD_REQUEST, "WebSocket version 13 expected"));
    }
    // The key is 16 bytes in base64: 24 characters.
    match headers.get(header::SEC_WEBSOCKET_KEY) {
        Some(key) if key.len() == 24 => Ok(key.clone()),
        _ => Err(refuse(StatusCode::BAD_REQUEST, "invalid WebSocket key")),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Refusal> {
        let key = check(parts)?;
        let on_upgrade = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or_else(|| refuse(StatusCode::UPGRADE_REQUIRED, "this connection cannot be upgraded"))?;
        Ok(Upgrade { key, on_upgrade })
    }
}

impl Upgrade {
    /// Answers the request with `101 Switching Protocols` and runs
    /// `session` on the connection once upgraded.
    pub(crate) fn on_upgrade<F, Fut>(self, config: WebSocketConfig, session: F) -> Response
    where
        F: FnOnce(Socket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let accept = derive_accept_key(self.key.as_bytes());
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            let upgraded = match on_upgrade.await {
                Ok(u) => u,
                Err(e) => {
                    tracing::debug!(error = %e, "WebSocket upgrade failed");
                    return;
                }
            };
            let socket =
                WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
            session(socket).await;
        });
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(v) = HeaderValue::from_str(&accept) {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, v);
        }
        response
    }
}

/// Sends `message` as one binary message, in frames of at most
/// [`FRAGMENT`] bytes, flushing each.
pub(crate) async fn send_binary<S>(sink: &mut S, message: Vec<u8>) -> Result<(), Error>
where
    S: Sink<Message, Error = Error> + Unpin,
{
    if message.len() <= FRAGMENT {
        return sink.send(Message::Binary(message.into())).await;
    }
    let message = Bytes::from(message);
    let mut start = 0;
    while start < message.len() {
        let end = (start + FRAGMENT).min(message.len());
        let opcode = if start == 0 {
            OpCode::Data(Data::Binary)
        } else {
            OpCode::Data(Data::Continue)
        };
        let frame = Frame::message(message.slice(start..end), opcode, end == message.len());
        sink.send(Message::Frame(frame)).await?;
        start = end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use tokio::io::AsyncReadExt;

    fn request() -> Parts {
        let request = axum::http::Request::builder()
            .method(Method::GET)
            .uri("/rtc")
            .version(Version::HTTP_11)
            .header(header::CONNECTION, "keep-alive, Upgrade")
            .header(header::UPGRADE, "websocket")
            .header(header::SEC_WEBSOCKET_VERSION, "13")
            .header(header::SEC_WEBSOCKET_KEY, "dGhlIHNhbXBsZSBub25jZQ==");
        request.body(()).expect("request").into_parts().0
    }

    /// What `check` says of a request changed by `change`.
    fn checked(change: impl FnOnce(&mut Parts)) -> Result<String, StatusCode> {
        let mut parts = request();
        change(&mut parts);
        check(&parts)
            .map(|key| derive_accept_key(key.as_bytes()))
            .map_err(|e| e.status)
    }

    #[test]
    fn a_websocket_request_is_accepted_and_others_are_refused() {
        // RFC 6455, section 1.3.
        assert_eq!(checked(|_| {}), Ok("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".to_string()));
        assert_eq!(
            checked(|p| p.method = Method::POST),
            Err(StatusCode::METHOD_NOT_ALLOWED)
        );
        assert_eq!(
            checked(|p| p.version = Version::HTTP_10),
            Err(StatusCode::HTTP_VERSION_NOT_SUPPORTED)
        );
        assert_eq!(
            checked(|p| p.version = Version::HTTP_2),
            Err(StatusCode::HTTP_VERSION_NOT_SUPPORTED)
        );
        assert_eq!(
            checked(|p| {
                p.headers.remove(header::UPGRADE);
            }),
            Err(StatusCode::UPGRADE_REQUIRED)
        );
        assert_eq!(
            checked(|p| {
                p.headers.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
            }),
            Err(StatusCode::UPGRADE_REQUIRED)
        );
        assert_eq!(
            checked(|p| {
                p.headers
                    .insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
            }),
            Err(StatusCode::UPGRADE_REQUIRED)
        );
        assert_eq!(
            checked(|p| {
                p.headers
                    .insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("8"));
            }),
            Err(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            checked(|p| {
                p.headers.remove(header::SEC_WEBSOCKET_KEY);
            }),
            Err(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            checked(|p| {
                p.headers
                    .insert(header::SEC_WEBSOCKET_KEY, HeaderValue::from_static("short"));
            }),
            Err(StatusCode::BAD_REQUEST)
        );
    }

    /// The frames on the wire: (FIN, opcode, payload length).
    fn frames(mut wire: &[u8]) -> Vec<(bool, u8, usize)> {
        let mut out = Vec::new();
        while !wire.is_empty() {
            let fin = wire[0] & 0x80 != 0;
            let opcode = wire[0] & 0x0f;
            assert_eq!(wire[1] & 0x80, 0, "a server's frames are not masked");
            let (len, header) = match wire[1] & 0x7f {
                126 => (usize::from(u16::from_be_bytes([wire[2], wire[3]])), 4),
                127 => panic!("no frame here is that long"),
                n => (usize::from(n), 2),
            };
            out.push((fin, opcode, len));
            wire = &wire[header + len..];
        }
        out
    }

    async fn written(messages: &[Vec<u8>]) -> Vec<u8> {
        let (ours, mut theirs) = tokio::io::duplex(1 << 20);
        let mut socket = WebSocketStream::from_raw_socket(ours, Role::Server, None).await;
        for m in messages {
            send_binary(&mut socket, m.clone()).await.expect("send");
        }
        drop(socket);
        let mut wire = Vec::new();
        theirs.read_to_end(&mut wire).await.expect("read");
        wire
    }

    #[tokio::test]
    async fn a_long_message_goes_out_in_frames_of_at_most_a_fragment() {
        let long: Vec<u8> = (0..3 * FRAGMENT + 100).map(|i| (i % 251) as u8).collect();
        let exact = vec![7u8; FRAGMENT];
        let wire = written(&[long.clone(), exact.clone(), b"short".to_vec()]).await;
        assert_eq!(
            frames(&wire),
            [
                (false, 2, FRAGMENT),
                (false, 0, FRAGMENT),
                (false, 0, FRAGMENT),
                (true, 0, 100),
                (true, 2, FRAGMENT),
                (true, 2, 5),
            ]
        );

        // A client's WebSocket puts the pieces back together.
        let (ours, theirs) = tokio::io::duplex(1 << 20);
        let mut server = WebSocketStream::from_raw_socket(ours, Role::Server, None).await;
        let mut client = WebSocketStream::from_raw_socket(theirs, Role::Client, None).await;
        send_binary(&mut server, long.clone()).await.expect("send");
        send_binary(&mut server, exact.clone()).await.expect("send");
        for expected in [long, exact] {
            match client.next().await {
                Some(Ok(Message::Binary(got))) => assert_eq!(got.as_ref(), &expected[..]),
                other => panic!("expected one binary message, got {other:?}"),
            }
        }
    }
}
