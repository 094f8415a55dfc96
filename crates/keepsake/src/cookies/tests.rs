//! Cookie builder rules, header parsing and the protected views.

use std::time::Duration;

use super::{protected::MAX_SAME_NAME, *};
use crate::{
    codec::{Claims, Codec, DecodeError},
    key::{Key, Namespace},
};

fn ring() -> KeyRing {
    KeyRing::new(Key::from_bytes(&[9; 32]).unwrap())
}

#[test]
fn builder_rules() {
    let ok = |b: CookieBuilder| b.build().map(|c| c.to_string());
    let err = |b: CookieBuilder| b.build().unwrap_err();
    let base = || Cookie::build("n", "v");

    assert_eq!(
        ok(base()).unwrap(),
        "n=v; HttpOnly; SameSite=Lax; Secure; Path=/"
    );
    assert_eq!(
        ok(base()
            .secure(false)
            .http_only(false)
            .same_site(None)
            .path(None))
        .unwrap(),
        "n=v"
    );
    assert_eq!(
        ok(base().partitioned(true).same_site(Some(SameSite::None))).unwrap(),
        "n=v; HttpOnly; SameSite=None; Partitioned; Secure; Path=/"
    );
    assert!(ok(base().value("\"quoted\"")).is_ok());
    assert!(ok(base().value("")).is_ok());

    for name in ["", "a b", "a;b", "a=b", "é", "a\"", "(x)", "a\tb"] {
        assert!(
            matches!(err(base().name(name)), CookieError::InvalidName { .. }),
            "{name:?}"
        );
    }
    for value in ["a b", "a;b", "a,b", "a\\b", "é", "\"a", "a\"b", "\u{7f}"] {
        assert!(
            matches!(err(base().value(value)), CookieError::InvalidValue { .. }),
            "{value:?}"
        );
    }
    let long_path = format!("/{}", "a".repeat(1024));
    for path in ["app", "/a;b", "/a\nb", long_path.as_str()] {
        assert!(
            matches!(
                err(base().path_owned(path.to_owned())),
                CookieError::InvalidPath { .. }
            ),
            "{path:?}"
        );
    }
    let long_label = format!("{}.com", "a".repeat(64));
    for domain in [
        "",
        ".",
        "a b",
        "a;b",
        "exämple.com",
        "example..com",
        "example.com.",
        "..example.com",
        "-a.com",
        "a-.com",
        long_label.as_str(),
    ] {
        assert!(
            matches!(
                err(base().domain(domain)),
                CookieError::InvalidDomain { .. }
            ),
            "{domain:?}"
        );
    }
    // Kept as browsers keep it: no leading dot, lowercase.
    for domain in [".example.com", "Example.COM", "example.com"] {
        let cookie = base().domain(domain).build().unwrap();
        assert_eq!(cookie.domain(), Some("example.com"));
    }
    assert!(ok(base().domain("xn--bcher-kva.example")).is_ok());
    assert!(ok(base().path_owned(format!("/{}", "a".repeat(1023)))).is_ok());

    // Prefixes, whether set with `prefix` or written into the name, in any case.
    for builder in [
        base().prefix(Prefix::Host),
        base().name("__Host-n"),
        base().name("__host-n"),
    ] {
        assert!(ok(builder.clone()).is_ok());
        assert!(matches!(
            err(builder.clone().secure(false)),
            CookieError::RequiresSecure { .. }
        ));
        assert!(matches!(
            err(builder.clone().domain("example.com")),
            CookieError::HostPrefixDomain { .. }
        ));
        assert!(matches!(
            err(builder.clone().path("/app")),
            CookieError::HostPrefixPath { .. }
        ));
        assert!(matches!(
            err(builder.path(None)),
            CookieError::HostPrefixPath { .. }
        ));
    }
    for builder in [base().prefix(Prefix::Secure), base().name("__SECURE-n")] {
        assert!(ok(builder.clone().domain("example.com").path("/x")).is_ok());
        assert!(matches!(
            err(builder.secure(false)),
            CookieError::RequiresSecure { .. }
        ));
    }
    // The `Http-` prefixes need `HttpOnly` (and `Secure`); `__Host-Http-`
    // is a `__Host-` name too.
    for name in ["__Http-n", "__host-http-n"] {
        assert!(ok(base().name(name)).is_ok(), "{name}");
        assert!(matches!(
            err(base().name(name).http_only(false)),
            CookieError::HttpPrefixNeedsHttpOnly { .. }
        ));
        assert!(matches!(
            err(base().name(name).secure(false)),
            CookieError::RequiresSecure { .. }
        ));
    }
    assert!(matches!(
        err(base().name("__Host-Http-n").domain("example.com")),
        CookieError::HostPrefixDomain { .. }
    ));
    assert!(ok(base().name("__Httpx").http_only(false)).is_ok());
    assert!(matches!(
        err(base().partitioned(true).secure(false)),
        CookieError::RequiresSecure { .. }
    ));
    assert!(matches!(
        err(base().same_site(Some(SameSite::None)).secure(false)),
        CookieError::RequiresSecure { .. }
    ));

    // Size: name plus value, prefix included.
    assert!(ok(base().name("a").value("b".repeat(4095))).is_ok());
    assert!(matches!(
        err(base().name("ab").value("b".repeat(4095))),
        CookieError::TooLarge { size: 4097, .. }
    ));
    assert!(matches!(
        err(base()
            .name("a")
            .value("b".repeat(4095))
            .prefix(Prefix::Secure)),
        CookieError::TooLarge { .. }
    ));
}

