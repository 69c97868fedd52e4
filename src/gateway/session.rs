//! One WKProto session per connection, after its CONNECT (`login.rs`): a loop answering PING, SEND and
//! RECVACK and writing what other tasks queue for it, until the peer leaves, idles out, is kicked or
//! the server stops (spec §1.7).
//!
//! A session is a plain tokio task, not an actor: it owns its [`Connection`] and waits on one
//! `select!` over the next packet, its outbound queue, the RECVACK deadline, its kick, the stop signal
//! and the idle deadline. A SEND is handed to the send use case, which answers once the message is
//! durable and delivers it afterwards; the session renders what it receives on its queue as a RECV for
//! its own user and seals it with its own cipher.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use rookery_actors::{CoreError, Origin};
use rookery_events::{Actor, DeviceFlag, DeviceLevel, MessageHeader, MessageId, Rejection, RequestId, Uid, UserCommand};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::conn::{ConnError, Connection};
use super::crypto::SessionCipher;
use super::packet::{self, EventPacket, Header, Packet, ReasonCode, RecvPacket, SendPacket, SendackPacket, Setting, SubackPacket};
use super::server::{shutting_down, stopped, End, Gateway, IDLE_TIMEOUT, WRITE_BATCH, WRITE_BUDGET};
use super::unacked::Unacked;
use crate::presence::{Delivery, EventDelivery, Kick, Outbound, Presence, SessionInfo};
use crate::usecase::{self, Field, Outgoing, Target, UseCases};

/// An authenticated session.
pub(super) struct Session {
    pub(super) uid: Uid,
    pub(super) device_flag: DeviceFlag,
    /// Master or slave: only a master device's RECVACK takes a command off the user's queue.
    pub(super) device_level: DeviceLevel,
    /// The payload cipher; `None` for JSON-RPC sessions, whose payloads are plaintext.
    pub(super) cipher: Option<SessionCipher>,
    pub(super) usecases: UseCases,
    pub(super) presence: Arc<Presence>,
    /// This session's id in [`Presence`].
    pub(super) conn_id: u64,
    pub(super) peer: String,
    /// RECVs written and not yet acknowledged.
    pub(super) unacked: Unacked,
    /// This connection's SEND budget, when SENDs are limited.
    pub(super) send_limiter: Option<crate::limits::SendLimiter>,
    /// Its entry's counters for the monitor.
    pub(super) info: Arc<SessionInfo>,
}

/// How long a session reads what has arrived before it sends a late RECV again.
const RETRY_GRACE: std::time::Duration = std::time::Duration::from_millis(20);

