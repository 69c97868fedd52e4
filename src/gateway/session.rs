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
    person_channel_id, Actor, ChannelKey, ChannelType, ClientMsgNo, DeviceFlag, MessageHeader, MessageId, PeerPolicy, Rejection,
    RequestId, SendMessage, SenderStanding, Uid,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::conn::{ConnError, Connection};
use super::crypto::{server_handshake, SessionCipher};
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

/// Packets waiting to be written to one connection; a full queue means a slow reader.
pub const OUTBOUND_QUEUE: usize = 1024;

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
}

impl Gateway {
    /// A gateway with nobody online.
    pub fn new(core: Core, config: Arc<Config>) -> Gateway {
        Gateway { core, config, presence: Arc::new(Presence::default()) }
    }
}

/// What other tasks put on a session's outbound queue.
#[derive(Debug)]
pub enum Outbound {
    /// A message to deliver: every field but `payload` and `msg_key` is final; the receiving session
    /// seals it with the plaintext under its own key.
    Recv(Box<RecvPacket>, Arc<[u8]>),
}

/// One online session.
struct Online {
    id: u64,
    device_flag: u8,
    tx: mpsc::Sender<Outbound>,
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
    /// RECVs dropped because a session's outbound queue was full or closed.
    pub dropped: u64,
}

/// The authenticated sessions of this server, by uid. The lock is never held across an await.
#[derive(Default)]
pub struct Presence {
    next_id: AtomicU64,
    online: Mutex<HashMap<Uid, Vec<Online>>>,
    open_tcp: AtomicU64,
    open_ws: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
}

impl Presence {
    fn register(self: &Arc<Self>, uid: &Uid, device_flag: u8, tx: mpsc::Sender<Outbound>, info: Arc<SessionInfo>) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.online.lock().unwrap_or_else(PoisonError::into_inner).entry(uid.clone()).or_default().push(Online { id, device_flag, tx, info });
        Registration { presence: self.clone(), uid: uid.clone(), id }
    }

    /// Every authenticated session, ordered by id (oldest first).
    pub fn snapshot(&self) -> Vec<SessionSnapshot> {
        let online = self.online.lock().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<SessionSnapshot> = online
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
        drop(online);
        all.sort_by_key(|s| s.id);
        all
    }

    /// Gateway-wide counters.
    pub fn stats(&self) -> GatewayStats {
        GatewayStats {
            open_tcp: self.open_tcp.load(Ordering::Relaxed),
            open_ws: self.open_ws.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
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

    /// The queues of `uid`'s online sessions, with their ids.
    fn sessions(&self, uid: &Uid) -> Vec<(u64, mpsc::Sender<Outbound>)> {
        let online = self.online.lock().unwrap_or_else(PoisonError::into_inner);
        online.get(uid).map(|v| v.iter().map(|o| (o.id, o.tx.clone())).collect()).unwrap_or_default()
    }

    /// Number of online sessions of `uid`.
    pub fn count(&self, uid: &Uid) -> usize {
        self.online.lock().unwrap_or_else(PoisonError::into_inner).get(uid).map_or(0, Vec::len)
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
    /// Each recipient sees a person channel named by the other party. A full queue (a reader that
    /// cannot keep up) loses the RECV; the client finds the message when it syncs.
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
                if tx.try_send(Outbound::Recv(Box::new(recv), message.payload.clone())).is_err() {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(uid = %uid, message_id = message.message_id, "outbound queue full or closed; RECV dropped");
                }
            }
        }
    }

    /// Online sessions of each uid, as `(uid, device_flag)` pairs, for `/user/onlinestatus`.
    pub fn online_devices(&self, uids: &[Uid]) -> Vec<(Uid, u8)> {
        let online = self.online.lock().unwrap_or_else(PoisonError::into_inner);
        uids.iter().flat_map(|u| online.get(u).into_iter().flatten().map(move |o| (u.clone(), o.device_flag))).collect()
    }
}

