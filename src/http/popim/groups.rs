//! Groups, with the caller's role decided by the group itself (`GroupCommand::As`): `create` (public,
//! named after its first members), `delete` and `memberdel` (the owner), `memberadd` (any member),
//! `join` (anyone, a public group), `leave` (an owner hands the group on first: to its lowest-numbered
//! manager, else its lowest-numbered member), `manager`/`ismanager`, `forbiddenuser` (until a time,
//! 0 lifts) and `forbiddenall` (the owner or a manager), `members` (paged by user number),
//! `detail`, and the caller's own `remark` and `memberupdate` (hide the conversation, read marks).

use rookery_events::{GroupCommand, Timestamp, Uid};
use serde_json::{json, Map, Value};

use super::params::MAX_TEXT;
use super::{done, ok, Ctx, Params, PopError};
use crate::usecase::{AccountView, Circle, GroupSpec, GroupView};

/// Most members of a group.
pub const MAX_MEMBERS: u32 = 2000;
/// Members `detail` shows at most.
const DETAIL_MEMBERS: usize = 15;
/// Default and largest page of `members`.
const MEMBERS_PAGE: (usize, usize) = (100, 500);

/// The live group `gid` names.
pub(super) async fn find(c: &Ctx, p: &Params) -> Result<GroupView, PopError> {
    let gid = p.id("gid")?;
    match c.state.usecases.group(&c.app.tag, Circle::Group, gid).await {
        Ok(g) => Ok(g),
        Err(crate::usecase::Error::NotFound(_)) => Err(PopError::not_found(format!("group {gid}"))),
        Err(e) => Err(PopError::from_usecase(e)),
    }
}

/// Runs `cmd` on group `g` as `by`, whose role the group checks.
async fn act(c: &Ctx, g: &GroupView, by: &AccountView, cmd: GroupCommand) -> Result<(), PopError> {
    let cmd = GroupCommand::As { by: by.uid.clone(), cmd: Box::new(cmd) };
    c.state.usecases.change_group(&c.app.tag, Circle::Group, g.n, cmd, c.acting(&by.uid)).await.map_err(PopError::from_usecase)
}

/// Refuses a caller that is not a member of `g`.
fn member_only(g: &GroupView, me: &AccountView) -> Result<(), PopError> {
    if g.members.contains(&me.uid) {
        Ok(())
    } else {
        Err(PopError::forbidden(format!("user {} is not a member of group {}", me.n, g.n)))
    }
}

fn shown_name(a: &AccountView) -> String {
    a.profile.nickname.clone().unwrap_or_else(|| a.username.clone())
}

/// The accounts of `uids` (this app's users; others and deleted ones are left out).
async fn accounts_of(c: &Ctx, uids: &[Uid]) -> Result<Vec<AccountView>, PopError> {
    let ns: Vec<u64> = uids.iter().filter_map(|u| c.number(u)).collect();
    Ok(c.accounts(ns).await?.into_iter().flatten().collect())
}

/// `group/create`: `login_uid` owns it, `members[]` join it; `data {gid, groupname, avatar}`.
pub(super) async fn create(c: Ctx, p: Params) -> Result<warp::reply::Response, PopError> {
    c.require("create_group")?;
    let me = c.login(&p).await?;
    let others = if p.has("members") { p.ids("members")? } else { Vec::new() };
    let found = c.accounts(others.clone()).await?;
    let mut members = Vec::new();
    for (n, a) in others.iter().zip(found) {
        let a = a.ok_or_else(|| PopError::not_found(format!("user {n}")))?;
        if a.n != me.n {
            members.push(a);
        }
    }
    let names: Vec<String> = std::iter::once(&me).chain(members.iter()).take(3).map(shown_name).collect();
    let name = format!("群聊({})", names.join(","));
    let avatar = me.profile.avatar.clone().unwrap_or_default();
    let spec = GroupSpec {
        owner: me.uid.clone(),
        members: members.iter().map(|a| a.uid.clone()).collect(),
        managers: Vec::new(),
        notice: String::new(),
        name: name.clone(),
        desc: String::new(),
        avatar: avatar.clone(),
        public: true,
        max_members: MAX_MEMBERS,
    };
    let gid = c.state.usecases.create_group(&c.app.tag, Circle::Group, spec, c.acting(&me.uid)).await.map_err(PopError::from_usecase)?;
    Ok(ok(json!({"gid": gid.to_string(), "groupname": name, "avatar": avatar})))
}

/// `group/delete`: the owner deletes the group.
pub(super) async fn delete(c: Ctx, p: Params) -> Result<warp::reply::Response, PopError> {
    let me = c.account(p.id("login_uid")?).await?;
    let g = find(&c, &p).await?;
    act(&c, &g, &me, GroupCommand::Disband).await?;
    done()
}

