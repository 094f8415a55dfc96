//! Exhaustive tamper sweep: every bit flip, byte substitution, truncation,
//! base64 alphabet swap and segment swap of valid signed and sealed values,
//! for payloads of 0 to 3,000 bytes. None may verify, and the error must
//! give no oracle: it is a function of the value's public layout alone
//! (what `codec::inspect` sees without a key), so a value that looks right
//! but was changed anywhere fails as `BadSignature`, wherever the change is.
//!
//! The same sweep covers Flask, Starlette and Django cookies
//! (`interop_sweep_accepts_nothing`).
//!
//! Then through real HTTP (`SessionLayer` on 127.0.0.1): a sample of every
//! kind of bad session cookie gives the same answer as no cookie at all
//! under `BadCookie::Ignore`, and the same 400 under `BadCookie::Reject`.

#[allow(dead_code)] // each test file uses part of the shared harness
mod common;

use common::{Backend, Reply, Server};
use keepsake::{
    codec::{self, Claims, Codec, DecodeError, Format},
    key::{Key, KeyRing, Namespace},
    session::BadCookie,
};

const NOW: u64 = 1_700_000_000;
const NAME: &str = "session";

/// Payload sizes: around every base64 group and block boundary, up to the
/// largest payload that still fits a cookie in either format.
const SIZES: [usize; 17] = [
    0, 1, 2, 3, 15, 16, 17, 63, 64, 65, 255, 256, 511, 512, 1000, 2048, 3000,
];

/// The base64url alphabet plus the characters an attacker would try next.
const SUBSTITUTES: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/=.";

/// Deterministic payload bytes (no RNG needed: the MAC does not care).
fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

/// A ring whose current key made the values, with an unrelated fallback, so
/// every bad value is also tried against a second key.
fn ring() -> KeyRing {
    KeyRing::new(Key::from_bytes(&[1; 32]).expect("key"))
        .with_fallback(Key::from_bytes(&[2; 32]).expect("key"))
}

fn claims() -> Claims {
    Claims::new(NOW - 10).with_ttl(3_600)
}

/// The error `codec` must give for a bad `value`: decided by the layout
/// alone: too long, then not this format's prefix (`Malformed`), then what
/// `inspect` says; a value of a known layout fails the MAC (or the AEAD
/// tag) as `BadSignature`.
fn expected_error(codec: &Codec, value: &str) -> DecodeError {
    match codec::inspect(value) {
        Err(err @ DecodeError::TooLarge { .. }) => err,
        _ if Format::detect(value) != Some(codec.format()) => DecodeError::Malformed,
        Ok(_) => DecodeError::BadSignature,
        Err(err) => err,
    }
}

/// Tallies of one sweep.
#[derive(Debug, Default)]
struct Tally {
    tried: usize,
    bad_signature: usize,
}

/// Checks one tampered value: refused, with the layout's error.
fn check(codec: &Codec, original: &str, candidate: &[u8], kind: &str, tally: &mut Tally) {
    let Ok(value) = std::str::from_utf8(candidate) else {
        return; // not text: cannot reach a cookie value at all
    };
    if value == original {
        return;
    }
    tally.tried += 1;
    let got = codec.decode(NAME, value, NOW);
    let want = expected_error(codec, value);
    if want == DecodeError::BadSignature {
        tally.bad_signature += 1;
    }
    match got {
        Ok(opened) => panic!(
            "{kind}: a tampered {} value verified: {value:?} (payload {} bytes)",
            codec.format(),
            opened.payload().len()
        ),
        Err(err) => assert_eq!(
            err,
            want,
            "{kind}: {} value {value:?} gave an error that says more than its layout",
            codec.format()
        ),
    }
}

fn b64_decode(text: &str) -> Vec<u8> {
    base64_simd::URL_SAFE_NO_PAD
        .decode_to_vec(text)
        .expect("a valid value's base64")
}

fn b64(bytes: &[u8]) -> String {
    base64_simd::URL_SAFE_NO_PAD.encode_to_string(bytes)
}

/// Which positions of a value of `len` characters (or bytes) the per-position
/// sweeps visit: all of them up to 128; for longer values every position
/// within 64 of either end (prefix, header, nonce, tag and the base64 tail)
/// and every 29th in between, where the MAC or AEAD treats every byte alike.
/// Keeps the sweep to seconds in an unoptimised test build.
fn position(i: usize, len: usize) -> bool {
    len <= 128 || i < 64 || i + 64 >= len || i.is_multiple_of(29)
}

