//! Runs a [`Client`] over real sockets: the signalling WebSocket and one UDP
//! socket per peer connection, with tokio. What the participant does is up
//! to an [`App`]: it sees every event and may write media when it asks to be
//! woken.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use conclave_types::ParticipantSid;

use crate::net::{bind_stamped, recv_stamped};
use crate::{Client, ClientError, ClientEvent, Output, Pc, TrackSpec};

/// The receive buffer asked for on each media socket.
pub const RECV_BUFFER: usize = 1 << 20;

/// How much of the signalling connection is read at a time. The WebSocket
/// library zero-fills its whole read buffer (128 KiB by default) on every
/// read it tries, and a participant's task tries one each time it wakes,
/// for every datagram too; with many participants in one process that
/// was a quarter of the process's CPU time. Larger messages still arrive
/// whole: the buffer grows to the length a frame's header announces.
pub const SIGNAL_READ_BUFFER: usize = 4 * 1024;

/// The WebSocket configuration of a signalling connection (also for other
/// WebSocket APIs a load generator speaks, such as Janus's).
pub fn signalling_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(SIGNAL_READ_BUFFER)
}

/// The behaviour of one participant.
pub trait App {
    /// Something happened; the app may act on the client (write RTP, ...).
    fn on_event(&mut self, now: Instant, event: &ClientEvent, client: &mut Client);
    /// When the app next wants [`App::on_wake`], if ever (by default
    /// never: an app that only receives).
    fn next_wake(&self) -> Option<Instant> {
        None
    }
    /// The time asked for by [`App::next_wake`] has come.
    fn on_wake(&mut self, _now: Instant, _client: &mut Client) {}
    /// The participant leaves once this is true.
    fn done(&self) -> bool;
}

/// The signalling address for a server base address such as
/// `http://127.0.0.1:7880`.
pub fn signalling_url(server: &str, token: &str) -> String {
    let base = server.trim_end_matches('/');
    let ws = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base.to_owned()
    };
    format!("{ws}/rtc?access_token={token}&auto_subscribe=1&protocol=16&sdk=rust&version=0.1.0")
}

/// Due timers run one after another at most this often before the driver
/// waits for its sockets again.
const MAX_DUE_ROUNDS: usize = 4;
/// Tries at resuming a session whose signalling connection closed, and the
/// pause between them.
const RESUME_TRIES: u32 = 5;
const RESUME_PAUSE: std::time::Duration = std::time::Duration::from_millis(200);
/// How long a leaving client waits for the server to close the signalling
/// connection. Closing the socket at once, with messages from the server
/// still unread, resets it, and the kernel drops what the server had not
/// read yet: the leave itself, on a busy server.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

type Signalling =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A new signalling connection for participant `sid`'s session, as
/// LiveKit's clients resume (`reconnect=1`); the server answers on it.
async fn resume(server: &str, token: &str, sid: &ParticipantSid) -> Result<Signalling, ClientError> {
    let url = format!(
        "{}&reconnect=1&sid={}",
        signalling_url(server, token),
        sid.as_str()
    );
    let mut last = ClientError::Closed;
    for _ in 0..RESUME_TRIES {
        match tokio_tungstenite::connect_async_with_config(url.as_str(), Some(signalling_config()), false)
            .await
        {
            Ok((ws, _)) => return Ok(ws),
            Err(e) => last = ClientError::Refused(e.to_string()),
        }
        tokio::time::sleep(RESUME_PAUSE).await;
    }
    Err(last)
}

