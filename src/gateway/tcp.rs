//! The WKProto TCP listener: accepts sockets and hands each to a session as a [`Connection`].

use tokio::net::TcpListener;
use tokio::sync::watch;

use super::conn::Connection;
use super::session::{accept_loop, Gateway};

/// Serves WKProto over TCP on `listener` until `shutdown` turns true, then waits for its sessions.
pub async fn serve(listener: TcpListener, gateway: Gateway, shutdown: watch::Receiver<bool>) {
    accept_loop(listener, gateway, shutdown, |stream, peer| async move { Some(Connection::tcp(stream, peer)) }).await;
}
