//! Users' tokens and logins: setting and revoking a device's token (and ending the sessions it no
//! longer allows), and checking a login against them.

use rookery_actors::{CoreError, Origin};
use rookery_events::{platform_device_flag, ChannelKey, ChannelType, DeviceFlag, DeviceLevel, Timestamp, Uid, UserCommand, PLATFORMS};

use super::{validate, Error, Field, UseCases};
use crate::presence::Kick;

/// What setting a token did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSet {
    /// Stored; with a master token, the device's other sessions were ended.
    Set,
    /// The user is banned (its person channel has `ban`): nothing stored.
    Banned,
}

/// A platform token as issued: the token in clear, for the caller only, and when it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformGrant {
    /// The token.
    pub token: String,
    /// When it stops authenticating.
    pub expires_at: Timestamp,
}

/// What a platform token is to a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlatformTokenCheck {
    /// One of its tokens, unexpired.
    Valid,
    /// One of its tokens, expired.
    Expired,
    /// None of its tokens (never issued, replaced, or logged out).
    Unknown,
}

/// Bytes of randomness in a platform token (written as 64 hex digits).
const PLATFORM_TOKEN_BYTES: usize = 32;

fn now() -> Timestamp {
    Timestamp(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or_default())
}

/// Why a login is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginRefused {
    /// The uid is malformed, or the token is not the one registered for this uid and device.
    BadCredentials,
    /// The user is banned.
    Banned,
    /// The user's state could not be read.
    Unavailable,
}

impl UseCases {
    /// Registers `token` for `uid`'s device `device_flag` (0 app, 1 web, 2 desktop) at `device_level`
    /// (0 slave, 1 master). A master token ends the device's current sessions (WuKongIM v2: the
    /// client is told it logged in elsewhere).
    ///
    /// # Errors
    /// [`Error::Invalid`] for a malformed uid or token, [`Error::Core`] when the log fails.
    pub async fn set_token(&self, uid: &str, token: &str, device_flag: DeviceFlag, device_level: DeviceLevel, origin: Origin) -> Result<TokenSet, Error> {
        let uid = validate::client_uid("uid", uid)?;
        if token.is_empty() {
            return Err(Error::invalid(Field::Token, "token is required"));
        }
        if token.len() > validate::MAX_TOKEN {
            return Err(Error::invalid(Field::Token, format!("token is longer than {} bytes", validate::MAX_TOKEN)));
        }
        if !self.account_is_live(&uid).await? {
            return Err(Error::NotFound(format!("user {uid}")));
        }
        if self.banned(&uid).await? {
            return Ok(TokenSet::Banned);
        }
        self.core.user(&uid, UserCommand::SetToken { device_flag, device_level, token: token.to_owned() }, origin).await?;
        if device_level == DeviceLevel::MASTER {
            let n = self.presence.kick_device(&uid, Some(device_flag.0), &Kick::replaced());
            tracing::debug!(uid = %uid, device_flag = device_flag.0, kicked = n, "master token set");
        }
        Ok(TokenSet::Set)
    }

    /// Removes the token of `uid`'s device `device_flag` (every device when `None`) and ends its
    /// sessions, telling the clients, so that they stop reconnecting.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a malformed uid, [`Error::Core`] when the log fails.
    pub async fn quit_device(&self, uid: &str, device_flag: Option<DeviceFlag>, origin: Origin) -> Result<(), Error> {
        let uid = validate::client_uid("uid", uid)?;
        self.core.user(&uid, UserCommand::QuitDevice(device_flag), origin).await?;
        let n = self.presence.kick_device(&uid, device_flag.map(|f| f.0), &Kick::LoggedOut("device quit".into()));
        tracing::debug!(uid = %uid, kicked = n, "device quit");
        Ok(())
    }

