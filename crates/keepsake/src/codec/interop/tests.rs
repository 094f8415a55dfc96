//! Unit and property tests of the interop codecs. The framework vectors are
//! checked in `tests/interop_vectors.rs`, the real frameworks in
//! `tests/interop_live.rs`.

use proptest::prelude::*;

use super::*;

fn codec(framework: Framework) -> InteropCodec {
    InteropCodec::new(framework, "test secret")
}

/// Any value a session can hold in `framework`.
fn value(framework: Framework) -> impl Strategy<Value = PyValue> {
    let flask = framework == Framework::Flask;
    let leaf = prop_oneof![
        Just(PyValue::None),
        any::<bool>().prop_map(PyValue::Bool),
        any::<i64>().prop_map(|n| PyValue::Int(n.into())),
        any::<i128>().prop_map(PyValue::Int),
        any::<f64>()
            .prop_filter("NaN is not equal to itself", |x| !x.is_nan())
            .prop_map(PyValue::Float),
        any::<String>().prop_map(PyValue::Str),
        "[ -~]{0,8}".prop_map(PyValue::Str),
    ];
    let leaf = if flask {
        prop_oneof![
            4 => leaf,
            1 => proptest::collection::vec(any::<u8>(), 0..16).prop_map(PyValue::Bytes),
            1 => any::<String>().prop_map(PyValue::Markup),
            1 => any::<[u8; 16]>().prop_map(PyValue::Uuid),
            1 => (-59_011_459_200i64..=253_402_300_799).prop_map(PyValue::DateTime),
        ]
        .boxed()
    } else {
        leaf.boxed()
    };
    leaf.prop_recursive(4, 32, 6, move |inner| {
        let list = proptest::collection::vec(inner.clone(), 0..6);
        let dict = proptest::collection::vec(
            (
                prop_oneof![
                    any::<String>(),
                    Just(" t".to_owned()),
                    Just(" di".to_owned())
                ],
                inner,
            ),
            0..6,
        )
        .prop_map(|items| PyValue::Dict(items.into_iter().collect()));
        if flask {
            prop_oneof![
                list.clone().prop_map(PyValue::List),
                list.prop_map(PyValue::Tuple),
                dict
            ]
            .boxed()
        } else {
            prop_oneof![list.prop_map(PyValue::List), dict].boxed()
        }
    })
}

fn session(framework: Framework) -> impl Strategy<Value = PyDict> {
    proptest::collection::vec((any::<String>(), value(framework)), 0..6)
        .prop_map(|items| items.into_iter().collect())
}