/// Joins `server` with `token`, publishes `tracks`, and runs `app` until it
/// is done (then leaves) or the server ends the session. Media sockets are
/// bound on `bind` (an address of this machine that the server can reach).
/// When the signalling connection closes without the server ending the
/// session, the session is resumed on a new one (the app sees
/// [`ClientEvent::Resumed`]); media keeps flowing meanwhile.
pub async fn run<A: App>(
    server: &str,
    token: &str,
    bind: IpAddr,
    tracks: Vec<TrackSpec>,
    app: &mut A,
) -> Result<(), ClientError> {
    let io = |e: std::io::Error| ClientError::Io(e.to_string());
    // Many clients share a process and its CPU: room for bursts while
    // another client runs, and each datagram dated by its arrival.
    let pub_sock = bind_stamped(SocketAddr::new(bind, 0), RECV_BUFFER)
        .await
        .map_err(io)?;
    let sub_sock = bind_stamped(SocketAddr::new(bind, 0), RECV_BUFFER)
        .await
        .map_err(io)?;
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(
        signalling_url(server, token),
        Some(signalling_config()),
        false,
    )
    .await
    .map_err(|e| ClientError::Refused(e.to_string()))?;
    let mut client = Client::new(
        Instant::now(),
        pub_sock.local_addr().map_err(io)?,
        sub_sock.local_addr().map_err(io)?,
    );
    for t in tracks {
        client.publish(t);
    }
    let mut pub_buf = vec![0u8; 2048];
    let mut sub_buf = vec![0u8; 2048];
    let mut leaving = false;
    let mut sid: Option<ParticipantSid> = None;
    let mut due_rounds = 0;
    loop {
        let deadline = loop {
            match client.poll_output() {
                Output::Signal(m) => {
                    // Lost when the connection just closed; the server
                    // offers afresh once the session is resumed.
                    let bytes = prost::Message::encode_to_vec(&m);
                    let _ = ws.send(Message::Binary(bytes.into())).await;
                }
                Output::Transmit {
                    pc,
                    destination,
                    contents,
                } => {
                    let sock = if pc == Pc::Publisher { &pub_sock } else { &sub_sock };
                    // A full socket buffer loses the datagram, as a network would.
                    let _ = sock.send_to(&contents, destination).await;
                }
                Output::Event(e) => {
                    if let ClientEvent::Left { reason } = e {
                        tracing::debug!(reason, "the server ended the session");
                        app.on_event(Instant::now(), &e, &mut client);
                        return Ok(());
                    }
                    if let ClientEvent::Joined { participant, .. } = &e {
                        sid.clone_from(participant);
                    }
                    app.on_event(Instant::now(), &e, &mut client);
                }
                Output::Timeout(t) => break t,
            }
        };
        if leaving {
            let _ = ws.close(None).await;
            // Read until the server's close (or the end of the stream).
            let _ = tokio::time::timeout(CLOSE_WAIT, async {
                while let Some(Ok(m)) = ws.next().await {
                    if m.is_close() {
                        break;
                    }
                }
            })
            .await;
            return Ok(());
        }
        if app.done() {
            client.leave();
            leaving = true;
            continue;
        }
        let wake = app.next_wake().map_or(deadline, |w| w.min(deadline));
        // A timer already due (str0m's pacer asks for one a microsecond after
        // each packet written) runs at once: sleeping would round it up to
        // the timer's millisecond. A few rounds in a row at most, then the
        // sockets get their turn.
        if wake <= Instant::now() && due_rounds < MAX_DUE_ROUNDS {
            due_rounds += 1;
        } else {
            due_rounds = 0;
            tokio::select! {
            msg = ws.next() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    if let Err(e) = client.handle_signal(Instant::now(), &b) {
                        tracing::debug!(error = %e, "signalling message not used");
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    let Some(sid) = &sid else { return Err(ClientError::Closed) };
                    tracing::debug!("the signalling connection closed; resuming");
                    ws = resume(server, token, sid).await?;
                }
                Some(Ok(_)) => {}
            },
            r = recv_stamped(&pub_sock, &mut pub_buf) => {
                if let Ok((n, from, at)) = r {
                    client.handle_datagram(at, Pc::Publisher, from, &pub_buf[..n]);
                }
            }
            r = recv_stamped(&sub_sock, &mut sub_buf) => {
                if let Ok((n, from, at)) = r {
                    client.handle_datagram(at, Pc::Subscriber, from, &sub_buf[..n]);
                }
            }
            _ = tokio::time::sleep_until(wake.into()) => {}
            }
        }
        let now = Instant::now();
        client.handle_timeout(now);
        if app.next_wake().is_some_and(|w| w <= now) {
            app.on_wake(now, &mut client);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signalling_urls() {
        assert_eq!(
            signalling_url("http://127.0.0.1:7880/", "T"),
            "ws://127.0.0.1:7880/rtc?access_token=T&auto_subscribe=1&protocol=16&sdk=rust&version=0.1.0"
        );
        assert!(signalling_url("https://h:1", "T").starts_with("wss://h:1/rtc?"));
    }

    /// The small read buffer still delivers a message many times its size,
    /// whole and unchanged, over a real socket.
    #[tokio::test]
    async fn messages_larger_than_the_read_buffer_arrive_whole() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let big: Vec<u8> = (0..40 * SIGNAL_READ_BUFFER).map(|i| (i % 251) as u8).collect();
        let sent = big.clone();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            let mut ws = tokio_tungstenite::accept_async(tcp).await.expect("handshake");
            ws.send(Message::Binary(sent.into())).await.expect("send");
            ws.send(Message::Binary(vec![7u8; 3].into())).await.expect("send");
        });
        let (mut ws, _) = tokio_tungstenite::connect_async_with_config(
            format!("ws://{addr}/"),
            Some(signalling_config()),
            false,
        )
        .await
        .expect("connect");
        let Some(Ok(Message::Binary(got))) = ws.next().await else {
            panic!("no first message")
        };
        assert_eq!(got.len(), big.len());
        assert!(got[..] == big[..], "the large message changed on the way");
        let Some(Ok(Message::Binary(got))) = ws.next().await else {
            panic!("no second message")
        };
        assert_eq!(&got[..], &[7, 7, 7]);
        server.await.expect("server task");
    }
}
