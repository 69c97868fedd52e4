//! Friends: applications (`apply`, `agree`, `refuse` by the addressee only, `applylist`,
//! `applycount`, `applydetail`), direct friendship (`add`, `delete`), `remark`, the address book
//! grouped by initials (`getlist`), strangers one chats with (`get_temp_list`), and the person
//! conversation's marks (`update`: `last_read_time`, `unread_count`, `top`).

use std::collections::BTreeMap;

use rookery_events::{person_channel_id, person_channel_parties, ChannelKey, ChannelType, FriendRequest};
use serde_json::{json, Map, Value};

use super::params::MAX_TEXT;
use super::{done, ok, Ctx, Params, PopError};
use crate::usecase::AccountView;

/// The initial a name is filed under: its first letter upper-cased, `#` for anything else.
pub(super) fn initial(name: &str) -> String {
    match name.chars().next() {
        Some(ch) if ch.is_ascii_alphabetic() => ch.to_ascii_uppercase().to_string(),
        _ => "#".to_owned(),
    }
}

/// The person channel of two users.
pub(super) fn person(a: &AccountView, b: &AccountView) -> ChannelKey {
    ChannelKey::new(person_channel_id(&a.uid, &b.uid), ChannelType::PERSON)
}

/// Entries `{uid, avatar, state, name, initials, is_member}` grouped by initial, each keyed by uid.
pub(super) fn grouped(c: &Ctx, entries: Vec<(AccountView, String)>) -> Value {
    let mut out: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for (a, note) in entries {
        let name = if note.is_empty() { a.profile.nickname.clone().unwrap_or_else(|| a.username.clone()) } else { note };
        let init = initial(&name);
        let entry = json!({
            "uid": a.n, "avatar": a.profile.avatar.clone().unwrap_or_default(), "state": if c.online(&a.uid) { "online" } else { "offline" },
            "name": name, "initials": init, "is_member": 0,
        });
        out.entry(init).or_default().insert(a.n.to_string(), entry);
    }
    json!(out)
}

/// The friends of `me` with its notes.
pub(super) async fn friend_entries(c: &Ctx, me: &AccountView) -> Result<Vec<(AccountView, String)>, PopError> {
    let friends = c.state.usecases.friends(&c.app.tag, &me.username).await.map_err(PopError::from_usecase)?;
    Ok(friends.into_iter().map(|(a, note)| (a, note.note_name)).collect())
}

/// `friend/getlist`: the address book.
pub(super) async fn list(c: Ctx, p: Params) -> Result<warp::reply::Response, PopError> {
    let me = c.account(p.id("login_uid")?).await?;
    let entries = friend_entries(&c, &me).await?;
    Ok(ok(grouped(&c, entries)))
}

/// `friend/get_temp_list`: users of this app `login_uid` has a conversation with but is not friends with.
pub(super) async fn temp_list(c: Ctx, p: Params) -> Result<warp::reply::Response, PopError> {
    let me = c.account(p.id("login_uid")?).await?;
    let friends: Vec<u64> = friend_entries(&c, &me).await?.iter().map(|(a, _)| a.n).collect();
    let state = c.state.core.user_state(&me.uid).await.map_err(|e| PopError::from_usecase(e.into()))?;
    let peers: Vec<u64> = state
        .conversations
        .iter()
        .filter(|(k, m)| k.ty == ChannelType::PERSON && m.is_member())
        .filter_map(|(k, _)| person_channel_parties(&k.id))
        .filter_map(|(a, b)| c.number(if a == me.uid { &b } else { &a }))
        .filter(|n| *n != me.n && !friends.contains(n))
        .collect();
    let found = c.accounts(peers).await?;
    Ok(ok(grouped(&c, found.into_iter().flatten().map(|a| (a, String::new())).collect())))
}

/// The other user of a friend request: `friend_uid`, live, not `me`.
async fn friend(c: &Ctx, p: &Params) -> Result<AccountView, PopError> {
    c.account(p.id("friend_uid")?).await
}

/// `friend/apply`: `postscript` optional.
pub(super) async fn apply(c: Ctx, p: Params) -> Result<warp::reply::Response, PopError> {
    c.require("add_friend")?;
    let me = c.login(&p).await?;
    let to = friend(&c, &p).await?;
    let postscript = p.text("postscript", false, MAX_TEXT)?.unwrap_or_default();
    c.state.usecases.request_friend(&c.app.tag, me.n, to.n, postscript, c.acting(&me.uid)).await.map_err(PopError::from_usecase)?;
    done()
}

/// `friend/agree`, `friend/refuse`: by the addressee of request `nid` only.
pub(super) async fn answer(c: Ctx, p: Params, agree: bool) -> Result<warp::reply::Response, PopError> {
    let me = c.login(&p).await?;
    let nid = p.id("nid")?;
    c.state.usecases.answer_friend_request(&c.app.tag, me.n, nid, agree, c.acting(&me.uid)).await.map_err(PopError::from_usecase)?;
    done()
}

