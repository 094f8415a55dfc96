//! `keepsake sessions` end to end: a store is seeded through the library,
//! then the real binary lists, shows, revokes, purges and counts, and the
//! effect is checked through the library again. The same scenario runs on a
//! SQLite file, and on Redis and PostgreSQL (a fresh key prefix or schema
//! per run) when `KEEPSAKE_TEST_REDIS_URL` / `KEEPSAKE_TEST_POSTGRES_URL`
//! are set.

use std::process::{Command, Output};

use keepsake::{
    codec::unix_now,
    store::{AnyStore, Id, Record, SessionStore as _, StoreAdmin as _},
};
use serde_json::{Value, json};

/// Runs the binary with `args` and extra environment variables, without
/// any `KEEPSAKE_STORE` from the caller's environment.
fn keepsake_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keepsake"));
    command.args(args).env_remove("KEEPSAKE_STORE");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("the binary runs")
}

/// Runs `keepsake sessions --store URL ARGS...`.
fn sessions(url: &str, args: &[&str]) -> Output {
    let mut all = vec!["sessions", "--store", url];
    all.extend_from_slice(args);
    keepsake_with_env(&all, &[])
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("stderr is UTF-8")
}

/// Stdout of a command that must succeed.
fn ok(output: &Output) -> String {
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout: {} stderr: {}",
        stdout(output),
        stderr(output)
    );
    stdout(output)
}

/// Stderr of a command that must fail with `code`, printing nothing on
/// stdout.
fn fails(output: &Output, code: i32) -> String {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {} stderr: {}",
        stdout(output),
        stderr(output)
    );
    assert_eq!(stdout(output), "", "no stdout expected");
    let err = stderr(output);
    assert!(err.starts_with("keepsake: "), "{err}");
    err
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The sessions the scenario seeds.
struct Seeded {
    alice: Vec<Id>,
    bob: Id,
    anonymous: Id,
    /// Two sessions of carol that end at `now + 100`.
    carol: Vec<Id>,
}

async fn create(store: &AnyStore, now: u64, user: Option<&str>, lifetime: u64) -> Id {
    create_with_id(store, Id::random(), now, user, lifetime).await
}

async fn create_with_id(
    store: &AnyStore,
    id: Id,
    now: u64,
    user: Option<&str>,
    lifetime: u64,
) -> Id {
    let mut record = Record::new(id, now, None, lifetime);
    record.user = user.map(str::to_owned);
    record.data.insert("cart".into(), json!(2));
    store.create(&record).await.expect("create");
    record.id
}

async fn seed(store: &AnyStore, now: u64) -> Seeded {
    // Ids are base64url, so about one in 64 begins with '-', which the
    // command line must take as an id, not as a flag: alice's first
    // session always has such an id, and bob's user name begins with '-'.
    let hyphen_id = std::iter::repeat_with(Id::random)
        .find(|id| id.to_string().starts_with('-'))
        .expect("an id beginning with '-'");
    let mut alice = vec![create_with_id(store, hyphen_id, now, Some("alice"), 3_600).await];
    for _ in 0..2 {
        alice.push(create(store, now, Some("alice"), 3_600).await);
    }
    Seeded {
        alice,
        bob: create(store, now, Some("-bob"), 3_600).await,
        anonymous: create(store, now, None, 3_600).await,
        carol: vec![
            create(store, now, Some("carol"), 100).await,
            create(store, now, Some("carol"), 100).await,
        ],
    }
}

