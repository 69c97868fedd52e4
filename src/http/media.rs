//! `GET /media/<sha256>`: the bytes of an upload, for anyone who has its URL (the SHA-256 of the bytes
//! cannot be guessed without them). No credential, like a CDN link; served on the API listener, so on
//! loopback unless the API is exposed. Images are served with their type, anything else as
//! `application/octet-stream` with `nosniff`.

use warp::filters::BoxedFilter;
use warp::http::{header, StatusCode};
use warp::{Filter, Rejection, Reply};

use super::ApiState;

/// Whether `path` is this family's.
pub(super) fn owns(path: &str) -> bool {
    path.starts_with("/media/")
}

pub(super) fn routes(state: ApiState) -> BoxedFilter<(warp::reply::Response,)> {
    warp::path!("media" / String)
        .and(warp::get())
        .and_then(move |sha256: String| {
            let state = state.clone();
            async move {
                let found = state.usecases.blob(&sha256).await;
                Ok::<_, Rejection>(match found {
                    Ok(Some((bytes, format))) => {
                        let mime = match format {
                            Some("jpg") => "image/jpeg",
                            Some("png") => "image/png",
                            Some("gif") => "image/gif",
                            Some("bmp") => "image/bmp",
                            _ => "application/octet-stream",
                        };
                        let reply = warp::reply::with_header(bytes, header::CONTENT_TYPE, mime);
                        let reply = warp::reply::with_header(reply, "x-content-type-options", "nosniff");
                        warp::reply::with_header(reply, header::CACHE_CONTROL, "public, max-age=31536000, immutable").into_response()
                    }
                    Ok(None) => warp::reply::with_status(warp::reply::json(&serde_json::json!({"status": 404, "msg": "no such media"})), StatusCode::NOT_FOUND)
                        .into_response(),
                    Err(e) => warp::reply::with_status(
                        warp::reply::json(&serde_json::json!({"status": 500, "msg": e.to_string()})),
                        StatusCode::INTERNAL_SERVER_ERROR,
                    )
                    .into_response(),
                })
            }
        })
        .or(warp::any().map(|| {
            warp::reply::with_status(warp::reply::json(&serde_json::json!({"status": 404, "msg": "no such media"})), StatusCode::NOT_FOUND).into_response()
        }))
        .unify()
        .boxed()
}
