//! Groups: `POST /group/create_group` (with an owner, managers and members named by `setRole`),
//! `POST /group/invite_user_to_group` and `POST /group/kick_group` (a result per uid: 0 done, -1 not).
//!
//! A group is the tenant's group `<tag>#g<n>`; its `groupID` is 32 hex digits, the 128-bit block
//! `[0; 8] ++ n` enciphered with AES-128 under a key derived from the tag. Ids look random and do not
//! reveal how many groups exist, and a mistyped or invented id fails to decipher to that shape, so it
//! is an unknown group rather than someone else's.

use aes::cipher::{BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use rookery_actors::CoreError;
use rookery_events::{GroupCommand, Rejection as Refusal, Uid};
use serde_json::{json, Map, Value};
use warp::{Filter, Rejection};

use super::fields::{self, kind, Limit, MAX_TEXT, MAX_UIDS};
use super::{body, manager, success, Ctx, OimError};
use crate::http::ApiState;
use crate::usecase::{Circle, GroupSpec, GroupView};

/// Most members of a group.
pub const MAX_MEMBERS: u32 = 10_000;

/// The per-uid result of a member that could not be added or removed.
const FAILED: i64 = -1;

pub(super) fn routes(state: ApiState) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let create = warp::path!("group" / "create_group").and(warp::post()).and(manager(state.clone())).and(body()).and_then(create);
    let invite = warp::path!("group" / "invite_user_to_group").and(warp::post()).and(manager(state.clone())).and(body()).and_then(invite);
    let kick = warp::path!("group" / "kick_group").and(warp::post()).and(manager(state)).and(body()).and_then(kick);
    create.or(invite).unify().or(kick).unify()
}

fn cipher(tag: &str) -> aes::Aes128 {
    let digest = rookery_events::sha256(format!("rookery openim group ids/{tag}").as_bytes()).0;
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    aes::Aes128::new(&key.into())
}

/// The `groupID` of group `n` of tenant `tag`.
pub fn group_id(tag: &str, n: u64) -> String {
    let mut plain = [0u8; 16];
    plain[8..].copy_from_slice(&n.to_be_bytes());
    let mut block = aes::Block::from(plain);
    cipher(tag).encrypt_block(&mut block);
    hex::encode(block)
}

/// The group number a `groupID` names (`None` for anything that is not one of tenant `tag`'s ids).
pub fn group_number(tag: &str, id: &str) -> Option<u64> {
    let bytes: [u8; 16] = hex::decode(id).ok()?.try_into().ok()?;
    let mut block = aes::Block::from(bytes);
    cipher(tag).decrypt_block(&mut block);
    let (zero, n) = block.split_at(8);
    (zero == [0u8; 8] && id.bytes().all(|b| !b.is_ascii_uppercase())).then(|| u64::from_be_bytes(n.try_into().unwrap_or_default()))
}

/// The live group a request's `groupID` names.
pub(super) async fn find_group(c: &Ctx, obj: &Map<String, Value>) -> Result<GroupView, OimError> {
    let id = fields::required(obj, "groupID", Limit::Bytes(64))?;
    let unknown = || OimError::unknown(format!("group {id:?}"));
    let n = group_number(&c.app.tag, &id).ok_or_else(unknown)?;
    match c.state.usecases.group(&c.app.tag, Circle::Group, n).await {
        Ok(g) => Ok(g),
        Err(crate::usecase::Error::NotFound(_)) => Err(unknown()),
        Err(e) => Err(OimError::from_usecase(e)),
    }
}

/// A group refusal: a full group is 803; the rest as [`OimError::from_usecase`].
fn group_error(e: crate::usecase::Error) -> OimError {
    match e {
        crate::usecase::Error::Core(CoreError::Rejected(Refusal::GroupFull)) => OimError::args(format!("the group would have more than {MAX_MEMBERS} members")),
        e => OimError::from_usecase(e),
    }
}

/// `POST /group/create_group`: `memberList` names exactly one owner (`setRole` 1), any managers (2)
/// and ordinary members (0); answers `data.groupID`.
async fn create(c: Ctx, obj: Map<String, Value>) -> Result<warp::reply::Response, Rejection> {
    fields::operation_id(&obj)?;
    let list = match obj.get("memberList") {
        None | Some(Value::Null) => return Err(OimError::args("memberList is required").into()),
        Some(Value::Array(items)) => items,
        Some(other) => return Err(OimError::args(format!("memberList must be an array, got {}", kind(other))).into()),
    };
    if list.is_empty() || list.len() > MAX_UIDS {
        return Err(OimError::args(format!("memberList must name 1 to {MAX_UIDS} members, got {}", list.len())).into());
    }
    let mut named: Vec<(String, i64)> = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let Value::Object(m) = item else {
            return Err(OimError::args(format!("memberList[{i}] must be an object, got {}", kind(item))).into());
        };
        let uid = fields::uid(m, "uid").map_err(|e| OimError::args(format!("memberList[{i}]: {}", e.msg)))?;
        let role = fields::int(m, "setRole", false, 0..=2).map_err(|e| OimError::args(format!("memberList[{i}]: {}", e.msg)))?.unwrap_or(0);
        if named.iter().any(|(u, _)| *u == uid) {
            return Err(OimError::args(format!("memberList names {uid:?} twice")).into());
        }
        named.push((uid, role));
    }
    if named.iter().filter(|(_, r)| *r == 1).count() != 1 {
        return Err(OimError::args("memberList must name exactly one owner (setRole 1)").into());
    }
    let name = fields::required(&obj, "groupName", Limit::Chars(MAX_TEXT))?;
    let desc = fields::text(&obj, "introduction", false, Limit::Chars(MAX_TEXT))?.unwrap_or_default();
    let notice = fields::text(&obj, "notification", false, Limit::Chars(MAX_TEXT))?.unwrap_or_default();
    let avatar = fields::text(&obj, "faceUrl", false, Limit::Bytes(fields::MAX_ICON_BYTES))?.unwrap_or_default();
    let accounts = c.accounts(named.iter().map(|(u, _)| u.clone()).collect()).await?;
    let (mut owner, mut members, mut managers) = (None, Vec::new(), Vec::new());
    for ((external, role), account) in named.iter().zip(accounts) {
        let uid = account.ok_or_else(|| OimError::unknown(format!("user {external:?}")))?.uid;
        match role {
            1 => owner = Some(uid),
            2 => {
                managers.push(uid.clone());
                members.push(uid);
            }
            _ => members.push(uid),
        }
    }
    let owner = owner.ok_or_else(|| OimError::args("memberList must name exactly one owner (setRole 1)"))?;
    let spec = GroupSpec { owner, members, managers, notice, name, desc, avatar, public: false, max_members: MAX_MEMBERS };
    let n = c.state.usecases.create_group(&c.app.tag, Circle::Group, spec, c.origin.clone()).await.map_err(group_error)?;
    Ok(success(json!({"data": {"groupID": group_id(&c.app.tag, n)}})))
}

