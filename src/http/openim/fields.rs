//! The document's fields and their limits. Limits written 字符 count characters, 字节 bytes; every
//! wrong type, missing required field or value out of range is 803 with the field named.

use rookery_events::Profile;
use serde_json::{Map, Value};

use super::OimError;
use crate::usecase::validate::MAX_CLIENT_MSG_NO;

/// Longest uid, name or email, in characters.
pub const MAX_NAME: usize = 64;
/// Longest mobile number, in characters.
pub const MAX_MOBILE: usize = 32;
/// Longest birth date, in characters.
pub const MAX_BIRTH: usize = 16;
/// Longest icon URL, in bytes.
pub const MAX_ICON_BYTES: usize = 1024;
/// Longest `ex`, in characters.
pub const MAX_EX: usize = 1024;
/// Longest free text the document gives no limit for (group name, introduction, notification, reason,
/// sender nickname), in characters: a safety cap.
pub const MAX_TEXT: usize = 1024;
/// Most uids one request may name.
pub const MAX_UIDS: usize = 1000;

pub(crate) use crate::http::json_kind as kind;

/// How a limit counts.
#[derive(Debug, Clone, Copy)]
pub enum Limit {
    /// At most this many characters.
    Chars(usize),
    /// At most this many UTF-8 bytes.
    Bytes(usize),
}

/// A string field: `None` when absent (or null) and not required.
pub fn text(obj: &Map<String, Value>, field: &str, required: bool, limit: Limit) -> Result<Option<String>, OimError> {
    let s = match obj.get(field) {
        None | Some(Value::Null) if required => return Err(OimError::args(format!("{field} is required"))),
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s,
        Some(other) => return Err(OimError::args(format!("{field} must be a string, got {}", kind(other)))),
    };
    match limit {
        Limit::Chars(max) if s.chars().count() > max => Err(OimError::args(format!("{field} is longer than {max} characters"))),
        Limit::Bytes(max) if s.len() > max => Err(OimError::args(format!("{field} is longer than {max} bytes"))),
        _ => Ok(Some(s.clone())),
    }
}

/// A required string field within `limit`.
pub fn required(obj: &Map<String, Value>, field: &str, limit: Limit) -> Result<String, OimError> {
    Ok(text(obj, field, true, limit)?.unwrap_or_default())
}

/// A uid: a required string of 1 to 64 characters.
pub fn uid(obj: &Map<String, Value>, field: &str) -> Result<String, OimError> {
    let uid = required(obj, field, Limit::Chars(MAX_NAME))?;
    if uid.is_empty() {
        return Err(OimError::args(format!("{field} must not be empty")));
    }
    Ok(uid)
}

/// A uid inside a list, named by its place.
pub fn uid_value(v: &Value, what: &str) -> Result<String, OimError> {
    match v {
        Value::String(s) if !s.is_empty() && s.chars().count() <= MAX_NAME => Ok(s.clone()),
        Value::String(_) => Err(OimError::args(format!("{what} must be 1 to {MAX_NAME} characters"))),
        other => Err(OimError::args(format!("{what} must be a string, got {}", kind(other)))),
    }
}

/// A required list of uids, 1 to [`MAX_UIDS`] of them, in order, without repeats.
pub fn uid_list(obj: &Map<String, Value>, field: &str) -> Result<Vec<String>, OimError> {
    let items = match obj.get(field) {
        None | Some(Value::Null) => return Err(OimError::args(format!("{field} is required"))),
        Some(Value::Array(items)) => items,
        Some(other) => return Err(OimError::args(format!("{field} must be an array of uids, got {}", kind(other)))),
    };
    if items.is_empty() || items.len() > MAX_UIDS {
        return Err(OimError::args(format!("{field} must name 1 to {MAX_UIDS} uids, got {}", items.len())));
    }
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for (i, v) in items.iter().enumerate() {
        let uid = uid_value(v, &format!("{field}[{i}]"))?;
        if !out.contains(&uid) {
            out.push(uid);
        }
    }
    Ok(out)
}

