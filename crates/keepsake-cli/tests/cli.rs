//! End-to-end tests of the `keepsake` binary: exit statuses, stdout and
//! stderr, run as a separate process.

use std::{
    io::Write as _,
    process::{Command, Output},
};

use keepsake::{
    codec::{Claims, Codec},
    key::{Key, KeyRing},
    store::{Id, Record},
};

/// Base64 of the bytes 0, 1, …, 31.
const SECRET: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// The same bytes in unpadded URL-safe base64.
const SECRET_URL_SAFE: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
/// Another valid secret (the bytes 255, 254, …, 224).
const OTHER_SECRET: &str = "//79/Pv6+fj39vX08/Lx8O/u7ezr6uno5+bl5OPi4eA=";
/// A third valid secret (the bytes 37 i + 11 mod 256, i = 0, …, 31).
const THIRD_SECRET: &str = "CzBVep/E6Q4zWH2ix+wRNluApcrvFDleg6jN8hc8YYY=";
/// Variable that holds [`SECRET`] in these tests.
const VAR: &str = "KEEPSAKE_TEST_SECRET";
/// Variable that holds [`OTHER_SECRET`] in these tests.
const OTHER_VAR: &str = "KEEPSAKE_TEST_OTHER";
/// An issue time for the tests.
const NOW: &str = "1700000000";

/// What `sign --name theme --now 1700000000 --ttl 3600 --json '"dark"'`
/// prints with [`SECRET`]; checked against an independent HMAC computation.
const KNOWN_VALUE: &str = "s1.AABlU_EAAABlU_8QImRhcmsi.VnHTJviwpCGqta3LAL_fm-saygmyj4_0kro3UGybVtk";

/// Runs the binary with `args`, with [`VAR`] and [`OTHER_VAR`] set and
/// nothing else keepsake-specific in the environment.
fn keepsake(args: &[&str]) -> Output {
    keepsake_with_env(args, &[])
}

/// Runs the binary with `args` and extra environment variables.
fn keepsake_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keepsake"));
    command
        .args(args)
        .env(VAR, SECRET)
        .env(OTHER_VAR, OTHER_SECRET)
        .env_remove("KEEPSAKE_TEST_UNSET");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("the binary runs")
}

/// Writes `text` to a new file at `path` that only its owner can read (as
/// a secret file should be: others get a warning).
fn write_secret_file(path: &std::path::Path, text: &str) {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

/// The permission bits of `path`.
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("stderr is UTF-8")
}

/// The single line of stdout, checking the command succeeded quietly.
fn ok_line(output: &Output) -> String {
    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(output));
    assert_eq!(stderr(output), "", "no stderr expected");
    let out = stdout(output);
    assert!(out.ends_with('\n'), "{out:?}");
    assert_eq!(out.lines().count(), 1, "{out:?}");
    out.trim_end().to_owned()
}

/// Checks the command failed with `code`, nothing on stdout, and exactly one
/// `keepsake: ` line on stderr; returns that line.
fn failure(output: &Output, code: i32) -> String {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {} stderr: {}",
        stdout(output),
        stderr(output)
    );
    assert_eq!(stdout(output), "", "no stdout expected");
    let err = stderr(output);
    assert_eq!(err.lines().count(), 1, "one stderr line expected: {err:?}");
    assert!(err.starts_with("keepsake: "), "{err:?}");
    err.trim_end().to_owned()
}

/// Checks a clap usage error: status 2, nothing on stdout, something on stderr.
fn usage_error(output: &Output) -> String {
    assert_eq!(
        output.status.code(),
        Some(2),
        "stdout: {} stderr: {}",
        stdout(output),
        stderr(output)
    );
    assert_eq!(stdout(output), "");
    let err = stderr(output);
    assert!(!err.is_empty());
    err
}

/// Signs `json` for cookie `name` with [`VAR`] and extra arguments.
fn sign(name: &str, json: &str, extra: &[&str]) -> String {
    let mut args = vec!["sign", "--name", name, "--secret-env", VAR, "--json", json];
    args.extend_from_slice(extra);
    ok_line(&keepsake(&args))
}

/// Runs `verify` of `value` for cookie `name` with [`VAR`] and extra arguments.
fn verify(name: &str, value: &str, extra: &[&str]) -> Output {
    let mut args = vec!["verify", "--name", name, "--secret-env", VAR];
    args.extend_from_slice(extra);
    args.push(value);
    keepsake(&args)
}

#[test]
fn keygen_prints_32_random_bytes() {
    let first = ok_line(&keepsake(&["keygen"]));
    let second = ok_line(&keepsake(&["keygen"]));
    for line in [&first, &second] {
        // 32 bytes in standard padded base64 are 44 characters ending in `=`.
        assert_eq!(line.len(), 44, "{line}");
        assert!(line.ends_with('=') && !line.contains(['-', '_']), "{line}");
        assert_eq!(Key::from_base64(line).unwrap().len(), 32, "{line}");
    }
    assert_ne!(first, second);
}

#[test]
fn keygen_output_is_a_usable_secret() {
    let secret = ok_line(&keepsake(&["keygen"]));
    let env = [("KEEPSAKE_TEST_FRESH", secret.as_str())];
    let signed = keepsake_with_env(
        &[
            "sign",
            "--name",
            "n",
            "--secret-env",
            "KEEPSAKE_TEST_FRESH",
            "--json",
            "1",
        ],
        &env,
    );
    let value = ok_line(&signed);
    let verified = keepsake_with_env(
        &[
            "verify",
            "--name",
            "n",
            "--secret-env",
            "KEEPSAKE_TEST_FRESH",
            &value,
        ],
        &env,
    );
    assert_eq!(ok_line(&verified), "1");
}

