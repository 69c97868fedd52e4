//! Messages: `send` (to a friend or a group, quoting one of the conversation's messages), `get`
//! (history pages below a `mid` cursor), `revoke` (the sender, at any time), `delete` (`ty` 1 for the
//! caller only, `ty` 2 for everyone, by the sender), `unreadcount` and `updateLastReadTime`.
//!
//! A message's `mid` is its seq in its conversation. The stored payload is JSON a WuKongIM client
//! renders as text: `{"type": 1, "content": <content>, "family": "popim", "quote_seq"?}`.

use rookery_events::{ChannelKey, Message, MessageSeq, Timestamp};
use serde_json::{json, Value};

use super::friends::person;
use super::groups;
use super::params::Kind;
use super::{done, ok, Ctx, Params, PopError};
use crate::usecase::{AccountView, Outgoing};

/// Default and largest page of `get`.
const PAGE: (usize, usize) = (20, 100);

/// Sets `me`'s marks on the conversation `key`: read up to `read_secs`, an `unread` count, `pinned`,
/// `hide` it (true) or keep it listed (false: nothing to do).
pub(super) async fn set_marks(
    c: &Ctx,
    me: &AccountView,
    key: &ChannelKey,
    read_secs: Option<u64>,
    unread: Option<u64>,
    pinned: Option<bool>,
    hide: Option<bool>,
) -> Result<(), PopError> {
    let origin = c.acting(&me.uid);
    let u = &c.state.usecases;
    if let Some(t) = read_secs {
        u.read_until(&me.uid, key, Some(Timestamp(t.saturating_mul(1000))), origin.clone()).await.map_err(PopError::from_usecase)?;
    }
    if let Some(n) = unread {
        let channel_id = key.id.0.clone();
        let peer_id = rookery_events::person_channel_parties(&key.id).map(|(a, b)| if a == me.uid { b.0 } else { a.0 }).unwrap_or(channel_id);
        u.mark_conversation(me.uid.as_str(), &peer_id, Some(key.ty.0), crate::usecase::ConversationMark::Unread(n), origin.clone())
            .await
            .map_err(PopError::from_usecase)?;
    }
    if pinned.is_some() {
        u.set_conversation(&me.uid, key, pinned, None, origin.clone()).await.map_err(PopError::from_usecase)?;
    }
    if hide == Some(true) {
        u.hide_conversation(&me.uid, key, origin).await.map_err(PopError::from_usecase)?;
    }
    Ok(())
}

/// The conversation `type` and `id` (or `to`) name for `me`: a friend's person channel (any user of
/// the app: strangers may chat unless `stranger_chat` is off), or a group `me` is a member of.
async fn conversation(c: &Ctx, me: &AccountView, p: &Params, id_field: &str) -> Result<(ChannelKey, Kind), PopError> {
    let kind = p.kind()?;
    let id = p.id(id_field)?;
    match kind {
        Kind::Friend => {
            let other = c.account(id).await?;
            if other.n == me.n {
                return Err(PopError::param("a user has no conversation with itself"));
            }
            Ok((person(me, &other), kind))
        }
        Kind::Group => {
            let mut q = Params::default();
            Params::from_form(format!("gid={id}").as_bytes(), &mut q)?;
            let g = groups::find(c, &q).await?;
            if !g.members.contains(&me.uid) {
                return Err(PopError::forbidden(format!("user {} is not a member of group {id}", me.n)));
            }
            Ok((g.key, kind))
        }
    }
}

/// The text a stored message shows: the `content` of a JSON payload, else the payload as text.
pub(super) fn content_of(m: &Message) -> (String, Option<u64>) {
    let bytes = m.payload.bytes();
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(o)) => (o.get("content").and_then(Value::as_str).unwrap_or_default().to_owned(), o.get("quote_seq").and_then(Value::as_u64)),
        _ => (String::from_utf8_lossy(bytes).into_owned(), None),
    }
}

/// `message/send`: `to`, `type`, `content`, optional `quote_mid` (a message of the same conversation).
pub(super) async fn send(c: Ctx, p: Params) -> Result<warp::reply::Response, PopError> {
    let me = c.login(&p).await?;
    let (key, kind) = conversation(&c, &me, &p, "to").await?;
    c.require(if kind == Kind::Group { "group_chat" } else { "private_chat" })?;
    if kind == Kind::Friend && !c.switched_on("stranger_chat") {
        let peer = c.number(&rookery_events::person_channel_parties(&key.id).map(|(a, b)| if a == me.uid { b } else { a }).unwrap_or_default());
        let friends = super::friends::friend_entries(&c, &me).await?;
        if !friends.iter().any(|(f, _)| Some(f.n) == peer) {
            return Err(PopError::forbidden("stranger_chat is switched off: only friends may chat"));
        }
    }
    let content = p.text("content", true, usize::MAX)?.unwrap_or_default();
    let content = c.state.usecases.filtered_text(&c.app.tag, content).await.map_err(PopError::from_usecase)?;
    let mut payload = json!({"type": 1, "content": content, "family": "popim"});
    if let Some(q) = p.opt_id("quote_mid")? {
        let quoted = c.state.usecases.message_by_seq(&key, MessageSeq(q)).await.map_err(PopError::from_usecase)?;
        if quoted.is_none() {
            return Err(PopError::not_found(format!("message {q} of this conversation")));
        }
        payload["quote_seq"] = json!(q);
    }
    let out = Outgoing::business(&me.uid, &key, None, payload.to_string().into_bytes());
    c.state.usecases.send(out, c.acting(&me.uid), None).await.map_err(PopError::from_usecase)?;
    done()
}

