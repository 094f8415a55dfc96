//! The bytes of a [`Record`] inside a client-side session cookie.
//!
//! The layout is documented on [`Record::to_cookie_payload`].

use super::{Data, ID_LEN, Id, Record};
use crate::codec::{MAX_TIME, u48_bytes, u48_value};

/// First byte of the compact layout.
const COMPACT: u8 = 0x01;

const PERSISTENT: u8 = 1;
const IDLE_TIMEOUT: u8 = 2;
const IDLE_DEADLINE: u8 = 4;
const USER: u8 = 8;
const KNOWN_FLAGS: u8 = PERSISTENT | IDLE_TIMEOUT | IDLE_DEADLINE | USER;

/// Marker, id, flags, created_at, absolute_deadline, version.
const FIXED_LEN: usize = 1 + ID_LEN + 1 + 6 + 6 + 8;

/// Why bytes are not a record payload ([`Record::from_cookie_payload`]).
///
/// # Example
///
/// ```
/// use keepsake::store::{Record, RecordPayloadError};
///
/// assert_eq!(Record::from_cookie_payload(b""), Err(RecordPayloadError::Truncated));
/// assert_eq!(
///     Record::from_cookie_payload(b"\x07"),
///     Err(RecordPayloadError::UnknownLayout { marker: 7 })
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordPayloadError {
    /// Shorter than its fields say.
    #[error("the session record payload is truncated")]
    Truncated,
    /// Its first byte names no layout this version of keepsake knows.
    #[error("the session record payload has an unknown layout (first byte {marker:#04x})")]
    UnknownLayout {
        /// The first byte.
        marker: u8,
    },
    /// A field does not hold what it must: unknown flags, a user that is
    /// not UTF-8, data that is not a JSON object, or JSON that is not a
    /// record.
    #[error("the session record payload is malformed: {reason}")]
    Malformed {
        /// What is wrong.
        reason: String,
    },
}

