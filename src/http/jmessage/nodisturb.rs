//! No-disturb and group shields of a user (`/v1/users/{username}/nodisturb`, `.../groupsShield`).
//! Both are stored and audited; this server pushes no notifications for them to silence. The document
//! has no route that reads them back.

use rookery_events::TenantCommand;
use serde_json::{Map, Value};
use warp::http::StatusCode;
use warp::{Filter, Rejection};

use super::fields::{self, kind};
use super::{ctx, jm_json, no_content, Ctx, JmError};
use crate::http::ApiState;

/// `899051`: the group does not exist.
const NO_SUCH_GROUP: u32 = 899_051;
/// `899052`: no-disturb of the group is on already.
const ALREADY_ON: u32 = 899_052;
/// `899053`: no-disturb of the group is off already.
const ALREADY_OFF: u32 = 899_053;
/// Most users or groups one list may name.
const MAX_LIST: usize = 500;

pub(super) fn routes(state: ApiState) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let c = || ctx(state.clone());
    let nodisturb = warp::path!("v1" / "users" / String / "nodisturb").and(warp::post()).and(c()).and(jm_json()).and_then(nodisturb);
    let shield = warp::path!("v1" / "users" / String / "groupsShield").and(warp::post()).and(c()).and(jm_json()).and_then(shield);
    nodisturb.or(shield).unify()
}

/// `{"add": [...], "remove": [...]}` of `field` (absent: both empty).
fn add_remove<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<(Vec<&'a Value>, Vec<&'a Value>), JmError> {
    let inner = match obj.get(field) {
        None | Some(Value::Null) => return Ok((Vec::new(), Vec::new())),
        Some(Value::Object(o)) => o,
        Some(other) => return Err(JmError::bad_request(format!("{field} must be a json object, got {}", kind(other)))),
    };
    let list = |name: &str| -> Result<Vec<&'a Value>, JmError> {
        match inner.get(name) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) if items.len() <= MAX_LIST => Ok(items.iter().collect()),
            Some(Value::Array(_)) => Err(JmError::bad_request(format!("{field}.{name} may name at most {MAX_LIST}"))),
            Some(other) => Err(JmError::bad_request(format!("{field}.{name} must be an array, got {}", kind(other)))),
        }
    };
    Ok((list("add")?, list("remove")?))
}

fn gids(values: Vec<&Value>) -> Result<Vec<u64>, JmError> {
    values
        .into_iter()
        .map(|v| v.as_u64().filter(|n| *n > 0).ok_or_else(|| JmError::bad_request(format!("a gid must be a positive whole number, got {v}"))))
        .collect()
}

fn names(values: Vec<&Value>) -> Result<Vec<String>, JmError> {
    values.into_iter().map(fields::username_value).collect()
}

fn refusal(e: crate::usecase::Error) -> JmError {
    use rookery_actors::CoreError::Rejected;
    use rookery_events::Rejection as R;
    match e {
        crate::usecase::Error::Core(Rejected(R::NotFound(m))) if m.starts_with("group") => {
            JmError::new(StatusCode::NOT_FOUND, NO_SUCH_GROUP, format!("{m} does not exist"))
        }
        crate::usecase::Error::Core(Rejected(R::Exists(m))) => JmError::new(StatusCode::CONFLICT, ALREADY_ON, format!("{m} is on already")),
        crate::usecase::Error::Core(Rejected(R::NotAllowed(m))) => JmError::new(StatusCode::CONFLICT, ALREADY_OFF, m),
        e => JmError::from_usecase(e),
    }
}

/// `POST /v1/users/{username}/nodisturb` with `single` and `group` (`{add, remove}`) and `global` (0 or 1); 204.
async fn nodisturb(username: String, c: Ctx, body: Value) -> Result<warp::reply::Response, Rejection> {
    let username = fields::username(&username)?;
    let obj = fields::object(&body, "the body")?;
    let (single_add, single_remove) = add_remove(obj, "single")?;
    let (group_add, group_remove) = add_remove(obj, "group")?;
    let global = match obj.get("global") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(0) => Some(false),
            Some(1) => Some(true),
            _ => return Err(JmError::bad_request(format!("global must be 0 or 1, got {v}")).into()),
        },
    };
    let cmd = TenantCommand::SetNoDisturb {
        username,
        single_add: names(single_add)?,
        single_remove: names(single_remove)?,
        groups_add: gids(group_add)?,
        groups_remove: gids(group_remove)?,
        global,
    };
    c.state.usecases.change_tenant(&c.app.tag, cmd, c.origin).await.map_err(refusal)?;
    Ok(no_content())
}

/// `POST /v1/users/{username}/groupsShield` with `add` and `remove` (gids); 204.
async fn shield(username: String, c: Ctx, body: Value) -> Result<warp::reply::Response, Rejection> {
    let username = fields::username(&username)?;
    let obj = fields::object(&body, "the body")?;
    let wrapped: Map<String, Value> = [("shield".to_owned(), Value::Object(obj.clone()))].into_iter().collect();
    let (add, remove) = add_remove(&wrapped, "shield")?;
    if add.is_empty() && remove.is_empty() {
        return Err(JmError::bad_request("give add or remove").into());
    }
    let cmd = TenantCommand::ShieldGroups { username, add: gids(add)?, remove: gids(remove)? };
    c.state.usecases.change_tenant(&c.app.tag, cmd, c.origin).await.map_err(refusal)?;
    Ok(no_content())
}
