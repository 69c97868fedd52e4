//! The document's field rules ("字符串规范"), checked on JSON values so that every wrong type or
//! length gets 899003 with the field named. Lengths written `Byte(a~b)` count UTF-8 bytes.

use serde_json::{Map, Value};

use super::JmError;
use rookery_events::Profile;

/// Longest username or password, in bytes.
pub const MAX_NAME: usize = 128;
/// Shortest username or password, in bytes.
pub const MIN_NAME: usize = 4;
/// Longest nickname, group name or note name, in bytes.
pub const MAX_SHORT_TEXT: usize = 64;
/// Longest string without a rule of its own, in bytes.
pub const MAX_TEXT: usize = 250;
/// Longest `extras` object, as compact JSON, in bytes.
pub const MAX_EXTRAS: usize = 512;

/// A username: 4 to 128 bytes, starting with a letter or digit, then letters, digits and `_ . - @`.
///
/// # Errors
/// 899003 naming the rule.
pub fn username(raw: &str) -> Result<String, JmError> {
    let valid_chars = raw.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && raw.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'@'));
    if !(MIN_NAME..=MAX_NAME).contains(&raw.len()) || !valid_chars {
        return Err(JmError::bad_request(format!(
            "username {:?} must be {MIN_NAME} to {MAX_NAME} bytes of letters, digits, _ . - @, starting with a letter or digit",
            cut(raw)
        )));
    }
    Ok(raw.to_owned())
}

/// A username given as a JSON value.
///
/// # Errors
/// 899003 when it is not a string or breaks the rule.
pub fn username_value(v: &Value) -> Result<String, JmError> {
    match v {
        Value::String(s) => username(s),
        other => Err(JmError::bad_request(format!("username must be a string, got {}", kind(other)))),
    }
}

/// A password: 4 to 128 bytes of anything.
///
/// # Errors
/// 899003 naming `field`.
pub fn password(field: &str, v: Option<&Value>) -> Result<String, JmError> {
    match v {
        None | Some(Value::Null) => Err(JmError::bad_request(format!("{field} is required"))),
        Some(Value::String(s)) if (MIN_NAME..=MAX_NAME).contains(&s.len()) => Ok(s.clone()),
        Some(Value::String(_)) => Err(JmError::bad_request(format!("{field} must be {MIN_NAME} to {MAX_NAME} bytes"))),
        Some(other) => Err(JmError::bad_request(format!("{field} must be a string, got {}", kind(other)))),
    }
}

/// An optional text field of at most `max` bytes; `single_line` refuses `\r` and `\n`.
///
/// # Errors
/// 899003 naming `field`.
pub fn text(obj: &Map<String, Value>, field: &str, max: usize, single_line: bool) -> Result<Option<String>, JmError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() > max => Err(JmError::bad_request(format!("{field} is longer than {max} bytes"))),
        Some(Value::String(s)) if single_line && s.contains(['\r', '\n']) => Err(JmError::bad_request(format!("{field} must not contain \\r or \\n"))),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(JmError::bad_request(format!("{field} must be a string, got {}", kind(other)))),
    }
}

/// An optional integer field within `range`.
///
/// # Errors
/// 899003 naming `field`.
pub fn small_int(obj: &Map<String, Value>, field: &str, range: std::ops::RangeInclusive<u8>) -> Result<Option<u8>, JmError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_u64().and_then(|n| u8::try_from(n).ok()).filter(|n| range.contains(n)) {
            Some(n) => Ok(Some(n)),
            None => Err(JmError::bad_request(format!("{field} must be an integer from {} to {}", range.start(), range.end()))),
        },
        Some(other) => Err(JmError::bad_request(format!("{field} must be an integer, got {}", kind(other)))),
    }
}

/// A birthday, `yyyy-MM-dd` (a time after it, `yyyy-MM-dd HH:mm:ss`, is accepted and dropped), as
/// `yyyy-MM-dd`.
///
/// # Errors
/// 899003 when it is not a real date.
pub fn birthday(obj: &Map<String, Value>) -> Result<Option<String>, JmError> {
    let Some(raw) = text(obj, "birthday", MAX_TEXT, true)? else { return Ok(None) };
    let date = raw.split_once(' ').map_or(raw.as_str(), |(d, _)| d);
    crate::timefmt::parse_date(date).map(Some).ok_or_else(|| JmError::bad_request(format!("birthday {:?} must be a date, yyyy-MM-dd", cut(&raw))))
}

/// `extras`: a JSON object, at most 512 bytes as compact JSON, kept as compact text.
///
/// # Errors
/// 899003 when it is not an object or too long.
pub fn extras(obj: &Map<String, Value>) -> Result<Option<String>, JmError> {
    match obj.get("extras") {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Object(_)) => {
            let compact = v.to_string();
            if compact.len() > MAX_EXTRAS {
                return Err(JmError::bad_request(format!("extras is longer than {MAX_EXTRAS} bytes")));
            }
            Ok(Some(compact))
        }
        Some(other) => Err(JmError::bad_request(format!("extras must be a json object, got {}", kind(other)))),
    }
}

