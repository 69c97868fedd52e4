//! The accounts of the business APIs' tenants: registering, reading, updating and deleting users,
//! passwords, and disabling a user. The rules of names and numbers are the tenant aggregate's
//! (`TenantState::decide`); the families check their own field limits before calling these.
//!
//! A tenant user is an ordinary user of the server under the uid `<tag>#<n>` (`tenant_uid`): the
//! same uid gets WuKongIM tokens, logs in over WKProto and is a member of channels. Deleting an
//! account also logs all its devices out, and disabling one sets `ban` and `send_ban` on its own
//! person channel, which the gateway and the send path already enforce.

use rookery_actors::{CoreError, Origin};
use rookery_events::{
    tenant_uid, tenant_uid_parts, ChannelCommand, ChannelKey, ChannelType, NewAccount, PasswordHash, Profile, Rejection, TenantCommand, TenantEvent, Timestamp,
    Uid, UserCommand,
};

use super::{Error, UseCases};
use crate::presence::Kick;

/// Iterations of PBKDF2-HMAC-SHA256 for a new password hash: about 20 ms of one core on this
/// project's 2-core test machines, so a registration of 500 users costs seconds, while a stolen hash
/// still costs a guesser 20,000 SHA-256 blocks per guess. Stored with each hash, so it can be raised
/// later without invalidating old ones.
pub const PASSWORD_ITERATIONS: u32 = 10_000;

/// Bytes of salt per password.
const SALT_BYTES: usize = 16;

/// An account as the families show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountView {
    /// The account's number in its tenant.
    pub n: u64,
    /// Its uid everywhere else in the server.
    pub uid: Uid,
    /// Login name.
    pub username: String,
    /// Profile.
    pub profile: Profile,
    /// Registered at.
    pub ctime: Timestamp,
    /// Last changed at.
    pub mtime: Timestamp,
}

/// An account to register, with its password in clear (hashed here, never stored or logged).
#[derive(Debug, Clone)]
pub struct Signup {
    /// Login name.
    pub username: String,
    /// Password in clear; `None` for an account that never signs in with one (OpenIM's users sign in
    /// with tokens their app server gets for them).
    pub password: Option<String>,
    /// Profile.
    pub profile: Profile,
}

/// Salts and stretches `password` (PBKDF2-HMAC-SHA256, [`PASSWORD_ITERATIONS`]).
///
/// # Errors
/// [`Error::Core`] when the operating system gives no random bytes.
pub fn hash_password(password: &str) -> Result<PasswordHash, Error> {
    let mut salt = vec![0u8; SALT_BYTES];
    getrandom::fill(&mut salt).map_err(|e| Error::Core(CoreError::Storage(format!("no random salt: {e}"))))?;
    let mut hash = vec![0u8; 32];
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password.as_bytes(), &salt, PASSWORD_ITERATIONS, &mut hash);
    Ok(PasswordHash { scheme: 1, iterations: PASSWORD_ITERATIONS, salt, hash })
}

/// Whether `password` is the one `stored` was made from (compared in constant time).
pub fn password_matches(stored: &PasswordHash, password: &str) -> bool {
    use subtle::ConstantTimeEq;
    if stored.scheme != 1 || stored.hash.is_empty() {
        return false;
    }
    let mut derived = vec![0u8; stored.hash.len()];
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password.as_bytes(), &stored.salt, stored.iterations, &mut derived);
    bool::from(derived.ct_eq(&stored.hash))
}

/// The hash of an account without a password: scheme 0, which no password matches.
pub fn no_password() -> PasswordHash {
    PasswordHash { scheme: 0, iterations: 0, salt: Vec::new(), hash: Vec::new() }
}

/// Hashes many passwords on the blocking pool, each on its own, so a batch uses every core (`None`:
/// [`no_password`]).
async fn hash_all(passwords: Vec<Option<String>>) -> Result<Vec<PasswordHash>, Error> {
    let tasks: Vec<_> = passwords.into_iter().map(|p| p.map(|p| tokio::task::spawn_blocking(move || hash_password(&p)))).collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(match t {
            Some(t) => t.await.map_err(|e| Error::Core(CoreError::Storage(format!("hashing a password: {e}"))))??,
            None => no_password(),
        });
    }
    Ok(out)
}

pub(super) fn view(tag: &str, n: u64, a: &rookery_events::Account) -> AccountView {
    AccountView { n, uid: tenant_uid(tag, n), username: a.username.clone(), profile: a.profile.clone(), ctime: a.ctime, mtime: a.mtime }
}

fn person(uid: &Uid) -> ChannelKey {
    ChannelKey::new(uid.0.clone(), ChannelType::PERSON)
}