/// Who receives a message of `key`: both parties of a person channel (named by `sender` and `peer`),
/// otherwise the channel's subscribers.
///
/// # Errors
/// The core's error when the channel cannot be read.
pub async fn recipients(core: &Core, key: &ChannelKey, sender: &Uid, peer: &Uid) -> Result<Vec<Uid>, CoreError> {
    if key.ty == ChannelType::PERSON {
        return Ok(if peer == sender { vec![sender.clone()] } else { vec![sender.clone(), peer.clone()] });
    }
    Ok(core.channel_state(key).await?.subscribers.into_iter().collect())
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

/// A session's entry in [`Presence`]; removed when dropped, however the session ends.
struct Registration {
    presence: Arc<Presence>,
    uid: Uid,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut online = self.presence.online.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(v) = online.get_mut(&self.uid) {
            v.retain(|o| o.id != self.id);
            if v.is_empty() {
                online.remove(&self.uid);
            }
        }
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
                    let connection = adapt(stream, peer.to_string());
                    let (gateway, shutdown) = (gateway.clone(), shutdown.clone());
                    sessions.spawn(async move {
                        if let Some(conn) = connection.await {
                            let _open = gateway.presence.opened(conn.transport());
                            serve(conn, gateway, shutdown).await;
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

/// Runs one connection to its end and closes it.
pub async fn serve(mut conn: Connection, gateway: Gateway, mut shutdown: watch::Receiver<bool>) {
    match run(&mut conn, &gateway, &mut shutdown).await {
        Ok(()) => {}
        Err(ConnError::Protocol(reason)) => {
            tracing::debug!(peer = conn.peer(), %reason, "protocol error; disconnecting");
            let disconnect = Packet::Disconnect(DisconnectPacket { reason_code: ReasonCode::PAYLOAD_DECODE_ERROR, reason });
            if conn.queue(&disconnect).is_ok() {
                let _ = conn.flush().await;
            }
        }
        Err(e) => tracing::debug!(peer = conn.peer(), error = %e, "connection failed"),
    }
    conn.close().await;
}

async fn run(conn: &mut Connection, gateway: &Gateway, shutdown: &mut watch::Receiver<bool>) -> Result<(), ConnError> {
    let first = match tokio::time::timeout(CONNECT_TIMEOUT, conn.read_frame()).await {
        Err(_) | Ok(Ok(None)) => return Ok(()),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(Some(frame))) => frame,
    };
    let (connect, _) = packet::decode_connect(&first)?;
    // Spec §1.7 (v3): nothing may follow CONNECT before CONNACK.
    if conn.buffered_frame()?.is_some() {
        return Err(ConnError::Protocol("packet sent before CONNACK".into()));
    }
    conn.set_version(negotiate_version(connect.version));
    let Some(mut session) = handshake(conn, gateway, &connect).await? else {
        return Ok(());
    };

    let (outbound_tx, mut outbound) = mpsc::channel::<Outbound>(OUTBOUND_QUEUE);
    let info = Arc::new(SessionInfo {
        device_id: connect.device_id.clone(),
        peer: conn.peer().to_owned(),
        version: conn.version(),
        transport: conn.transport(),
        since: std::time::SystemTime::now(),
        msgs_in: AtomicU64::new(0),
        msgs_out: AtomicU64::new(0),
    });
    let registration = gateway.presence.register(&session.uid, session.device_flag.0, outbound_tx, info.clone());
    session.conn_id = registration.id;
    session.info = Some(info);
    // The successful CONNACK, only now that the session can be reached.
    conn.flush().await?;
    let mut deadline = Instant::now() + IDLE_TIMEOUT;
    loop {
        tokio::select! {
            frame = conn.read_frame() => {
                let Some(frame) = frame? else { return Ok(()) };
                deadline = Instant::now() + IDLE_TIMEOUT;
                session.handle(conn, &frame).await?;
                // Answer everything that arrived together before writing once.
                while let Some(frame) = conn.buffered_frame()? {
                    session.handle(conn, &frame).await?;
                }
                conn.flush().await?;
            }
            Some(item) = outbound.recv() => {
                session.deliver(conn, item)?;
                while let Ok(item) = outbound.try_recv() {
                    session.deliver(conn, item)?;
                }
                conn.flush().await?;
            }
            () = stopped(shutdown) => return Ok(()),
            () = tokio::time::sleep_until(deadline) => {
                tracing::debug!(peer = conn.peer(), "idle timeout");
                return Ok(());
            }
        }
    }
}

/// Authenticates CONNECT and agrees the keys; answers CONNACK either way. `None` when the session
/// was refused (the CONNACK with the reason is already written); on success the CONNACK is queued
/// and the caller flushes it after registering the session.
async fn handshake(conn: &mut Connection, gateway: &Gateway, connect: &ConnectPacket) -> Result<Option<Session>, ConnError> {
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
    let refuse = |conn: &mut Connection, reason: ReasonCode| {
        tracing::debug!(peer = conn.peer(), uid = %connect.uid, %reason, "CONNECT refused");
        conn.queue(&connack(reason, String::new(), String::new()))
    };
    let reason = authenticate(&gateway.core, connect).await;
    if reason != ReasonCode::SUCCESS {
        refuse(conn, reason)?;
        conn.flush().await?;
        return Ok(None);
    }
    let shake = match server_handshake(&connect.client_key) {
        Ok(shake) => shake,
        Err(e) => {
            refuse(conn, e.reason_code())?;
            conn.flush().await?;
            return Ok(None);
        }
    };
    // Queued, not flushed: `run` flushes it once the session is in presence, so a client that has
    // its CONNACK is already reachable by live delivery and `/user/onlinestatus`.
    conn.queue(&connack(ReasonCode::SUCCESS, shake.server_key, shake.salt))?;
    tracing::debug!(peer = conn.peer(), uid = %connect.uid, device_flag = connect.device_flag, version = conn.version(), "session open");
    Ok(Some(Session {
        uid: Uid::from(connect.uid.as_str()),
        device_flag: DeviceFlag(connect.device_flag),
        cipher: shake.cipher,
        core: gateway.core.clone(),
        presence: gateway.presence.clone(),
        conn_id: 0,
        info: None,
        max_payload: gateway.config.max_payload_bytes,
        peer: conn.peer().to_owned(),
    }))
}

/// CONNACK reason for a CONNECT: the uid must be a valid id, the token the one registered with
/// `/user/token` for (uid, device_flag) (spec §5), and the user's person channel not banned.
async fn authenticate(core: &Core, connect: &ConnectPacket) -> ReasonCode {
    if connect.uid.is_empty() || connect.uid.len() > 128 || connect.uid.contains(['@', '#', '&']) {
        return ReasonCode::AUTH_FAIL;
    }
    let uid = Uid::from(connect.uid.as_str());
    let state = match core.user_state(&uid).await {
        Ok(state) => state,
        Err(e) => {
            tracing::warn!(uid = %uid, error = %e, "reading the user for CONNECT");
            return ReasonCode::SYSTEM_ERROR;
        }
    };
    if !state.tokens.get(&DeviceFlag(connect.device_flag)).is_some_and(|t| t.matches(&connect.token)) {
        return ReasonCode::AUTH_FAIL;
    }
    match core.channel_state(&ChannelKey::new(uid.0.clone(), ChannelType::PERSON)).await {
        Ok(own) if own.info.ban => ReasonCode::BAN,
        Ok(_) => ReasonCode::SUCCESS,
        Err(e) => {
            tracing::warn!(uid = %uid, error = %e, "reading the user's channel for CONNECT");
            ReasonCode::SYSTEM_ERROR
        }
    }
}

/// An authenticated session.
struct Session {
    uid: Uid,
    device_flag: DeviceFlag,
    cipher: SessionCipher,
    core: Core,
    presence: Arc<Presence>,
    /// This session's id in [`Presence`].
    conn_id: u64,
    /// Its entry's counters, once registered.
    info: Option<Arc<SessionInfo>>,
    max_payload: usize,
    peer: String,
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
                let ack = self.send(&send).await;
                conn.queue(&Packet::Sendack(ack))
            }
            // Delivery acknowledgements matter once RECV is delivered; a client DISCONNECT is ignored
            // (spec §1.7 step 5): the client closes the socket itself.
            Packet::Recvack(_) | Packet::Disconnect(_) | Packet::Pong => Ok(()),
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

    /// Submits a SEND to the core and builds its SENDACK.
    async fn send(&self, send: &SendPacket) -> SendackPacket {
        let mut ack = SendackPacket { client_seq: send.client_seq, client_msg_no: send.client_msg_no.clone(), ..SendackPacket::default() };
        match self.submit(send).await {
            Ok(accepted) => {
                ack.message_id = accepted.sent.message_id.0;
                ack.message_seq = accepted.sent.message_seq.0;
                ack.reason_code = ReasonCode::SUCCESS;
                if let Some(info) = &self.info {
                    info.msgs_in.fetch_add(1, Ordering::Relaxed);
                }
                // A retry was delivered with the original.
                if !accepted.sent.duplicate {
                    self.fan_out(send, accepted).await;
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
    async fn fan_out(&self, send: &SendPacket, accepted: Accepted) {
        let Accepted { sent, key, payload } = accepted;
        let recipients = match recipients(&self.core, &key, &self.uid, &Uid::from(send.channel_id.as_str())).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(channel = %key, error = %e, "reading subscribers for delivery");
                return;
            }
        };
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
        self.presence.deliver(&message, &recipients, Some(self.conn_id));
    }

    /// Writes something another task queued for this session.
    fn deliver(&self, conn: &mut Connection, item: Outbound) -> Result<(), ConnError> {
        match item {
            Outbound::Recv(mut recv, plain) => {
                self.cipher.seal_recv(&mut recv, &plain);
                conn.queue(&Packet::Recv(*recv))?;
                if let Some(info) = &self.info {
                    info.msgs_out.fetch_add(1, Ordering::Relaxed);
                }
                self.presence.delivered.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
        }
    }

    async fn submit(&self, send: &SendPacket) -> Result<Accepted, ReasonCode> {
        let payload = self.cipher.open_send(send).map_err(|e| e.reason_code())?;
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
