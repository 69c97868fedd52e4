//! The rest of the document: uploads (`upload/avatar|img|file`, multipart `file`), `qrcode/get` (an
//! SVG image), canned replies (`reply/*`), the home aggregate (`pop/get`), `pop/delchat` and
//! `pop/getsetting`.

use std::collections::BTreeMap;

use rookery_events::{ChannelType, Reply as Canned};
use serde_json::{json, Map, Value};
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::friends::{friend_entries, person};
use super::params::{Kind, MAX_TEXT};
use super::{ctx, done, ok, Ctx, Params, PopError};
use crate::http::ApiState;
use crate::usecase::{ConversationQuery, MAX_MEDIA_BYTES};

/// Longest QR code content, in bytes (what a version-40 code holds in binary mode at level L).
const MAX_QR_BYTES: usize = 2953;

/// The settings keys and their defaults (`pop/getsetting`), before the configuration's overrides.
const SETTINGS: &[(&str, &str)] = &[
    ("voice", "on"),
    ("audio", "off"),
    ("video", "off"),
    ("prompt_tone", "on"),
    ("group_chat", "on"),
    ("private_chat", "on"),
    ("add_friend", "on"),
    ("create_group", "on"),
    ("upload_file", "on"),
    ("upload_img", "on"),
    ("emoji", "on"),
    ("member_detail", "on"),
    ("stranger_chat", "on"),
    ("register", "on"),
    ("register_captcha", "off"),
    ("login_captcha", "off"),
    ("qrcode_friend", "on"),
    ("qrcode_group", "on"),
    ("qrcode_scan", "on"),
    ("dirty_words", ""),
    ("app_name", "Rookery"),
    ("appkey", ""),
    ("ws_address", ""),
    ("explore_url", ""),
];

/// The app's settings: the defaults, overridden by the configuration.
pub(super) fn settings(c: &Ctx) -> Value {
    let mut out: BTreeMap<String, String> = SETTINGS.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    out.extend(c.app.settings.iter().map(|(k, v)| (k.clone(), v.clone())));
    let mut v = json!(out);
    v["id"] = json!("1");
    v
}

/// `qrcode/get`: `content` drawn as an SVG QR code.
pub(super) fn qrcode(p: Params) -> Result<warp::reply::Response, PopError> {
    let content = p.text("content", true, usize::MAX)?.unwrap_or_default();
    if content.len() > MAX_QR_BYTES {
        return Err(PopError::param(format!("content is longer than the {MAX_QR_BYTES} bytes a QR code holds")));
    }
    let code = qrcode::QrCode::new(content.as_bytes()).map_err(|e| PopError::param(format!("content cannot be a QR code: {e}")))?;
    let svg = code.render::<qrcode::render::svg::Color<'_>>().min_dimensions(200, 200).build();
    Ok(warp::reply::with_header(svg, "content-type", "image/svg+xml").into_response())
}

/// `reply/get`: the app's canned replies by type, heaviest first.
pub(super) async fn replies(c: Ctx) -> Result<warp::reply::Response, PopError> {
    let all = c.state.usecases.replies(&c.app.tag).await.map_err(PopError::from_usecase)?;
    let mut by_type: BTreeMap<String, Vec<(i64, u64, Value)>> = BTreeMap::new();
    for (id, r) in all {
        let item = json!({
            "id": id, "type": r.kind, "title": r.title, "keyword": r.keyword, "content": r.content,
            "is_show": 1, "weights": r.weights, "is_default": u8::from(r.is_default),
        });
        by_type.entry(r.kind.to_string()).or_default().push((r.weights, id, item));
    }
    let mut out = Map::new();
    for (kind, mut items) in by_type {
        items.sort_by_key(|(w, id, _)| (std::cmp::Reverse(*w), *id));
        out.insert(kind, Value::Array(items.into_iter().map(|(_, _, v)| v).collect()));
    }
    Ok(ok(Value::Object(out)))
}

