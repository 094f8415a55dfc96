//! Hostile input, always run: the entry points the cargo-fuzz targets in
//! `fuzz/` exercise, fed arbitrary bytes and near-valid text by proptest.
//! This is the fallback for machines without nightly Rust; the long fuzz runs
//! are in SECURITY.md. Every entry point must answer (a value or a typed
//! error) and never panic.
//!
//! `write_fuzz_seeds` (ignored) writes the fuzz seed corpora under
//! `fuzz/seeds/`: `cargo test -p keepsake --test hostile_input -- --ignored`.

use std::{convert::Infallible, path::PathBuf};

use axum::{Router, body::Body, routing::get};
use http::{Request, header};
use keepsake::{
    codec::{
        self, Claims, Codec, DecodeError, Format, MAX_COOKIE_SIZE,
        interop::{self, Framework, InteropCodec, PyDict},
    },
    cookies::CookieJar,
    key::{Key, KeyRing, Namespace},
    middleware::SessionLayer,
    session::{BadCookie, Session, SessionError},
    store::{Data, Id, MemoryStore, Record, StoreUrl},
};
use proptest::prelude::*;
use tower_service::Service as _;

/// The fuzz targets' keys (`fuzz/src/lib.rs`): current 7s, fallback 9s.
fn ring() -> KeyRing {
    KeyRing::new(Key::from_bytes(&[7; 32]).expect("key"))
        .with_fallback(Key::from_bytes(&[9; 32]).expect("key"))
}

const NOW: u64 = 1_700_000_000;
const INTEROP_SECRET: &str = "fuzz-secret-key";

/// Text that gets past the cheap checks: a format prefix, then base64-ish
/// characters with dots, padding and the standard alphabet mixed in.
fn near_value() -> impl Strategy<Value = String> {
    "[se][0-9]{1,3}\\.[A-Za-z0-9_+/=-]{0,120}(\\.[A-Za-z0-9_+/=-]{0,60})?"
}

/// Any text: arbitrary bytes made UTF-8.
fn any_text() -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<u8>(), 0..600)
        .prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

fn check_decode(codec: &Codec, value: &str) {
    match codec.decode("session", value, NOW) {
        Ok(opened) => {
            // Only values the keys made verify; random text never does.
            panic!("random input verified: {value:?} -> {:?}", opened.payload());
        }
        Err(DecodeError::TooLarge { size, limit }) => {
            assert!(size > limit && limit == MAX_COOKIE_SIZE);
        }
        Err(_) => {}
    }
}

fn check_inspect(value: &str) {
    if let Ok(seen) = codec::inspect(value) {
        assert_eq!(Some(seen.format()), Format::detect(value));
    }
}

fn check_jar(header_text: &str) {
    let jar = CookieJar::parse(header_text);
    for (name, _) in jar.iter() {
        assert!(jar.get(name).is_some());
    }
    let ring = ring();
    assert_eq!(jar.signed(&ring).get::<serde_json::Value>("session"), None);
    assert_eq!(jar.private(&ring).get::<serde_json::Value>("session"), None);
}

fn check_id_and_record(text: &str) {
    if let Ok(id) = text.parse::<Id>() {
        assert_eq!(id.to_string(), text);
    }
    if let Ok(record) = serde_json::from_str::<Record>(text) {
        let _ = record.is_expired_at(NOW);
    }
    let _ = serde_json::from_str::<Data>(text);
}

fn check_interop(value: &str) {
    for framework in Framework::ALL {
        let codec = InteropCodec::new(framework, INTEROP_SECRET);
        assert!(codec.decode(value, NOW).is_err(), "{framework}: {value:?}");
        let _ = codec.deserialize(value);
    }
    let _ = interop::inspect(value);
}

/// A session signed by `codec`, read as a record, written from that record
/// and read again gives the same record data and persistence (the mirror
/// of `fuzz/src/lib.rs::check_record_round_trip`).
fn check_record_round_trip(codec: &InteropCodec, session: &PyDict) {
    let Ok(cookie) = codec.encode(session, NOW) else {
        return;
    };
    let Ok((record, _)) = codec.decode_record(&cookie, NOW) else {
        return;
    };
    let again = codec
        .encode_record(&record, NOW)
        .expect("a record read from a cookie can be written back");
    let (read, _) = codec
        .decode_record(&again, NOW)
        .expect("a cookie written from a record reads back");
    assert_eq!(read.data, record.data);
    assert_eq!(read.persistent, record.persistent);
}

