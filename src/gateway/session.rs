//! One WKProto session per connection: CONNECT and the token check, the key agreement, then a loop
//! answering PING and SEND until the peer leaves, idles out or the server stops (spec §1.7).
//!
//! A session is a plain tokio task, not an actor: it owns its [`Connection`] and waits on one
//! `select!` over the next packet, its outbound queue, the stop signal and the idle deadline.
//!
//! Authenticated sessions are listed in [`Presence`] by uid. After a SEND from a session commits, that
//! session puts an unsealed RECV on the outbound queue of every other online session of the channel's
//! recipients; each recipient session seals it with its own cipher before writing it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rookery_actors::{Core, CoreError, Origin, SentMessage};
use rookery_events::{
    person_channel_id, Actor, ChannelKey, ChannelType, ClientMsgNo, DeviceFlag, DeviceLevel, MessageHeader, MessageId, PeerPolicy, Rejection,
    RequestId, SendMessage, SenderStanding, Uid, UserCommand,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::conn::{ConnError, Connection};
use super::crypto::{server_handshake, SessionCipher};
use super::unacked::Unacked;
use super::packet::{
    self, announces_server_version, negotiate_version, ConnackPacket, ConnectPacket, DisconnectPacket, Packet, ReasonCode,
    RecvPacket, SendPacket, SendackPacket, Setting, SubackPacket,
};
use crate::Config;

/// An authenticated session that sends nothing for this long is closed. The SDKs ping every 60 s,
/// so three missed heartbeats (WuKongIM's 3 min).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(180);

/// Time a new connection has to complete the WebSocket upgrade and send CONNECT.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Most packets taken off the outbound queue, or answered from one read, for one write; bounds the
/// output buffer.
pub const WRITE_BATCH: usize = 64;

/// No more packets are taken off the outbound queue for one write once this many bytes are queued.
pub const WRITE_BUDGET: usize = 1 << 20;

/// After a kick's DISCONNECT, how long the peer has to close its side before the server closes the
/// socket (WuKongIM v2 closes kicked connections 2 s after the DISCONNECT).
pub const KICK_LINGER: Duration = Duration::from_secs(2);

/// `node_id` in CONNACK (version 4 and above): Rookery is a single node.
pub const NODE_ID: u64 = 1;

/// Longest accepted `client_msg_no`, as the REST API.
const MAX_CLIENT_MSG_NO: usize = 128;

/// What every session shares.
#[derive(Clone)]
pub struct Gateway {
    /// The actor core.
    pub core: Core,
    /// Server settings.
    pub config: Arc<Config>,
    /// Online sessions.
    pub presence: Arc<Presence>,
    /// SEND rate and connections-per-address limits (and the REST API's per-credential rate).
    pub limits: Arc<crate::limits::Limits>,
    /// The TLS acceptor, when a listener has TLS on.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Gateway {
    /// A gateway with nobody online.
    pub fn new(core: Core, config: Arc<Config>, tls: Option<tokio_rustls::TlsAcceptor>) -> Gateway {
        let limits = Arc::new(crate::limits::Limits::new(&config));
        Gateway { core, config, presence: Arc::new(Presence::default()), limits, tls }
    }
}

/// What other tasks put on a session's outbound queue.
#[derive(Debug)]
pub enum Outbound {
    /// A message to deliver: every field but `payload` and `msg_key` is final; the receiving session
    /// seals it with the plaintext under its own key.
    Recv(Box<RecvPacket>, Arc<[u8]>),
}

/// Why another task ends a session. The session is already out of [`Presence`] when it learns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kick {
    /// Write DISCONNECT with this reason, then close. The SDKs stop reconnecting on a DISCONNECT.
    Disconnect {
        /// Usually [`ReasonCode::CONNECT_KICK`].
        reason_code: ReasonCode,
        /// Free text for the client.
        reason: String,
    },
    /// Close without DISCONNECT, so that the client reconnects: the same device logged in again (its
    /// old connection is stale), or the client stopped reading and its outbound queue is full.
    Close(&'static str),
}

impl Kick {
    /// DISCONNECT 12 "login in other device", WuKongIM's kick of a replaced login.
    pub fn replaced() -> Kick {
        Kick::Disconnect { reason_code: ReasonCode::CONNECT_KICK, reason: "login in other device".into() }
    }
}

/// One online session.
struct Online {
    id: u64,
    device_flag: u8,
    device_level: DeviceLevel,
    device_id: String,
    tx: mpsc::Sender<Outbound>,
    kick: oneshot::Sender<Kick>,
    info: Arc<SessionInfo>,
}

/// What the monitor shows about one authenticated session (`/connz`).
#[derive(Debug)]
pub struct SessionInfo {
    /// The CONNECT's device id.
    pub device_id: String,
    /// The peer's address.
    pub peer: String,
    /// The negotiated protocol version.
    pub version: u8,
    /// `"tcp"` or `"ws"`.
    pub transport: &'static str,
    /// When the session was authenticated.
    pub since: std::time::SystemTime,
    /// SENDs from this session that were accepted.
    pub msgs_in: AtomicU64,
    /// RECVs written to this session.
    pub msgs_out: AtomicU64,
}

/// One authenticated session as `Presence::snapshot` saw it.
#[derive(Debug, Clone)]
pub struct SessionSnapshot {
    /// Its id in [`Presence`].
    pub id: u64,
    /// Its user.
    pub uid: Uid,
    /// Its device flag (0 app, 1 web, 2 desktop).
    pub device_flag: u8,
    /// The CONNECT's device id.
    pub device_id: String,
    /// The peer's address.
    pub peer: String,
    /// The negotiated protocol version.
    pub version: u8,
    /// `"tcp"` or `"ws"`.
    pub transport: &'static str,
    /// When the session was authenticated.
    pub since: std::time::SystemTime,
    /// SENDs accepted from it.
    pub msgs_in: u64,
    /// RECVs written to it.
    pub msgs_out: u64,
    /// RECVs waiting on its outbound queue.
    pub queued: usize,
}

/// Gateway-wide counters for the monitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GatewayStats {
    /// Open WKProto sockets over TCP (authenticated or not).
    pub open_tcp: u64,
    /// Open WKProto sockets over WebSocket (authenticated or not).
    pub open_ws: u64,
    /// RECVs written to sessions since start.
    pub delivered: u64,
    /// RECVs not queued because the session's outbound queue was full (the session is then
    /// disconnected, and syncs after it reconnects) or already closed.
    pub dropped: u64,
    /// Bytes read from client connections since start (TCP bytes, WebSocket message payloads).
    pub in_bytes: u64,
    /// Bytes written to client connections since start.
    pub out_bytes: u64,
}

