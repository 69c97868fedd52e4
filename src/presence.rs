//! Who is online: the authenticated sessions of this server by uid, each with its bounded outbound
//! queue, and live delivery of committed messages to them.
//!
//! Transports register their sessions here (the WKProto gateway today) and read their queue; the use
//! cases deliver and kick through it. Nothing here knows a wire format: a session renders the shared
//! [`Delivery`] for its own user and protocol.
//!
//! Kicks: whoever ends another session (a replacing login, a revoked token) removes its entry under
//! the lock and sends a [`Kick`] on its one-shot channel, so nothing is delivered to a kicked session
//! and online status is exact. A login reads a per-uid epoch before checking its token and registers
//! only if the epoch is unchanged; kicks bump it, so a login that checked a token which was replaced
//! meanwhile checks again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rookery_events::{ChannelKey, ChannelType, DeviceLevel, MessageHeader, MessageId, Uid};
use tokio::sync::{mpsc, oneshot};

/// What other tasks put on a session's outbound queue.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A committed message, shared by every session it goes to; each session renders it for its
    /// own user (the person channel named by the other party, no red dot on the sender's own
    /// devices) and seals it with its own key.
    Message(Arc<Delivery>),
    /// A committed event of a stream message, shared likewise; each session renders it for its
    /// protocol (an EVENT packet, or a stream RECV for the versions that have stream fields).
    Event(Arc<EventDelivery>),
}

impl Outbound {
    /// The channel it belongs to (deliveries of one channel keep their order).
    pub fn key(&self) -> &ChannelKey {
        match self {
            Outbound::Message(m) => &m.key,
            Outbound::Event(e) => &e.message.key,
        }
    }
}

/// One event of a stream message, as sessions receive it: the message it belongs to (without its
/// payload) and the event.
#[derive(Debug)]
pub struct EventDelivery {
    /// The stream message (its payload is left empty).
    pub message: Delivery,
    /// The event.
    pub event: Arc<rookery_events::MessageEventRecord>,
    /// The status of the event's key after it ("open", "closed", ...).
    pub status: &'static str,
    /// The event data (and its stream-piece payload) rendered once, when every viewer names the
    /// channel alike (all but person channels); `None`: each session renders its own.
    pub shared: Option<(Vec<u8>, Vec<u8>)>,
}

/// Why another task ends a session. The session is already out of [`Presence`] when it learns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kick {
    /// The login is over (replaced by another device, its token revoked): tell the client why, so
    /// that it stops reconnecting (WKProto: DISCONNECT with reason code 12), then close.
    LoggedOut(String),
    /// Close without telling the client, so that it reconnects: the same device logged in again (its
    /// old connection is stale), or the client stopped reading and its outbound queue is full.
    Close(&'static str),
}

impl Kick {
    /// "login in other device", WuKongIM's kick of a replaced login.
    pub fn replaced() -> Kick {
        Kick::LoggedOut("login in other device".into())
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
    status: Mutex<Option<tokio::sync::mpsc::Sender<StatusChange>>>,
    open_tcp: AtomicU64,
    open_ws: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
}

/// Bytes read from and written to every client connection of this process since start: the TCP stream
/// itself, or the payloads of WebSocket messages (not their frame headers), counted by the transports.
/// Process-wide, because a connection counts before it knows its session.
pub static BYTES_IN: AtomicU64 = AtomicU64::new(0);
/// See [`BYTES_IN`].
pub static BYTES_OUT: AtomicU64 = AtomicU64::new(0);

/// One online status change, as WuKongIM's `user.onlinestatus` webhook reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    /// Whose session.
    pub uid: Uid,
    /// Its device kind.
    pub device_flag: u8,
    /// Came online (or went offline).
    pub online: bool,
    /// The session's id.
    pub conn_id: u64,
    /// Sessions of this uid and device flag after the change.
    pub device_online_count: usize,
    /// Sessions of this uid after the change.
    pub total_online_count: usize,
}

/// A registration refused because the uid's tokens changed while the connection was checking its
/// token: check again.
#[derive(Debug)]
pub struct Stale;

/// Who is registering.
pub struct Login<'a> {
    /// The user.
    pub uid: &'a Uid,
    /// Its device kind (0 app, 1 web, 2 desktop).
    pub device_flag: u8,
    /// Master or slave, as registered with the token.
    pub device_level: DeviceLevel,
    /// The client's device id.
    pub device_id: &'a str,
}