/// `friend/add`: friends at once (friends already: nothing changes).
pub(super) async fn add(c: Ctx, p: Params) -> Result<warp::reply::Response, PopError> {
    let me = c.login(&p).await?;
    let other = friend(&c, &p).await?;
    if other.n == me.n {
        return Err(PopError::param("a user cannot befriend itself"));
    }
    let already = friend_entries(&c, &me).await?.iter().any(|(a, _)| a.n == other.n);
    if !already {
        c.state.usecases.add_friends(&c.app.tag, &me.username, vec![other.username], c.acting(&me.uid)).await.map_err(PopError::from_usecase)?;
    }
    done()
}

/// `friend/delete`: friends no more, both ways.
pub(super) async fn delete(c: Ctx, p: Params) -> Result<warp::reply::Response, PopError> {
    let me = c.account(p.id("login_uid")?).await?;
    let other = friend(&c, &p).await?;
    c.state.usecases.remove_friends(&c.app.tag, &me.username, vec![other.username], c.acting(&me.uid)).await.map_err(PopError::from_usecase)?;
    done()
}

/// `friend/remark`: `login_uid`'s name for a friend.
pub(super) async fn remark(c: Ctx, p: Params) -> Result<warp::reply::Response, PopError> {
    let me = c.account(p.id("login_uid")?).await?;
    let other = friend(&c, &p).await?;
    let remark = p.text("remark", false, MAX_TEXT)?.ok_or_else(|| PopError::param("remark is required"))?;
    let notes = vec![(other.username, Some(remark), None)];
    c.state.usecases.set_friend_notes(&c.app.tag, &me.username, notes, c.acting(&me.uid)).await.map_err(|e| match e {
        crate::usecase::Error::NotFound(_) => PopError::not_found(format!("a friendship of {} and {}", me.n, other.n)),
        e => PopError::from_usecase(e),
    })?;
    done()
}

fn operation(r: &FriendRequest) -> &'static str {
    match r.answer {
        None => "not_operated",
        Some(true) => "agree",
        Some(false) => "refuse",
    }
}

fn request_json(nid: u64, r: &FriendRequest, from: Option<&AccountView>) -> Value {
    json!({
        "nid": nid, "from": r.from, "to": r.to, "type": "add_friend",
        "data": json!({"postscript": r.postscript}).to_string(),
        "operation": operation(r), "timestamp": r.at.as_secs(),
        "nickname": from.and_then(|a| a.profile.nickname.clone()).unwrap_or_default(),
        "avatar": from.and_then(|a| a.profile.avatar.clone()).unwrap_or_default(),
    })
}

/// `friend/applylist`: requests to `login_uid`, newest first, with their askers.
pub(super) async fn apply_list(c: Ctx, p: Params) -> Result<warp::reply::Response, PopError> {
    let me = c.account(p.id("login_uid")?).await?;
    let requests = c.state.usecases.friend_requests_to(&c.app.tag, me.n).await.map_err(PopError::from_usecase)?;
    let askers = c.accounts(requests.iter().map(|(_, r)| r.from).collect()).await?;
    let list: Vec<Value> = requests.iter().zip(&askers).map(|((nid, r), a)| request_json(*nid, r, a.as_ref())).collect();
    Ok(ok(Value::Array(list)))
}

/// `friend/applycount`: requests to `login_uid` not answered yet.
pub(super) async fn apply_count(c: Ctx, p: Params) -> Result<warp::reply::Response, PopError> {
    let me = c.account(p.id("login_uid")?).await?;
    let requests = c.state.usecases.friend_requests_to(&c.app.tag, me.n).await.map_err(PopError::from_usecase)?;
    Ok(ok(json!(requests.iter().filter(|(_, r)| r.answer.is_none()).count())))
}

/// `friend/applydetail`: one request to `login_uid`, with its asker's username.
pub(super) async fn apply_detail(c: Ctx, p: Params) -> Result<warp::reply::Response, PopError> {
    let me = c.account(p.id("login_uid")?).await?;
    let nid = p.id("nid")?;
    let requests = c.state.usecases.friend_requests_to(&c.app.tag, me.n).await.map_err(PopError::from_usecase)?;
    let (_, r) = requests.into_iter().find(|(n, _)| *n == nid).ok_or_else(|| PopError::not_found(format!("friend request {nid} to {}", me.n)))?;
    let asker = c.accounts(vec![r.from]).await?.pop().flatten();
    let mut data = request_json(nid, &r, asker.as_ref());
    data["username"] = json!(asker.map(|a| a.username).unwrap_or_default());
    Ok(ok(data))
}

/// `friend/update`: the conversation with `friend_uid` as `login_uid` sees it: read up to
/// `last_read_time` (seconds), `unread_count`, `top` (0 or 1). At least one of them.
pub(super) async fn update(c: Ctx, p: Params) -> Result<warp::reply::Response, PopError> {
    let me = c.account(p.id("login_uid")?).await?;
    let other = friend(&c, &p).await?;
    let read = p.int("last_read_time", false, 0..=i64::MAX)?;
    let unread = p.int("unread_count", false, 0..=i64::MAX)?;
    let top = p.int("top", false, 0..=1)?;
    if read.is_none() && unread.is_none() && top.is_none() {
        return Err(PopError::param("give last_read_time, unread_count or top"));
    }
    let key = person(&me, &other);
    super::messages::set_marks(&c, &me, &key, read.map(|t| t as u64), unread.map(|u| u as u64), top.map(|t| t == 1), None).await?;
    done()
}