impl Online {
    fn kick(self, kick: Kick) {
        // The session may have ended on its own meanwhile; then there is nobody to tell.
        let _ = self.kick.send(kick);
    }
}

/// Number of stripes of [`Directory::epochs`].
const EPOCH_STRIPES: usize = 32;

/// The sessions and the epochs, under one lock.
#[derive(Default)]
struct Directory {
    sessions: HashMap<Uid, Vec<Online>>,
    /// Bumped (in the stripe of the uid) whenever a REST call changes which tokens may be online and
    /// kicks sessions. A connection reads it before checking its token and registers only if it is
    /// unchanged, so a login that checked a token just before `/user/device_quit` or `/user/token`
    /// cannot slip in after the kick.
    epochs: [u64; EPOCH_STRIPES],
}

fn stripe(uid: &Uid) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    uid.hash(&mut h);
    (h.finish() % EPOCH_STRIPES as u64) as usize
}

/// The authenticated sessions of this server, by uid. The lock is never held across an await.
#[derive(Default)]
pub struct Presence {
    next_id: AtomicU64,
    directory: Mutex<Directory>,
    /// Where online status changes go (the `user.onlinestatus` webhook), when anyone listens.
    status: Mutex<Option<tokio::sync::mpsc::Sender<crate::webhook::StatusChange>>>,
    open_tcp: AtomicU64,
    open_ws: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
}

/// A registration refused because the uid's tokens changed while the connection was checking its
/// token: check again.
#[derive(Debug)]
struct Stale;

/// Who is registering.
struct Login<'a> {
    uid: &'a Uid,
    device_flag: u8,
    device_level: DeviceLevel,
    device_id: &'a str,
}

impl Presence {
    fn lock(&self) -> std::sync::MutexGuard<'_, Directory> {
        self.directory.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends every later online status change to `tx` (never blocks: when `tx` is full the change is
    /// dropped and logged).
    pub fn set_status_listener(&self, tx: tokio::sync::mpsc::Sender<crate::webhook::StatusChange>) {
        *self.status.lock().unwrap_or_else(PoisonError::into_inner) = Some(tx);
    }

    /// Reports a change of `uid`'s sessions; `dir` is the directory after the change.
    fn status_changed(&self, dir: &Directory, uid: &Uid, device_flag: u8, online: bool, conn_id: u64) {
        let guard = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(tx) = guard.as_ref() else { return };
        let sessions = dir.sessions.get(uid).map(Vec::as_slice).unwrap_or_default();
        let change = crate::webhook::StatusChange {
            uid: uid.clone(),
            device_flag,
            online,
            conn_id,
            device_online_count: sessions.iter().filter(|o| o.device_flag == device_flag).count(),
            total_online_count: sessions.len(),
        };
        if tx.try_send(change).is_err() {
            tracing::warn!(uid = %uid, "online status webhook queue is full; change dropped");
        }
    }

    /// The epoch to pass to [`Presence::register`]; read before checking the token.
    fn epoch(&self, uid: &Uid) -> u64 {
        self.lock().epochs[stripe(uid)]
    }

    /// Lists a new session and applies the device conflict rules of spec §5 (WuKongIM v2): a master
    /// login replaces every session of the same uid and device flag (DISCONNECT 12 to those of
    /// another device id, a plain close for the same device id, whose old connection is stale); a
    /// slave login replaces only sessions of the same uid, flag and device id. Different device flags
    /// never conflict.
    fn register(
        self: &Arc<Self>,
        login: &Login<'_>,
        epoch: u64,
        tx: mpsc::Sender<Outbound>,
        kick: oneshot::Sender<Kick>,
        info: Arc<SessionInfo>,
    ) -> Result<Registration, Stale> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let replaced = {
            let mut dir = self.lock();
            if dir.epochs[stripe(login.uid)] != epoch {
                return Err(Stale);
            }
            let sessions = dir.sessions.entry(login.uid.clone()).or_default();
            let conflicts = |o: &Online| {
                o.device_flag == login.device_flag && (login.device_level == DeviceLevel::MASTER || o.device_id == login.device_id)
            };
            let (replaced, kept): (Vec<Online>, Vec<Online>) = std::mem::take(sessions).into_iter().partition(conflicts);
            *sessions = kept;
            sessions.push(Online {
                id,
                device_flag: login.device_flag,
                device_level: login.device_level,
                device_id: login.device_id.to_owned(),
                tx,
                kick,
                info,
            });
            self.status_changed(&dir, login.uid, login.device_flag, true, id);
            replaced
        };
        for old in replaced {
            tracing::debug!(uid = %login.uid, device_flag = old.device_flag, old_level = old.device_level.0, "session replaced by a new login");
            let kick = if old.device_id == login.device_id { Kick::Close("the same device logged in again") } else { Kick::replaced() };
            old.kick(kick);
        }
        Ok(Registration { presence: self.clone(), uid: login.uid.clone(), id, device_flag: login.device_flag })
    }