/// Sessions as the frameworks serialize them, with Flask's tag names, the
/// frameworks' own keys and values that look like tagged ones among the
/// keys and values.
fn session_json() -> impl Strategy<Value = String> {
    use serde_json::Value;
    let key = prop::sample::select(vec![
        " t",
        " m",
        " b",
        " u",
        " d",
        " di",
        " mark",
        "_permanent",
        "_session_expiry",
        "a",
        "é",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |x| serde_json::Number::from_f64(x)
            .map(Value::Number)),
        "[ -~é<>\u{202e}]{0,12}".prop_map(Value::from),
        prop::sample::select(vec![
            "2024-02-29T13:45:30+01:00",
            "2024-02-29 13:45:30",
            "00000000-0000-0000-0000-00000000002a",
            "Thu, 29 Feb 2024 13:45:30 GMT",
            "aGk=",
        ])
        .prop_map(Value::from),
    ];
    let object_key = key.clone();
    let value = leaf.prop_recursive(3, 24, 4, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((object_key.clone(), inner), 0..4).prop_map(|pairs| {
                Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
        ]
    });
    prop::collection::vec((key, value), 0..5).prop_map(|pairs| {
        Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()).to_string()
    })
}

/// What `StoreUrl` shows of `text`: the parsed URL or the error.
fn shown_url(text: &str) -> String {
    match StoreUrl::parse(text) {
        Ok(url) => format!("{url} {url:?}"),
        Err(err) => err.to_string(),
    }
}

/// Operator text: store URLs (a password in the user info, a `password`
/// parameter or `key=value` text never shows, even with `@`, `:`, `/`, `?`
/// or `#` in it), base64 secrets, format, framework and namespace names.
/// As the `operator_text` fuzz target checks.
fn check_operator_text(text: &str) {
    let _ = shown_url(text);
    if !text.contains("Pw5ecret") {
        for scheme in ["redis", "rediss", "postgres", "postgresql", "mongodb"] {
            let url = format!("{scheme}://user:Pw5ecret@{text}");
            let shown = shown_url(&url);
            assert!(!shown.contains("Pw5ecret"), "{url:?} shows as {shown:?}");
        }
    }
    let halves = ["Qx7", "zR4k"];
    if !halves.iter().any(|half| text.contains(half)) {
        let special = |at: usize| {
            let byte = text.as_bytes().get(at).copied().unwrap_or_default();
            char::from(b"@:/?#"[usize::from(byte) % 5])
        };
        let [head, tail] = halves;
        let (a, b, c, d) = (special(0), special(1), special(2), special(3));
        let password = format!("{a}{head}{b}{c}{tail}{d}");
        for scheme in ["redis", "postgres", "mongodb"] {
            for url in [
                format!("{scheme}://user:{password}@{text}"),
                format!("{scheme}://:{password}@{text}"),
                format!("{scheme}://{text}?password={password}"),
                format!("{scheme}://{text}&password={password}&x=1"),
                format!("host={text} password={password} dbname=app"),
            ] {
                let shown = shown_url(&url);
                for half in halves {
                    assert!(!shown.contains(half), "{url:?} shows as {shown:?}");
                }
            }
        }
    }
    let _ = Key::from_base64(text);
    let _ = Key::from_bytes(text.as_bytes());
    let _ = text.parse::<Format>();
    let _ = text.parse::<Framework>();
    let _ = text.parse::<Namespace>();
}

/// Reads `n`; answers "none" for an anonymous session.
async fn read(session: Session) -> Result<String, SessionError> {
    Ok(format!("{:?}", session.get::<u64>("n").await?))
}

/// One router per backend and bad-cookie policy.
fn routers() -> Vec<(String, Router)> {
    let mut routers = Vec::new();
    for policy in [BadCookie::Ignore, BadCookie::Reject] {
        let builders = [
            (
                "store",
                SessionLayer::with_store(MemoryStore::new(), ring()),
            ),
            ("signed", SessionLayer::with_cookies(Format::Signed, ring())),
            ("sealed", SessionLayer::with_cookies(Format::Sealed, ring())),
        ];
        let interop = Framework::ALL.map(|framework| {
            let codec = InteropCodec::new(framework, INTEROP_SECRET);
            (framework.as_str(), SessionLayer::with_interop(codec))
        });
        for (name, builder) in builders.into_iter().chain(interop) {
            let layer = builder.bad_cookie(policy).build().expect("layer");
            let router = Router::new().route("/", get(read)).layer(layer);
            routers.push((format!("{name}/{policy:?}"), router));
        }
    }
    routers
}