/// `reply/add`, `reply/update` (`rid`): `type` 1–3, `title`, `content`, optional `weights`,
/// `is_default`, `keyword`.
pub(super) async fn reply_save(c: Ctx, p: Params, update: bool) -> Result<warp::reply::Response, PopError> {
    let id = if update { Some(p.id("rid")?) } else { None };
    let reply = Canned {
        kind: p.int("type", true, 1..=3)?.unwrap_or(1) as u8,
        title: p.text("title", true, MAX_TEXT)?.unwrap_or_default(),
        keyword: p.text("keyword", false, MAX_TEXT)?.unwrap_or_default(),
        content: p.text("content", true, 4096)?.unwrap_or_default(),
        weights: p.int("weights", false, -1_000_000_000..=1_000_000_000)?.unwrap_or(0),
        is_default: p.int("is_default", false, 0..=1)? == Some(1),
    };
    let cmd = rookery_events::TenantCommand::SaveReply { id, reply };
    c.state.usecases.change_tenant(&c.app.tag, cmd, c.origin.clone()).await.map_err(PopError::from_usecase)?;
    done()
}

/// `reply/delete`: `rid`.
pub(super) async fn reply_delete(c: Ctx, p: Params) -> Result<warp::reply::Response, PopError> {
    let cmd = rookery_events::TenantCommand::RemoveReply(p.id("rid")?);
    c.state.usecases.change_tenant(&c.app.tag, cmd, c.origin.clone()).await.map_err(PopError::from_usecase)?;
    done()
}

/// `pop/delchat`: the conversation leaves the caller's list until a new message arrives.
pub(super) async fn delete_chat(c: Ctx, p: Params) -> Result<warp::reply::Response, PopError> {
    let me = c.account(p.id("login_uid")?).await?;
    let key = match p.kind()? {
        Kind::Friend => person(&me, &c.account(p.id("id")?).await?),
        Kind::Group => rookery_events::tenant_group(&c.app.tag, p.id("id")?),
    };
    c.state.usecases.hide_conversation(&me.uid, &key, c.acting(&me.uid)).await.map_err(PopError::from_usecase)?;
    done()
}

/// `pop/get`: the caller, its address book, its groups, its conversations with their last message
/// and unread count, and the app's settings.
pub(super) async fn home(c: Ctx, p: Params) -> Result<warp::reply::Response, PopError> {
    let me = c.account(p.id("login_uid")?).await?;
    let u = &c.state.usecases;
    let requests = u.friend_requests_to(&c.app.tag, me.n).await.map_err(PopError::from_usecase)?;
    let friends = friend_entries(&c, &me).await?;
    let book = super::friends::grouped(&c, friends.clone());
    let groups = u.groups_of(&c.app.tag, &me.uid).await.map_err(PopError::from_usecase)?;
    let group_list: Vec<Value> = groups.iter().map(|g| json!({"gid": g.n, "avatar": g.profile.avatar, "name": g.profile.name})).collect();
    let user = c.state.core.user_state(&me.uid).await.map_err(|e| PopError::from_usecase(e.into()))?;
    let q = ConversationQuery { uid: me.uid.0.clone(), recent: 1, ..ConversationQuery::default() };
    let mut chatting = Map::new();
    for conv in u.conversations(&q).await.map_err(PopError::from_usecase)? {
        let Some(last) = conv.recent.first() else { continue };
        let key = if conv.channel_type == ChannelType::PERSON {
            person_key(&me, &conv.channel_id)
        } else {
            rookery_events::ChannelKey::new(conv.channel_id.clone(), conv.channel_type)
        };
        let marks = user.conversations.get(&key);
        if marks.is_some_and(|m| m.hidden.contains(&last.message_seq)) {
            continue;
        }
        let (kind, id, name, avatar) = if conv.channel_type == ChannelType::PERSON {
            let Some(n) = c.number(&rookery_events::Uid::from(conv.channel_id.as_str())) else { continue };
            let Some(a) = c.accounts(vec![n]).await?.pop().flatten() else { continue };
            let note = friends.iter().find(|(f, _)| f.n == n).map(|(_, note)| note.clone()).filter(|s| !s.is_empty());
            ("friend", n, note.unwrap_or_else(|| a.profile.nickname.clone().unwrap_or(a.username.clone())), a.profile.avatar.clone().unwrap_or_default())
        } else {
            let Some(g) = groups.iter().find(|g| g.key.id.0 == conv.channel_id) else { continue };
            let remark = marks.map(|m| m.remark.clone()).filter(|r| !r.is_empty());
            ("group", g.n, remark.unwrap_or_else(|| g.profile.name.clone()), g.profile.avatar.clone())
        };
        // The conversation list shows a retracted message without its payload, so its text is empty.
        let content = super::messages::content_of(last).0;
        let from = c.number(&last.from_uid).map_or_else(|| last.from_uid.0.clone(), |n| n.to_string());
        let item = json!({"mid": last.message_seq.0, "from": from, "to": id.to_string(), "content": content, "timestamp": last.timestamp.as_secs(), "sub_type": "message"});
        chatting.insert(
            format!("{kind}{id}"),
            json!({"type": kind, "id": id, "avatar": avatar, "name": name, "unread_count": conv.unread, "top": u8::from(marks.is_some_and(|m| m.pinned)), "items": [item]}),
        );
    }
    let mine = json!({
        "uid": me.n, "username": me.username, "sign": me.profile.signature.clone().unwrap_or_default(),
        "nickname": me.profile.nickname.clone().unwrap_or_default(), "avatar": me.profile.avatar.clone().unwrap_or_default(),
        "unread_friend_apply_count": requests.iter().filter(|(_, r)| r.answer.is_none()).count(),
    });
    Ok(ok(json!({"mine": mine, "friend": book, "group": group_list, "chatting": chatting, "setting": settings(&c)})))
}