#[test]
fn expires_and_max_age_render() {
    let at = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let cookie = Cookie::build("n", "v")
        .max_age(Duration::from_secs(90))
        .expires(at)
        .build()
        .unwrap();
    assert!(
        cookie
            .to_string()
            .ends_with("Max-Age=90; Expires=Tue, 14 Nov 2023 22:13:20 GMT")
    );
    // Parts of a second round up: `Max-Age=0` would delete the cookie.
    for (millis, secs) in [(1, 1), (999, 1), (1_000, 1), (1_001, 2)] {
        let cookie = Cookie::build("n", "v")
            .max_age(Duration::from_millis(millis))
            .build()
            .unwrap();
        assert!(cookie.to_string().ends_with(&format!("Max-Age={secs}")));
        assert!(!cookie.is_removal());
    }
    // `Max-Age=0` removes the cookie, whatever its value.
    let zero = Cookie::build("n", "v")
        .max_age(Duration::ZERO)
        .build()
        .unwrap();
    assert!(zero.is_removal());
    // Dates beyond what the format holds are clamped, never a panic.
    let far = std::time::UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX) * 100);
    assert!(
        Cookie::build("n", "v")
            .expires(far)
            .build()
            .unwrap()
            .to_string()
            .contains("9999")
    );
}

#[test]
fn parsing_keeps_duplicates_and_skips_junk() {
    let jar = CookieJar::parse(" a=1 ;b=2;;c;=d; a=3; e==x; f=\"q\"");
    assert_eq!(
        jar.iter().collect::<Vec<_>>(),
        [
            ("a", "1"),
            ("b", "2"),
            ("a", "3"),
            ("e", "=x"),
            ("f", "\"q\"")
        ]
    );
    let mut headers = HeaderMap::new();
    headers.append(
        header::COOKIE,
        http::HeaderValue::from_bytes(b"a=\xff").unwrap(),
    );
    headers.append(header::COOKIE, http::HeaderValue::from_static("b=1"));
    // A header that is not UTF-8 is kept, its bad byte replaced: it costs
    // neither its own other cookies nor the other headers'.
    assert_eq!(
        CookieJar::from_headers(&headers).iter().collect::<Vec<_>>(),
        [("a", "\u{fffd}"), ("b", "1")]
    );
}

#[test]
fn outgoing_cookies_replace_by_name_path_domain() {
    let mut jar = CookieJar::parse("a=old");
    jar.add(Cookie::build("a", "1").build().unwrap());
    jar.add(Cookie::build("a", "2").path("/x").build().unwrap());
    jar.add(Cookie::build("a", "3").build().unwrap());
    assert_eq!(
        jar.delta().map(Cookie::value).collect::<Vec<_>>(),
        ["2", "3"]
    );
    assert_eq!(jar.get("a"), Some("3"));
    // The same domain written two ways is one browser cookie, one header.
    jar.add(
        Cookie::build("a", "4")
            .domain(".Example.com")
            .build()
            .unwrap(),
    );
    jar.add(
        Cookie::build("a", "5")
            .domain("example.com")
            .build()
            .unwrap(),
    );
    assert_eq!(
        jar.delta().map(Cookie::value).collect::<Vec<_>>(),
        ["2", "3", "5"]
    );
    jar.remove(
        Cookie::build("a", "")
            .domain("example.com")
            .build()
            .unwrap(),
    );
    jar.remove(Cookie::build("a", "").build().unwrap());
    assert_eq!(jar.get("a"), None);
    let mut headers = HeaderMap::new();
    jar.write_set_cookies(&mut headers);
    assert_eq!(headers.get_all(header::SET_COOKIE).iter().count(), 3);
}

