//! Sending a message, the one path every transport takes: validation, the idempotency key, the
//! permission checks and the append (both in the channel's actor), then live fan-out.

use std::collections::BTreeSet;
use std::sync::Arc;

use rookery_actors::Origin;
use rookery_events::{
    ChannelCommand, ChannelKey, ChannelType, ClientMsgNo, MessageHeader, MessageId, MessageSeq, PeerPolicy, SendMessage, SenderStanding, StreamNo, Uid,
    SYSTEM_UID,
};

use super::{validate, Error, Field, UseCases};
use crate::presence::{Delivery, Outbound};

/// Most recipients of one batch send.
pub const MAX_BATCH_RECIPIENTS: usize = 10_000;

/// Sends of one batch in flight at once, so they share commit groups without flooding the actors.
const BATCH_PARALLELISM: usize = 64;

/// Where a message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A channel: a person channel named by the peer's uid (or its internal id), any other by its id.
    Channel {
        /// The id as the sender names it.
        id: String,
        /// The channel type code; `None` or 0 is refused.
        ty: Option<u8>,
    },
    /// A command message to exactly these users (WuKongIM's `subscribers` with `sync_once`). It goes
    /// through a temporary channel whose subscribers are these users, named by a hash of the set,
    /// so the same set reuses one channel and its command sequence.
    Users(Vec<String>),
}

/// A message to send, as every transport hands it over.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The sender; `None` or empty is the system account.
    pub from: Option<String>,
    /// Where it goes.
    pub target: Target,
    /// The sender's message number (the idempotency key with the sender); made when absent.
    pub client_msg_no: Option<String>,
    /// Header flags.
    pub header: MessageHeader,
    /// The setting byte.
    pub setting: u8,
    /// Expiry in seconds (0: never).
    pub expire: u32,
    /// Topic, if any.
    pub topic: Option<String>,
    /// Stream number, if any.
    pub stream_no: Option<String>,
    /// The plaintext payload.
    pub payload: Vec<u8>,
}

impl Outgoing {
    /// An ordinary stored message with a red dot from `from` into channel `key`: what the business API
    /// families send. `client_msg_no` makes a retried request the same message.
    pub fn business(from: &Uid, key: &ChannelKey, client_msg_no: Option<String>, payload: Vec<u8>) -> Outgoing {
        Outgoing {
            from: Some(from.0.clone()),
            target: Target::Channel { id: key.id.0.clone(), ty: Some(key.ty.0) },
            client_msg_no,
            header: MessageHeader { no_persist: false, red_dot: true, sync_once: false },
            setting: 0,
            expire: 0,
            topic: None,
            stream_no: None,
            payload,
        }
    }
}

/// A sent (or, for a retry, already sent) message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// Its id.
    pub message_id: MessageId,
    /// Its seq in the channel (0 for `no_persist`).
    pub message_seq: MessageSeq,
    /// The sender's message number (made by the server when none was given).
    pub client_msg_no: String,
    /// A retry answered from its original, which was delivered then.
    pub duplicate: bool,
    /// The new message's log position and time (`None` for a retry and for `no_persist`).
    pub stored_at: Option<(u64, rookery_events::Timestamp)>,
}

/// One recipient of a batch send that did not get its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchFailure {
    /// The recipient.
    pub uid: String,
    /// Why, for humans.
    pub reason: String,
}