    /// Ends every session of `uid` with `device_flag` (every device when `None`) with `kick`, and
    /// makes logins that checked their token before this call check it again. Returns how many
    /// sessions were ended.
    pub fn kick_device(&self, uid: &Uid, device_flag: Option<u8>, kick: &Kick) -> usize {
        let kicked: Vec<Online> = {
            let mut dir = self.lock();
            dir.epochs[stripe(uid)] += 1;
            let Some(sessions) = dir.sessions.get_mut(uid) else { return 0 };
            let (kicked, kept): (Vec<Online>, Vec<Online>) =
                std::mem::take(sessions).into_iter().partition(|o| device_flag.is_none_or(|f| f == o.device_flag));
            if kept.is_empty() {
                dir.sessions.remove(uid);
            } else {
                *sessions = kept;
            }
            kicked
        };
        let n = kicked.len();
        for old in kicked {
            old.kick(kick.clone());
        }
        n
    }

    /// Ends one session (by its id) with `kick`.
    fn kick_session(&self, uid: &Uid, id: u64, kick: Kick) {
        let found = {
            let mut dir = self.lock();
            let Some(sessions) = dir.sessions.get_mut(uid) else { return };
            let found = sessions.iter().position(|o| o.id == id).map(|i| sessions.swap_remove(i));
            if sessions.is_empty() {
                dir.sessions.remove(uid);
            }
            found
        };
        if let Some(old) = found {
            old.kick(kick);
        }
    }

    /// The queues of `uid`'s online sessions, with their ids.
    fn sessions(&self, uid: &Uid) -> Vec<(u64, mpsc::Sender<Outbound>)> {
        self.lock().sessions.get(uid).map(|v| v.iter().map(|o| (o.id, o.tx.clone())).collect()).unwrap_or_default()
    }

    /// Number of online sessions of `uid`.
    pub fn count(&self, uid: &Uid) -> usize {
        self.lock().sessions.get(uid).map_or(0, Vec::len)
    }

    /// Every authenticated session, ordered by id (oldest first).
    pub fn snapshot(&self) -> Vec<SessionSnapshot> {
        let dir = self.lock();
        let mut all: Vec<SessionSnapshot> = dir
            .sessions
            .iter()
            .flat_map(|(uid, sessions)| {
                sessions.iter().map(move |o| SessionSnapshot {
                    id: o.id,
                    uid: uid.clone(),
                    device_flag: o.device_flag,
                    device_id: o.info.device_id.clone(),
                    peer: o.info.peer.clone(),
                    version: o.info.version,
                    transport: o.info.transport,
                    since: o.info.since,
                    msgs_in: o.info.msgs_in.load(Ordering::Relaxed),
                    msgs_out: o.info.msgs_out.load(Ordering::Relaxed),
                    queued: o.tx.max_capacity() - o.tx.capacity(),
                })
            })
            .collect();
        drop(dir);
        all.sort_by_key(|s| s.id);
        all
    }

    /// Gateway-wide counters.
    pub fn stats(&self) -> GatewayStats {
        let (in_bytes, out_bytes) = super::conn::traffic_bytes();
        GatewayStats {
            open_tcp: self.open_tcp.load(Ordering::Relaxed),
            open_ws: self.open_ws.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            in_bytes,
            out_bytes,
        }
    }

    /// Counts an open socket of `transport` until the guard is dropped.
    fn opened(self: &Arc<Self>, transport: &'static str) -> OpenSocket {
        self.open_counter(transport).fetch_add(1, Ordering::Relaxed);
        OpenSocket { presence: self.clone(), transport }
    }

    fn open_counter(&self, transport: &'static str) -> &AtomicU64 {
        if transport == "ws" {
            &self.open_ws
        } else {
            &self.open_tcp
        }
    }
}

/// An open socket counted in [`Presence`]; uncounted when dropped.
struct OpenSocket {
    presence: Arc<Presence>,
    transport: &'static str,
}

impl Drop for OpenSocket {
    fn drop(&mut self) {
        self.presence.open_counter(self.transport).fetch_sub(1, Ordering::Relaxed);
    }
}

/// A committed message to push to online sessions.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The stored channel (internal `big@small` id for person channels).
    pub key: ChannelKey,
    /// The sender.
    pub from: Uid,
    /// Header flags as sent.
    pub header: packet::Header,
    /// Setting byte as sent.
    pub setting: Setting,
    /// Expiry in seconds.
    pub expire: u32,
    /// The sender's message number.
    pub client_msg_no: String,
    /// Topic, if any.
    pub topic: String,
    /// Its id.
    pub message_id: i64,
    /// Its seq (0 for `no_persist`).
    pub message_seq: u64,
    /// The plaintext payload, sealed per session.
    pub payload: Arc<[u8]>,
}