/// Copies the outgoing cookies into a new request jar, as a browser would.
fn round_trip(jar: &CookieJar) -> CookieJar {
    let pairs: Vec<String> = jar
        .delta()
        .filter(|c| !c.is_removal())
        .map(|c| format!("{}={}", c.name(), c.value()))
        .collect();
    CookieJar::parse(&pairs.join("; "))
}

#[test]
fn views_round_trip_through_a_request() {
    let ring = ring();
    let mut jar = CookieJar::new();
    jar.signed_mut(&ring).insert("theme", "dark").unwrap();
    jar.private_mut(&ring)
        .shared()
        .insert("cart", &vec![1, 2, 3])
        .unwrap();
    let next = round_trip(&jar);
    assert_eq!(
        next.signed(&ring).get::<String>("theme").as_deref(),
        Some("dark")
    );
    assert_eq!(
        next.private(&ring).shared().get::<Vec<u8>>("cart"),
        Some(vec![1, 2, 3])
    );
    // Wrong format, wrong namespace, wrong key: nothing.
    assert_eq!(next.private(&ring).get::<String>("theme"), None);
    assert_eq!(next.private(&ring).get::<Vec<u8>>("cart"), None);
    let other = KeyRing::new(Key::from_bytes(&[8; 32]).unwrap());
    assert_eq!(next.signed(&other).get::<String>("theme"), None);
}

#[test]
fn a_value_copied_to_another_name_does_not_verify() {
    let ring = ring();
    let mut jar = CookieJar::new();
    jar.signed_mut(&ring).insert("role", "admin").unwrap();
    let value = jar.delta().next().unwrap().value().to_owned();
    let next = CookieJar::parse(&format!("other={value}"));
    let err = next.signed(&ring).try_get::<String>("other").unwrap_err();
    assert!(matches!(
        err,
        CookieError::Decode {
            source: DecodeError::BadSignature,
            ..
        }
    ));
}

#[test]
fn per_value_expiry_is_enforced_inside_the_value() {
    let ring = ring();
    let mut jar = CookieJar::new();
    jar.signed_mut(&ring)
        .at(1_000)
        .ttl(Some(Duration::from_secs(3 * 86_400)))
        .insert("a", &1)
        .unwrap();
    let sent = jar.delta().next().unwrap();
    assert_eq!(sent.max_age(), Some(Duration::from_secs(3 * 86_400)));
    let next = round_trip(&jar);
    assert_eq!(
        next.signed(&ring).at(1_000 + 3 * 86_400 - 1).get::<u8>("a"),
        Some(1)
    );
    // A browser that ignores Max-Age still gets nothing after the expiry.
    let err = next
        .signed(&ring)
        .at(1_000 + 3 * 86_400)
        .try_get::<u8>("a")
        .unwrap_err();
    assert!(matches!(
        err,
        CookieError::Decode {
            source: DecodeError::Expired { .. },
            ..
        }
    ));
    // Default TTL is 30 days; None makes a browser-session cookie.
    let mut jar = CookieJar::new();
    jar.signed_mut(&ring).insert("d", &1).unwrap();
    jar.signed_mut(&ring).ttl(None).insert("s", &1).unwrap();
    let ages: Vec<_> = jar.delta().map(Cookie::max_age).collect();
    assert_eq!(ages, [Some(DEFAULT_TTL), None]);
    assert_eq!(
        round_trip(&jar)
            .signed(&ring)
            .at(u64::from(u32::MAX))
            .get::<u8>("s"),
        Some(1)
    );
}