impl Record {
    /// The record as the payload of a client-side session cookie.
    ///
    /// Before the record is signed or sealed it becomes a payload in a
    /// compact layout, which keeps a small session's cookie under half as
    /// long as JSON of the record would (fewer bytes to MAC, seal, base64,
    /// send and parse on every request that re-issues it):
    ///
    /// | bytes | field |
    /// |---|---|
    /// | 1 | layout marker `0x01` (a JSON record starts with `{`, `0x7B`) |
    /// | 16 | [`id`](Record::id) |
    /// | 1 | flags: `1` persistent, `2` idle timeout, `4` idle deadline, `8` user |
    /// | 6 | [`created_at`](Record::created_at), big-endian |
    /// | 6 | [`absolute_deadline`](Record::absolute_deadline) |
    /// | 8 | [`version`](Record::version) |
    /// | 6 | [`idle_timeout`](Record::idle_timeout), if its flag is set |
    /// | 6 | [`idle_deadline`](Record::idle_deadline), if its flag is set |
    /// | 2 + n | [`user`](Record::user): length, then UTF-8, if its flag is set |
    /// | rest | [`data`](Record::data) as a JSON object |
    ///
    /// A record whose times do not fit in 48 bits (past the year 8 million)
    /// or whose user is longer than 65,535 bytes is written as JSON instead.
    /// [`Record::from_cookie_payload`] reads both, so the JSON cookies of
    /// earlier keepsake builds keep working (cookies in this layout cannot
    /// be read by those builds: they start a new session).
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::store::{Id, Record};
    ///
    /// let mut record = Record::new(Id::random(), 1_000, Some(1_800), 86_400);
    /// record.data.insert("count".into(), 1.into());
    /// let payload = record.to_cookie_payload();
    /// // 38 fixed bytes, both idle fields, the data's JSON.
    /// assert_eq!(payload.len(), 38 + 12 + r#"{"count":1}"#.len());
    /// assert_eq!(Record::from_cookie_payload(&payload), Ok(record));
    /// ```
    #[must_use]
    pub fn to_cookie_payload(&self) -> Vec<u8> {
        let Some(fixed) = self.compact_fixed_len() else {
            // A record always serializes.
            return serde_json::to_vec(self).unwrap_or_default();
        };
        // Room for small data; the data is serialized once, straight in.
        let mut out = Vec::with_capacity(fixed + 64);
        let flags = self.flags();
        out.push(COMPACT);
        out.extend_from_slice(self.id.as_bytes());
        out.push(flags);
        out.extend_from_slice(&u48_bytes(self.created_at));
        out.extend_from_slice(&u48_bytes(self.absolute_deadline));
        out.extend_from_slice(&self.version.to_be_bytes());
        for value in [self.idle_timeout, self.idle_deadline]
            .into_iter()
            .flatten()
        {
            out.extend_from_slice(&u48_bytes(value));
        }
        if let Some(user) = &self.user {
            // compact_fixed_len checked that the length fits in 16 bits.
            let len = u16::try_from(user.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(user.as_bytes());
        }
        // Writing to a Vec cannot fail, and data always serializes.
        let _ = serde_json::to_writer(&mut out, &self.data);
        out
    }

    /// The length of [`to_cookie_payload`](Self::to_cookie_payload), counted
    /// without building it.
    pub(crate) fn cookie_payload_len(&self) -> usize {
        match self.compact_fixed_len() {
            Some(fixed) => fixed + json_len(&self.data),
            None => json_len(self),
        }
    }

    /// Reads a record from a client-side session cookie's payload: the
    /// compact layout of [`to_cookie_payload`](Self::to_cookie_payload), or
    /// JSON of the record (what keepsake wrote before it).
    ///
    /// # Errors
    ///
    /// [`RecordPayloadError`] when the bytes are neither; never panics.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::store::{Id, Record};
    ///
    /// let record = Record::new(Id::random(), 1_000, None, 86_400);
    /// let json = serde_json::to_vec(&record).unwrap();
    /// assert_eq!(Record::from_cookie_payload(&json), Ok(record.clone()));
    /// let compact = record.to_cookie_payload();
    /// assert!(compact.len() < json.len() / 2);
    /// assert!(Record::from_cookie_payload(&compact[..20]).is_err());
    /// ```
    pub fn from_cookie_payload(bytes: &[u8]) -> Result<Self, RecordPayloadError> {
        match bytes.first() {
            None => Err(RecordPayloadError::Truncated),
            Some(b'{') => serde_json::from_slice(bytes).map_err(|err| malformed(&err)),
            Some(&COMPACT) => decode_compact(bytes),
            Some(&marker) => Err(RecordPayloadError::UnknownLayout { marker }),
        }
    }

    fn flags(&self) -> u8 {
        let mut flags = 0;
        for (set, flag) in [
            (self.persistent, PERSISTENT),
            (self.idle_timeout.is_some(), IDLE_TIMEOUT),
            (self.idle_deadline.is_some(), IDLE_DEADLINE),
            (self.user.is_some(), USER),
        ] {
            if set {
                flags |= flag;
            }
        }
        flags
    }

    /// The compact payload's length without the data, or `None` if the
    /// layout cannot hold this record.
    fn compact_fixed_len(&self) -> Option<usize> {
        let times = [self.created_at, self.absolute_deadline];
        let optional = [self.idle_timeout, self.idle_deadline];
        if times
            .iter()
            .chain(optional.iter().flatten())
            .any(|&t| t > MAX_TIME)
        {
            return None;
        }
        let user = match &self.user {
            Some(user) if user.len() > usize::from(u16::MAX) => return None,
            Some(user) => 2 + user.len(),
            None => 0,
        };
        Some(FIXED_LEN + 6 * optional.iter().flatten().count() + user)
    }
}

fn decode_compact(bytes: &[u8]) -> Result<Record, RecordPayloadError> {
    let mut rest = bytes.get(1..).ok_or(RecordPayloadError::Truncated)?;
    let id: [u8; ID_LEN] = take(&mut rest)?;
    let [flags] = take(&mut rest)?;
    if flags & !KNOWN_FLAGS != 0 {
        return Err(RecordPayloadError::Malformed {
            reason: format!("unknown flags {flags:#04x}"),
        });
    }
    let created_at = read_u48(&mut rest)?;
    let absolute_deadline = read_u48(&mut rest)?;
    let version = u64::from_be_bytes(take(&mut rest)?);
    let mut optional = |flag: u8| -> Result<Option<u64>, RecordPayloadError> {
        if flags & flag == 0 {
            Ok(None)
        } else {
            read_u48(&mut rest).map(Some)
        }
    };
    let idle_timeout = optional(IDLE_TIMEOUT)?;
    let idle_deadline = optional(IDLE_DEADLINE)?;
    let user = if flags & USER == 0 {
        None
    } else {
        let len = usize::from(u16::from_be_bytes(take(&mut rest)?));
        if rest.len() < len {
            return Err(RecordPayloadError::Truncated);
        }
        let (user, after) = rest.split_at(len);
        rest = after;
        Some(
            String::from_utf8(user.to_vec()).map_err(|_| RecordPayloadError::Malformed {
                reason: "the user is not UTF-8".to_owned(),
            })?,
        )
    };
    if rest.is_empty() {
        return Err(RecordPayloadError::Truncated);
    }
    let data: Data = serde_json::from_slice(rest).map_err(|err| malformed(&err))?;
    Ok(Record {
        id: Id::from_bytes(id),
        data,
        created_at,
        idle_timeout,
        idle_deadline,
        absolute_deadline,
        persistent: flags & PERSISTENT != 0,
        version,
        user,
    })
}

/// The first `N` bytes of `rest`, which moves past them.
fn take<const N: usize>(rest: &mut &[u8]) -> Result<[u8; N], RecordPayloadError> {
    let (head, tail) = rest
        .split_first_chunk::<N>()
        .ok_or(RecordPayloadError::Truncated)?;
    *rest = tail;
    Ok(*head)
}

fn read_u48(rest: &mut &[u8]) -> Result<u64, RecordPayloadError> {
    take(rest).map(u48_value)
}

fn malformed(err: &serde_json::Error) -> RecordPayloadError {
    RecordPayloadError::Malformed {
        reason: json_error_summary(err),
    }
}

/// What is wrong with stored JSON that did not decode, without quoting it:
/// the kind of error and where it is ("JSON syntax error at line 1 column
/// 5", "JSON data error (a wrong type or value) at line 1 column 34").
/// serde_json's own message quotes what it stumbled on (`invalid type:
/// string "card=4111…"`), and stored JSON is session data, which must never
/// reach an error message and, through it, a log. Every store and the
/// cookie payload word JSON errors about stored data with this.
pub(crate) fn json_error_summary(err: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match err.classify() {
        Category::Syntax => "JSON syntax error",
        Category::Data => "JSON data error (a wrong type or value)",
        Category::Eof => "JSON cut short",
        Category::Io => "JSON read error",
    };
    format!("{what} at line {} column {}", err.line(), err.column())
}

/// The length of `value`'s JSON, counted without building it.
fn json_len(value: &impl serde::Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing to a counter cannot fail, and records and data always
    // serialize.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn record() -> Record {
        let mut record = Record::new(Id::random(), 1_796_417_180, Some(1_800), 14 * 86_400);
        record.data.insert("count".into(), 1.into());
        record
    }

