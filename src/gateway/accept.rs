//! Accepting WKProto connections and ending them: the accept loop shared by the TCP and WebSocket
//! listeners (a `JoinSet` of session tasks, stopped by the same `watch` signal as the API), and the
//! closing steps of a session (DISCONNECT when the server tells the client why, then close).

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::conn::{ConnError, Connection};
use super::packet::{DisconnectPacket, Packet, ReasonCode};
use super::session::KICK_LINGER;
use crate::limits::Limits;
use crate::presence::{Kick, Presence};
use crate::usecase::UseCases;
use crate::Config;

/// What every session shares.
#[derive(Clone)]
pub struct Gateway {
    /// The use cases (sending, logins).
    pub usecases: UseCases,
    /// Server settings.
    pub config: Arc<Config>,
    /// Online sessions.
    pub presence: Arc<Presence>,
    /// SEND rate and connections-per-address limits (and the REST API's per-credential rate).
    pub limits: Arc<Limits>,
    /// The TLS acceptor, when a listener has TLS on.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Gateway {
    /// A gateway with nobody online.
    pub fn new(usecases: UseCases, limits: Arc<Limits>, tls: Option<tokio_rustls::TlsAcceptor>) -> Gateway {
        Gateway { config: usecases.config().clone(), presence: usecases.presence().clone(), usecases, limits, tls }
    }
}

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

/// Completes once the stop signal is true (or its sender is gone).
pub(super) async fn stopped(rx: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`; drop it here rather than in a `select!` arm.
    let _ = rx.wait_for(|s| *s).await.map(|_| ());
}

/// How a session ended, when not by an error.
pub(super) enum End {
    /// The peer closed, the session idled out or the server stops.
    Closed,
    /// The server ends it and tells the client why: DISCONNECT, then close.
    Disconnect(ReasonCode, String),
    /// The server ends it without telling the client (a replacing login from the same device, a
    /// full outbound queue), so that the client reconnects.
    Dropped(&'static str),
}

impl From<Kick> for End {
    fn from(kick: Kick) -> End {
        match kick {
            // WuKongIM's kick: the SDKs stop reconnecting on a DISCONNECT.
            Kick::LoggedOut(reason) => End::Disconnect(ReasonCode::CONNECT_KICK, reason),
            Kick::Close(why) => End::Dropped(why),
        }
    }
}

/// Runs one connection to its end and closes it. Without a `permit` (its address has the most
/// connections allowed) the CONNECT is answered with CONNACK `RateLimit`.
///
/// The futures of the closing steps are boxed: they live only while the session closes, and inline
/// they would widen every session's future (tokio keeps a task's whole future for its whole life).
pub async fn serve(mut conn: Connection, gateway: Gateway, mut shutdown: watch::Receiver<bool>, permit: Option<crate::limits::ConnectionPermit>) {
    match super::session::run(&mut conn, &gateway, &mut shutdown, permit.is_some()).await {
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

/// How a session ends when the server stops: with a DISCONNECT unless configured otherwise.
pub(super) fn shutting_down(gateway: &Gateway) -> End {
    if gateway.config.disconnect_on_shutdown {
        End::Disconnect(ReasonCode::SYSTEM_ERROR, "server shutting down".into())
    } else {
        End::Closed
    }
}
