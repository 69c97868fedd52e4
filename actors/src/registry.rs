//! `Core`: the handle the rest of the server holds. It finds (or starts) the actor serving a channel or
//! user, spreads actors over arbiters by key hash, and tries a request up to three times when it hits an actor
//! that was just passivated.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use actix::{Actor, Addr, Arbiter, ArbiterHandle, Message};
use rookery_events::{
    ChannelCommand, ChannelEvent, ChannelKey, ChannelState, ChannelType, EnvelopeBody, Event, SendMessage, StreamId, SystemCommand, SystemState, Timestamp,
    Uid, UserCommand, UserState,
};
use rookery_storage::EventLog;

use crate::channel::ChannelActor;
use crate::clock::{Clock, MessageIdGen};
use crate::error::CoreError;
use crate::messages::*;
use crate::system::SystemActor;
use crate::tenant::{TenantActor, TenantReply};
use crate::user::UserActor;

/// Tunables of the actor layer.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// An actor with nothing to do for this long writes a snapshot and stops.
    pub idle_timeout: Duration,
    /// A snapshot is written after this many applied events.
    pub snapshot_every: u64,
    /// How many arbiters (threads) actors are spread over.
    pub arbiters: usize,
    /// A retried send is recognised while its original is among the last this many messages of its
    /// channel (of each kind, ordinary and command); see `recent.rs`.
    pub dedupe_window: u64,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig { idle_timeout: Duration::from_secs(300), snapshot_every: 1000, arbiters: 2, dedupe_window: 4096 }
    }
}

const SHARDS: usize = 32;

/// A sharded map from key to live actor address.
pub(crate) struct Directory<K, A: Actor> {
    shards: Vec<Mutex<HashMap<K, Addr<A>>>>,
}

impl<K: Hash + Eq + Clone, A: Actor> Directory<K, A> {
    fn new() -> Self {
        Directory { shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect() }
    }

    fn shard(&self, key: &K) -> &Mutex<HashMap<K, Addr<A>>> {
        &self.shards[hash_of(key) as usize % SHARDS]
    }

    pub(crate) fn get(&self, key: &K) -> Option<Addr<A>> {
        self.shard(key).lock().expect("directory lock").get(key).cloned()
    }

    fn get_or_insert_with(&self, key: &K, start: impl FnOnce() -> Addr<A>) -> Addr<A> {
        let mut map = self.shard(key).lock().expect("directory lock");
        if let Some(addr) = map.get(key) {
            if addr.connected() {
                return addr.clone();
            }
        }
        let addr = start();
        map.insert(key.clone(), addr.clone());
        addr
    }

    /// Removes the entry only if it still points at `addr` (a newer actor may have replaced it).
    pub(crate) fn remove_if(&self, key: &K, addr: &Addr<A>) {
        let mut map = self.shard(key).lock().expect("directory lock");
        if map.get(key).is_some_and(|a| a == addr) {
            map.remove(key);
        }
    }

    /// Number of live actors.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().expect("directory lock").len()).sum()
    }
}

fn hash_of<K: Hash>(key: &K) -> u64 {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

pub(crate) struct Inner {
    pub(crate) log: Arc<dyn EventLog>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) ids: MessageIdGen,
    pub(crate) config: CoreConfig,
    arbiters: Vec<ArbiterHandle>,
    pub(crate) channels: Directory<ChannelKey, ChannelActor>,
    pub(crate) users: Directory<Uid, UserActor>,
    pub(crate) tenants: Directory<String, TenantActor>,
    system: Mutex<Option<Addr<SystemActor>>>,
    pub(crate) system_view: RwLock<Arc<SystemState>>,
    /// Whether a user may not send (send ban or ban on their own person channel), as published by
    /// that channel's live actor: set when it starts and after each of its commits (before its
    /// replies), removed when it stops. A user with no entry is asked about through the actor.
    send_bans: RwLock<HashMap<Uid, bool>>,
    /// Sends that committed a new message (de-duplicated retries not counted).
    messages_accepted: AtomicU64,
    /// Retried sends answered with their original.
    messages_retried: AtomicU64,
}

