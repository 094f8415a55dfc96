//! The conformance suite every [`SessionStore`] must pass (feature
//! `test-suite`).
//!
//! Each check is a public async function that panics with a message naming
//! the broken rule; [`run_all`] runs them all. They use fresh random ids and
//! user names, so they can run against a shared server (a Redis database, a
//! Postgres schema) without clearing it, and several runs can go on at once.
//! Times are taken from the current clock and then moved by hand: a store
//! must decide expiry by the `now` it is given, not by its own clock (it may
//! *also* let records expire by its own clock, such as a Redis TTL, since
//! the suite's times are close to real time).
//!
//! # Example
//!
//! ```
//! use keepsake::store::{conformance, MemoryStore};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! conformance::run_all(&MemoryStore::new()).await;
//! # });
//! ```

use std::{collections::BTreeSet, sync::Arc};

use serde_json::json;

use super::{Created, Deleted, Id, Record, Saved, SessionStore, Touched};

/// A unique user name for one check.
fn user(tag: &str) -> String {
    format!("conformance-{tag}-{}", Id::random())
}

/// A record created "now", with a 60 s idle timeout and a 3,600 s lifetime.
fn record(now: u64) -> Record {
    let mut record = Record::new(Id::random(), now, Some(60), 3_600);
    record.data.insert("n".into(), json!(1));
    record
}

/// The current time, as the suite's base.
fn base() -> u64 {
    crate::codec::unix_now()
}

/// Runs every check, in order.
///
/// # Panics
///
/// On the first rule the store breaks, or on any store error.
///
/// # Example
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// keepsake::store::conformance::run_all(&keepsake::store::MemoryStore::new()).await;
/// # });
/// ```
pub async fn run_all<S: SessionStore>(store: &S) {
    create_and_load(store).await;
    create_never_overwrites(store).await;
    save_is_compare_and_set(store).await;
    save_shared_is_save(store).await;
    no_resurrection(store).await;
    delete_if_version_is_compare_and_delete(store).await;
    expiry_at_the_second(store).await;
    touch_moves_only_the_idle_deadline(store).await;
    per_user_index(store).await;
    purge_removes_only_expired(store).await;
    large_records_and_unicode(store).await;
    numbers_round_trip_exactly(store).await;
    deeply_nested_values_round_trip(store).await;
    many_sessions(store, 1_000).await;
    concurrent_saves_one_winner_per_version(store).await;
}

/// `create` stores the record as given; `load` returns it; an unknown id
/// loads as `None`.
///
/// # Panics
///
/// If the store breaks the rule.
///
/// # Example
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// keepsake::store::conformance::create_and_load(&keepsake::store::MemoryStore::new()).await;
/// # });
/// ```
pub async fn create_and_load<S: SessionStore>(store: &S) {
    let now = base();
    let record = record(now);
    assert_eq!(
        store.create(&record).await.unwrap(),
        Created::Created,
        "create a new id"
    );
    let loaded = store.load(&record.id, now).await.unwrap();
    assert_eq!(
        loaded.as_ref(),
        Some(&record),
        "load returns the record as created"
    );
    assert_eq!(
        store.load(&Id::random(), now).await.unwrap(),
        None,
        "unknown id"
    );
}

/// A second `create` with the same id is a collision and changes nothing.
///
/// # Panics
///
/// If the store breaks the rule.
///
/// # Example
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// keepsake::store::conformance::create_never_overwrites(&keepsake::store::MemoryStore::new()).await;
/// # });
/// ```
pub async fn create_never_overwrites<S: SessionStore>(store: &S) {
    let now = base();
    let first = record(now);
    store.create(&first).await.unwrap();
    let mut second = first.clone();
    second.data.insert("n".into(), json!("other"));
    assert_eq!(
        store.create(&second).await.unwrap(),
        Created::Collision,
        "same id again"
    );
    let loaded = store
        .load(&first.id, now)
        .await
        .unwrap()
        .expect("still there");
    assert_eq!(loaded.data["n"], json!(1), "a collision must not overwrite");
}

