//! A framework's session as a keepsake record's JSON, and back.
//!
//! In a record every JSON object is a plain dict, whatever its keys: what a
//! handler stores reaches the framework as the same plain dict (Flask's
//! tagged JSON escapes a one-key dict whose key is a tag, as Flask's
//! `TagDict` does). Flask's typed values (tuple, bytes, Markup, UUID,
//! datetime) are kept across a read and a write as a two-key object, the
//! Flask tag and a mark:
//!
//! ```text
//! {" m": "<b>hi</b>", " mark": "<22 characters>"}
//! ```
//!
//! The mark is an HMAC-SHA256 (truncated to 128 bits) of the value's Flask
//! tagged JSON under a key derived from the codec's secret key, framework
//! and salt, so nobody without the secret key can make one: an object with
//! a mark that verifies is exactly a value that Flask put in a session
//! cookie signed with this secret key. Nothing more is bound: a marked
//! object copied to another key, into another session, or out to a client
//! and back in (a handler that echoes session JSON and stores what it is
//! sent) is still written as that same Flask value. An object whose mark
//! does not verify (made up, or changed) is a plain dict, written as such.
//!
//! What a record cannot hold exactly is refused rather than changed: `NaN`
//! and infinite floats, and integers beyond the 64 bits of `serde_json`.

use hmac::{Hmac, KeyInit, Mac as _};
use serde_json::{Map, Number, Value};
use sha2::Sha256;

use super::{
    b64, flask,
    json::{self, MAX_DEPTH},
    value::{PyDict, PyValue},
};

/// The key of the mark next to a Flask tag in a record.
pub(crate) const MARK: &str = " mark";

/// The key marks are made with.
pub(crate) type MarkKey = [u8; 32];

/// Derives the mark key from the secret (and what else names the codec).
pub(crate) fn mark_key(secret: &[u8], framework: &str, salt: &str) -> MarkKey {
    let mut mac = hmac(secret);
    mac.update(b"keepsake interop record mark\0");
    mac.update(framework.as_bytes());
    mac.update(b"\0");
    mac.update(salt.as_bytes());
    mac.finalize().into_bytes().into()
}

fn hmac(key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length.
    Hmac::new_from_slice(key).unwrap_or_else(|_| Hmac::new(&Default::default()))
}

/// The MAC of a typed value's Flask tagged JSON, which its mark is the
/// first 128 bits of.
fn mac(key: &MarkKey, value: &PyValue) -> Option<Hmac<Sha256>> {
    let tagged = flask::tag(value).ok()?;
    let text = json::to_string(&tagged, json::Style::FLASK).ok()?;
    let mut mac = hmac(key);
    mac.update(text.as_bytes());
    Some(mac)
}

/// The mark of a typed value.
fn mark(key: &MarkKey, value: &PyValue) -> Option<String> {
    Some(b64::encode_url(
        &mac(key, value)?.finalize().into_bytes()[..16],
    ))
}

/// Whether `given` is the mark of `value` (compared in constant time).
fn mark_matches(key: &MarkKey, value: &PyValue, given: &str) -> bool {
    let (Some(mac), Some(tag)) = (
        mac(key, value),
        b64::decode_lenient(given, b64::Alphabet::UrlSafe),
    ) else {
        return false;
    };
    tag.len() == 16 && mac.verify_truncated_left(&tag).is_ok()
}

/// The record JSON of a session.
///
/// # Errors
///
/// What a record cannot hold exactly, with the reason.
pub(crate) fn to_record(
    session: &PyDict,
    key: &MarkKey,
) -> Result<Map<String, Value>, &'static str> {
    let mut out = Map::new();
    for (name, value) in session.iter() {
        out.insert(name.to_owned(), to_value(value, key, 0)?);
    }
    Ok(out)
}

