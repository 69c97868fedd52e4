//! The WKProto WebSocket listener (tokio-tungstenite on its own port, STACK.md §2): accepts sockets,
//! upgrades them on any path (spec §3.1) and hands each to a session as a [`Connection`].

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::accept::accept_loop;
use super::conn::Connection;
use super::packet::MAX_BODY_LEN;
use super::server::{Gateway, CONNECT_TIMEOUT};

/// Serves WKProto over WebSocket on `listener` until `shutdown` turns true, then waits for its
/// sessions.
pub async fn serve(listener: TcpListener, gateway: Gateway, shutdown: watch::Receiver<bool>) {
    let tls = if gateway.config.tls_ws { gateway.tls.clone() } else { None };
    accept_loop(listener, gateway, shutdown, move |stream, peer| {
        let tls = tls.clone();
        async move {
            let stream = match crate::tls::accept(tls.as_ref(), stream, CONNECT_TIMEOUT).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return None;
                }
            };
            // A message larger than the largest packet plus its header can only be garbage.
            let config = WebSocketConfig::default().max_message_size(Some(MAX_BODY_LEN + 16)).max_frame_size(Some(MAX_BODY_LEN + 16));
            match tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::accept_async_with_config(stream, Some(config))).await {
                Ok(Ok(ws)) => Some(Connection::ws(ws, peer)),
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "WebSocket upgrade failed");
                    None
                }
                Err(_) => None,
            }
        }
    })
    .await;
}