#[test]
fn duplicate_names_only_one_may_verify() {
    let ring = ring();
    let codec = Codec::signed(ring.clone());
    let good = codec.encode("sid", b"\"a\"", Claims::now()).unwrap();
    let other = codec.encode("sid", b"\"b\"", Claims::now()).unwrap();
    // Junk beside a good value: the good one is used, whatever the order.
    for header in [
        format!("sid=junk; sid={good}"),
        format!("sid={good}; sid=junk"),
    ] {
        assert_eq!(
            CookieJar::parse(&header)
                .signed(&ring)
                .get::<String>("sid")
                .as_deref(),
            Some("a")
        );
    }
    // The same value twice is one value.
    assert!(
        CookieJar::parse(&format!("sid={good}; sid={good}"))
            .signed(&ring)
            .get::<String>("sid")
            .is_some()
    );
    // Two different values that both verify: none is trusted.
    let err = CookieJar::parse(&format!("sid={good}; sid={other}"))
        .signed(&ring)
        .try_get::<String>("sid")
        .unwrap_err();
    assert!(matches!(err, CookieError::Ambiguous { .. }));
}

#[test]
fn too_large_is_an_error_at_the_call_and_changes_nothing() {
    let ring = ring();
    let mut jar = CookieJar::new();
    for view in [Format::Signed, Format::Sealed] {
        let mut v = ProtectedJar::new(&mut jar, view, &ring);
        let err = v.insert("big", &"x".repeat(3500)).unwrap_err();
        assert!(
            matches!(err, CookieError::TooLarge { size, limit: 4096, .. } if size > 4096),
            "{err}"
        );
    }
    assert_eq!(jar.delta().count(), 0);
}

#[test]
fn renew_reissues_fallback_values_under_the_current_key() {
    let old = Key::from_bytes(&[1; 32]).unwrap();
    let mut jar = CookieJar::new();
    jar.private_mut(&KeyRing::new(old.clone()))
        .at(100)
        .insert("a", "v")
        .unwrap();
    let rotated = ring().with_fallback(old);
    let mut next = round_trip(&jar);
    let before = next
        .private(&rotated)
        .at(200)
        .try_get::<String>("a")
        .unwrap()
        .unwrap();
    assert!(before.key_used().is_fallback());
    assert!(next.private_mut(&rotated).at(200).renew("a").unwrap());
    let after = round_trip(&next)
        .private(&ring())
        .at(200)
        .try_get::<String>("a")
        .unwrap()
        .unwrap();
    assert_eq!(after.value(), "v");
    // The same claims: a rotation is not a new issue.
    assert_eq!(after.claims(), before.claims());
    assert_eq!(after.claims().issued_at(), 100);
    assert_eq!(
        next.delta().next().unwrap().max_age(),
        Some(DEFAULT_TTL - Duration::from_secs(100))
    );
}

#[test]
fn namespaces_need_matching_apps_only_when_local() {
    let key = Key::from_bytes(&[5; 32]).unwrap();
    let a = KeyRing::new(key.clone()).with_app("a");
    let b = KeyRing::new(key).with_app("b");
    let mut jar = CookieJar::new();
    jar.signed_mut(&a)
        .namespace(Namespace::Local)
        .insert("l", &1)
        .unwrap();
    jar.signed_mut(&a)
        .namespace(Namespace::Shared)
        .insert("s", &2)
        .unwrap();
    let next = round_trip(&jar);
    assert_eq!(next.signed(&b).get::<u8>("l"), None);
    assert_eq!(next.signed(&b).shared().get::<u8>("s"), Some(2));
}

#[test]
fn set_cookie_template_writes_what_the_builder_writes() {
    let builders = [
        Cookie::build("session", ""),
        Cookie::build("s", "")
            .secure(false)
            .http_only(false)
            .same_site(None)
            .path(None),
        Cookie::build("sid", "")
            .domain("example.com")
            .path("/app")
            .same_site(Some(SameSite::Strict)),
        Cookie::build("sid", "")
            .same_site(Some(SameSite::None))
            .partitioned(true),
        Cookie::build("id", "").prefix(Prefix::Host),
        Cookie::build("id", "")
            .prefix(Prefix::Secure)
            .domain("a.example"),
    ];
    let values = ["", "s1.abc-_", "e1.x.y", "\"quoted\"", "a:b=c"];
    for builder in builders {
        let template = SetCookieTemplate::new(&builder).unwrap();
        for value in values {
            for max_age in [
                None,
                Some(Duration::ZERO),
                Some(Duration::from_secs(1_209_600)),
            ] {
                let expected = builder
                    .clone()
                    .value(value)
                    .max_age(max_age)
                    .build()
                    .unwrap()
                    .to_header_value();
                assert_eq!(template.header(value, max_age), Some(expected));
            }
        }
        let removal = builder.clone().build().unwrap().into_removal();
        assert_eq!(template.removal(), removal.to_header_value());
        // What the builder refuses, the template refuses.
        assert_eq!(template.header("a b", None), None);
        assert_eq!(template.header("a;b", None), None);
        assert_eq!(template.header(&"x".repeat(4096), None), None);
    }
}

