//! The media runtime: the UDP socket, the timers and the one task that owns
//! the session core.
//!
//! [`Engine::start`] moves a [`Sfu`] into a task that feeds it datagrams,
//! signalling messages and timeouts and carries its outputs to the socket
//! and to each connection's outbox. Everything else talks to the core only
//! through an [`EngineHandle`]; nothing outside this task touches it.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use conclave_signal::{ConnId, JoinParams, Now, Outgoing, Output, Sfu, SignalError};
use conclave_types::{ParticipantIdentity, ParticipantSid, RoomName};
use livekit_protocol as lk;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

/// Messages queued for one signalling connection before it counts as too
/// slow and is closed (its session can resume on a new connection).
pub const OUTBOX_CAPACITY: usize = 512;

/// What the engine sends to one signalling connection.
#[derive(Debug)]
pub enum ConnOut {
    /// A message, shared with the other connections it goes to.
    Message(Arc<Outgoing>),
    Close,
}

/// Datagrams read from the socket in one go before outputs are carried out.
const RECEIVE_BATCH: usize = 32;
/// Datagrams handed to the kernel in one `sendmmsg`; also how many wait
/// while outputs are produced before they are sent.
const SEND_BATCH: usize = 64;
/// Rounds of due timers handled in a row before the task yields to the
/// socket and the other inputs again.
const MAX_DUE_ROUNDS: usize = 4;
/// The media socket's receive and send buffers asked of the kernel. Every
/// peer connection shares the one socket, and a burst (the frames of many
/// publishers at once) must wait there while the task is busy; the
/// kernel's default of about 200 KiB drops datagrams from a few dozen
/// participants on. Capped by `net.core.rmem_max` and `wmem_max`.
pub const SOCKET_BUFFER: usize = 4 << 20;

type Job = Box<dyn FnOnce(&mut Sfu, Now) + Send>;

enum Command {
    Join {
        conn: ConnId,
        params: Box<JoinParams>,
        outbox: mpsc::Sender<ConnOut>,
        reply: oneshot::Sender<Result<(), SignalError>>,
    },
    Request {
        conn: ConnId,
        request: Box<lk::SignalRequest>,
    },
    Resume {
        conn: ConnId,
        resume: Box<Resume>,
        outbox: mpsc::Sender<ConnOut>,
        reply: oneshot::Sender<Result<(), SignalError>>,
    },
    Disconnect {
        conn: ConnId,
    },
    Run(Job),
}

/// Who wants to resume which session.
#[derive(Debug, Clone)]
pub struct Resume {
    pub sid: ParticipantSid,
    pub room: RoomName,
    pub identity: ParticipantIdentity,
}

/// Errors of the runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("the media engine has stopped")]
    Stopped,
    #[error("media socket: {0}")]
    Socket(#[from] io::Error),
}

/// A cheap, cloneable handle to the engine task.
#[derive(Clone)]
pub struct EngineHandle {
    tx: mpsc::UnboundedSender<Command>,
    next_conn: Arc<std::sync::atomic::AtomicU64>,
}

impl EngineHandle {
    /// A fresh connection id.
    pub fn new_conn(&self) -> ConnId {
        ConnId(self.next_conn.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    }

    /// Joins a participant; its messages arrive on `outbox`.
    pub async fn join(
        &self,
        conn: ConnId,
        params: Box<JoinParams>,
        outbox: mpsc::Sender<ConnOut>,
    ) -> Result<Result<(), SignalError>, RuntimeError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Join {
                conn,
                params,
                outbox,
                reply,
            })
            .map_err(|_| RuntimeError::Stopped)?;
        rx.await.map_err(|_| RuntimeError::Stopped)
    }

    /// Reattaches a participant whose signalling connection dropped.
    pub async fn resume(
        &self,
        conn: ConnId,
        resume: Resume,
        outbox: mpsc::Sender<ConnOut>,
    ) -> Result<Result<(), SignalError>, RuntimeError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Resume {
                conn,
                resume: Box::new(resume),
                outbox,
                reply,
            })
            .map_err(|_| RuntimeError::Stopped)?;
        rx.await.map_err(|_| RuntimeError::Stopped)
    }

    /// Delivers a signalling request of a joined connection.
    pub fn request(&self, conn: ConnId, request: lk::SignalRequest) -> Result<(), RuntimeError> {
        self.tx
            .send(Command::Request {
                conn,
                request: Box::new(request),
            })
            .map_err(|_| RuntimeError::Stopped)
    }

    /// Tells the engine a connection closed.
    pub fn disconnect(&self, conn: ConnId) {
        let _ = self.tx.send(Command::Disconnect { conn });
    }

    /// Runs `f` on the core inside the engine task and returns its result.
    pub async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Sfu, Now) -> T + Send + 'static,
    ) -> Result<T, RuntimeError> {
        let (reply, rx) = oneshot::channel();
        let job: Job = Box::new(move |sfu, now| {
            let _ = reply.send(f(sfu, now));
        });
        self.tx
            .send(Command::Run(job))
            .map_err(|_| RuntimeError::Stopped)?;
        rx.await.map_err(|_| RuntimeError::Stopped)
    }
}