impl Presence {
    /// Puts a RECV on the queue of every online session of `recipients`, except session `except`.
    /// Each recipient sees a person channel named by the other party. Never waits: a session whose
    /// queue is full (a reader that cannot keep up) is disconnected, and its client finds the message
    /// when it syncs after reconnecting.
    pub fn deliver(&self, message: &Delivery, recipients: &[Uid], except: Option<u64>) {
        let parties = if message.key.ty == ChannelType::PERSON { rookery_events::person_channel_parties(&message.key.id) } else { None };
        let timestamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i32).unwrap_or_default();
        for uid in recipients {
            let channel_id = match &parties {
                Some((a, b)) => if a == uid { b.0.clone() } else { a.0.clone() },
                None => message.key.id.0.clone(),
            };
            // The sender's own other devices get it without a red dot.
            let mut header = message.header;
            if *uid == message.from {
                header.red_dot = false;
            }
            for (id, tx) in self.sessions(uid) {
                if Some(id) == except {
                    continue;
                }
                let recv = RecvPacket {
                    header,
                    // Streams are not supported; never set the stream bit (PROTOCOL.md §9).
                    setting: message.setting.with(Setting::STREAM, false),
                    from_uid: message.from.0.clone(),
                    channel_id: channel_id.clone(),
                    channel_type: message.key.ty.0,
                    expire: message.expire,
                    client_msg_no: message.client_msg_no.clone(),
                    message_id: message.message_id,
                    message_seq: message.message_seq,
                    timestamp,
                    topic: message.topic.clone(),
                    ..RecvPacket::default()
                };
                match tx.try_send(Outbound::Recv(Box::new(recv), message.payload.clone())) {
                    Ok(()) => {}
                    // The session ends on its own; it is no longer listed a moment later.
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        self.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    // A reader that cannot keep up: a silently skipped RECV would be a hole in what
                    // the client believes it has, so the session ends instead, without DISCONNECT,
                    // and the client reconnects and syncs. Nobody else waits for it.
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        self.dropped.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(uid = %uid, message_id = message.message_id, "outbound queue full; disconnecting the slow reader");
                        self.kick_session(uid, id, Kick::Close("outbound queue full"));
                    }
                }
            }
        }
    }

    /// Online sessions of each uid, as `(uid, device_flag)` pairs, for `/user/onlinestatus`.
    pub fn online_devices(&self, uids: &[Uid]) -> Vec<(Uid, u8)> {
        let dir = self.lock();
        uids.iter().flat_map(|u| dir.sessions.get(u).into_iter().flatten().map(move |o| (u.clone(), o.device_flag))).collect()
    }
}

/// A session's entry in [`Presence`]; removed when dropped, however the session ends.
struct Registration {
    presence: Arc<Presence>,
    uid: Uid,
    id: u64,
    device_flag: u8,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut dir = self.presence.lock();
        if let Some(v) = dir.sessions.get_mut(&self.uid) {
            v.retain(|o| o.id != self.id);
            if v.is_empty() {
                dir.sessions.remove(&self.uid);
            }
        }
        // A session replaced by a newer login left the directory earlier; it goes offline now.
        self.presence.status_changed(&dir, &self.uid, self.device_flag, false, self.id);
    }
}

/// Accepts connections until `shutdown` turns true, runs `adapt` (for example the WebSocket upgrade)
/// and then a session on each in its own task, and waits for every session to end.
pub(crate) async fn accept_loop<F, Fut>(listener: TcpListener, gateway: Gateway, shutdown: watch::Receiver<bool>, adapt: F)
where
    F: Fn(TcpStream, String) -> Fut,
    Fut: std::future::Future<Output = Option<Connection>> + Send + 'static,
{
    let mut sessions = JoinSet::new();
    let mut stop = shutdown.clone();
    loop {
        tokio::select! {
            () = stopped(&mut stop) => break,
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    // Counted from the accept, so connections that never log in count too.
                    let permit = gateway.limits.admit(peer.ip());
                    // Boxed: the handshake's state (a TLS accept) is freed once it is done instead of
                    // taking room in the session's future for the connection's whole life.
                    let connection = Box::pin(adapt(stream, peer.to_string()));
                    let (gateway, shutdown) = (gateway.clone(), shutdown.clone());
                    sessions.spawn(async move {
                        if let Some(conn) = connection.await {
                            let _open = gateway.presence.opened(conn.transport());
                            serve(conn, gateway, shutdown, permit).await;
                        }
                    });
                }
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    while sessions.join_next().await.is_some() {}
}

/// Completes once the stop signal is true (or its sender is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`; drop it here rather than in a `select!` arm.
    let _ = rx.wait_for(|s| *s).await.map(|_| ());
}

/// How a session ended, when not by an error.
enum End {
    /// The peer closed, the session idled out or the server stops.
    Closed,
    /// Another task ended it (a kick, a replacing login, a full outbound queue).
    Kicked(Kick),
}

