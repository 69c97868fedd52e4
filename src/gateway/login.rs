//! CONNECT: the credential check, the key agreement and the session's entry in presence, answered
//! with CONNACK (spec §1.7, §5).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use rookery_events::{DeviceFlag, DeviceLevel, Uid};
use tokio::sync::{mpsc, oneshot};

use super::conn::{ConnError, Connection};
use super::crypto::server_handshake;
use super::packet::{announces_server_version, negotiate_version, ConnackPacket, ConnectPacket, Packet, ReasonCode};
use super::server::{Gateway, NODE_ID};
use super::session::Session;
use super::unacked::Unacked;
use crate::presence::{Kick, Login, Outbound, Registration, SessionInfo, Stale};
use crate::usecase::{LoginRefused, UseCases};

/// How often a login re-checks its token when a concurrent REST call changed the uid's tokens.
const LOGIN_ATTEMPTS: usize = 5;

/// Authenticates CONNECT, agrees the keys and lists the session in presence (replacing conflicting
/// sessions, spec §5). On success the CONNACK is queued, not flushed, and the caller flushes it:
/// a client that has its CONNACK is already reachable by live delivery and `/user/onlinestatus`.
/// `None` when the login was refused; the CONNACK with the reason is already written.
pub(super) async fn login(
    conn: &mut Connection,
    gateway: &Gateway,
    connect: &ConnectPacket,
    outbound: mpsc::Sender<Outbound>,
) -> Result<Option<(Session, Registration, oneshot::Receiver<Kick>)>, ConnError> {
    let connack = |reason_code: ReasonCode, server_key: String, salt: String| {
        let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default();
        Packet::Connack(ConnackPacket {
            server_version: announces_server_version(connect.version).then(|| negotiate_version(connect.version)),
            time_diff: now_ms.saturating_sub(connect.client_timestamp),
            reason_code,
            server_key,
            salt,
            node_id: NODE_ID,
        })
    };
    let uid = Uid::from(connect.uid.as_str());
    for _ in 0..LOGIN_ATTEMPTS {
        let epoch = gateway.presence.epoch(&uid);
        let refused = match authenticate(&gateway.usecases, connect).await {
            Err(reason) => Some(reason),
            // JSON-RPC sessions are never encrypted (spec §3.2): no key agreement, no cipher.
            Ok(device_level) => match if conn.is_json_rpc() { Ok(None) } else { server_handshake(&connect.client_key).map(Some) } {
                Err(e) => Some(e.reason_code()),
                Ok(shake) => {
                    let (server_key, salt, cipher) = match shake {
                        Some(s) => (s.server_key, s.salt, Some(s.cipher)),
                        None => (String::new(), String::new(), None),
                    };
                    let (kick_tx, kicked) = oneshot::channel();
                    let who = Login { uid: &uid, device_flag: connect.device_flag, device_level, device_id: &connect.device_id };
                    let info = Arc::new(SessionInfo {
                        device_id: connect.device_id.clone(),
                        peer: conn.peer().to_owned(),
                        version: conn.version(),
                        transport: conn.transport(),
                        since: std::time::SystemTime::now(),
                        msgs_in: AtomicU64::new(0),
                        msgs_out: AtomicU64::new(0),
                    });
                    match gateway.presence.register(&who, epoch, outbound.clone(), kick_tx, info.clone()) {
                        // The uid's tokens changed meanwhile: check again.
                        Err(Stale) => continue,
                        Ok(registration) => {
                            conn.queue(&connack(ReasonCode::SUCCESS, server_key, salt))?;
                            tracing::debug!(peer = conn.peer(), uid = %uid, device_flag = connect.device_flag, level = device_level.0, version = conn.version(), "session open");
                            let session = Session {
                                uid: uid.clone(),
                                device_flag: DeviceFlag(connect.device_flag),
                                device_level,
                                cipher,
                                usecases: gateway.usecases.clone(),
                                presence: gateway.presence.clone(),
                                conn_id: registration.id,
                                send_limiter: gateway.limits.send_limiter(),
                                info,
                                peer: conn.peer().to_owned(),
                                unacked: Unacked::new(
                                    Duration::from_millis(gateway.config.recvack_timeout_ms),
                                    gateway.config.recv_retries,
                                    gateway.config.max_unacked,
                                    gateway.config.max_unacked_bytes,
                                ),
                            };
                            return Ok(Some((session, registration, kicked)));
                        }
                    }
                }
            },
        };
        if let Some(reason) = refused {
            tracing::debug!(peer = conn.peer(), uid = %connect.uid, %reason, "CONNECT refused");
            conn.queue(&connack(reason, String::new(), String::new()))?;
            conn.flush().await?;
            return Ok(None);
        }
    }
    // Tokens of this uid keep changing under the login; let the client retry later.
    tracing::warn!(peer = conn.peer(), uid = %uid, "login raced token changes {LOGIN_ATTEMPTS} times");
    conn.queue(&connack(ReasonCode::SYSTEM_ERROR, String::new(), String::new()))?;
    conn.flush().await?;
    Ok(None)
}

/// Checks a CONNECT's credentials (through the login use case) and answers with the CONNACK reason
/// of a refusal.
async fn authenticate(usecases: &UseCases, connect: &ConnectPacket) -> Result<DeviceLevel, ReasonCode> {
    usecases.check_login(&connect.uid, DeviceFlag(connect.device_flag), &connect.token).await.map_err(|refused| match refused {
        LoginRefused::BadCredentials => ReasonCode::AUTH_FAIL,
        LoginRefused::Banned => ReasonCode::BAN,
        LoginRefused::Unavailable => ReasonCode::SYSTEM_ERROR,
    })
}
