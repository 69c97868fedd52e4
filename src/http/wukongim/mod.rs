//! The WuKongIM (and LiMaoIM) server API, one module per resource group, each exposing
//! `routes(state)`. The family for every path no other family owns.
//!
//! Credentials: the `token` header must be one of the configured API credentials (none configured: an
//! open API on loopback). Errors: `{"status": <http status>, "msg": "..."}` with that HTTP status, and
//! `{"status":404,"msg":"no such route"}` for a path nobody serves. Unknown body fields are ignored,
//! as WuKongIM does, so business servers that send newer fields keep working.

mod channel;
mod conversation;
mod message;
mod route;
mod user;

use warp::filters::BoxedFilter;
use warp::Filter;

use super::{authorized, valid_request_id, ApiState};

/// This family's routes, behind the credential check, with its own errors.
pub(super) fn routes(state: ApiState) -> BoxedFilter<(warp::reply::Response,)> {
    let api = route::routes(state.clone())
        .or(user::routes(state.clone()))
        .unify()
        .or(channel::routes(state.clone()))
        .unify()
        .or(message::routes(state.clone()))
        .unify()
        .or(conversation::routes(state.clone()))
        .unify();
    guarded(state, api.boxed())
}

/// `routes` behind this family's credential check, with its errors.
pub(super) fn guarded(state: ApiState, routes: BoxedFilter<(warp::reply::Response,)>) -> BoxedFilter<(warp::reply::Response,)> {
    authorized(state).and(valid_request_id()).and(routes).recover(super::error::recover).unify().boxed()
}