/// Runs one connection to its end and closes it. Without a `permit` (its address has the most
/// connections allowed) the CONNECT is answered with CONNACK `RateLimit`.
///
/// The futures of the closing steps are boxed: they live only while the session closes, and inline
/// they would widen every session's future (tokio keeps a task's whole future for its whole life).
pub async fn serve(mut conn: Connection, gateway: Gateway, mut shutdown: watch::Receiver<bool>, permit: Option<crate::limits::ConnectionPermit>) {
    match run(&mut conn, &gateway, &mut shutdown, permit.is_some()).await {
        Ok(End::Closed) => {}
        Ok(End::Kicked(Kick::Disconnect { reason_code, reason })) => {
            tracing::debug!(peer = conn.peer(), %reason_code, %reason, "kicked; disconnecting");
            // A flush the kick interrupted resumes first, so the DISCONNECT follows whole packets.
            let disconnect = Packet::Disconnect(DisconnectPacket { reason_code, reason });
            let written = Box::pin(tokio::time::timeout(KICK_LINGER, async {
                conn.queue(&disconnect)?;
                conn.flush().await
            }))
            .await;
            if matches!(written, Ok(Ok(()))) {
                Box::pin(conn.close_after(KICK_LINGER)).await;
                return;
            }
        }
        Ok(End::Kicked(Kick::Close(why))) => tracing::debug!(peer = conn.peer(), why, "closed by the server"),
        Err(ConnError::Protocol(reason)) => {
            tracing::debug!(peer = conn.peer(), %reason, "protocol error; disconnecting");
            let disconnect = Packet::Disconnect(DisconnectPacket { reason_code: ReasonCode::PAYLOAD_DECODE_ERROR, reason });
            if conn.queue(&disconnect).is_ok() {
                let _ = Box::pin(tokio::time::timeout(KICK_LINGER, conn.flush())).await;
            }
        }
        Err(e) => tracing::debug!(peer = conn.peer(), error = %e, "connection failed"),
    }
    Box::pin(conn.close()).await;
}

async fn run(conn: &mut Connection, gateway: &Gateway, shutdown: &mut watch::Receiver<bool>, admitted: bool) -> Result<End, ConnError> {
    let first = match tokio::time::timeout(CONNECT_TIMEOUT, conn.read_frame()).await {
        Err(_) | Ok(Ok(None)) => return Ok(End::Closed),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(Some(frame))) => frame,
    };
    let (connect, _) = packet::decode_connect(&first)?;
    // Spec §1.7 (v3): nothing may follow CONNECT before CONNACK.
    if conn.buffered_frame()?.is_some() {
        return Err(ConnError::Protocol("packet sent before CONNACK".into()));
    }
    conn.set_version(negotiate_version(connect.version));
    if !admitted {
        tracing::info!(peer = conn.peer(), limit = gateway.config.max_connections_per_ip, "too many connections from this address; refused");
        conn.queue(&Packet::Connack(ConnackPacket {
            server_version: announces_server_version(connect.version).then(|| negotiate_version(connect.version)),
            time_diff: 0,
            reason_code: ReasonCode::RATE_LIMIT,
            server_key: String::new(),
            salt: String::new(),
            node_id: NODE_ID,
        }))?;
        conn.flush().await?;
        return Ok(End::Closed);
    }
    let (outbound_tx, mut outbound) = mpsc::channel::<Outbound>(gateway.config.outbound_queue);
    let Some((mut session, _registration, mut kicked)) = login(conn, gateway, &connect, outbound_tx).await? else {
        return Ok(End::Closed);
    };
    // The successful CONNACK, only now that the session can be reached.
    conn.flush().await?;
    let mut deadline = Instant::now() + IDLE_TIMEOUT;
    loop {
        let retry_at = session.unacked.next_deadline();
        tokio::select! {
            frame = conn.read_frame() => {
                let Some(frame) = frame? else { return Ok(End::Closed) };
                deadline = Instant::now() + IDLE_TIMEOUT;
                session.handle(conn, &frame).await?;
                // Answer what arrived together before writing once, up to a batch: a client that sends
                // many packets at once must not starve its own deliveries (its queue would fill and it
                // would look like a slow reader); the rest are taken in the next turns of the loop.
                for _ in 1..WRITE_BATCH {
                    let Some(frame) = conn.buffered_frame()? else { break };
                    session.handle(conn, &frame).await?;
                }
            }
            Some(item) = outbound.recv() => {
                // Several packets per write, but a bounded number: the rest stay on the queue.
                session.deliver(conn, item)?;
                for _ in 1..WRITE_BATCH {
                    if conn.pending_output_bytes() >= WRITE_BUDGET {
                        break;
                    }
                    let Ok(item) = outbound.try_recv() else { break };
                    session.deliver(conn, item)?;
                }
            }
            // RECVs whose RECVACK is late: again with DUP, or given up.
            () = tokio::time::sleep_until(retry_at.unwrap_or(deadline)), if retry_at.is_some() => session.retry(conn)?,
            kick = &mut kicked => return Ok(End::Kicked(kick.unwrap_or(Kick::Close("no longer listed")))),
            () = stopped(shutdown) => return Ok(shutting_down(gateway)),
            () = tokio::time::sleep_until(deadline) => {
                tracing::debug!(peer = conn.peer(), "idle timeout");
                return Ok(End::Closed);
            }
        }
        // A kick must reach a session even while it waits for a peer that does not read: that is how
        // a full outbound queue ends a slow reader. A peer that takes no bytes for as long as the idle
        // limit is gone.
        tokio::select! {
            written = conn.flush() => written?,
            kick = &mut kicked => return Ok(End::Kicked(kick.unwrap_or(Kick::Close("no longer listed")))),
            () = stopped(shutdown) => return Ok(shutting_down(gateway)),
            () = tokio::time::sleep(IDLE_TIMEOUT) => return Err(ConnError::Transport("the peer took no bytes for the idle limit".into())),
        }
    }
}

