//! Users: `user/add` and `user/open_user` (register), `user/get` (one user, a credential check with
//! `password`, friendship with `login_uid`), `user/multiGet`, `user/update` (profile and
//! `account_state`) and `user/updatepassword` (the old password checked). A user's `uid` is its number
//! in the app.

use rookery_events::Profile;
use serde_json::{json, Value};

use super::params::MAX_TEXT;
use super::{done, ok, Ctx, Params, PopError};
use crate::usecase::{AccountView, Signup};

/// Longest username, in characters (letters and digits only).
const MAX_USERNAME: usize = 64;
/// Password length, in characters.
const PASSWORD_CHARS: std::ops::RangeInclusive<usize> = 4..=128;

/// A user as the document shows one.
pub(super) fn user_json(c: &Ctx, a: &AccountView, disabled: bool) -> Value {
    let p = &a.profile;
    json!({
        "uid": a.n,
        "username": a.username,
        "nickname": p.nickname.clone().unwrap_or_default(),
        "nid": a.n,
        "is_member": 0,
        "sign": p.signature.clone().unwrap_or_default(),
        "avatar": p.avatar.clone().unwrap_or_default(),
        "state": if c.online(&a.uid) { "online" } else { "offline" },
        "logout_timestamp": 0,
        "account_state": if disabled { "disabled" } else { "normal" },
    })
}

fn password(p: &Params, name: &str) -> Result<String, PopError> {
    let pw = p.text(name, true, *PASSWORD_CHARS.end())?.unwrap_or_default();
    if !PASSWORD_CHARS.contains(&pw.chars().count()) {
        return Err(PopError::param(format!("{name} must be {} to {} characters", PASSWORD_CHARS.start(), PASSWORD_CHARS.end())));
    }
    Ok(pw)
}

fn username(p: &Params) -> Result<String, PopError> {
    let name = p.text("username", true, MAX_USERNAME)?.unwrap_or_default();
    if !name.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(PopError::param("username must be letters and digits"));
    }
    Ok(name)
}

/// `user/add`, `user/open_user`: `data.uid` is the new user's number.
pub(super) async fn add(c: Ctx, p: Params) -> Result<warp::reply::Response, PopError> {
    c.require("register")?;
    let username = username(&p)?;
    let nickname = p.text("nickname", true, MAX_TEXT)?;
    let password = password(&p, "password")?;
    let profile = Profile { nickname, avatar: p.text("avatar", false, 1024)?, signature: p.text("sign", false, MAX_TEXT)?, ..Profile::default() };
    let created = c.state.usecases.register(&c.app.tag, vec![Signup { username: username.clone(), password: Some(password), profile }], c.origin.clone()).await;
    if !created.map_err(PopError::from_usecase)?.first().copied().unwrap_or(false) {
        return Err(PopError::conflict(format!("username {username:?} is taken")));
    }
    let account = c.state.usecases.account(&c.app.tag, &username).await.map_err(PopError::from_usecase)?;
    Ok(ok(json!({"uid": account.n})))
}