#[test]
fn many_cookies_of_one_name_are_refused_in_linear_time() {
    let ring = ring();
    let codec = Codec::signed(ring.clone());
    let good = codec.encode("theme", b"\"dark\"", Claims::now()).unwrap();
    // A 400 KB header of 40,000 distinct values beside the good one, as
    // a script or a subdomain could plant: far more values of one name than
    // any browser sends, so none is trusted (and none is tried past the
    // cap). Comparing each value with all the earlier ones took seconds.
    let mut header: String = (0..40_000).map(|i| format!("theme=v{i:05}; ")).collect();
    header.push_str(&format!("theme={good}"));
    let jar = CookieJar::parse(&header);
    assert_eq!(jar.get_all("theme").count(), 40_001);
    let err = jar.signed(&ring).try_get::<String>("theme").unwrap_err();
    assert!(
        matches!(err, CookieError::Ambiguous { ref name } if name == "theme"),
        "{err}"
    );
    assert_eq!(jar.private(&ring).get::<String>("theme"), None);
    let mut jar = jar;
    // Nothing to renew: not an error (a handler's `renew(..)?` must not
    // refuse the visitor).
    assert!(!jar.signed_mut(&ring).renew("theme").unwrap());
    assert_eq!(jar.delta().count(), 0);
    // Up to the cap, junk beside the good value is skipped as before.
    let mut header: String = (1..MAX_SAME_NAME)
        .map(|i| format!("theme=v{i}; "))
        .collect();
    header.push_str(&format!("theme={good}"));
    assert_eq!(
        CookieJar::parse(&header)
            .signed(&ring)
            .get::<String>("theme")
            .as_deref(),
        Some("dark")
    );
    // The same value sent many times is still one value.
    let header = vec![format!("theme={good}"); 40_000].join("; ");
    assert_eq!(
        CookieJar::parse(&header)
            .signed(&ring)
            .get::<String>("theme")
            .as_deref(),
        Some("dark")
    );
}

#[test]
fn the_longest_max_age_saturates_instead_of_overflowing() {
    let cookie = Cookie::build("n", "v")
        .max_age(Duration::MAX)
        .build()
        .unwrap();
    assert!(!cookie.is_removal());
    assert!(
        cookie
            .to_string()
            .ends_with(&format!("Max-Age={}", i64::MAX)),
        "{cookie}"
    );
    let template = SetCookieTemplate::new(&Cookie::build("sid", "")).unwrap();
    let header = template.header("x", Some(Duration::MAX)).unwrap();
    assert!(
        header
            .to_str()
            .unwrap()
            .ends_with(&format!("; Max-Age={}", i64::MAX)),
        "{header:?}"
    );
    // Through a view: the longest expiry a value can carry, and a cookie
    // the browser keeps.
    let ring = ring();
    let mut jar = CookieJar::new();
    jar.signed_mut(&ring)
        .at(1_000)
        .ttl(Some(Duration::MAX))
        .insert("a", &1)
        .unwrap();
    let sent = jar.delta().next().unwrap().to_string();
    assert!(sent.contains(&format!("Max-Age={}", i64::MAX)), "{sent}");
    let got = round_trip(&jar)
        .signed(&ring)
        .at(u64::from(u32::MAX))
        .try_get::<u8>("a")
        .unwrap()
        .unwrap();
    assert_eq!(got.claims().expires_at(), Some((1 << 48) - 1));
}

