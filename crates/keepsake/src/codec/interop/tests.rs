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
    // `{" t": 5}` in a record is a plain dict, which Flask reads back as one.
    let mut record = Record::new(Id::random(), 0, None, 100);
    record
        .data
        .insert("t".to_owned(), serde_json::json!({" t": 5}));
    for framework in Framework::ALL {
        let codec = codec(framework);
        let cookie = codec.encode_record(&record, 0).unwrap();
        assert_eq!(codec.decode_record(&cookie, 0).unwrap().0.data, record.data);
    }
    // A non-persistent Flask record has no `_permanent`.
    let flask = codec(Framework::Flask);
    let cookie = flask
        .encode_record(&Record::new(Id::random(), 0, None, 100), 7)
        .unwrap();
    assert!(!flask.decode_record(&cookie, 7).unwrap().0.persistent);
}

/// What a handler stores as a plain JSON object reaches Flask as the same
/// plain dict, however much it looks like Flask's tagged JSON: escaped as
/// Flask's `TagDict` escapes it, never a `Markup`, tuple or bytes.
#[test]
fn handler_objects_are_plain_dicts_for_flask() {
    let flask = codec(Framework::Flask);
    let objects = serde_json::json!({
        "markup": {" m": "<script>alert(1)</script>"},
        "tuple": {" t": [1, 2]},
        "bytes": {" b": "dg=="},
        "uuid": {" u": "12345678123456781234567812345678"},
        "date": {" d": "Thu, 29 Feb 2024 13:45:30 GMT"},
        "escaped": {" di": {" m__": "x"}},
        "nested": [{" m": "<b>"}, {"k": {" t": []}}],
        // A made-up mark does not verify: a plain two-key dict.
        "forged": {" m": "<i>", " mark": "AAAAAAAAAAAAAAAAAAAAAA"},
    });
    let mut record = Record::new(Id::random(), 0, None, 100);
    record.data = serde_json::from_value(objects).unwrap();
    let cookie = flask.encode_record(&record, 1_000).unwrap();
    let session = flask.decode(&cookie, 1_000).unwrap().into_session();
    let plain = |value: &PyValue| value.is_plain_json();
    assert!(session.values().all(plain), "{session:?}");
    assert_eq!(
        session.get("markup"),
        Some(&PyValue::Dict(
            [(" m", "<script>alert(1)</script>")].into_iter().collect()
        ))
    );
    // Flask's own form of such a dict.
    let text = flask.serialize(&session).unwrap();
    assert!(
        text.contains(r#""markup":{" di":{" m__":"<script>alert(1)</script>"}}"#),
        "{text}"
    );
    // And read back into a record, it is the data the handler stored.
    assert_eq!(
        flask.decode_record(&cookie, 1_000).unwrap().0.data,
        record.data
    );
}

/// Flask's typed values read from a cookie are written back as the same
/// types, byte for byte, also when moved to another key by a handler.
#[test]
fn flask_typed_values_survive_a_record() {
    let flask = codec(Framework::Flask);
    let session: PyDict = [
        (
            "t",
            PyValue::Tuple(vec![1.into(), PyValue::Markup("<b>".into())]),
        ),
        ("b", PyValue::Bytes(vec![0, 1, 255])),
        ("m", PyValue::Markup("<em>hi</em>".into())),
        ("u", PyValue::Uuid([7; 16])),
        ("d", PyValue::DateTime(1_709_214_330)),
        (
            "dict",
            PyValue::Dict([(" m", "not markup")].into_iter().collect()),
        ),
    ]
    .into_iter()
    .collect();
    let cookie = flask.encode(&session, 1_000).unwrap();
    let (mut record, _) = flask.decode_record(&cookie, 1_000).unwrap();
    assert_eq!(flask.encode_record(&record, 1_000).unwrap(), cookie);
    let moved = record.data["m"].clone();
    record.data.insert("copy".to_owned(), moved);
    let back = flask
        .decode(&flask.encode_record(&record, 1_000).unwrap(), 1_000)
        .unwrap()
        .into_session();
    assert_eq!(
        back.get("copy"),
        Some(&PyValue::Markup("<em>hi</em>".into()))
    );
    // Another secret's mark does not verify.
    let other = InteropCodec::new(Framework::Flask, "another secret");
    let back = other
        .decode(&other.encode_record(&record, 1_000).unwrap(), 1_000)
        .unwrap()
        .into_session();
    assert!(back.values().all(PyValue::is_plain_json), "{back:?}");
    // A marked value whose content a handler changed is a plain dict.
    let mut changed = record.data["m"].clone();
    changed[" m"] = "<script>".into();
    record.data.insert("m".to_owned(), changed);
    let back = flask
        .decode(&flask.encode_record(&record, 1_000).unwrap(), 1_000)
        .unwrap()
        .into_session();
    assert!(back.get("m").is_some_and(PyValue::is_plain_json));
}

/// A session a record cannot hold exactly is refused with a clear error,
/// not changed: integers beyond 64 bits (serde_json would make them
/// floats), NaN and the infinities; beyond 128 bits and lone surrogates
/// already in `decode`.
#[test]
fn unrepresentable_sessions_are_refused_not_changed() {
    for framework in Framework::ALL {
        let codec = codec(framework);
        for value in [
            PyValue::Int(1 << 64),
            PyValue::Int(-(1 << 63) - 1),
            PyValue::List(vec![PyValue::Int(i128::MAX)]),
            PyValue::Float(f64::NAN),
            PyValue::Float(f64::NEG_INFINITY),
        ] {
            let session: PyDict = [("user", PyValue::from("ada")), ("n", value.clone())]
                .into_iter()
                .collect();
            let cookie = codec.encode(&session, 1_000).unwrap();
            assert!(
                matches!(
                    codec.decode_record(&cookie, 1_000),
                    Err(InteropDecodeError::Unrepresentable { .. })
                ),
                "{framework} {value:?}"
            );
            if !matches!(value, PyValue::Float(_)) {
                assert!(codec.session_to_json(&session).is_err(), "{value:?}");
            }
        }
        // The edges of 64 bits are kept exactly.
        let session: PyDict = [
            ("a", PyValue::Int(u64::MAX.into())),
            ("b", PyValue::Int(i64::MIN.into())),
        ]
        .into_iter()
        .collect();
        let cookie = codec.encode(&session, 1_000).unwrap();
        let (record, _) = codec.decode_record(&cookie, 1_000).unwrap();
        assert_eq!(record.data["a"], serde_json::json!(u64::MAX));
        assert_eq!(codec.encode_record(&record, 1_000).unwrap(), cookie);
    }
    // Python reads these; keepsake cannot hold them.
    let flask = codec(Framework::Flask);
    for text in [
        format!(r#"{{"n":{}0}}"#, i128::MAX),
        r#"{"s":"\ud800"}"#.to_owned(),
    ] {
        let cookie = signing::its_sign(&flask.keys[0].0, &b64::encode_url(text.as_bytes()), 1_000);
        assert!(
            matches!(
                flask.decode(&cookie, 1_000),
                Err(InteropDecodeError::Unrepresentable { .. })
            ),
            "{text}"
        );
    }
}

/// Starlette's and Django's cookies carry a `Max-Age` as the framework
/// sets it; Django's `set_expiry` is honoured.
#[test]
fn cookie_max_age_follows_the_framework() {
    let record = |framework: Framework, codec: &InteropCodec, data: serde_json::Value| {
        let session = codec
            .session_from_json(&serde_json::from_value(data).unwrap())
            .unwrap();
        let cookie = codec.encode(&session, 1_000).unwrap();
        let (record, _) = codec.decode_record(&cookie, 1_000).unwrap();
        assert_eq!(codec.framework(), framework);
        codec.cookie_max_age(&record, 1_010)
    };
    let django = codec(Framework::Django);
    let d = |data| record(Framework::Django, &django, data);
    assert_eq!(d(serde_json::json!({"a": 1})), Some(14 * 86_400));
    assert_eq!(d(serde_json::json!({"_session_expiry": 0})), None);
    assert_eq!(d(serde_json::json!({"_session_expiry": 300})), Some(300));
    assert_eq!(
        d(serde_json::json!({"_session_expiry": null})),
        Some(14 * 86_400)
    );
    assert_eq!(
        d(serde_json::json!({"_session_expiry": "1970-01-01T00:20:00.123456+00:00"})),
        Some(1_200 - 1_010)
    );
    assert_eq!(
        d(serde_json::json!({"_session_expiry": "1970-01-01T01:20:00+01:00"})),
        Some(1_200 - 1_010)
    );
    assert_eq!(
        d(serde_json::json!({"_session_expiry": "1970-01-01T00:00:01"})),
        Some(0)
    );
    let starlette = codec(Framework::Starlette);
    assert_eq!(
        record(Framework::Starlette, &starlette, serde_json::json!({})),
        Some(14 * 86_400)
    );
    let unlimited = starlette.with_max_age(None);
    assert_eq!(
        record(Framework::Starlette, &unlimited, serde_json::json!({})),
        None
    );
}

#[test]
fn iso_datetimes_as_django_writes_them() {
    assert_eq!(
        parse_iso_datetime("2024-02-29T13:45:30+00:00"),
        Some(1_709_214_330)
    );
    assert_eq!(
        parse_iso_datetime("2024-02-29T13:45:30.5Z"),
        Some(1_709_214_330)
    );
    assert_eq!(
        parse_iso_datetime("2024-02-29T14:45:30.000001+01:00"),
        Some(1_709_214_330)
    );
    assert_eq!(
        parse_iso_datetime("2024-02-29 13:45:30"),
        Some(1_709_214_330)
    );
    for bad in [
        "",
        "2024-02-30T13:45:30",
        "2024-02-29T13:45:30+0000",
        "2024-02-29T13:45:30.",
    ] {
        assert_eq!(parse_iso_datetime(bad), None, "{bad}");
    }
}