/// How a session ends when the server stops: with a DISCONNECT unless configured otherwise.
fn shutting_down(gateway: &Gateway) -> End {
    if gateway.config.disconnect_on_shutdown {
        End::Kicked(Kick::Disconnect { reason_code: ReasonCode::SYSTEM_ERROR, reason: "server shutting down".into() })
    } else {
        End::Closed
    }
}

/// How often a login re-checks its token when a concurrent REST call changed the uid's tokens.
const LOGIN_ATTEMPTS: usize = 5;

/// Authenticates CONNECT, agrees the keys and lists the session in presence (replacing conflicting
/// sessions, spec §5). On success the CONNACK is queued, not flushed, and the caller flushes it:
/// a client that has its CONNACK is already reachable by live delivery and `/user/onlinestatus`.
/// `None` when the login was refused; the CONNACK with the reason is already written.
async fn login(
    conn: &mut Connection,
    gateway: &Gateway,
    connect: &ConnectPacket,
    outbound: mpsc::Sender<Outbound>,
) -> Result<Option<(Session, Registration, oneshot::Receiver<Kick>)>, ConnError> {
    let connack = |reason_code: ReasonCode, server_key: String, salt: String| {
        let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default();
        Packet::Connack(ConnackPacket {
            server_version: announces_server_version(connect.version).then(|| negotiate_version(connect.version)),
            time_diff: now_ms.saturating_sub(connect.client_timestamp),
            reason_code,
            server_key,
            salt,
            node_id: NODE_ID,
        })
    };
    let uid = Uid::from(connect.uid.as_str());
    for _ in 0..LOGIN_ATTEMPTS {
        let epoch = gateway.presence.epoch(&uid);
        let refused = match authenticate(&gateway.core, connect).await {
            Err(reason) => Some(reason),
            // JSON-RPC sessions are never encrypted (spec §3.2): no key agreement, no cipher.
            Ok(device_level) => match if conn.is_json_rpc() { Ok(None) } else { server_handshake(&connect.client_key).map(Some) } {
                Err(e) => Some(e.reason_code()),
                Ok(shake) => {
                    let (server_key, salt, cipher) = match shake {
                        Some(s) => (s.server_key, s.salt, Some(s.cipher)),
                        None => (String::new(), String::new(), None),
                    };
                    let (kick_tx, kicked) = oneshot::channel();
                    let who = Login { uid: &uid, device_flag: connect.device_flag, device_level, device_id: &connect.device_id };
                    let info = Arc::new(SessionInfo {
                        device_id: connect.device_id.clone(),
                        peer: conn.peer().to_owned(),
                        version: conn.version(),
                        transport: conn.transport(),
                        since: std::time::SystemTime::now(),
                        msgs_in: AtomicU64::new(0),
                        msgs_out: AtomicU64::new(0),
                    });
                    match gateway.presence.register(&who, epoch, outbound.clone(), kick_tx, info.clone()) {
                        // The uid's tokens changed meanwhile: check again.
                        Err(Stale) => continue,
                        Ok(registration) => {
                            conn.queue(&connack(ReasonCode::SUCCESS, server_key, salt))?;
                            tracing::debug!(peer = conn.peer(), uid = %uid, device_flag = connect.device_flag, level = device_level.0, version = conn.version(), "session open");
                            let session = Session {
                                uid: uid.clone(),
                                device_flag: DeviceFlag(connect.device_flag),
                                device_level,
                                cipher,
                                core: gateway.core.clone(),
                                presence: gateway.presence.clone(),
                                conn_id: registration.id,
                                max_payload: gateway.config.max_payload_bytes,
                                send_limiter: gateway.limits.send_limiter(),
                                info,
                                peer: conn.peer().to_owned(),
                                unacked: Unacked::new(
                                    Duration::from_millis(gateway.config.recvack_timeout_ms),
                                    gateway.config.recv_retries,
                                    gateway.config.max_unacked,
                                    gateway.config.max_unacked_bytes,
                                ),
                            };
                            return Ok(Some((session, registration, kicked)));
                        }
                    }
                }
            },
        };
        if let Some(reason) = refused {
            tracing::debug!(peer = conn.peer(), uid = %connect.uid, %reason, "CONNECT refused");
            conn.queue(&connack(reason, String::new(), String::new()))?;
            conn.flush().await?;
            return Ok(None);
        }
    }
    // Tokens of this uid keep changing under the login; let the client retry later.
    tracing::warn!(peer = conn.peer(), uid = %uid, "login raced token changes {LOGIN_ATTEMPTS} times");
    conn.queue(&connack(ReasonCode::SYSTEM_ERROR, String::new(), String::new()))?;
    conn.flush().await?;
    Ok(None)
}

/// Checks a CONNECT: the uid must be a valid id, the token the one registered with `/user/token`
/// for (uid, device_flag) (spec §5), and the user's person channel not banned. Returns the device
/// level registered with the token, or the CONNACK reason of the refusal.
async fn authenticate(core: &Core, connect: &ConnectPacket) -> Result<DeviceLevel, ReasonCode> {
    if connect.uid.is_empty() || connect.uid.len() > 128 || connect.uid.contains(['@', '#', '&']) {
        return Err(ReasonCode::AUTH_FAIL);
    }
    let uid = Uid::from(connect.uid.as_str());
    let state = match core.user_state(&uid).await {
        Ok(state) => state,
        Err(e) => {
            tracing::warn!(uid = %uid, error = %e, "reading the user for CONNECT");
            return Err(ReasonCode::SYSTEM_ERROR);
        }
    };
    let level = match state.tokens.get(&DeviceFlag(connect.device_flag)) {
        Some(t) if t.matches(&connect.token) => t.level,
        _ => return Err(ReasonCode::AUTH_FAIL),
    };
    match core.channel_state(&ChannelKey::new(uid.0.clone(), ChannelType::PERSON)).await {
        Ok(own) if own.info.ban => Err(ReasonCode::BAN),
        Ok(_) => Ok(level),
        Err(e) => {
            tracing::warn!(uid = %uid, error = %e, "reading the user's channel for CONNECT");
            Err(ReasonCode::SYSTEM_ERROR)
        }
    }
}