/// `group/memberadd`: a member adds users (those in the group already are skipped).
pub(super) async fn member_add(c: Ctx, p: Params) -> Result<warp::reply::Response, PopError> {
    let me = c.login(&p).await?;
    let g = find(&c, &p).await?;
    let asked = p.ids("members")?;
    let found = c.accounts(asked.clone()).await?;
    let mut add = Vec::new();
    for (n, a) in asked.iter().zip(found) {
        let a = a.ok_or_else(|| PopError::not_found(format!("user {n}")))?;
        if !g.members.contains(&a.uid) {
            add.push(a.uid);
        }
    }
    member_only(&g, &me)?;
    if !add.is_empty() {
        act(&c, &g, &me, GroupCommand::Members { add, remove: Vec::new() }).await?;
    }
    done()
}

/// `group/join`: the caller joins a public group (a member already: nothing changes).
pub(super) async fn join(c: Ctx, p: Params) -> Result<warp::reply::Response, PopError> {
    let me = c.login(&p).await?;
    let g = find(&c, &p).await?;
    if !g.members.contains(&me.uid) {
        act(&c, &g, &me, GroupCommand::Members { add: vec![me.uid.clone()], remove: Vec::new() }).await?;
    }
    done()
}

/// `group/memberdel`: the owner removes members.
pub(super) async fn member_del(c: Ctx, p: Params) -> Result<warp::reply::Response, PopError> {
    let me = c.account(p.id("login_uid")?).await?;
    let g = find(&c, &p).await?;
    let remove: Vec<Uid> = p.ids("members")?.into_iter().map(|n| c.uid(n)).collect();
    act(&c, &g, &me, GroupCommand::Members { add: Vec::new(), remove }).await?;
    done()
}

/// `group/leave`: the caller leaves; an owner hands the group on first (to the lowest-numbered
/// manager, else member); the last member's leaving deletes the group.
pub(super) async fn leave(c: Ctx, p: Params) -> Result<warp::reply::Response, PopError> {
    let me = c.account(p.id("login_uid")?).await?;
    let g = find(&c, &p).await?;
    member_only(&g, &me)?;
    if g.profile.owner == me.uid {
        let lowest = |it: &mut dyn Iterator<Item = &Uid>| it.filter(|u| **u != me.uid).min_by_key(|u| c.number(u).unwrap_or(u64::MAX)).cloned();
        let heir = lowest(&mut g.profile.managers.iter()).or_else(|| lowest(&mut g.members.iter()));
        if let Some(heir) = heir {
            act(&c, &g, &me, GroupCommand::TransferOwner(heir)).await?;
        }
    }
    let g = find(&c, &p).await?;
    act(&c, &g, &me, GroupCommand::Members { add: Vec::new(), remove: vec![me.uid.clone()] }).await?;
    done()
}

/// `group/members`: members by user number after `index`, at most `limit`, as `login_uid` names them.
pub(super) async fn members(c: Ctx, p: Params) -> Result<warp::reply::Response, PopError> {
    let me = c.account(p.id("login_uid")?).await?;
    let g = find(&c, &p).await?;
    member_only(&g, &me)?;
    let limit = p.int("limit", false, 1..=MEMBERS_PAGE.1 as i64)?.map_or(MEMBERS_PAGE.0, |l| l as usize);
    let after = p.int("index", false, 0..=i64::MAX)?.unwrap_or(0) as u64;
    let mut ns: Vec<u64> = g.members.iter().filter_map(|u| c.number(u)).filter(|n| *n > after).collect();
    ns.sort_unstable();
    ns.truncate(limit);
    let notes = super::friends::friend_entries(&c, &me).await?;
    let mut out = Map::new();
    for a in c.accounts(ns).await?.into_iter().flatten() {
        let note = notes.iter().find(|(f, _)| f.n == a.n).map(|(_, n)| n.clone()).filter(|n| !n.is_empty());
        out.insert(
            a.n.to_string(),
            json!({"uid": a.n, "avatar": a.profile.avatar.clone().unwrap_or_default(), "nickname": shown_name(&a), "name": note.unwrap_or_else(|| shown_name(&a)), "index": a.n}),
        );
    }
    Ok(ok(Value::Object(out)))
}