fn framework() -> impl Strategy<Value = Framework> {
    prop_oneof![
        Just(Framework::Flask),
        Just(Framework::Starlette),
        Just(Framework::Django)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn round_trip(
        (framework, session) in framework().prop_flat_map(|f| (Just(f), session(f))),
        now in 0u64..(1 << 40),
        key in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let codec = InteropCodec::new(framework, &key);
        match codec.encode(&session, now) {
            Ok(cookie) => {
                let opened = codec.decode(&cookie, now).unwrap();
                prop_assert_eq!(opened.session(), &session);
                prop_assert_eq!(opened.issued_at(), now);
                prop_assert_eq!(opened.key_used(), KeyUsed::Current);
                let seen = inspect(&cookie).unwrap();
                prop_assert_eq!(seen.framework(), framework);
                prop_assert_eq!(seen.session(), &session);
                // Another key refuses it.
                let mut other = key;
                other.push(1);
                prop_assert_eq!(InteropCodec::new(framework, &other).decode(&cookie, now), Err(InteropDecodeError::BadSignature));
            }
            Err(InteropEncodeError::TooLarge { size, .. }) => prop_assert!(size > MAX_COOKIE_SIZE),
            Err(err) => prop_assert!(false, "{err}"),
        }
    }

    #[test]
    fn serialize_then_deserialize(
        (framework, session) in framework().prop_flat_map(|f| (Just(f), session(f))),
    ) {
        let codec = codec(framework);
        let text = codec.serialize(&session).unwrap();
        prop_assert!(text.is_ascii());
        prop_assert_eq!(codec.deserialize(&text).unwrap(), session);
    }

    #[test]
    fn mutations_never_panic(
        framework in framework(),
        session in session(Framework::Starlette),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        now in any::<u64>(),
    ) {
        let codec = codec(framework);
        let Ok(cookie) = codec.encode(&session, 1_700_000_000) else { return Ok(()) };
        let mut bytes = cookie.into_bytes();
        for (index, byte) in edits {
            let i = index.index(bytes.len());
            bytes[i] = byte;
        }
        let mutated = String::from_utf8_lossy(&bytes).into_owned();
        let _ = codec.decode(&mutated, now);
        let _ = inspect(&mutated);
    }

    #[test]
    fn garbage_never_panics(text in any::<String>(), now in any::<u64>(), framework in framework()) {
        let _ = codec(framework).decode(&text, now);
        let _ = codec(framework).deserialize(&text);
        let _ = inspect(&text);
    }

    #[test]
    fn python_json_garbage_never_panics(text in r#"[\[\]{}",:0-9eE.+\-a-zA-Z\\ ]{0,40}"#) {
        let _ = json::parse(&text);
        let _ = flask::untag(json::parse(&text).unwrap_or(PyValue::None));
    }
}

#[test]
fn tag_escaping_round_trips() {
    let flask = codec(Framework::Flask);
    let mut inner = PyDict::new();
    inner.insert(" t", "not a tuple");
    let session: PyDict = [("x", PyValue::Dict(inner))].into_iter().collect();
    assert_eq!(
        flask.serialize(&session).unwrap(),
        r#"{"x":{" di":{" t__":"not a tuple"}}}"#
    );
    assert_eq!(
        flask
            .deserialize(&flask.serialize(&session).unwrap())
            .unwrap(),
        session
    );
}

#[test]
fn payload_errors() {
    let flask = codec(Framework::Flask);
    for text in [
        r#"{" t": 5}"#,
        r#"{" di": {}}"#,
        r#"{" u": "xyz"}"#,
        r#"{" d": "yesterday"}"#,
        "[1]",
        "{",
        "1e999999999999999999x",
    ] {
        assert!(
            matches!(
                flask.deserialize(text),
                Err(InteropDecodeError::BadPayload { .. })
            ),
            "{text}"
        );
    }
}

#[test]
fn zlib_bomb_is_refused() {
    let flask = codec(Framework::Flask);
    // 2 MB of spaces compresses to about 2 KB; signed correctly, refused unread.
    let raw = format!("{{\"a\":1{}}}", " ".repeat(2 << 20));
    let mut compressor = Compress::new(Compression::best(), true);
    let mut data = Vec::with_capacity(raw.len());
    compressor
        .compress_vec(raw.as_bytes(), &mut data, FlushCompress::Finish)
        .unwrap();
    let cookie = signing::its_sign(
        &flask.keys[0].0,
        &format!(".{}", b64::encode_url(&data)),
        10,
    );
    assert!(cookie.len() < MAX_COOKIE_SIZE);
    assert!(matches!(
        flask.decode(&cookie, 10),
        Err(InteropDecodeError::BadPayload { .. })
    ));
}

#[test]
fn truncated_zlib_is_refused() {
    let data = {
        let mut compressor = Compress::new(Compression::default(), true);
        let mut out = Vec::with_capacity(1024);
        compressor
            .compress_vec(&[b'x'; 500], &mut out, FlushCompress::Finish)
            .unwrap();
        out
    };
    assert_eq!(decompress(&data).unwrap(), vec![b'x'; 500]);
    for cut in 0..data.len() {
        assert!(decompress(&data[..cut]).is_err(), "{cut}");
    }
    let mut trailing = data;
    trailing.extend_from_slice(b"junk");
    assert!(decompress(&trailing).is_ok());
}

#[test]
fn oversized_session_is_refused() {
    let session: PyDict = [("blob", "x".repeat(5000))].into_iter().collect();
    // Compressible: Flask and Django fit it, Starlette does not.
    assert!(codec(Framework::Flask).encode(&session, 0).is_ok());
    assert!(matches!(
        codec(Framework::Starlette).encode(&session, 0),
        Err(InteropEncodeError::TooLarge { .. })
    ));
    assert!(matches!(
        codec(Framework::Flask).decode(&"a".repeat(5000), 0),
        Err(InteropDecodeError::TooLarge { .. })
    ));
}

/// A session that compresses into a cookie but is longer than what
/// `decompress` reads is refused when written: written, it would be lost
/// on the next request.
#[test]
fn what_is_written_can_be_read_back() {
    for framework in [Framework::Flask, Framework::Django] {
        let codec = codec(framework);
        let at_limit = "a".repeat(MAX_DECOMPRESSED_LEN - 20);
        let session: PyDict = [("data", at_limit.as_str())].into_iter().collect();
        let cookie = codec.encode(&session, 10).expect("just under the limit");
        assert_eq!(
            codec.decode(&cookie, 10).expect("read back").session,
            session
        );
        let over: PyDict = [("data", "a".repeat(300_000))].into_iter().collect();
        assert!(
            matches!(
                codec.encode(&over, 10),
                Err(InteropEncodeError::TooLargeToRead { size, limit: MAX_DECOMPRESSED_LEN })
                    if size > MAX_DECOMPRESSED_LEN
            ),
            "{framework}"
        );
    }
}

#[test]
fn deep_nesting_is_refused() {
    let mut value = PyValue::None;
    for _ in 0..200 {
        value = PyValue::List(vec![value]);
    }
    let session: PyDict = [("deep", value)].into_iter().collect();
    for framework in Framework::ALL {
        assert_eq!(
            codec(framework).encode(&session, 0),
            Err(InteropEncodeError::TooDeep)
        );
    }
}

#[test]
fn records_round_trip() {
    for framework in Framework::ALL {
        let codec = codec(framework);
        let mut record = Record::new(Id::random(), 500, None, 100);
        record.data.insert("user".to_owned(), "ada".into());
        record
            .data
            .insert("n".to_owned(), serde_json::json!([1, 2.5, null]));
        record.persistent = true;
        let cookie = codec.encode_record(&record, 1_000).unwrap();
        let (back, key_used) = codec.decode_record(&cookie, 1_001).unwrap();
        assert_eq!(key_used, KeyUsed::Current);
        assert_eq!(
            (&back.data, back.persistent, back.created_at),
            (&record.data, true, 1_000)
        );
        assert_eq!(
            back.deadline(),
            1_000 + framework.default_max_age().unwrap()
        );
    }
    // Flask reads `{" t": 5}` as a broken tuple tag: not written.
    let mut record = Record::new(Id::random(), 0, None, 100);
    record
        .data
        .insert("t".to_owned(), serde_json::json!({" t": 5}));
    assert!(matches!(
        codec(Framework::Flask).encode_record(&record, 0),
        Err(InteropEncodeError::InvalidTaggedJson { .. })
    ));
    assert!(codec(Framework::Django).encode_record(&record, 0).is_ok());
    // A non-persistent Flask record has no `_permanent`.
    let flask = codec(Framework::Flask);
    let cookie = flask
        .encode_record(&Record::new(Id::random(), 0, None, 100), 7)
        .unwrap();
    assert!(!flask.decode_record(&cookie, 7).unwrap().0.persistent);
}
