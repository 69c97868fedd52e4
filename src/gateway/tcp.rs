//! The WKProto TCP listener: accepts sockets and hands each to a session as a [`Connection`].

use tokio::net::TcpListener;
use tokio::sync::watch;

use super::accept::accept_loop;
use super::conn::Connection;
use super::server::{Gateway, CONNECT_TIMEOUT};

/// Serves WKProto over TCP on `listener` until `shutdown` turns true, then waits for its sessions.
pub async fn serve(listener: TcpListener, gateway: Gateway, shutdown: watch::Receiver<bool>) {
    let tls = if gateway.config.tls_tcp { gateway.tls.clone() } else { None };
    accept_loop(listener, gateway, shutdown, move |stream, peer| {
        let tls = tls.clone();
        async move {
            match crate::tls::accept(tls.as_ref(), stream, CONNECT_TIMEOUT).await {
                Ok(socket) => Some(Connection::tcp(socket, peer)),
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    None
                }
            }
        }
    })
    .await;
}