/// The actor layer as the rest of the server sees it. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct Core(pub(crate) Arc<Inner>);

/// Counts for the monitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoreStats {
    /// Live channel actors.
    pub channel_actors: usize,
    /// Live user actors.
    pub user_actors: usize,
    /// Sends accepted since start (REST and WKProto alike): each committed a new message. A retry
    /// answered from the original (same client_msg_no) is not counted again.
    pub messages_accepted: u64,
    /// Retried sends (same sender and client_msg_no) answered with their original from the channel's
    /// idempotency window, storing nothing.
    pub messages_retried: u64,
}

impl Core {
    /// Starts the actor layer on `config.arbiters` new arbiters. Must run inside an actix `System`.
    /// Loads the server-wide state (snapshot + tail) before returning.
    ///
    /// # Errors
    /// [`CoreError::Storage`] if the server-wide state cannot be read.
    pub fn start(log: Arc<dyn EventLog>, clock: Arc<dyn Clock>, config: CoreConfig) -> Result<Core, CoreError> {
        let (system_state, horizon, _) = crate::recovery::recover::<SystemState>(&*log, &[rookery_events::StreamId::System])?;
        let newest = newest_timestamp(&*log).max(clock.now());
        let arbiters = (0..config.arbiters.max(1)).map(|_| Arbiter::new().handle()).collect();
        let core = Core(Arc::new(Inner {
            ids: MessageIdGen::new(newest),
            log,
            clock,
            config,
            arbiters,
            channels: Directory::new(),
            users: Directory::new(),
            tenants: Directory::new(),
            system: Mutex::new(None),
            system_view: RwLock::new(Arc::new(system_state.clone())),
            send_bans: RwLock::new(HashMap::new()),
            messages_accepted: AtomicU64::new(0),
            messages_retried: AtomicU64::new(0),
        }));
        let c = core.clone();
        let addr = SystemActor::start_in_arbiter(&core.0.arbiters[0], move |_| SystemActor::new(c, system_state, horizon));
        *core.0.system.lock().expect("system lock") = Some(addr);
        Ok(core)
    }

    /// The event log, for reads that need no actor (message history, audit).
    pub fn log(&self) -> &Arc<dyn EventLog> {
        &self.0.log
    }

    /// The current server-wide state (system uids), as last committed.
    pub fn system_view(&self) -> Arc<SystemState> {
        self.0.system_view.read().expect("system view lock").clone()
    }

    /// Live actor counts.
    pub fn stats(&self) -> CoreStats {
        CoreStats {
            channel_actors: self.0.channels.len(),
            user_actors: self.0.users.len(),
            messages_accepted: self.0.messages_accepted.load(Ordering::Relaxed),
            messages_retried: self.0.messages_retried.load(Ordering::Relaxed),
        }
    }

    fn arbiter_for<K: Hash>(&self, key: &K) -> &ArbiterHandle {
        &self.0.arbiters[hash_of(key) as usize % self.0.arbiters.len()]
    }

    pub(crate) fn channel_addr(&self, key: &ChannelKey) -> Addr<ChannelActor> {
        self.0.channels.get_or_insert_with(key, || {
            let (core, k) = (self.clone(), key.clone());
            ChannelActor::start_in_arbiter(self.arbiter_for(key), move |_| ChannelActor::recover(core, k))
        })
    }

    pub(crate) fn user_addr(&self, uid: &Uid) -> Addr<UserActor> {
        self.0.users.get_or_insert_with(uid, || {
            let (core, u) = (self.clone(), uid.clone());
            UserActor::start_in_arbiter(self.arbiter_for(uid), move |_| UserActor::recover(core, u))
        })
    }

    fn tenant_addr(&self, tag: &String) -> Addr<TenantActor> {
        self.0.tenants.get_or_insert_with(tag, || {
            let (core, t) = (self.clone(), tag.clone());
            TenantActor::start_in_arbiter(self.arbiter_for(tag), move |_| TenantActor::recover(core, t))
        })
    }

