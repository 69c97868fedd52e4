//! The REST API's HTTP server: warp's routes behind a thin layer that gives every request its id and
//! hands it to the API family that owns its path.
//!
//! warp's own server cannot hand per-request values to filters, so this loop does what it does (accept,
//! HTTP/1 and HTTP/2 per connection, graceful shutdown) and adds a [`RequestContext`] to each request:
//! the request id (the caller's `X-Request-Id` when it is a UUID, otherwise a new one) and the peer
//! address. The same id is recorded in the envelopes the request writes (see `origin`) and echoed in
//! the `X-Request-Id` header of every response, errors included.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use warp::http::{HeaderValue, Request};
use warp::hyper::body::Incoming;

use crate::metrics::Metrics;

/// What the server knows about a request before routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestContext {
    /// The request id recorded in its envelopes and echoed in `X-Request-Id`.
    pub request_id: uuid::Uuid,
    /// The peer address of the connection.
    pub peer: Option<SocketAddr>,
}

/// Longest `X-Request-Id` kept, in bytes.
pub const MAX_REQUEST_ID: usize = 128;

/// The id recorded for a caller's `X-Request-Id`: a UUID (any form `uuid::Uuid::parse_str` accepts)
/// as it is; any other id of 1 to [`MAX_REQUEST_ID`] visible ASCII characters (what proxies and
/// tracers send) as the first 16 bytes of its SHA-256, so the same id always maps to the same UUID.
/// `None` for anything else, which the routes refuse with 400.
pub fn recorded_request_id(given: &str) -> Option<uuid::Uuid> {
    let given = given.trim();
    if let Ok(id) = uuid::Uuid::parse_str(given) {
        return Some(id);
    }
    let bounded = !given.is_empty() && given.len() <= MAX_REQUEST_ID && given.bytes().all(|b| b.is_ascii_graphic());
    bounded.then(|| {
        let digest = rookery_events::sha256(given.as_bytes()).0;
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        uuid::Uuid::from_bytes(bytes)
    })
}

/// The request id of a request and what its responses echo: the caller's kept `X-Request-Id` (see
/// [`recorded_request_id`]), else a new random one.
pub fn request_id_of<B>(req: &Request<B>) -> (uuid::Uuid, HeaderValue) {
    let given = req.headers().get(super::REQUEST_ID_HEADER).and_then(|v| v.to_str().ok()).map(str::trim);
    match given.and_then(|g| recorded_request_id(g).map(|id| (id, g))) {
        // A UUID is echoed in its canonical form, any other id as the caller sent it.
        Some((id, g)) if uuid::Uuid::parse_str(g).is_err() => (id, HeaderValue::from_str(g).expect("visible ASCII is a valid header value")),
        Some((id, _)) => (id, canonical(id)),
        None => {
            let id = uuid::Uuid::new_v4();
            (id, canonical(id))
        }
    }
}

fn canonical(id: uuid::Uuid) -> HeaderValue {
    HeaderValue::from_str(&id.hyphenated().to_string()).expect("a UUID is a valid header value")
}

/// What the listener allows each client.
#[derive(Debug, Clone, Copy)]
pub struct ListenerLimits {
    /// Time to send a whole request head, from the connection (or the last request) on.
    pub header_timeout: Duration,
    /// Connections open at once; more wait in the listen queue.
    pub max_connections: usize,
}

/// Serves the API `families` on `listener` (over TLS with `tls`) until `shutdown` completes, then lets
/// open requests finish. Every answered request is counted in `metrics` by route class and status.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    families: super::Families,
    metrics: Arc<Metrics>,
    limits: ListenerLimits,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    loop {
        // At the cap, stop accepting: new connections wait in the kernel's listen queue.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: wait for some to be freed.
                    if !matches!(e.kind(), std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset) {
                        tracing::error!(error = %e, "accepting an API connection");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let families = families.clone();
        let metrics = metrics.clone();
        let service = warp::hyper::service::service_fn(move |mut req: Request<Incoming>| {
            let mut routes = warp::service(families.for_path(req.uri().path()).clone());
            let metrics = metrics.clone();
            let path = req.uri().path().to_owned();
            let (request_id, echo) = request_id_of(&req);
            let context = RequestContext { request_id, peer: Some(peer) };
            req.extensions_mut().insert(context);
            async move {
                let mut response = tower_service::Service::call(&mut routes, req).await?;
                metrics.observe_http(&path, response.status().as_u16());
                response.headers_mut().insert(super::REQUEST_ID_HEADER, echo);
                Ok::<_, Infallible>(response)
            }
        });
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _slot = slot;
            // The TLS handshake runs here, off the accept loop, so a slow client delays only itself.
            let socket = match crate::tls::accept(tls.as_ref(), stream, Duration::from_secs(10)).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "API TLS handshake failed");
                    return;
                }
            };
            let mut builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            builder.http1().timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(limits.header_timeout);
            let connection = builder.serve_connection(hyper_util::rt::TokioIo::new(socket), service).into_owned();
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(error = %e, "API connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
