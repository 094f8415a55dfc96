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
            // An empty key signs nothing.
            Err(InteropEncodeError::EmptySecret) => prop_assert!(key.is_empty()),
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

/// An app can build a value nested deeper than the stack would hold:
/// it is refused with `TooDeep`, not a stack overflow (before, the copy
/// that `serialize` makes recursed into it), and `is_plain_json` walks it
/// without recursion too. Right at the limit it is still written.
#[test]
fn values_nested_past_the_stack_are_refused_without_overflow() {
    let nested = |levels: usize, tuple: bool| {
        let mut value = PyValue::None;
        for _ in 0..levels {
            value = if tuple {
                PyValue::Tuple(vec![value])
            } else {
                PyValue::List(vec![value])
            };
        }
        value
    };
    // Taken apart in a loop: dropping it whole would recurse too.
    let dismantle = |mut value: PyValue| {
        while let PyValue::List(mut items) | PyValue::Tuple(mut items) = value {
            value = items.pop().unwrap_or(PyValue::None);
        }
    };
    let mut session: PyDict = [("deep", nested(200_000, false))].into_iter().collect();
    for framework in Framework::ALL {
        assert_eq!(
            codec(framework).serialize(&session),
            Err(InteropEncodeError::TooDeep)
        );
    }
    assert!(session.get("deep").is_some_and(PyValue::is_plain_json));
    dismantle(session.remove("deep").expect("inserted"));

    let tuple = nested(200_000, true);
    assert!(!tuple.is_plain_json());
    dismantle(tuple);

    // 127 lists inside the session's dict: 128 levels, the most the
    // frameworks' readers (and keepsake's) take.
    session.insert("deep", nested(127, false));
    assert!(codec(Framework::Django).serialize(&session).is_ok());
    session.insert("deep", nested(128, false));
    assert_eq!(
        codec(Framework::Django).serialize(&session),
        Err(InteropEncodeError::TooDeep)
    );
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
        if framework == Framework::Flask {
            // Flask's `session.permanent`, kept in the data as Flask keeps it.
            record.data.insert("_permanent".to_owned(), true.into());
        }
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
    // A Flask record without `_permanent` is not permanent, whatever its
    // `persistent` says (encode_record does not read it).
    let flask = codec(Framework::Flask);
    let mut record = Record::new(Id::random(), 0, None, 100);
    record.persistent = true;
    let cookie = flask.encode_record(&record, 7).unwrap();
    assert!(flask.decode(&cookie, 7).unwrap().session().is_empty());
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
    let unlimited = starlette.clone().with_max_age(None);
    assert_eq!(
        record(Framework::Starlette, &unlimited, serde_json::json!({})),
        None
    );

    // Browser-session cookies: Django's SESSION_EXPIRE_AT_BROWSER_CLOSE,
    // which the session's own `_session_expiry` overrides (`False == 0` in
    // Python); for Starlette a cookie without Max-Age.
    let django = codec(Framework::Django).with_browser_session(true);
    let d = |data| record(Framework::Django, &django, data);
    assert_eq!(d(serde_json::json!({"a": 1})), None);
    assert_eq!(d(serde_json::json!({"_session_expiry": null})), None);
    assert_eq!(d(serde_json::json!({"_session_expiry": 0})), None);
    assert_eq!(d(serde_json::json!({"_session_expiry": false})), None);
    assert_eq!(d(serde_json::json!({"_session_expiry": 300})), Some(300));
    let starlette = starlette.with_browser_session(true);
    assert_eq!(
        record(Framework::Starlette, &starlette, serde_json::json!({})),
        None
    );
    // The age is still checked.
    let cookie = starlette.encode(&PyDict::new(), 1_000).unwrap();
    assert!(starlette.decode(&cookie, 1_000 + 14 * 86_400).is_ok());
    assert!(matches!(
        starlette.decode(&cookie, 1_001 + 14 * 86_400),
        Err(InteropDecodeError::Expired { .. })
    ));

    // Flask: only a permanent session (Python's truth of `_permanent`) has
    // a Max-Age, the codec's max_age (PERMANENT_SESSION_LIFETIME), never
    // from the record's deadlines; browser_session changes nothing.
    for flask in [
        codec(Framework::Flask),
        codec(Framework::Flask).with_browser_session(true),
    ] {
        let f = |data| record(Framework::Flask, &flask, data);
        assert_eq!(f(serde_json::json!({"a": 1})), None);
        assert_eq!(
            f(serde_json::json!({"_permanent": true})),
            Some(31 * 86_400)
        );
        assert_eq!(f(serde_json::json!({"_permanent": 1})), Some(31 * 86_400));
        assert_eq!(
            f(serde_json::json!({"_permanent": "yes"})),
            Some(31 * 86_400)
        );
        for falsy in [
            serde_json::json!(false),
            serde_json::json!(0),
            serde_json::json!(""),
            serde_json::json!([]),
            serde_json::json!(null),
        ] {
            assert_eq!(
                f(serde_json::json!({ "_permanent": falsy })),
                None,
                "{falsy}"
            );
        }
    }
    let hour = codec(Framework::Flask).with_max_age(Some(3_600));
    assert_eq!(
        record(
            Framework::Flask,
            &hour,
            serde_json::json!({"_permanent": true})
        ),
        Some(3_600)
    );
}