/// `group/detail`: the group, and (unless `simple=1`) its first 15 members by number.
pub(super) async fn detail(c: Ctx, p: Params) -> Result<warp::reply::Response, PopError> {
    let me = c.account(p.id("login_uid")?).await?;
    let g = find(&c, &p).await?;
    let simple = p.int("simple", false, 0..=1)?.unwrap_or(0) == 1;
    p.int("at", false, 0..=1)?;
    let user = c.state.core.user_state(&me.uid).await.map_err(|e| PopError::from_usecase(e.into()))?;
    let own_remark = user.conversations.get(&g.key).map(|m| m.remark.clone()).filter(|r| !r.is_empty());
    let owner = c.number(&g.profile.owner).unwrap_or(0);
    let mut data = json!({"info": {
        "gid": g.n, "uid": owner, "avatar": g.profile.avatar, "state": "normal", "timestamp": g.profile.ctime.as_secs(),
        "remark": own_remark.unwrap_or_else(|| g.profile.name.clone()), "name": g.profile.name,
        "managers": g.profile.managers.iter().filter_map(|u| c.number(u)).collect::<Vec<_>>(), "forbidden_all": u8::from(g.profile.mute_all),
    }});
    if !simple {
        let mut shown = accounts_of(&c, &g.members).await?;
        shown.sort_by_key(|a| a.n);
        shown.truncate(DETAIL_MEMBERS);
        let mut members = Map::new();
        for a in shown {
            let remark = c
                .state
                .core
                .user_state(&a.uid)
                .await
                .map_err(|e| PopError::from_usecase(e.into()))?
                .conversations
                .get(&g.key)
                .map(|m| m.remark.clone())
                .unwrap_or_default();
            members.insert(
                a.n.to_string(),
                json!({"uid": a.n, "avatar": a.profile.avatar.clone().unwrap_or_default(), "nickname": shown_name(&a), "remark": remark}),
            );
        }
        data["members"] = Value::Object(members);
    }
    Ok(ok(data))
}

/// `group/remark`: the caller's own name for the group.
pub(super) async fn remark(c: Ctx, p: Params) -> Result<warp::reply::Response, PopError> {
    let me = c.account(p.id("login_uid")?).await?;
    let g = find(&c, &p).await?;
    member_only(&g, &me)?;
    let remark = p.text("remark", false, MAX_TEXT)?.ok_or_else(|| PopError::param("remark is required"))?;
    c.state.usecases.set_conversation(&me.uid, &g.key, None, Some(remark), c.acting(&me.uid)).await.map_err(PopError::from_usecase)?;
    done()
}

/// `group/manager`: the owner makes `uid` a manager (`value` 1) or not (0).
pub(super) async fn manager(c: Ctx, p: Params) -> Result<warp::reply::Response, PopError> {
    let me = c.account(p.id("login_uid")?).await?;
    let g = find(&c, &p).await?;
    let uid = c.uid(p.id("uid")?);
    let on = p.int("value", true, 0..=1)? == Some(1);
    act(&c, &g, &me, GroupCommand::SetManager { uid, on }).await?;
    done()
}

/// `group/ismanager`: `{"is_manager": 0|1}`.
pub(super) async fn is_manager(c: Ctx, p: Params) -> Result<warp::reply::Response, PopError> {
    c.account(p.id("login_uid")?).await?;
    let g = find(&c, &p).await?;
    let uid = c.uid(p.id("uid")?);
    Ok(ok(json!({"is_manager": u8::from(g.profile.managers.contains(&uid))})))
}

/// `group/forbiddenuser`: mutes `uid` until `time` (seconds since the epoch); 0 lifts the mute.
pub(super) async fn forbid_user(c: Ctx, p: Params) -> Result<warp::reply::Response, PopError> {
    let me = c.account(p.id("login_uid")?).await?;
    let g = find(&c, &p).await?;
    let uid = c.uid(p.id("uid")?);
    let time = p.int("time", true, 0..=i64::from(u32::MAX) * 1000)?.unwrap_or(0) as u64;
    let until = (time > 0).then(|| Timestamp(time.saturating_mul(1000)));
    act(&c, &g, &me, GroupCommand::Mute { uids: vec![uid], until }).await?;
    done()
}

/// `group/forbiddenall`: `value` 1 mutes every ordinary member, 0 lifts it.
pub(super) async fn forbid_all(c: Ctx, p: Params) -> Result<warp::reply::Response, PopError> {
    let me = c.account(p.id("login_uid")?).await?;
    let g = find(&c, &p).await?;
    let on = p.int("value", true, 0..=1)? == Some(1);
    act(&c, &g, &me, GroupCommand::MuteAll(on)).await?;
    done()
}

/// `group/memberupdate`: `state` `hidden` takes the group off the caller's list until a new message,
/// `chatting` keeps it there; `last_read_time` (seconds) marks it read up to then. One is required.
pub(super) async fn member_update(c: Ctx, p: Params) -> Result<warp::reply::Response, PopError> {
    let me = c.account(p.id("login_uid")?).await?;
    let g = find(&c, &p).await?;
    member_only(&g, &me)?;
    let hide = match p.get("state") {
        None => None,
        Some("hidden") => Some(true),
        Some("chatting") => Some(false),
        Some(other) => return Err(PopError::param(format!("state must be chatting or hidden, got {other:?}"))),
    };
    let read = p.int("last_read_time", false, 0..=i64::MAX)?;
    if hide.is_none() && read.is_none() {
        return Err(PopError::param("give state or last_read_time"));
    }
    super::messages::set_marks(&c, &me, &g.key, read.map(|t| t as u64), None, None, hide).await?;
    done()
}
