//! Flask's tagged JSON (`flask.json.tag.TaggedJSONSerializer`).
//!
//! Flask stores a few Python types JSON lacks as one-key objects whose key
//! starts with a space: `" t"` tuple, `" b"` bytes (standard base64),
//! `" m"` Markup, `" u"` UUID (32 hex digits), `" d"` datetime (HTTP date).
//! A real one-key dict whose key is one of these tags is escaped as
//! `{" di": {"<key>__": value}}`. Reading untags bottom-up: children first,
//! then the object itself, as Flask's `_untag_scan` does.

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, Weekday};

use super::{
    b64,
    json::MAX_DEPTH,
    value::{PyDict, PyValue},
};

/// The tag keys Flask registers by default.
const TAGS: [&str; 6] = [" di", " t", " b", " m", " u", " d"];

/// Why a tagged value cannot be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TagError {
    /// A datetime outside the years 100 to 9999 (Python reads a year below
    /// 100 in an HTTP date as 19xx or 20xx).
    DateOutOfRange,
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
}

/// Turns a value into the plain JSON value Flask's `tag()` makes of it.
pub(crate) fn tag(value: &PyValue) -> Result<PyValue, TagError> {
    tag_at(value, 0)
}

fn tagged(key: &str, inner: PyValue) -> PyValue {
    let mut dict = PyDict::new();
    dict.insert(key, inner);
    PyValue::Dict(dict)
}

fn tag_at(value: &PyValue, depth: usize) -> Result<PyValue, TagError> {
    if depth > MAX_DEPTH {
        return Err(TagError::TooDeep);
    }
    Ok(match value {
        PyValue::Dict(dict) => {
            if let (1, Some((key, inner))) = (dict.len(), dict.first())
                && TAGS.contains(&key)
            {
                let mut escaped = PyDict::new();
                escaped.insert(format!("{key}__"), tag_at(inner, depth + 1)?);
                return Ok(tagged(" di", PyValue::Dict(escaped)));
            }
            let mut out = PyDict::new();
            for (key, inner) in dict.iter() {
                out.insert(key, tag_at(inner, depth + 1)?);
            }
            PyValue::Dict(out)
        }
        PyValue::Tuple(items) => tagged(" t", tag_list(items, depth)?),
        PyValue::List(items) => tag_list(items, depth)?,
        PyValue::Bytes(bytes) => tagged(" b", PyValue::Str(b64::encode_standard(bytes))),
        PyValue::Markup(html) => tagged(" m", PyValue::Str(html.clone())),
        PyValue::Uuid(bytes) => {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            tagged(" u", PyValue::Str(hex))
        }
        PyValue::DateTime(secs) => tagged(" d", PyValue::Str(http_date(*secs)?)),
        plain @ (PyValue::None
        | PyValue::Bool(_)
        | PyValue::Int(_)
        | PyValue::Float(_)
        | PyValue::Str(_)) => plain.clone(),
    })
}

fn tag_list(items: &[PyValue], depth: usize) -> Result<PyValue, TagError> {
    items
        .iter()
        .map(|item| tag_at(item, depth + 1))
        .collect::<Result<Vec<_>, _>>()
        .map(PyValue::List)
}

/// Undoes [`tag`] on parsed JSON, as Flask's `loads` does.
pub(crate) fn untag(value: PyValue) -> Result<PyValue, &'static str> {
    match value {
        PyValue::Dict(dict) => {
            let mut out = PyDict::new();
            for (key, inner) in dict {
                out.insert(key, untag(inner)?);
            }
            match out.first() {
                Some((key, _)) if out.len() == 1 && TAGS.contains(&key) => {
                    let Some((key, inner)) = out.into_items().pop() else {
                        return Err("empty tag");
                    };
                    untag_one(&key, inner)
                }
                _ => Ok(PyValue::Dict(out)),
            }
        }
        PyValue::List(items) => items
            .into_iter()
            .map(untag)
            .collect::<Result<Vec<_>, _>>()
            .map(PyValue::List),
        other => Ok(other),
    }
}

fn untag_one(key: &str, inner: PyValue) -> Result<PyValue, &'static str> {
    match (key, inner) {
        (" di", PyValue::Dict(dict)) => {
            // Flask takes the first key and drops its last two characters.
            let (escaped, value) = dict
                .into_items()
                .into_iter()
                .next()
                .ok_or("an empty ' di' tag")?;
            let mut chars: Vec<char> = escaped.chars().collect();
            chars.truncate(chars.len().saturating_sub(2));
            let mut out = PyDict::new();
            out.insert(chars.into_iter().collect::<String>(), value);
            Ok(PyValue::Dict(out))
        }
        (" t", PyValue::List(items)) => Ok(PyValue::Tuple(items)),
        (" b", PyValue::Str(text)) => b64::decode_lenient(&text, b64::Alphabet::Standard)
            .map(PyValue::Bytes)
            .ok_or("a ' b' tag that is not base64"),
        (" m", PyValue::Str(html)) => Ok(PyValue::Markup(html)),
        (" u", PyValue::Str(text)) => parse_uuid(&text)
            .map(PyValue::Uuid)
            .ok_or("a ' u' tag that is not a UUID"),
        (" d", PyValue::Str(text)) => parse_http_date(&text)
            .map(PyValue::DateTime)
            .ok_or("a ' d' tag that is not an HTTP date keepsake reads"),
        _ => Err("a Flask tag with a value of the wrong type"),
    }
}