/// Whether session `id` is gone from `store` within a second. The app's
/// handle sees a revocation made by another process once its store does:
/// at once, or with the Redis store's local cache, once Redis's
/// invalidation has reached the handle's connection (which the waiting
/// lets it read).
async fn gone_soon(store: &AnyStore, id: &Id, now: u64) -> bool {
    for _ in 0..1_000 {
        if store.load(id, now).await.unwrap().is_none() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    false
}

/// The scenario, on the store at `url`, which must be empty.
fn scenario(url: &str) {
    let rt = runtime();
    let now = unix_now();
    let later = (now + 150).to_string();
    let store = rt.block_on(AnyStore::open(url)).expect("open the store");
    let seeded = rt.block_on(seed(&store, now));

    // list: a header, then one line per session.
    let out = ok(&sessions(url, &["list"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "ID\tUSER\tCREATED\tEXPIRES\tSTATE", "{out}");
    assert_eq!(lines.len(), 8, "{out}");
    for id in seeded.alice.iter().chain(&seeded.carol) {
        assert!(out.contains(&id.to_string()), "{id} missing: {out}");
    }
    let anonymous = lines
        .iter()
        .find(|line| line.starts_with(&seeded.anonymous.to_string()))
        .expect("the anonymous session is listed");
    let fields: Vec<&str> = anonymous.split('\t').collect();
    assert_eq!((fields[1], fields[4]), ("-", "live"), "{anonymous}");
    assert!(
        fields[2].ends_with('Z') && fields[2].len() == 20,
        "{anonymous}"
    );

    let out = ok(&sessions(url, &["list", "--user", "alice"]));
    assert_eq!(out.lines().count(), 4, "{out}");
    assert!(
        out.lines().skip(1).all(|line| line.contains("\talice\t")),
        "{out}"
    );

    let out = ok(&sessions(url, &["list", "--now", &later]));
    let expired: Vec<&str> = out.lines().filter(|l| l.ends_with("\texpired")).collect();
    assert_eq!(expired.len(), 2, "{out}");
    assert!(
        expired.iter().all(|line| line.contains("\tcarol\t")),
        "{out}"
    );

    // show
    let out = ok(&sessions(url, &["show", &seeded.alice[0].to_string()]));
    let shown: Value = serde_json::from_str(&out).expect("show prints JSON");
    assert_eq!(shown["id"], seeded.alice[0].to_string());
    assert_eq!(shown["user"], "alice");
    assert_eq!(shown["data"], json!({ "cart": 2 }));
    assert_eq!(shown["expired"], false);
    assert_eq!(shown["deadline"], now + 3_600);
    let out = ok(&sessions(
        url,
        &["--now", &later, "show", &seeded.carol[0].to_string()],
    ));
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["expired"],
        true
    );
    let err = fails(&sessions(url, &["show", &Id::random().to_string()]), 1);
    assert_eq!(err, "keepsake: no session with this id\n");
    let err = fails(&sessions(url, &["show", "not-an-id"]), 2);
    assert!(err.contains("invalid session id"), "{err}");

    // stats, with carol's sessions past their deadline
    let out = ok(&sessions(url, &["stats", "--now", &later]));
    for line in ["sessions: 7", "live: 5", "expired: 2", "users: 2"] {
        assert!(out.lines().any(|l| l == line), "{line} missing: {out}");
    }
    assert!(out.contains("live without a user: 1"), "{out}");
    assert!(out.contains("top users:\n  alice\t3\n  -bob\t1\n"), "{out}");
    let out = ok(&sessions(url, &["stats", "--top", "1"]));
    assert!(
        out.contains("top users:\n  alice\t3\n") && !out.contains("-bob"),
        "{out}"
    );

    // revoke
    let alice0 = seeded.alice[0].to_string();
    assert_eq!(
        ok(&sessions(url, &["revoke", &alice0])),
        "revoked 1 session\n"
    );
    assert!(rt.block_on(gone_soon(&store, &seeded.alice[0], now)));
    assert!(
        rt.block_on(store.load(&seeded.alice[1], now))
            .unwrap()
            .is_some()
    );
    let err = fails(&sessions(url, &["revoke", &alice0]), 1);
    assert_eq!(err, "keepsake: no session with this id\n");

    // revoke-user
    assert_eq!(
        ok(&sessions(url, &["revoke-user", "alice"])),
        "revoked 2 sessions of user \"alice\"\n"
    );
    assert!(
        rt.block_on(store.list_user("alice", now))
            .unwrap()
            .is_empty()
    );
    assert_eq!(rt.block_on(store.list_user("-bob", now)).unwrap().len(), 1);
    let err = fails(&sessions(url, &["revoke-user", "alice"]), 1);
    assert_eq!(err, "keepsake: user \"alice\" has no sessions\n");

    // purge refuses a clock later than the system's, which would delete
    // live sessions: carol's are still live, and stay.
    let err = fails(&sessions(url, &["purge", "--now", &later]), 2);
    assert!(err.contains("later than the system clock"), "{err}");
    let err = fails(&sessions(url, &["--now", &later, "purge"]), 2);
    assert!(err.contains("later than the system clock"), "{err}");
    assert_eq!(rt.block_on(store.count(now)).unwrap().total, 4);

    // purge, one session per batch, of two sessions of dave that ended
    // before now (Redis, which expires sessions itself, has dropped them
    // already); stderr is not a terminal here, so progress comes as plain
    // lines. An explicit --now that is not in the future is accepted.
    // (On Redis a batch is a SCAN step over the whole database, which other
    // tests share, so it is larger there.)
    for _ in 0..2 {
        rt.block_on(create(&store, now - 200, Some("dave"), 100));
    }
    let (batch, expired) = if url.starts_with("redis") {
        ("100", 0)
    } else {
        ("1", 2)
    };
    let plural = if expired == 1 { "" } else { "s" };
    let output = sessions(url, &["purge", "--now", &now.to_string(), "--batch", batch]);
    assert_eq!(
        ok(&output),
        format!("purged {expired} expired session{plural}\n")
    );
    let err = stderr(&output);
    assert!(
        err.starts_with(&format!("purging {expired} expired sessions\n")),
        "{err}"
    );
    assert!(
        err.ends_with(&format!("purged {expired} of {expired}\n")),
        "{err}"
    );
    let counts = rt.block_on(store.count(now)).unwrap();
    assert_eq!((counts.total, counts.expired), (4, 0));
    assert!(rt.block_on(store.load(&seeded.bob, now)).unwrap().is_some());
    assert!(
        rt.block_on(store.load(&seeded.carol[0], now))
            .unwrap()
            .is_some()
    );
    assert_eq!(
        ok(&sessions(url, &["purge"])),
        "purged 0 expired sessions\n"
    );
    let out = ok(&sessions(url, &["stats"]));
    assert!(
        out.starts_with("sessions: 4\nlive: 4\nexpired: 0\n"),
        "{out}"
    );

    // Leave nothing behind.
    assert_eq!(
        ok(&sessions(url, &["revoke-user", "-bob"])),
        "revoked 1 session of user \"-bob\"\n"
    );
    assert_eq!(
        ok(&sessions(url, &["revoke-user", "carol"])),
        "revoked 2 sessions of user \"carol\"\n"
    );
    ok(&sessions(url, &["revoke", &seeded.anonymous.to_string()]));
    assert_eq!(rt.block_on(store.count(now)).unwrap().total, 0);
}

#[test]
fn sqlite_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("sessions.db").display());
    scenario(&url);
}

