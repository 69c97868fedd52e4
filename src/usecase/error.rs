//! Why a use case refused: the caller's input (named by field, so each transport can pick its own
//! code), or the domain's decision.

use rookery_actors::CoreError;

/// The input a refusal is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// A user id (`uid`, `from_uid`, one of `subscribers`).
    Uid,
    /// The channel id.
    ChannelId,
    /// The channel type.
    ChannelType,
    /// The message payload.
    Payload,
    /// The sender's message number.
    ClientMsgNo,
    /// A list of recipients.
    Recipients,
    /// A token.
    Token,
    /// A message's topic.
    Topic,
    /// Header flags that do not go together.
    Header,
}

/// A refused use case. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The input is malformed; the text names the field and the rule, in lower case.
    #[error("{1}")]
    Invalid(Field, String),
    /// The input is well formed but larger than this server accepts.
    #[error("{1}")]
    TooLarge(Field, String),
    /// What the request names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The domain refused, or the core failed.
    #[error(transparent)]
    Core(#[from] CoreError),
}

impl Error {
    pub(crate) fn invalid(field: Field, msg: impl Into<String>) -> Error {
        Error::Invalid(field, msg.into())
    }
}