/// The engines of one process, each a task with its own socket (one per
/// core by default). Every room lives on exactly one of them, chosen from
/// its name alone, so each participant of a room and every request about
/// it reach the same engine without any shared table.
#[derive(Clone)]
pub struct Engines {
    engines: Arc<[EngineHandle]>,
}

impl Engines {
    /// The engines in order; `more` follow `first`.
    pub fn new(first: EngineHandle, more: impl IntoIterator<Item = EngineHandle>) -> Self {
        let engines: Vec<EngineHandle> = std::iter::once(first).chain(more).collect();
        Self {
            engines: engines.into(),
        }
    }

    /// The engine that hosts `room`.
    pub fn for_room(&self, room: &RoomName) -> &EngineHandle {
        &self.engines[place(room, self.engines.len())]
    }

    /// Every engine, for questions about all rooms.
    pub fn all(&self) -> &[EngineHandle] {
        &self.engines
    }
}

/// Which of `count` engines hosts `room`: a hash of the name with fixed
/// keys, the same for as long as the process runs.
fn place(room: &RoomName, count: usize) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    room.as_str().hash(&mut h);
    (h.finish() % count.max(1) as u64) as usize
}

/// Asks for [`SOCKET_BUFFER`]-sized buffers on the media socket and
/// returns the receive and send buffer sizes the kernel granted (Linux
/// reports twice what it allows, for its bookkeeping). Less than asked is
/// logged with the setting that raises it.
pub fn size_socket_buffers(socket: &UdpSocket) -> io::Result<(usize, usize)> {
    let s = socket2::SockRef::from(socket);
    s.set_recv_buffer_size(SOCKET_BUFFER)?;
    s.set_send_buffer_size(SOCKET_BUFFER)?;
    let (recv, send) = (s.recv_buffer_size()?, s.send_buffer_size()?);
    let asked = if cfg!(target_os = "linux") {
        2 * SOCKET_BUFFER
    } else {
        SOCKET_BUFFER
    };
    if recv < asked {
        tracing::warn!(
            granted = recv,
            asked = SOCKET_BUFFER,
            "the media socket's receive buffer is smaller than asked; bursts may be dropped \
             (raise the sysctl net.core.rmem_max)"
        );
    }
    if send < asked {
        tracing::warn!(
            granted = send,
            asked = SOCKET_BUFFER,
            "the media socket's send buffer is smaller than asked (raise the sysctl net.core.wmem_max)"
        );
    }
    Ok((recv, send))
}

/// The running engine.
pub struct Engine;

impl Engine {
    /// Starts the engine task on the current tokio runtime. `local` are the
    /// addresses announced to clients; the first of the datagram's address
    /// family is given to the core as the receiving address.
    pub fn start(sfu: Sfu, socket: UdpSocket, local: Vec<SocketAddr>) -> EngineHandle {
        if let Err(e) = size_socket_buffers(&socket) {
            tracing::warn!(error = %e, "the media socket's buffers could not be sized");
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(sfu, socket, local, rx));
        EngineHandle {
            tx,
            next_conn: Arc::new(std::sync::atomic::AtomicU64::new(1)),
        }
    }
}

fn now() -> Now {
    let unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    Now {
        mono: Instant::now(),
        unix_ms,
    }
}

