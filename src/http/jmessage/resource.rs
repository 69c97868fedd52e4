//! Media: `POST /v1/resource?type=image|file|voice` (a multipart form with the file in `filename`) and
//! `GET /v1/resource?mediaId=` (its download URL). A `media_id` is `<tag>/<type>/<sha256>`.

use serde::Deserialize;
use serde_json::json;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::{ctx, Ctx, JmError, BAD_REQUEST};
use crate::http::ApiState;
use crate::usecase::{MAX_MEDIA_BYTES, MEDIA_KINDS};

pub(super) fn routes(state: ApiState) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let c = || ctx(state.clone());
    let upload = warp::path!("v1" / "resource")
        .and(warp::post())
        .and(c())
        .and(warp::query::<UploadQuery>())
        .and(warp::multipart::form().max_length(MAX_MEDIA_BYTES as u64 + 64 * 1024))
        .and_then(upload);
    let url =
        warp::path!("v1" / "resource").and(warp::get()).and(c()).and(warp::query::<UrlQuery>()).and(warp::header::optional::<String>("host")).and_then(url);
    upload.or(url).unify()
}

#[derive(Debug, Deserialize)]
struct UploadQuery {
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Debug, Deserialize)]
struct UrlQuery {
    #[serde(rename = "mediaId")]
    media_id: Option<String>,
}

/// `POST /v1/resource?type=`: stores the form's `filename` file; 200 with its record.
async fn upload(c: Ctx, q: UploadQuery, form: warp::multipart::FormData) -> Result<warp::reply::Response, Rejection> {
    let kind = q.kind.unwrap_or_default();
    if !MEDIA_KINDS.contains(&kind.as_str()) {
        return Err(JmError::bad_request(format!("type must be image, file or voice, got {kind:?}")).into());
    }
    let too_large = || JmError::bad_request(format!("a file is at most {MAX_MEDIA_BYTES} bytes"));
    let (file, _) = crate::http::multipart_file(form, &["filename"], &[], MAX_MEDIA_BYTES, JmError::bad_request, too_large).await?;
    let (name, bytes) = file.ok_or_else(|| JmError::bad_request("the form has no file in its filename field"))?;
    let record = c.state.usecases.store_media(&c.app.tag, &kind, &name, bytes, c.origin).await.map_err(JmError::from_usecase)?;
    let media_id = format!("{}/{}/{}", c.app.tag, record.kind, record.sha256);
    let body = match record.kind.as_str() {
        "image" => json!({
            "media_id": media_id, "media_crc32": record.crc32, "width": record.width, "height": record.height,
            "format": record.format, "fsize": record.size, "hash": record.sha256,
        }),
        "voice" => json!({"media_id": media_id, "media_crc32": record.crc32, "hash": record.sha256, "format": record.format, "fsize": record.size}),
        _ => json!({"media_id": media_id, "media_crc32": record.crc32, "fname": record.name, "fsize": record.size, "hash": record.sha256}),
    };
    Ok(warp::reply::json(&body).into_response())
}

/// `GET /v1/resource?mediaId=`: `{"url"}`, where the bytes are served (`/media/<sha256>` on this
/// listener, under the request's own host).
async fn url(c: Ctx, q: UrlQuery, host: Option<String>) -> Result<warp::reply::Response, Rejection> {
    let raw = q.media_id.ok_or_else(|| JmError::bad_request("mediaId is required"))?;
    let mut parts = raw.splitn(3, '/');
    let (tag, kind, sha256) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    if tag != c.app.tag || !MEDIA_KINDS.contains(&kind) {
        return Err(JmError::new(StatusCode::NOT_FOUND, BAD_REQUEST, format!("no media {raw:?} in this app")).into());
    }
    let record = c.state.usecases.media(&c.app.tag, kind, sha256).await.map_err(JmError::from_usecase)?;
    let record = record.ok_or_else(|| JmError::new(StatusCode::NOT_FOUND, BAD_REQUEST, format!("no media {raw:?} in this app")))?;
    let host = host.unwrap_or_else(|| "localhost".into());
    Ok(warp::reply::json(&json!({"url": format!("http://{host}/media/{}", record.sha256)})).into_response())
}