    /// Checks a login: `uid` must be a valid id, `token` the one registered for (uid, device_flag),
    /// and the user not banned. Returns the device level registered with the token. Nothing about the
    /// user is loaded into memory before the token matches.
    ///
    /// # Errors
    /// Why the login is refused.
    pub async fn check_login(&self, uid: &str, device_flag: DeviceFlag, token: &str) -> Result<DeviceLevel, LoginRefused> {
        let uid = validate::client_uid("uid", uid).map_err(|_| LoginRefused::BadCredentials)?;
        // Read without starting the user's actor: a refused login leaves nothing behind.
        let state = self.core.peek_user_state(&uid).await.map_err(|e| {
            tracing::warn!(uid = %uid, error = %e, "reading the user for a login");
            LoginRefused::Unavailable
        })?;
        // A device's WuKongIM token, or an unexpired OpenIM token of a platform of this device kind
        // (a master login: it replaces the kind's other sessions).
        let by_platform = || state.platform_tokens.iter().any(|(p, t)| platform_device_flag(*p) == device_flag && t.admits(token, now()));
        let level = match state.tokens.get(&device_flag) {
            Some(t) if t.matches(token) => t.level,
            _ if by_platform() => DeviceLevel::MASTER,
            _ => return Err(LoginRefused::BadCredentials),
        };
        // A deleted tenant account logs its devices out; this also covers a crash in between.
        match self.account_is_live(&uid).await {
            Ok(true) => {}
            Ok(false) => return Err(LoginRefused::BadCredentials),
            Err(e) => {
                tracing::warn!(uid = %uid, error = %e, "reading the user's account for a login");
                return Err(LoginRefused::Unavailable);
            }
        }
        match self.banned(&uid).await {
            Ok(false) => Ok(level),
            Ok(true) => Err(LoginRefused::Banned),
            Err(e) => {
                tracing::warn!(uid = %uid, error = %e, "reading the user's channel for a login");
                Err(LoginRefused::Unavailable)
            }
        }
    }

    /// Issues a new token for `uid`'s OpenIM `platform` (1 to 7), valid for `ttl`, replacing the
    /// platform's previous token (whose sessions end, as a new master token ends them). Refused for
    /// an account that is not live or is disabled.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a platform out of range, [`Error::NotFound`] for an account that is not
    /// live, [`Error::Core`] with `NotAllowed` for a disabled one, or when the log fails.
    pub async fn issue_platform_token(&self, uid: &Uid, platform: u8, ttl: std::time::Duration, origin: Origin) -> Result<PlatformGrant, Error> {
        if !PLATFORMS.contains(&platform) {
            return Err(Error::invalid(Field::Token, format!("platform must be 1 to 7, got {platform}")));
        }
        if !self.account_is_live(uid).await? {
            return Err(Error::NotFound(format!("user {uid}")));
        }
        if self.banned(uid).await? {
            return Err(Error::Core(CoreError::Rejected(rookery_events::Rejection::NotAllowed(format!("user {uid} is disabled")))));
        }
        let mut bytes = [0u8; PLATFORM_TOKEN_BYTES];
        getrandom::fill(&mut bytes).map_err(|e| Error::Core(CoreError::Storage(format!("no random token: {e}"))))?;
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let expires_at = Timestamp(now().0.saturating_add(ttl.as_millis() as u64));
        self.core.user(uid, UserCommand::IssuePlatformToken { platform, token: token.clone(), expires_at }, origin).await?;
        let n = self.presence.kick_device(uid, Some(platform_device_flag(platform).0), &Kick::replaced());
        tracing::debug!(uid = %uid, platform, kicked = n, "platform token issued");
        Ok(PlatformGrant { token, expires_at })
    }

    /// What `token` is to `uid`: one of its unexpired platform tokens, an expired one, or none. Reads
    /// the user without starting its actor.
    ///
    /// # Errors
    /// [`Error::Core`] when the user cannot be read.
    pub async fn check_platform_token(&self, uid: &Uid, token: &str) -> Result<PlatformTokenCheck, Error> {
        let state = self.core.peek_user_state(uid).await?;
        let now = now();
        let mut found = PlatformTokenCheck::Unknown;
        for t in state.platform_tokens.values() {
            if t.admits(token, now) {
                return Ok(PlatformTokenCheck::Valid);
            }
            if t.admits(token, Timestamp(0)) {
                found = PlatformTokenCheck::Expired;
            }
        }
        Ok(found)
    }

    /// Ends one WKProto connection of `uid` (its id as `/connz` and `/user/onlinestatus` list it): with
    /// `tell`, the client is told it was logged out (DISCONNECT, reason 12) and stops reconnecting;
    /// without, the connection is closed and the client reconnects. Nothing is written: its token
    /// stays valid (`/user/device_quit` revokes it). Whether it was online.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a malformed uid.
    pub fn end_connection(&self, uid: &str, conn_id: u64, tell: bool) -> Result<bool, Error> {
        let uid = validate::client_uid("uid", uid)?;
        let kick = if tell { Kick::LoggedOut("kicked by the server".into()) } else { Kick::Close("removed by the server") };
        Ok(self.presence.kick_session(&uid, conn_id, kick))
    }

    /// Whether `uid` is banned (its own person channel has `ban`).
    async fn banned(&self, uid: &Uid) -> Result<bool, Error> {
        let own = self.core.channel_state(&ChannelKey::new(uid.0.clone(), ChannelType::PERSON)).await?;
        Ok(own.info.ban)
    }
}
