//! The signalling WebSocket: the HTTP/1.1 upgrade (RFC 6455, section 4.2)
//! and the server's writes.
//!
//! A WebSocket connection keeps its write buffer at the capacity of the
//! largest frame it ever wrote. The largest message a participant gets is
//! its join response, whose roster grows with the room (about 85 bytes a
//! participant), so a room of 1000 would leave about 40 KiB behind in
//! every connection. Messages longer than [`FRAGMENT`] therefore go out as
//! a fragmented message (section 5.4) of frames no longer than that; the
//! client's WebSocket puts them back together.
//!
//! The WebSocket library writes each frame to the connection as soon as it
//! has it ([`WRITE_EAGERLY`]); when the session corks the connection
//! ([`Cork`]), [`Batched`] below the library collects those writes until
//! the next flush: the frames of a long message, and the messages that
//! were waiting together, leave in one send rather than one send a frame.
//! What was collected is given back after each flush, so an idle
//! connection holds no write buffer.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use futures_util::{Sink, SinkExt};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Bytes, Error, Message};

/// An upgraded signalling connection.
pub(crate) type Socket = WebSocketStream<Batched<TokioIo<Upgraded>>>;

/// The longest frame the server writes.
pub(crate) const FRAGMENT: usize = 1024;

/// The WebSocket library's write buffer size that hands every frame to
/// the connection at once: [`Batched`] does the collecting.
pub(crate) const WRITE_EAGERLY: usize = 0;

/// How much [`Batched`] collects before it sends without waiting for a
/// flush.
const BATCH_LIMIT: usize = 64 * 1024;

/// A connection whose writes, once corked through its [`Cork`], are
/// collected until the next flush (or until [`BATCH_LIMIT`] bytes wait)
/// and then sent together. Uncorked writes go straight through, as do
/// reads: what the WebSocket library writes on its own (the answer to a
/// ping or to the client's close) leaves as it always did.
pub(crate) struct Batched<T> {
    inner: T,
    corked: Arc<AtomicBool>,
    pending: Vec<u8>,
    /// How much of `pending` the connection has taken.
    sent: usize,
}

/// Corks a [`Batched`] connection from outside the WebSocket that owns it.
#[derive(Clone)]
pub(crate) struct Cork(Arc<AtomicBool>);