/// Every tampered variant of `value`, with its kind, passed to `each`.
fn mutations(value: &str, other: &str, format: Format, mut each: impl FnMut(&str, &[u8])) {
    let bytes = value.as_bytes();
    let len = bytes.len();

    // Every bit of every character (of long values: see `position`).
    for i in (0..len).filter(|&i| position(i, len)) {
        for bit in 0..8 {
            let mut v = bytes.to_vec();
            v[i] ^= 1 << bit;
            each("bit flip", &v);
        }
    }

    // Every position, each substitute character (for long values, the
    // characters that change the base64 or the layout most).
    let substitutes = if len <= 128 {
        SUBSTITUTES
    } else {
        b"AQgw_-+/=."
    };
    for i in (0..len).filter(|&i| position(i, len)) {
        for &c in substitutes {
            if bytes[i] != c {
                let mut v = bytes.to_vec();
                v[i] = c;
                each("substitution", &v);
            }
        }
    }

    // Every truncation from the end and from the start; one character
    // inserted or deleted at each end and around every separator.
    for k in (0..len).filter(|&k| position(k, len)) {
        each("truncation", &bytes[..k]);
        each("truncation from the start", &bytes[len - k..]);
    }
    for c in [b'A', b'=', b'.', b' '] {
        each("appended", &[bytes, &[c]].concat());
        each("prepended", &[&[c][..], bytes].concat());
    }
    let dots: Vec<usize> = (0..len).filter(|&i| bytes[i] == b'.').collect();
    for &d in &dots {
        each(
            "separator removed",
            &[&bytes[..d], &bytes[d + 1..]].concat(),
        );
        each("separator doubled", &[&bytes[..=d], &bytes[d..]].concat());
        for pad in ["=", "=="] {
            each(
                "padding before separator",
                &[&bytes[..d], pad.as_bytes(), &bytes[d..]].concat(),
            );
        }
    }

    // The base64 alphabet: URL-safe to standard, padding added.
    let swapped = |from: char, to: char| value.replace(from, &to.to_string());
    each("alphabet - to +", swapped('-', '+').as_bytes());
    each("alphabet _ to /", swapped('_', '/').as_bytes());
    each(
        "alphabet both",
        value.replace('-', "+").replace('_', "/").as_bytes(),
    );
    for pad in ["=", "==", "==="] {
        each("padding added", format!("{value}{pad}").as_bytes());
    }
    let (prefix, body) = value.split_at(3);
    let standard: Vec<String> = body
        .split('.')
        .map(|part| base64_simd::STANDARD.encode_to_string(b64_decode(part)))
        .collect();
    each(
        "standard base64 with padding",
        format!("{prefix}{}", standard.join(".")).as_bytes(),
    );
    for letter in ["s1.", "e1.", "s2.", "e01.", "S1.", "s1..", ""] {
        each("prefix swap", format!("{letter}{body}").as_bytes());
    }

    // Segment swaps with another valid value: every part of one glued to
    // the rest of the other, at the byte level, correctly encoded.
    let (_, other_body) = other.split_at(3);
    match format {
        Format::Signed => {
            let (data, tag) = body.split_once('.').expect("signed layout");
            let (other_data, other_tag) = other_body.split_once('.').expect("signed layout");
            let (data, other_data) = (b64_decode(data), b64_decode(other_data));
            let glue = |header: &[u8], rest: &[u8], tag: &str| {
                format!("s1.{}.{tag}", b64(&[header, rest].concat()))
            };
            each(
                "segment swap: tag",
                glue(&data[..12], &data[12..], other_tag).as_bytes(),
            );
            each(
                "segment swap: header",
                glue(&other_data[..12], &data[12..], tag).as_bytes(),
            );
            each(
                "segment swap: payload",
                glue(&data[..12], &other_data[12..], tag).as_bytes(),
            );
            // (Payload and tag together, under the same header, is the other
            // valid value itself.)
            each(
                "segment swap: header and tag",
                glue(&other_data[..12], &data[12..], other_tag).as_bytes(),
            );
        }
        Format::Sealed => {
            let (raw, other_raw) = (b64_decode(body), b64_decode(other_body));
            let split = |raw: &[u8]| {
                let (nonce, rest) = raw.split_at(12);
                let (ciphertext, tag) = rest.split_at(rest.len() - 16);
                (nonce.to_vec(), ciphertext.to_vec(), tag.to_vec())
            };
            let (n1, c1, t1) = split(&raw);
            let (n2, c2, t2) = split(&other_raw);
            for (kind, parts) in [
                ("segment swap: nonce", [&n2[..], &c1[..], &t1[..]]),
                ("segment swap: tag", [&n1[..], &c1[..], &t2[..]]),
                ("segment swap: ciphertext", [&n1[..], &c2[..], &t1[..]]),
                ("segment swap: nonce and tag", [&n2[..], &c1[..], &t2[..]]),
                (
                    "segment swap: ciphertext and tag",
                    [&n1[..], &c2[..], &t2[..]],
                ),
            ] {
                each(kind, format!("e1.{}", b64(&parts.concat())).as_bytes());
            }
            // The header is the first 12 bytes of the ciphertext.
            if c1.len() >= 12 && c2.len() >= 12 {
                let glued = [&n1[..], &c2[..12], &c1[12..], &t1[..]].concat();
                each(
                    "segment swap: encrypted header",
                    format!("e1.{}", b64(&glued)).as_bytes(),
                );
            }
        }
    }
}