/// Splits `asked` into the internal uids to change (those `wanted` says yes to) and a result per
/// asked uid: 0 for those, -1 for unknown users and those `wanted` refuses.
async fn sort_out(c: &Ctx, asked: Vec<String>, wanted: impl Fn(&Uid) -> bool) -> Result<(Vec<Uid>, Vec<Value>), OimError> {
    let accounts = c.accounts(asked.clone()).await?;
    let mut change = Vec::new();
    let mut results = Vec::with_capacity(asked.len());
    for (external, account) in asked.iter().zip(accounts) {
        let result = match account {
            Some(a) if wanted(&a.uid) => {
                change.push(a.uid);
                0
            }
            _ => FAILED,
        };
        results.push(json!({"uid": external, "result": result}));
    }
    Ok((change, results))
}

/// `POST /group/invite_user_to_group`: registered users who are not members join; `data` has a
/// result per uid.
async fn invite(c: Ctx, obj: Map<String, Value>) -> Result<warp::reply::Response, Rejection> {
    fields::operation_id(&obj)?;
    let asked = fields::uid_list(&obj, "uidList")?;
    fields::required(&obj, "reason", Limit::Chars(MAX_TEXT))?;
    let group = find_group(&c, &obj).await?;
    let (add, results) = sort_out(&c, asked, |u| !group.members.contains(u)).await?;
    if !add.is_empty() {
        let cmd = GroupCommand::Members { add, remove: Vec::new() };
        c.state.usecases.change_group(&c.app.tag, Circle::Group, group.n, cmd, c.origin.clone()).await.map_err(group_error)?;
    }
    Ok(success(json!({"data": results})))
}

/// `POST /group/kick_group`: members other than the owner leave; `data` has a result per uid.
async fn kick(c: Ctx, obj: Map<String, Value>) -> Result<warp::reply::Response, Rejection> {
    fields::operation_id(&obj)?;
    let list = match obj.get("uidListInfo") {
        None | Some(Value::Null) => return Err(OimError::args("uidListInfo is required").into()),
        Some(Value::Array(items)) => items,
        Some(other) => return Err(OimError::args(format!("uidListInfo must be an array, got {}", kind(other))).into()),
    };
    if list.is_empty() || list.len() > MAX_UIDS {
        return Err(OimError::args(format!("uidListInfo must name 1 to {MAX_UIDS} users, got {}", list.len())).into());
    }
    let mut asked: Vec<String> = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let Value::Object(m) = item else {
            return Err(OimError::args(format!("uidListInfo[{i}] must be an object, got {}", kind(item))).into());
        };
        let uid = fields::uid(m, "userId").map_err(|e| OimError::args(format!("uidListInfo[{i}]: {}", e.msg)))?;
        if !asked.contains(&uid) {
            asked.push(uid);
        }
    }
    let group = find_group(&c, &obj).await?;
    let (remove, results) = sort_out(&c, asked, |u| group.members.contains(u) && *u != group.profile.owner).await?;
    if !remove.is_empty() {
        let cmd = GroupCommand::Members { add: Vec::new(), remove };
        c.state.usecases.change_group(&c.app.tag, Circle::Group, group.n, cmd, c.origin.clone()).await.map_err(group_error)?;
    }
    Ok(success(json!({"data": results})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_ids_are_32_hex_digits_that_decode_to_their_number_only() {
        let ids: Vec<String> = (1..=3).map(|n| group_id("oim", n)).collect();
        for (n, id) in (1..=3).zip(&ids) {
            assert_eq!(id.len(), 32);
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "{id}");
            assert_eq!(group_number("oim", id), Some(n));
            // Another tenant's key reads it as nothing.
            assert_eq!(group_number("oim2", id), None);
        }
        assert_ne!(ids[0][..16], ids[1][..16], "neighbouring numbers look unrelated");
        for bad in ["", "zz", "05dc84b52829e82242a710ecf999c72c", &ids[0].to_uppercase(), &format!("{}00", ids[0])] {
            assert_eq!(group_number("oim", bad), None, "{bad}");
        }
    }
}