impl UseCases {
    /// Registers `signups` in tenant `tag`, in order; answers for each whether it was created (false:
    /// its username was taken, or named earlier in the same batch). One append for the batch.
    ///
    /// # Errors
    /// [`Error::Core`] when the log fails.
    pub async fn register(&self, tag: &str, signups: Vec<Signup>, origin: Origin) -> Result<Vec<bool>, Error> {
        let asked: Vec<String> = signups.iter().map(|s| s.username.clone()).collect();
        // Names taken already, or named earlier in the batch, are not hashed for: a hash costs
        // milliseconds of a core. (The tenant decides again; this only saves work.)
        let taken = self.accounts(tag, asked.clone()).await?;
        let mut seen = std::collections::HashSet::new();
        let fresh: Vec<Signup> = signups.into_iter().zip(taken).filter(|(s, t)| t.is_none() && seen.insert(s.username.clone())).map(|(s, _)| s).collect();
        let mut created = std::collections::HashSet::new();
        if !fresh.is_empty() {
            let names: Vec<String> = fresh.iter().map(|s| s.username.clone()).collect();
            let (passwords, profiles): (Vec<Option<String>>, Vec<Profile>) = fresh.into_iter().map(|s| (s.password, s.profile)).unzip();
            let hashes = hash_all(passwords).await?;
            let accounts =
                names.into_iter().zip(profiles).zip(hashes).map(|((username, profile), password)| NewAccount { username, profile, password }).collect();
            let (_, events) = self.core.tenant(tag, TenantCommand::Register(accounts), origin).await?;
            for e in events {
                if let TenantEvent::UsersRegistered { users, .. } = e {
                    created.extend(users.into_iter().map(|r| r.username));
                }
            }
        }
        // Each created name counts for its first occurrence in the batch only.
        Ok(asked.iter().map(|name| created.remove(name)).collect())
    }

    /// The live account `username` of tenant `tag`.
    ///
    /// # Errors
    /// [`Error::NotFound`] when there is none, [`Error::Core`] when the tenant cannot be read.
    pub async fn account(&self, tag: &str, username: &str) -> Result<AccountView, Error> {
        let (t, name) = (tag.to_owned(), username.to_owned());
        self.core.tenant_read(tag, move |s| s.account(&name).map(|(n, a)| view(&t, n, a))).await?.ok_or_else(|| Error::NotFound(format!("user {username:?}")))
    }

    /// The live accounts of tenant `tag` among `usernames`, in the same order (`None` for unknown names).
    ///
    /// # Errors
    /// [`Error::Core`] when the tenant cannot be read.
    pub async fn accounts(&self, tag: &str, usernames: Vec<String>) -> Result<Vec<Option<AccountView>>, Error> {
        let t = tag.to_owned();
        Ok(self.core.tenant_read(tag, move |s| usernames.iter().map(|name| s.account(name).map(|(n, a)| view(&t, n, a))).collect()).await?)
    }

    /// What a send needs from tenant `tag`, in one read of it: the live accounts named `usernames` (in
    /// order, `None` for unknown names) and `text` as the tenant stores it (its sensitive words masked
    /// while the filter is on).
    ///
    /// # Errors
    /// [`Error::Core`] when the tenant cannot be read.
    pub async fn resolve_for_send(&self, tag: &str, usernames: Vec<String>, text: Option<String>) -> Result<(Vec<Option<AccountView>>, Option<String>), Error> {
        let t = tag.to_owned();
        Ok(self
            .core
            .tenant_read(tag, move |s| {
                let accounts = usernames.iter().map(|name| s.account(name).map(|(n, a)| view(&t, n, a))).collect();
                let text = text.map(|text| s.masked(&text).unwrap_or(text));
                (accounts, text)
            })
            .await?)
    }

    /// The live accounts of tenant `tag` numbered `ns`, in the same order (`None` for deleted ones).
    ///
    /// # Errors
    /// [`Error::Core`] when the tenant cannot be read.
    pub async fn accounts_numbered(&self, tag: &str, ns: Vec<u64>) -> Result<Vec<Option<AccountView>>, Error> {
        let t = tag.to_owned();
        Ok(self.core.tenant_read(tag, move |s| ns.iter().map(|n| s.users.get(n).map(|a| view(&t, *n, a))).collect()).await?)
    }

    /// Whether `uid` may act as a user: any uid that is not a tenant's, or a tenant uid whose account
    /// is live.
    ///
    /// # Errors
    /// [`Error::Core`] when the tenant cannot be read.
    pub async fn account_is_live(&self, uid: &Uid) -> Result<bool, Error> {
        let Some((tag, n)) = tenant_uid_parts(uid) else { return Ok(true) };
        Ok(self.core.tenant_read(tag, move |s| s.users.contains_key(&n)).await?)
    }

    /// A page of tenant `tag`'s live accounts in registration order: skips `start`, answers at most
    /// `count`, and the total.
    ///
    /// # Errors
    /// [`Error::Core`] when the tenant cannot be read.
    pub async fn account_page(&self, tag: &str, start: usize, count: usize) -> Result<(usize, Vec<AccountView>), Error> {
        let t = tag.to_owned();
        Ok(self.core.tenant_read(tag, move |s| (s.users.len(), s.users.iter().skip(start).take(count).map(|(n, a)| view(&t, *n, a)).collect())).await?)
    }