/// `message/get`: the `limit` newest messages below `mid` (all when absent), oldest first, without
/// those deleted for everyone or hidden from the caller; a revoked one has no content and `revoked: 1`.
pub(super) async fn get(c: Ctx, p: Params) -> Result<warp::reply::Response, PopError> {
    let me = c.account(p.id("login_uid")?).await?;
    let (key, _) = conversation(&c, &me, &p, "id").await?;
    let limit = p.int("limit", false, 1..=PAGE.1 as i64)?.map_or(PAGE.0, |l| l as usize);
    let below = p.opt_id("mid")?.unwrap_or(u64::MAX);
    if below <= 1 {
        return Ok(ok(json!([])));
    }
    let u = &c.state.usecases;
    let page = u.channel_page(&key, 1, below - 1, limit, true).await.map_err(PopError::from_usecase)?;
    let channel = c.state.core.channel_state(&key).await.map_err(|e| PopError::from_usecase(e.into()))?;
    let user = c.state.core.user_state(&me.uid).await.map_err(|e| PopError::from_usecase(e.into()))?;
    let hidden = user.conversations.get(&key).map(|m| m.hidden.clone()).unwrap_or_default();
    let shown: Vec<&Message> =
        page.messages.iter().filter(|m| !channel.deleted_messages.contains_key(&m.message_seq) && !hidden.contains(&m.message_seq)).collect();
    let senders = c.accounts(shown.iter().map(|m| c.number(&m.from_uid).unwrap_or(0)).collect()).await?;
    let mut out = Vec::with_capacity(shown.len());
    for (m, sender) in shown.iter().zip(senders) {
        let revoked = page.revoked.contains_key(&m.message_seq.0);
        let (content, quote) = if revoked { (String::new(), None) } else { content_of(m) };
        let mut item = json!({
            "mid": m.message_seq.0, "from": c.number(&m.from_uid).map_or_else(|| m.from_uid.0.clone(), |n| n.to_string()),
            "avatar": sender.and_then(|a| a.profile.avatar).unwrap_or_default(), "timestamp": m.timestamp.as_secs(),
            "content": content, "sub_type": "message",
        });
        if revoked {
            item["revoked"] = json!(1);
        }
        if let Some(q) = quote {
            let quoted = u.message_by_seq(&key, MessageSeq(q)).await.map_err(PopError::from_usecase)?;
            let gone = channel.revoked.contains_key(&MessageSeq(q)) || channel.deleted_messages.contains_key(&MessageSeq(q));
            item["quote_mid"] = json!(q);
            item["quote_content"] = json!(quoted.filter(|_| !gone).map(|m| content_of(&m).0).unwrap_or_default());
        }
        out.push(item);
    }
    Ok(ok(Value::Array(out)))
}

/// The message `mid` of the conversation `id`/`type` names for `me`.
async fn message(c: &Ctx, me: &AccountView, p: &Params) -> Result<Message, PopError> {
    let (key, _) = conversation(c, me, p, "id").await?;
    let mid = p.id("mid")?;
    c.state.usecases.message_by_seq(&key, MessageSeq(mid)).await.map_err(PopError::from_usecase)?.ok_or_else(|| PopError::not_found(format!("message {mid}")))
}

/// `message/revoke`: the sender takes its message back.
pub(super) async fn revoke(c: Ctx, p: Params) -> Result<warp::reply::Response, PopError> {
    let me = c.account(p.id("login_uid")?).await?;
    let m = message(&c, &me, &p).await?;
    c.state.usecases.retract(&m, &me.uid, None, c.acting(&me.uid)).await.map_err(PopError::from_usecase)?;
    done()
}

/// `message/delete`: `ty` 1 hides it from the caller, `ty` 2 (its sender) deletes it for everyone.
pub(super) async fn delete(c: Ctx, p: Params) -> Result<warp::reply::Response, PopError> {
    let me = c.account(p.id("login_uid")?).await?;
    let ty = p.int("ty", true, 1..=2)?;
    let m = message(&c, &me, &p).await?;
    let u = &c.state.usecases;
    if ty == Some(1) {
        u.hide_messages(&me.uid, &m.channel, vec![m.message_seq], c.acting(&me.uid)).await.map_err(PopError::from_usecase)?;
    } else {
        u.delete_for_all(&m, &me.uid, c.acting(&me.uid)).await.map_err(PopError::from_usecase)?;
    }
    done()
}

/// `message/unreadcount`: the caller's unread messages in the conversation (its own never count).
pub(super) async fn unread_count(c: Ctx, p: Params) -> Result<warp::reply::Response, PopError> {
    let me = c.account(p.id("login_uid")?).await?;
    let (key, _) = conversation(&c, &me, &p, "id").await?;
    let n = c.state.usecases.unread_in(&me.uid, &key).await.map_err(PopError::from_usecase)?;
    Ok(ok(json!(n)))
}

/// `message/updateLastReadTime`: everything in the conversation is read as of now.
pub(super) async fn read(c: Ctx, p: Params) -> Result<warp::reply::Response, PopError> {
    let me = c.account(p.id("login_uid")?).await?;
    let (key, _) = conversation(&c, &me, &p, "id").await?;
    c.state.usecases.read_until(&me.uid, &key, None, c.acting(&me.uid)).await.map_err(PopError::from_usecase)?;
    done()
}
