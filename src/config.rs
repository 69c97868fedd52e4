//! Server settings: embedded defaults, then a TOML file, then WuKongIM's `WK_*` environment variables
//! (those with a Rookery equivalent, see [`WK_ENV`]), then `ROOKERY_*` environment variables, then
//! command-line flags, each layer overriding the one before.

use std::net::SocketAddr;
use std::path::PathBuf;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// This node's id, as WKProto's CONNACK (version 4 and above) and `/varz` report it: Rookery runs as
/// a single node.
pub const NODE_ID: u64 = 1;

/// Every setting's key (the field names of [`Config`]), read off a configuration with every optional
/// setting present.
fn setting_keys() -> Vec<String> {
    let some = || Some(String::new());
    let path = || Some(PathBuf::new());
    let full = Config {
        manager_token: some(),
        external_tcp_addr: some(),
        external_ws_addr: some(),
        external_wss_addr: some(),
        webhook_url: some(),
        webhook_secret: some(),
        webhook_ca_file: path(),
        tls_cert_file: path(),
        tls_key_file: path(),
        disk_free_probe_file: path(),
        openim: Some(OpenImApp { tag: String::new(), secret: String::new(), admin_uid: String::new(), token_ttl_secs: 0 }),
        popim: Some(PopImApp { tag: String::new(), token: some(), settings: Default::default() }),
        ..Config::default()
    };
    match toml::Value::try_from(full) {
        Ok(toml::Value::Table(t)) => t.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// How appends are made durable (see `rookery_storage::Durability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DurabilitySetting {
    /// fsync once per commit group before acknowledging (survives power loss). The default.
    Sync,
    /// Write the WAL without fsync (survives `kill -9`, not power loss).
    Buffered,
}

/// How a conversation's unread count is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnreadCounting {
    /// WuKongIM v2's rule, the default: every message after the read point (the last seq minus the
    /// seq read to, the user's own last message moving that point).
    Seq,
    /// Only messages with the red-dot flag (what the SDKs count for messages that arrive live).
    RedDot,
}

/// How log lines are written to standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines. The default.
    Text,
    /// One JSON object per line (time, level, target, message and fields), for log collectors.
    Json,
}

/// What an API credential may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Read routes and audit queries only; every route that changes state answers 403.
    ReadOnly,
    /// Everything.
    Admin,
}

/// A named API credential. The name is what the audit trail records; the secret never leaves the
/// configuration.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// Recorded as the actor of every change made with this key: 1 to 64 of `A-Z a-z 0-9 . _ -`.
    pub name: String,
    /// Sent by clients in the `token` header.
    pub secret: String,
    /// What the key may do.
    pub scope: Scope,
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey").field("name", &self.name).field("secret", &"<redacted>").field("scope", &self.scope).finish()
    }
}

/// A JMessage app (seed 002): its users, groups and rooms form one tenant of the server. Clients of the
/// JMessage family authenticate with HTTP Basic `base64(appkey:master_secret)`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JmApp {
    /// The tenant's permanent tag: 1 to 8 of `a-z 0-9`, the prefix of its internal ids. Never change it
    /// once the app has data.
    pub tag: String,
    /// The app's key, 1 to 64 letters and digits, compared without regard to case (JMessage's are 24).
    pub appkey: String,
    /// The app's master secret (never shown, never stored in the log).
    pub master_secret: String,
    /// Appkeys of other apps of this server whose users this app may name in the cross-app routes
    /// (`/v1/cross/...`); none by default.
    #[serde(default)]
    pub cross_apps: Vec<String>,
}

impl std::fmt::Debug for JmApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JmApp").field("tag", &self.tag).field("appkey", &self.appkey).field("master_secret", &"<redacted>").finish()
    }
}

/// The OpenIM app (seed 004) the OpenIM family serves: its users and groups form one tenant of the
/// server. App servers get tokens with `secret` on `/auth/*`, and call every other route with a token
/// of the `admin_uid` account in the `token` header.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenImApp {
    /// The tenant's permanent tag, as for a JMessage app (1 to 8 of `a-z 0-9`, unique among the apps).
    #[serde(default = "default_openim_tag")]
    pub tag: String,
    /// The shared secret of `/auth/*` (1 to 32 characters; never shown, never stored in the log).
    pub secret: String,
    /// The app manager's uid (OpenIM's `appmanageruid`): its tokens authorize the admin routes.
    pub admin_uid: String,
    /// How long an issued token authenticates, in seconds (7 days by default).
    #[serde(default = "default_token_ttl_secs")]
    pub token_ttl_secs: u64,
}

fn default_openim_tag() -> String {
    "oim".into()
}

fn default_token_ttl_secs() -> u64 {
    7 * 24 * 3600
}

impl std::fmt::Debug for OpenImApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenImApp")
            .field("tag", &self.tag)
            .field("secret", &"<redacted>")
            .field("admin_uid", &self.admin_uid)
            .field("token_ttl_secs", &self.token_ttl_secs)
            .finish()
    }
}

