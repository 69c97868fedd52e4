//! A tenant's app-wide settings: the sensitive-word list with its filter switch, and the SDK
//! registration switch. Masking is the tenant's rule (`TenantState::masked`), applied by every
//! family to the text it sends.

use rookery_actors::{CoreError, Origin};
use rookery_events::{Rejection, TenantCommand, Timestamp};

use super::{Error, Field, UseCases};

/// A tenant's switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Switches {
    /// Sensitive words are masked in sent text.
    pub sensitive_filter: bool,
    /// SDK registration is on.
    pub sdk_registration: bool,
}

impl UseCases {
    /// Changes the sensitive-word list or a switch of tenant `tag`.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a word the rules refuse, a word not on the list or one there already.
    pub async fn change_settings(&self, tag: &str, cmd: TenantCommand, origin: Origin) -> Result<(), Error> {
        match self.core.tenant(tag, cmd, origin).await {
            Ok(_) => Ok(()),
            Err(CoreError::Rejected(Rejection::Invalid(m))) => Err(Error::invalid(Field::Payload, m)),
            Err(CoreError::Rejected(Rejection::NotFound(m))) => Err(Error::invalid(Field::Payload, format!("{m} is not on the list"))),
            Err(CoreError::Rejected(Rejection::Exists(m))) => Err(Error::invalid(Field::Payload, format!("{m} is on the list already"))),
            Err(e) => Err(e.into()),
        }
    }

    /// Applies a tenant command that names its users by username (no-disturb, shields): an unknown
    /// user is [`Error::NotFound`]; every other refusal comes back as the tenant's.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown user, [`Error::Core`] with the tenant's refusal.
    pub async fn change_tenant(&self, tag: &str, cmd: TenantCommand, origin: Origin) -> Result<(), Error> {
        match self.core.tenant(tag, cmd, origin).await {
            Ok(_) => Ok(()),
            Err(CoreError::Rejected(Rejection::NotFound(m))) if m.starts_with("user") => Err(Error::NotFound(m)),
            Err(e) => Err(e.into()),
        }
    }

    /// A page of tenant `tag`'s sensitive words in the order they were added, with when, and the total.
    ///
    /// # Errors
    /// [`Error::Core`] when the tenant cannot be read.
    pub async fn sensitive_words(&self, tag: &str, start: usize, count: usize) -> Result<(usize, Vec<(String, Timestamp)>), Error> {
        Ok(self.core.tenant_read(tag, move |s| (s.sensitive_words.len(), s.sensitive_words.iter().skip(start).take(count).cloned().collect())).await?)
    }

    /// Tenant `tag`'s switches.
    ///
    /// # Errors
    /// [`Error::Core`] when the tenant cannot be read.
    pub async fn switches(&self, tag: &str) -> Result<Switches, Error> {
        Ok(self.core.tenant_read(tag, |s| Switches { sensitive_filter: s.sensitive_filter_on, sdk_registration: !s.sdk_registration_off }).await?)
    }

    /// `text` as tenant `tag` stores it: with its sensitive words masked when the filter is on.
    ///
    /// # Errors
    /// [`Error::Core`] when the tenant cannot be read.
    pub async fn filtered_text(&self, tag: &str, text: String) -> Result<String, Error> {
        let masked = self.core.tenant_read(tag, {
            let text = text.clone();
            move |s| s.masked(&text)
        });
        Ok(masked.await?.unwrap_or(text))
    }

    /// Tenant `tag`'s canned replies by id.
    ///
    /// # Errors
    /// [`Error::Core`] when the tenant cannot be read.
    pub async fn replies(&self, tag: &str) -> Result<Vec<(u64, rookery_events::Reply)>, Error> {
        Ok(self.core.tenant_read(tag, |s| s.replies.iter().map(|(id, r)| (*id, r.clone())).collect()).await?)
    }
}