/// `save` writes only when the version matches, and bumps it by one.
///
/// # Panics
///
/// If the store breaks the rule.
///
/// # Example
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// keepsake::store::conformance::save_is_compare_and_set(&keepsake::store::MemoryStore::new()).await;
/// # });
/// ```
pub async fn save_is_compare_and_set<S: SessionStore>(store: &S) {
    let now = base();
    let mut record = record(now);
    store.create(&record).await.unwrap();
    record.data.insert("n".into(), json!(2));
    assert_eq!(
        store.save(&record, now).await.unwrap(),
        Saved::Saved { version: 1 }
    );
    // The same version again is stale now.
    record.data.insert("n".into(), json!(3));
    assert_eq!(
        store.save(&record, now).await.unwrap(),
        Saved::Conflict,
        "stale version"
    );
    let loaded = store.load(&record.id, now).await.unwrap().expect("present");
    assert_eq!(
        (loaded.version, &loaded.data["n"]),
        (1, &json!(2)),
        "conflict changes nothing"
    );
    // A version from the future is a conflict too.
    record.version = 7;
    assert_eq!(
        store.save(&record, now).await.unwrap(),
        Saved::Conflict,
        "future version"
    );
    record.version = 1;
    assert_eq!(
        store.save(&record, now).await.unwrap(),
        Saved::Saved { version: 2 }
    );
}

/// `save_shared` keeps the rules of `save`. On `Saved` the caller's record
/// carries the new version; a copy the caller shares is never changed
/// (the store may keep the record itself, but not alter another's);
/// `Conflict` and `Gone` leave the record as it was.
///
/// # Panics
///
/// If the store breaks the rule.
///
/// # Example
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// keepsake::store::conformance::save_shared_is_save(&keepsake::store::MemoryStore::new()).await;
/// # });
/// ```
pub async fn save_shared_is_save<S: SessionStore>(store: &S) {
    let now = base();
    let mut record = Arc::new(record(now));
    store.create(&record).await.unwrap();
    Arc::make_mut(&mut record).data.insert("n".into(), json!(2));
    let before = Arc::clone(&record);
    assert_eq!(
        store.save_shared(&mut record, now).await.unwrap(),
        Saved::Saved { version: 1 }
    );
    assert_eq!(record.version, 1, "the caller's record has the new version");
    assert_eq!(before.version, 0, "a shared copy is left alone");
    let loaded = store.load_shared(&record.id, now).await.unwrap();
    assert_eq!(loaded.as_deref(), Some(&*record), "stored as saved");
    // The copy from before is stale now; the next save from `record` is not.
    let mut stale = before;
    assert_eq!(
        store.save_shared(&mut stale, now).await.unwrap(),
        Saved::Conflict,
        "stale version"
    );
    assert_eq!(stale.version, 0, "a conflict changes nothing");
    assert_eq!(
        store.save_shared(&mut record, now).await.unwrap(),
        Saved::Saved { version: 2 }
    );
    assert!(store.delete(&record.id).await.unwrap());
    assert_eq!(
        store.save_shared(&mut record, now).await.unwrap(),
        Saved::Gone,
        "save after delete"
    );
    assert_eq!(record.version, 2, "gone changes nothing");
    assert_eq!(
        store.load(&record.id, now).await.unwrap(),
        None,
        "not resurrected"
    );
}

/// A save after a delete is `Gone` and brings nothing back.
///
/// # Panics
///
/// If the store breaks the rule.
///
/// # Example
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// keepsake::store::conformance::no_resurrection(&keepsake::store::MemoryStore::new()).await;
/// # });
/// ```
pub async fn no_resurrection<S: SessionStore>(store: &S) {
    let now = base();
    let record = record(now);
    store.create(&record).await.unwrap();
    assert!(
        store.delete(&record.id).await.unwrap(),
        "delete an existing record"
    );
    assert!(
        !store.delete(&record.id).await.unwrap(),
        "delete again: nothing there"
    );
    assert_eq!(
        store.save(&record, now).await.unwrap(),
        Saved::Gone,
        "save after delete"
    );
    assert_eq!(
        store.touch(&record.id, 0, now + 10, now).await.unwrap(),
        Touched::Gone,
        "touch after delete"
    );
    assert_eq!(
        store.load(&record.id, now).await.unwrap(),
        None,
        "not resurrected"
    );
    // Never saved at all: gone too, and not created by the save.
    let never = self::record(now);
    assert_eq!(
        store.save(&never, now).await.unwrap(),
        Saved::Gone,
        "save of an unknown id"
    );
    assert_eq!(
        store.load(&never.id, now).await.unwrap(),
        None,
        "save must not create"
    );
}