/// Which records a request re-issues although it does not change them:
/// Flask's permanent sessions (SESSION_REFRESH_EACH_REQUEST, on by
/// default), Django's with SESSION_SAVE_EVERY_REQUEST; never an empty one.
#[test]
fn refresh_each_request_follows_the_framework() {
    let record = |data: serde_json::Value| {
        let mut record = Record::new(Id::random(), 1_000, Some(60), u64::MAX);
        record.data = serde_json::from_value(data).unwrap();
        record
    };
    let permanent = record(serde_json::json!({"_permanent": true, "user": "ada"}));
    let plain = record(serde_json::json!({"user": "ada"}));
    let empty = record(serde_json::json!({}));
    let flask = codec(Framework::Flask);
    assert!(flask.refreshes_every_request(&permanent));
    assert!(!flask.refreshes_every_request(&plain));
    let flask = flask.with_refresh_each_request(false);
    assert!(!flask.refreshes_every_request(&permanent));
    for framework in [Framework::Starlette, Framework::Django] {
        let codec = codec(framework);
        assert!(!codec.refreshes_every_request(&plain), "{framework}");
        let codec = codec.with_refresh_each_request(true);
        assert!(codec.refreshes_every_request(&plain), "{framework}");
        assert!(!codec.refreshes_every_request(&empty), "{framework}");
    }
}

/// A cookie issued again under the current key keeps its issue time and
/// gets the Max-Age it has left, so that rotating the key extends nothing.
#[test]
fn a_reissue_keeps_the_issue_time() {
    for framework in Framework::ALL {
        let old = InteropCodec::new(framework, "old");
        let codec = codec(framework).with_fallbacks(["old"]);
        let session: PyDict = [("user", "ada")].into_iter().collect();
        let cookie = old.encode(&session, 1_000).unwrap();
        let (record, key_used) = codec.decode_record(&cookie, 1_600).unwrap();
        assert!(key_used.is_fallback());
        let (value, max_age) = codec.reissue(&record, 1_600).unwrap();
        let opened = codec.decode(&value, 1_600).unwrap();
        assert_eq!(
            (opened.key_used(), opened.issued_at(), opened.session()),
            (KeyUsed::Current, 1_000, &session),
            "{framework}"
        );
        let expected = framework
            .default_max_age()
            .filter(|_| framework != Framework::Flask)
            .map(|max_age| max_age - 600);
        assert_eq!(max_age, expected, "{framework}");
    }
}