/// The profile fields of a user object (register and update take the same ones).
///
/// # Errors
/// 899003 naming the first field that breaks its rule.
pub fn profile(obj: &Map<String, Value>) -> Result<Profile, JmError> {
    Ok(Profile {
        nickname: text(obj, "nickname", MAX_SHORT_TEXT, true)?,
        avatar: text(obj, "avatar", MAX_TEXT, false)?,
        birthday: birthday(obj)?,
        gender: small_int(obj, "gender", 0..=2)?,
        signature: text(obj, "signature", MAX_TEXT, false)?,
        region: text(obj, "region", MAX_TEXT, false)?,
        address: text(obj, "address", MAX_TEXT, false)?,
        mobile: None,
        email: None,
        extras: extras(obj)?,
    })
}

/// A JSON array of usernames, 1 to `max` of them.
///
/// # Errors
/// 899003 when the body is not such an array.
pub fn usernames(body: &Value, max: usize) -> Result<Vec<String>, JmError> {
    let Value::Array(items) = body else {
        return Err(JmError::bad_request(format!("the body must be a json array of usernames, got {}", kind(body))));
    };
    if items.is_empty() || items.len() > max {
        return Err(JmError::bad_request(format!("give 1 to {max} usernames, got {}", items.len())));
    }
    items.iter().map(username_value).collect()
}

/// `?status=` of a switch route, as text so that each malformed value gets 899003.
#[derive(Debug, serde::Deserialize)]
pub struct StatusQuery {
    /// The switch's new state.
    pub status: Option<String>,
}

/// A switch from a query parameter `name` written as `on` / `off` (`true`/`false`, `1`/`0`).
///
/// # Errors
/// 899003 for anything else, or nothing.
pub fn switch(raw: Option<&str>, name: &str, on: &str, off: &str) -> Result<bool, JmError> {
    match raw {
        Some(v) if v == on => Ok(true),
        Some(v) if v == off => Ok(false),
        other => Err(JmError::bad_request(format!("{name} must be {on} or {off}, got {other:?}"))),
    }
}

/// A numeric id from a path (a gid, a room id): a positive whole number without leading zeros.
///
/// # Errors
/// 899003 naming `what`.
pub fn path_number(raw: &str, what: &str) -> Result<u64, JmError> {
    raw.parse::<u64>()
        .ok()
        .filter(|n| *n > 0 && !raw.starts_with('0'))
        .ok_or_else(|| JmError::bad_request(format!("{what} must be a positive whole number, got {raw:?}")))
}

/// A numeric id given in a JSON body as a number or a decimal string (a gid or room id as `target_id`).
///
/// # Errors
/// 899003 naming `what`.
pub fn body_number(v: &Value, what: &str) -> Result<u64, JmError> {
    let n = match v {
        Value::String(s) => s.parse::<u64>().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    };
    n.filter(|n| *n > 0).ok_or_else(|| JmError::bad_request(format!("{what} must be a positive whole number, got {v}")))
}

/// `body` as a JSON object; `what` names it in the error.
///
/// # Errors
/// 899003 when it is anything else.
pub fn object<'a>(body: &'a Value, what: &str) -> Result<&'a Map<String, Value>, JmError> {
    body.as_object().ok_or_else(|| JmError::bad_request(format!("{what} must be a json object, got {}", kind(body))))
}

pub(crate) use crate::http::json_kind as kind;

fn cut(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn usernames_follow_the_documents_rule_in_bytes() {
        for ok in ["dev_fang", "a1.b-c@d", "1234", &"x".repeat(128)] {
            assert!(username(ok).is_ok(), "{ok}");
        }
        for bad in ["abc", "_abc", "a b c", "名字名字", &"x".repeat(129), "abc!"] {
            assert!(username(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn nicknames_count_bytes_and_stay_on_one_line() {
        // 21 CJK characters and one ASCII letter are 64 bytes; 22 CJK characters are 66.
        let fits = format!("{}a", "名".repeat(21));
        assert_eq!(text(&obj(json!({"nickname": fits})), "nickname", MAX_SHORT_TEXT, true).unwrap().unwrap().len(), 64);
        assert!(text(&obj(json!({"nickname": "名".repeat(22)})), "nickname", MAX_SHORT_TEXT, true).is_err());
        assert!(text(&obj(json!({"nickname": "a\nb"})), "nickname", MAX_SHORT_TEXT, true).is_err());
        assert!(text(&obj(json!({"nickname": 5})), "nickname", MAX_SHORT_TEXT, true).is_err());
    }

    #[test]
    fn profile_fields_are_checked_by_type_and_range() {
        let p = profile(&obj(json!({"gender": 2, "birthday": "1990-01-24 00:00:00", "extras": {"k": "v"}}))).unwrap();
        assert_eq!((p.gender, p.birthday.as_deref(), p.extras.as_deref()), (Some(2), Some("1990-01-24"), Some(r#"{"k":"v"}"#)));
        for bad in [
            json!({"gender": 3}),
            json!({"gender": "1"}),
            json!({"birthday": "1990-02-30"}),
            json!({"birthday": "yesterday"}),
            json!({"extras": "x"}),
            json!({"extras": {"k": "v".repeat(510)}}),
            json!({"signature": "s".repeat(251)}),
        ] {
            assert!(profile(&obj(bad.clone())).is_err(), "{bad}");
        }
    }
}