    /// Runs a command on the tenant `tag` and waits until its effect is durable; answers the events
    /// decided (empty when nothing changed) and the position of the last one.
    ///
    /// # Errors
    /// As for [`Core::channel`].
    pub async fn tenant(&self, tag: &str, cmd: rookery_events::TenantCommand, origin: Origin) -> Result<TenantReply, CoreError> {
        let tag = tag.to_owned();
        let msg = || ExecuteTenant { cmd: cmd.clone(), origin: origin.clone() };
        ask(|| self.tenant_addr(&tag), msg, |a| self.0.tenants.remove_if(&tag, a)).await
    }

    /// Runs `read` on the committed state of the tenant `tag`, inside its actor, and answers what it
    /// returns: a tenant's state grows with its users and is never copied out whole.
    ///
    /// # Errors
    /// [`CoreError::Storage`] when the tenant cannot be loaded, [`CoreError::Unavailable`] when its
    /// actor stopped.
    pub async fn tenant_read<R: Send + 'static>(
        &self,
        tag: &str,
        read: impl FnOnce(&rookery_events::TenantState) -> R + Send + 'static,
    ) -> Result<R, CoreError> {
        let tag = tag.to_owned();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let addr = self.tenant_addr(&tag);
        let query = QueryTenant {
            read: Box::new(move |state| {
                let _ = tx.send(read(state));
            }),
        };
        match addr.send(query).await {
            Ok(Ok(())) => rx.await.map_err(|_| CoreError::Unavailable),
            Ok(Err(e)) => Err(e),
            Err(_) => {
                self.0.tenants.remove_if(&tag, &addr);
                Err(CoreError::Unavailable)
            }
        }
    }

    fn system_addr(&self) -> Result<Addr<SystemActor>, CoreError> {
        self.0.system.lock().expect("system lock").clone().ok_or(CoreError::Unavailable)
    }

    /// Runs a command on a channel and waits until its effect is durable.
    ///
    /// # Errors
    /// [`CoreError::Rejected`] when a rule refuses it, [`CoreError::Storage`] when the log fails.
    pub async fn channel(&self, key: &ChannelKey, cmd: ChannelCommand, origin: Origin) -> Result<ChannelReply, CoreError> {
        let msg = || ExecuteChannel { cmd: cmd.clone(), origin: origin.clone(), rewrites: Vec::new() };
        ask(|| self.channel_addr(key), msg, |a| self.0.channels.remove_if(key, a)).await
    }

    /// Appends an event to a stream message of a channel and waits until it is durable.
    ///
    /// # Errors
    /// [`CoreError::Rejected`] for a bad event or an unknown stream message, [`CoreError::Storage`]
    /// when the log fails.
    pub async fn append_message_event(
        &self,
        key: &ChannelKey,
        event: rookery_events::NewMessageEvent,
        message: Option<(rookery_events::MessageSeq, rookery_events::MessageId, Uid)>,
        origin: Origin,
    ) -> Result<MessageEventReply, CoreError> {
        let msg = || AppendMessageEvent { event: event.clone(), message: message.clone(), origin: origin.clone() };
        ask(|| self.channel_addr(key), msg, |a| self.0.channels.remove_if(key, a)).await
    }

    /// The edited messages of a channel with seqs in `from..=to`, with when they were last edited.
    ///
    /// # Errors
    /// [`CoreError::Storage`] when the channel cannot be loaded.
    pub async fn edited(&self, key: &ChannelKey, from: u64, to: u64) -> Result<Vec<(rookery_events::MessageSeq, rookery_events::Timestamp)>, CoreError> {
        ask(|| self.channel_addr(key), || GetEdited { from, to }, |a| self.0.channels.remove_if(key, a)).await
    }

    /// What the durable events of stream message `no` of a channel come to (`None`: no such message).
    ///
    /// # Errors
    /// [`CoreError::Storage`] when the channel or the events cannot be read.
    pub async fn message_stream(&self, key: &ChannelKey, no: &rookery_events::ClientMsgNo) -> Result<Option<rookery_events::MessageStream>, CoreError> {
        ask(|| self.channel_addr(key), || GetMessageStream { client_msg_no: no.clone() }, |a| self.0.channels.remove_if(key, a)).await
    }

    /// Stored events of stream message `no` of a channel with event seq above `after`, at most
    /// `limit`, oldest first. Reads the log's event-seq index directly: O(log n + k).
    ///
    /// # Errors
    /// [`CoreError::Storage`] on read failures or undecodable records.
    pub fn message_events(
        &self,
        key: &ChannelKey,
        no: &rookery_events::ClientMsgNo,
        after: u64,
        limit: usize,
    ) -> Result<Vec<rookery_events::MessageEventRecord>, CoreError> {
        let stream = StreamId::MessageEvents(key.clone(), no.clone());
        let records = self.0.log.read_seq_range(&stream.key(), after.saturating_add(1), u64::MAX, limit, false).map_err(crate::recovery::storage)?;
        records
            .into_iter()
            .map(|(_, r)| match EnvelopeBody::decode(&r.body) {
                Ok(EnvelopeBody { event: Event::Channel(ChannelEvent::MessageEvent(e)), .. }) => Ok(*e),
                Ok(_) => Err(CoreError::Storage(format!("event seq index points at a non-event record {}", r.position))),
                Err(e) => Err(CoreError::Storage(format!("record {}: {e}", r.position))),
            })
            .collect()
    }

    /// The committed state of a channel.
    ///
    /// # Errors
    /// [`CoreError::Storage`] when the channel cannot be loaded.
    pub async fn channel_state(&self, key: &ChannelKey) -> Result<ChannelState, CoreError> {
        ask(|| self.channel_addr(key), || GetChannel, |a| self.0.channels.remove_if(key, a)).await
    }

    /// Who receives a message of `key` now: both parties of a person channel, otherwise its
    /// subscribers (the list a send to it would be answered with).
    ///
    /// # Errors
    /// [`CoreError::Storage`] when the channel cannot be loaded.
    pub async fn recipients(&self, key: &ChannelKey) -> Result<Arc<[Uid]>, CoreError> {
        ask(|| self.channel_addr(key), || GetRecipients, |a| self.0.channels.remove_if(key, a)).await
    }

    /// Records what `uid`'s own person channel now says about the user's bans (its actor calls this).
    pub(crate) fn publish_send_ban(&self, uid: &Uid, banned: bool) {
        // Mostly unchanged: a shared lock to see that, so senders reading the map are not held up.
        if self.0.send_bans.read().expect("send bans lock").get(uid) == Some(&banned) {
            return;
        }
        self.0.send_bans.write().expect("send bans lock").insert(uid.clone(), banned);
    }

    /// Forgets `uid`'s bans: its own person channel's actor is stopping.
    pub(crate) fn forget_send_ban(&self, uid: &Uid) {
        self.0.send_bans.write().expect("send bans lock").remove(uid);
    }

    /// What `uid`'s own person channel says about a send by `sender`.
    async fn person_policy(&self, uid: &Uid, sender: &Uid) -> Result<PersonPolicy, CoreError> {
        let key = ChannelKey::new(uid.0.clone(), ChannelType::PERSON);
        ask(|| self.channel_addr(&key), || GetPersonPolicy { sender: sender.clone() }, |a| self.0.channels.remove_if(&key, a)).await
    }

    /// Sends a message: gathers the sender's standing (system account, own send ban) and, for person
    /// channels, the receiver's policy, then lets the channel decide. `msg.message_id` is assigned by
    /// the channel actor.
    ///
    /// # Errors
    /// As for [`Core::channel`].
    pub async fn send(&self, key: &ChannelKey, mut msg: SendMessage, origin: Origin) -> Result<SentMessage, CoreError> {
        let system = self.system_view();
        msg.sender.is_system = system.is_system(&msg.from_uid);
        if !msg.sender.is_system {
            // Most senders' own channel is live (it was asked last time and publishes its flags); a
            // cross-thread question to it only when it is not.
            let known = self.0.send_bans.read().expect("send bans lock").get(&msg.from_uid).copied();
            msg.sender.send_banned = match known {
                Some(banned) => banned,
                None => self.person_policy(&msg.from_uid, &msg.from_uid).await?.send_banned,
            };
        }
        if key.ty == ChannelType::PERSON {
            if let Some((a, b)) = rookery_events::person_channel_parties(&key.id) {
                let receiver = if a == msg.from_uid { b } else { a };
                msg.peer.receiver_is_system = system.is_system(&receiver);
                if !msg.sender.is_system && !msg.peer.receiver_is_system && receiver != msg.from_uid {
                    msg.peer.blocked = self.person_policy(&receiver, &msg.from_uid).await?.blocks_sender;
                }
            }
        }
        match self.channel(key, ChannelCommand::Send(Box::new(msg)), origin).await? {
            ChannelReply::Sent(sent) => {
                let counter = if sent.duplicate { &self.0.messages_retried } else { &self.0.messages_accepted };
                counter.fetch_add(1, Ordering::Relaxed);
                Ok(sent)
            }
            ChannelReply::Done { .. } => Err(CoreError::Storage("channel answered a send without a message".into())),
        }
    }

    /// Runs a command on a user and waits until its effect is durable.
    ///
    /// # Errors
    /// As for [`Core::channel`].
    pub async fn user(&self, uid: &Uid, cmd: UserCommand, origin: Origin) -> Result<Option<rookery_events::Position>, CoreError> {
        let msg = || ExecuteUser { cmd: cmd.clone(), origin: origin.clone() };
        ask(|| self.user_addr(uid), msg, |a| self.0.users.remove_if(uid, a)).await
    }

    /// The committed state of a user.
    ///
    /// # Errors
    /// [`CoreError::Storage`] when the user cannot be loaded.
    pub async fn user_state(&self, uid: &Uid) -> Result<UserState, CoreError> {
        ask(|| self.user_addr(uid), || GetUser, |a| self.0.users.remove_if(uid, a)).await
    }

    /// The committed state of a user, without starting its actor: asked of the live actor when there is
    /// one, otherwise read from the user's snapshot and log tail and not kept. For checks that must not
    /// leave per-user state behind for whoever asks, such as a login's token check.
    ///
    /// # Errors
    /// [`CoreError::Storage`] when the user cannot be read.
    pub async fn peek_user_state(&self, uid: &Uid) -> Result<UserState, CoreError> {
        if let Some(addr) = self.0.users.get(uid).filter(|a| a.connected()) {
            match addr.send(GetUser).await {
                Ok(Err(CoreError::Unavailable)) | Err(_) => {}
                Ok(answer) => return answer,
            }
        }
        let (log, stream) = (self.0.log.clone(), StreamId::User(uid.clone()));
        tokio::task::spawn_blocking(move || crate::recovery::recover::<UserState>(&*log, &[stream]).map(|(state, _, _)| state))
            .await
            .map_err(|e| CoreError::Storage(format!("reading a user: {e}")))?
    }

    /// Runs a server-wide command and waits until it is durable.
    ///
    /// # Errors
    /// As for [`Core::channel`].
    pub async fn system(&self, cmd: SystemCommand, origin: Origin) -> Result<Option<rookery_events::Position>, CoreError> {
        let addr = self.system_addr()?;
        addr.send(ExecuteSystem { cmd, origin }).await.map_err(|_| CoreError::Unavailable)?
    }

    /// The retracted messages of channel `key` with seqs in `from..=to`, with who retracted them.
    ///
    /// # Errors
    /// [`CoreError::Storage`] when the channel cannot be loaded.
    pub async fn revoked(&self, key: &ChannelKey, from: u64, to: u64) -> Result<Vec<(rookery_events::MessageSeq, Uid)>, CoreError> {
        ask(|| self.channel_addr(key), || GetRevoked { from, to }, |a| self.0.channels.remove_if(key, a)).await
    }

    /// Where a channel's sequence is, and what `uid` last sent there.
    ///
    /// # Errors
    /// [`CoreError::Storage`] when the channel cannot be loaded.
    pub async fn channel_view(&self, key: &ChannelKey, uid: &Uid) -> Result<ChannelView, CoreError> {
        ask(|| self.channel_addr(key), || GetChannelView { uid: uid.clone() }, |a| self.0.channels.remove_if(key, a)).await
    }

    /// Stored messages of a channel with seq in `from..=to`, at most `limit`: the lowest seqs ascending,
    /// or with `newest_first` the highest seqs descending. `commands` selects the command sequence.
    /// Reads the log directly: everything in it is durable, so this never shows an unacknowledged write.
    ///
    /// # Errors
    /// [`CoreError::Storage`] on read failures or undecodable records.
    pub fn messages(
        &self,
        key: &ChannelKey,
        from: u64,
        to: u64,
        limit: usize,
        newest_first: bool,
        commands: bool,
    ) -> Result<Vec<rookery_events::Message>, CoreError> {
        Ok(self.messages_at(key, from, to, limit, newest_first, commands)?.into_iter().map(|(_, m)| m).collect())
    }

    /// As [`Core::messages`], with each message's log position.
    ///
    /// # Errors
    /// As for [`Core::messages`].
    pub fn messages_at(
        &self,
        key: &ChannelKey,
        from: u64,
        to: u64,
        limit: usize,
        newest_first: bool,
        commands: bool,
    ) -> Result<Vec<(rookery_events::Position, rookery_events::Message)>, CoreError> {
        let stream = if commands { StreamId::ChannelCommands(key.clone()) } else { StreamId::Channel(key.clone()) };
        let records = self.0.log.read_seq_range(&stream.key(), from, to, limit, newest_first).map_err(crate::recovery::storage)?;
        records
            .into_iter()
            .map(|(_, r)| match EnvelopeBody::decode(&r.body) {
                Ok(EnvelopeBody { event: Event::Channel(ChannelEvent::MessageAppended(m)), .. }) => Ok((r.position, *m)),
                Ok(_) => Err(CoreError::Storage(format!("seq index points at a non-message record {}", r.position))),
                Err(e) => Err(CoreError::Storage(format!("record {}: {e}", r.position))),
            })
            .collect()
    }

    pub(crate) fn now(&self) -> Timestamp {
        self.0.clock.now()
    }
}