/// Every bit of the protected bytes (after base64), re-encoded correctly, so
/// each flip reaches the MAC or the AEAD rather than the base64 decoder.
fn byte_flips(value: &str, mut each: impl FnMut(&[u8])) {
    let (prefix, body) = value.split_at(3);
    let parts: Vec<Vec<u8>> = body.split('.').map(b64_decode).collect();
    for (p, part) in parts.iter().enumerate() {
        for i in (0..part.len()).filter(|&i| position(i, part.len())) {
            for bit in 0..8 {
                let mut flipped = parts.clone();
                flipped[p][i] ^= 1 << bit;
                let encoded: Vec<String> = flipped.iter().map(|x| b64(x)).collect();
                each(format!("{prefix}{}", encoded.join(".")).as_bytes());
            }
        }
    }
}

fn sweep(format: Format) {
    let codec = Codec::new(format, ring());
    let mut tally = Tally::default();
    for (n, &size) in SIZES.iter().enumerate() {
        let value = codec
            .encode(NAME, &payload(size, 1), claims())
            .expect("encode");
        // Another valid value: same size, other payload; and one of the
        // next size, for swaps across lengths.
        let same = codec
            .encode(NAME, &payload(size, 2), claims())
            .expect("encode");
        let next = SIZES.get(n + 1).copied().unwrap_or(1);
        let longer = codec
            .encode(NAME, &payload(next, 3), claims())
            .expect("encode");
        assert_eq!(
            codec.decode(NAME, &value, NOW).expect("valid").payload(),
            payload(size, 1)
        );

        mutations(&value, &same, format, |kind, v| {
            check(&codec, &value, v, kind, &mut tally);
        });
        mutations(&value, &longer, format, |kind, v| {
            if kind.starts_with("segment swap") {
                check(&codec, &value, v, kind, &mut tally);
            }
        });
        byte_flips(&value, |v| {
            check(&codec, &value, v, "protected bit flip", &mut tally)
        });

        // The value under another name, namespace, format or key.
        let shared = Codec::new(format, ring()).with_namespace(Namespace::Shared);
        let stranger = Codec::new(
            format,
            KeyRing::new(Key::from_bytes(&[3; 32]).expect("key")),
        );
        for (kind, codec_for) in [
            (
                "other name",
                codec.encode("sessions", &payload(size, 1), claims()),
            ),
            (
                "other namespace",
                shared.encode(NAME, &payload(size, 1), claims()),
            ),
            (
                "other key",
                stranger.encode(NAME, &payload(size, 1), claims()),
            ),
        ] {
            let v = codec_for.expect("encode");
            check(&codec, &value, v.as_bytes(), kind, &mut tally);
        }
    }
    eprintln!(
        "{format}: {} tampered values over {} payload sizes, 0 accepted, {} of them well-formed (BadSignature)",
        tally.tried,
        SIZES.len(),
        tally.bad_signature
    );
    assert!(tally.tried > 20_000, "sweep too small: {}", tally.tried);
    assert!(tally.bad_signature > tally.tried / 4);
}