/// What the mark binds, precisely: a marked object is written as a Flask
/// type exactly when it is a value Flask put in a cookie signed with this
/// secret key. Copied to another key, into another session, or out to a
/// client and back, it is still that value; changed, or from a codec with
/// another key, it is a dict.
#[test]
fn a_mark_binds_the_value_to_the_secret_key_only() {
    let flask = codec(Framework::Flask);
    let theirs: PyDict = [("banner", PyValue::Markup("<b>hi</b>".into()))]
        .into_iter()
        .collect();
    let cookie = flask.encode(&theirs, 1_000).unwrap();
    let (record, _) = flask.decode_record(&cookie, 1_000).unwrap();
    // What a handler that echoes the session sends, and a client sends back.
    let echoed = serde_json::to_string(&record.data["banner"]).unwrap();
    let sent_back: serde_json::Value = serde_json::from_str(&echoed).unwrap();
    let written_as = |codec: &InteropCodec, value: serde_json::Value| {
        let mut other = Record::new(Id::random(), 5_000, None, 100);
        other.data.insert("bio".to_owned(), value);
        let cookie = codec.encode_record(&other, 5_000).unwrap();
        codec
            .decode(&cookie, 5_000)
            .unwrap()
            .into_session()
            .get("bio")
            .cloned()
    };
    assert_eq!(
        written_as(&flask, sent_back.clone()),
        Some(PyValue::Markup("<b>hi</b>".into()))
    );
    let mut changed = sent_back.clone();
    changed[" m"] = "<script>alert(1)</script>".into();
    assert!(written_as(&flask, changed).is_some_and(|v| v.is_plain_json()));
    let other_key = InteropCodec::new(Framework::Flask, "another secret");
    assert!(written_as(&other_key, sent_back).is_some_and(|v| v.is_plain_json()));
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

/// `{"user": "admin"}` at 1700000000 signed with an EMPTY secret key by
/// the frameworks' own signers (itsdangerous' `URLSafeTimedSerializer(b"")`
/// with Flask's salt and serializer, Starlette's `TimestampSigner("")`,
/// Django's `TimestampSigner` with `key = ""`).
const EMPTY_KEY_COOKIES: [(Framework, &str); 3] = [
    (
        Framework::Flask,
        "eyJ1c2VyIjoiYWRtaW4ifQ.ZVPxAA.iwrEqxa_Zgt43vl1t5AeGnUXqcA",
    ),
    (
        Framework::Starlette,
        "eyJ1c2VyIjogImFkbWluIn0=.ZVPxAA.DQ6XRTDUE8dK4D_u9BoMU1GH2Fo",
    ),
    (
        Framework::Django,
        "eyJ1c2VyIjoiYWRtaW4ifQ:1r31eq:Ga0quTiv77HYJ75a67tPn-IOnSYZOBNFOMB9Lhs3tgU",
    ),
];

/// A codec never signs or verifies with an empty key, current or
/// fallback: anyone can make a cookie signed with one. They once verified
/// the cookies above (the current key `""`, or `""` among the fallbacks,
/// as a trailing comma in a comma-separated list gives).
#[test]
fn empty_keys_never_sign_or_verify() {
    let now = 1_700_000_000;
    for (framework, cookie) in EMPTY_KEY_COOKIES {
        // The vector really is signed with the empty key.
        let empty = signing::derive(framework.derivation(), framework.default_salt(), b"");
        let verified = match framework {
            Framework::Django => signing::django_verify(&[&empty], cookie).map(|_| ()),
            _ => signing::its_verify(&[&empty], cookie).map(|_| ()),
        };
        assert_eq!(verified, Ok(()), "{framework}");

        for codec in [
            InteropCodec::new(framework, ""),
            InteropCodec::new(framework, "k").with_fallbacks([""]),
            InteropCodec::new(framework, "k").with_fallbacks(["old", ""]),
            InteropCodec::new(framework, "").with_fallbacks(["old"]),
        ] {
            assert!(codec.has_empty_key(), "{framework} {codec:?}");
            let refused = Err(InteropDecodeError::EmptySecret);
            assert_eq!(codec.decode(cookie, now), refused, "{framework} {codec:?}");
            assert_eq!(
                codec.decode_record(cookie, now).map(|_| ()),
                refused.map(|_| ())
            );
            let session: PyDict = [("user", "admin")].into_iter().collect();
            assert_eq!(
                codec.encode(&session, now),
                Err(InteropEncodeError::EmptySecret)
            );
            let record = Record::new(Id::random(), now, None, 100);
            assert_eq!(
                codec.encode_record(&record, now),
                Err(InteropEncodeError::EmptySecret)
            );
            // Serializing needs no key.
            assert!(codec.serialize(&session).is_ok());
        }
        // An empty fallback is not even among the keys tried.
        let codec = InteropCodec::new(framework, "k").with_fallbacks(["", "old"]);
        assert_eq!(codec.keys.len(), 2, "{framework}");
        assert!(
            codec
                .keys
                .iter()
                .all(|(_, used)| *used != KeyUsed::Fallback { index: 0 })
        );
    }
}
