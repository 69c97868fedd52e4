//! A request's parameters, wherever the caller put them: the query string, a form body
//! (`name[]=a&name[]=b` arrays) or a JSON object body (numbers and strings alike; arrays of them).
//! Ids are accepted as numbers or as strings of digits.

use std::collections::BTreeMap;

use serde_json::Value;
use warp::{Filter, Rejection};

use super::PopError;

/// Largest request body, in bytes.
const MAX_BODY_BYTES: u64 = 1 << 20;

/// Longest free text (nickname, remark, sign, postscript), in characters: a safety cap, as the
/// document sets none.
pub const MAX_TEXT: usize = 255;

/// Most ids one list parameter may hold.
pub const MAX_IDS: usize = 1000;

/// The parameters of a request, each name with its values in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(BTreeMap<String, Vec<String>>);

/// `name[]` and `name[3]` are `name`.
fn base_name(key: &str) -> &str {
    match key.find('[') {
        Some(i) if key.ends_with(']') => &key[..i],
        _ => key,
    }
}

impl Params {
    fn push(&mut self, key: &str, value: String) {
        self.0.entry(base_name(key).to_owned()).or_default().push(value);
    }

    /// From a query string or form body.
    pub fn from_form(raw: &[u8], into: &mut Params) -> Result<(), PopError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(raw).map_err(|e| PopError::param(format!("malformed form or query string: {e}")))?;
        for (k, v) in pairs {
            into.push(&k, v);
        }
        Ok(())
    }

    /// From a JSON object body.
    pub fn from_json(raw: &[u8], into: &mut Params) -> Result<(), PopError> {
        let Value::Object(map) = serde_json::from_slice::<Value>(raw).map_err(|e| PopError::param(format!("malformed json body: {e}")))? else {
            return Err(PopError::param("a json body must be an object"));
        };
        fn scalar(key: &str, v: &Value) -> Result<Option<String>, PopError> {
            Ok(match v {
                Value::Null => None,
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                Value::Bool(b) => Some(if *b { "1" } else { "0" }.to_owned()),
                _ => return Err(PopError::param(format!("{key} must be a string, a number or an array of them"))),
            })
        }
        for (k, v) in &map {
            match v {
                Value::Array(items) => {
                    // An empty array is still the parameter, with no values.
                    into.0.entry(base_name(k).to_owned()).or_default();
                    for item in items {
                        if let Some(s) = scalar(k, item)? {
                            into.push(k, s);
                        }
                    }
                }
                other => {
                    if let Some(s) = scalar(k, other)? {
                        into.push(k, s);
                    }
                }
            }
        }
        Ok(())
    }

    /// The first value of `name`, if given and not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(|v| v.first()).map(String::as_str).filter(|s| !s.is_empty())
    }

    /// Whether `name` was given at all.
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// A required id (a positive whole number).
    pub fn id(&self, name: &str) -> Result<u64, PopError> {
        self.opt_id(name)?.ok_or_else(|| PopError::param(format!("{name} is required")))
    }

    /// An optional id.
    pub fn opt_id(&self, name: &str) -> Result<Option<u64>, PopError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => parse_id(name, v).map(Some),
        }
    }

    /// A required list of ids (1 to [`MAX_IDS`], repeats dropped), from `name[]=` repeats, a JSON
    /// array, or one comma-separated value.
    pub fn ids(&self, name: &str) -> Result<Vec<u64>, PopError> {
        let raw: Vec<&str> =
            self.0.get(name).map(|v| v.iter().flat_map(|s| s.split(',')).map(str::trim).filter(|s| !s.is_empty()).collect()).unwrap_or_default();
        if raw.is_empty() {
            return Err(PopError::param(format!("{name} is required (one or more ids)")));
        }
        if raw.len() > MAX_IDS {
            return Err(PopError::param(format!("{name} may hold at most {MAX_IDS} ids")));
        }
        let mut out = Vec::with_capacity(raw.len());
        for v in raw {
            let id = parse_id(name, v)?;
            if !out.contains(&id) {
                out.push(id);
            }
        }
        Ok(out)
    }

    /// A text of at most `max` characters: `None` when absent (refused when `required`).
    pub fn text(&self, name: &str, required: bool, max: usize) -> Result<Option<String>, PopError> {
        match self.0.get(name).and_then(|v| v.first()) {
            None if required => Err(PopError::param(format!("{name} is required"))),
            None => Ok(None),
            Some(v) if required && v.is_empty() => Err(PopError::param(format!("{name} must not be empty"))),
            Some(v) if v.chars().count() > max => Err(PopError::param(format!("{name} is longer than {max} characters"))),
            Some(v) => Ok(Some(v.clone())),
        }
    }

    /// A whole number within `range`: `None` when absent (refused when `required`).
    pub fn int(&self, name: &str, required: bool, range: std::ops::RangeInclusive<i64>) -> Result<Option<i64>, PopError> {
        let Some(v) = self.get(name) else {
            return if required { Err(PopError::param(format!("{name} is required"))) } else { Ok(None) };
        };
        let n: i64 = v.trim().parse().map_err(|_| PopError::param(format!("{name} must be a whole number, got {v:?}")))?;
        if !range.contains(&n) {
            return Err(PopError::param(format!("{name} must be {} to {}, got {n}", range.start(), range.end())));
        }
        Ok(Some(n))
    }

    /// `type`: `friend` or `group`.
    pub fn kind(&self) -> Result<Kind, PopError> {
        match self.get("type") {
            Some("friend") => Ok(Kind::Friend),
            Some("group") => Ok(Kind::Group),
            Some(other) => Err(PopError::param(format!("type must be friend or group, got {other:?}"))),
            None => Err(PopError::param("type is required (friend or group)")),
        }
    }
}

