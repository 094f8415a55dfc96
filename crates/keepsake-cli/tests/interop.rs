//! End-to-end tests of `keepsake sign|verify --format flask|starlette|django`
//! and `keepsake decode` of those cookies, against values the real
//! frameworks made (crates/keepsake/tests/vectors, time pinned to
//! 1700000000).

use std::process::{Command, Output};

/// Flask's, Starlette's and Django's SECRET_KEY in the vectors.
const KEY: &str = "dev-secret-key-0123456789";
/// The rotated-out key of the rotation vectors.
const OLD_KEY: &str = "old-secret-key-before-rotation";
/// A non-ASCII key of the vectors.
const UNICODE_KEY: &str = "rotated-key \u{fc}\u{f1}\u{ee}\u{e7}\u{f8}d\u{e9} \u{2603}";
const NOW: &str = "1700000000";

/// Flask `{"user_id": 42}` at NOW under KEY.
const FLASK: &str = "eyJ1c2VyX2lkIjo0Mn0.ZVPxAA.URDB51yliVaCe0MfFjl9pAk8TrE";
/// Starlette `{"user_id": 42}` at NOW under KEY.
const STARLETTE: &str = "eyJ1c2VyX2lkIjogNDJ9.ZVPxAA.r4ggNpoIhK1U4t1X8zVv2kldEAc";
/// Django `{"user_id": 42}` at NOW under KEY.
const DJANGO: &str = "eyJ1c2VyX2lkIjo0Mn0:1r31eq:PxFCfe1JCZW3LwEwWGDZkcjYQ_KGE-GF_NE4fJ0kbak";

fn keepsake(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keepsake"))
        .args(args)
        .env("FW_KEY", KEY)
        .env("FW_OLD", OLD_KEY)
        .env("FW_UNICODE", UNICODE_KEY)
        .env("FW_EMPTY", "")
        .env_remove("FW_UNSET")
        .output()
        .expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8")
}

/// The one line of stdout of a successful run (stderr may say `stale-key`).
fn ok(output: &Output) -> String {
    assert_eq!(
        output.status.code(),
        Some(0),
        "stderr: {}",
        text(&output.stderr)
    );
    let out = text(&output.stdout);
    assert!(out.ends_with('\n') && out.lines().count() == 1, "{out:?}");
    out.trim_end().to_owned()
}

/// stderr of a run that failed with `code` and printed nothing.
fn failed(output: &Output, code: i32) -> String {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {}",
        text(&output.stdout)
    );
    assert!(output.stdout.is_empty());
    let err = text(&output.stderr);
    assert!(err.starts_with("keepsake: "), "{err}");
    err
}

fn sign(format: &str, json: &str) -> Output {
    keepsake(&[
        "sign",
        "--format",
        format,
        "--secret-env",
        "FW_KEY",
        "--now",
        NOW,
        "--json",
        json,
    ])
}

fn verify(format: &str, now: &str, value: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "verify",
        "--format",
        format,
        "--secret-env",
        "FW_KEY",
        "--now",
        now,
    ];
    args.extend_from_slice(extra);
    args.push(value);
    keepsake(&args)
}

