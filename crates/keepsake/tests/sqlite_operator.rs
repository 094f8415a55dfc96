//! The SQLite store as an operator meets it: opening files that are not a
//! keepsake session database (another app's, a newer keepsake's, not a
//! database at all, a directory, a missing directory), another process
//! holding the write lock at start-up, and unreadable records whose
//! contents must never reach an error message.
//!
//! Every refusal must leave the file exactly as it was: not one byte
//! written, no journal mode switched, no `-wal` file made.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use keepsake::store::{Id, Record, SessionStore as _, SqliteStore, StoreError, StoreErrorKind};

/// A directory in the temp dir, removed with its files on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("keepsake-sqlite-op-{tag}-{}", Id::random()));
        std::fs::create_dir(&dir).expect("create the temp dir");
        Self(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Directories a test made read-only must be writable to be removed.
        #[cfg(unix)]
        if let Ok(entries) = std::fs::read_dir(&self.0) {
            use std::os::unix::fs::PermissionsExt as _;
            for entry in entries.flatten() {
                let _ =
                    std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o700));
            }
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn raw(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).expect("open the database directly")
}

/// Everything a refused open must leave as it was: the file's bytes
/// (its header holds `user_version` and the journal mode), and no `-wal`
/// or `-shm` file beside it.
fn snapshot(path: &Path) -> (Vec<u8>, bool, bool) {
    let beside = |suffix: &str| {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        PathBuf::from(file).exists()
    };
    (
        std::fs::read(path).expect("read the database file"),
        beside("-wal"),
        beside("-shm"),
    )
}

fn journal_mode(path: &Path) -> String {
    raw(path)
        .pragma_query_value(None, "journal_mode", |row| row.get(0))
        .expect("journal mode")
}

fn user_version(path: &Path) -> i64 {
    raw(path)
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .expect("user version")
}

/// Opening `path` migrating and not: both refused, the file untouched;
/// the migrating open's error.
async fn refused(path: &Path) -> StoreError {
    let before = snapshot(path);
    let mut errors = Vec::new();
    for migrating in [true, false] {
        let err = SqliteStore::builder(path)
            .migrate(migrating)
            .busy_timeout(Duration::from_millis(200))
            .open()
            .await
            .expect_err("the database is refused");
        assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{err}");
        assert_eq!(
            snapshot(path),
            before,
            "the refused file was changed: {err}"
        );
        errors.push(err);
    }
    errors.swap_remove(0)
}

/// Finding 1: another app's database whose `user_version` is 0 (SQLite's
/// default, which most apps never change) is refused, naming the file,
/// what is in it and what to do, and left untouched.
#[tokio::test]
async fn another_apps_database_of_version_0_is_refused_untouched() {
    let dir = TempDir::new("other-app");
    let path = dir.path("other.db");
    raw(&path)
        .execute_batch(
            "CREATE TABLE users (id INTEGER, name TEXT);
             CREATE INDEX users_name ON users (name);
             CREATE VIEW names AS SELECT name FROM users;
             INSERT INTO users VALUES (1, 'ada');",
        )
        .unwrap();
    let err = refused(&path).await;
    let text = err.to_string();
    for part in [
        &path.display().to_string(),
        "not a keepsake session database",
        "schema version 0 and holds table users, view names, index users_name, which \
         keepsake does not make",
        "use a separate file",
    ] {
        assert!(text.contains(part), "{part:?} missing: {text}");
    }
    assert_eq!(journal_mode(&path), "delete");
    assert_eq!(user_version(&path), 0);
}

/// Finding 2: a `sessions` table that is not keepsake's, in a database of
/// version 0, is refused before anything is written (no WAL switch), in a
/// message that names the file and the differences and quotes no SQL.
#[tokio::test]
async fn a_foreign_sessions_table_is_refused_before_any_write() {
    let dir = TempDir::new("foreign-sessions");
    let path = dir.path("app.db");
    raw(&path)
        .execute_batch("CREATE TABLE sessions (id TEXT PRIMARY KEY, blob BLOB)")
        .unwrap();
    let err = refused(&path).await;
    let text = err.with_causes().to_string();
    for part in [
        &path.display().to_string(),
        "not a keepsake session database",
        "lacks the columns data, created_at",
        "blob",
    ] {
        assert!(text.contains(part), "{part:?} missing: {text}");
    }
    assert!(!text.contains("CREATE"), "SQL in the message: {text}");
    assert!(!text.contains("already exists"), "{text}");
    assert_eq!(text.lines().count(), 1, "{text}");
    assert_eq!(journal_mode(&path), "delete");

    // Also with this build's version (refused before, but switched to WAL).
    raw(&path)
        .pragma_update(None, "user_version", SqliteStore::SCHEMA_VERSION)
        .unwrap();
    let text = refused(&path).await.to_string();
    assert!(text.contains("lacks the columns data,"), "{text}");
    assert_eq!(journal_mode(&path), "delete");
}