    #[test]
    fn every_optional_field_round_trips() {
        let mut record = record();
        record.persistent = true;
        record.user = Some("ada@example.com".into());
        record.version = u64::MAX;
        record
            .data
            .insert("nested".into(), serde_json::json!({"a": [1, "b", null]}));
        for (idle_timeout, idle_deadline) in [(None, None), (Some(60), None), (None, Some(7))] {
            record.idle_timeout = idle_timeout;
            record.idle_deadline = idle_deadline;
            let payload = record.to_cookie_payload();
            assert_eq!(payload[0], COMPACT);
            assert_eq!(payload.len(), record.cookie_payload_len());
            assert_eq!(Record::from_cookie_payload(&payload), Ok(record.clone()));
        }
    }

    #[test]
    fn a_record_the_layout_cannot_hold_is_json() {
        let mut record = record();
        record.absolute_deadline = MAX_TIME + 1;
        let payload = record.to_cookie_payload();
        assert_eq!(payload, serde_json::to_vec(&record).unwrap());
        assert_eq!(payload.len(), record.cookie_payload_len());
        assert_eq!(Record::from_cookie_payload(&payload), Ok(record));

        let mut record = self::record();
        record.user = Some("u".repeat(70_000));
        assert_eq!(record.to_cookie_payload()[0], b'{');
    }