/// A whole-number field within `range`: `None` when absent and not required.
pub fn int(obj: &Map<String, Value>, field: &str, required: bool, range: std::ops::RangeInclusive<i64>) -> Result<Option<i64>, OimError> {
    let n = match obj.get(field) {
        None | Some(Value::Null) if required => return Err(OimError::args(format!("{field} is required"))),
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| OimError::args(format!("{field} must be a whole number, got {n}")))?,
        Some(other) => return Err(OimError::args(format!("{field} must be a whole number, got {}", kind(other)))),
    };
    if !range.contains(&n) {
        return Err(OimError::args(format!("{field} must be {} to {}, got {n}", range.start(), range.end())));
    }
    Ok(Some(n))
}

/// `operationID`: required, 1 to 128 bytes.
pub fn operation_id(obj: &Map<String, Value>) -> Result<String, OimError> {
    let id = required(obj, "operationID", Limit::Bytes(MAX_CLIENT_MSG_NO))?;
    if id.is_empty() {
        return Err(OimError::args("operationID must not be empty"));
    }
    Ok(id)
}

/// `platform`: required, 1 to 7.
pub fn platform(obj: &Map<String, Value>) -> Result<u8, OimError> {
    Ok(int(obj, "platform", true, 1..=7)?.unwrap_or_default() as u8)
}

/// The profile fields of a register or update request, every one checked: `name` (required when
/// `name_required`), `icon`, `gender`, `mobile`, `birth`, `email`, `ex`. Absent fields stay unset.
pub fn profile(obj: &Map<String, Value>, name_required: bool) -> Result<Profile, OimError> {
    Ok(Profile {
        nickname: text(obj, "name", name_required, Limit::Chars(MAX_NAME))?,
        avatar: text(obj, "icon", false, Limit::Bytes(MAX_ICON_BYTES))?,
        gender: int(obj, "gender", false, 0..=2)?.map(|g| g as u8),
        mobile: text(obj, "mobile", false, Limit::Chars(MAX_MOBILE))?,
        birthday: text(obj, "birth", false, Limit::Chars(MAX_BIRTH))?,
        email: text(obj, "email", false, Limit::Chars(MAX_NAME))?,
        extras: text(obj, "ex", false, Limit::Chars(MAX_EX))?,
        ..Profile::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn limits_count_characters_or_bytes_as_written() {
        let name = |n: usize| obj(json!({"name": "张".repeat(n)}));
        assert!(profile(&name(64), true).is_ok());
        assert!(profile(&name(65), true).unwrap_err().msg.contains("name"));
        // icon counts bytes: 341 three-byte characters are 1023 bytes, 342 are 1026.
        assert!(profile(&obj(json!({"name": "", "icon": "张".repeat(341)})), true).is_ok());
        assert!(profile(&obj(json!({"name": "", "icon": "张".repeat(342)})), true).unwrap_err().msg.contains("icon"));
        assert!(profile(&obj(json!({"name": "", "mobile": "1".repeat(33)})), true).is_err());
        assert!(profile(&obj(json!({"name": "", "birth": "1".repeat(17)})), true).is_err());
        assert!(profile(&obj(json!({"name": "", "ex": "x".repeat(1024)})), true).is_ok());
        assert!(profile(&obj(json!({"name": "", "ex": "x".repeat(1025)})), true).is_err());
    }

    #[test]
    fn types_and_ranges_are_checked() {
        assert!(profile(&obj(json!({})), true).unwrap_err().msg.contains("name is required"));
        assert_eq!(profile(&obj(json!({})), false).unwrap(), Profile::default());
        for bad in [json!({"name": 1}), json!({"name": "", "gender": 3}), json!({"name": "", "gender": "1"}), json!({"name": "", "gender": 1.5})] {
            assert!(profile(&obj(bad.clone()), true).is_err(), "{bad}");
        }
        assert_eq!(platform(&obj(json!({"platform": 7}))).unwrap(), 7);
        for bad in [json!({}), json!({"platform": 0}), json!({"platform": 8}), json!({"platform": "5"})] {
            assert!(platform(&obj(bad.clone())).is_err(), "{bad}");
        }
        assert!(operation_id(&obj(json!({"operationID": ""}))).is_err());
        assert!(operation_id(&obj(json!({"operationID": 12}))).is_err());
        assert_eq!(uid_list(&obj(json!({"l": ["a", "b", "a"]})), "l").unwrap(), vec!["a", "b"]);
        assert!(uid_list(&obj(json!({"l": []})), "l").is_err());
        assert!(uid_list(&obj(json!({"l": ["a", 1]})), "l").is_err());
    }
}