/// Finding 1, the other side: a database of version 0 that holds exactly
/// keepsake's layout (its schema made by hand from the documentation, say)
/// is adopted, rows and all; an empty file is made a session database.
#[tokio::test]
async fn keepsakes_own_layout_of_version_0_is_adopted() {
    let dir = TempDir::new("adopt");
    let path = dir.path("sessions.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let record = Record::new(Id::random(), 0, None, 3_600);
    store.create(&record).await.unwrap();
    drop(store);
    raw(&path).pragma_update(None, "user_version", 0).unwrap();
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.load(&record.id, 1).await.unwrap(), Some(record));
    drop(store);
    assert_eq!(user_version(&path), i64::from(SqliteStore::SCHEMA_VERSION));

    // An empty file (an empty database) becomes a session database.
    let empty = dir.path("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let store = SqliteStore::open(&empty).await.unwrap();
    store
        .create(&Record::new(Id::random(), 0, None, 60))
        .await
        .unwrap();
    drop(store);
    assert_eq!(journal_mode(&empty), "wal");
}

/// Finding 3: the check-only open (the `keepsake sessions` commands) of a
/// database a newer keepsake made says what the app says: upgrade keepsake
/// (not that the app would upgrade it).
#[tokio::test]
async fn a_newer_schema_says_upgrade_keepsake_also_when_only_checking() {
    let dir = TempDir::new("newer");
    let path = dir.path("sessions.db");
    drop(SqliteStore::open(&path).await.unwrap());
    raw(&path)
        .pragma_update(None, "user_version", SqliteStore::SCHEMA_VERSION + 1)
        .unwrap();
    let before = snapshot(&path);
    for migrating in [true, false] {
        let err = SqliteStore::builder(&path)
            .migrate(migrating)
            .open()
            .await
            .unwrap_err();
        let text = err.to_string();
        assert_eq!(err.kind(), StoreErrorKind::Unavailable);
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains("newer"), "{text}");
        assert!(text.contains("upgrade keepsake"), "{text}");
        assert!(!text.contains("the app creates or upgrades"), "{text}");
    }
    assert_eq!(snapshot(&path), before);
}

/// Finding 4: open errors name the file and say what is wrong with it.
#[tokio::test]
async fn open_errors_name_the_file_and_the_cause() {
    let dir = TempDir::new("open-errors");

    // Not a database: the file's fault, not a session record's.
    let junk = dir.path("junk.db");
    std::fs::write(&junk, vec![b'x'; 4096]).unwrap();
    for migrating in [true, false] {
        let err = SqliteStore::builder(&junk)
            .migrate(migrating)
            .open()
            .await
            .unwrap_err();
        let text = err.to_string();
        assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{text}");
        assert!(
            text.contains(&format!("{} is not an SQLite database", junk.display())),
            "{text}"
        );
        assert!(!text.contains("session record"), "{text}");
    }
    assert_eq!(std::fs::read(&junk).unwrap(), vec![b'x'; 4096]);

    // A directory, a missing directory.
    let directory = dir.path("a-directory.db");
    std::fs::create_dir(&directory).unwrap();
    let missing = dir.path("no-such-dir").join("sessions.db");
    for (path, cause) in [
        (&directory, "is a directory"),
        (&missing, "no such directory"),
    ] {
        for migrating in [true, false] {
            let err = SqliteStore::builder(path)
                .migrate(migrating)
                .open()
                .await
                .unwrap_err();
            let text = err.to_string();
            assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{text}");
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert!(text.contains(cause), "{cause:?} missing: {text}");
        }
    }
    assert!(!missing.parent().unwrap().exists());
}