impl Cork {
    /// Collects the connection's writes until its next flush.
    pub(crate) fn cork(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl<T> Batched<T> {
    pub(crate) fn new(inner: T) -> (Self, Cork) {
        let corked = Arc::new(AtomicBool::new(false));
        let batched = Batched {
            inner,
            corked: corked.clone(),
            pending: Vec::new(),
            sent: 0,
        };
        (batched, Cork(corked))
    }
}

impl<T: AsyncWrite + Unpin> Batched<T> {
    /// Hands everything collected to the connection, then lets the buffer
    /// go.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.pending.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.pending = Vec::new();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Batched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Batched<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if !self.corked.load(Ordering::Relaxed) {
            ready!(self.poll_send(cx))?;
            return Pin::new(&mut self.inner).poll_write(cx, buf);
        }
        if self.pending.len() >= BATCH_LIMIT {
            ready!(self.poll_send(cx))?;
        }
        self.pending.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send(cx))?;
        self.corked.store(false, Ordering::Relaxed);
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

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
        F: FnOnce(Socket, Cork) -> Fut + Send + 'static,
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
            let config = config.write_buffer_size(WRITE_EAGERLY);
            let (io, cork) = Batched::new(TokioIo::new(upgraded));
            let socket = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
            session(socket, cork).await;
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
/// [`FRAGMENT`] bytes, and flushes.
pub(crate) async fn send_binary<S>(sink: &mut S, message: Bytes) -> Result<(), Error>
where
    S: Sink<Message, Error = Error> + Unpin,
{
    feed_binary(sink, message).await?;
    sink.flush().await
}

/// Writes `message` as one binary message, in frames of at most
/// [`FRAGMENT`] bytes, without flushing: it leaves with the next flush.
pub(crate) async fn feed_binary<S>(sink: &mut S, message: Bytes) -> Result<(), Error>
where
    S: Sink<Message, Error = Error> + Unpin,
{
    if message.len() <= FRAGMENT {
        return sink.feed(Message::Binary(message)).await;
    }
    let mut start = 0;
    while start < message.len() {
        let end = (start + FRAGMENT).min(message.len());
        let opcode = if start == 0 {
            OpCode::Data(Data::Binary)
        } else {
            OpCode::Data(Data::Continue)
        };
        let frame = Frame::message(message.slice(start..end), opcode, end == message.len());
        sink.feed(Message::Frame(frame)).await?;
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

    /// A server socket as `on_upgrade` builds one, over `io`.
    async fn server<T: AsyncRead + AsyncWrite + Unpin>(io: T) -> (WebSocketStream<Batched<T>>, Cork) {
        let config = WebSocketConfig::default().write_buffer_size(WRITE_EAGERLY);
        let (io, cork) = Batched::new(io);
        (
            WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await,
            cork,
        )
    }

    async fn written(messages: &[Vec<u8>]) -> Vec<u8> {
        let (ours, mut theirs) = tokio::io::duplex(1 << 20);
        let (mut socket, _) = server(ours).await;
        for m in messages {
            send_binary(&mut socket, Bytes::from(m.clone()))
                .await
                .expect("send");
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
        let (mut server, _) = server(ours).await;
        let mut client = WebSocketStream::from_raw_socket(theirs, Role::Client, None).await;
        send_binary(&mut server, Bytes::from(long.clone()))
            .await
            .expect("send");
        send_binary(&mut server, Bytes::from(exact.clone()))
            .await
            .expect("send");
        for expected in [long, exact] {
            match client.next().await {
                Some(Ok(Message::Binary(got))) => assert_eq!(got.as_ref(), &expected[..]),
                other => panic!("expected one binary message, got {other:?}"),
            }
        }
    }

    /// A connection that takes at most `chunk` bytes a write, and every
    /// other write asks to be tried again later; it records each write.
    struct Slow {
        chunk: usize,
        refuse: bool,
        writes: Vec<usize>,
        wire: Vec<u8>,
    }

    impl Slow {
        fn new(chunk: usize) -> Self {
            Slow {
                chunk,
                refuse: false,
                writes: Vec::new(),
                wire: Vec::new(),
            }
        }
    }

    impl AsyncRead for Slow {
        fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, _: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Slow {
        fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            self.refuse = !self.refuse;
            if self.refuse {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let n = buf.len().min(self.chunk);
            self.writes.push(n);
            self.wire.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn frames_and_messages_wait_for_the_flush_and_leave_together() {
        let (mut socket, cork) = server(Slow::new(usize::MAX)).await;
        let long: Vec<u8> = (0..3 * FRAGMENT + 100).map(|i| (i % 251) as u8).collect();
        cork.cork();
        feed_binary(&mut socket, Bytes::from(long)).await.expect("feed");
        feed_binary(&mut socket, Bytes::from(b"short".to_vec()))
            .await
            .expect("feed");
        assert!(
            socket.get_ref().inner.writes.is_empty(),
            "nothing is sent before the flush"
        );
        socket.flush().await.expect("flush");
        let batched = socket.get_ref();
        assert_eq!(batched.inner.writes.len(), 1, "one send for both messages");
        assert_eq!(
            frames(&batched.inner.wire),
            [
                (false, 2, FRAGMENT),
                (false, 0, FRAGMENT),
                (false, 0, FRAGMENT),
                (true, 0, 100),
                (true, 2, 5),
            ]
        );
        assert_eq!(
            batched.pending.capacity(),
            0,
            "the buffer is given back after the flush"
        );

        // The flush uncorked it: what follows is not collected.
        feed_binary(&mut socket, Bytes::from(b"after".to_vec()))
            .await
            .expect("feed");
        assert_eq!(socket.get_ref().pending.capacity(), 0);
        socket.flush().await.expect("flush");
        assert_eq!(socket.get_ref().inner.writes.len(), 2);
        assert_eq!(frames(&socket.get_ref().inner.wire).last(), Some(&(true, 2, 5)));
    }

    #[tokio::test]
    async fn the_answer_to_a_close_leaves_without_a_flush() {
        // The WebSocket library writes its answer to a client's close and
        // ends the connection without flushing it: an uncorked connection
        // sends it as written, as a plain one would.
        let (ours, theirs) = tokio::io::duplex(1 << 20);
        let (mut server, _cork) = server(ours).await;
        let mut client = WebSocketStream::from_raw_socket(theirs, Role::Client, None).await;
        client.send(Message::Close(None)).await.expect("close");
        assert!(matches!(server.next().await, Some(Ok(Message::Close(_)))));
        let _ = SinkExt::close(&mut server).await;
        drop(server);
        assert!(
            matches!(client.next().await, Some(Ok(Message::Close(_)))),
            "the client got the server's close"
        );
    }

    #[tokio::test]
    async fn what_waits_is_bounded_and_partial_sends_lose_nothing() {
        // A connection that takes 1000 bytes at a time and often asks to
        // wait: everything still arrives in order.
        let (mut socket, cork) = server(Slow::new(1000)).await;
        cork.cork();
        let messages: Vec<Vec<u8>> = (0..200u32)
            .map(|i| {
                (0..FRAGMENT as u32 - 10)
                    .map(|j| ((i * 7 + j) % 256) as u8)
                    .collect()
            })
            .collect();
        for m in &messages {
            feed_binary(&mut socket, Bytes::from(m.clone()))
                .await
                .expect("feed");
            assert!(
                socket.get_ref().pending.len() < BATCH_LIMIT + FRAGMENT + 16,
                "what waits for a flush stays below the limit"
            );
        }
        assert!(
            !socket.get_ref().inner.writes.is_empty(),
            "past the limit it is sent unasked"
        );
        socket.flush().await.expect("flush");
        let wire = &socket.get_ref().inner.wire;
        let mut at = 0;
        for m in &messages {
            let header = 4; // 126 and a 16-bit length
            assert_eq!(wire[at], 0x82);
            assert_eq!(
                usize::from(u16::from_be_bytes([wire[at + 2], wire[at + 3]])),
                m.len()
            );
            assert_eq!(&wire[at + header..at + header + m.len()], &m[..]);
            at += header + m.len();
        }
        assert_eq!(at, wire.len());
    }
}