/// `delete_if_version` deletes only the version asked for, and tells a
/// newer version (`Conflict`, nothing deleted) from a missing record
/// (`Gone`); the per-user index forgets a record deleted this way.
///
/// # Panics
///
/// If the store breaks the rule.
///
/// # Example
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// keepsake::store::conformance::delete_if_version_is_compare_and_delete(&keepsake::store::MemoryStore::new()).await;
/// # });
/// ```
pub async fn delete_if_version_is_compare_and_delete<S: SessionStore>(store: &S) {
    let now = base();
    let owner = user("cad");
    let mut record = record(now);
    record.user = Some(owner.clone());
    store.create(&record).await.unwrap();
    assert_eq!(
        store.save(&record, now).await.unwrap(),
        Saved::Saved { version: 1 }
    );
    assert_eq!(
        store.delete_if_version(&record.id, 0).await.unwrap(),
        Deleted::Conflict,
        "an older version"
    );
    assert_eq!(
        store.delete_if_version(&record.id, 2).await.unwrap(),
        Deleted::Conflict,
        "a newer version"
    );
    assert!(
        store.load(&record.id, now).await.unwrap().is_some(),
        "a conflict deletes nothing"
    );
    assert_eq!(
        store.delete_if_version(&record.id, 1).await.unwrap(),
        Deleted::Deleted,
        "the stored version"
    );
    assert_eq!(store.load(&record.id, now).await.unwrap(), None, "deleted");
    assert_eq!(
        store.delete_if_version(&record.id, 1).await.unwrap(),
        Deleted::Gone,
        "nothing left to delete"
    );
    assert_eq!(
        store.save(&record, now).await.unwrap(),
        Saved::Gone,
        "no resurrection after a compare-and-delete"
    );
    assert!(
        store.list_user(&owner, now).await.unwrap().is_empty(),
        "the user's index forgets it"
    );
}

/// A record is there until the second before its deadline and gone at it,
/// for loads, saves and touches.
///
/// # Panics
///
/// If the store breaks the rule.
///
/// # Example
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// keepsake::store::conformance::expiry_at_the_second(&keepsake::store::MemoryStore::new()).await;
/// # });
/// ```
pub async fn expiry_at_the_second<S: SessionStore>(store: &S) {
    let now = base();
    let record = record(now); // idle deadline: now + 60
    store.create(&record).await.unwrap();
    assert!(
        store.load(&record.id, now + 59).await.unwrap().is_some(),
        "alive at deadline - 1"
    );
    assert_eq!(
        store.load(&record.id, now + 60).await.unwrap(),
        None,
        "gone at the deadline"
    );
    assert_eq!(
        store.save(&record, now + 60).await.unwrap(),
        Saved::Gone,
        "save at the deadline"
    );
    assert_eq!(
        store
            .touch(&record.id, 0, now + 120, now + 60)
            .await
            .unwrap(),
        Touched::Gone,
        "touch at the deadline"
    );
    // The absolute deadline ends a session however recently it was touched.
    let mut short = Record::new(Id::random(), now, Some(60), 100);
    short.data.insert("k".into(), json!(true));
    store.create(&short).await.unwrap();
    for at in (now + 50..now + 100).step_by(10) {
        assert_eq!(
            store.touch(&short.id, 0, at + 60, at).await.unwrap(),
            Touched::Touched,
            "touch at {at}"
        );
    }
    assert!(
        store.load(&short.id, now + 99).await.unwrap().is_some(),
        "alive before the absolute deadline"
    );
    assert_eq!(
        store.load(&short.id, now + 100).await.unwrap(),
        None,
        "touches cannot pass the absolute deadline"
    );
}

