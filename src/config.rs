//! Server settings: embedded defaults, then a TOML file, then `ROOKERY_*` environment variables, then
//! command-line flags, each layer overriding the one before.

use std::net::SocketAddr;
use std::path::PathBuf;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// How appends are made durable (see `rookery_storage::Durability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DurabilitySetting {
    /// fsync once per commit group before acknowledging (survives power loss). The default.
    Sync,
    /// Write the WAL without fsync (survives `kill -9`, not power loss).
    Buffered,
}

/// Every setting of the server. Field names are the keys of the TOML file; the environment variable
/// of a key is `ROOKERY_` plus the key in upper case (`ROOKERY_API_ADDR`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the event log lives.
    pub data_dir: PathBuf,
    /// REST API listener. Loopback by default: a non-loopback address requires `manager_token`.
    pub api_addr: SocketAddr,
    /// WKProto over TCP.
    pub tcp_addr: SocketAddr,
    /// WKProto over WebSocket.
    pub ws_addr: SocketAddr,
    /// Health and metrics listener.
    pub monitor_addr: SocketAddr,
    /// When set, every API request must carry it in the `token` header.
    pub manager_token: Option<String>,
    /// Durability of appends.
    pub durability: DurabilitySetting,
    /// Largest accepted message payload, in bytes (after base64 decoding).
    pub max_payload_bytes: usize,
    /// An idle channel or user actor is passivated after this many seconds.
    pub actor_idle_secs: u64,
    /// Actors write a snapshot after this many events.
    pub snapshot_every: u64,
    /// Threads the actors are spread over (0 = one per CPU core).
    pub actor_threads: usize,
    /// TCP address handed to clients by `/route` (defaults to `tcp_addr`).
    pub external_tcp_addr: Option<String>,
    /// WebSocket URL handed to clients by `/route` (defaults to `ws://` + `ws_addr`).
    pub external_ws_addr: Option<String>,
    /// Secure WebSocket URL handed to clients by `/route` (empty unless TLS is terminated in front).
    pub external_wss_addr: Option<String>,
    /// How long a WKProto session waits for the RECVACK of a RECV, in milliseconds, before it sends the
    /// RECV again with the DUP flag.
    pub recvack_timeout_ms: u64,
    /// How many times an unacknowledged RECV is sent again before the session gives up on it (the
    /// message stays stored; the client finds it when it syncs).
    pub recv_retries: u32,
    /// Most RECVs one session keeps waiting for their RECVACK; past this the oldest is given up.
    pub max_unacked: usize,
    /// Most payload bytes (ciphertext) of the RECVs one session keeps for re-sending; past this the
    /// oldest are given up (the newest is always kept).
    pub max_unacked_bytes: usize,
    /// Packets waiting to be written to one WKProto connection. A client that stops reading fills it,
    /// and is then disconnected (without DISCONNECT, so that it reconnects and syncs).
    pub outbound_queue: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./data"),
            api_addr: ([127, 0, 0, 1], 5001).into(),
            tcp_addr: ([0, 0, 0, 0], 5100).into(),
            ws_addr: ([0, 0, 0, 0], 5200).into(),
            monitor_addr: ([127, 0, 0, 1], 5300).into(),
            manager_token: None,
            durability: DurabilitySetting::Sync,
            max_payload_bytes: 1 << 20,
            actor_idle_secs: 300,
            snapshot_every: 1000,
            actor_threads: 0,
            external_tcp_addr: None,
            external_ws_addr: None,
            external_wss_addr: None,
            recvack_timeout_ms: 5000,
            recv_retries: 3,
            max_unacked: 1024,
            max_unacked_bytes: 8 << 20,
            outbound_queue: 1024,
        }
    }
}

impl Config {
    /// Defaults, overridden by `file` (if given), then by `ROOKERY_*` environment variables.
    ///
    /// # Errors
    /// A missing or malformed file, an unknown key, or a value of the wrong type.
    pub fn load(file: Option<&std::path::Path>) -> Result<Config, Box<figment::Error>> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(Box::new(figment::Error::from(format!("config file {} does not exist", path.display()))));
            }
            fig = fig.merge(Toml::file(path));
        }
        fig.merge(Env::prefixed("ROOKERY_")).extract().map_err(Box::new)
    }

    /// Refuses settings that would expose the server unsafely or cannot work.
    ///
    /// # Errors
    /// A sentence saying what is wrong and how to fix it.
    pub fn validate(&self) -> Result<(), String> {
        let token_set = self.manager_token.as_deref().is_some_and(|t| !t.is_empty());
        if !self.api_addr.ip().is_loopback() && !token_set {
            return Err(format!(
                "the REST API would listen on {} without a manager token: set manager_token (ROOKERY_MANAGER_TOKEN) or bind api_addr to a loopback address",
                self.api_addr
            ));
        }
        if self.max_payload_bytes == 0 {
            return Err("max_payload_bytes must be at least 1".into());
        }
        if self.snapshot_every == 0 {
            return Err("snapshot_every must be at least 1".into());
        }
        if self.recvack_timeout_ms < 10 {
            return Err("recvack_timeout_ms must be at least 10".into());
        }
        if self.max_unacked == 0 {
            return Err("max_unacked must be at least 1".into());
        }
        if self.outbound_queue == 0 {
            return Err("outbound_queue must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API fixes the closure's error type
    fn file_then_environment_override_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("r.toml", "api_addr = \"127.0.0.1:6001\"\nsnapshot_every = 7\n")?;
            jail.set_env("ROOKERY_SNAPSHOT_EVERY", "9");
            let c = Config::load(Some(std::path::Path::new("r.toml"))).expect("loads");
            assert_eq!(c.api_addr.port(), 6001);
            assert_eq!(c.snapshot_every, 9);
            assert_eq!(c.tcp_addr.port(), 5100);
            Ok(())
        });
    }

    #[test]
    fn public_api_without_token_is_refused() {
        let c = Config { api_addr: ([0, 0, 0, 0], 5001).into(), ..Config::default() };
        assert!(c.validate().unwrap_err().contains("manager token"));
        let c = Config { manager_token: Some("s3cret".into()), ..c };
        assert!(c.validate().is_ok());
    }
}
