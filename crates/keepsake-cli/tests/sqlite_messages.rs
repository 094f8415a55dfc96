//! What `keepsake sessions` says about SQLite files it cannot use, and that
//! it never prints the contents of a record it cannot read.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use keepsake::store::{Id, Record, SessionStore as _, SqliteStore};

/// Runs `keepsake sessions --store sqlite://PATH ARGS...`.
fn sessions(path: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keepsake"))
        .args(["sessions", "--store"])
        .arg(format!("sqlite://{}", path.display()))
        .args(args)
        .env_remove("KEEPSAKE_STORE")
        .output()
        .expect("the binary runs")
}

/// Stderr of a command that must fail with exit code 2 (the store cannot
/// be opened).
fn fails(output: &Output) -> String {
    let err = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(err.starts_with("keepsake: "), "{err}");
    err
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn new_store(path: &Path) {
    runtime().block_on(async {
        drop(SqliteStore::open(path).await.expect("the app's store"));
    });
}

fn dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

#[test]
fn a_newer_schema_says_upgrade_keepsake() {
    let dir = dir();
    let path = dir.path().join("sessions.db");
    new_store(&path);
    rusqlite::Connection::open(&path)
        .expect("open")
        .pragma_update(None, "user_version", SqliteStore::SCHEMA_VERSION + 1)
        .expect("a newer version");
    let err = fails(&sessions(&path, &["stats"]));
    assert!(err.contains("newer"), "{err}");
    assert!(err.contains("upgrade keepsake"), "{err}");
    assert!(!err.contains("the app creates or upgrades"), "{err}");
}

#[test]
fn files_that_are_no_session_database_are_named_with_the_cause() {
    let dir = dir();
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![b'x'; 4096]).expect("write");
    let err = fails(&sessions(&junk, &["list"]));
    assert!(
        err.contains(&format!("{} is not an SQLite database", junk.display())),
        "{err}"
    );
    assert!(!err.contains("corrupt session record"), "{err}");

    let directory: PathBuf = dir.path().join("sessions.db");
    std::fs::create_dir(&directory).expect("mkdir");
    let err = fails(&sessions(&directory, &["list"]));
    assert!(err.contains("is a directory"), "{err}");

    // Another app's `sessions` table: the differences, in one line of
    // text, no SQL.
    let other = dir.path().join("other.db");
    rusqlite::Connection::open(&other)
        .expect("create")
        .execute_batch("CREATE TABLE sessions (id TEXT PRIMARY KEY, blob BLOB)")
        .expect("the other app's table");
    let err = fails(&sessions(&other, &["stats"]));
    assert!(err.contains("not a keepsake session database"), "{err}");
    assert!(err.contains("lacks the columns data,"), "{err}");
    assert!(err.contains("blob"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn unreadable_records_are_never_quoted() {
    let dir = dir();
    let path = dir.path().join("sessions.db");
    let record = Record::new(Id::random(), 0, None, u64::MAX);
    runtime().block_on(async {
        let store = SqliteStore::open(&path).await.expect("the app's store");
        store.create(&record).await.expect("create");
    });
    rusqlite::Connection::open(&path)
        .expect("open")
        .execute(
            "UPDATE sessions SET data = ?1 WHERE id = ?2",
            [
                r#""card=4111111111111111 pw=hunter2""#,
                &record.id.to_string(),
            ],
        )
        .expect("plant the record");
    for args in [&["list"][..], &["show", &record.id.to_string()]] {
        let output = sessions(&path, args);
        let shown = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(shown.contains("not a JSON object"), "{args:?}: {shown}");
        for secret in ["4111111111111111", "hunter2"] {
            assert!(!shown.contains(secret), "{args:?}: {shown}");
        }
    }
}
