//! keepsake: web sessions and cookies for Rust.
//!
//! HTTP is stateless; a web app remembers its visitors between requests with
//! cookies. keepsake gives a Rust web app the pieces to do that safely:
//!
//! - [`key`]: master secrets, per-purpose subkeys derived with HKDF-SHA256,
//!   and a [`KeyRing`](key::KeyRing) for rotation (one current key, any
//!   number of verify-only fallbacks; a value that a fallback verified says
//!   so, so it can be re-issued).
//! - [`codec`]: protected cookie values, *signed* (HMAC-SHA256, readable,
//!   tamper-proof) or *sealed* (AES-256-GCM-SIV, encrypted and
//!   authenticated). Each value is bound to its cookie name and namespace and
//!   carries its issue time and expiry inside the protected part. Formats are
//!   versioned and pinned by known-answer tests.
//! - [`cookies`]: the request's cookies and the response's `Set-Cookie`s, a
//!   builder with secure defaults that refuses invalid attribute combinations
//!   and cookies over 4096 bytes, and signed/private views that store any
//!   serde value with its own expiry (30 days by default).
//!
//! - [`session`] and [`middleware`]: a dict-like [`Session`](session::Session)
//!   in every request, from a tower [`SessionLayer`](middleware::SessionLayer)
//!   (axum, hyper, tonic). Sessions live in a server-side
//!   [store](store::SessionStore) with only a signed id in the cookie, or
//!   entirely in a signed or sealed cookie. Idle and absolute expiry are
//!   enforced on the server; the store is read only when the handler uses the
//!   session and written only when something changed.
//! - [`store`]: the store trait, [`MemoryStore`](store::MemoryStore), and
//!   with their features the SQLite, Redis and PostgreSQL stores, all held
//!   to one conformance suite.
//!
//! # A complete axum app
//!
//! ```
//! use axum::{body::Body, routing::{get, post}, Router};
//! use http::{header, Request};
//! use keepsake::{
//!     key::{Key, KeyRing},
//!     middleware::SessionLayer,
//!     session::{Session, SessionError},
//!     store::MemoryStore,
//! };
//! use tower_service::Service as _;
//!
//! async fn visit(session: Session) -> Result<String, SessionError> {
//!     if session.expired().await? {
//!         return Ok("your session expired".to_owned());
//!     }
//!     // An atomic increment: concurrent requests each count.
//!     let visits: u64 = session.update("visits", |n: Option<u64>| n.unwrap_or(0) + 1).await?;
//!     Ok(format!("visit {visits}"))
//! }
//!
//! async fn login(session: Session) -> Result<&'static str, SessionError> {
//!     // A new id at login: no session fixation. (If another user was logged
//!     // in on this session, `reset()` instead: see `Session::cycle_id`.)
//!     session.cycle_id().await?;
//!     session.insert("user", "ada").await?;
//!     Ok("welcome")
//! }
//!
//! async fn logout(session: Session) -> Result<&'static str, SessionError> {
//!     session.flush().await?; // deletes the record and the cookie
//!     Ok("bye")
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // In an app: `SessionLayer::from_env(MemoryStore::new())?.build()?` reads
//! // KEEPSAKE_SECRET and the other KEEPSAKE_* settings.
//! let layer = SessionLayer::with_store(MemoryStore::new(), KeyRing::new(Key::generate())).build()?;
//! let mut app = Router::new()
//!     .route("/", get(visit))
//!     .route("/login", post(login))
//!     .route("/logout", post(logout))
//!     .layer(layer);
//!
//! // First visit: a new session and its cookie.
//! let response = app.call(Request::get("/").body(Body::empty())?).await?;
//! let set_cookie = response.headers()[header::SET_COOKIE].to_str()?.to_owned();
//! assert!(set_cookie.starts_with("session=s1."));
//! assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("Secure"));
//! assert_eq!(response.headers()[header::VARY], "Cookie");
//! let cookie = set_cookie.split(';').next().unwrap().to_owned();
//!
//! // Second visit with the cookie: the counter goes on, no new cookie.
//! let request = Request::get("/").header(header::COOKIE, &cookie).body(Body::empty())?;
//! let response = app.call(request).await?;
//! assert!(response.headers().get(header::SET_COOKIE).is_none());
//! let body = axum::body::to_bytes(response.into_body(), 1024).await?;
//! assert_eq!(body, "visit 2");
//! # Ok(())
//! # }
//! ```
//!
//! # Getting started
//!
//! Make a secret once (`keepsake keygen`), keep it out of the code, and load
//! it at start-up. A missing secret is an error that says how to make one:
//!
//! ```
//! use keepsake::key::{Key, KeyError, KeyRing};
//!
//! let err = Key::from_env("MY_APP_SECRET_UNSET").unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "the environment variable MY_APP_SECRET_UNSET is not set; make a secret \
//!      with `keepsake keygen` and export it as MY_APP_SECRET_UNSET"
//! );
//! # let _: KeyError = err;
//! ```
//!
//! Then read and write cookies through a jar:
//!
//! ```
//! use keepsake::{cookies::{Cookie, CookieJar}, key::{Key, KeyRing}};
//!
//! let ring = KeyRing::new(Key::generate());
//! let mut jar = CookieJar::parse("lang=en");
//! assert_eq!(jar.get("lang"), Some("en"));
//!
//! // A signed value: readable by the browser, but any change is detected.
//! jar.signed_mut(&ring).insert("theme", "dark")?;
//! // A private value: encrypted too.
//! jar.private_mut(&ring).insert("cart", &[3, 1, 4])?;
//!
//! let set_cookie: Vec<String> = jar.delta().map(|c| c.to_string()).collect();
//! assert!(set_cookie[0].starts_with("theme=s1."));
//! assert!(set_cookie[0].ends_with("; HttpOnly; SameSite=Lax; Secure; Path=/; Max-Age=2592000"));
//! # Ok::<(), keepsake::cookies::CookieError>(())
//! ```
//!
//! # Concurrent requests
//!
//! One visitor often has several requests in flight: two tabs, a page and
//! its XHRs, a double-clicked button. Most session layers load the session,
//! let the handler change it, and write the whole session back: the last
//! writer wins, so one tab's change silently overwrites the other's, and a
//! slow request that finishes after a logout writes the session back to
//! life. keepsake's server-side sessions guarantee instead:
//!
//! | | last writer wins | keepsake |
//! |---|---|---|
//! | two requests set *different* keys | one write lost | both kept |
//! | two requests set the *same* key with [`insert`](session::Session::insert) | the later save wins | the later save wins (a set is a set) |
//! | N requests [`update`](session::Session::update) one key (a counter) | increments lost | exactly N applied |
//! | a request saves after a logout, "log out everywhere" or `cycle_id` | session resurrected | nothing saved; the cookie is removed if the request was a page load |
//! | two requests `cycle_id` one session at once (both in flight: a double-clicked login) | two live sessions | exactly one new id; the other request's changes are dropped |
//! | one request [`pop`](session::Session::pop)s a flash message while another stores a new one | the new one lost | the new one kept |
//!
//! How: every stored session has a version. A request keeps its changes as
//! a list (set, update, remove, pop, clear, user, expiry) as well as applying
//! them to its copy. Its save is a compare-and-set on the version. If
//! another request saved in between, the save conflicts; the middleware
//! loads the newer copy, replays this request's list on top of it (an
//! update runs its function again, on the newer value) and saves again,
//! up to [`max_replays`](middleware::SessionLayerBuilder::max_replays)
//! times, then answers 503 and saves nothing: never a silent loss. A save
//! that finds the session deleted is *gone*: the changes are dropped, the
//! response to a page load removes the cookie (any other request may race
//! a login: see [`Session::cycle_id`](session::Session::cycle_id)), and a
//! `tracing` event at INFO level
//! ("session ended before this request saved; changes dropped") tells the
//! app after the fact. A `cycle_id` stores the new id first, then deletes
//! the old one only if it still holds the version the request loaded
//! ([`delete_if_version`](store::SessionStore::delete_if_version)); a write
//! that landed on the old id meanwhile is carried over.
//!
//! There is no global lock. Within one app server, saves of *one* session
//! take turns (a lock per session, held only for the save), and the lock
//! keeps the record its last save stored, so a request whose copy is older
//! replays its list on that record and saves once, without a conflict and
//! a reload; between app servers the store's compare-and-set alone orders
//! them. What is guaranteed is per key: the final value of a key is what
//! the requests' changes to it give in the order their saves landed,
//! except that a `pop` removes a key only if it still holds the value the
//! `pop` returned (a value stored meanwhile, which nobody read, is kept).
//! Reads within a request see that request's copy, not other requests'
//! later writes. A `Session` clone kept past the response (in a spawned
//! task) gets [`SessionError::Finished`](session::SessionError::Finished):
//! the request's changes were saved when its response was made.
//!
//! Client-side (cookie) sessions have no shared copy to compare against:
//! the browser keeps whichever `Set-Cookie` arrives last, so there the
//! last writer does win. Use a store where this matters.
//!
//! Measured through real HTTP on 127.0.0.1 (`tests/concurrency.rs`): 100
//! concurrent `update` increments from one cookie ended exactly 100 higher
//! in 100 of 100 trials on each of memory, SQLite, Redis and PostgreSQL,
//! also through two app servers sharing the store; 1,000 slow writes
//! overlapping a logout or login per store brought back 0 sessions.
//!
//! # Security model
//!
//! - **Secrets.** At least 256 bits, from a CSPRNG. The master secret never
//!   keys anything directly; `Debug` shows only a fingerprint; equality is
//!   constant-time.
//! - **Binding.** A value verifies only under the cookie name and namespace
//!   it was made for, so it cannot be moved to another cookie.
//! - **Expiry on the server.** The expiry is inside the protected payload and
//!   checked on every read, whatever the browser does with `Max-Age`.
//! - **No oracle.** Verification compares tags in constant time, and all
//!   errors for bad values depend only on public data.
//! - **Never a panic on input.** Every decoder returns a typed error for any
//!   input; the property tests feed them arbitrary text and every single-byte
//!   mutation of valid values.
//!
//! # Crate features
//!
//! | feature | default | enables |
//! |---|---|---|
//! | `axum` | yes | the [axum module](crate::axum): [`Session`](session::Session), `Option<Session>` and [`CookieJar`](cookies::CookieJar) as axum handler arguments; [`CookieJar`](cookies::CookieJar), [`SessionError`](session::SessionError) and [`CookieError`](cookies::CookieError) as responses |
//! | `sqlite` | no | `store::SqliteStore`: sessions in an embedded SQLite file (bundled SQLite, no system library needed; WAL), and `sqlite://` URLs in [`AnyStore`](store::AnyStore) |
//! | `redis` | no | `store::RedisStore`: sessions in Redis 7+, one command per read, one script per write, and `redis://` URLs in [`AnyStore`](store::AnyStore) |
//! | `postgres` | no | `store::PostgresStore`: sessions in PostgreSQL, compare-and-set on a version column, and `postgres://` URLs in [`AnyStore`](store::AnyStore) |
//! | `interop` | no | `codec::interop`: read and write Flask, Starlette and Django session cookies with the same secret key, and `SessionLayer::with_interop` to share sessions with such an app (zlib through the C zlib, so compressed values match Python's byte for byte) |
//! | `test-suite` | no | `store::conformance`: the checks every store must pass, for third-party stores |
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod axum;
pub mod codec;
pub mod cookies;
pub mod key;
pub mod middleware;
pub mod session;
pub mod store;

/// The README's examples, run as doc tests so they cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