/// Sends `headers` as `Cookie` headers to every router: 200 "None"
/// (anonymous) or, under `Reject`, 400 "bad cookie".
async fn check_middleware(routers: &mut [(String, Router)], headers: &[Vec<u8>]) {
    for (name, router) in routers.iter_mut() {
        let mut request = Request::get("/").body(Body::empty()).expect("request");
        for value in headers {
            if let Ok(value) = http::HeaderValue::from_bytes(value) {
                request.headers_mut().append(header::COOKIE, value);
            }
        }
        let response: Result<_, Infallible> = router.call(request).await;
        let response = response.expect("infallible");
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("body");
        match (status, &body[..]) {
            (200, b"None") => {}
            (400, b"bad cookie") if name.ends_with("Reject") => {}
            other => panic!("{name}: unexpected answer {other:?}"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn codec_decode_any_text(text in any_text(), near in near_value()) {
        for codec in [
            Codec::signed(ring()),
            Codec::sealed(ring()),
            Codec::sealed(ring()).with_namespace(Namespace::Shared),
        ] {
            check_decode(&codec, &text);
            check_decode(&codec, &near);
        }
    }

    #[test]
    fn inspect_any_text(text in any_text(), near in near_value()) {
        check_inspect(&text);
        check_inspect(&near);
    }

    #[test]
    fn cookie_header_any_text(text in any_text(), pairs in "([ a-z=;\"%,]{0,8}session=[se]1\\.[A-Za-z0-9_=.-]{0,40}; ?){0,6}") {
        check_jar(&text);
        check_jar(&pairs);
    }

    #[test]
    fn id_and_record_any_text(
        text in any_text(),
        id in "[A-Za-z0-9_+/=-]{20,24}",
        record in "\\{\"id\":\"[A-Za-z0-9_-]{22}\",\"data\":\\{\\},\"created_at\":[0-9]{1,20},\"idle_timeout\":(null|[0-9]{1,20}),\"idle_deadline\":(null|[0-9]{1,21}),\"absolute_deadline\":[0-9]{1,21},\"persistent\":(true|false),\"version\":[0-9]{1,20},\"user\":(null|\"[a-z]{0,5}\")\\}",
    ) {
        check_id_and_record(&text);
        check_id_and_record(&id);
        check_id_and_record(&record);
    }

    #[test]
    fn interop_decode_any_text(
        text in any_text(),
        near in "[.]?[A-Za-z0-9_=-]{0,80}\\.[A-Za-z0-9_-]{0,8}\\.[A-Za-z0-9_-]{0,43}",
        django in "[.]?[A-Za-z0-9_-]{0,60}:[A-Za-z0-9]{0,7}:[A-Za-z0-9_-]{0,43}",
    ) {
        check_interop(&text);
        check_interop(&near);
        check_interop(&django);
    }

    #[test]
    fn interop_sessions_survive_a_record(text in session_json()) {
        for framework in Framework::ALL {
            let codec = InteropCodec::new(framework, INTEROP_SECRET);
            if let Ok(session) = codec.deserialize(&text) {
                check_record_round_trip(&codec, &session);
            }
        }
    }

    #[test]
    fn operator_text_any_text(
        text in any_text(),
        url in "(redis|postgres|sqlite|memory)://([a-z:%/@?#]{0,12}@)?[a-z0-9.:/@]{0,20}([?#][a-z=&%#?@]{0,30})?",
        key in "[A-Za-z0-9+/_ =-]{0,90}",
    ) {
        check_operator_text(&text);
        check_operator_text(&url);
        check_operator_text(&key);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn middleware_any_cookie_headers(
        raw in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..4),
        near in proptest::collection::vec(near_value().prop_map(|v| format!("session={v}").into_bytes()), 0..4),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let mut routers = routers();
        runtime.block_on(async {
            check_middleware(&mut routers, &raw).await;
            check_middleware(&mut routers, &near).await;
        });
    }
}

/// The seed corpora of the fuzz targets: valid values under the fuzz keys,
/// plus a few near misses. Run by hand after a format change.
#[test]
#[ignore = "writes files under fuzz/seeds; run by hand"]
fn write_fuzz_seeds() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds");
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join(name), bytes).expect("write");
    };
    let claims = Claims::new(NOW - 10).with_ttl(3_600);
    let old_ring = KeyRing::new(Key::from_bytes(&[9; 32]).expect("key"));
    let record = Record::new(Id::from_bytes([5; 16]), NOW - 10, Some(1_800), 86_400);
    let record_json = serde_json::to_vec(&record).expect("json");
    let mut values = Vec::new();
    for (selector, format, namespace, name) in [
        (0u8, Format::Signed, Namespace::Local, "session"),
        (1, Format::Sealed, Namespace::Local, "session"),
        (2, Format::Signed, Namespace::Shared, "session"),
        (5, Format::Sealed, Namespace::Local, "theme"),
    ] {
        let codec = Codec::new(format, ring()).with_namespace(namespace);
        for (label, payload) in [
            ("empty", &b""[..]),
            ("text", &b"\"dark\""[..]),
            ("id", &[5u8; 16][..]),
            ("record", &record_json[..]),
        ] {
            let value = codec.encode(name, payload, claims).expect("encode");
            let mut input = vec![selector];
            input.extend_from_slice(value.as_bytes());
            write("codec_decode", &format!("{selector}-{label}"), &input);
            write(
                "codec_inspect",
                &format!("{selector}-{label}"),
                value.as_bytes(),
            );
            values.push((format, value));
        }
        let old = Codec::new(format, old_ring.clone()).with_namespace(namespace);
        let value = old.encode(name, b"\"old\"", claims).expect("encode");
        let mut input = vec![selector];
        input.extend_from_slice(value.as_bytes());
        write("codec_decode", &format!("{selector}-fallback"), &input);
    }
    // The middleware target: selector picks store, signed, sealed, Flask,
    // Starlette, Django (0-5: Ignore, 6-11: Reject); the session cookie each
    // expects, and a duplicate pair.
    let store_value = Codec::signed(ring())
        .encode("session", &[5; 16], claims)
        .expect("encode");
    // What the middleware writes: the record's compact cookie payload.
    let record_payload = record.to_cookie_payload();
    let signed_value = Codec::signed(ring())
        .encode("session", &record_payload, claims)
        .expect("encode");
    let sealed_value = Codec::sealed(ring())
        .encode("session", &record_payload, claims)
        .expect("encode");
    for (selector, value) in [(0u8, &store_value), (1, &signed_value), (2, &sealed_value)] {
        let mut input = vec![selector];
        input.extend_from_slice(format!("a=b; session={value}").as_bytes());
        write("middleware_cookie", &format!("{selector}-one"), &input);
        input.push(0);
        input.extend_from_slice(format!("session={value}x; session={value}").as_bytes());
        write("middleware_cookie", &format!("{selector}-dup"), &input);
        let mut input = vec![selector + 6];
        input.extend_from_slice(format!("session={value}").as_bytes());
        write("middleware_cookie", &format!("{selector}-reject"), &input);
    }
    let mut flask_session = PyDict::new();
    flask_session.insert("n", 1);
    for (selector, framework) in (3u8..).zip(Framework::ALL) {
        let codec = InteropCodec::new(framework, INTEROP_SECRET);
        let value = codec.encode(&flask_session, NOW - 10).expect("encode");
        let mut input = vec![selector];
        input.extend_from_slice(format!("{}={value}", framework.cookie_name()).as_bytes());
        write("middleware_cookie", &format!("{framework}-one"), &input);
    }
    let (_, first) = &values[0];
    write(
        "cookie_header",
        "plain",
        format!("lang=en; theme=\"dark\"; session={first}; empty=; =x; a=%41").as_bytes(),
    );
    write("cookie_header", "dup", b"session=1; session=2;session=3");
    let id = Id::from_bytes([5; 16]).to_string();
    write("session_id", "valid", id.as_bytes());
    write("session_id", "json", format!("\"{id}\"").as_bytes());
    write("session_id", "padded", format!("{id}==").as_bytes());
    for (name, url) in [
        ("memory", "memory://"),
        ("sqlite", "sqlite:///var/lib/app/sessions.db"),
        (
            "redis",
            "redis://:pw@127.0.0.1:6379/2?prefix=shop%3A&protocol=resp3",
        ),
        (
            "postgres",
            "postgres://app:pw@127.0.0.1/app?schema=s1&table=t&password=x",
        ),
        // A password with an unencoded `@` (redis-rs splits at the last).
        ("redis-at", "redis://:p@ss:w@127.0.0.1:6379/0?prefix=a%3A"),
        (
            "libpq",
            "host=127.0.0.1 user=app password='p@ss w:rd' dbname=app",
        ),
    ] {
        write("operator_text", name, url.as_bytes());
    }
    write(
        "operator_text",
        "key",
        b"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n",
    );
    write("store_record", "record", &record_json);
    write("store_record", "compact", &record_payload);
    let mut with_data = record;
    with_data
        .data
        .insert("cart".to_owned(), serde_json::json!(["apple", {"n": 1.5}]));
    with_data.user = Some("ada".to_owned());
    write(
        "store_record",
        "with-data",
        &serde_json::to_vec(&with_data).expect("json"),
    );
    write(
        "store_record",
        "with-data-compact",
        &with_data.to_cookie_payload(),
    );
    let mut session = PyDict::new();
    session.insert("user", "ada");
    session.insert("n", 3);
    let mut big = PyDict::new();
    big.insert("pad", "x".repeat(400));
    for (selector, framework) in Framework::ALL.into_iter().enumerate() {
        let codec = InteropCodec::new(framework, INTEROP_SECRET);
        for (label, dict) in [("small", &session), ("compressed", &big)] {
            let value = codec.encode(dict, NOW - 10).expect("encode");
            let mut input = vec![u8::try_from(selector).expect("small")];
            input.extend_from_slice(value.as_bytes());
            write("interop_decode", &format!("{framework}-{label}"), &input);
        }
    }
}