/// The server URL in `var`; `None` (with a note) to skip, a panic under CI.
fn server_url(var: &str) -> Option<String> {
    match std::env::var(var).ok().filter(|url| !url.is_empty()) {
        Some(url) => Some(url),
        None if std::env::var_os("CI").is_some() => panic!("{var} must be set under CI"),
        None => {
            eprintln!("skipping: {var} is not set");
            None
        }
    }
}

/// 16 random hex digits.
fn tag() -> String {
    Id::random().as_bytes()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn redis_store() {
    let Some(base) = server_url("KEEPSAKE_TEST_REDIS_URL") else {
        return;
    };
    scenario(&format!("{base}?prefix=keepsake-cli-test-{}:", tag()));
}

#[test]
fn postgres_store() {
    let Some(base) = server_url("KEEPSAKE_TEST_POSTGRES_URL") else {
        return;
    };
    let schema = format!("keepsake_cli_test_{}", tag());
    let result = std::panic::catch_unwind(|| {
        // A schema or table that is not there (a typo) is an error, and is
        // not created.
        let err = fails(&sessions(&format!("{base}?schema={schema}"), &["stats"]), 2);
        assert!(err.contains("there is no session table"), "{err}");
        let err = fails(
            &sessions(&format!("{base}?schema={schema}&table=typo"), &["list"]),
            2,
        );
        assert!(err.contains(&format!("\"{schema}\".\"typo\"")), "{err}");
        // Once the app has made its table (`scenario` opens the store as
        // the app does), the commands work.
        scenario(&format!("{base}?schema={schema}"));
    });
    runtime().block_on(async {
        let (client, connection) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
            .await
            .expect("connect to drop the test schema");
        tokio::spawn(connection);
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .await
            .expect("drop the test schema");
    });
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// Puts two records `url`'s store cannot read next to its sessions: one
/// under the id `legacy-session-1`, which is not a keepsake session id (an
/// older app's row; on Redis, a string key `<prefix>session:legacy-session-1`
/// that holds no session), and one under a valid id whose data is not a
/// session's. `good` is the id of a readable session, whose row the SQL
/// stores' legacy row copies. The valid id.
fn plant_unreadable(url: &str, good: &Id) -> Id {
    let bad = Id::random();
    if let Some(path) = url.strip_prefix("sqlite://") {
        rusqlite::Connection::open(path)
            .expect("open the database")
            .execute_batch(&format!(
                "CREATE TEMP TABLE legacy AS SELECT * FROM sessions WHERE id = '{good}';
                 UPDATE legacy SET id = 'legacy-session-1';
                 INSERT INTO sessions SELECT * FROM legacy;
                 UPDATE legacy SET id = '{bad}', data = 'not json';
                 INSERT INTO sessions SELECT * FROM legacy;"
            ))
            .expect("plant the unreadable rows");
    } else if url.starts_with("redis") {
        let (base, prefix) = url.split_once("?prefix=").expect("a prefix");
        let mut conn = redis::Client::open(base)
            .and_then(|client| client.get_connection())
            .expect("connect to Redis");
        for id in ["legacy-session-1".to_owned(), bad.to_string()] {
            redis::cmd("SET")
                .arg(format!("{prefix}session:{id}"))
                .arg("hello")
                .query::<()>(&mut conn)
                .expect("plant the unreadable keys");
            // Listed among alice's sessions, as the SQL stores' rows are.
            redis::cmd("SADD")
                .arg(format!("{prefix}user:alice"))
                .arg(&id)
                .query::<()>(&mut conn)
                .expect("plant the unreadable keys");
        }
    } else {
        let (base, query) = url.split_once('?').expect("a schema");
        let schema = query.strip_prefix("schema=").expect("a schema");
        runtime().block_on(async {
            let (client, connection) = tokio_postgres::connect(base, tokio_postgres::NoTls)
                .await
                .expect("connect to PostgreSQL");
            tokio::spawn(connection);
            client
                .batch_execute(&format!(
                    "CREATE TEMP TABLE legacy AS SELECT * FROM \"{schema}\".keepsake_sessions
                         WHERE id = '{good}';
                     UPDATE legacy SET id = 'legacy-session-1';
                     INSERT INTO \"{schema}\".keepsake_sessions SELECT * FROM legacy;
                     UPDATE legacy SET id = '{bad}', data = '42';
                     INSERT INTO \"{schema}\".keepsake_sessions SELECT * FROM legacy;"
                ))
                .await
                .expect("plant the unreadable rows");
        });
    }
    bad
}

/// `list` and `stats` leave out records the store cannot read, with a
/// warning naming each by its stored id, and `stats` counts them; `revoke`
/// removes one stored under a valid id, and `revoke --raw` one stored under
/// any other id. `url`'s store must be empty.
fn unreadable_scenario(url: &str) {
    let rt = runtime();
    let now = unix_now();
    let store = rt.block_on(AnyStore::open(url)).expect("open the store");
    let alice = rt.block_on(create(&store, now, Some("alice"), 3_600));
    let anonymous = rt.block_on(create(&store, now, None, 3_600));
    let bad = plant_unreadable(url, &alice);
    let warned = |err: &str, id: &str| {
        err.lines()
            .filter(|line| {
                line.starts_with("keepsake: warning: left out a session record")
                    && line.ends_with(&format!("(session id \"{id}\")"))
            })
            .count()
    };

    let output = sessions(url, &["list"]);
    let out = ok(&output);
    let err = stderr(&output);
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(out.contains(&alice.to_string()) && out.contains(&anonymous.to_string()));
    assert!(
        !out.contains("legacy") && !out.contains(&bad.to_string()),
        "{out}"
    );
    assert_eq!(warned(&err, "legacy-session-1"), 1, "{err}");
    assert_eq!(warned(&err, &bad.to_string()), 1, "{err}");
    assert!(
        err.lines().last().is_some_and(|line| line
            .starts_with("keepsake: warning: 2 unreadable session records")
            && line.contains("revoke --raw ID")),
        "{err}"
    );
    assert_eq!(err.lines().count(), 3, "{err}");

    // So does `list --user` (the legacy row and the bad one are alice's).
    let output = sessions(url, &["list", "--user", "alice"]);
    let out = ok(&output);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.contains(&alice.to_string()), "{out}");
    let err = stderr(&output);
    assert_eq!(warned(&err, "legacy-session-1"), 1, "{err}");
    assert_eq!(warned(&err, &bad.to_string()), 1, "{err}");
    assert_eq!(err.lines().count(), 3, "{err}");

    let output = sessions(url, &["stats"]);
    let out = ok(&output);
    for line in [
        "sessions: 4",
        "unreadable: 2",
        "users: 1",
        "live without a user: 1",
    ] {
        assert!(out.lines().any(|l| l == line), "{line} missing: {out}");
    }
    assert!(out.contains("top users:\n  alice\t1\n"), "{out}");
    let err = stderr(&output);
    assert_eq!(warned(&err, "legacy-session-1"), 1, "{err}");

    // Without --raw, an id keepsake would never make is a usage error that
    // says what to do.
    let err = fails(&sessions(url, &["revoke", "legacy-session-1"]), 2);
    assert!(
        err.starts_with("keepsake: invalid session id \"legacy-session-1\"")
            && err.contains("--raw"),
        "{err}"
    );
    assert_eq!(
        ok(&sessions(url, &["revoke", "--raw", "legacy-session-1"])),
        "revoked 1 session\n"
    );
    let err = fails(&sessions(url, &["revoke", "--raw", "legacy-session-1"]), 1);
    assert_eq!(err, "keepsake: no session with this id\n");
    // An unreadable record under a valid id goes as any session does.
    assert_eq!(
        ok(&sessions(url, &["revoke", &bad.to_string()])),
        "revoked 1 session\n"
    );

    let output = sessions(url, &["list"]);
    assert_eq!(ok(&output).lines().count(), 3);
    assert_eq!(stderr(&output), "");
    let output = sessions(url, &["stats"]);
    assert!(ok(&output).contains("\nunreadable: 0\n"));
    assert_eq!(stderr(&output), "");

    // --raw takes valid ids too.
    for id in [alice, anonymous] {
        assert_eq!(
            ok(&sessions(url, &["revoke", "--raw", &id.to_string()])),
            "revoked 1 session\n"
        );
        assert!(rt.block_on(gone_soon(&store, &id, now)));
    }
    assert_eq!(rt.block_on(store.count(now)).unwrap().total, 0);
}

#[test]
fn unreadable_records_are_left_out_and_revoked() {
    let dir = tempfile::tempdir().expect("temp dir");
    unreadable_scenario(&format!(
        "sqlite://{}",
        dir.path().join("unreadable.db").display()
    ));
    // A memory store holds only readable records; --raw of an id it cannot
    // hold finds nothing.
    let err = fails(
        &sessions("memory://", &["revoke", "--raw", "legacy-session-1"]),
        1,
    );
    assert_eq!(err, "keepsake: no session with this id\n");
    if let Some(base) = server_url("KEEPSAKE_TEST_REDIS_URL") {
        unreadable_scenario(&format!("{base}?prefix=keepsake-cli-unreadable-{}:", tag()));
    }
}

#[test]
fn unreadable_postgres_records_are_left_out_and_revoked() {
    let Some(base) = server_url("KEEPSAKE_TEST_POSTGRES_URL") else {
        return;
    };
    let schema = format!("keepsake_cli_unreadable_{}", tag());
    let result = std::panic::catch_unwind(|| {
        unreadable_scenario(&format!("{base}?schema={schema}"));
    });
    runtime().block_on(async {
        let (client, connection) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
            .await
            .expect("connect to drop the test schema");
        tokio::spawn(connection);
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .await
            .expect("drop the test schema");
    });
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// User names are stored text: control and format characters in them are
/// escaped, so they can neither forge rows of `list` or `stats` nor drive
/// the terminal, while printable Unicode is shown as it is.
#[test]
fn hostile_user_names_are_escaped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("hostile.db").display());
    let rt = runtime();
    let now = unix_now();
    let store = rt.block_on(AnyStore::open(&url)).expect("open the store");
    let users = [
        (
            "mallory\tforged\t1970-01-01T00:00:00Z\t-\tlive\nAAAAAAAAAAAAAAAAAAAAAA",
            r"mallory\tforged\t1970-01-01T00:00:00Z\t-\tlive\nAAAAAAAAAAAAAAAAAAAAAA",
        ),
        (
            "\u{1b}]0;pwned\u{7}\u{1b}[2J\r",
            r"\u{1b}]0;pwned\u{7}\u{1b}[2J\r",
        ),
        (
            "\u{202e}nimda\u{2066}\u{200b}\u{9b}",
            r"\u{202e}nimda\u{2066}\u{200b}\u{9b}",
        ),
        ("Zoë Ångström 山田", "Zoë Ångström 山田"),
    ];
    let ids: Vec<Id> = users
        .iter()
        .map(|(user, _)| rt.block_on(create(&store, now, Some(*user), 3_600)))
        .collect();

    let out = ok(&sessions(&url, &["list"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1 + users.len(), "{out}");
    for (id, (_, shown)) in ids.iter().zip(&users) {
        let line = lines
            .iter()
            .find(|line| line.starts_with(&id.to_string()))
            .unwrap_or_else(|| panic!("{id} missing: {out}"));
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields.len(), 5, "{line}");
        assert_eq!((fields[1], fields[4]), (*shown, "live"), "{line}");
    }

    let out = ok(&sessions(&url, &["stats"]));
    let top: Vec<&str> = out
        .split_once("top users:\n")
        .expect("a top users section")
        .1
        .lines()
        .collect();
    assert_eq!(top.len(), users.len(), "{out}");
    for (_, shown) in &users {
        assert!(
            top.contains(&format!("  {shown}\t1").as_str()),
            "{shown}: {out}"
        );
    }

    // `show` prints JSON that reads back as the stored user, with what JSON
    // allows raw in strings (DEL, C1 controls, bidi) as `\uXXXX`.
    let mut out = ok(&sessions(&url, &["list"])) + &ok(&sessions(&url, &["stats"]));
    for (id, (user, _)) in ids.iter().zip(&users) {
        let shown = ok(&sessions(&url, &["show", &id.to_string()]));
        let json: Value = serde_json::from_str(&shown).expect("show prints JSON");
        assert_eq!(json["user"], *user, "{shown}");
        out += &shown;
    }
    assert!(out.contains(r"\u202enimda\u2066\u200b\u009b"), "{out}");

    // Nothing raw reaches the terminal.
    for c in [
        '\u{1b}', '\u{7}', '\r', '\u{9b}', '\u{202e}', '\u{2066}', '\u{200b}',
    ] {
        assert!(!out.contains(c), "{c:?} printed raw: {out:?}");
    }
}

#[test]
fn the_store_comes_from_keepsake_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("env.db").display());
    runtime()
        .block_on(AnyStore::open(&url))
        .expect("create the database");
    let output = keepsake_with_env(&["sessions", "stats"], &[("KEEPSAKE_STORE", &url)]);
    assert!(ok(&output).starts_with("sessions: 0\n"));
    // --store wins over the variable.
    let output = keepsake_with_env(
        &["sessions", "--store", "memory://", "list"],
        &[("KEEPSAKE_STORE", "mysql://nowhere")],
    );
    assert_eq!(ok(&output), "ID\tUSER\tCREATED\tEXPIRES\tSTATE\n");
}