/// Python's `UUID(text)`: optional `urn:`/`uuid:` prefixes, braces and
/// hyphens around 32 hex digits.
pub(crate) fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let text = text.replace("urn:", "").replace("uuid:", "");
    let hex: String = text
        .trim_matches(|c| c == '{' || c == '}')
        .chars()
        .filter(|&c| c != '-')
        .collect();
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Werkzeug's `http_date`: `Thu, 29 Feb 2024 13:45:30 GMT`. Years below
/// 100 are refused: Werkzeug's `parse_date` reads `0001` as 2001, so Flask
/// would not read back the same datetime.
pub(crate) fn http_date(secs: i64) -> Result<String, TagError> {
    let at = OffsetDateTime::from_unix_timestamp(secs).map_err(|_| TagError::DateOutOfRange)?;
    if !(100..=9999).contains(&at.year()) {
        return Err(TagError::DateOutOfRange);
    }
    let weekday = match at.weekday() {
        Weekday::Monday => "Mon",
        Weekday::Tuesday => "Tue",
        Weekday::Wednesday => "Wed",
        Weekday::Thursday => "Thu",
        Weekday::Friday => "Fri",
        Weekday::Saturday => "Sat",
        Weekday::Sunday => "Sun",
    };
    Ok(format!(
        "{weekday}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        at.day(),
        MONTHS[usize::from(u8::from(at.month())) - 1],
        at.year(),
        at.hour(),
        at.minute(),
        at.second()
    ))
}

/// Reads the IMF-fixdate that [`http_date`] writes (the weekday is not
/// checked, as Python's parser does not check it; a year below 100 means
/// 19xx above 68 and 20xx otherwise, as in `email.utils`).
pub(crate) fn parse_http_date(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 29 || &b[3..5] != b", " || text.get(25..) != Some(" GMT") {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = text.get(range)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let day = u8::try_from(num(5..7)?).ok()?;
    let month_index = MONTHS.iter().position(|m| text.get(8..11) == Some(*m))?;
    let month = Month::try_from(u8::try_from(month_index + 1).ok()?).ok()?;
    let year = match i32::try_from(num(12..16)?).ok()? {
        year @ 0..=68 => year + 2000,
        year @ 69..=99 => year + 1900,
        year => year,
    };
    if b[7] != b' ' || b[11] != b' ' || b[16] != b' ' || b[19] != b':' || b[22] != b':' {
        return None;
    }
    let time = Time::from_hms(
        u8::try_from(num(17..19)?).ok()?,
        u8::try_from(num(20..22)?).ok()?,
        u8::try_from(num(23..25)?).ok()?,
    )
    .ok()?;
    let date = Date::from_calendar_date(year, month, day).ok()?;
    Some(
        PrimitiveDateTime::new(date, time)
            .assume_utc()
            .unix_timestamp(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates() {
        assert_eq!(
            http_date(1_709_214_330).unwrap(),
            "Thu, 29 Feb 2024 13:45:30 GMT"
        );
        assert_eq!(
            parse_http_date("Thu, 29 Feb 2024 13:45:30 GMT"),
            Some(1_709_214_330)
        );
        assert_eq!(
            http_date(-59_011_459_200).unwrap(),
            "Fri, 01 Jan 0100 00:00:00 GMT"
        );
        assert_eq!(http_date(-59_011_459_201), Err(TagError::DateOutOfRange));
        // As Python's email.utils reads two-digit years.
        assert_eq!(
            parse_http_date("Mon, 01 Jan 0001 00:00:00 GMT"),
            Some(978_307_200)
        );
        assert_eq!(
            parse_http_date("Mon, 01 Jan 0069 00:00:00 GMT"),
            Some(-31_536_000)
        );
        assert_eq!(http_date(253_402_300_800), Err(TagError::DateOutOfRange));
        assert_eq!(parse_http_date("Thu, 30 Feb 2024 13:45:30 GMT"), None);
        assert_eq!(parse_http_date("Thu, 29 Feb 2024 13:45:30 UTC"), None);
        assert_eq!(parse_http_date("Thu, 29 Feb 2024 13:45:3é GMT"), None);
    }

    #[test]
    fn uuids() {
        let want = Some([
            0x12, 0x34, 0x56, 0x78, 0x12, 0x34, 0x56, 0x78, 0x12, 0x34, 0x56, 0x78, 0x12, 0x34,
            0x56, 0x78,
        ]);
        assert_eq!(parse_uuid("12345678123456781234567812345678"), want);
        assert_eq!(
            parse_uuid("urn:uuid:{12345678-1234-5678-1234-567812345678}"),
            want
        );
        assert_eq!(parse_uuid("1234567812345678123456781234567"), None);
    }
}