/// `touch` moves only the idle deadline (never past the absolute one), and
/// only while the record is at the version given; data and version stay.
///
/// # Panics
///
/// If the store breaks the rule.
///
/// # Example
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// keepsake::store::conformance::touch_moves_only_the_idle_deadline(&keepsake::store::MemoryStore::new()).await;
/// # });
/// ```
pub async fn touch_moves_only_the_idle_deadline<S: SessionStore>(store: &S) {
    let now = base();
    let record = record(now);
    store.create(&record).await.unwrap();
    assert_eq!(
        store
            .touch(&record.id, 0, now + 90, now + 30)
            .await
            .unwrap(),
        Touched::Touched
    );
    let loaded = store
        .load(&record.id, now + 89)
        .await
        .unwrap()
        .expect("touched forward");
    assert_eq!(loaded.idle_deadline, Some(now + 90));
    assert_eq!(
        (loaded.version, &loaded.data),
        (record.version, &record.data),
        "touch changes nothing else"
    );
    store
        .touch(&record.id, 0, now + 1_000_000, now + 40)
        .await
        .unwrap();
    let loaded = store
        .load(&record.id, now + 40)
        .await
        .unwrap()
        .expect("present");
    assert_eq!(
        loaded.idle_deadline,
        Some(record.absolute_deadline),
        "clamped to the absolute deadline"
    );
    // Saved since, without an idle limit: a touch from the older version
    // changes nothing, and says so.
    let mut saved = loaded;
    saved.idle_timeout = None;
    saved.idle_deadline = None;
    assert_eq!(
        store.save(&saved, now + 50).await.unwrap(),
        Saved::Saved { version: 1 }
    );
    assert_eq!(
        store
            .touch(&record.id, 0, now + 110, now + 50)
            .await
            .unwrap(),
        Touched::Outdated,
        "touch from an older version"
    );
    let loaded = store
        .load(&record.id, now + 200)
        .await
        .unwrap()
        .expect("the save's deadline stands");
    assert_eq!(
        (loaded.version, loaded.idle_deadline),
        (1, None),
        "an outdated touch changes nothing"
    );
    assert_eq!(
        store
            .touch(&record.id, 1, now + 260, now + 200)
            .await
            .unwrap(),
        Touched::Touched,
        "touch at the current version"
    );
}

/// `list_user` and `delete_user` see exactly the user's live sessions,
/// following user changes made by `save`.
///
/// # Panics
///
/// If the store breaks the rule.
///
/// # Example
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// keepsake::store::conformance::per_user_index(&keepsake::store::MemoryStore::new()).await;
/// # });
/// ```
pub async fn per_user_index<S: SessionStore>(store: &S) {
    let now = base();
    let (ada, bob) = (user("ada"), user("bob"));
    let mut ids = BTreeSet::new();
    let mut last = None;
    for _ in 0..3 {
        let mut record = record(now);
        record.user = Some(ada.clone());
        store.create(&record).await.unwrap();
        ids.insert(record.id);
        last = Some(record);
    }
    // A save that keeps the user keeps the session in the user's index
    // (checked with the listings below).
    let mut again = last.unwrap();
    again.data.insert("n".into(), 1.into());
    assert!(matches!(
        store.save(&again, now).await.unwrap(),
        Saved::Saved { .. }
    ));
    let mut moving = record(now);
    moving.user = Some(bob.clone());
    store.create(&moving).await.unwrap();
    let listed = |records: Vec<Record>| records.into_iter().map(|r| r.id).collect::<BTreeSet<_>>();
    assert_eq!(
        listed(store.list_user(&ada, now).await.unwrap()),
        ids,
        "ada's sessions"
    );
    // A save can move a session to another user.
    moving.user = Some(ada.clone());
    assert!(matches!(
        store.save(&moving, now).await.unwrap(),
        Saved::Saved { .. }
    ));
    ids.insert(moving.id);
    assert_eq!(
        listed(store.list_user(&ada, now).await.unwrap()),
        ids,
        "after the move"
    );
    assert!(
        store.list_user(&bob, now).await.unwrap().is_empty(),
        "bob has none left"
    );
    // Expired sessions are not listed.
    assert!(
        store.list_user(&ada, now + 60).await.unwrap().is_empty(),
        "expired are not listed"
    );
    assert_eq!(
        store.delete_user(&ada).await.unwrap(),
        4,
        "log out everywhere"
    );
    assert!(store.list_user(&ada, now).await.unwrap().is_empty());
    for id in &ids {
        assert_eq!(
            store.load(id, now).await.unwrap(),
            None,
            "deleted with the user"
        );
    }
    assert_eq!(store.delete_user(&ada).await.unwrap(), 0, "nothing left");
}