/// Finding 4, permissions: an unreadable file, a directory the app cannot
/// create files in, a read-only directory holding the database. Skipped
/// when the tests run with privileges that ignore permissions (root).
#[cfg(unix)]
#[tokio::test]
async fn permission_errors_name_the_file_and_the_cause() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = TempDir::new("permissions");
    let probe = dir.path("probe");
    std::fs::create_dir(&probe).unwrap();
    std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o555)).unwrap();
    if std::fs::write(probe.join("file"), b"").is_ok() {
        eprintln!("skipped: permissions are not enforced for this user (root?)");
        return;
    }

    let unreadable = dir.path("unreadable.db");
    drop(SqliteStore::open(&unreadable).await.unwrap());
    std::fs::set_permissions(&unreadable, std::fs::Permissions::from_mode(0o000)).unwrap();
    let err = SqliteStore::open(&unreadable).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&unreadable.display().to_string()), "{text}");
    assert!(text.contains("permission denied"), "{text}");

    // No file can be created in `probe`.
    let err = SqliteStore::open(probe.join("sessions.db"))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&probe.display().to_string()), "{text}");
    assert!(text.contains("permission denied"), "{text}");

    // The database is there, but its directory is read-only: SQLite cannot
    // make the `-wal` file beside it.
    let read_only = dir.path("read-only");
    std::fs::create_dir(&read_only).unwrap();
    let path = read_only.join("sessions.db");
    std::fs::write(&path, b"").unwrap();
    std::fs::set_permissions(&read_only, std::fs::Permissions::from_mode(0o555)).unwrap();
    let err = SqliteStore::open(&path).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("read-only"), "{text}");
}

/// Finding 8: another process holding the write lock (a long `BEGIN
/// EXCLUSIVE`, in the store's WAL mode) does not keep the app from
/// starting when its database needs no migration: opening only reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_needs_no_write_lock_when_nothing_is_migrated() {
    let dir = TempDir::new("locked");
    let path = dir.path("sessions.db");
    let record = Record::new(Id::random(), 0, None, 3_600);
    {
        let store = SqliteStore::open(&path).await.unwrap();
        store.create(&record).await.unwrap();
    }
    let holder = raw(&path);
    assert_eq!(journal_mode(&path), "wal");
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    holder
        .execute("DELETE FROM sessions WHERE id = 'none'", [])
        .unwrap();
    let store = SqliteStore::builder(&path)
        .busy_timeout(Duration::from_millis(300))
        .open()
        .await
        .expect("opens while another connection holds the write lock");
    // Reads go on; a write waits its busy timeout.
    assert_eq!(store.load(&record.id, 1).await.unwrap(), Some(record));
    let err = store
        .create(&Record::new(Id::random(), 0, None, 60))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Timeout, "{err}");
    holder.execute_batch("COMMIT").unwrap();
    store
        .create(&Record::new(Id::random(), 0, None, 60))
        .await
        .unwrap();
}

/// Finding 5: an unreadable record's contents never reach an error: not
/// its message, its `Debug`, nor its causes (errors go into logs).
#[tokio::test]
async fn unreadable_records_are_never_quoted() {
    let dir = TempDir::new("quoted");
    let path = dir.path("sessions.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let secrets = ["4111111111111111", "hunter2"];
    for data in [
        r#""card=4111111111111111 pw=hunter2""#,
        "4111111111111111",
        r#"["hunter2"]"#,
        r#"{"pw": hunter2}"#,
        r#"{"pw": "hunter2""#,
        r#"{"pw": "hunter2"} 4111111111111111"#,
    ] {
        let record = Record::new(Id::random(), 0, None, 3_600);
        store.create(&record).await.unwrap();
        raw(&path)
            .execute(
                "UPDATE sessions SET data = ?1, user_id = 'u' WHERE id = ?2",
                [data, &record.id.to_string()],
            )
            .unwrap();
        let mut errors = vec![store.load(&record.id, 1).await.unwrap_err()];
        errors.extend(store.page_skipping_unreadable(None, 100).await.unwrap().1);
        let (listed, unreadable) = store.list_user_skipping_unreadable("u", 1).await.unwrap();
        assert!(listed.is_empty());
        errors.extend(unreadable);
        // The app's list leaves it out rather than failing.
        assert_eq!(store.list_user("u", 1).await.unwrap(), []);
        assert_eq!(errors.len(), 3);
        for err in &errors {
            assert_eq!(err.kind(), StoreErrorKind::Corrupt);
            for shown in [
                err.to_string(),
                format!("{err:?}"),
                err.with_causes().to_string(),
            ] {
                for secret in secrets {
                    assert!(!shown.contains(secret), "{data}: {shown}");
                }
                assert!(shown.contains("not a JSON object"), "{shown}");
            }
            // Where the decoding stopped, to find the fault.
            assert!(err.to_string().contains("line 1 column"), "{err}");
        }
        store.delete(&record.id).await.unwrap();
    }
}