#[test]
fn signed_sweep_accepts_nothing() {
    sweep(Format::Signed);
}

#[test]
fn sealed_sweep_accepts_nothing() {
    sweep(Format::Sealed);
}

/// An expired value stays `Expired` (it verified) only when untouched: a
/// tampered expired value is a plain bad value, so the "expired" answer is
/// no oracle for forged values either.
#[test]
fn tampered_expired_values_are_not_expired() {
    for format in [Format::Signed, Format::Sealed] {
        let codec = Codec::new(format, ring());
        let value = codec
            .encode(NAME, b"{}", Claims::new(NOW - 100).with_ttl(10))
            .expect("encode");
        assert_eq!(
            codec.decode(NAME, &value, NOW),
            Err(DecodeError::Expired {
                expires_at: NOW - 90
            })
        );
        let mut tally = Tally::default();
        byte_flips(&value, |v| {
            check(&codec, &value, v, "expired, flipped", &mut tally)
        });
        mutations(&value, &value, format, |kind, v| {
            check(&codec, &value, v, kind, &mut tally);
        });
        assert!(tally.tried > 1_000);
    }
}

// ---------------------------------------------------------------------------
// Through HTTP
// ---------------------------------------------------------------------------

/// A sample of the sweep's bad values for `value`, one of every few of each
/// kind, that can travel in a `Cookie` header.
fn http_sample(value: &str, other: &str, format: Format) -> Vec<(String, String)> {
    let mut seen_per_kind = std::collections::HashMap::<String, usize>::new();
    let mut sample = Vec::new();
    let mut take = |kind: &str, v: &[u8]| {
        let Ok(text) = std::str::from_utf8(v) else {
            return;
        };
        let header = format!("session={text}");
        if text == value
            || http::HeaderValue::from_str(&header).is_err()
            || text.contains([';', ' ', ',', '"'])
        {
            return;
        }
        let count = seen_per_kind.entry(kind.to_owned()).or_default();
        *count += 1;
        if *count % 59 == 1 {
            sample.push((kind.to_owned(), text.to_owned()));
        }
    };
    mutations(value, other, format, &mut take);
    byte_flips(value, |v| take("protected bit flip", v));
    sample
}

/// What the server answered, minus what legitimately differs per request.
fn outcome(reply: &Reply) -> (u16, String, bool) {
    (
        reply.status,
        reply.body.clone(),
        reply.session_set_cookie().is_some(),
    )
}

async fn http_outcomes(backend: Backend, format: Format) {
    for policy in [BadCookie::Ignore, BadCookie::Reject] {
        let server = Server::start_with(backend, |b| b.bad_cookie(policy)).await;
        // A real session: its cookie is the value to tamper with.
        let value = server.get_raw("/count", None).await.session_cookie();
        let other = server.get_raw("/count", None).await.session_cookie();
        let (value, other) = (value.expect("a cookie"), other.expect("a cookie"));

        let anonymous = outcome(&server.get_raw("/status", None).await);
        assert_eq!(
            anonymous,
            (200, "new=true expired=false n=- user=-".to_owned(), false)
        );
        let sample = http_sample(&value, &other, format);
        assert!(sample.len() > 50, "sample of {}", sample.len());
        let mut baseline: Option<(u16, String, bool)> = None;
        for (kind, bad) in &sample {
            let got = outcome(&server.get_raw("/status", Some(bad)).await);
            match policy {
                BadCookie::Ignore => assert_eq!(got, anonymous, "{backend:?} {kind}: {bad}"),
                _ => {
                    // Refused, and removed (the `Set-Cookie`), so that the
                    // browser is not refused again until the cookie expires.
                    assert_eq!(
                        got,
                        (400, "bad cookie".to_owned(), true),
                        "{backend:?} {kind}"
                    );
                }
            }
            let baseline = baseline.get_or_insert_with(|| got.clone());
            assert_eq!(
                &got, baseline,
                "{backend:?} {policy:?} {kind}: not the same outcome"
            );
        }
        // The session itself was not changed by any of it.
        assert_eq!(server.get_raw("/get", Some(&value)).await.body, "1");
        eprintln!(
            "{backend:?} {policy:?}: {} bad cookies over HTTP, one outcome",
            sample.len()
        );
    }
}

#[tokio::test]
async fn http_store_bad_cookies_one_outcome() {
    http_outcomes(Backend::Memory, Format::Signed).await;
}