/// `purge_expired` removes expired records and keeps live ones.
///
/// # Panics
///
/// If the store breaks the rule.
///
/// # Example
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// keepsake::store::conformance::purge_removes_only_expired(&keepsake::store::MemoryStore::new()).await;
/// # });
/// ```
pub async fn purge_removes_only_expired<S: SessionStore>(store: &S) {
    let now = base();
    let short = Record::new(Id::random(), now, None, 10);
    let long = Record::new(Id::random(), now, None, 3_600);
    store.create(&short).await.unwrap();
    store.create(&long).await.unwrap();
    let purged = store.purge_expired(now + 10).await.unwrap();
    assert!(
        purged >= 1,
        "at least the short record is purged (got {purged})"
    );
    assert_eq!(
        store.load(&short.id, now).await.unwrap(),
        None,
        "purged records are gone even for an earlier clock"
    );
    assert!(
        store.load(&long.id, now + 10).await.unwrap().is_some(),
        "live records stay"
    );
}

/// Records of about 100 KB and keys and values in any script round-trip.
///
/// # Panics
///
/// If the store breaks the rule.
///
/// # Example
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// keepsake::store::conformance::large_records_and_unicode(&keepsake::store::MemoryStore::new()).await;
/// # });
/// ```
pub async fn large_records_and_unicode<S: SessionStore>(store: &S) {
    let now = base();
    let mut record = record(now);
    record.data.insert("big".into(), json!("x".repeat(100_000)));
    record.data.insert(
        "ключ 🔑 鍵".into(),
        json!({"emoji": "🍪", "nul": "a\u{0}b", "nested": [1, 2.5, null]}),
    );
    record.user = Some("usér ✓".into());
    store.create(&record).await.unwrap();
    assert_eq!(
        store.load(&record.id, now).await.unwrap().as_ref(),
        Some(&record)
    );
    store.delete(&record.id).await.unwrap();
}

/// Values nested as deep as [`Session::insert`](crate::session::Session::insert)
/// takes (100 levels of arrays or objects) load back after a create and
/// after a save: the record's own levels around them must still fit the
/// store's JSON reader.
///
/// # Panics
///
/// If the store breaks the rule.
///
/// # Example
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// keepsake::store::conformance::deeply_nested_values_round_trip(&keepsake::store::MemoryStore::new()).await;
/// # });
/// ```
pub async fn deeply_nested_values_round_trip<S: SessionStore>(store: &S) {
    let depth = crate::session::MAX_VALUE_DEPTH;
    let arrays = (1..depth).fold(json!([1]), |inner, _| json!([inner]));
    let objects = (1..depth).fold(json!({"k": "v"}), |inner, _| json!({ "k": inner }));
    let now = base();
    let mut record = record(now);
    record.data.insert("arrays".into(), arrays);
    store.create(&record).await.unwrap();
    let loaded = store.load(&record.id, now).await.unwrap();
    assert_eq!(loaded.as_ref(), Some(&record), "{depth} levels of arrays");
    record.data.insert("objects".into(), objects);
    assert_eq!(
        store.save(&record, now).await.unwrap(),
        Saved::Saved { version: 1 }
    );
    let loaded = store.load(&record.id, now).await.unwrap().expect("saved");
    assert_eq!(loaded.data, record.data, "{depth} levels of objects");
    store.delete(&record.id).await.unwrap();
}