/// Which conversation a message parameter names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// With a user.
    Friend,
    /// In a group.
    Group,
}

fn parse_id(name: &str, v: &str) -> Result<u64, PopError> {
    match v.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(PopError::param(format!("{name} must be a positive whole number, got {v:?}"))),
    }
}

/// The request's parameters: its query string, then its body (JSON when it says so or looks like it,
/// else a form).
pub(super) fn params() -> impl Filter<Extract = (Params,), Error = Rejection> + Clone {
    warp::query::raw().or(warp::any().map(String::new)).unify().and(warp::header::optional::<String>("content-type")).and(warp::body::stream()).and_then(
        |query: String, content_type: Option<String>, stream| async move {
            let body = bounded_body(stream).await.map_err(warp::reject::custom)?;
            let mut p = Params::default();
            Params::from_form(query.as_bytes(), &mut p).map_err(warp::reject::custom)?;
            let trimmed = body.iter().skip_while(|b| b.is_ascii_whitespace()).copied().next();
            let json = content_type.as_deref().is_some_and(|t| t.to_ascii_lowercase().contains("json")) || trimmed == Some(b'{');
            if !body.is_empty() {
                if json {
                    Params::from_json(&body, &mut p).map_err(warp::reject::custom)?;
                } else {
                    Params::from_form(&body, &mut p).map_err(warp::reject::custom)?;
                }
            }
            Ok::<_, Rejection>(p)
        },
    )
}

/// A body of at most [`MAX_BODY_BYTES`], whether or not it says its length (a GET usually has none).
async fn bounded_body<S, B>(stream: S) -> Result<Vec<u8>, PopError>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>> + Unpin,
    B: bytes::Buf,
{
    use futures_util::TryStreamExt as _;
    let mut stream = stream;
    let mut out = Vec::new();
    while let Some(mut chunk) = stream.try_next().await.map_err(|e| PopError::param(format!("reading the body: {e}")))? {
        if out.len() + chunk.remaining() > MAX_BODY_BYTES as usize {
            return Err(PopError {
                status: warp::http::StatusCode::PAYLOAD_TOO_LARGE,
                code: super::PARAM,
                msg: format!("the body is larger than {MAX_BODY_BYTES} bytes"),
            });
        }
        while chunk.has_remaining() {
            let piece = chunk.chunk();
            out.extend_from_slice(piece);
            let n = piece.len();
            chunk.advance(n);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_json_and_arrays_read_alike() {
        let mut form = Params::default();
        Params::from_form(b"login_uid=7&members%5B%5D=3&members%5B%5D=4,5&members%5B%5D=3&nickname=%E7%8C%AB", &mut form).unwrap();
        let mut json = Params::default();
        Params::from_json(r#"{"login_uid": 7, "members": ["3", 4, 5], "nickname": "猫"}"#.as_bytes(), &mut json).unwrap();
        for p in [&form, &json] {
            assert_eq!(p.id("login_uid").unwrap(), 7);
            assert_eq!(p.ids("members").unwrap(), vec![3, 4, 5]);
            assert_eq!(p.text("nickname", true, 10).unwrap().as_deref(), Some("猫"));
        }
        assert!(Params::from_json(b"[1]", &mut Params::default()).is_err());
        assert!(Params::from_json(b"{bad", &mut Params::default()).is_err());
        assert!(Params::from_json(br#"{"a": {"b": 1}}"#, &mut Params::default()).is_err());
    }

    #[test]
    fn ids_and_numbers_are_checked() {
        let mut p = Params::default();
        Params::from_form(b"a=0&b=x&c=-1&d=12&e=&type=group&n=5", &mut p).unwrap();
        for name in ["a", "b", "c", "missing"] {
            assert!(p.id(name).is_err(), "{name}");
        }
        assert_eq!(p.id("d").unwrap(), 12);
        assert_eq!(p.opt_id("e").unwrap(), None, "empty is absent");
        assert_eq!(p.kind().unwrap(), Kind::Group);
        assert!(p.int("n", true, 0..=1).is_err());
        assert_eq!(p.int("n", true, 0..=9).unwrap(), Some(5));
        assert!(p.ids("e").is_err());
        assert!(p.text("b", true, 0).is_err(), "too long");
    }
}
