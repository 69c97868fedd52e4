//! What every WKProto connection shares: the [`Gateway`] (use cases, presence, limits, TLS), the
//! protocol's timing constants, and how a session ends ([`End`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::packet::ReasonCode;
use crate::limits::Limits;
use crate::presence::{Kick, Presence};
use crate::usecase::UseCases;
use crate::Config;

pub use crate::config::NODE_ID;

/// An authenticated session that sends nothing for this long is closed. The SDKs ping every 60 s,
/// so three missed heartbeats (WuKongIM's 3 min).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(180);

/// Time a new connection has to complete the WebSocket upgrade and send CONNECT.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Most packets taken off the outbound queue, or answered from one read, for one write; bounds the
/// output buffer.
pub const WRITE_BATCH: usize = 64;

/// No more packets are taken off the outbound queue for one write once this many bytes are queued.
pub const WRITE_BUDGET: usize = 1 << 20;

/// After a kick's DISCONNECT, how long the peer has to close its side before the server closes the
/// socket (WuKongIM v2 closes kicked connections 2 s after the DISCONNECT).
pub const KICK_LINGER: Duration = Duration::from_secs(2);

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

/// How a session ends when the server stops: with a DISCONNECT unless configured otherwise.
pub(super) fn shutting_down(gateway: &Gateway) -> End {
    if gateway.config.disconnect_on_shutdown {
        End::Disconnect(ReasonCode::SYSTEM_ERROR, "server shutting down".into())
    } else {
        End::Closed
    }
}
