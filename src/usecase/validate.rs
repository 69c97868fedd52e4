//! The id and length rules of every transport, in one place.

use rookery_events::{person_channel_id, person_channel_parties, ChannelId, ChannelKey, ChannelType, Uid, SYSTEM_UID};

use super::{Error, Field};

/// Longest user or channel id, in bytes.
pub const MAX_ID: usize = 128;
/// Longest `client_msg_no`, in bytes.
pub const MAX_CLIENT_MSG_NO: usize = 128;
/// Longest topic, in bytes.
pub const MAX_TOPIC: usize = 255;
/// Longest token, in bytes.
pub const MAX_TOKEN: usize = 1024;
/// Most uids one request may name.
pub const MAX_UIDS: usize = 10_000;

/// Checks an id: non-empty, at most [`MAX_ID`] bytes, none of `@ # &` (they separate the parts
/// of internal ids). `what` names the field in the error.
///
/// # Errors
/// [`Error::Invalid`] naming `what`.
pub fn id(field: Field, what: &str, id: &str) -> Result<(), Error> {
    if id.is_empty() {
        return Err(Error::invalid(field, format!("{what} must not be empty")));
    }
    if id.len() > MAX_ID {
        return Err(Error::invalid(field, format!("{what} is longer than {MAX_ID} bytes")));
    }
    if id.contains(['@', '#', '&']) {
        return Err(Error::invalid(field, format!("{what} must not contain @, # or &")));
    }
    Ok(())
}

/// A user id: a valid [`id`], or the uid of a tenant's user (`<tag>#<n>`, see
/// `rookery_events::tenant_uid`), the only ids with a `#`.
///
/// # Errors
/// [`Error::Invalid`] on [`Field::Uid`].
pub fn uid(what: &str, raw: &str) -> Result<Uid, Error> {
    let uid = Uid::from(raw);
    if rookery_events::tenant_uid_parts(&uid).is_none() {
        id(Field::Uid, what, raw)?;
    }
    Ok(uid)
}

/// A channel id: a valid [`id`], or a tenant group's or chatroom's channel id (`<tag>#g<n>`,
/// `<tag>#r<n>`, see `rookery_events::tenant_group` and `tenant_room`).
///
/// # Errors
/// [`Error::Invalid`] on [`Field::ChannelId`].
pub fn channel_id(raw: &str) -> Result<(), Error> {
    let tenant_channel = ChannelId(raw.to_owned());
    if rookery_events::tenant_group_parts(&tenant_channel).is_none() && rookery_events::tenant_room_parts(&tenant_channel).is_none() {
        id(Field::ChannelId, "channel_id", raw)?;
    }
    Ok(())
}

/// A uid a client may own: a valid [`uid`] that is not the built-in system account.
///
/// # Errors
/// [`Error::Invalid`] on [`Field::Uid`].
pub fn client_uid(what: &str, raw: &str) -> Result<Uid, Error> {
    uid(what, raw)?;
    if raw == SYSTEM_UID {
        return Err(Error::invalid(Field::Uid, format!("{what} must not be the system uid")));
    }
    Ok(Uid::from(raw))
}

/// Checks a list of uids: at most [`MAX_UIDS`], each a valid id, and not empty unless
/// `allow_empty`.
///
/// # Errors
/// [`Error::Invalid`] on [`Field::Uid`], or [`Field::Recipients`] for the list's size.
pub fn uids(what: &str, raw: Vec<String>, allow_empty: bool) -> Result<Vec<Uid>, Error> {
    if raw.is_empty() && !allow_empty {
        return Err(Error::invalid(Field::Recipients, format!("{what} must not be empty")));
    }
    if raw.len() > MAX_UIDS {
        return Err(Error::invalid(Field::Recipients, format!("{what} may name at most {MAX_UIDS} uids")));
    }
    for u in &raw {
        uid(what, u)?;
    }
    Ok(raw.into_iter().map(Uid).collect())
}

/// A channel type code messages can be sent to and channels can be named by.
///
/// # Errors
/// [`Error::Invalid`] on [`Field::ChannelType`] for 0 (or absent) and unknown codes.
pub fn channel_type(raw: Option<u8>) -> Result<ChannelType, Error> {
    match raw.map(ChannelType) {
        None | Some(ChannelType(0)) => Err(Error::invalid(Field::ChannelType, "channel_type is required")),
        Some(t) if !t.is_known() => Err(Error::invalid(Field::ChannelType, format!("unknown channel_type {}", t.0))),
        Some(t) => Ok(t),
    }
}

/// Checks that channels of type `ty` have subscribers (person and agent channels do not).
///
/// # Errors
/// [`Error::Invalid`] on [`Field::ChannelType`].
pub fn may_have_subscribers(ty: ChannelType) -> Result<(), Error> {
    if ty.has_subscribers() {
        Ok(())
    } else {
        Err(Error::invalid(Field::ChannelType, format!("channel_type {} cannot have subscribers", ty.0)))
    }
}