/// An authenticated session.
struct Session {
    uid: Uid,
    device_flag: DeviceFlag,
    /// Master or slave: only a master device's RECVACK takes a command off the user's queue.
    device_level: DeviceLevel,
    /// The payload cipher; `None` for JSON-RPC sessions, whose payloads are plaintext.
    cipher: Option<SessionCipher>,
    core: Core,
    presence: Arc<Presence>,
    /// This session's id in [`Presence`].
    conn_id: u64,
    max_payload: usize,
    peer: String,
    /// RECVs written and not yet acknowledged.
    unacked: Unacked,
    /// This connection's SEND budget, when SENDs are limited.
    send_limiter: Option<crate::limits::SendLimiter>,
    /// Its entry's counters for the monitor.
    info: Arc<SessionInfo>,
}

/// A committed send, with what fan-out needs.
struct Accepted {
    sent: SentMessage,
    key: ChannelKey,
    payload: Arc<[u8]>,
}

impl Session {
    /// Answers one packet (queued, not yet flushed).
    async fn handle(&mut self, conn: &mut Connection, frame: &[u8]) -> Result<(), ConnError> {
        let (packet, _) = packet::decode(frame, conn.version())?;
        match packet {
            Packet::Ping => conn.queue(&Packet::Pong),
            Packet::Send(send) => {
                // Boxed, as the only packet that waits for the core: its future (about 2 KB) is then
                // allocated per SEND instead of sitting in every idle session's future.
                let ack = Box::pin(self.send(&send)).await;
                conn.queue(&Packet::Sendack(ack))
            }
            // No answer; a late or unknown RECVACK is harmless and ignored.
            Packet::Recvack(ack) => {
                self.unacked.acked(ack.message_id);
                // A master device's RECVACK of a stored command (the header copies the RECV's
                // sync_once and no_persist) takes it off the user's command queue, as a
                // `/message/syncack` would (spec §1.6.6); a slave device's leaves it for the master.
                if ack.header.sync_once && !ack.header.no_persist && self.device_level == DeviceLevel::MASTER {
                    self.ack_command(MessageId(ack.message_id));
                }
                Ok(())
            }
            // A client DISCONNECT is ignored (spec §1.7 step 5): the client closes the socket itself.
            Packet::Disconnect(_) | Packet::Pong => Ok(()),
            Packet::Sub(sub) => conn.queue(&Packet::Suback(SubackPacket {
                sub_no: sub.sub_no,
                channel_id: sub.channel_id,
                channel_type: sub.channel_type,
                action: sub.action,
                reason_code: ReasonCode::NOT_SUPPORT_CHANNEL_TYPE,
            })),
            other => Err(ConnError::Protocol(format!("{:?} is not sent by clients", other.packet_type()))),
        }
    }

    /// Takes command `id` off this user's queue, in the background: a RECVACK has no answer, and the
    /// session should not wait for the append. Ids not in the queue change nothing.
    fn ack_command(&self, id: MessageId) {
        let (core, uid) = (self.core.clone(), self.uid.clone());
        let origin = Origin {
            actor: Actor::Client { uid: self.uid.clone(), device_flag: self.device_flag },
            request_id: RequestId(*uuid::Uuid::new_v4().as_bytes()),
            source: Some(self.peer.clone()),
            user_agent: None,
        };
        tokio::spawn(async move {
            if let Err(e) = core.user(&uid, UserCommand::AckCommandMessages(vec![id]), origin).await {
                tracing::warn!(uid = %uid, message_id = id.0, error = %e, "acknowledging a command on RECVACK failed; it stays queued");
            }
        });
    }

    /// Submits a SEND to the core and builds its SENDACK.
    async fn send(&self, send: &SendPacket) -> SendackPacket {
        let mut ack = SendackPacket { client_seq: send.client_seq, client_msg_no: send.client_msg_no.clone(), ..SendackPacket::default() };
        if self.send_limiter.as_ref().is_some_and(|l| l.check().is_err()) {
            tracing::debug!(peer = %self.peer, uid = %self.uid, client_seq = send.client_seq, "SEND over the connection's rate limit");
            ack.reason_code = ReasonCode::RATE_LIMIT;
            return ack;
        }
        match self.submit(send).await {
            Ok(accepted) => {
                ack.message_id = accepted.sent.message_id.0;
                ack.message_seq = accepted.sent.message_seq.0;
                ack.reason_code = ReasonCode::SUCCESS;
                self.info.msgs_in.fetch_add(1, Ordering::Relaxed);
                // A retry was delivered with the original.
                if !accepted.sent.duplicate {
                    self.fan_out(send, accepted);
                }
            }
            Err(reason) => {
                tracing::debug!(peer = %self.peer, uid = %self.uid, client_seq = send.client_seq, %reason, "SEND refused");
                ack.reason_code = reason;
            }
        }
        ack
    }