    #[test]
    fn the_bench_session_is_less_than_a_third_of_its_json() {
        let record = record();
        let compact = record.to_cookie_payload().len();
        let json = serde_json::to_vec(&record).unwrap().len();
        assert_eq!(compact, 50 + 11);
        assert!(compact * 3 < json, "{compact} against {json}");
    }

    #[test]
    fn bad_payloads_are_typed_errors() {
        let good = record().to_cookie_payload();
        // Every strict prefix is an error, never a panic.
        for len in 0..good.len() {
            assert!(Record::from_cookie_payload(&good[..len]).is_err(), "{len}");
        }
        let mut flags = good.clone();
        flags[1 + ID_LEN] |= 0x80;
        assert!(matches!(
            Record::from_cookie_payload(&flags),
            Err(RecordPayloadError::Malformed { .. })
        ));
        let mut data = good;
        data.truncate(FIXED_LEN + 12);
        data.extend_from_slice(b"[1]");
        assert!(matches!(
            Record::from_cookie_payload(&data),
            Err(RecordPayloadError::Malformed { .. })
        ));
        assert!(matches!(
            Record::from_cookie_payload(b"{\"id\":1}"),
            Err(RecordPayloadError::Malformed { .. })
        ));
    }

    /// Stored JSON that does not decode is described, never quoted.
    #[test]
    fn json_errors_never_quote_the_json() {
        let secret = "4111111111111111 hunter2";
        for (json, what) in [
            (format!("\"{secret}\""), "JSON data error"),
            ("4111111111111111".to_owned(), "JSON data error"),
            (format!("{{\"pw\": {secret}}}"), "JSON syntax error"),
            (format!("{{\"pw\": \"{secret}"), "JSON cut short"),
        ] {
            let err = serde_json::from_str::<Data>(&json).unwrap_err();
            let summary = json_error_summary(&err);
            assert!(summary.starts_with(what), "{summary}");
            assert!(summary.contains(" at line 1 column "), "{summary}");
            assert!(!summary.contains("4111") && !summary.contains("hunter2"));
        }
        // A cookie payload whose data is a JSON string, not an object.
        let mut payload = record().to_cookie_payload();
        payload.truncate(FIXED_LEN + 12);
        payload.extend_from_slice(format!("\"{secret}\"").as_bytes());
        let err = Record::from_cookie_payload(&payload).unwrap_err();
        for shown in [err.to_string(), format!("{err:?}")] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("JSON data error"), "{shown}");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Record::from_cookie_payload(&bytes);
            let mut compact = vec![COMPACT];
            compact.extend_from_slice(&bytes);
            let _ = Record::from_cookie_payload(&compact);
        }

        #[test]
        fn records_round_trip(
            created_at in 0..=MAX_TIME,
            absolute_deadline in 0..=MAX_TIME,
            version: u64,
            idle_timeout in proptest::option::of(0..=MAX_TIME),
            idle_deadline in proptest::option::of(0..=MAX_TIME),
            persistent: bool,
            user in proptest::option::of("\\PC{0,40}"),
            key in "\\PC{0,10}",
            value: i64,
            float in any::<f64>().prop_filter("JSON has no NaN or infinity", |f| f.is_finite()),
        ) {
            let mut record = Record::new(Id::random(), 0, None, 0);
            record.created_at = created_at;
            record.absolute_deadline = absolute_deadline;
            record.version = version;
            record.idle_timeout = idle_timeout;
            record.idle_deadline = idle_deadline;
            record.persistent = persistent;
            record.user = user;
            record.data.insert(key, value.into());
            record.data.insert("float".into(), float.into());
            let payload = record.to_cookie_payload();
            prop_assert_eq!(payload.len(), record.cookie_payload_len());
            let back = Record::from_cookie_payload(&payload);
            // Bit for bit, not just `==` (which holds for 0.0 and -0.0).
            let bits = back
                .as_ref()
                .ok()
                .and_then(|back| back.data["float"].as_f64())
                .map(f64::to_bits);
            prop_assert_eq!(bits, Some(float.to_bits()));
            prop_assert_eq!(back, Ok(record));
        }
    }
}