/// The PopIM-style app (seed 003) the PopIM family serves under `/api/`: its users and groups form one
/// tenant of the server. The document has no credential (its caller is the app's own backend, acting
/// for its signed-in user `login_uid`); `token`, when set, must come in every request's `token` header,
/// and must be set when the API listens beyond loopback.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PopImApp {
    /// The tenant's permanent tag (1 to 8 of `a-z 0-9`, unique among the apps; `pop` by default).
    #[serde(default = "default_popim_tag")]
    pub tag: String,
    /// The credential callers send in the `token` header (never shown, never stored in the log).
    #[serde(default)]
    pub token: Option<String>,
    /// Overrides of the app's settings (`/api/pop/getsetting`): `on`/`off` switches such as `register`,
    /// `add_friend`, `create_group`, `private_chat`, `group_chat`, `upload_img`, `upload_file`,
    /// `stranger_chat` (enforced), and texts such as `app_name` and `ws_address`.
    #[serde(default)]
    pub settings: std::collections::BTreeMap<String, String>,
}

fn default_popim_tag() -> String {
    "pop".into()
}

impl std::fmt::Debug for PopImApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PopImApp").field("tag", &self.tag).field("token", &self.token.as_ref().map(|_| "<redacted>")).field("settings", &self.settings).finish()
    }
}

/// The credential name recorded when no credential is configured (loopback-only API).
pub const LOCAL_CREDENTIAL: &str = "local";
/// The name of the credential `manager_token` defines.
pub const MANAGER_CREDENTIAL: &str = "manager";

/// Largest accepted `dedupe_window`: a million messages is about 50 MB per busy channel.
pub const MAX_DEDUPE_WINDOW: u64 = 1_000_000;