impl Presence {
    fn lock(&self) -> std::sync::MutexGuard<'_, Directory> {
        self.directory.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends every later online status change to `tx` (never blocks: when `tx` is full the change is
    /// dropped and logged).
    pub fn set_status_listener(&self, tx: tokio::sync::mpsc::Sender<StatusChange>) {
        *self.status.lock().unwrap_or_else(PoisonError::into_inner) = Some(tx);
    }

    /// Reports a change of `uid`'s sessions; `dir` is the directory after the change.
    fn status_changed(&self, dir: &Directory, uid: &Uid, device_flag: u8, online: bool, conn_id: u64) {
        let guard = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(tx) = guard.as_ref() else { return };
        let sessions = dir.sessions.get(uid).map(Vec::as_slice).unwrap_or_default();
        let change = StatusChange {
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
    pub fn epoch(&self, uid: &Uid) -> u64 {
        self.lock().epochs[stripe(uid)]
    }

    /// Lists a new session and applies the device conflict rules of spec §5 (WuKongIM v2): a master
    /// login replaces every session of the same uid and device flag (DISCONNECT 12 to those of
    /// another device id, a plain close for the same device id, whose old connection is stale); a
    /// slave login replaces only sessions of the same uid, flag and device id. Different device flags
    /// never conflict.
    pub fn register(
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
            let conflicts = |o: &Online| o.device_flag == login.device_flag && (login.device_level == DeviceLevel::MASTER || o.device_id == login.device_id);
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
            let (kicked, kept): (Vec<Online>, Vec<Online>) = std::mem::take(sessions).into_iter().partition(|o| device_flag.is_none_or(|f| f == o.device_flag));
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

    /// Ends one session (by its id) with `kick`; whether it was online.
    pub fn kick_session(&self, uid: &Uid, id: u64, kick: Kick) -> bool {
        let found = {
            let mut dir = self.lock();
            let Some(sessions) = dir.sessions.get_mut(uid) else { return false };
            let found = sessions.iter().position(|o| o.id == id).map(|i| sessions.swap_remove(i));
            if sessions.is_empty() {
                dir.sessions.remove(uid);
            }
            found
        };
        match found {
            Some(old) => {
                old.kick(kick);
                true
            }
            None => false,
        }
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
        let (in_bytes, out_bytes) = (BYTES_IN.load(Ordering::Relaxed), BYTES_OUT.load(Ordering::Relaxed));
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
    pub fn opened(self: &Arc<Self>, transport: &'static str) -> OpenSocket {
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
pub struct OpenSocket {
    presence: Arc<Presence>,
    transport: &'static str,
}

impl Drop for OpenSocket {
    fn drop(&mut self) {
        self.presence.open_counter(self.transport).fetch_sub(1, Ordering::Relaxed);
    }
}

/// A committed message to push to online sessions, shared by all of them.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The stored channel (internal `big@small` id for person channels).
    pub key: ChannelKey,
    /// The sender.
    pub from: Uid,
    /// Header flags as sent.
    pub header: MessageHeader,
    /// Setting byte as sent.
    pub setting: u8,
    /// Expiry in seconds.
    pub expire: u32,
    /// The sender's message number.
    pub client_msg_no: String,
    /// Topic, if any.
    pub topic: Option<String>,
    /// Its id.
    pub message_id: MessageId,
    /// Its seq (0 for `no_persist`).
    pub message_seq: u64,
    /// When it was accepted, seconds since the epoch.
    pub timestamp: u32,
    /// The plaintext payload.
    pub payload: Vec<u8>,
}

impl Delivery {
    /// The channel id as `viewer` sees it: the other party of a person channel, the channel's own id
    /// otherwise.
    pub fn channel_id_for(&self, viewer: &Uid) -> String {
        if self.key.ty == ChannelType::PERSON {
            if let Some((a, b)) = rookery_events::person_channel_parties(&self.key.id) {
                return if a == *viewer { b.0 } else { a.0 };
            }
        }
        self.key.id.0.clone()
    }

    /// The header as `viewer` receives it: the sender's own other devices get no red dot.
    pub fn header_for(&self, viewer: &Uid) -> MessageHeader {
        MessageHeader { red_dot: self.header.red_dot && *viewer != self.from, ..self.header }
    }
}

impl Presence {
    /// Puts `message` on the queue of every online session of `recipients`, except session `except`.
    /// Never waits: a session whose queue is full (a reader that cannot keep up) is disconnected,
    /// and its client finds the message when it syncs after reconnecting.
    pub fn deliver(&self, item: &Outbound, recipients: &[Uid], except: Option<u64>) {
        // One look at the directory per message, not one per recipient; the queues are written after
        // the lock is released, so logins and kicks never wait for a big group's fan-out.
        let online: Vec<(&Uid, u64, mpsc::Sender<Outbound>)> = {
            let dir = self.lock();
            recipients
                .iter()
                .filter_map(|uid| dir.sessions.get(uid).map(|v| (uid, v)))
                .flat_map(|(uid, v)| v.iter().filter(|o| Some(o.id) != except).map(move |o| (uid, o.id, o.tx.clone())))
                .collect()
        };
        for (uid, id, tx) in online {
            match tx.try_send(item.clone()) {
                Ok(()) => {}
                // The session ends on its own; it is no longer listed a moment later.
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
                // A reader that cannot keep up: a silently skipped message would be a hole in what
                // the client believes it has, so the session ends instead, without telling it,
                // and the client reconnects and syncs. Nobody else waits for it.
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(uid = %uid, channel = %item.key(), "outbound queue full; disconnecting the slow reader");
                    self.kick_session(uid, id, Kick::Close("outbound queue full"));
                }
            }
        }
    }

    /// Counts one message written to a session.
    pub fn count_delivered(&self) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
    }

    /// Those of `uids` with a master-level session online: WuKongIM's test for "reachable" (a user
    /// whose only sessions are slave devices still gets offline pushes).
    pub fn with_master_online(&self, uids: &[Uid]) -> std::collections::HashSet<Uid> {
        let dir = self.lock();
        uids.iter().filter(|u| dir.sessions.get(*u).is_some_and(|v| v.iter().any(|o| o.device_level == DeviceLevel::MASTER))).cloned().collect()
    }

    /// Online sessions of each uid, as `(uid, device_flag)` pairs, for `/user/onlinestatus`.
    pub fn online_devices(&self, uids: &[Uid]) -> Vec<(Uid, u8)> {
        let dir = self.lock();
        uids.iter().flat_map(|u| dir.sessions.get(u).into_iter().flatten().map(move |o| (u.clone(), o.device_flag))).collect()
    }
}

/// A session's entry in [`Presence`]; removed when dropped, however the session ends.
pub struct Registration {
    presence: Arc<Presence>,
    uid: Uid,
    /// The session's id.
    pub id: u64,
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
