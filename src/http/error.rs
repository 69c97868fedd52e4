//! Every failure of the REST API becomes an HTTP status plus `{"status": <code>, "msg": "..."}`.

use rookery_actors::CoreError;
use rookery_events::Rejection;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Reply;

/// An API error: the HTTP status and a lower-case message naming the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status (4xx for the caller's mistakes, 5xx for ours).
    pub status: StatusCode,
    /// What went wrong, for humans.
    pub msg: String,
}

impl ApiError {
    /// 400 with a message.
    pub fn bad_request(msg: impl Into<String>) -> ApiError {
        ApiError { status: StatusCode::BAD_REQUEST, msg: msg.into() }
    }

    /// 404 with a message.
    pub fn not_found(msg: impl Into<String>) -> ApiError {
        ApiError { status: StatusCode::NOT_FOUND, msg: msg.into() }
    }
}

impl warp::reject::Reject for ApiError {}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> ApiError {
        let status = match &e {
            CoreError::Rejected(Rejection::ChannelNotFound | Rejection::NotFound(_)) => StatusCode::NOT_FOUND,
            CoreError::Rejected(Rejection::Exists(_) | Rejection::GroupFull) => StatusCode::CONFLICT,
            CoreError::Rejected(Rejection::Muted | Rejection::NotAllowed(_)) => StatusCode::FORBIDDEN,
            CoreError::Rejected(Rejection::Expired(_)) => StatusCode::GONE,
            CoreError::Rejected(Rejection::Banned | Rejection::SendBanned | Rejection::InBlacklist | Rejection::NotSubscriber | Rejection::NotInWhitelist) => {
                StatusCode::FORBIDDEN
            }
            CoreError::Rejected(Rejection::Disbanded) => StatusCode::GONE,
            CoreError::Rejected(Rejection::Invalid(_)) => StatusCode::BAD_REQUEST,
            CoreError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            CoreError::Storage(m) if m.contains(rookery_storage::DISK_FULL) => StatusCode::INSUFFICIENT_STORAGE,
            CoreError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::error!(error = %e, "request failed");
        }
        ApiError { status, msg: e.to_string() }
    }
}

/// The status of a failure of the core itself: 507 when the disk is below its reserve (the client may
/// retry later; nothing was written), 503 when an actor was unavailable, else 500.
pub(crate) fn server_status(e: &CoreError) -> StatusCode {
    match e {
        CoreError::Storage(m) if m.contains(rookery_storage::DISK_FULL) => StatusCode::INSUFFICIENT_STORAGE,
        CoreError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<crate::usecase::Error> for ApiError {
    fn from(e: crate::usecase::Error) -> ApiError {
        match e {
            crate::usecase::Error::Invalid(_, msg) => ApiError::bad_request(msg),
            crate::usecase::Error::TooLarge(_, msg) => ApiError { status: StatusCode::PAYLOAD_TOO_LARGE, msg },
            crate::usecase::Error::NotFound(msg) => ApiError::not_found(msg),
            crate::usecase::Error::Core(e) => ApiError::from(e),
        }
    }
}

impl From<crate::usecase::Error> for warp::Rejection {
    fn from(e: crate::usecase::Error) -> warp::Rejection {
        warp::reject::custom(ApiError::from(e))
    }
}

impl Reply for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "status": self.status.as_u16(), "msg": self.msg });
        let mut response = warp::reply::with_status(warp::reply::json(&body), self.status).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            // Budgets refill per second, so one second always suffices; the message has the exact wait.
            response.headers_mut().insert(warp::http::header::RETRY_AFTER, warp::http::HeaderValue::from_static("1"));
        }
        response
    }
}

/// Turns every rejection warp or a handler produced into a JSON error response.
pub async fn recover(rejection: warp::Rejection) -> Result<Response, std::convert::Infallible> {
    Ok(error_of(&rejection).into_response())
}

/// The status and message of any rejection warp or a handler produced (a family renders it in its
/// own envelope).
pub fn error_of(rejection: &warp::Rejection) -> ApiError {
    if let Some(e) = rejection.find::<ApiError>() {
        e.clone()
    } else if rejection.is_not_found() {
        ApiError::not_found("no such route")
    } else if rejection.find::<warp::reject::LengthRequired>().is_some() {
        ApiError { status: StatusCode::LENGTH_REQUIRED, msg: "a json body with a content-length is required".into() }
    } else if let Some(e) = rejection.find::<warp::reject::PayloadTooLarge>() {
        ApiError { status: StatusCode::PAYLOAD_TOO_LARGE, msg: e.to_string().to_lowercase() }
    } else if let Some(e) = rejection.find::<warp::filters::body::BodyDeserializeError>() {
        ApiError::bad_request(format!("malformed json body: {e}"))
    } else if rejection.find::<warp::reject::UnsupportedMediaType>().is_some() {
        ApiError { status: StatusCode::UNSUPPORTED_MEDIA_TYPE, msg: "body must be json".into() }
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError { status: StatusCode::METHOD_NOT_ALLOWED, msg: "method not allowed on this route".into() }
    } else if let Some(e) = rejection.find::<warp::reject::InvalidQuery>() {
        ApiError::bad_request(format!("malformed query string: {e}"))
    } else if let Some(e) = rejection.find::<warp::reject::InvalidHeader>() {
        ApiError::bad_request(format!("header {} is not valid text", e.name()))
    } else if let Some(e) = rejection.find::<warp::reject::MissingHeader>() {
        ApiError::bad_request(format!("missing header {}", e.name()))
    } else {
        tracing::warn!(?rejection, "unhandled rejection");
        ApiError { status: StatusCode::INTERNAL_SERVER_ERROR, msg: "internal error".into() }
    }
}