/// Every setting of the server. Field names are the keys of the TOML file; the environment variable
/// of a key is `ROOKERY_` plus the key in upper case (`ROOKERY_API_ADDR`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the event log lives.
    pub data_dir: PathBuf,
    /// REST API listener. Loopback by default: a non-loopback address requires a credential
    /// (`manager_token` or an entry of `api_keys`).
    pub api_addr: SocketAddr,
    /// WKProto over TCP.
    pub tcp_addr: SocketAddr,
    /// WKProto over WebSocket.
    pub ws_addr: SocketAddr,
    /// Health and metrics listener.
    pub monitor_addr: SocketAddr,
    /// When set, an admin credential named `manager`: API requests may carry it in the `token` header.
    pub manager_token: Option<String>,
    /// Named API credentials. Once any credential (this or `manager_token`) is configured, every API
    /// request must carry one of their secrets in the `token` header.
    pub api_keys: Vec<ApiKey>,
    /// A client of the REST API that has not sent a whole request head this many milliseconds after
    /// connecting (or after its last request) is disconnected, so slow clients cannot hold sockets.
    pub api_header_timeout_ms: u64,
    /// Most REST API connections open at once; past it, new connections wait in the listen queue until
    /// one closes.
    pub api_max_connections: usize,
    /// Most payload bytes one page of history holds (`/channel/messagesync`); a page stops early, with
    /// `more`, once its messages pass it (a page holds at least one message).
    pub max_page_bytes: usize,
    /// The JMessage apps the JMessage family serves (`/v1/`, `/v2/`, `/groups/`, `/cross/`). None by
    /// default: the family then refuses every request and says how to configure one.
    pub jmessage_apps: Vec<JmApp>,
    /// The OpenIM app the OpenIM family serves (`/auth/...`, `/group/...`, `/friend/...`, `/user/...`,
    /// `/manager/...`, the document's twelve paths). None by default: the family then refuses every
    /// request and says how to configure it.
    pub openim: Option<OpenImApp>,
    /// The PopIM-style app the PopIM family serves (`/api/...`). None by default: the family then
    /// refuses every request and says how to configure it.
    pub popim: Option<PopImApp>,
    /// Durability of appends.
    pub durability: DurabilitySetting,
    /// How conversation unread counts are counted.
    pub unread_counting: UnreadCounting,
    /// Most committed records whose index entries wait in memory for the event log's indexer; past it,
    /// appends wait for the indexer (the memory bound of that wait).
    pub log_max_unindexed_records: u64,
    /// Largest accepted message payload, in bytes (after base64 decoding).
    pub max_payload_bytes: usize,
    /// Free bytes the data directory's filesystem must keep: below it every write is refused (REST 507,
    /// SENDACK system error) before anything is written, `/readyz` answers 503, and writes resume once
    /// space is freed. 0 turns the check off.
    pub disk_reserve_bytes: u64,
    /// For disk-full drills: read the free bytes from this file instead of the filesystem.
    pub disk_free_probe_file: Option<PathBuf>,
    /// An idle channel or user actor is passivated after this many seconds.
    pub actor_idle_secs: u64,
    /// Actors write a snapshot after this many events.
    pub snapshot_every: u64,
    /// A retried send (same sender and client_msg_no) is recognised while its original is among the
    /// last this many messages of its channel (1 to [`MAX_DEDUPE_WINDOW`]).
    pub dedupe_window: u64,
    /// Threads the actors are spread over (0 = one per CPU core).
    pub actor_threads: usize,
    /// TCP address handed to clients by `/route` (defaults to `tcp_addr`).
    pub external_tcp_addr: Option<String>,
    /// WebSocket URL handed to clients by `/route` (defaults to `ws://` + `ws_addr`).
    pub external_ws_addr: Option<String>,
    /// Secure WebSocket URL handed to clients by `/route` (empty unless TLS is terminated in front).
    pub external_wss_addr: Option<String>,
    /// Where webhooks are POSTed (`?event=<name>` is added); none when unset.
    pub webhook_url: Option<String>,
    /// Key of the `X-Rookery-Signature` HMAC-SHA256 header; unsigned when unset.
    pub webhook_secret: Option<String>,
    /// PEM certificates trusted for an `https://` webhook receiver besides the system's roots (a
    /// private CA, or the receiver's own self-signed certificate).
    pub webhook_ca_file: Option<std::path::PathBuf>,
    /// Only these events are sent (`msg.notify`, `msg.offline`, `user.onlinestatus`); all when empty.
    pub webhook_focus_events: Vec<String>,
    /// Most messages in one `msg.notify` request.
    pub webhook_batch: usize,
    /// How often the webhook worker looks for new messages when it has caught up, in milliseconds.
    pub webhook_interval_ms: u64,
    /// Time allowed for one webhook request, in milliseconds.
    pub webhook_timeout_ms: u64,
    /// Longest wait between retries of a failed webhook, in milliseconds (backoff doubles up to it).
    pub webhook_max_backoff_ms: u64,
    /// Attempts per webhook delivery before it is set aside as a dead letter and later ones go on
    /// (0: retry for ever, holding back everything after it).
    pub webhook_max_attempts: u32,
    /// Online status changes waiting for delivery; more are dropped (and logged) while the receiver
    /// is down.
    pub webhook_status_queue: usize,
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
    /// On SIGTERM, send every WKProto session a DISCONNECT (reason 15, "server shutting down") before
    /// closing it. The SDKs stop reconnecting on a DISCONNECT, so turn this off for restarts that
    /// clients should ride out (they then see a plain close and reconnect).
    pub disconnect_on_shutdown: bool,
    /// SENDs per second one WKProto connection may make; more get SENDACK reason 22 (RateLimit) and
    /// are not stored. 0 turns the limit off.
    pub send_rate_limit: u32,
    /// SENDs one connection may make at once before `send_rate_limit` applies.
    pub send_rate_burst: u32,
    /// REST requests per second per API credential; more get HTTP 429 with `Retry-After`. 0 turns the
    /// limit off.
    pub api_rate_limit: u32,
    /// REST requests one credential may make at once before `api_rate_limit` applies.
    pub api_rate_burst: u32,
    /// WKProto connections (TCP and WebSocket together) one client address may hold; more get CONNACK
    /// reason 22. 0 turns the limit off (the default: many users may share one NAT address).
    pub max_connections_per_ip: usize,
    /// PEM certificate chain for the listeners with TLS on.
    pub tls_cert_file: Option<std::path::PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `tls_cert_file`.
    pub tls_key_file: Option<std::path::PathBuf>,
    /// Serve the REST API over HTTPS.
    pub tls_api: bool,
    /// Serve WKProto over TLS on the TCP listener.
    pub tls_tcp: bool,
    /// Serve WKProto over secure WebSocket (wss) on the WebSocket listener.
    pub tls_ws: bool,
    /// Log line format (`text` or `json`); the level filter comes from `RUST_LOG` (default `info`).
    pub log_format: LogFormat,
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
            api_keys: Vec::new(),
            api_header_timeout_ms: 10_000,
            api_max_connections: 4096,
            max_page_bytes: 16 << 20,
            jmessage_apps: Vec::new(),
            openim: None,
            popim: None,
            durability: DurabilitySetting::Sync,
            unread_counting: UnreadCounting::Seq,
            log_max_unindexed_records: 1 << 20,
            max_payload_bytes: 1 << 20,
            disk_reserve_bytes: 64 << 20,
            disk_free_probe_file: None,
            actor_idle_secs: 300,
            snapshot_every: 1000,
            dedupe_window: 4096,
            actor_threads: 0,
            external_tcp_addr: None,
            external_ws_addr: None,
            external_wss_addr: None,
            webhook_url: None,
            webhook_secret: None,
            webhook_ca_file: None,
            webhook_focus_events: Vec::new(),
            webhook_batch: 100,
            webhook_interval_ms: 500,
            webhook_timeout_ms: 5000,
            webhook_max_backoff_ms: 30_000,
            webhook_max_attempts: 20,
            webhook_status_queue: 10_000,
            recvack_timeout_ms: 5000,
            disconnect_on_shutdown: true,
            send_rate_limit: 1000,
            send_rate_burst: 2000,
            api_rate_limit: 20_000,
            api_rate_burst: 40_000,
            max_connections_per_ip: 0,
            tls_cert_file: None,
            tls_key_file: None,
            tls_api: false,
            tls_tcp: false,
            tls_ws: false,
            recv_retries: 3,
            max_unacked: 1024,
            max_unacked_bytes: 8 << 20,
            outbound_queue: 1024,
            log_format: LogFormat::Text,
        }
    }
}