async fn run(
    mut sfu: Sfu,
    socket: UdpSocket,
    local: Vec<SocketAddr>,
    mut rx: mpsc::UnboundedReceiver<Command>,
) {
    let mut outboxes: HashMap<ConnId, mpsc::Sender<ConnOut>> = HashMap::new();
    let mut buf = vec![0u8; 2048];
    let fallback_local = socket.local_addr().ok();
    let mut transmits: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
    let mut stalled: Vec<ConnId> = Vec::new();
    let receiving = |source: SocketAddr| {
        local
            .iter()
            .find(|a| a.is_ipv4() == source.is_ipv4())
            .copied()
            .or(fallback_local)
    };
    loop {
        let mut deadline = drain(&mut sfu, &socket, &mut transmits, &mut outboxes, &mut stalled);
        let mut rounds = 0;
        loop {
            // What closing a stalled connection produces is carried out now.
            let closed = !stalled.is_empty();
            for conn in stalled.drain(..) {
                tracing::info!("a signalling connection stopped reading; closing it");
                sfu.handle_disconnect(now(), conn);
            }
            // Timers that came due while the last outputs were produced run
            // now: sleeping would round them up to the timer's granularity.
            let due = rounds < MAX_DUE_ROUNDS && deadline <= Instant::now();
            if !closed && !due {
                break;
            }
            if due {
                rounds += 1;
                sfu.handle_timeout(now());
            }
            deadline = drain(&mut sfu, &socket, &mut transmits, &mut outboxes, &mut stalled);
        }
        send_all(&socket, &mut transmits).await;
        tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, source)) => {
                    if let Some(destination) = receiving(source) {
                        sfu.handle_datagram(now(), source, destination, &buf[..n]);
                    }
                    // Whatever else is already queued is read before the
                    // outputs are carried out, one wake-up for the lot.
                    for _ in 1..RECEIVE_BATCH {
                        let Ok((n, source)) = socket.try_recv_from(&mut buf) else { break };
                        if let Some(destination) = receiving(source) {
                            sfu.handle_datagram(now(), source, destination, &buf[..n]);
                        }
                    }
                }
                Err(e) => {
                    // ICMP errors surface here on some systems; keep serving.
                    tracing::debug!(error = %e, "media socket receive error");
                }
            },
            cmd = rx.recv() => match cmd {
                None => return,
                Some(Command::Join { conn, params, outbox, reply }) => {
                    outboxes.insert(conn, outbox);
                    let r = sfu.handle_join(now(), conn, *params).map(|_| ());
                    if r.is_err() {
                        outboxes.remove(&conn);
                    }
                    let _ = reply.send(r);
                }
                Some(Command::Resume { conn, resume, outbox, reply }) => {
                    outboxes.insert(conn, outbox);
                    let r = sfu.handle_resume(now(), conn, &resume.sid, &resume.room, &resume.identity);
                    if r.is_err() {
                        outboxes.remove(&conn);
                    }
                    let _ = reply.send(r);
                }
                Some(Command::Request { conn, request }) => {
                    if let Err(e) = sfu.handle_request(now(), conn, *request) {
                        tracing::debug!(error = %e, "signal request refused");
                    }
                }
                Some(Command::Disconnect { conn }) => {
                    sfu.handle_disconnect(now(), conn);
                    outboxes.remove(&conn);
                }
                Some(Command::Run(job)) => job(&mut sfu, now()),
            },
            _ = tokio::time::sleep_until(deadline.into()) => {
                sfu.handle_timeout(now());
            }
        }
    }
}

/// Sends every queued datagram, waiting for the socket when its buffer is
/// full. UDP: a datagram that cannot be sent is lost, as the network would
/// lose it.
async fn send_all(socket: &UdpSocket, transmits: &mut Vec<(SocketAddr, Vec<u8>)>) {
    while !transmits.is_empty() {
        if send_now(socket, transmits, true) && socket.writable().await.is_err() {
            transmits.clear();
        }
    }
}

/// Hands the kernel, without waiting, the queued datagrams it takes: every
/// one if `all`, else whole batches of `SEND_BATCH` only, so that sending
/// while outputs are still being produced costs no more system calls.
/// Returns whether the socket's buffer was full.
fn send_now(socket: &UdpSocket, transmits: &mut Vec<(SocketAddr, Vec<u8>)>, all: bool) -> bool {
    let mut start = 0;
    let mut full = false;
    while start < transmits.len() && (all || transmits.len() - start >= SEND_BATCH) {
        let chunk = &transmits[start..transmits.len().min(start + SEND_BATCH)];
        match send_batch(socket, chunk) {
            Ok(n) => start += n.max(1),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                full = true;
                break;
            }
            Err(e) => {
                // The first datagram of the batch failed (e.g. no route):
                // it is lost, the rest go on.
                tracing::trace!(error = %e, "datagram not sent");
                start += 1;
            }
        }
    }
    transmits.drain(..start);
    full
}

/// Sends the start of `chunk` in one system call (`sendmmsg`); returns how
/// many datagrams the kernel took.
#[cfg(target_os = "linux")]
fn send_batch(socket: &UdpSocket, chunk: &[(SocketAddr, Vec<u8>)]) -> io::Result<usize> {
    use std::io::IoSlice;
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg};
    use tokio::io::Interest;

    socket.try_io(Interest::WRITABLE, || {
        let slices: Vec<[IoSlice<'_>; 1]> = chunk.iter().map(|(_, c)| [IoSlice::new(c)]).collect();
        let addrs: Vec<Option<SockaddrStorage>> = chunk
            .iter()
            .map(|(a, _)| Some(SockaddrStorage::from(*a)))
            .collect();
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(chunk.len(), None);
        sendmmsg(
            socket.as_raw_fd(),
            &mut headers,
            slices.iter(),
            &addrs,
            [],
            MsgFlags::empty(),
        )
        .map(Iterator::count)
        .map_err(io::Error::from)
    })
}