#[test]
fn known_answer() {
    let value = sign("theme", r#""dark""#, &["--now", NOW, "--ttl", "3600"]);
    assert_eq!(value, KNOWN_VALUE);
    // Signing is deterministic.
    assert_eq!(
        sign("theme", r#""dark""#, &["--now", NOW, "--ttl", "3600"]),
        KNOWN_VALUE
    );
    let out = verify("theme", KNOWN_VALUE, &["--now", "1700000001"]);
    assert_eq!(ok_line(&out), r#""dark""#);
}

#[test]
fn round_trips_in_every_format_and_namespace() {
    let json = r#"{"user":"ada","roles":["admin"],"n":3,"ok":true,"none":null}"#;
    let expected: serde_json::Value = serde_json::from_str(json).unwrap();
    for format in ["signed", "sealed"] {
        for namespace in ["local", "shared"] {
            let flags = ["--format", format, "--namespace", namespace];
            let value = sign("session", json, &flags);
            let prefix = if format == "signed" { "s1." } else { "e1." };
            assert!(value.starts_with(prefix), "{value}");
            let printed = ok_line(&verify("session", &value, &flags));
            let printed: serde_json::Value = serde_json::from_str(&printed).unwrap();
            assert_eq!(printed, expected, "{format} {namespace}");
        }
    }
}

#[test]
fn defaults_are_signed_and_local() {
    let value = sign("n", "[1,2]", &[]);
    assert!(value.starts_with("s1."));
    let explicit = ["--format", "signed", "--namespace", "local"];
    assert_eq!(ok_line(&verify("n", &value, &explicit)), "[1,2]");
    failure(&verify("n", &value, &["--namespace", "shared"]), 1);
}

#[test]
fn payload_is_printed_compact() {
    let value = sign("n", "{ \"a\" : [ 1 , 2 ] ,\n \"b\" : \"x y\" }", &[]);
    assert_eq!(
        ok_line(&verify("n", &value, &[])),
        r#"{"a":[1,2],"b":"x y"}"#
    );
}

#[test]
fn sealed_values_differ_each_time_and_hide_the_payload() {
    let first = sign("n", r#""secret-text""#, &["--format", "sealed"]);
    let second = sign("n", r#""secret-text""#, &["--format", "sealed"]);
    assert_ne!(first, second);
    let decoded = ok_line(&keepsake(&["decode", &first]));
    assert!(!decoded.contains("secret-text"), "{decoded}");
}

#[test]
fn wrong_name_namespace_format_key_or_app_is_refused() {
    for format in ["signed", "sealed"] {
        let value = sign("theme", r#""dark""#, &["--format", format]);
        let f = ["--format", format];

        let err = failure(&verify("other", &value, &f), 1);
        assert!(err.contains("does not verify"), "{err}");

        let shared = ["--format", format, "--namespace", "shared"];
        failure(&verify("theme", &value, &shared), 1);

        let app = ["--format", format, "--app", "shop"];
        failure(&verify("theme", &value, &app), 1);

        let other_key = keepsake(&[
            "verify",
            "--name",
            "theme",
            "--secret-env",
            OTHER_VAR,
            "--format",
            format,
            &value,
        ]);
        let err = failure(&other_key, 1);
        assert!(err.contains("does not verify"), "{err}");

        // Read as the other format, the value is malformed, and the
        // message says which --format it looks like.
        let wrong_format = if format == "signed" {
            "sealed"
        } else {
            "signed"
        };
        let err = failure(&verify("theme", &value, &["--format", wrong_format]), 1);
        assert!(err.contains("malformed"), "{err}");
        let prefix = if format == "signed" { "s1." } else { "e1." };
        assert!(
            err.ends_with(&format!(
                "; it looks like a {format} value (it starts with `{prefix}`): verify it with --format {format}"
            )),
            "{err}"
        );
    }
}

#[test]
fn a_sealed_value_verified_as_signed_gets_a_format_hint() {
    // The default --format is signed.
    let sealed = sign("n", "1", &["--format", "sealed"]);
    assert!(sealed.starts_with("e1."), "{sealed}");
    let err = failure(&verify("n", &sealed, &[]), 1);
    assert_eq!(
        err,
        "keepsake: the value is malformed (not a keepsake value of the expected format); \
         it looks like a sealed value (it starts with `e1.`): verify it with --format sealed"
    );
    // Values that are not keepsake values of any format get no hint, nor do
    // values of the right format that fail for another reason.
    for junk in ["hello", "x1.AAAA.AAAA", "s1.AAAA.AAAA"] {
        let err = failure(&verify("n", junk, &[]), 1);
        assert!(!err.contains("--format"), "{junk}: {err}");
    }
    // A Flask session cookie gets the framework's --format.
    let flask = sign("session", r#"{"user":"ada"}"#, &["--format", "flask"]);
    let err = failure(&verify("session", &flask, &[]), 1);
    assert!(
        err.ends_with("; it looks like a flask session cookie: verify it with --format flask"),
        "{err}"
    );
    let signed = sign("n", "1", &[]);
    let err = failure(&verify("other", &signed, &[]), 1);
    assert!(
        err.contains("does not verify") && !err.contains("--format"),
        "{err}"
    );
}

#[test]
fn tampered_values_are_refused() {
    let value = sign("n", r#"{"admin":false}"#, &[]);
    let (data, tag) = value.rsplit_once('.').unwrap();
    // Flip one character of the tag.
    let mut tag = tag.to_owned();
    let first = if tag.starts_with('A') { "Q" } else { "A" };
    tag.replace_range(0..1, first);
    failure(&verify("n", &format!("{data}.{tag}"), &[]), 1);
    for junk in [
        "",
        "hello",
        "-hello",
        "s1.",
        "s1.AAAA.AAAA",
        &format!("{value}x"),
    ] {
        failure(&verify("n", junk, &[]), 1);
    }
    let err = failure(&verify("n", "s7.AAAA.AAAA", &[]), 1);
    assert!(err.contains("version 7"), "{err}");
    let huge = format!("s1.{}", "A".repeat(5000));
    let err = failure(&verify("n", &huge, &[]), 1);
    assert!(err.contains("longer than any cookie"), "{err}");
}

#[test]
fn app_label_separates_local_values_only() {
    let local = sign("n", "1", &["--app", "billing"]);
    assert_eq!(ok_line(&verify("n", &local, &["--app", "billing"])), "1");
    failure(&verify("n", &local, &["--app", "shop"]), 1);
    failure(&verify("n", &local, &[]), 1);

    let shared = sign("n", "2", &["--app", "billing", "--namespace", "shared"]);
    let shop = ["--app", "shop", "--namespace", "shared"];
    assert_eq!(ok_line(&verify("n", &shared, &shop)), "2");
}

#[test]
fn fallback_key_verifies_and_reports_stale_key() {
    for format in ["signed", "sealed"] {
        // Made with the old key (SECRET)...
        let value = sign("n", r#""old""#, &["--format", format]);
        // ...read with a new current key and the old one as a fallback.
        let out = keepsake(&[
            "verify",
            "--name",
            "n",
            "--secret-env",
            OTHER_VAR,
            "--fallback-env",
            VAR,
            "--format",
            format,
            &value,
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert_eq!(stdout(&out), "\"old\"\n");
        assert_eq!(stderr(&out), "stale-key\n");

        // Under the current key: no stale-key line.
        assert_eq!(
            ok_line(&verify("n", &value, &["--format", format])),
            r#""old""#
        );
    }
}

#[test]
fn fallbacks_from_env_and_files_in_any_number() {
    let value = sign("n", "7", &[]);
    let dir = tempfile::tempdir().unwrap();
    let other_file = dir.path().join("other");
    write_secret_file(&other_file, &format!("{THIRD_SECRET}\n"));
    let old_file = dir.path().join("old");
    write_secret_file(&old_file, &format!("{SECRET}\n"));

    let fresh = ok_line(&keepsake(&["keygen"]));
    let env = [("KEEPSAKE_TEST_FRESH", fresh.as_str())];
    let out = keepsake_with_env(
        &[
            "verify",
            "--name",
            "n",
            "--secret-env",
            "KEEPSAKE_TEST_FRESH",
            "--fallback-env",
            OTHER_VAR,
            "--fallback-file",
            other_file.to_str().unwrap(),
            "--fallback-file",
            old_file.to_str().unwrap(),
            &value,
        ],
        &env,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "7\n");
    assert_eq!(stderr(&out), "stale-key\n");

    // Without the right fallback, it does not verify.
    let out = keepsake_with_env(
        &[
            "verify",
            "--name",
            "n",
            "--secret-env",
            "KEEPSAKE_TEST_FRESH",
            "--fallback-env",
            OTHER_VAR,
            &value,
        ],
        &env,
    );
    failure(&out, 1);
}

#[test]
fn fallback_env_takes_a_comma_separated_list_as_the_library_reads_it() {
    let value = sign("n", "7", &[]); // made with SECRET
    let fresh = ok_line(&keepsake(&["keygen"]));
    let verify_with = |fallbacks: &str| {
        keepsake_with_env(
            &[
                "verify",
                "--name",
                "n",
                "--secret-env",
                "KEEPSAKE_TEST_FRESH",
                "--fallback-env",
                "KEEPSAKE_TEST_FALLBACKS",
                &value,
            ],
            &[
                ("KEEPSAKE_TEST_FRESH", fresh.as_str()),
                ("KEEPSAKE_TEST_FALLBACKS", fallbacks),
            ],
        )
    };
    // The old key anywhere in the list, with spaces and blank entries.
    for list in [
        SECRET.to_owned(),
        format!("{OTHER_SECRET},{SECRET}"),
        format!(" {OTHER_SECRET} , ,{SECRET_URL_SAFE} ,"),
    ] {
        let out = verify_with(&list);
        assert_eq!(out.status.code(), Some(0), "{list}: {}", stderr(&out));
        assert_eq!(stdout(&out), "7\n");
        assert_eq!(stderr(&out), "stale-key\n");
    }
    // The list the library reads is what `keepsake verify` reads.
    let ring = KeyRing::from_env_with(|name| match name {
        "KEEPSAKE_SECRET" => Ok(fresh.clone()),
        "KEEPSAKE_SECRET_FALLBACKS" => Ok(format!("{OTHER_SECRET},{SECRET}")),
        _ => Err(std::env::VarError::NotPresent),
    })
    .unwrap();
    assert_eq!(ring.fallbacks().len(), 2);

    // An empty list holds no keys (as an app reads it): the value does not verify.
    failure(&verify_with(""), 1);
    // Without the old key, it does not verify.
    failure(&verify_with(OTHER_SECRET), 1);
    // A bad key is named by its place in the list, never shown.
    let err = failure(&verify_with(&format!("{OTHER_SECRET},hunter2")), 2);
    assert!(
        err.starts_with(
            "keepsake: --fallback-env: key 2 in the environment variable \
             KEEPSAKE_TEST_FALLBACKS is not a valid secret: the secret is not valid base64"
        ),
        "{err}"
    );
    assert!(err.contains("keepsake keygen"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn expiry_from_now_and_ttl() {
    for format in ["signed", "sealed"] {
        let value = sign(
            "n",
            "true",
            &["--format", format, "--now", NOW, "--ttl", "60"],
        );
        let at = |time: &str| verify("n", &value, &["--format", format, "--now", time]);
        assert_eq!(ok_line(&at("1700000000")), "true");
        assert_eq!(ok_line(&at("1700000059")), "true");
        let err = failure(&at("1700000060"), 1);
        assert_eq!(
            err,
            "keepsake: the value expired at 1700000060 (Unix seconds)"
        );
        failure(&at("1800000000"), 1);
        // Checked against the system clock by default: long expired.
        failure(&verify("n", &value, &["--format", format]), 1);
    }
}

/// `--ttl 0` would make a value that expired as it was issued: refused.
#[test]
fn ttl_0_is_refused() {
    for format in ["signed", "sealed"] {
        let err = usage_error(&keepsake(&[
            "sign",
            "--name",
            "n",
            "--secret-env",
            VAR,
            "--format",
            format,
            "--ttl",
            "0",
            "--json",
            "1",
        ]));
        assert!(err.contains("--ttl"), "{err}");
        assert!(err.contains("already expired"), "{err}");
        assert!(err.contains("omit --ttl"), "{err}");
    }
    // 1 second is the shortest.
    let value = sign("n", "1", &["--now", NOW, "--ttl", "1"]);
    assert_eq!(ok_line(&verify("n", &value, &["--now", NOW])), "1");
    failure(&verify("n", &value, &["--now", "1700000001"]), 1);
}

#[test]
fn no_ttl_means_no_expiry() {
    let value = sign("n", "1", &["--now", "1"]);
    assert_eq!(ok_line(&verify("n", &value, &[])), "1");
    assert_eq!(
        ok_line(&verify("n", &value, &["--now", "281474976710655"])),
        "1"
    );
}

#[test]
fn default_issue_time_is_the_system_clock() {
    let before = keepsake::codec::unix_now();
    let value = sign("n", "1", &["--ttl", "100"]);
    let after = keepsake::codec::unix_now();
    let decoded: serde_json::Value =
        serde_json::from_str(&ok_line(&keepsake(&["decode", &value]))).unwrap();
    let issued_at = decoded["issued_at"].as_u64().unwrap();
    assert!((before..=after).contains(&issued_at), "{decoded}");
    assert_eq!(decoded["expires_at"].as_u64(), Some(issued_at + 100));
}

#[test]
fn secret_file_with_newline_and_url_safe_alphabet() {
    let dir = tempfile::tempdir().unwrap();
    for (i, text) in [
        format!("{SECRET}\n"),
        format!("{SECRET_URL_SAFE}\n"),
        format!("  {SECRET_URL_SAFE}\r\n\n"),
        SECRET.to_owned(),
    ]
    .iter()
    .enumerate()
    {
        let path = dir.path().join(format!("secret{i}"));
        write_secret_file(&path, text);
        let path = path.to_str().unwrap();

        // The same key as SECRET: the known answer comes out.
        let out = keepsake(&[
            "sign",
            "--name",
            "theme",
            "--secret-file",
            path,
            "--now",
            NOW,
            "--ttl",
            "3600",
            "--json",
            r#""dark""#,
        ]);
        assert_eq!(ok_line(&out), KNOWN_VALUE, "{text:?}");
        let out = keepsake(&[
            "verify",
            "--name",
            "theme",
            "--secret-file",
            path,
            "--now",
            NOW,
            KNOWN_VALUE,
        ]);
        assert_eq!(ok_line(&out), r#""dark""#);
    }
}

#[test]
fn url_safe_secret_in_env() {
    let env = [("KEEPSAKE_TEST_URL", SECRET_URL_SAFE)];
    let out = keepsake_with_env(
        &[
            "sign",
            "--name",
            "theme",
            "--secret-env",
            "KEEPSAKE_TEST_URL",
            "--now",
            NOW,
            "--ttl",
            "3600",
            "--json",
            r#""dark""#,
        ],
        &env,
    );
    assert_eq!(ok_line(&out), KNOWN_VALUE);
}

#[test]
fn usage_errors_exit_2() {
    // Missing --name.
    let err = usage_error(&keepsake(&["sign", "--secret-env", VAR, "--json", "1"]));
    assert!(err.contains("--name"), "{err}");
    usage_error(&keepsake(&["verify", "--secret-env", VAR, KNOWN_VALUE]));
    // Missing value.
    usage_error(&keepsake(&["verify", "--name", "n", "--secret-env", VAR]));
    // Neither or both secret sources.
    usage_error(&keepsake(&["sign", "--name", "n", "--json", "1"]));
    let err = usage_error(&keepsake(&[
        "sign",
        "--name",
        "n",
        "--secret-env",
        VAR,
        "--secret-file",
        "/dev/null",
        "--json",
        "1",
    ]));
    assert!(err.contains("--secret-file"), "{err}");
    // Invalid JSON, missing JSON.
    for json in ["{", "dark", "{'a':1}", "", "1 2"] {
        let err = usage_error(&keepsake(&[
            "sign",
            "--name",
            "n",
            "--secret-env",
            VAR,
            "--json",
            json,
        ]));
        assert!(err.contains("JSON"), "{json:?}: {err}");
    }
    usage_error(&keepsake(&["sign", "--name", "n", "--secret-env", VAR]));
    // Unknown format or namespace.
    let err = usage_error(&keepsake(&[
        "sign",
        "--name",
        "n",
        "--secret-env",
        VAR,
        "--format",
        "plain",
        "--json",
        "1",
    ]));
    assert!(err.contains("plain"), "{err}");
    usage_error(&keepsake(&[
        "verify",
        "--name",
        "n",
        "--secret-env",
        VAR,
        "--namespace",
        "global",
        KNOWN_VALUE,
    ]));
    // Bad numbers.
    usage_error(&keepsake(&[
        "sign",
        "--name",
        "n",
        "--secret-env",
        VAR,
        "--ttl",
        "-1",
        "--json",
        "1",
    ]));
    usage_error(&keepsake(&[
        "verify",
        "--name",
        "n",
        "--secret-env",
        VAR,
        "--now",
        "soon",
        KNOWN_VALUE,
    ]));
    // No or unknown command, unknown flag, secret on the command line.
    usage_error(&keepsake(&[]));
    usage_error(&keepsake(&["frobnicate"]));
    usage_error(&keepsake(&["keygen", "--bits", "128"]));
    usage_error(&keepsake(&[
        "sign", "--name", "n", "--secret", SECRET, "--json", "1",
    ]));
    // sign takes no fallbacks.
    usage_error(&keepsake(&[
        "sign",
        "--name",
        "n",
        "--secret-env",
        VAR,
        "--fallback-env",
        OTHER_VAR,
        "--json",
        "1",
    ]));
}

#[test]
fn bad_secrets_are_configuration_errors() {
    let cases: [(&str, Option<&str>, &str); 8] = [
        ("KEEPSAKE_TEST_UNSET", None, "is not set"),
        (
            "KEEPSAKE_TEST_SHORT",
            Some("AAECAwQFBgcICQoLDA0ODw=="),
            "16 bytes",
        ),
        ("KEEPSAKE_TEST_EMPTY", Some(""), "0 bytes"),
        ("KEEPSAKE_TEST_BAD", Some("not base64!"), "not valid base64"),
        (
            "KEEPSAKE_TEST_MIXED",
            Some("+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+_8"),
            "not valid base64",
        ),
        // Long enough, but not random bytes.
        (
            "KEEPSAKE_TEST_ZEROS",
            Some("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
            "looks like a placeholder or a passphrase, not random bytes",
        ),
        (
            "KEEPSAKE_TEST_CHANGEME",
            Some("changemechangemechangemechangemechangemechangeme"),
            "looks like a placeholder or a passphrase, not random bytes",
        ),
        (
            "KEEPSAKE_TEST_PASSPHRASE",
            Some("correcthorsebatterystaplecorrecthorsebattery"),
            "looks like a placeholder or a passphrase, not random bytes",
        ),
    ];
    for (var, value, reason) in cases {
        let env: Vec<(&str, &str)> = value.map(|v| (var, v)).into_iter().collect();
        let mut commands = vec![
            vec!["sign", "--name", "n", "--secret-env", var, "--json", "1"],
            vec!["verify", "--name", "n", "--secret-env", var, KNOWN_VALUE],
        ];
        // An empty fallback list is no keys, not a bad key (see
        // `fallback_env_takes_a_comma_separated_list_as_the_library_reads_it`).
        if value != Some("") {
            commands.push(vec![
                "verify",
                "--name",
                "n",
                "--secret-env",
                VAR,
                "--fallback-env",
                var,
                KNOWN_VALUE,
            ]);
        }
        for args in commands {
            let err = failure(&keepsake_with_env(&args, &env), 2);
            assert!(err.contains(var), "{err}");
            assert!(err.contains(reason), "{err}");
            assert!(err.contains("keepsake keygen"), "says how to fix it: {err}");
        }
    }
}

#[test]
fn line_wrapped_secrets_are_read() {
    // 64 bytes as `openssl rand -base64 64` prints them: wrapped at 64
    // columns.
    let bytes: Vec<u8> = (0u8..64).map(|i| i.wrapping_mul(101) ^ 0x3c).collect();
    let key = Key::from_bytes(&bytes).unwrap();
    let text = key.to_base64();
    let wrapped = format!("{}\n{}\n", &text[..64], &text[64..]);
    let value = Codec::signed(KeyRing::new(key))
        .encode("n", b"1", Claims::new(1_700_000_000))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wrapped");
    write_secret_file(&path, &wrapped);
    let env = [("KEEPSAKE_TEST_WRAPPED", wrapped.as_str())];
    for source in [
        ["--secret-env", "KEEPSAKE_TEST_WRAPPED"],
        ["--secret-file", path.to_str().unwrap()],
    ] {
        let mut args = vec!["verify", "--name", "n", "--now", NOW];
        args.extend(source);
        args.push(&value);
        assert_eq!(ok_line(&keepsake_with_env(&args, &env)), "1", "{source:?}");
    }
}

#[test]
fn keygen_out_writes_a_private_file_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.secret");
    let out = keepsake(&["keygen", "--out", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // The secret goes to the file only.
    assert_eq!(stdout(&out), "");
    assert_eq!(stderr(&out), "");
    assert_eq!(mode(&path), 0o600);
    let written = std::fs::read_to_string(&path).unwrap();
    assert!(
        written.ends_with('\n') && written.lines().count() == 1,
        "{written:?}"
    );
    assert_eq!(Key::from_base64(&written).unwrap().len(), 32);

    // The file is a secret file as --secret-file reads it, with no warning.
    let value = ok_line(&keepsake(&[
        "sign",
        "--name",
        "n",
        "--secret-file",
        path.to_str().unwrap(),
        "--json",
        "1",
    ]));
    let key = Key::from_base64(&written).unwrap();
    assert!(
        Codec::signed(KeyRing::new(key))
            .decode("n", &value, u64::MAX / 2)
            .is_ok()
    );

    // An existing file is never overwritten, whatever it holds.
    for existing in [path, dir.path().join("empty")] {
        std::fs::write(dir.path().join("empty"), "").unwrap();
        let before = std::fs::read(&existing).unwrap();
        let err = failure(
            &keepsake(&["keygen", "--out", existing.to_str().unwrap()]),
            2,
        );
        assert!(err.contains(existing.to_str().unwrap()), "{err}");
        assert!(err.contains("already exists"), "{err}");
        assert!(err.contains("never overwrites"), "{err}");
        assert_eq!(std::fs::read(&existing).unwrap(), before);
    }
    // A file that cannot be made: one line naming it.
    let nowhere = dir.path().join("no/such/dir/s");
    let err = failure(
        &keepsake(&["keygen", "--out", nowhere.to_str().unwrap()]),
        2,
    );
    assert!(err.contains("cannot create the secret file"), "{err}");
}

#[test]
fn secret_files_others_can_read_get_a_warning() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret");
    write_secret_file(&path, &format!("{SECRET}\n"));
    let shown = path.to_str().unwrap();
    for (bits, warning) in [
        (0o600, None),
        (0o400, None),
        (0o644, Some("readable by other users (mode 0644)")),
        (0o640, Some("readable by other users (mode 0640)")),
        (0o604, Some("readable by other users (mode 0604)")),
        (0o620, Some("writable by other users (mode 0620)")),
        (
            0o666,
            Some("readable and writable by other users (mode 0666)"),
        ),
    ] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(bits)).unwrap();
        for flag in ["--secret-file", "--fallback-file"] {
            let mut args = vec!["verify", "--name", "theme", "--now", NOW];
            args.extend(match flag {
                "--secret-file" => ["--secret-file", shown],
                _ => ["--secret-env", OTHER_VAR],
            });
            if flag == "--fallback-file" {
                args.extend(["--fallback-file", shown]);
            }
            args.push(KNOWN_VALUE);
            let out = keepsake(&args);
            // The warning never stops the command.
            assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
            assert_eq!(stdout(&out), "\"dark\"\n");
            let err = stderr(&out);
            let err = err.strip_suffix("stale-key\n").unwrap_or(&err);
            match warning {
                None => assert_eq!(err, "", "{bits:o}"),
                Some(warning) => assert_eq!(
                    err,
                    format!("keepsake: warning: {flag} {shown} is {warning}; `chmod 600` it\n"),
                    "{bits:o}"
                ),
            }
        }
    }
    // A refused secret gets its error alone, not the warning too.
    std::fs::write(&path, "AAECAwQFBgcICQoLDA0ODw==\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = failure(
        &keepsake(&["verify", "--name", "n", "--secret-file", shown, KNOWN_VALUE]),
        2,
    );
    assert!(err.contains("16 bytes"), "{err}");
}

#[test]
fn a_fallback_key_equal_to_the_current_one_or_another_is_refused() {
    let value = sign("n", "7", &[]); // made with SECRET, in VAR
    let dir = tempfile::tempdir().unwrap();
    let same_file = dir.path().join("same");
    write_secret_file(&same_file, &format!("{SECRET}\n"));
    let other_file = dir.path().join("other");
    write_secret_file(&other_file, &format!("{OTHER_SECRET}\n"));
    let same = same_file.to_str().unwrap();
    let other = other_file.to_str().unwrap();
    let env = [
        ("KEEPSAKE_TEST_SAME", SECRET),
        (
            "KEEPSAKE_TEST_TWICE",
            &format!("{OTHER_SECRET}, {OTHER_SECRET}"),
        ),
    ];
    let refused = |extra: &[&str], expected: &str| {
        let mut args = vec!["verify", "--name", "n"];
        args.extend_from_slice(extra);
        args.push(&value);
        let err = failure(&keepsake_with_env(&args, &env), 2);
        assert!(err.starts_with(expected), "{extra:?}: {err}");
        assert!(
            !err.contains(SECRET) && !err.contains(OTHER_SECRET),
            "{err}"
        );
    };
    // The reported case: the same variable twice.
    refused(
        &["--secret-env", VAR, "--fallback-env", VAR],
        &format!(
            "keepsake: --fallback-env {VAR} is also --secret-env: a fallback key must be an older key"
        ),
    );
    // The same file twice.
    refused(
        &["--secret-file", same, "--fallback-file", same],
        &format!("keepsake: --fallback-file {same} is also --secret-file"),
    );
    // The same secret in another variable or file.
    refused(
        &[
            "--secret-env",
            VAR,
            "--fallback-env",
            OTHER_VAR,
            "--fallback-env",
            "KEEPSAKE_TEST_SAME",
        ],
        &format!(
            "keepsake: key 1 in --fallback-env KEEPSAKE_TEST_SAME is the same secret as --secret-env {VAR}: a fallback key must be an older key, not the current one"
        ),
    );
    refused(
        &["--secret-env", VAR, "--fallback-file", same],
        &format!("keepsake: --fallback-file {same} is the same secret as --secret-env {VAR}"),
    );
    refused(
        &[
            "--secret-file",
            same,
            "--fallback-env",
            "KEEPSAKE_TEST_SAME",
        ],
        &format!(
            "keepsake: key 1 in --fallback-env KEEPSAKE_TEST_SAME is the same secret as --secret-file {same}"
        ),
    );
    // One fallback twice, across sources or within a list.
    refused(
        &[
            "--secret-env",
            VAR,
            "--fallback-env",
            OTHER_VAR,
            "--fallback-file",
            other,
        ],
        &format!(
            "keepsake: --fallback-file {other} is the same secret as key 1 in --fallback-env {OTHER_VAR}: give each older key once"
        ),
    );
    refused(
        &["--secret-env", VAR, "--fallback-env", "KEEPSAKE_TEST_TWICE"],
        "keepsake: --fallback-env: key 2 in the environment variable KEEPSAKE_TEST_TWICE is the same secret as key 1 of that list",
    );
    // Framework formats: the same variable or file twice is refused too.
    refused(
        &[
            "--format",
            "flask",
            "--secret-env",
            VAR,
            "--fallback-env",
            VAR,
        ],
        &format!("keepsake: --fallback-env {VAR} is also --secret-env"),
    );
    refused(
        &[
            "--format",
            "django",
            "--secret-file",
            same,
            "--fallback-file",
            same,
        ],
        &format!("keepsake: --fallback-file {same} is also --secret-file"),
    );
    // Distinct keys: fine.
    let out = keepsake_with_env(
        &[
            "verify",
            "--name",
            "n",
            "--secret-env",
            OTHER_VAR,
            "--fallback-file",
            same,
            &value,
        ],
        &env,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "stale-key\n");
}

#[test]
fn bad_secret_files_are_configuration_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let short = dir.path().join("short");
    std::fs::write(&short, "AAECAwQFBgcICQoLDA0ODw==\n").unwrap();
    let big = dir.path().join("big");
    std::fs::write(&big, "A".repeat(100_000)).unwrap();
    for path in [&missing, &short, &big, &dir.path().to_path_buf()] {
        let path = path.to_str().unwrap();
        for flag in ["--secret-file", "--fallback-file"] {
            let mut args = vec!["verify", "--name", "n"];
            if flag == "--fallback-file" {
                args.extend(["--secret-env", VAR]);
            }
            args.extend([flag, path, KNOWN_VALUE]);
            let err = failure(&keepsake(&args), 2);
            assert!(err.contains(path), "{err}");
            assert!(err.contains(flag), "{err}");
        }
    }
}

#[test]
fn oversized_payload_is_refused() {
    let json = format!("\"{}\"", "x".repeat(4000));
    let out = keepsake(&["sign", "--name", "n", "--secret-env", VAR, "--json", &json]);
    let err = failure(&out, 2);
    assert!(err.contains("4096"), "{err}");
}

/// A client-side session cookie holds its record in a compact binary
/// layout; `verify` and `decode` show the record as JSON.
#[test]
fn a_session_record_payload_shows_as_its_json() {
    let key = Key::from_base64(SECRET).unwrap();
    let id = Id::from_bytes([7; 16]);
    let mut record = Record::new(id, 1_000, None, 3_600);
    record.data.insert("count".into(), 3.into());
    let value = Codec::signed(KeyRing::new(key))
        .encode("session", &record.to_cookie_payload(), Claims::new(1_000))
        .unwrap();
    let json = serde_json::to_value(&record).unwrap();
    let verified: serde_json::Value =
        serde_json::from_str(&ok_line(&verify("session", &value, &[]))).unwrap();
    assert_eq!(verified, json);
    let decoded: serde_json::Value =
        serde_json::from_str(&ok_line(&keepsake(&["decode", &value]))).unwrap();
    assert_eq!(decoded["payload"], json);
}

/// A server-side session cookie holds the session's raw 16-byte id, which
/// is not JSON: `verify` prints the id as `keepsake sessions show` takes it,
/// and `decode` shows the same.
#[test]
fn a_session_id_payload_shows_as_the_id() {
    let key = Key::from_base64(SECRET).unwrap();
    // Bytes that are not UTF-8, as most ids are; and one whose text begins
    // with '-'.
    for id in [
        Id::from_bytes([0xff; 16]),
        Id::from_bytes([0xf8; 16]),
        Id::random(),
    ] {
        let expected = serde_json::json!({ "session_id": id.to_string() });
        for codec in [
            Codec::signed(KeyRing::new(key.clone())),
            Codec::sealed(KeyRing::new(key.clone())),
        ] {
            let value = codec
                .encode("session", id.as_bytes(), Claims::new(1_000).with_ttl(60))
                .unwrap();
            let format = if value.starts_with("e1.") {
                "sealed"
            } else {
                "signed"
            };
            let out = ok_line(&verify(
                "session",
                &value,
                &["--format", format, "--now", "1000"],
            ));
            let verified: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(verified, expected, "{out}");
            let shown: Id = verified["session_id"].as_str().unwrap().parse().unwrap();
            assert_eq!(shown, id);
            // Expired, tampered or under another name, it still does not verify.
            failure(
                &verify("session", &value, &["--format", format, "--now", "1060"]),
                1,
            );
            failure(
                &verify("other", &value, &["--format", format, "--now", "1000"]),
                1,
            );
            if format == "signed" {
                let decoded: serde_json::Value =
                    serde_json::from_str(&ok_line(&keepsake(&["decode", &value]))).unwrap();
                assert_eq!(decoded["payload"], expected, "{decoded}");
                assert_eq!(decoded["verified"], false, "{decoded}");
            }
        }
    }
    assert_eq!(
        Id::from_bytes([0xff; 16]).to_string(),
        "_____________________w"
    );
}

/// Once a value verified, its payload is shown whatever it is: a payload
/// that is neither JSON, nor a session id, nor a session record, comes out
/// in base64, with exit status 0.
#[test]
fn a_verified_payload_that_is_not_json_shows_in_base64() {
    let key = Key::from_base64(SECRET).unwrap();
    let codec = Codec::signed(KeyRing::new(key));
    for (payload, base64) in [
        (&b"not json"[..], "bm90IGpzb24="),
        (&[0xff; 15], "////////////////////"),
        (&[0xfe; 17], "/v7+/v7+/v7+/v7+/v7+/v4="),
        (b"{\"a\":1", "eyJhIjox"),
    ] {
        let value = codec.encode("n", payload, Claims::new(1)).unwrap();
        assert_eq!(
            ok_line(&verify("n", &value, &[])),
            format!(r#"{{"base64":"{base64}"}}"#)
        );
    }

    // decode shows text as a string.
    let value = codec.encode("n", b"not json", Claims::new(1)).unwrap();
    let decoded = ok_line(&keepsake(&["decode", &value]));
    assert_eq!(
        decoded,
        r#"{"format":"signed","version":1,"issued_at":1,"expires_at":null,"payload":"not json","verified":false}"#
    );
    // A forged value with such a payload still does not verify.
    let (data, _) = value.rsplit_once('.').unwrap();
    let forged = format!("{data}.{}", "A".repeat(43));
    failure(&verify("n", &forged, &[]), 1);
}

#[test]
fn decode_signed() {
    let out = ok_line(&keepsake(&["decode", KNOWN_VALUE]));
    assert_eq!(
        out,
        r#"{"format":"signed","version":1,"issued_at":1700000000,"expires_at":1700003600,"payload":"dark","verified":false}"#
    );
    let value = sign("n", r#"{"user":{"id":7}}"#, &["--now", "5"]);
    let out = ok_line(&keepsake(&["decode", &value]));
    assert_eq!(
        out,
        r#"{"format":"signed","version":1,"issued_at":5,"expires_at":null,"payload":{"user":{"id":7}},"verified":false}"#
    );
    // Decoding does not check the signature, the name or the expiry.
    let (data, _) = KNOWN_VALUE.rsplit_once('.').unwrap();
    let forged = format!("{data}.{}", "A".repeat(43));
    let out = ok_line(&keepsake(&["decode", &forged]));
    assert!(out.contains(r#""verified":false"#), "{out}");
}

/// A payload is anyone's text (`decode` reads a cookie from anywhere):
/// the JSON printed reads back as the same value, but with what JSON allows
/// raw in strings (DEL, C1 controls, bidi overrides, line separators)
/// escaped as `\uXXXX`, so it cannot drive the terminal or reorder the line.
#[test]
fn verify_and_decode_escape_what_could_drive_a_terminal() {
    let payload = serde_json::json!({ "u": "x\u{202e}gpj.exe\u{9b}31m\u{7f}\u{2028}\u{e0041}" });
    let value = sign("n", &payload.to_string(), &[]);
    let verified = ok_line(&verify("n", &value, &[]));
    assert_eq!(
        verified,
        r#"{"u":"x\u202egpj.exe\u009b31m\u007f\u2028\udb40\udc41"}"#
    );
    let decoded = ok_line(&keepsake(&["decode", &value]));
    for out in [&verified, &decoded] {
        assert!(out.is_ascii(), "{out}");
    }
    let decoded: serde_json::Value = serde_json::from_str(&decoded).expect("decode prints JSON");
    assert_eq!(decoded["payload"], payload);
    // Printable Unicode is shown as it is.
    let value = sign("n", r#""Zoë 山田""#, &[]);
    assert_eq!(ok_line(&verify("n", &value, &[])), r#""Zoë 山田""#);
}

#[test]
fn decode_sealed() {
    let value = sign("n", r#""dark""#, &["--format", "sealed", "--now", NOW]);
    let out = ok_line(&keepsake(&["decode", &value]));
    // 12-byte nonce, 12-byte header, 6-byte payload, 16-byte tag.
    assert_eq!(
        out,
        r#"{"format":"sealed","version":1,"bytes":46,"verified":false}"#
    );
}

#[test]
fn decode_refuses_junk() {
    let too_big = format!("s1.{}", "A".repeat(5000));
    for junk in [
        "",
        "hello",
        // A Flask cookie is recognised (tests/interop.rs); without its signature it is junk.
        "eyJ1c2VyIjoxfQ.ZVPZwA",
        "s1",
        "s1.",
        "s1.AAAA.AAAA",
        "s1.AABlU_EAAABlU_8QImRhcmsi",
        "s1.AABlU_EAAABlU_8QImRhcmsi.short",
        "s1.AABlU_EAAABl.VnHTJviwpCGqta3LAL_fm-saygmyj4_0kro3UGybVtk",
        "s1.AABlU_EAAABlU_8QImRhcmsi!.VnHTJviwpCGqta3LAL_fm-saygmyj4_0kro3UGybVtk",
        "e1.",
        "e1.AAAA",
        "e1.not*base64",
        "s01.AAAA.AAAA",
        // A value may begin with '-': it is a value, not a flag.
        "-hello",
        "-s1.AAAA.AAAA",
        &too_big,
    ] {
        failure(&keepsake(&["decode", junk]), 1);
    }
    let err = failure(&keepsake(&["decode", "e2.AAAA"]), 1);
    assert!(err.contains("version 2"), "{err}");
    let err = failure(&keepsake(&["decode", "hello"]), 1);
    assert!(err.contains("not a keepsake value"), "{err}");
}

#[test]
fn help_and_version_exit_0() {
    for args in [
        &["--help"][..],
        &["-h"],
        &["--version"],
        &["-V"],
        &["help"],
        &["sign", "--help"],
        &["verify", "--help"],
        &["decode", "--help"],
        &["sessions", "show", "--help"],
        &["keygen", "--help"],
        &["help", "verify"],
    ] {
        let out = keepsake(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(!stdout(&out).is_empty(), "{args:?}");
    }
    let version = stdout(&keepsake(&["--version"]));
    assert_eq!(version, format!("keepsake {}\n", env!("CARGO_PKG_VERSION")));
}

#[cfg(unix)]
#[test]
fn broken_pipe_exits_0_quietly() {
    // The reader (`true`) is gone before keepsake writes.
    let script = r#"{ sleep 0.3; "$0" "$@"; echo "status=$?" >&2; } | true"#;
    for args in [
        &["keygen"][..],
        &["decode", KNOWN_VALUE],
        &[
            "verify",
            "--name",
            "theme",
            "--secret-env",
            VAR,
            "--now",
            NOW,
            KNOWN_VALUE,
        ],
        &["--help"],
    ] {
        let out = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(env!("CARGO_BIN_EXE_keepsake"))
            .args(args)
            .env(VAR, SECRET)
            .output()
            .expect("sh runs");
        assert_eq!(stderr(&out), "status=0\n", "{args:?}");
    }
}
