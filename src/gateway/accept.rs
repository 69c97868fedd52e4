//! A WKProto connection from accept to close: the accept loop shared by the TCP and WebSocket listeners
//! (a `JoinSet` of connection tasks, stopped by the same `watch` signal as the API), the CONNECT and
//! login, the session, and the closing steps (DISCONNECT when the server tells the client why, then
//! close).

use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::conn::{ConnError, Connection};
use super::login::login;
use super::packet::{self, announces_server_version, negotiate_version, ConnackPacket, DisconnectPacket, Packet, ReasonCode};
use super::server::{stopped, End, Gateway, CONNECT_TIMEOUT, KICK_LINGER, NODE_ID};
use crate::presence::Outbound;

/// Accepts connections until `shutdown` turns true, runs `adapt` (for example the WebSocket upgrade)
/// and then a session on each in its own task, and waits for every session to end.
pub(crate) async fn accept_loop<F, Fut>(listener: TcpListener, gateway: Gateway, shutdown: watch::Receiver<bool>, adapt: F)
where
    F: Fn(TcpStream, String) -> Fut,
    Fut: std::future::Future<Output = Option<Connection>> + Send + 'static,
{
    let mut sessions = JoinSet::new();
    let mut stop = shutdown.clone();
    loop {
        tokio::select! {
            () = stopped(&mut stop) => break,
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    // Counted from the accept, so connections that never log in count too.
                    let permit = gateway.limits.admit(peer.ip());
                    // Boxed: the handshake's state (a TLS accept) is freed once it is done instead of
                    // taking room in the session's future for the connection's whole life.
                    let connection = Box::pin(adapt(stream, peer.to_string()));
                    let (gateway, shutdown) = (gateway.clone(), shutdown.clone());
                    sessions.spawn(async move {
                        if let Some(conn) = connection.await {
                            let _open = gateway.presence.opened(conn.transport());
                            serve(conn, gateway, shutdown, permit).await;
                        }
                    });
                }
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    while sessions.join_next().await.is_some() {}
}

/// Runs one connection to its end and closes it. Without a `permit` (its address has the most
/// connections allowed) the CONNECT is answered with CONNACK `RateLimit`.
///
/// The futures of the closing steps are boxed: they live only while the session closes, and inline
/// they would widen every session's future (tokio keeps a task's whole future for its whole life).
pub async fn serve(mut conn: Connection, gateway: Gateway, mut shutdown: watch::Receiver<bool>, permit: Option<crate::limits::ConnectionPermit>) {
    match run(&mut conn, &gateway, &mut shutdown, permit.is_some()).await {
        Ok(End::Closed) => {}
        Ok(End::Disconnect(reason_code, reason)) => {
            tracing::debug!(peer = conn.peer(), %reason_code, %reason, "kicked; disconnecting");
            // A flush the kick interrupted resumes first, so the DISCONNECT follows whole packets.
            let disconnect = Packet::Disconnect(DisconnectPacket { reason_code, reason });
            let written = Box::pin(tokio::time::timeout(KICK_LINGER, async {
                conn.queue(&disconnect)?;
                conn.flush().await
            }))
            .await;
            if matches!(written, Ok(Ok(()))) {
                Box::pin(conn.close_after(KICK_LINGER)).await;
                return;
            }
        }
        Ok(End::Dropped(why)) => tracing::debug!(peer = conn.peer(), why, "closed by the server"),
        Err(ConnError::Protocol(reason)) => {
            tracing::debug!(peer = conn.peer(), %reason, "protocol error; disconnecting");
            let disconnect = Packet::Disconnect(DisconnectPacket { reason_code: ReasonCode::PAYLOAD_DECODE_ERROR, reason });
            if conn.queue(&disconnect).is_ok() {
                let _ = Box::pin(tokio::time::timeout(KICK_LINGER, conn.flush())).await;
            }
        }
        Err(e) => tracing::debug!(peer = conn.peer(), error = %e, "connection failed"),
    }
    Box::pin(conn.close()).await;
}

/// Runs one connection from its CONNECT to its end. Without `admitted` (its address has the most
/// connections allowed) the CONNECT is answered with CONNACK `RateLimit`.
async fn run(conn: &mut Connection, gateway: &Gateway, shutdown: &mut watch::Receiver<bool>, admitted: bool) -> Result<End, ConnError> {
    let first = match tokio::time::timeout(CONNECT_TIMEOUT, conn.read_frame()).await {
        Err(_) | Ok(Ok(None)) => return Ok(End::Closed),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(Some(frame))) => frame,
    };
    let (connect, _) = packet::decode_connect(&first)?;
    // Spec §1.7 (v3): nothing may follow CONNECT before CONNACK.
    if conn.buffered_frame()?.is_some() {
        return Err(ConnError::Protocol("packet sent before CONNACK".into()));
    }
    conn.set_version(negotiate_version(connect.version));
    if !admitted {
        tracing::info!(peer = conn.peer(), limit = gateway.config.max_connections_per_ip, "too many connections from this address; refused");
        conn.queue(&Packet::Connack(ConnackPacket {
            server_version: announces_server_version(connect.version).then(|| negotiate_version(connect.version)),
            time_diff: 0,
            reason_code: ReasonCode::RATE_LIMIT,
            server_key: String::new(),
            salt: String::new(),
            node_id: NODE_ID,
        }))?;
        conn.flush().await?;
        return Ok(End::Closed);
    }
    let (outbound_tx, outbound) = mpsc::channel::<Outbound>(gateway.config.outbound_queue);
    let Some((session, _registration, kicked)) = login(conn, gateway, &connect, outbound_tx).await? else {
        return Ok(End::Closed);
    };
    // The successful CONNACK, only now that the session can be reached.
    conn.flush().await?;
    session.serve(conn, gateway, shutdown, outbound, kicked).await
}