/// `user/get`: by `uid` or `username`; with `password` (and `username`) a credential check; with
/// `login_uid`, `is_friend` and `remark`.
pub(super) async fn get(c: Ctx, p: Params) -> Result<warp::reply::Response, PopError> {
    let account = match (p.opt_id("uid")?, p.get("username")) {
        (Some(n), _) if !p.has("password") => c.account(n).await?,
        (_, Some(name)) => match c.state.usecases.account(&c.app.tag, name).await {
            Ok(a) => a,
            Err(crate::usecase::Error::NotFound(_)) => return Err(PopError::not_found(format!("user {name:?}"))),
            Err(e) => return Err(PopError::from_usecase(e)),
        },
        (Some(_), None) => return Err(PopError::param("password needs username")),
        (None, None) => return Err(PopError::param("uid or username is required")),
    };
    if p.has("password") {
        let given = p.text("password", true, *PASSWORD_CHARS.end())?.unwrap_or_default();
        if !c.state.usecases.check_password(&c.app.tag, &account.username, &given).await.map_err(PopError::from_usecase)? {
            return Err(PopError::forbidden("wrong username or password"));
        }
    }
    let disabled = c.state.usecases.is_disabled(&account.uid).await.map_err(PopError::from_usecase)?;
    let mut data = user_json(&c, &account, disabled);
    if let Some(viewer) = p.opt_id("login_uid")? {
        let viewer = c.account(viewer).await?;
        let friends = c.state.usecases.friends(&c.app.tag, &viewer.username).await.map_err(PopError::from_usecase)?;
        let note = friends.iter().find(|(f, _)| f.n == account.n).map(|(_, note)| note.note_name.clone());
        data["is_friend"] = json!(note.is_some());
        data["remark"] = json!(note.unwrap_or_default());
    }
    Ok(ok(data))
}

/// `user/multiGet`: the users among `uid[]` that exist, in the order asked.
pub(super) async fn multi_get(c: Ctx, p: Params) -> Result<warp::reply::Response, PopError> {
    let ns = p.ids("uid")?;
    let found = c.accounts(ns).await?;
    let mut out = Vec::new();
    for a in found.iter().flatten() {
        let disabled = c.state.usecases.is_disabled(&a.uid).await.map_err(PopError::from_usecase)?;
        let mut u = user_json(&c, a, disabled);
        if let Value::Object(m) = &mut u {
            m.remove("nid");
            m.remove("is_member");
            m.remove("account_state");
        }
        out.push(u);
    }
    Ok(ok(Value::Array(out)))
}

/// `user/update`: `nickname`, `avatar`, `sign` and `account_state` (`normal` or `disabled`), all
/// checked before anything changes.
pub(super) async fn update(c: Ctx, p: Params) -> Result<warp::reply::Response, PopError> {
    let account = c.account(p.id("login_uid")?).await?;
    let patch = Profile {
        nickname: p.text("nickname", false, MAX_TEXT)?,
        avatar: p.text("avatar", false, 1024)?,
        signature: p.text("sign", false, MAX_TEXT)?,
        ..Profile::default()
    };
    let state = match p.get("account_state") {
        None => None,
        Some("normal") => Some(false),
        Some("disabled") => Some(true),
        Some(other) => return Err(PopError::param(format!("account_state must be normal or disabled, got {other:?}"))),
    };
    if patch == Profile::default() && state.is_none() {
        return Err(PopError::param("give nickname, avatar, sign or account_state"));
    }
    let origin = c.acting(&account.uid);
    if patch != Profile::default() {
        c.state.usecases.update_profile(&c.app.tag, &account.username, patch, origin.clone()).await.map_err(PopError::from_usecase)?;
    }
    if let Some(disabled) = state {
        c.state.usecases.set_disabled(&c.app.tag, &account.username, disabled, origin).await.map_err(PopError::from_usecase)?;
    }
    done()
}

/// `user/updatepassword`: `password1` twice (`password2`), with the current `password_old`. (`code`,
/// a phone code, cannot be checked here: the old password is the proof.)
pub(super) async fn update_password(c: Ctx, p: Params) -> Result<warp::reply::Response, PopError> {
    let account = c.login(&p).await?;
    let new = password(&p, "password1")?;
    if p.get("password2") != Some(new.as_str()) {
        return Err(PopError::param("password2 must repeat password1"));
    }
    let old = p.text("password_old", true, *PASSWORD_CHARS.end())?.unwrap_or_default();
    if !c.state.usecases.check_password(&c.app.tag, &account.username, &old).await.map_err(PopError::from_usecase)? {
        return Err(PopError::forbidden("password_old is wrong"));
    }
    c.state.usecases.change_password(&c.app.tag, &account.username, new, c.acting(&account.uid)).await.map_err(PopError::from_usecase)?;
    done()
}