    /// Puts a RECV for a committed message on the queue of every online session of its recipients
    /// but this one.
    fn fan_out(&self, send: &SendPacket, accepted: Accepted) {
        let Accepted { sent, key, payload } = accepted;
        let message = Delivery {
            key,
            from: self.uid.clone(),
            header: packet::Header { dup: false, ..send.header },
            setting: send.setting,
            expire: send.expire,
            client_msg_no: send.client_msg_no.clone(),
            topic: send.topic.clone(),
            message_id: sent.message_id.0,
            message_seq: sent.message_seq.0,
            payload,
        };
        self.presence.deliver(&message, &sent.recipients, Some(self.conn_id));
    }

    /// Writes something another task queued for this session, and waits for its RECVACK.
    fn deliver(&mut self, conn: &mut Connection, item: Outbound) -> Result<(), ConnError> {
        match item {
            Outbound::Recv(mut recv, plain) => {
                match &self.cipher {
                    Some(cipher) => cipher.seal_recv(&mut recv, &plain),
                    None => recv.payload = plain.to_vec(),
                }
                let packet = Packet::Recv(*recv);
                conn.queue(&packet)?;
                self.info.msgs_out.fetch_add(1, Ordering::Relaxed);
                self.presence.delivered.fetch_add(1, Ordering::Relaxed);
                if let Packet::Recv(recv) = packet {
                    for evicted in self.unacked.sent(recv, Instant::now()) {
                        tracing::debug!(peer = %self.peer, uid = %self.uid, message_id = evicted, "too many unacknowledged RECVs; the oldest is given up");
                    }
                }
                Ok(())
            }
        }
    }

    /// Writes again, with DUP, every RECV whose RECVACK is late, and forgets those out of retries.
    fn retry(&mut self, conn: &mut Connection) -> Result<(), ConnError> {
        let due = self.unacked.due(Instant::now());
        for recv in due.resend {
            conn.queue(&Packet::Recv(recv))?;
        }
        for message_id in due.given_up {
            tracing::debug!(peer = %self.peer, uid = %self.uid, message_id, "no RECVACK after every retry; given up");
        }
        Ok(())
    }

    async fn submit(&self, send: &SendPacket) -> Result<Accepted, ReasonCode> {
        let payload = match &self.cipher {
            Some(cipher) => cipher.open_send(send).map_err(|e| e.reason_code())?,
            None => send.payload.clone(),
        };
        if payload.is_empty() || payload.len() > self.max_payload || send.client_msg_no.len() > MAX_CLIENT_MSG_NO {
            return Err(ReasonCode::PAYLOAD_DECODE_ERROR);
        }
        let ty = ChannelType(send.channel_type);
        if !ty.is_known() {
            return Err(ReasonCode::NOT_SUPPORT_CHANNEL_TYPE);
        }
        if send.channel_id.is_empty() || send.channel_id.len() > 128 || send.channel_id.contains(['@', '#', '&']) {
            return Err(ReasonCode::CHANNEL_ID_ERROR);
        }
        // A person channel is named by the peer's uid on the wire.
        let key = if ty == ChannelType::PERSON {
            ChannelKey::new(person_channel_id(&self.uid, &Uid::from(send.channel_id.as_str())), ty)
        } else {
            ChannelKey::new(send.channel_id.as_str(), ty)
        };
        let client_msg_no =
            if send.client_msg_no.is_empty() { format!("{}0", uuid::Uuid::new_v4().simple()) } else { send.client_msg_no.clone() };
        let msg = SendMessage {
            message_id: MessageId(0),
            client_msg_no: ClientMsgNo(client_msg_no),
            from_uid: self.uid.clone(),
            header: MessageHeader { no_persist: send.header.no_persist, red_dot: send.header.red_dot, sync_once: send.header.sync_once },
            setting: send.setting.0,
            // Streams are not supported yet (as in the REST API).
            stream_no: None,
            expire: send.expire,
            topic: (!send.topic.is_empty()).then(|| send.topic.clone()),
            payload: payload.clone(),
            sender: SenderStanding::default(),
            peer: PeerPolicy::default(),
        };
        let origin = Origin {
            actor: Actor::Client { uid: self.uid.clone(), device_flag: self.device_flag },
            request_id: RequestId(*uuid::Uuid::new_v4().as_bytes()),
            source: Some(self.peer.clone()),
            user_agent: None,
        };
        let sent = self.core.send(&key, msg, origin).await.map_err(|e| reason_for(&e))?;
        Ok(Accepted { sent, key, payload: payload.into() })
    }
}

/// The SENDACK reason for a refused send.
pub fn reason_for(error: &CoreError) -> ReasonCode {
    match error {
        CoreError::Rejected(r) => match r {
            Rejection::NotSubscriber => ReasonCode::SUBSCRIBER_NOT_EXIST,
            Rejection::InBlacklist => ReasonCode::IN_BLACKLIST,
            Rejection::ChannelNotFound => ReasonCode::CHANNEL_NOT_EXIST,
            Rejection::NotInWhitelist => ReasonCode::NOT_IN_WHITELIST,
            Rejection::Banned => ReasonCode::BAN,
            Rejection::Disbanded => ReasonCode::DISBAND,
            Rejection::SendBanned => ReasonCode::SEND_BAN,
            // A malformed command (for example a channel type that cannot carry messages).
            Rejection::Invalid(_) => ReasonCode::NOT_ALLOW_SEND,
        },
        CoreError::Storage(_) | CoreError::Unavailable => ReasonCode::SYSTEM_ERROR,
    }
}