#[test]
fn a_sub_second_view_ttl_rounds_up_like_max_age() {
    let ring = ring();
    let mut jar = CookieJar::new();
    jar.signed_mut(&ring)
        .at(1_000)
        .ttl(Some(Duration::from_millis(500)))
        .insert("a", &1)
        .unwrap();
    assert!(
        jar.delta()
            .next()
            .unwrap()
            .to_string()
            .ends_with("Max-Age=1")
    );
    // Readable in the same request and the same second, as Max-Age says.
    let got = jar
        .signed(&ring)
        .at(1_000)
        .try_get::<u8>("a")
        .unwrap()
        .unwrap();
    assert_eq!(got.claims().expires_at(), Some(1_001));
    assert_eq!(
        round_trip(&jar).signed(&ring).at(1_000).get::<u8>("a"),
        Some(1)
    );
    assert_eq!(
        round_trip(&jar).signed(&ring).at(1_001).get::<u8>("a"),
        None
    );
    // Whole seconds are unchanged.
    let mut jar = CookieJar::new();
    jar.private_mut(&ring)
        .at(1_000)
        .ttl(Some(Duration::from_millis(2_001)))
        .insert("b", &1)
        .unwrap();
    let got = jar
        .private(&ring)
        .at(1_000)
        .try_get::<u8>("b")
        .unwrap()
        .unwrap();
    assert_eq!(got.claims().expires_at(), Some(1_003));
    assert!(
        jar.delta()
            .next()
            .unwrap()
            .to_string()
            .ends_with("Max-Age=3")
    );
}

#[test]
fn debug_never_shows_cookie_values() {
    let ring = ring();
    let mut jar = CookieJar::parse("session=s1.SECRETTOKEN; lang=en");
    jar.add(
        Cookie::build("plain", "SECRETPLAIN")
            .path("/app")
            .build()
            .unwrap(),
    );
    jar.private_mut(&ring).insert("cart", "SECRETCART").unwrap();
    let sealed = jar.delta().last().unwrap().value().to_owned();
    jar.remove(Cookie::build("old", "").build().unwrap());
    let shown = format!("{jar:?}");
    for secret in ["SECRETTOKEN", "SECRETPLAIN", sealed.as_str(), "\"en\""] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    // Still useful: names, sizes and attributes.
    for part in [
        "session", "lang", "plain", "cart", "old", "\"/app\"", "14 bytes",
    ] {
        assert!(shown.contains(part), "{part} not in {shown}");
    }
    let cookie = Cookie::build("a", "SECRETPLAIN").domain("example.com");
    assert!(!format!("{cookie:?}").contains("SECRETPLAIN"));
    assert!(format!("{cookie:?}").contains("example.com"));
    let cookie = cookie.build().unwrap();
    let shown = format!("{cookie:#?}");
    assert!(
        !shown.contains("SECRETPLAIN") && shown.contains("example.com"),
        "{shown}"
    );
}

#[cfg(feature = "axum")]
#[test]
fn a_jar_in_a_response_appends_its_set_cookies() {
    use axum_core::response::IntoResponse as _;

    let ring = ring();
    let mut jar = CookieJar::parse("theme=old");
    jar.signed_mut(&ring).insert("theme", "dark").unwrap();
    jar.remove(Cookie::build("lang", "").build().unwrap());
    let response = ([(header::SET_COOKIE, "other=1")], jar.clone(), "ok").into_response();
    let sent: Vec<_> = response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert_eq!(sent[0], "other=1");
    assert!(sent[1].starts_with("theme=s1."));
    assert!(sent[2].starts_with("lang=;") && sent[2].contains("Max-Age=0"));
    // On its own, too; and a jar that changed nothing sends nothing.
    assert_eq!(
        jar.into_response()
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .count(),
        2
    );
    let response = (CookieJar::parse("a=1"), "ok").into_response();
    assert!(response.headers().get(header::SET_COOKIE).is_none());
}

/// A value nested deeper than `get` reads back (serde_json's 127 levels) is
/// refused by `insert` rather than written and then unreadable; the jar is
/// left as it was. At the limit it round-trips.
#[test]
fn values_nested_deeper_than_get_reads_are_refused() {
    let ring = ring();
    let nested = |levels: usize| {
        (1..levels).fold(serde_json::json!([0]), |inner, _| {
            serde_json::json!([inner])
        })
    };
    let mut jar = CookieJar::new();
    jar.signed_mut(&ring).insert("deep", &nested(127)).unwrap();
    let read: Option<serde_json::Value> = jar.signed(&ring).get("deep");
    assert_eq!(read, Some(nested(127)));
    for levels in [128, 200] {
        for result in [
            jar.signed_mut(&ring).insert("deep", &nested(levels)),
            jar.private_mut(&ring).insert("deep", &nested(levels)),
        ] {
            let err = result.unwrap_err();
            assert!(matches!(err, CookieError::Json { .. }), "{levels}: {err:?}");
            assert!(err.to_string().contains("127"), "{err}");
        }
    }
    let read: Option<serde_json::Value> = jar.signed(&ring).get("deep");
    assert_eq!(read, Some(nested(127)), "unchanged");
}