#[test]
fn sign_makes_the_frameworks_cookies_byte_for_byte() {
    assert_eq!(ok(&sign("flask", r#"{"user_id": 42}"#)), FLASK);
    assert_eq!(ok(&sign("starlette", r#"{"user_id": 42}"#)), STARLETTE);
    assert_eq!(ok(&sign("django", r#"{"user_id": 42}"#)), DJANGO);
    // Key order is kept for Starlette and Django, sorted for Flask.
    let json = r#"{"zeta":1,"alpha":2,"Beta":3,"_b":4,"\u00e9":5}"#;
    assert_eq!(
        ok(&sign("starlette", json)),
        "eyJ6ZXRhIjogMSwgImFscGhhIjogMiwgIkJldGEiOiAzLCAiX2IiOiA0LCAiXHUwMGU5IjogNX0=.ZVPxAA.unvHoMp-m9fsJdjnTwb00WinYXk"
    );
    assert_eq!(
        ok(&sign("django", json)),
        "eyJ6ZXRhIjoxLCJhbHBoYSI6MiwiQmV0YSI6MywiX2IiOjQsIlx1MDBlOSI6NX0:1r31eq:DFmN-RgfM9y1DcS36FpvlmxJVbyZYpdCVnBVDviawSQ"
    );
    // Compressed (zlib), and Flask's tagged JSON for a tuple.
    let nested =
        r#"{"prefs":{"theme":"dark","langs":["en","fr"],"deep":{"a":{"b":{"c":1}}}},"csrf":"abc"}"#;
    assert_eq!(
        ok(&sign("django", nested)),
        ".eJwVizEOgDAMA__iuQtrvoIY0jYBCaiqlK3q30k8nOSTPdFNdIAmvkteAaGy3Uh4uJ3ud0jzpoYjoYr0mHIgBwpoW56EMkz9zblg_ZfVGp8:1r31eq:7eH1pshmpIbJlce2O8KT-to50b6Y1zx0UdACFJzczE4"
    );
    assert_eq!(
        ok(&sign("flask", r#"{"t": {" t": [1, "two", 3.0]}}"#)),
        "eyJ0Ijp7IiB0IjpbMSwidHdvIiwzLjBdfX0.ZVPxAA.U7VqQq4tCpM1MoQB7fxPaFce7l8"
    );
    // The secret is the app's key as text, non-ASCII included.
    let out = keepsake(&[
        "sign",
        "--format",
        "flask",
        "--secret-env",
        "FW_UNICODE",
        "--now",
        NOW,
        "--json",
        r#"{"user_id":42}"#,
    ]);
    assert_eq!(
        ok(&out),
        "eyJ1c2VyX2lkIjo0Mn0.ZVPxAA.8crwWL_wx-CLVyyNmgbghQrq8nA"
    );
}

#[test]
fn verify_prints_the_session_as_the_framework_writes_it() {
    let later = "1700000060";
    assert_eq!(ok(&verify("flask", later, FLASK, &[])), r#"{"user_id":42}"#);
    assert_eq!(
        ok(&verify("starlette", later, STARLETTE, &[])),
        r#"{"user_id": 42}"#
    );
    assert_eq!(
        ok(&verify("django", later, DJANGO, &[])),
        r#"{"user_id":42}"#
    );
    let tuple = "eyJ0Ijp7IiB0IjpbMSwidHdvIiwzLjBdfX0.ZVPxAA.U7VqQq4tCpM1MoQB7fxPaFce7l8";
    assert_eq!(
        ok(&verify("flask", later, tuple, &[])),
        r#"{"t":{" t":[1,"two",3.0]}}"#
    );
}

#[test]
fn tampered_or_wrong_key_values_exit_1() {
    for (format, value) in [
        ("flask", FLASK),
        ("starlette", STARLETTE),
        ("django", DJANGO),
    ] {
        let mut tampered = value.to_owned();
        tampered.replace_range(3..4, if &value[3..4] == "A" { "B" } else { "A" });
        let err = failed(&verify(format, NOW, &tampered, &[]), 1);
        assert!(err.contains("does not verify"), "{err}");
        let out = keepsake(&[
            "verify",
            "--format",
            format,
            "--secret-env",
            "FW_OLD",
            "--now",
            NOW,
            value,
        ]);
        failed(&out, 1);
        // Another framework's cookie with the same key does not verify either.
        let other = if format == "flask" { STARLETTE } else { FLASK };
        failed(&verify(format, NOW, other, &[]), 1);
    }
}

#[test]
fn expiry_and_future_dates_follow_each_framework() {
    // Flask: 31 days; Starlette and Django: 14 days. At the limit still valid.
    for (format, value, max_age) in [
        ("flask", FLASK, 31 * 86_400),
        ("starlette", STARLETTE, 14 * 86_400),
        ("django", DJANGO, 14 * 86_400),
    ] {
        let limit = (1_700_000_000 + max_age).to_string();
        ok(&verify(format, &limit, value, &[]));
        let late = (1_700_000_001 + max_age).to_string();
        let err = failed(&verify(format, &late, value, &[]), 1);
        assert!(err.contains("expired"), "{err}");
        // --max-age overrides the default.
        failed(
            &verify(format, "1700000061", value, &["--max-age", "60"]),
            1,
        );
        ok(&verify(format, "1700000060", value, &["--max-age", "60"]));
    }
    // Issued 10 s in the future: itsdangerous refuses, Django accepts.
    let earlier = "1699999990";
    let err = failed(&verify("flask", earlier, FLASK, &[]), 1);
    assert!(err.contains("future"), "{err}");
    failed(&verify("starlette", earlier, STARLETTE, &[]), 1);
    ok(&verify("django", earlier, DJANGO, &[]));
}

#[test]
fn fallback_keys_verify_with_stale_key() {
    let old_flask = "eyJ1c2VyX2lkIjo3fQ.ZVPxAA.M5uknbKwnV1_gsgn9S29c_pZiAI";
    let old_django = "eyJ1c2VyX2lkIjo3fQ:1r31eq:Al5uanmhknsZyNrOMhJMhy0ze4yN0jLgAzg2xCmCWTg";
    for (format, value) in [("flask", old_flask), ("django", old_django)] {
        failed(&verify(format, NOW, value, &[]), 1);
        let out = verify(format, NOW, value, &["--fallback-env", "FW_OLD"]);
        assert_eq!(ok(&out), r#"{"user_id":7}"#);
        assert_eq!(text(&out.stderr), "stale-key\n");
    }
    // From a file, without its trailing newline.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.key");
    std::fs::write(&path, format!("{OLD_KEY}\n")).unwrap();
    let out = verify(
        "flask",
        NOW,
        old_flask,
        &["--fallback-file", path.to_str().unwrap()],
    );
    assert_eq!(ok(&out), r#"{"user_id":7}"#);
}

#[test]
fn decode_recognises_all_three() {
    let seen = |value: &str| -> serde_json::Value {
        serde_json::from_str(&ok(&keepsake(&["decode", value]))).unwrap()
    };
    for (format, value) in [
        ("flask", FLASK),
        ("starlette", STARLETTE),
        ("django", DJANGO),
    ] {
        let out = seen(value);
        assert_eq!(out["format"], format);
        assert_eq!(out["issued_at"], 1_700_000_000u64);
        assert_eq!(out["payload"]["user_id"], 42);
        assert_eq!(out["verified"], false);
        assert_eq!(out["compressed"], false);
    }
    let compressed = ".eJwVizEOgDAMA__iuQtrvoIY0jYBCaiqlK3q30k8nOSTPdFNdIAmvkteAaGy3Uh4uJ3ud0jzpoYjoYr0mHIgBwpoW56EMkz9zblg_ZfVGp8:1r31eq:7eH1pshmpIbJlce2O8KT-to50b6Y1zx0UdACFJzczE4";
    let out = seen(compressed);
    assert_eq!(
        (out["format"].as_str(), out["compressed"].as_bool()),
        (Some("django"), Some(true))
    );
    assert_eq!(out["payload"]["csrf"], "abc");
    // Junk is still refused.
    let err = failed(&keepsake(&["decode", "eyJ1c2VyX2lkIjo0Mn0"]), 1);
    assert!(
        err.contains("nor a Flask, Starlette or Django session cookie"),
        "{err}"
    );
}

#[test]
fn usage_errors_exit_2() {
    let ttl = keepsake(&[
        "sign",
        "--format",
        "flask",
        "--secret-env",
        "FW_KEY",
        "--ttl",
        "5",
        "--json",
        "{}",
    ]);
    assert!(failed(&ttl, 2).contains("--ttl"));
    let max_age = keepsake(&[
        "verify",
        "--name",
        "n",
        "--secret-env",
        "FW_KEY",
        "--max-age",
        "5",
        "s1.x.y",
    ]);
    assert!(failed(&max_age, 2).contains("--max-age"));
    let empty = keepsake(&[
        "sign",
        "--format",
        "django",
        "--secret-env",
        "FW_EMPTY",
        "--json",
        "{}",
    ]);
    assert!(failed(&empty, 2).contains("empty"));
    let unset = keepsake(&[
        "verify",
        "--format",
        "starlette",
        "--secret-env",
        "FW_UNSET",
        STARLETTE,
    ]);
    assert!(failed(&unset, 2).contains("FW_UNSET"));
    let not_object = sign("flask", "[1, 2]");
    assert!(failed(&not_object, 2).contains("not a JSON object"));
    let bad_tag = sign("flask", r#"{"t": {" t": 5}}"#);
    failed(&bad_tag, 2);
    // For Starlette the same JSON is plain JSON, not a tag.
    let plain = ok(&sign("starlette", r#"{"t": {" t": 5}}"#));
    assert_eq!(
        ok(&verify("starlette", NOW, &plain, &[])),
        r#"{"t": {" t": 5}}"#
    );
}

/// `decode` prints one line of valid JSON even for a session holding `NaN`
/// or an infinite float (as strings); `verify` prints the framework's own
/// form.
#[test]
fn decode_writes_non_finite_floats_as_valid_json() {
    use keepsake::codec::interop::{Framework, InteropCodec};
    // As Python writes it (`sign --json` takes strict JSON).
    let session = r#"{"a":NaN,"b":[Infinity,-Infinity],"c":1.5}"#;
    for framework in Framework::ALL {
        let format = framework.as_str();
        let codec = InteropCodec::new(framework, KEY);
        let cookie = codec
            .encode(&codec.deserialize(session).unwrap(), 1_700_000_000)
            .unwrap();
        let line = ok(&keepsake(&["decode", &cookie]));
        let out: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{format}: {line}: {e}"));
        assert_eq!(
            out["payload"],
            serde_json::json!({"a": "NaN", "b": ["Infinity", "-Infinity"], "c": 1.5}),
            "{format}"
        );
        let verified = ok(&keepsake(&[
            "verify",
            "--format",
            format,
            "--secret-env",
            "FW_KEY",
            "--now",
            NOW,
            &cookie,
        ]));
        assert!(
            verified.contains("NaN") && verified.contains("-Infinity"),
            "{verified}"
        );
    }
}

/// `--fallback-env VAR` holds the app's old keys separated by commas, as
/// `--help` says: each is tried. It was read as one key, commas included.
#[test]
fn fallback_env_is_a_comma_separated_list() {
    let old_flask = "eyJ1c2VyX2lkIjo3fQ.ZVPxAA.M5uknbKwnV1_gsgn9S29c_pZiAI";
    let old_django = "eyJ1c2VyX2lkIjo3fQ:1r31eq:Al5uanmhknsZyNrOMhJMhy0ze4yN0jLgAzg2xCmCWTg";
    for (format, value) in [("flask", old_flask), ("django", old_django)] {
        for list in [
            format!("some-other-key,{OLD_KEY}"),
            format!("{OLD_KEY},some-other-key"),
        ] {
            let out = Command::new(env!("CARGO_BIN_EXE_keepsake"))
                .args(["verify", "--format", format, "--secret-env", "FW_KEY"])
                .args(["--fallback-env", "FW_LIST", "--now", NOW, value])
                .env("FW_KEY", KEY)
                .env("FW_LIST", &list)
                .output()
                .unwrap();
            assert_eq!(ok(&out), r#"{"user_id":7}"#, "{format} {list}");
            assert_eq!(text(&out.stderr), "stale-key\n");
        }
    }
}

/// Empty entries of a `--fallback-env` list (a trailing comma, an empty
/// variable) are no keys: a cookie signed with the empty key (made by
/// itsdangerous' own signer) never verifies.
#[test]
fn empty_fallback_entries_are_no_keys() {
    let old_flask = "eyJ1c2VyX2lkIjo3fQ.ZVPxAA.M5uknbKwnV1_gsgn9S29c_pZiAI";
    let empty_signed = "eyJ1c2VyIjoiYWRtaW4ifQ.ZVPxAA.iwrEqxa_Zgt43vl1t5AeGnUXqcA";
    for list in [
        format!("{OLD_KEY},"),
        format!(",{OLD_KEY}"),
        format!("{OLD_KEY},,"),
    ] {
        let run = |value: &str| {
            Command::new(env!("CARGO_BIN_EXE_keepsake"))
                .args(["verify", "--format", "flask", "--secret-env", "FW_KEY"])
                .args(["--fallback-env", "FW_LIST", "--now", NOW, value])
                .env("FW_KEY", KEY)
                .env("FW_LIST", &list)
                .output()
                .unwrap()
        };
        assert_eq!(ok(&run(old_flask)), r#"{"user_id":7}"#, "{list}");
        let err = failed(&run(empty_signed), 1);
        assert!(err.contains("does not verify"), "{list}: {err}");
    }
    // An empty variable holds no keys, as KEEPSAKE_SECRET_FALLBACKS.
    let out = verify("flask", NOW, empty_signed, &["--fallback-env", "FW_EMPTY"]);
    assert!(failed(&out, 1).contains("does not verify"));
    let out = verify("flask", NOW, FLASK, &["--fallback-env", "FW_EMPTY"]);
    assert_eq!(ok(&out), r#"{"user_id":42}"#);
}

/// `--salt` signs and verifies with another salt: a Flask app with
/// `session_interface.salt = "my-app-salt"` made this cookie (Flask 3.1.3,
/// `{"user_id": 42}` at NOW under KEY), and Django's database backend
/// signs with the salt `django.contrib.sessions.SessionStore`.
#[test]
fn salt_signs_and_verifies_with_the_apps_salt() {
    let flask_salted = "eyJ1c2VyX2lkIjo0Mn0.ZVPxAA.mdA86yqZKIu7RHhabaCrk6VyNuA";
    let django_salted = "eyJ1c2VyX2lkIjo0Mn0:1r31eq:JStUbMvXVS1l2qOmwphebxDWypna63Qlwd_qO8b-xFI";
    for (format, salt, value) in [
        ("flask", "my-app-salt", flask_salted),
        (
            "django",
            "django.contrib.sessions.SessionStore",
            django_salted,
        ),
    ] {
        let signed = keepsake(&[
            "sign",
            "--format",
            format,
            "--secret-env",
            "FW_KEY",
            "--now",
            NOW,
            "--salt",
            salt,
            "--json",
            r#"{"user_id": 42}"#,
        ]);
        assert_eq!(ok(&signed), value, "{format}");
        let out = verify(format, NOW, value, &["--salt", salt]);
        assert_eq!(ok(&out), r#"{"user_id":42}"#, "{format}");
        // Without it, the default salt does not verify it.
        failed(&verify(format, NOW, value, &[]), 1);
    }
    // keepsake's own formats have no salt.
    let out = keepsake(&[
        "verify",
        "--name",
        "n",
        "--secret-env",
        "FW_KEY",
        "--salt",
        "x",
        "s1.x.y",
    ]);
    assert!(failed(&out, 2).contains("--salt"));
}