/// The person channel of `me` and the uid `peer`.
fn person_key(me: &crate::usecase::AccountView, peer: &str) -> rookery_events::ChannelKey {
    rookery_events::ChannelKey::new(rookery_events::person_channel_id(&me.uid, &rookery_events::Uid::from(peer)), ChannelType::PERSON)
}

/// `1.23 KB` and the like.
fn human_size(bytes: u64) -> String {
    match bytes {
        b if b < 1024 => format!("{b} B"),
        b if b < 1024 * 1024 => format!("{:.2} KB", b as f64 / 1024.0),
        b => format!("{:.2} MB", b as f64 / (1024.0 * 1024.0)),
    }
}

/// The upload routes: a multipart form with the file in `file` (and `login_uid` for an avatar).
pub(super) fn upload_routes(state: ApiState) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let form = || warp::multipart::form().max_length(MAX_MEDIA_BYTES as u64 + 64 * 1024);
    let route = |name: &'static str, kind: &'static str| {
        warp::path!("api" / "upload" / String)
            .and_then(move |which: String| async move {
                if which == name {
                    Ok(())
                } else {
                    Err(warp::reject::not_found())
                }
            })
            .untuple_one()
            .and(warp::post())
            .and(ctx(state.clone()))
            .and(form())
            .and_then(move |c: Ctx, f: warp::multipart::FormData| async move { upload(c, f, name, kind).await.map_err(warp::reject::custom) })
    };
    route("avatar", "image").or(route("img", "image")).unify().or(route("file", "file")).unify()
}

/// Stores an upload and answers `{src, name, size}`.
async fn upload(c: Ctx, form: warp::multipart::FormData, which: &str, kind: &str) -> Result<warp::reply::Response, PopError> {
    c.require(if kind == "image" { "upload_img" } else { "upload_file" })?;
    let too_large = || PopError { status: StatusCode::PAYLOAD_TOO_LARGE, code: super::PARAM, msg: format!("a file is at most {MAX_MEDIA_BYTES} bytes") };
    let (file, texts) = crate::http::multipart_file(form, &["file"], &["login_uid"], MAX_MEDIA_BYTES, PopError::param, too_large).await?;
    let login = texts.get("login_uid").cloned();
    let origin = if which == "avatar" {
        let raw = login.ok_or_else(|| PopError::param("login_uid is required"))?;
        let mut p = Params::default();
        Params::from_form(format!("login_uid={}", raw.trim()).as_bytes(), &mut p)?;
        let me = c.account(p.id("login_uid")?).await?;
        c.acting(&me.uid)
    } else {
        c.origin.clone()
    };
    let (name, bytes) = file.ok_or_else(|| PopError::param("the form has no file in its file field"))?;
    let record = c.state.usecases.store_media(&c.app.tag, kind, &name, bytes, origin).await.map_err(PopError::from_usecase)?;
    Ok(ok(json!({"src": format!("/media/{}", record.sha256), "name": record.name, "size": human_size(record.size)})))
}
