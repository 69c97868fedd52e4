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

/// The request id of a request: the `X-Request-Id` header when it parses as a UUID (any form
/// `uuid::Uuid::parse_str` accepts), else a new random one. A malformed header is refused later, by
/// the routes, with 400.
pub fn request_id_of<B>(req: &Request<B>) -> uuid::Uuid {
    req.headers()
        .get(super::REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| uuid::Uuid::parse_str(v.trim()).ok())
        .unwrap_or_else(uuid::Uuid::new_v4)
}

/// Serves the API `families` on `listener` (over TLS with `tls`) until `shutdown` completes, then lets
/// open requests finish. Every answered request is counted in `metrics` by route class and status.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    families: super::Families,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
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
            let context = RequestContext { request_id: request_id_of(&req), peer: Some(peer) };
            req.extensions_mut().insert(context);
            async move {
                let mut response = tower_service::Service::call(&mut routes, req).await?;
                metrics.observe_http(&path, response.status().as_u16());
                let id = HeaderValue::from_str(&context.request_id.hyphenated().to_string()).expect("a UUID is a valid header value");
                response.headers_mut().insert(super::REQUEST_ID_HEADER, id);
                Ok::<_, Infallible>(response)
            }
        });
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            // The TLS handshake runs here, off the accept loop, so a slow client delays only itself.
            let socket = match crate::tls::accept(tls.as_ref(), stream, Duration::from_secs(10)).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "API TLS handshake failed");
                    return;
                }
            };
            let connection = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                .serve_connection(hyper_util::rt::TokioIo::new(socket), service)
                .into_owned();
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(error = %e, "API connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