impl Session {
    /// Serves the authenticated connection until it ends: packets in, queued messages out, RECVACK
    /// deadlines, kicks, the stop signal and the idle limit.
    pub(super) async fn serve(
        mut self,
        conn: &mut Connection,
        gateway: &Gateway,
        shutdown: &mut watch::Receiver<bool>,
        mut outbound: mpsc::Receiver<Outbound>,
        mut kicked: oneshot::Receiver<Kick>,
    ) -> Result<End, ConnError> {
        let session = &mut self;
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
                // RECVs whose RECVACK is late: again with DUP, or given up. Input that has arrived counts
                // first: under load (or after the process was stopped) the timer can be due while
                // RECVACKs wait in the socket, not yet reported by the reactor, and re-sending then
                // would deliver a message twice. So the session reads for a short grace before it retries.
                () = tokio::time::sleep_until(retry_at.unwrap_or(deadline)), if retry_at.is_some() => {
                    let grace = tokio::time::sleep(RETRY_GRACE);
                    tokio::pin!(grace);
                    loop {
                        tokio::select! {
                            biased;
                            frame = conn.read_frame() => match frame? {
                                Some(frame) => session.handle(conn, &frame).await?,
                                None => return Ok(End::Closed),
                            },
                            () = &mut grace => break,
                        }
                    }
                    session.retry(conn)?;
                }
                kick = &mut kicked => return Ok(End::from(kick.unwrap_or(Kick::Close("no longer listed")))),
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
                kick = &mut kicked => return Ok(End::from(kick.unwrap_or(Kick::Close("no longer listed")))),
                () = stopped(shutdown) => return Ok(shutting_down(gateway)),
                () = tokio::time::sleep(IDLE_TIMEOUT) => return Err(ConnError::Transport("the peer took no bytes for the idle limit".into())),
            }
        }
    }

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
                let delivered_here = self.unacked.acked(ack.message_id);
                // A master device's RECVACK of a stored command (the header copies the RECV's
                // sync_once and no_persist) takes it off the user's command queue, as a
                // `/message/syncack` would (spec §1.6.6); a slave device's leaves it for the master.
                // Only a RECVACK of a RECV this session is waiting for reaches the user's actor: a
                // flood of invented or repeated ones costs the session a lookup each, nothing more.
                if delivered_here && ack.header.sync_once && !ack.header.no_persist && self.device_level == DeviceLevel::MASTER {
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
        let (core, uid) = (self.usecases.clone(), self.uid.clone());
        let origin = Origin {
            actor: Actor::Client { uid: self.uid.clone(), device_flag: self.device_flag },
            request_id: RequestId(*uuid::Uuid::new_v4().as_bytes()),
            source: Some(self.peer.clone()),
            user_agent: None,
        };
        tokio::spawn(async move {
            if let Err(e) = core.core().user(&uid, UserCommand::AckCommandMessages(vec![id]), origin).await {
                tracing::warn!(uid = %uid, message_id = id.0, error = %e, "acknowledging a command on RECVACK failed; it stays queued");
            }
        });
    }

    /// Hands a SEND to the send use case and builds its SENDACK. The use case answers once the
    /// message is durable; its delivery to the recipients' sessions follows.
    async fn send(&self, send: &SendPacket) -> SendackPacket {
        let mut ack = SendackPacket { client_seq: send.client_seq, client_msg_no: send.client_msg_no.clone(), ..SendackPacket::default() };
        if self.send_limiter.as_ref().is_some_and(|l| l.check().is_err()) {
            tracing::debug!(peer = %self.peer, uid = %self.uid, client_seq = send.client_seq, "SEND over the connection's rate limit");
            ack.reason_code = ReasonCode::RATE_LIMIT;
            return ack;
        }
        match self.submit(send).await {
            Ok(sent) => {
                ack.message_id = sent.message_id.0;
                ack.message_seq = sent.message_seq.0;
                ack.reason_code = ReasonCode::SUCCESS;
                self.info.msgs_in.fetch_add(1, Ordering::Relaxed);
            }
            Err(reason) => {
                tracing::debug!(peer = %self.peer, uid = %self.uid, client_seq = send.client_seq, %reason, "SEND refused");
                ack.reason_code = reason;
            }
        }
        ack
    }

    /// Writes something another task queued for this session: a message (then waits for its RECVACK)
    /// or an event of a stream message.
    fn deliver(&mut self, conn: &mut Connection, item: Outbound) -> Result<(), ConnError> {
        let message = match item {
            Outbound::Message(message) => message,
            Outbound::Event(event) => return self.deliver_event(conn, &event),
        };
        let mut recv = recv_for(&message, &self.uid, conn.version());
        match &self.cipher {
            Some(cipher) => cipher.seal_recv(&mut recv, &message.payload),
            None => recv.payload = message.payload.clone(),
        }
        let packet = Packet::Recv(recv);
        conn.queue(&packet)?;
        self.info.msgs_out.fetch_add(1, Ordering::Relaxed);
        self.presence.count_delivered();
        if let Packet::Recv(recv) = packet {
            for evicted in self.unacked.sent(recv, Instant::now()) {
                tracing::debug!(peer = %self.peer, uid = %self.uid, message_id = evicted, "too many unacknowledged RECVs; the oldest is given up");
            }
        }
        Ok(())
    }

    /// Writes an event of a stream message in the form this session's protocol has: an EVENT packet
    /// (JSON-RPC's `event`) from version 5 on, a stream RECV (content type 98) for versions 2-4, whose
    /// SDK knows no EVENT packet. Version 1 has neither; its clients read the finished message. Events
    /// are not retried: a client that misses one syncs them (`/message/eventsync`).
    fn deliver_event(&mut self, conn: &mut Connection, e: &EventDelivery) -> Result<(), ConnError> {
        let version = conn.version();
        let (data, chunk) = match &e.shared {
            Some((data, chunk)) => (data.clone(), Some(chunk)),
            None => (crate::render::event_data(&e.event, &e.message.channel_id_for(&self.uid), e.message.key.ty.0, e.status), None),
        };
        if conn.is_json_rpc() || version >= 5 {
            conn.queue(&Packet::Event(EventPacket { id: e.event.event_id.clone(), kind: e.event.event_type.clone(), timestamp: e.event.occurred_at, data }))?;
        } else if (2..=4).contains(&version) && !rookery_events::event_kinds::is_message_change(&e.event.event_type) {
            // Edits and revokes have no stream-piece form: these clients see them when they read the message.
            let mut recv = recv_for(&e.message, &self.uid, version);
            recv.stream_seq = e.event.event_seq as u32;
            recv.stream_flag = if e.event.ended.is_some() { STREAM_END } else { STREAM_ING };
            let payload = chunk.cloned().unwrap_or_else(|| crate::render::stream_chunk_payload(&data));
            match &self.cipher {
                Some(cipher) => cipher.seal_recv(&mut recv, &payload),
                None => recv.payload = payload,
            }
            conn.queue(&Packet::Recv(recv))?;
        } else {
            return Ok(());
        }
        self.info.msgs_out.fetch_add(1, Ordering::Relaxed);
        Ok(())
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

    /// Opens the SEND's payload with the session cipher and sends it from this session's user.
    async fn submit(&self, send: &SendPacket) -> Result<usecase::Sent, ReasonCode> {
        let payload = match &self.cipher {
            Some(cipher) => cipher.open_send(send).map_err(|e| e.reason_code())?,
            None => send.payload.clone(),
        };
        let out = Outgoing {
            from: Some(self.uid.0.clone()),
            // A person channel is named by the peer's uid on the wire.
            target: Target::Channel { id: send.channel_id.clone(), ty: Some(send.channel_type) },
            client_msg_no: Some(send.client_msg_no.clone()),
            header: MessageHeader { no_persist: send.header.no_persist, red_dot: send.header.red_dot, sync_once: send.header.sync_once },
            setting: send.setting.0,
            expire: send.expire,
            topic: Some(send.topic.clone()),
            // A stream message is named by its client_msg_no; the legacy stream_no is not kept.
            stream_no: None,
            payload,
        };
        let origin = Origin {
            actor: Actor::Client { uid: self.uid.clone(), device_flag: self.device_flag },
            request_id: RequestId(*uuid::Uuid::new_v4().as_bytes()),
            source: Some(self.peer.clone()),
            user_agent: None,
        };
        self.usecases.send(out, origin, Some(self.conn_id)).await.map_err(|e| reason_for(&e))
    }
}