/// WuKongIM's environment variables that have a Rookery setting, as `(variable, setting, scheme)`.
/// `scheme` is the URL scheme WuKongIM writes in front of that address (`tcp://`, `ws://`), which is
/// stripped; any other scheme is refused. A `ROOKERY_*` variable for the same setting wins.
pub const WK_ENV: &[(&str, &str, Option<&str>)] = &[
    ("WK_ROOTDIR", "data_dir", None),
    ("WK_HTTPADDR", "api_addr", None),
    ("WK_ADDR", "tcp_addr", Some("tcp://")),
    ("WK_WSADDR", "ws_addr", Some("ws://")),
    ("WK_MONITOR_ADDR", "monitor_addr", None),
    ("WK_MANAGERTOKEN", "manager_token", None),
    ("WK_EXTERNAL_TCPADDR", "external_tcp_addr", None),
    ("WK_EXTERNAL_WSADDR", "external_ws_addr", None),
    ("WK_EXTERNAL_WSSADDR", "external_wss_addr", None),
];

/// The settings the `WK_*` environment variables give, by Rookery key.
fn wukongim_env() -> Result<std::collections::BTreeMap<String, String>, String> {
    let mut settings = std::collections::BTreeMap::new();
    for (var, key, scheme) in WK_ENV {
        let Ok(raw) = std::env::var(var) else { continue };
        let value = raw.trim();
        let value = match (scheme, value.split_once("://")) {
            (Some(s), Some((given, rest))) if s.trim_end_matches("://") == given => rest,
            (Some(s), Some((given, _))) => {
                return Err(format!("{var}={raw:?}: the scheme {given}:// is not served here (expected {s}host:port or host:port)"));
            }
            _ => value,
        };
        settings.insert((*key).to_string(), value.to_string());
    }
    Ok(settings)
}

/// What [`Config::redacted`] writes instead of a secret.
pub const HIDDEN: &str = "<hidden>";