#[tokio::test]
async fn http_signed_bad_cookies_one_outcome() {
    http_outcomes(Backend::Signed, Format::Signed).await;
}

#[tokio::test]
async fn http_sealed_bad_cookies_one_outcome() {
    http_outcomes(Backend::Sealed, Format::Sealed).await;
}

// ---------------------------------------------------------------------------
// Flask, Starlette and Django cookies
// ---------------------------------------------------------------------------

/// The same sweep (every bit flip, substitution, truncation, insertion and
/// alphabet swap) over Flask, Starlette and Django session cookies, small
/// and zlib-compressed: none verifies as anything new (the only values that
/// verify are other spellings of the signature, in its last base64
/// character's spare bits or with `=` padding, which Python's decoder also
/// accepts, giving the very same session), and
/// none fails with an error that only a verified value can give (expired,
/// issued in the future, bad payload).
#[test]
fn interop_sweep_accepts_nothing() {
    use keepsake::codec::interop::{Framework, InteropCodec, InteropDecodeError, PyDict};

    let mut small = PyDict::new();
    small.insert("user", "ada");
    let mut big = PyDict::new();
    big.insert("pad", "x".repeat(700)); // compressed by Flask and Django
    let (mut tried, mut respelled) = (0, Vec::new());
    for framework in Framework::ALL {
        let codec = InteropCodec::new(framework, "a secret key for the tamper sweep");
        for session in [&PyDict::new(), &small, &big] {
            let value = codec.encode(session, NOW - 10).expect("encode");
            let other = codec.encode(&small, NOW - 20).expect("encode");
            assert_eq!(codec.decode(&value, NOW).expect("valid").session(), session);
            let mut check = |kind: &str, candidate: &[u8]| {
                let Ok(text) = std::str::from_utf8(candidate) else {
                    return;
                };
                if text == value {
                    return;
                }
                tried += 1;
                match codec.decode(text, NOW) {
                    Err(
                        InteropDecodeError::Malformed
                        | InteropDecodeError::BadSignature
                        | InteropDecodeError::TooLarge { .. },
                    ) => {}
                    // Python's base64 decoder (and so this one) ignores the
                    // spare bits of the signature's last character and
                    // takes `=` padding: other spellings of the *same*
                    // signature, giving the same session. Malleable, not
                    // forged; counted and bounded.
                    Ok(decoded)
                        if decoded.session() == session && decoded.issued_at() == NOW - 10 =>
                    {
                        respelled.push(format!("{framework} {kind}"));
                    }
                    other => panic!("{framework} {kind}: {text:?} gave {other:?}"),
                }
            };
            let bytes = value.as_bytes();
            let len = bytes.len();
            for i in (0..len).filter(|&i| position(i, len)) {
                for bit in 0..8 {
                    let mut v = bytes.to_vec();
                    v[i] ^= 1 << bit;
                    check("bit flip", &v);
                }
                for &c in SUBSTITUTES.iter().chain(b":") {
                    let mut v = bytes.to_vec();
                    v[i] = c;
                    check("substitution", &v);
                }
                check("truncation", &bytes[..i]);
                check("truncation from the start", &bytes[i..]);
                check("deletion", &[&bytes[..i], &bytes[i + 1..]].concat());
            }
            for pad in ["=", "==", "A", ".", ":"] {
                check("appended", format!("{value}{pad}").as_bytes());
            }
            check(
                "alphabet",
                value.replace('-', "+").replace('_', "/").as_bytes(),
            );
            // Segment swaps: each separator-delimited part from the other value.
            let sep = if framework == Framework::Django {
                ':'
            } else {
                '.'
            };
            let (mine, theirs): (Vec<&str>, Vec<&str>) =
                (value.split(sep).collect(), other.split(sep).collect());
            if mine.len() == theirs.len() {
                for p in 0..mine.len() {
                    let mut glued = mine.clone();
                    glued[p] = theirs[p];
                    check("segment swap", glued.join(&sep.to_string()).as_bytes());
                }
            }
        }
    }
    respelled.sort();
    respelled.dedup_by(|a, b| a == b);
    eprintln!(
        "interop: {tried} tampered values, 0 forged; respellings that read as the same \
         session: {respelled:?}"
    );
    assert!(tried > 10_000, "sweep too small: {tried}");
}