/// The stored channel `caller` means by `channel_id`: a person channel is named by the peer's uid
/// (or by its internal `big@small` id, which must include the caller); other channels by their id.
///
/// # Errors
/// [`Error::Invalid`] on [`Field::ChannelId`].
pub fn channel(caller: &Uid, channel_id: &str, ty: ChannelType) -> Result<ChannelKey, Error> {
    if ty == ChannelType::PERSON {
        if let Some((a, b)) = person_channel_parties(&ChannelId(channel_id.to_owned())) {
            if a == *caller || b == *caller {
                return Ok(ChannelKey::new(person_channel_id(&a, &b), ty));
            }
            return Err(Error::invalid(Field::ChannelId, "person channel id does not include the calling uid"));
        }
        uid("channel_id", channel_id).map_err(|e| Error::invalid(Field::ChannelId, e.to_string()))?;
        return Ok(ChannelKey::new(person_channel_id(caller, &Uid::from(channel_id)), ty));
    }
    self::channel_id(channel_id)?;
    Ok(ChannelKey::new(channel_id, ty))
}

/// The sender's message number, or a new one (a random UUID and `0`, as WuKongIM makes them) when
/// it is empty.
///
/// # Errors
/// [`Error::Invalid`] on [`Field::ClientMsgNo`] when longer than [`MAX_CLIENT_MSG_NO`].
pub fn client_msg_no(raw: Option<String>) -> Result<String, Error> {
    match raw.filter(|c| !c.is_empty()) {
        None => Ok(format!("{}0", uuid::Uuid::new_v4().simple())),
        Some(c) if c.len() > MAX_CLIENT_MSG_NO => Err(Error::invalid(Field::ClientMsgNo, format!("client_msg_no is longer than {MAX_CLIENT_MSG_NO} bytes"))),
        Some(c) => Ok(c),
    }
}

/// A message's topic, `None` when absent or empty.
///
/// # Errors
/// [`Error::Invalid`] on [`Field::Topic`] when longer than [`MAX_TOPIC`].
pub fn topic(raw: Option<String>) -> Result<Option<String>, Error> {
    match raw.filter(|t| !t.is_empty()) {
        Some(t) if t.len() > MAX_TOPIC => Err(Error::invalid(Field::Topic, format!("topic is longer than {MAX_TOPIC} bytes"))),
        t => Ok(t),
    }
}

/// Checks a payload: non-empty and at most `max` bytes.
///
/// # Errors
/// [`Error::Invalid`] when empty, [`Error::TooLarge`] when over `max`.
pub fn payload(payload: &[u8], max: usize) -> Result<(), Error> {
    if payload.is_empty() {
        return Err(Error::invalid(Field::Payload, "payload must not be empty"));
    }
    if payload.len() > max {
        return Err(Error::TooLarge(Field::Payload, format!("payload is larger than {max} bytes")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_refused_with_the_field_named() {
        assert!(id(Field::Uid, "uid", "alice").is_ok());
        assert_eq!(id(Field::Uid, "uid", ""), Err(Error::invalid(Field::Uid, "uid must not be empty")));
        assert!(matches!(id(Field::ChannelId, "channel_id", "a@b"), Err(Error::Invalid(Field::ChannelId, _))));
        assert!(matches!(id(Field::Uid, "from_uid", &"x".repeat(MAX_ID + 1)), Err(Error::Invalid(Field::Uid, m)) if m.contains("from_uid")));
    }

    #[test]
    fn person_channels_are_named_by_the_peer_or_by_an_id_that_includes_the_caller() {
        let alice = Uid::from("alice");
        let by_peer = channel(&alice, "bob", ChannelType::PERSON).unwrap();
        assert_eq!(by_peer.id, person_channel_id(&alice, &Uid::from("bob")));
        assert_eq!(channel(&alice, &by_peer.id.0, ChannelType::PERSON).unwrap(), by_peer);
        let other = person_channel_id(&Uid::from("carol"), &Uid::from("bob"));
        assert!(matches!(channel(&alice, &other.0, ChannelType::PERSON), Err(Error::Invalid(Field::ChannelId, _))));
        assert!(matches!(channel(&alice, "g@1", ChannelType::GROUP), Err(Error::Invalid(Field::ChannelId, _))));
    }

    #[test]
    fn a_missing_client_msg_no_is_made_and_a_long_one_refused() {
        let made = client_msg_no(None).unwrap();
        assert_eq!(made.len(), 33);
        assert_ne!(made, client_msg_no(Some(String::new())).unwrap());
        assert_eq!(client_msg_no(Some("c-1".into())).unwrap(), "c-1");
        assert!(matches!(client_msg_no(Some("x".repeat(MAX_CLIENT_MSG_NO + 1))), Err(Error::Invalid(Field::ClientMsgNo, _))));
    }

    #[test]
    fn payloads_must_be_non_empty_and_within_the_cap() {
        assert!(payload(b"x", 1).is_ok());
        assert!(matches!(payload(b"", 1), Err(Error::Invalid(Field::Payload, _))));
        assert!(matches!(payload(b"xy", 1), Err(Error::TooLarge(Field::Payload, _))));
    }
}