fn to_value(value: &PyValue, key: &MarkKey, depth: usize) -> Result<Value, &'static str> {
    if depth > MAX_DEPTH {
        return Err("the session is nested deeper than keepsake reads");
    }
    Ok(match value {
        PyValue::None => Value::Null,
        PyValue::Bool(b) => Value::Bool(*b),
        PyValue::Int(n) => Value::Number(int(*n)?),
        PyValue::Float(x) => Value::Number(
            Number::from_f64(*x)
                .ok_or("a float that is NaN or infinite (JSON has no such number)")?,
        ),
        PyValue::Str(text) => Value::String(text.clone()),
        PyValue::List(items) => Value::Array(
            items
                .iter()
                .map(|item| to_value(item, key, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        PyValue::Dict(dict) => {
            let mut out = Map::new();
            for (name, inner) in dict.iter() {
                out.insert(name.to_owned(), to_value(inner, key, depth + 1)?);
            }
            Value::Object(out)
        }
        typed => {
            let (tag, inner) = match typed {
                PyValue::Tuple(items) => (
                    " t",
                    Value::Array(
                        items
                            .iter()
                            .map(|item| to_value(item, key, depth + 1))
                            .collect::<Result<_, _>>()?,
                    ),
                ),
                PyValue::Bytes(bytes) => (" b", Value::String(b64::encode_standard(bytes))),
                PyValue::Markup(html) => (" m", Value::String(html.clone())),
                PyValue::Uuid(bytes) => (
                    " u",
                    Value::String(bytes.iter().map(|b| format!("{b:02x}")).collect()),
                ),
                PyValue::DateTime(secs) => (
                    " d",
                    Value::String(
                        flask::http_date(*secs)
                            .map_err(|_| "a datetime outside the years Flask carries")?,
                    ),
                ),
                _ => unreachable!("plain values are handled above"),
            };
            let mark = mark(key, typed).ok_or("a value whose Flask form cannot be written")?;
            let mut out = Map::new();
            out.insert(tag.to_owned(), inner);
            out.insert(MARK.to_owned(), Value::String(mark));
            Value::Object(out)
        }
    })
}

/// A Python int as a JSON number, if `serde_json` holds it exactly.
fn int(n: i128) -> Result<Number, &'static str> {
    const BEYOND: &str = "an integer beyond 64 bits (keepsake sessions hold 64-bit integers)";
    if let Ok(n) = i64::try_from(n) {
        Ok(n.into())
    } else {
        u64::try_from(n).map(Number::from).map_err(|_| BEYOND)
    }
}

/// The Python value one record JSON value stands for (see [`from_record`]).
pub(crate) fn from_json(value: &Value, key: &MarkKey, flask: bool) -> PyValue {
    from_value(value, key, flask)
}

/// The session a record's JSON stands for. Every object is a plain dict,
/// except a Flask tag with a mark that verifies.
pub(crate) fn from_record(data: &Map<String, Value>, key: &MarkKey, flask: bool) -> PyDict {
    data.iter()
        .map(|(name, value)| (name.clone(), from_value(value, key, flask)))
        .collect()
}

fn from_value(value: &Value, key: &MarkKey, flask: bool) -> PyValue {
    match value {
        Value::Null => PyValue::None,
        Value::Bool(b) => PyValue::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(n), _) => PyValue::Int(n.into()),
            (None, Some(n)) => PyValue::Int(n.into()),
            // Finite: serde_json holds no other float.
            _ => PyValue::Float(n.as_f64().unwrap_or_default()),
        },
        Value::String(text) => PyValue::Str(text.clone()),
        Value::Array(items) => PyValue::List(
            items
                .iter()
                .map(|item| from_value(item, key, flask))
                .collect(),
        ),
        Value::Object(object) => {
            if flask && let Some(typed) = marked(object, key) {
                return typed;
            }
            PyValue::Dict(
                object
                    .iter()
                    .map(|(name, inner)| (name.clone(), from_value(inner, key, flask)))
                    .collect(),
            )
        }
    }
}

/// The typed value a marked Flask tag stands for, if its mark verifies.
fn marked(object: &Map<String, Value>, key: &MarkKey) -> Option<PyValue> {
    if object.len() != 2 {
        return None;
    }
    let given = object.get(MARK)?.as_str()?;
    let (tag, inner) = object.iter().find(|(name, _)| *name != MARK)?;
    let typed = match (tag.as_str(), inner) {
        (" t", Value::Array(items)) => PyValue::Tuple(
            items
                .iter()
                .map(|item| from_value(item, key, true))
                .collect(),
        ),
        (" b", Value::String(text)) => {
            PyValue::Bytes(b64::decode_lenient(text, b64::Alphabet::Standard)?)
        }
        (" m", Value::String(html)) => PyValue::Markup(html.clone()),
        (" u", Value::String(hex)) => PyValue::Uuid(flask::parse_uuid(hex)?),
        (" d", Value::String(date)) => PyValue::DateTime(flask::parse_http_date(date)?),
        _ => return None,
    };
    mark_matches(key, &typed, given).then_some(typed)
}