/// `stream_flag` of a stream message's opening RECV, of its events, and of the event that ends it.
const STREAM_START: u8 = 0;
const STREAM_ING: u8 = 1;
const STREAM_END: u8 = 2;

/// The bit the npm SDK 1.0.4 (protocol version 2) reads as "stream fields follow" in a RECV; the
/// server codecs use [`Setting::STREAM`]. Stream RECVs for versions 2-4 carry both.
const SDK_STREAM_BIT: u8 = 0x04;

/// The RECV of `message` as `viewer` receives it at protocol `version`, payload not yet sealed. A
/// stream message carries its stream fields for versions 2-4 (stream_no = its client_msg_no).
fn recv_for(message: &Delivery, viewer: &Uid, version: u8) -> RecvPacket {
    let header = message.header_for(viewer);
    let stream = Setting(message.setting).stream() && (2..=4).contains(&version);
    // The stream bit stays as stored (versions 1 and 5+ have no stream fields whatever it says).
    let setting = Setting(message.setting).with(SDK_STREAM_BIT, stream);
    RecvPacket {
        header: Header { dup: false, no_persist: header.no_persist, red_dot: header.red_dot, sync_once: header.sync_once },
        setting,
        stream_no: if stream { message.client_msg_no.clone() } else { String::new() },
        stream_flag: STREAM_START,
        from_uid: message.from.0.clone(),
        channel_id: message.channel_id_for(viewer),
        channel_type: message.key.ty.0,
        expire: message.expire,
        client_msg_no: message.client_msg_no.clone(),
        message_id: message.message_id.0,
        message_seq: message.message_seq,
        timestamp: message.timestamp as i32,
        topic: message.topic.clone().unwrap_or_default(),
        ..RecvPacket::default()
    }
}

/// The SENDACK reason for a refused send.
pub fn reason_for(error: &usecase::Error) -> ReasonCode {
    let error = match error {
        usecase::Error::Invalid(Field::ChannelType, _) => return ReasonCode::NOT_SUPPORT_CHANNEL_TYPE,
        usecase::Error::Invalid(Field::ChannelId, _) => return ReasonCode::CHANNEL_ID_ERROR,
        usecase::Error::Invalid(..) | usecase::Error::TooLarge(..) => return ReasonCode::PAYLOAD_DECODE_ERROR,
        usecase::Error::NotFound(_) => return ReasonCode::CHANNEL_NOT_EXIST,
        usecase::Error::Core(e) => e,
    };
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
            Rejection::Invalid(_) | Rejection::Exists(_) => ReasonCode::NOT_ALLOW_SEND,
            Rejection::NotFound(_) => ReasonCode::CHANNEL_NOT_EXIST,
            // WKProto has no code of its own for a muted group member: it may not send.
            Rejection::Muted => ReasonCode::SEND_BAN,
            Rejection::GroupFull | Rejection::NotAllowed(_) | Rejection::Expired(_) => ReasonCode::NOT_ALLOW_SEND,
        },
        CoreError::Storage(_) | CoreError::Unavailable => ReasonCode::SYSTEM_ERROR,
    }
}