#[test]
fn store_errors_exit_2_with_a_clear_message() {
    let err = fails(&keepsake_with_env(&["sessions", "list"], &[]), 2);
    assert_eq!(
        err,
        "keepsake: no session store: pass --store URL or set KEEPSAKE_STORE\n"
    );
    let err = fails(&sessions("mysql://db/x", &["list"]), 2);
    assert!(
        err.starts_with("keepsake: unknown session store `mysql://db/x`"),
        "{err}"
    );
    // Nothing listens on port 1; the password never shows.
    let err = fails(&sessions("redis://:hunter2@127.0.0.1:1/0", &["stats"]), 2);
    assert!(
        err.starts_with(
            "keepsake: cannot open the redis session store at redis://:***@127.0.0.1:1/0: "
        ),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
    let err = fails(
        &sessions("postgres://postgres@127.0.0.1:1/test", &["stats"]),
        2,
    );
    assert!(
        err.starts_with("keepsake: cannot open the postgres session store at "),
        "{err}"
    );
    // A missing SQLite file is a mistyped path, not a new store.
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("typo.db");
    let err = fails(
        &sessions(&format!("sqlite://{}", missing.display()), &["list"]),
        2,
    );
    assert_eq!(
        err,
        format!("keepsake: no SQLite database at {}\n", missing.display())
    );
    assert!(!missing.exists());
    // Query parameters are refused, not read as part of the file name.
    let err = fails(
        &sessions(
            &format!("sqlite://{}?mode=ro", missing.display()),
            &["list"],
        ),
        2,
    );
    assert!(err.contains("takes no query parameters"), "{err}");
    // A file that is not a database.
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, b"not a database, not at all; just text").expect("write");
    let err = fails(
        &sessions(&format!("sqlite://{}", junk.display()), &["list"]),
        2,
    );
    assert!(
        err.starts_with("keepsake: cannot open the sqlite session store at "),
        "{err}"
    );
    // Another app's database is refused, and left exactly as it was (no
    // sessions table, no WAL mode, no schema version).
    let other = dir.path().join("other.db");
    let fingerprint = || {
        let conn = rusqlite::Connection::open(&other).expect("open the other app's database");
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |row| row.get(0))
            .expect("journal mode");
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .expect("user version");
        let mut names = conn
            .prepare("SELECT name FROM sqlite_schema ORDER BY name")
            .expect("schema");
        let names: Vec<String> = names
            .query_map([], |row| row.get(0))
            .expect("names")
            .map(|name| name.expect("name"))
            .collect();
        (mode, version, names)
    };
    rusqlite::Connection::open(&other)
        .expect("create")
        .execute_batch("CREATE TABLE users (id INTEGER PRIMARY KEY)")
        .expect("the other app's table");
    let before = fingerprint();
    for command in [&["stats"][..], &["list"], &["purge"]] {
        let err = fails(
            &sessions(&format!("sqlite://{}", other.display()), command),
            2,
        );
        assert!(
            err.contains("is not a keepsake session database"),
            "{command:?}: {err}"
        );
    }
    assert_eq!(fingerprint(), before);
    // A record that cannot be read is named, so it can be found and
    // revoked (`list` and `stats` leave it out: see
    // `unreadable_records_are_left_out_and_revoked`).
    let app = dir.path().join("app.db");
    let url = format!("sqlite://{}", app.display());
    let id = runtime().block_on(async {
        let store = AnyStore::open(&url).await.expect("the app's store");
        create(&store, unix_now(), None, 3_600).await
    });
    rusqlite::Connection::open(&app)
        .expect("open")
        .execute(
            "UPDATE sessions SET data = 'not json' WHERE id = ?1",
            [id.to_string()],
        )
        .expect("corrupt the record");
    let err = fails(&sessions(&url, &["show", &id.to_string()]), 2);
    assert!(err.contains(&format!("(session id \"{id}\")")), "{err}");
    // Only there: the library's message names it by its log tag.
    assert_eq!(err.matches(&id.to_string()).count(), 1, "{err}");
    assert_eq!(
        ok(&sessions(&url, &["revoke", &id.to_string()])),
        "revoked 1 session\n"
    );
    ok(&sessions(&url, &["list"]));
    // A usage error from clap.
    let output = sessions("memory://", &["frobnicate"]);
    assert_eq!(output.status.code(), Some(2));
}