impl UseCases {
    /// Sends one message, answers once it is durable (or, for `no_persist`, once it may be sent) and
    /// then delivers it to the online sessions of its recipients, except `from_session` (the
    /// session it came from). A retry (same sender and client_msg_no, while its original is in the
    /// channel's idempotency window) is answered with the original and delivered no second time.
    ///
    /// # Errors
    /// [`Error::Invalid`] / [`Error::TooLarge`] for malformed input, [`Error::Core`] when the channel
    /// refuses (not a subscriber, banned, ...) or the log fails. Nothing is stored or delivered then.
    pub async fn send(&self, out: Outgoing, origin: Origin, from_session: Option<u64>) -> Result<Sent, Error> {
        let from = match out.from.as_deref() {
            None | Some("") => Uid::from(SYSTEM_UID),
            Some(uid) => {
                validate::uid("from_uid", uid)?;
                Uid::from(uid)
            }
        };
        validate::payload(&out.payload, self.max_payload)?;
        let client_msg_no = validate::client_msg_no(out.client_msg_no)?;
        let topic = validate::topic(out.topic)?;
        let key = match &out.target {
            Target::Channel { id, ty } => validate::channel(&from, id, validate::channel_type(*ty)?)?,
            Target::Users(uids) => {
                if !out.header.sync_once {
                    return Err(Error::invalid(
                        Field::Header,
                        "a message to a list of subscribers must be a command: set header.sync_once to 1, or send to a channel",
                    ));
                }
                self.users_channel(uids.clone(), &origin).await?
            }
        };
        let msg = SendMessage {
            message_id: MessageId(0),
            client_msg_no: ClientMsgNo(client_msg_no.clone()),
            from_uid: from.clone(),
            header: out.header,
            setting: out.setting,
            stream_no: out.stream_no.filter(|s| !s.is_empty()).map(StreamNo),
            expire: out.expire,
            topic,
            payload: out.payload,
            sender: SenderStanding { via_client: from_session.is_some(), ..SenderStanding::default() },
            peer: PeerPolicy::default(),
        };
        // What live delivery needs once the message is in: the send itself moves into the actor.
        let mut delivery = Delivery {
            key: key.clone(),
            from,
            header: msg.header,
            setting: msg.setting,
            expire: msg.expire,
            client_msg_no: client_msg_no.clone(),
            topic: msg.topic.clone(),
            message_id: MessageId(0),
            message_seq: 0,
            timestamp: 0,
            payload: msg.payload.clone(),
        };
        let sent = self.core.send(&key, msg, origin).await?;
        if !sent.duplicate {
            delivery.message_id = sent.message_id;
            delivery.message_seq = sent.message_seq.0;
            delivery.timestamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as u32).unwrap_or_default();
            self.fanout.submit(Outbound::Message(Arc::new(delivery)), sent.recipients.clone(), from_session).await;
        }
        Ok(Sent {
            message_id: sent.message_id,
            message_seq: sent.message_seq,
            client_msg_no,
            duplicate: sent.duplicate,
            stored_at: sent.stored_at.map(|(p, t)| (p.0, t)),
        })
    }

    /// Sends one person message from `from` to each of `recipients` (each its own message, made its
    /// own client_msg_no), each stored and delivered like any other send. Every recipient is checked
    /// before anything is sent, so a malformed one changes nothing.
    ///
    /// # Errors
    /// [`Error::Invalid`] / [`Error::TooLarge`] for malformed input. A recipient whose send is refused
    /// is listed in the answer instead.
    pub async fn send_batch(
        &self,
        from: &str,
        recipients: Vec<String>,
        header: MessageHeader,
        payload: Vec<u8>,
        origin: Origin,
    ) -> Result<Vec<BatchFailure>, Error> {
        validate::uid("from_uid", from)?;
        validate::payload(&payload, self.max_payload)?;
        if recipients.len() > MAX_BATCH_RECIPIENTS {
            return Err(Error::invalid(Field::Recipients, format!("subscribers may name at most {MAX_BATCH_RECIPIENTS} uids")));
        }
        let recipients = validate::uids("subscribers", recipients, false)?;
        let mut seen = BTreeSet::new();
        let recipients: Vec<Uid> = recipients.into_iter().filter(|u| seen.insert(u.clone())).collect();
        let mut failures = Vec::new();
        for chunk in recipients.chunks(BATCH_PARALLELISM) {
            let handles: Vec<_> = chunk
                .iter()
                .map(|uid| {
                    let out = Outgoing {
                        from: Some(from.to_owned()),
                        target: Target::Channel { id: uid.0.clone(), ty: Some(ChannelType::PERSON.0) },
                        client_msg_no: None,
                        header,
                        setting: 0,
                        expire: 0,
                        topic: None,
                        stream_no: None,
                        payload: payload.clone(),
                    };
                    let (this, origin) = (self.clone(), origin.clone());
                    tokio::spawn(async move { this.send(out, origin, None).await })
                })
                .collect();
            for (uid, handle) in chunk.iter().zip(handles) {
                let failure = match handle.await {
                    Ok(Ok(_)) => None,
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(e) => {
                        tracing::error!(error = %e, "batch send task failed");
                        Some("internal error".to_owned())
                    }
                };
                if let Some(reason) = failure {
                    failures.push(BatchFailure { uid: uid.0.clone(), reason });
                }
            }
        }
        Ok(failures)
    }

    /// The temporary channel whose subscribers are exactly `uids`, made so if it is not.
    async fn users_channel(&self, uids: Vec<String>, origin: &Origin) -> Result<ChannelKey, Error> {
        let uids: BTreeSet<Uid> = validate::uids("subscribers", uids, false)?.into_iter().collect();
        let mut digest_input = Vec::new();
        for uid in &uids {
            digest_input.extend_from_slice(uid.0.as_bytes());
            digest_input.push(0);
        }
        let digest = rookery_events::sha256(&digest_input);
        let key = ChannelKey::new(format!("cmd{}", &digest.to_hex()[..32]), ChannelType::TEMP);
        self.core.channel(&key, ChannelCommand::AddSubscribers { uids: uids.into_iter().collect(), reset: true }, origin.clone()).await?;
        Ok(key)
    }
}