/// Sends to the actor `addr()` finds; if that actor is gone or retiring, forgets it and tries a fresh one.
pub(crate) async fn ask<A, M, R>(addr: impl Fn() -> Addr<A>, msg: impl Fn() -> M, forget: impl Fn(&Addr<A>)) -> Result<R, CoreError>
where
    A: Actor<Context = actix::Context<A>> + actix::Handler<M>,
    M: Message<Result = Result<R, CoreError>> + Send + 'static,
    R: Send + 'static,
{
    const ATTEMPTS: usize = 3;
    for _ in 0..ATTEMPTS {
        let a = addr();
        match a.send(msg()).await {
            Ok(Err(CoreError::Unavailable)) | Err(_) => forget(&a),
            Ok(result) => return result,
        }
    }
    Err(CoreError::Unavailable)
}

/// The newest `recorded_at` in the log's last records, so message ids never go backwards after a
/// restart on a machine whose clock went back.
fn newest_timestamp(log: &dyn EventLog) -> Timestamp {
    let head = log.head().0;
    let from = rookery_events::Position(head.0.saturating_sub(16).max(1));
    log.read_range(from, 16)
        .unwrap_or_default()
        .iter()
        .filter_map(|r| rookery_events::EnvelopeBody::decode(&r.body).ok())
        .map(|b| b.meta.recorded_at)
        .max()
        .unwrap_or_default()
}