/// Sends the first datagram of `chunk`.
#[cfg(not(target_os = "linux"))]
fn send_batch(socket: &UdpSocket, chunk: &[(SocketAddr, Vec<u8>)]) -> io::Result<usize> {
    let (destination, contents) = &chunk[0];
    socket.try_send_to(contents, *destination).map(|_| 1)
}

/// Carries every pending output out; returns when to wake for timers.
fn drain(
    sfu: &mut Sfu,
    socket: &UdpSocket,
    transmits: &mut Vec<(SocketAddr, Vec<u8>)>,
    outboxes: &mut HashMap<ConnId, mpsc::Sender<ConnOut>>,
    stalled: &mut Vec<ConnId>,
) -> Instant {
    loop {
        match sfu.poll_output() {
            Output::Transmit {
                destination,
                contents,
                ..
            } => {
                transmits.push((destination, contents));
                // A full batch leaves now, while the rest is produced: in a
                // fan-out the first receivers need not wait for the last.
                // Tried once per batch, so a full socket buffer costs one
                // failed call per batch until `send_all` waits for it.
                if transmits.len().is_multiple_of(SEND_BATCH) {
                    send_now(socket, transmits, false);
                }
            }
            Output::Signal { conn, message } => {
                if let Some(tx) = outboxes.get(&conn)
                    && let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(ConnOut::Message(message))
                {
                    // Dropping the sender ends the connection's task.
                    outboxes.remove(&conn);
                    stalled.push(conn);
                }
            }
            Output::Close { conn } => {
                if let Some(tx) = outboxes.remove(&conn) {
                    let _ = tx.try_send(ConnOut::Close);
                }
            }
            Output::Timeout(t) => return t,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sysctl(name: &str) -> usize {
        std::fs::read_to_string(format!("/proc/sys/net/core/{name}"))
            .unwrap_or_else(|e| panic!("cannot read net.core.{name}: {e}"))
            .trim()
            .parse()
            .expect("a number")
    }

    fn room(name: &str) -> RoomName {
        RoomName::new(name).expect("a valid room name")
    }

    /// A room always lands on the same engine, and many rooms spread over all.
    #[test]
    fn rooms_are_placed_by_name_and_spread_over_the_engines() {
        assert_eq!(place(&room("standup"), 1), 0);
        for count in [2, 3, 8] {
            let mut per_engine = vec![0usize; count];
            for i in 0..4000 {
                let name = room(&format!("room-{i}"));
                let at = place(&name, count);
                assert_eq!(at, place(&name, count), "placement is stable");
                per_engine[at] += 1;
            }
            let fair = 4000 / count;
            for n in &per_engine {
                assert!(
                    n * 10 > fair * 8 && n * 10 < fair * 12,
                    "uneven placement over {count}: {per_engine:?}"
                );
            }
        }
    }

    /// The media socket gets the buffers asked for, as far as the kernel's
    /// limits allow, not the kernel's small default.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_media_socket_gets_large_buffers() {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("a loopback socket");
        let before = socket2::SockRef::from(&socket).recv_buffer_size().expect("size");
        assert_eq!(before, sysctl("rmem_default"), "a fresh socket has the default");
        let (recv, send) = size_socket_buffers(&socket).expect("sized");
        // Linux reports twice the size it grants.
        assert_eq!(recv, 2 * SOCKET_BUFFER.min(sysctl("rmem_max")));
        assert_eq!(send, 2 * SOCKET_BUFFER.min(sysctl("wmem_max")));
    }

    /// While outputs are produced only whole batches leave; at the end
    /// everything does, each datagram once and in order.
    #[tokio::test]
    async fn whole_batches_leave_early_and_the_rest_at_the_end() {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("a loopback socket");
        let receiver = UdpSocket::bind("127.0.0.1:0").await.expect("a loopback socket");
        size_socket_buffers(&receiver).expect("sized");
        let to = receiver.local_addr().expect("address");
        let count = SEND_BATCH * 2 + SEND_BATCH / 2;
        let mut transmits: Vec<(SocketAddr, Vec<u8>)> = (0..count)
            .map(|i| (to, (i as u32).to_be_bytes().to_vec()))
            .collect();
        // Readiness is known only once the reactor has seen the socket.
        socket.writable().await.expect("writable");
        let full = send_now(&socket, &mut transmits, false);
        assert!(!full);
        assert_eq!(transmits.len(), SEND_BATCH / 2, "a part batch left early");
        send_all(&socket, &mut transmits).await;
        assert!(transmits.is_empty());
        let mut buf = [0u8; 16];
        for i in 0..count {
            let n = receiver.recv(&mut buf).await.expect("a datagram");
            assert_eq!(&buf[..n], (i as u32).to_be_bytes(), "datagram {i}");
        }
        assert!(receiver.try_recv(&mut buf).is_err(), "a datagram arrived twice");
    }
}