/// Numbers in session data load back exactly: floats bit for bit and as
/// floats (those that need all 17 digits, the largest, the smallest,
/// subnormals, `-0.0`, whole floats written with an exponent such as
/// `1e16`) and integers at the ends of `i64` and `u64`. (PostgreSQL's JSONB
/// keeps numbers as decimals, which lose `-0.0`'s sign and print `1e16` as
/// an integer; a store on it has to keep such data another way.)
///
/// # Panics
///
/// If the store breaks the rule.
///
/// # Example
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// keepsake::store::conformance::numbers_round_trip_exactly(&keepsake::store::MemoryStore::new()).await;
/// # });
/// ```
pub async fn numbers_round_trip_exactly<S: SessionStore>(store: &S) {
    let floats = [
        0.1 + 0.2,
        1.0 / 3.0,
        -2.0_f64.sqrt(),
        1.0715660391465826e-75,
        6.666666666666667e59,
        f64::MAX,
        f64::MIN,
        f64::MIN_POSITIVE,
        f64::EPSILON,
        5e-324,
        -2.225073858507201e-308,
        1e300,
        -0.0,
        1e16,
        -1e18,
        1.2345678901234567e19,
    ];
    let now = base();
    let mut record = record(now);
    record
        .data
        .insert("ints".into(), json!([i64::MIN, i64::MAX, u64::MAX, -1]));
    store.create(&record).await.unwrap();
    let loaded = store.load(&record.id, now).await.unwrap().unwrap();
    assert_eq!(loaded.data["ints"], record.data["ints"], "integers changed");
    store.delete(&record.id).await.unwrap();
    // One record per float, so that a store that has to treat one of them
    // apart cannot hide how it stores the others.
    for float in floats {
        let mut record = self::record(now);
        record.data.insert("float".into(), json!(float));
        store.create(&record).await.unwrap();
        let loaded = store.load(&record.id, now).await.unwrap().unwrap();
        let back = &loaded.data["float"];
        assert!(back.is_f64(), "the float {float:e} loaded back as {back}");
        let back = back.as_f64().unwrap_or_default();
        assert_eq!(
            float.to_bits(),
            back.to_bits(),
            "the float {float:e} loaded back as {back:e}"
        );
        store.delete(&record.id).await.unwrap();
    }
}

/// `count` sessions created and loaded back.
///
/// # Panics
///
/// If the store breaks the rule.
///
/// # Example
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// keepsake::store::conformance::many_sessions(&keepsake::store::MemoryStore::new(), 100).await;
/// # });
/// ```
pub async fn many_sessions<S: SessionStore>(store: &S, count: usize) {
    let now = base();
    let records: Vec<Record> = (0..count).map(|_| record(now)).collect();
    for record in &records {
        assert_eq!(store.create(record).await.unwrap(), Created::Created);
    }
    for record in &records {
        assert!(
            store.load(&record.id, now).await.unwrap().is_some(),
            "all {count} are there"
        );
    }
    for record in &records {
        store.delete(&record.id).await.unwrap();
    }
}

/// Many saves of the same version at once: exactly one wins.
///
/// # Panics
///
/// If the store breaks the rule.
///
/// # Example
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// keepsake::store::conformance::concurrent_saves_one_winner_per_version(&keepsake::store::MemoryStore::new()).await;
/// # });
/// ```
pub async fn concurrent_saves_one_winner_per_version<S: SessionStore>(store: &S) {
    let now = base();
    let record = record(now);
    store.create(&record).await.unwrap();
    let saves = (0..16).map(|i| {
        let mut mine = record.clone();
        mine.data.insert("writer".into(), json!(i));
        async move { store.save(&mine, now).await.unwrap() }
    });
    let outcomes = join_all(saves).await;
    let winners = outcomes
        .iter()
        .filter(|o| matches!(o, Saved::Saved { .. }))
        .count();
    assert_eq!(winners, 1, "one save per version wins: {outcomes:?}");
    assert_eq!(
        store
            .load(&record.id, now)
            .await
            .unwrap()
            .expect("present")
            .version,
        1
    );
}

/// Polls all futures together on the current task (no extra dependency).
async fn join_all<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut pending: Vec<_> = futures.map(|f| Some(Box::pin(f))).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (slot, output) in pending.iter_mut().zip(outputs.iter_mut()) {
            if let Some(future) = slot {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => {
                        *output = Some(value);
                        *slot = None;
                    }
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}
