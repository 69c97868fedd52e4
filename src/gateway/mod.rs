//! The WKProto gateway: what the official WuKongIM SDKs speak over TCP and WebSocket.
//!
//! `packet` is the pure codec (bytes to [`packet::Packet`] and back, every protocol version 1-6);
//! `crypto` is the key agreement and payload encryption of the handshake. Neither does I/O, so both
//! are tested without sockets; `docs/PROTOCOL.md` describes the wire format they implement.
//!
//! `conn` turns a TCP stream or a WebSocket into a buffered stream of packets; `tcp` and `ws` only
//! accept and adapt sockets; `session` is the per-connection task (handshake, kicks, PING, SEND,
//! delivery); `unacked` tracks the RECVs a session waits to see acknowledged; `jsonrpc` translates
//! JSON-RPC over WebSocket to and from packets, so JSON-RPC sessions share the session logic.

#![warn(missing_docs)]

pub mod conn;
pub mod crypto;
pub mod jsonrpc;
pub mod packet;
pub mod session;
pub mod tcp;
pub mod unacked;
pub mod ws;