impl Config {
    /// Defaults, overridden by `file` (if given), then by the `WK_*` variables of [`WK_ENV`], then by
    /// `ROOKERY_*` environment variables.
    ///
    /// # Errors
    /// A missing or malformed file, an unknown key, a value of the wrong type, or a `WK_*` address
    /// with a scheme Rookery does not serve.
    pub fn load(file: Option<&std::path::Path>) -> Result<Config, Box<figment::Error>> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(Box::new(figment::Error::from(format!("config file {} does not exist", path.display()))));
            }
            fig = fig.merge(Toml::file(path));
        }
        let wk = wukongim_env().map_err(|e| Box::new(figment::Error::from(e)))?;
        let known = setting_keys();
        // Other `ROOKERY_*` variables are not settings (Kubernetes sets ROOKERY_PORT and the like for a
        // Service named rookery): they are left out here and reported by `ignored_env`.
        let env = Env::prefixed("ROOKERY_").filter(move |key| known.iter().any(|k| key.as_str().eq_ignore_ascii_case(k)));
        fig.merge(Serialized::defaults(wk)).merge(env).extract().map_err(Box::new)
    }

    /// The `ROOKERY_*` environment variables that name no setting, which [`Config::load`] ignores; the
    /// server logs a warning for each (a misspelt setting then shows up in the log).
    pub fn ignored_env() -> Vec<String> {
        let known = setting_keys();
        std::env::vars_os()
            .filter_map(|(k, _)| k.into_string().ok())
            .filter(|k| k.strip_prefix("ROOKERY_").is_some_and(|rest| !known.iter().any(|s| rest.eq_ignore_ascii_case(s))))
            .collect()
    }

    /// A copy with every secret (`manager_token`, each `api_keys` secret) replaced by [`HIDDEN`],
    /// for printing.
    pub fn redacted(&self) -> Config {
        let mut c = self.clone();
        if c.manager_token.is_some() {
            c.manager_token = Some(HIDDEN.into());
        }
        for key in &mut c.api_keys {
            key.secret = HIDDEN.into();
        }
        for app in &mut c.jmessage_apps {
            app.master_secret = HIDDEN.into();
        }
        if let Some(app) = &mut c.openim {
            app.secret = HIDDEN.into();
        }
        if let Some(token) = c.popim.as_mut().and_then(|app| app.token.as_mut()) {
            *token = HIDDEN.into();
        }
        c
    }

    /// The settings as TOML, secrets hidden (see [`Config::redacted`]); optional settings that are
    /// not set are listed as comments.
    ///
    /// # Errors
    /// Only if a value cannot be written as TOML (a data directory that is not UTF-8).
    pub fn to_toml(&self) -> Result<String, String> {
        let c = self.redacted();
        let mut out = toml::to_string(&c).map_err(|e| format!("writing the settings as TOML: {e}"))?;
        let unset = [
            ("manager_token", c.manager_token.is_none()),
            ("external_tcp_addr", c.external_tcp_addr.is_none()),
            ("external_ws_addr", c.external_ws_addr.is_none()),
            ("external_wss_addr", c.external_wss_addr.is_none()),
            ("openim", c.openim.is_none()),
            ("disk_free_probe_file", c.disk_free_probe_file.is_none()),
            ("popim", c.popim.is_none()),
        ];
        for (key, is_unset) in unset {
            if is_unset {
                out.push_str(&format!("# {key} is not set\n"));
            }
        }
        Ok(out)
    }

    /// Refuses settings that would expose the server unsafely or cannot work.
    ///
    /// # Errors
    /// A sentence saying what is wrong and how to fix it.
    pub fn validate(&self) -> Result<(), String> {
        self.validate_api_keys()?;
        self.validate_jmessage_apps()?;
        self.validate_openim()?;
        self.validate_popim()?;
        if self.api_header_timeout_ms == 0 || self.api_max_connections == 0 || self.max_page_bytes == 0 {
            return Err("api_header_timeout_ms, api_max_connections and max_page_bytes must be at least 1".into());
        }
        self.validate_webhook()?;
        if (self.tls_api || self.tls_tcp || self.tls_ws) && (self.tls_cert_file.is_none() || self.tls_key_file.is_none()) {
            return Err("tls_api, tls_tcp or tls_ws is on but tls_cert_file and tls_key_file are not both set".into());
        }
        if !self.api_addr.ip().is_loopback() && self.credentials().is_empty() {
            return Err(format!(
                "the REST API would listen on {} without a credential: set manager_token (ROOKERY_MANAGER_TOKEN) or api_keys, or bind api_addr to a loopback address",
                self.api_addr
            ));
        }
        if self.log_max_unindexed_records == 0 {
            return Err("log_max_unindexed_records must be at least 1".into());
        }
        if self.max_payload_bytes == 0 {
            return Err("max_payload_bytes must be at least 1".into());
        }
        if self.snapshot_every == 0 {
            return Err("snapshot_every must be at least 1".into());
        }
        if !(1..=MAX_DEDUPE_WINDOW).contains(&self.dedupe_window) {
            return Err(format!("dedupe_window must be from 1 to {MAX_DEDUPE_WINDOW} (each busy channel keeps about 50 bytes per message of it in memory)"));
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

impl Config {
    /// The configured API credential whose secret `given` is; `None` when it is none of them. Secrets
    /// are compared as SHA-256 digests in constant time, against every credential, so neither timing nor
    /// length tells how close a guess was.
    pub fn credential_for(&self, given: &str) -> Option<ApiKey> {
        use subtle::ConstantTimeEq;
        let given = rookery_events::sha256(given.as_bytes());
        let mut found = None;
        for key in self.credentials() {
            let matches = bool::from(rookery_events::sha256(key.secret.as_bytes()).0.ct_eq(&given.0));
            if matches && found.is_none() {
                found = Some(key);
            }
        }
        found
    }

    /// Every configured API credential: `manager_token` as the admin key `manager`, then `api_keys`.
    /// Empty when the API is open (loopback only).
    pub fn credentials(&self) -> Vec<ApiKey> {
        let manager = self.manager_token.as_deref().filter(|t| !t.is_empty()).map(|secret| ApiKey {
            name: MANAGER_CREDENTIAL.into(),
            secret: secret.into(),
            scope: Scope::Admin,
        });
        manager.into_iter().chain(self.api_keys.iter().cloned()).collect()
    }

    fn validate_webhook(&self) -> Result<(), String> {
        if let Some(url) = self.webhook_url.as_deref().filter(|u| !u.is_empty()) {
            if !url.starts_with("http://") && !url.starts_with("https://") {
                return Err(format!("webhook_url must be an http:// or https:// URL (got {url:?})"));
            }
        }
        for e in &self.webhook_focus_events {
            if !matches!(e.as_str(), "msg.notify" | "msg.offline" | "user.onlinestatus") {
                return Err(format!("unknown webhook event {e:?} in webhook_focus_events; events are msg.notify, msg.offline, user.onlinestatus"));
            }
        }
        if self.webhook_batch == 0 || self.webhook_timeout_ms == 0 {
            return Err("webhook_batch and webhook_timeout_ms must be at least 1".into());
        }
        Ok(())
    }

    fn validate_jmessage_apps(&self) -> Result<(), String> {
        let mut tags = std::collections::HashSet::new();
        let mut keys = std::collections::HashSet::new();
        for (i, app) in self.jmessage_apps.iter().enumerate() {
            if app.tag.is_empty() || app.tag.len() > 8 || !app.tag.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
                return Err(format!("jmessage_apps[{i}]: tag {:?} must be 1 to 8 of a-z 0-9", app.tag));
            }
            if app.appkey.is_empty() || app.appkey.len() > 64 || !app.appkey.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(format!("jmessage_apps[{i}] ({}): appkey must be 1 to 64 letters and digits", app.tag));
            }
            if app.master_secret.is_empty() {
                return Err(format!("jmessage_apps[{i}] ({}): the master_secret must not be empty", app.tag));
            }
            if !tags.insert(&app.tag) {
                return Err(format!("jmessage_apps[{i}]: the tag {:?} is used twice", app.tag));
            }
            if !keys.insert(app.appkey.to_ascii_lowercase()) {
                return Err(format!("jmessage_apps[{i}] ({}): the appkey is used twice (appkeys are compared without regard to case)", app.tag));
            }
        }
        for app in &self.jmessage_apps {
            for other in &app.cross_apps {
                let known = self.jmessage_apps.iter().any(|a| a.appkey.eq_ignore_ascii_case(other) && a.tag != app.tag);
                if !known {
                    return Err(format!("jmessage_apps ({}): cross_apps names {other:?}, which is not the appkey of another app of this server", app.tag));
                }
            }
        }
        Ok(())
    }

    fn validate_openim(&self) -> Result<(), String> {
        let Some(app) = &self.openim else { return Ok(()) };
        if app.tag.is_empty() || app.tag.len() > 8 || !app.tag.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
            return Err(format!("openim: tag {:?} must be 1 to 8 of a-z 0-9", app.tag));
        }
        if self.jmessage_apps.iter().any(|a| a.tag == app.tag) {
            return Err(format!("openim: the tag {:?} is a JMessage app's too; each app needs its own", app.tag));
        }
        let chars = app.secret.chars().count();
        if chars == 0 || chars > 32 {
            return Err("openim: the secret must be 1 to 32 characters".into());
        }
        let uid_chars = app.admin_uid.chars().count();
        if uid_chars == 0 || uid_chars > 64 {
            return Err("openim: admin_uid must be 1 to 64 characters".into());
        }
        if app.token_ttl_secs == 0 || app.token_ttl_secs > 10 * 365 * 24 * 3600 {
            return Err("openim: token_ttl_secs must be 1 second to 10 years".into());
        }
        Ok(())
    }

    fn validate_popim(&self) -> Result<(), String> {
        let Some(app) = &self.popim else { return Ok(()) };
        if app.tag.is_empty() || app.tag.len() > 8 || !app.tag.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
            return Err(format!("popim: tag {:?} must be 1 to 8 of a-z 0-9", app.tag));
        }
        if self.jmessage_apps.iter().any(|a| a.tag == app.tag) || self.openim.as_ref().is_some_and(|o| o.tag == app.tag) {
            return Err(format!("popim: the tag {:?} is another app's too; each app needs its own", app.tag));
        }
        if app.token.as_deref().is_some_and(str::is_empty) {
            return Err("popim: token must not be empty (leave it out to serve loopback only)".into());
        }
        if app.token.is_none() && !self.api_addr.ip().is_loopback() {
            return Err(format!(
                "popim: the PopIM family trusts login_uid and would listen on {} without a credential: set popim.token (its callers send it in the token header), or bind api_addr to a loopback address",
                self.api_addr
            ));
        }
        Ok(())
    }

    fn validate_api_keys(&self) -> Result<(), String> {
        let mut names = std::collections::HashSet::new();
        let mut secrets = std::collections::HashSet::new();
        if self.manager_token.as_deref().is_some_and(|t| !t.is_empty()) {
            names.insert(MANAGER_CREDENTIAL);
            secrets.insert(self.manager_token.as_deref().unwrap_or_default());
        }
        for (i, key) in self.api_keys.iter().enumerate() {
            let valid_name =
                !key.name.is_empty() && key.name.len() <= 64 && key.name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if !valid_name {
                return Err(format!("api_keys[{i}]: name {:?} must be 1 to 64 of A-Z a-z 0-9 . _ -", key.name));
            }
            if key.name == LOCAL_CREDENTIAL {
                return Err(format!("api_keys[{i}]: the name {LOCAL_CREDENTIAL:?} is reserved for requests when no credential is configured"));
            }
            if !names.insert(&key.name) {
                let hint = if key.name == MANAGER_CREDENTIAL { " (manager_token already defines the credential \"manager\")" } else { "" };
                return Err(format!("api_keys[{i}]: the name {:?} is used twice{hint}", key.name));
            }
            if key.secret.is_empty() {
                return Err(format!("api_keys[{i}] ({}): the secret must not be empty", key.name));
            }
            if !secrets.insert(&key.secret) {
                return Err(format!("api_keys[{i}] ({}): its secret is also another credential's; each credential needs its own", key.name));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_popim_family_needs_a_token_beyond_loopback() {
        let app = PopImApp { tag: "pop".into(), token: None, settings: Default::default() };
        let local = Config { popim: Some(app.clone()), ..Config::default() };
        assert!(local.validate().is_ok(), "loopback without a token");
        let public = Config { api_addr: ([0, 0, 0, 0], 5001).into(), manager_token: Some("m".into()), popim: Some(app.clone()), ..Config::default() };
        assert!(public.validate().unwrap_err().contains("popim.token"));
        let tokened = Config { popim: Some(PopImApp { token: Some("t".into()), ..app.clone() }), ..public };
        assert!(tokened.validate().is_ok());
        assert!(!tokened.to_toml().unwrap().contains("token = \"t\""), "hidden");
        let empty = Config { popim: Some(PopImApp { token: Some(String::new()), ..app }), ..Config::default() };
        assert!(empty.validate().is_err());
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API fixes the closure's error type
    fn the_openim_app_is_read_with_defaults_validated_and_its_secret_hidden() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("r.toml", "[openim]\nsecret = \"tuoyun\"\nadmin_uid = \"openIM123456\"\n")?;
            let c = Config::load(Some(std::path::Path::new("r.toml"))).expect("loads");
            let app = c.openim.clone().expect("configured");
            assert_eq!((app.tag.as_str(), app.token_ttl_secs), ("oim", 7 * 24 * 3600));
            assert!(!c.to_toml().unwrap().contains("tuoyun"));
            let with = |f: &dyn Fn(&mut OpenImApp)| {
                let mut bad = c.clone();
                f(bad.openim.as_mut().unwrap());
                bad.validate()
            };
            assert!(with(&|a| a.secret = "s".repeat(33)).unwrap_err().contains("secret"));
            assert!(with(&|a| a.secret = "密".repeat(32)).is_ok(), "32 characters, not bytes");
            assert!(with(&|a| a.admin_uid.clear()).unwrap_err().contains("admin_uid"));
            assert!(with(&|a| a.tag = "OIM".into()).unwrap_err().contains("tag"));
            assert!(with(&|a| a.token_ttl_secs = 0).unwrap_err().contains("token_ttl_secs"));
            let mut clash = c.clone();
            clash.jmessage_apps.push(JmApp { tag: "oim".into(), appkey: "k1".into(), master_secret: "m".into(), cross_apps: vec![] });
            assert!(clash.validate().unwrap_err().contains("tag"));
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API fixes the closure's error type
    fn file_then_environment_override_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("r.toml", "api_addr = \"127.0.0.1:6001\"\nsnapshot_every = 7\n")?;
            jail.set_env("ROOKERY_SNAPSHOT_EVERY", "9");
            jail.set_env("ROOKERY_LOG_MAX_UNINDEXED_RECORDS", "5000");
            jail.set_env("ROOKERY_DEDUPE_WINDOW", "100");
            let c = Config::load(Some(std::path::Path::new("r.toml"))).expect("loads");
            assert_eq!(c.api_addr.port(), 6001);
            assert_eq!(c.snapshot_every, 9);
            assert_eq!(c.log_max_unindexed_records, 5000);
            assert_eq!(c.dedupe_window, 100);
            assert_eq!(c.tcp_addr.port(), 5100);
            for window in [0, MAX_DEDUPE_WINDOW + 1] {
                let refused = Config { dedupe_window: window, ..c.clone() };
                assert!(refused.validate().unwrap_err().contains("dedupe_window"));
            }
            let zero = Config { log_max_unindexed_records: 0, ..c };
            assert!(zero.validate().unwrap_err().contains("log_max_unindexed_records"));
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API fixes the closure's error type
    fn rookery_variables_that_name_no_setting_are_ignored_and_reported() {
        figment::Jail::expect_with(|jail| {
            // What Kubernetes sets for a Service named rookery, beside a real setting and an optional one.
            jail.set_env("ROOKERY_PORT", "tcp://10.0.0.7:5001");
            jail.set_env("ROOKERY_SERVICE_HOST", "10.0.0.7");
            jail.set_env("ROOKERY_SNAPSHOT_EVERY", "9");
            jail.set_env("ROOKERY_WEBHOOK_URL", "http://127.0.0.1:9/hook");
            let c = Config::load(None).expect("loads");
            assert_eq!((c.snapshot_every, c.webhook_url.as_deref()), (9, Some("http://127.0.0.1:9/hook")));
            let mut ignored = Config::ignored_env();
            ignored.sort();
            assert_eq!(ignored, ["ROOKERY_PORT", "ROOKERY_SERVICE_HOST"]);
            // A misspelt setting in a file is still refused: the file is the operator's own.
            jail.create_file("r.toml", "snapshot_evry = 7\n")?;
            assert!(Config::load(Some(std::path::Path::new("r.toml"))).is_err());
            Ok(())
        });
    }

    #[test]
    fn every_setting_has_a_key() {
        let keys = setting_keys();
        for k in [
            "api_addr",
            "manager_token",
            "api_keys",
            "jmessage_apps",
            "openim",
            "webhook_url",
            "webhook_ca_file",
            "tls_cert_file",
            "tls_key_file",
            "external_wss_addr",
        ] {
            assert!(keys.iter().any(|x| x == k), "{k} missing from {keys:?}");
        }
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API fixes the closure's error type
    fn wukongim_variables_map_to_settings_and_rookery_variables_win() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("r.toml", "api_addr = \"127.0.0.1:6001\"\ntcp_addr = \"127.0.0.1:6100\"\n")?;
            jail.set_env("WK_HTTPADDR", "127.0.0.1:7001");
            jail.set_env("WK_ADDR", "tcp://0.0.0.0:7100");
            jail.set_env("WK_WSADDR", "ws://0.0.0.0:7200");
            jail.set_env("WK_MONITOR_ADDR", "127.0.0.1:7300");
            jail.set_env("WK_MANAGERTOKEN", "wk-secret");
            jail.set_env("WK_ROOTDIR", "/srv/im");
            jail.set_env("WK_EXTERNAL_TCPADDR", "im.example.com:5100");
            jail.set_env("WK_EXTERNAL_WSADDR", "ws://im.example.com:5200");
            jail.set_env("WK_EXTERNAL_WSSADDR", "wss://im.example.com");
            let c = Config::load(Some(std::path::Path::new("r.toml"))).expect("loads");
            assert_eq!(c.api_addr.port(), 7001, "WK_ overrides the file");
            assert_eq!(c.tcp_addr, "0.0.0.0:7100".parse().unwrap(), "tcp:// is stripped");
            assert_eq!(c.ws_addr.port(), 7200, "ws:// is stripped");
            assert_eq!(c.monitor_addr.port(), 7300);
            assert_eq!(c.manager_token.as_deref(), Some("wk-secret"));
            assert_eq!(c.data_dir, std::path::PathBuf::from("/srv/im"));
            assert_eq!(c.external_tcp_addr.as_deref(), Some("im.example.com:5100"));
            assert_eq!(c.external_ws_addr.as_deref(), Some("ws://im.example.com:5200"), "external URLs keep their scheme");
            assert_eq!(c.external_wss_addr.as_deref(), Some("wss://im.example.com"));
            jail.set_env("ROOKERY_API_ADDR", "127.0.0.1:8001");
            jail.set_env("ROOKERY_MANAGER_TOKEN", "rk-secret");
            let c = Config::load(None).expect("loads");
            assert_eq!(c.api_addr.port(), 8001, "ROOKERY_ wins over WK_");
            assert_eq!(c.manager_token.as_deref(), Some("rk-secret"));
            jail.set_env("WK_WSADDR", "wss://0.0.0.0:5210");
            let e = Config::load(None).unwrap_err().to_string();
            assert!(e.contains("WK_WSADDR") && e.contains("wss://"), "{e}");
            jail.set_env("WK_WSADDR", "ws://0.0.0.0:5200");
            jail.set_env("WK_MONITOR_ADDR", "not an address");
            let e = Config::load(None).unwrap_err().to_string();
            assert!(e.contains("monitor_addr"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn printed_settings_hide_secrets_and_read_back() {
        let c = Config {
            manager_token: Some("m-secret".into()),
            api_keys: vec![key("ops", "o-secret", Scope::ReadOnly)],
            external_wss_addr: Some("wss://im.example.com".into()),
            ..Config::default()
        };
        let text = c.to_toml().expect("toml");
        assert!(!text.contains("m-secret") && !text.contains("o-secret"), "{text}");
        assert_eq!(text.matches(HIDDEN).count(), 2, "{text}");
        assert!(text.contains("# external_tcp_addr is not set"), "{text}");
        let back: Config = toml::from_str(&text).expect("the output is a valid settings file");
        assert_eq!(back, c.redacted());
    }

    #[test]
    fn public_api_without_token_is_refused() {
        let c = Config { api_addr: ([0, 0, 0, 0], 5001).into(), ..Config::default() };
        assert!(c.validate().unwrap_err().contains("without a credential"));
        let keyed = Config { api_keys: vec![key("ops", "s3cret", Scope::ReadOnly)], ..c.clone() };
        assert!(keyed.validate().is_ok());
        let c = Config { manager_token: Some("s3cret".into()), ..c };
        assert!(c.validate().is_ok());
    }

    fn key(name: &str, secret: &str, scope: Scope) -> ApiKey {
        ApiKey { name: name.into(), secret: secret.into(), scope }
    }

    #[test]
    fn api_keys_are_checked() {
        let with = |keys: Vec<ApiKey>| Config { api_keys: keys, ..Config::default() }.validate();
        assert!(with(vec![key("ops", "a", Scope::ReadOnly), key("admin-1", "b", Scope::Admin)]).is_ok());
        assert!(with(vec![key("ops", "a", Scope::ReadOnly), key("ops", "b", Scope::Admin)]).unwrap_err().contains("\"ops\" is used twice"));
        assert!(with(vec![key("ops", "", Scope::ReadOnly)]).unwrap_err().contains("secret must not be empty"));
        assert!(with(vec![key("", "a", Scope::ReadOnly)]).unwrap_err().contains("name"));
        assert!(with(vec![key("o ps", "a", Scope::ReadOnly)]).unwrap_err().contains("name"));
        assert!(with(vec![key("local", "a", Scope::ReadOnly)]).unwrap_err().contains("reserved"));
        assert!(with(vec![key("a", "same", Scope::ReadOnly), key("b", "same", Scope::Admin)]).unwrap_err().contains("its own"));
        let c = Config { manager_token: Some("m".into()), api_keys: vec![key("manager", "x", Scope::ReadOnly)], ..Config::default() };
        assert!(c.validate().unwrap_err().contains("manager_token already defines"));
        let c = Config { manager_token: Some("m".into()), api_keys: vec![key("ops", "m", Scope::ReadOnly)], ..Config::default() };
        assert!(c.validate().unwrap_err().contains("its own"));
        let names: Vec<_> = c.credentials().into_iter().map(|k| k.name).collect();
        assert_eq!(names, ["manager", "ops"]);
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API fixes the closure's error type
    fn api_keys_load_from_toml_and_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("r.toml", "[[api_keys]]\nname = \"ops-readonly\"\nsecret = \"r0\"\nscope = \"read_only\"\n")?;
            let c = Config::load(Some(std::path::Path::new("r.toml"))).expect("loads");
            assert_eq!(c.api_keys, vec![key("ops-readonly", "r0", Scope::ReadOnly)]);
            jail.set_env("ROOKERY_API_KEYS", r#"[{name="deploy",secret="d1",scope="admin"}]"#);
            let c = Config::load(None).expect("loads");
            assert_eq!(c.api_keys, vec![key("deploy", "d1", Scope::Admin)]);
            assert!(!format!("{c:?}").contains("d1"), "secrets are not printed");
            jail.set_env("ROOKERY_API_KEYS", r#"[{name="deploy",secret="d1",scope="owner"}]"#);
            assert!(Config::load(None).is_err(), "an unknown scope is refused");
            Ok(())
        });
    }
}