    /// Sets the profile fields `patch` sets.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown user, [`Error::Core`] when the log fails.
    pub async fn update_profile(&self, tag: &str, username: &str, patch: Profile, origin: Origin) -> Result<(), Error> {
        let cmd = TenantCommand::UpdateProfile { username: username.to_owned(), patch };
        self.core.tenant(tag, cmd, origin).await.map_err(not_found)?;
        Ok(())
    }

    /// Replaces a user's password.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown user, [`Error::Core`] when the log fails.
    pub async fn change_password(&self, tag: &str, username: &str, password: String, origin: Origin) -> Result<(), Error> {
        // Checked first: hashing costs milliseconds of a core, which an unknown name should not.
        self.account(tag, username).await?;
        let hash = hash_all(vec![Some(password)]).await?.remove(0);
        self.core.tenant(tag, TenantCommand::ChangePassword { username: username.to_owned(), password: hash }, origin).await.map_err(not_found)?;
        Ok(())
    }

    /// Whether `password` is `username`'s (checked on the blocking pool: a hash costs milliseconds). An
    /// unknown user's check is false, after the same work, so timing does not tell which names exist.
    ///
    /// # Errors
    /// [`Error::Core`] when the tenant cannot be read.
    pub async fn check_password(&self, tag: &str, username: &str, password: &str) -> Result<bool, Error> {
        let name = username.to_owned();
        let stored = self.core.tenant_read(tag, move |s| s.account(&name).map(|(_, a)| a.password.clone())).await?;
        let password = password.to_owned();
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| PasswordHash { scheme: 1, iterations: PASSWORD_ITERATIONS, salt: vec![0; SALT_BYTES], hash: vec![0; 32] });
        let matched = tokio::task::spawn_blocking(move || password_matches(&stored, &password))
            .await
            .map_err(|e| Error::Core(CoreError::Storage(format!("checking a password: {e}"))))?;
        Ok(known && matched)
    }

    /// Deletes accounts (all or none: an unknown name refuses the batch), then takes each deleted user
    /// out of its groups (an owner hands a group on first), logs its devices out and ends its sessions.
    ///
    /// # Errors
    /// [`Error::NotFound`] naming an unknown user, [`Error::Core`] when the log fails.
    pub async fn unregister(&self, tag: &str, usernames: Vec<String>, origin: Origin) -> Result<(), Error> {
        let (_, events) = self.core.tenant(tag, TenantCommand::Unregister(usernames), origin.clone()).await.map_err(not_found)?;
        for e in &events {
            if let TenantEvent::UsersUnregistered { ns } = e {
                for n in ns {
                    let uid = tenant_uid(tag, *n);
                    self.leave_all_groups(&uid, origin.clone()).await?;
                    self.core.user(&uid, UserCommand::QuitDevice(None), origin.clone()).await?;
                    self.presence.kick_device(&uid, None, &Kick::LoggedOut("account deleted".into()));
                }
            }
        }
        Ok(())
    }

    /// Disables (or enables again) a user: `ban` and `send_ban` on its own person channel, keeping its
    /// other flags. A disabled user cannot log in or send; its sessions end.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown user, [`Error::Core`] when the log fails.
    pub async fn set_disabled(&self, tag: &str, username: &str, disabled: bool, origin: Origin) -> Result<(), Error> {
        let account = self.account(tag, username).await?;
        let key = person(&account.uid);
        let mut info = self.core.channel_state(&key).await?.info;
        info.ban = disabled;
        info.send_ban = disabled;
        self.change_channel(&key, ChannelCommand::SetInfo(info), origin).await?;
        if disabled {
            self.presence.kick_device(&account.uid, None, &Kick::LoggedOut("account disabled".into()));
        }
        Ok(())
    }

    /// Whether a user is disabled (its own person channel has `ban`).
    ///
    /// # Errors
    /// [`Error::Core`] when the channel cannot be read.
    pub async fn is_disabled(&self, uid: &Uid) -> Result<bool, Error> {
        Ok(self.core.channel_state(&person(uid)).await?.info.ban)
    }
}

/// A core refusal of something unknown as [`Error::NotFound`]; anything else as it is.
pub(super) fn not_found(e: CoreError) -> Error {
    match e {
        CoreError::Rejected(Rejection::NotFound(what)) => Error::NotFound(what),
        e => Error::Core(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_matches_its_own_hash_only() {
        let h = hash_password("s3cret").unwrap();
        assert_eq!((h.scheme, h.iterations, h.salt.len(), h.hash.len()), (1, PASSWORD_ITERATIONS, SALT_BYTES, 32));
        assert!(password_matches(&h, "s3cret"));
        assert!(!password_matches(&h, "s3cret "));
        assert!(!password_matches(&no_password(), "") && !password_matches(&no_password(), "s3cret"));
        // Salted: the same password hashes differently each time.
        assert_ne!(hash_password("s3cret").unwrap().hash, h.hash);
    }
}
