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
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use conclave_signal::{ConnId, JoinParams, Now, Output, Sfu, SignalError};
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
    Message(Box<lk::SignalResponse>),
    Close,
}

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
    next_conn: std::sync::Arc<std::sync::atomic::AtomicU64>,
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

/// The running engine.
pub struct Engine;

impl Engine {
    /// Starts the engine task on the current tokio runtime. `local` are the
    /// addresses announced to clients; the first of the datagram's address
    /// family is given to the core as the receiving address.
    pub fn start(sfu: Sfu, socket: UdpSocket, local: Vec<SocketAddr>) -> EngineHandle {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(sfu, socket, local, rx));
        EngineHandle {
            tx,
            next_conn: std::sync::Arc::new(std::sync::atomic::AtomicU64::new(1)),
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
    loop {
        let mut deadline = drain(&mut sfu, &mut transmits, &mut outboxes, &mut stalled);
        while !stalled.is_empty() {
            for conn in stalled.drain(..) {
                tracing::info!("a signalling connection stopped reading; closing it");
                sfu.handle_disconnect(now(), conn);
            }
            deadline = drain(&mut sfu, &mut transmits, &mut outboxes, &mut stalled);
        }
        for (destination, contents) in transmits.drain(..) {
            if let Err(e) = socket.send_to(&contents, destination).await {
                // UDP: a failed send loses the packet like the network would.
                tracing::trace!(error = %e, "datagram not sent");
            }
        }
        tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, source)) => {
                    let destination = local
                        .iter()
                        .find(|a| a.is_ipv4() == source.is_ipv4())
                        .copied()
                        .or(fallback_local);
                    if let Some(destination) = destination {
                        sfu.handle_datagram(now(), source, destination, &buf[..n]);
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

/// Carries every pending output out; returns when to wake for timers.
fn drain(
    sfu: &mut Sfu,
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
            } => transmits.push((destination, contents)),
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
