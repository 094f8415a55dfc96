//! The [`Session`] handle a request handler sees, its errors, its expiry
//! settings and the clock.
//!
//! A `Session` is a cheap, cloneable, `Send + Sync` handle to one visitor's
//! session, placed in every request by the
//! [`SessionLayer`](crate::middleware::SessionLayer). It works like a
//! dictionary of JSON values with typed access through serde. Nothing is read
//! from the store until the handler first uses the session, and nothing is
//! written unless the handler changed something (or the idle deadline needs
//! moving).
//!
//! Every change is recorded as a change (set a key, remove a key, clear) as
//! well as applied, so that when another request saved the same session in
//! the meantime, the middleware reloads the session and replays this
//! request's changes on top instead of overwriting the other request's.
//! What is replayed is what the handler asked for: [`insert`](Session::insert)
//! sets the key whatever it holds by then, [`update`](Session::update) runs
//! its function again on the newer value, [`remove`](Session::remove) and
//! [`clear`](Session::clear) remove whatever is there, and
//! [`pop`](Session::pop) removes the key only if it still holds the value
//! `pop` returned: a value another request stored in the meantime was read
//! by nobody, and is kept. So the final value of a key is what the
//! requests' changes give in the order their saves landed, except that a
//! `pop` never deletes a value it did not return.
//!
//! The handle belongs to one request. The middleware saves the session
//! when the handler answers (unless it answers 5xx or 408, a request that
//! failed or was not finished: then nothing is saved); from then on every
//! call on the handle (or any of its clones, such as one moved into a
//! spawned task) fails with [`SessionError::Finished`], because a change
//! made then could no longer be saved.
//!
//! # Example
//!
//! ```
//! use keepsake::session::{Session, SessionError};
//!
//! async fn handler(session: Session) -> Result<String, SessionError> {
//!     // `update`, not `get` then `insert`: concurrent requests each count.
//!     let visits: u64 = session.update("visits", |n: Option<u64>| n.unwrap_or(0) + 1).await?;
//!     Ok(format!("visit number {visits}"))
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let session = Session::detached(); // as in a unit test
//! assert_eq!(handler(session.clone()).await?, "visit number 1");
//! assert_eq!(handler(session).await?, "visit number 2");
//! # Ok::<(), SessionError>(()) }).unwrap();
//! ```

mod clock;
pub(crate) mod context;

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    task::Poll,
    time::Duration,
};

use futures_util::lock::{Mutex, MutexGuard};
use http::HeaderValue;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use self::context::{Backend, Context, Incoming};
pub use self::{
    clock::{Clock, ManualClock, SystemClock},
    context::BadCookie,
};
use crate::{
    codec::MAX_COOKIE_SIZE,
    store::{Created, Deleted, Id, Record, Saved, StoreError, StoreErrorKind, Touched},
};

/// Why a session operation failed.
///
/// # Example
///
/// ```
/// use keepsake::session::SessionError;
///
/// let err = SessionError::TooLarge { size: 5000, limit: 4096 };
/// assert!(err.to_string().contains("4096"));
/// assert!(SessionError::Finished.to_string().contains("not saved"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The session store failed or timed out; the middleware answers 503.
    #[error("the session store is unavailable: {0}")]
    Unavailable(#[source] StoreError),
    /// A value could not be turned into JSON or nests arrays and objects
    /// more than 100 deep ([`Session::insert`], [`Session::update`]), or a
    /// stored value is not of the type asked for. Its message is serde's, which may quote the
    /// stored value: mind that before logging it where session data must
    /// not go.
    #[error("session value `{key}`: {source}")]
    Json {
        /// The key.
        key: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// With a Flask, Starlette or Django session cookie: the framework
    /// could not read the session back after this change (a value its
    /// serializer has no form for), or the change is one its cookie cannot
    /// carry ([`Session::set_expiry`], [`Session::set_user`]; see
    /// [`SessionLayer::with_interop`](crate::middleware::SessionLayer::with_interop)).
    /// The change was not made.
    #[error("the session cannot be written in the framework's cookie format: {0}")]
    Unwritable(String),
    /// With client-side sessions: the change would make the session cookie
    /// larger than browsers keep. The change was not made.
    #[error(
        "the session cookie would be {size} bytes, over the {limit}-byte limit \
         browsers keep; store less in the session, or use a server-side store"
    )]
    TooLarge {
        /// The cookie's size with the change, name plus value.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// [`Session::set_user`] with a user that holds the character U+0000,
    /// which PostgreSQL cannot store (refused with every store, so that an
    /// app behaves the same on each). The change was not made.
    #[error("a session's user cannot contain the character U+0000")]
    InvalidUser,
    /// The response to the session's request was already made (the
    /// handler answered and the middleware saved the session), and the
    /// handle was used afterwards, typically from a task that was given a
    /// clone of it. Nothing was read or changed: a change made now could not
    /// be saved. Finish the session work before the handler returns (await
    /// the task). As a response (with the `axum` feature), a 500.
    #[error(
        "the response to this session's request was already made: the session can no \
         longer be read or changed, and this change was not saved (use the session \
         only before the handler returns; await any task that uses it)"
    )]
    Finished,
    /// [`Session::set_expiry`] was given an expiry that cannot work; the
    /// text says which rule it breaks. The session is left unchanged. The
    /// rules, on whole seconds (a sub-second part is dropped), are those the
    /// layer's builder applies to its settings:
    ///
    /// - the lifetime and the idle timeout are at least one second (such a
    ///   session would end as it is answered, and its cookie be deleted at
    ///   once);
    /// - they are at most [`Expiry::MAX_LIFETIME`], 400 days: browsers keep
    ///   no cookie longer, so the session would outlive its cookie;
    /// - the idle timeout is no longer than the lifetime.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use keepsake::session::{Expiry, Session, SessionError};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let forever = Expiry::persistent(Duration::MAX);
    /// let err = Session::detached().set_expiry(forever).await.unwrap_err();
    /// assert!(matches!(err, SessionError::InvalidExpiry(_)));
    /// assert!(err.to_string().contains("at most 400 days"), "{err}");
    /// # });
    /// ```
    #[error("invalid session expiry: {0}")]
    InvalidExpiry(&'static str),
}

/// How long a session lasts; set for all sessions on the layer, or for one
/// session with [`Session::set_expiry`] ("remember me").
///
/// Sessions count time in whole seconds: the lifetime and the idle timeout
/// lose any sub-second part (1999 ms is one second). [`Session::set_expiry`]
/// refuses a lifetime or idle timeout under one second or over
/// [`MAX_LIFETIME`](Self::MAX_LIFETIME) (400 days), and an idle timeout
/// longer than the lifetime (mind the default 30 minutes with a shorter
/// lifetime: set [`with_idle`](Self::with_idle) too).
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use keepsake::session::Expiry;
///
/// let remember_me = Expiry::persistent(Duration::from_secs(30 * 86_400)).with_idle(None);
/// assert!(remember_me.is_persistent());
/// assert_eq!(remember_me.idle(), None);
/// assert_eq!(Expiry::browser_session(Duration::from_secs(60)).absolute(), Duration::from_secs(60));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    idle: Option<Duration>,
    absolute: Duration,
    persistent: bool,
}

impl Expiry {
    /// A cookie that the browser forgets when it closes (no `Max-Age`), ending
    /// on the server after `absolute`, with a 30-minute idle timeout.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// let expiry = keepsake::session::Expiry::browser_session(Duration::from_secs(3_600));
    /// assert!(!expiry.is_persistent());
    /// assert_eq!(expiry.idle(), Some(Duration::from_secs(1_800)));
    /// ```
    pub const fn browser_session(absolute: Duration) -> Self {
        Self {
            idle: Some(Duration::from_secs(30 * 60)),
            absolute,
            persistent: false,
        }
    }

    /// A cookie kept across browser restarts, with a 30-minute idle timeout
    /// (not the layer's; change it with [`with_idle`](Self::with_idle)). The
    /// cookie's `Max-Age` runs to the session's absolute deadline with a
    /// store, and to its next deadline, idle or absolute, in a client-side
    /// session (whose cookie is sent again as the idle deadline moves).
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// assert!(keepsake::session::Expiry::persistent(Duration::from_secs(60)).is_persistent());
    /// ```
    pub const fn persistent(absolute: Duration) -> Self {
        Self {
            idle: Some(Duration::from_secs(30 * 60)),
            absolute,
            persistent: true,
        }
    }

    /// Sets the idle timeout (`None`: none), in whole seconds (a sub-second
    /// part is dropped); at most the lifetime.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// let expiry = keepsake::session::Expiry::persistent(Duration::from_secs(60))
    ///     .with_idle(Some(Duration::from_secs(10)));
    /// assert_eq!(expiry.idle(), Some(Duration::from_secs(10)));
    /// ```
    #[must_use]
    pub const fn with_idle(mut self, idle: Option<Duration>) -> Self {
        self.idle = idle;
        self
    }

    /// The idle timeout.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// assert!(keepsake::session::Expiry::persistent(Duration::ZERO).idle().is_some());
    /// ```
    pub const fn idle(&self) -> Option<Duration> {
        self.idle
    }

    /// The absolute lifetime.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// assert_eq!(keepsake::session::Expiry::persistent(Duration::from_secs(9)).absolute().as_secs(), 9);
    /// ```
    pub const fn absolute(&self) -> Duration {
        self.absolute
    }

    /// Whether the cookie has a `Max-Age`.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// assert!(!keepsake::session::Expiry::browser_session(Duration::ZERO).is_persistent());
    /// ```
    pub const fn is_persistent(&self) -> bool {
        self.persistent
    }

    /// The longest lifetime and idle timeout a session can have: 400 days.
    /// Browsers keep no cookie longer (RFC 6265bis caps a cookie's
    /// `Max-Age` and `Expires` at 400 days from when it is set), so a
    /// session that lasted longer would outlive its cookie: the browser
    /// drops the cookie while the store keeps the record. The layer's
    /// builder and [`Session::set_expiry`] refuse anything longer.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// use keepsake::session::Expiry;
    ///
    /// assert_eq!(Expiry::MAX_LIFETIME, Duration::from_secs(400 * 86_400));
    /// ```
    pub const MAX_LIFETIME: Duration = Duration::from_secs(400 * 86_400);

    /// Why a lifetime or idle timeout over [`MAX_LIFETIME`](Self::MAX_LIFETIME)
    /// is refused, here and by the layer's builder.
    pub(crate) const TOO_LONG: &'static str = "the lifetime and the idle timeout can be at most \
         400 days: browsers keep no cookie longer (RFC 6265bis caps Max-Age and Expires at 400 \
         days), so the session would outlive its cookie";

    /// Whether a lifetime or idle timeout (whole seconds) exceeds
    /// [`MAX_LIFETIME`](Self::MAX_LIFETIME).
    pub(crate) fn over_max_lifetime(absolute: u64, idle: Option<u64>) -> bool {
        let longest = Self::MAX_LIFETIME.as_secs();
        absolute > longest || idle.is_some_and(|idle| idle > longest)
    }

    /// Why this expiry cannot be used, if it cannot (see
    /// [`SessionError::InvalidExpiry`]); on whole seconds.
    fn check(&self) -> Result<(), &'static str> {
        let absolute = self.absolute.as_secs();
        let idle = self.idle.map(|idle| idle.as_secs());
        if absolute == 0 || idle == Some(0) {
            return Err("the lifetime and the idle timeout must be at least one second");
        }
        if Self::over_max_lifetime(absolute, idle) {
            return Err(Self::TOO_LONG);
        }
        if idle.is_some_and(|idle| idle > absolute) {
            return Err(
                "the idle timeout (30 minutes unless set with `with_idle`) cannot be longer \
                 than the lifetime",
            );
        }
        Ok(())
    }
}

/// The store calls that save a request's session, and their outcome.
pub(crate) type SaveFuture = context::BoxFuture<'static, Result<Option<HeaderValue>, StoreError>>;

/// What [`Session::finish`] decided.
pub(crate) enum Finish {
    /// Without a store call: the `Set-Cookie` the response needs, if any.
    Now(Result<Option<HeaderValue>, StoreError>),
    /// The store calls still to make.
    Later(SaveFuture),
}

/// One change a request made, kept so it can be replayed on a newer copy of
/// the session.
pub(crate) enum Change {
    Set(String, Value),
    /// [`Session::update`]: the new value is computed from the current one,
    /// again on every replay.
    Update(String, Box<Updater>),
    Remove(String),
    /// [`Session::pop`]: removes the key only while it still holds the
    /// value `pop` returned, so a replay never deletes a value that another
    /// request stored and nobody read.
    RemoveIf(String, Value),
    Clear,
    /// [`Session::set_user`].
    User(Option<String>),
    /// [`Session::set_expiry`]: the new deadlines, as computed then.
    Expiry {
        absolute_deadline: u64,
        idle_timeout: Option<u64>,
        idle_deadline: Option<u64>,
        persistent: bool,
    },
}

/// The read-modify-write function of [`Session::update`], over JSON.
pub(crate) type Updater = dyn Fn(Option<&Value>) -> Result<Value, serde_json::Error> + Send + Sync;

impl fmt::Debug for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Set(key, _) => f.debug_tuple("Set").field(key).finish_non_exhaustive(),
            Self::Update(key, _) => f.debug_tuple("Update").field(key).finish_non_exhaustive(),
            Self::Remove(key) => f.debug_tuple("Remove").field(key).finish(),
            Self::RemoveIf(key, _) => f.debug_tuple("RemoveIf").field(key).finish_non_exhaustive(),
            Self::Clear => f.write_str("Clear"),
            Self::User(_) => f.write_str("User(..)"),
            Self::Expiry { .. } => f.write_str("Expiry { .. }"),
        }
    }
}

impl Change {
    /// The change that takes `record` back to what it is now once `self`
    /// is applied; `None` for a change that can only shrink it.
    fn undo(&self, record: &Record) -> Option<Self> {
        match self {
            Self::Set(key, _) | Self::Update(key, _) => Some(match record.data.get(key) {
                Some(value) => Self::Set(key.clone(), value.clone()),
                None => Self::Remove(key.clone()),
            }),
            Self::Remove(_) | Self::RemoveIf(..) | Self::Clear => None,
            Self::User(_) => Some(Self::User(record.user.clone())),
            Self::Expiry { .. } => Some(Self::Expiry {
                absolute_deadline: record.absolute_deadline,
                idle_timeout: record.idle_timeout,
                idle_deadline: record.idle_deadline,
                persistent: record.persistent,
            }),
        }
    }

    /// Applies the change to `record`. Only an update can fail: when the
    /// current value is not of the type its function takes.
    fn apply(&self, record: &mut Record) -> Result<(), SessionError> {
        match self {
            Self::Set(key, value) => set(&mut record.data, key, value.clone()),
            Self::Update(key, update) => {
                let value = update(record.data.get(key)).map_err(|source| SessionError::Json {
                    key: key.clone(),
                    source,
                })?;
                set(&mut record.data, key, value);
            }
            Self::Remove(key) => {
                record.data.remove(key);
            }
            Self::RemoveIf(key, value) => {
                if record.data.get(key) == Some(value) {
                    record.data.remove(key);
                }
            }
            Self::Clear => record.data.clear(),
            Self::User(user) => record.user.clone_from(user),
            Self::Expiry {
                absolute_deadline,
                idle_timeout,
                idle_deadline,
                persistent,
            } => {
                record.absolute_deadline = *absolute_deadline;
                record.idle_timeout = *idle_timeout;
                record.idle_deadline = *idle_deadline;
                record.persistent = *persistent;
            }
        }
        Ok(())
    }
}

/// The session's state during one request.
#[derive(Debug)]
struct State {
    incoming: Incoming,
    /// The working copy once loaded (or made new): shared with the store
    /// (or the cookie) until the request changes it, then its own.
    record: Option<Arc<Record>>,
    /// The request came with no live session (nothing, bad, expired, gone).
    is_new: bool,
    /// The request came with a session that had expired.
    expired: bool,
    changes: Vec<Change>,
    /// Data changed, or the user or expiry did.
    modified: bool,
    /// Ids to delete from the store when the request succeeds (flush, cycle).
    delete: Vec<Id>,
    /// The cookie that came in must go (flush, or an expired one).
    remove_cookie: bool,
    /// A cookie whose session has ended (expired, or ended by another
    /// request) may be removed in this answer; see
    /// [`Session::cycle_id`] for why not always.
    remove_ended: bool,
    /// A new id was given to a stored session (cycle, or a new session).
    new_id: bool,
    /// A store call failed during the request.
    failure: Option<StoreErrorKind>,
    /// Only a fallback key verified the cookie: issue it again under the
    /// current key.
    stale_key: bool,
    /// The request's time, read once (see [`Session::now`]).
    now: Option<u64>,
}

impl State {
    /// The id the request's cookie named, if it named a session.
    fn stored_id(&self) -> Option<Id> {
        match &self.incoming {
            Incoming::Id(id) => Some(*id),
            Incoming::Record(record) => Some(record.id),
            _ => None,
        }
    }
}

/// A visitor's session: a dictionary of JSON values, typed through serde.
///
/// Cheap to clone; `Send + Sync`, so it can be held across awaits and moved
/// into tasks, until the response is made. The middleware saves the session
/// once the handler answers, so a task that uses a clone must be done by
/// then (await it in the handler): from then on every call on any clone
/// fails with [`SessionError::Finished`] and changes nothing, rather than
/// accepting a change that would never be saved. A [detached](Self::detached)
/// session belongs to no request and works for as long as it is kept.
/// Obtain it from the request (with the `axum` feature, as a handler
/// argument: `Session`, or `Option<Session>`, which is `None` on a route
/// without the layer); see the [module docs](self).
///
/// # Example
///
/// A session outside any request, for tests:
///
/// ```
/// use keepsake::session::Session;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let session = Session::detached();
/// session.insert("user", "ada").await?;
/// assert_eq!(session.get::<String>("user").await?.as_deref(), Some("ada"));
/// assert_eq!(session.keys().await?, ["user"]);
/// # Ok::<(), keepsake::session::SessionError>(()) }).unwrap();
/// ```
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
}

/// What the clones of one request's [`Session`] share, in one allocation.
struct Shared {
    ctx: Arc<Context>,
    state: Mutex<State>,
    /// Microseconds this request has spent waiting on the store (outside
    /// the lock: store calls are made while `state` is held).
    store_time: AtomicU64,
    /// The handler read or changed the session: the response depends on
    /// the cookie, and says so with `Vary: Cookie`.
    accessed: AtomicBool,
    /// The middleware finished the request ([`Session::finish`]): every
    /// later call fails with [`SessionError::Finished`] instead of loading
    /// the session again or making changes nobody would save. Never set
    /// for a [detached](Session::detached) session.
    finished: AtomicBool,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

impl Session {
    /// The session of a request whose cookie said `incoming`; `now` is the
    /// time the cookie was checked at, if it was: the request's time.
    pub(crate) fn new(
        ctx: Arc<Context>,
        incoming: Incoming,
        stale_key: bool,
        remove_ended: bool,
        now: Option<u64>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                ctx,
                state: Mutex::new(State {
                    incoming,
                    record: None,
                    is_new: true,
                    expired: false,
                    changes: Vec::new(),
                    modified: false,
                    delete: Vec::new(),
                    remove_cookie: false,
                    remove_ended,
                    new_id: false,
                    failure: None,
                    stale_key,
                    now,
                }),
                store_time: AtomicU64::new(0),
                accessed: AtomicBool::new(false),
                finished: AtomicBool::new(false),
            }),
        }
    }

    /// Runs a store call within what is left of this request's store time.
    /// The store timeout bounds all of a request's store calls together
    /// (and its wait for a write turn), not each one, so a slow store makes
    /// the request a 503 within the timeout, whatever the request does.
    async fn timed<T>(
        &self,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let mut call = std::pin::pin!(call);
        // A call that is done at its first poll (the memory store, a free
        // write turn) spent no time worth counting: no clock, no timer.
        let first = std::future::poll_fn(|cx| Poll::Ready(ready(call.as_mut().poll(cx)))).await;
        if let Some(result) = first {
            return result;
        }
        let spent = Duration::from_micros(self.shared.store_time.load(Ordering::Relaxed));
        let left = self.ctx().store_timeout.saturating_sub(spent);
        let start = tokio::time::Instant::now();
        // The timer is boxed: a call that waits goes over the network
        // anyway, and unboxed its state would be part of every request's
        // future, waiting or not.
        let result = Box::pin(tokio::time::timeout(left, call)).await;
        let took = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.shared.store_time.fetch_add(took, Ordering::Relaxed);
        result.unwrap_or_else(|_| {
            Err(StoreError::new(
                StoreErrorKind::Timeout,
                format!(
                    "the store took more than the {:?} a request may spend on it",
                    self.ctx().store_timeout
                ),
            ))
        })
    }

    /// Waits, within the request's store time, for this process's turn to
    /// save session `id`.
    async fn write_turn(
        &self,
        id: &Id,
    ) -> Result<tokio::sync::MutexGuard<'_, context::LastSaved>, StoreError> {
        let lock = self.ctx().write_locks.of(id);
        // Free, as it nearly always is: no waiting, so no timer. Waiting is
        // boxed, so that its state does not grow the future of every save.
        match lock.try_lock() {
            Ok(turn) => Ok(turn),
            Err(_) => Box::pin(self.timed(async { Ok(lock.lock().await) })).await,
        }
    }

    /// A new, empty session that belongs to no request and no store: for
    /// unit tests of code that takes a `Session`.
    ///
    /// It is a **client-side (cookie) session**, the kind
    /// [`SessionLayer::with_cookies`](crate::middleware::SessionLayer::with_cookies)
    /// makes, with that builder's defaults and a sealing key of its own,
    /// generated at random; except that no cookie is ever read or written.
    /// Exactly:
    ///
    /// - **Nothing is saved anywhere.** There is no store and no
    ///   `Set-Cookie`: changes live in the handle and its clones, and are
    ///   gone when the last one is dropped. Each call makes an unrelated
    ///   session.
    /// - **The cookie size limit applies.** A change that would make the
    ///   session cookie (name plus sealed value) larger than 4096 bytes,
    ///   about 3 KB of JSON data, fails with [`SessionError::TooLarge`] and
    ///   is not made. A server-side session has no such limit, so code
    ///   meant for a store that keeps more than that fails here and not in
    ///   production: test it through a
    ///   [`SessionLayer::with_store`](crate::middleware::SessionLayer::with_store)
    ///   with a [`MemoryStore`](crate::store::MemoryStore) instead (as in the
    ///   [crate example](crate#a-complete-axum-app)).
    /// - **The other checks are those of every session**:
    ///   [`SessionError::Json`], [`SessionError::InvalidUser`] and
    ///   [`SessionError::InvalidExpiry`].
    /// - **It never finishes**: no request ends, so no call fails with
    ///   [`SessionError::Finished`], and none with
    ///   [`SessionError::Unavailable`] (there is no store to fail).
    /// - **Its state**: [`is_new`](Self::is_new) is always `true` (no
    ///   session came in with a request) and [`expired`](Self::expired)
    ///   always `false`. Its id is random;
    ///   [`cycle_id`](Self::cycle_id) and [`flush`](Self::flush) work as on
    ///   the working copy of a request, with nothing to delete. It has the
    ///   default expiry (a 30-minute idle timeout and a 14-day lifetime,
    ///   counted on the system clock from its first use), which
    ///   [`set_expiry`](Self::set_expiry) changes; the deadlines are kept in
    ///   the session but never enforced, so it never expires while it is
    ///   held.
    /// - **What needs a store is empty**, as for every client-side
    ///   session: [`user_sessions`](Self::user_sessions) is always empty,
    ///   and [`end_user_sessions`](Self::end_user_sessions) ends none
    ///   (it returns 0, and flushes this session if it belongs to the user).
    /// - **No replays**: [`update`](Self::update) runs its function once, at
    ///   once; there is no other request to conflict with.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::session::{Session, SessionError};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let session = Session::detached();
    /// assert!(session.is_new().await? && !session.expired().await?);
    /// session.insert("user", "ada").await?;
    /// assert!(!session.is_empty().await?);
    ///
    /// // A client-side session: the cookie size limit applies.
    /// let err = session.insert("big", "x".repeat(5_000)).await.unwrap_err();
    /// assert!(matches!(err, SessionError::TooLarge { limit: 4096, .. }));
    ///
    /// // Saved nowhere: another detached session shares nothing with it.
    /// assert!(Session::detached().is_empty().await?);
    /// # Ok::<(), SessionError>(()) }).unwrap();
    /// ```
    pub fn detached() -> Self {
        let ring = crate::key::KeyRing::new(crate::key::Key::generate());
        let ctx = crate::middleware::SessionLayer::with_cookies(crate::codec::Format::Sealed, ring)
            .into_context();
        Self::new(ctx, Incoming::Nothing, false, true, None)
    }

    /// What every session of this layer shares.
    fn ctx(&self) -> &Context {
        &self.shared.ctx
    }

    /// The layer's settings, for the middleware.
    pub(crate) fn context(&self) -> &Context {
        self.ctx()
    }

    /// Whether the handler used the session (it was loaded).
    pub(crate) fn accessed(&self) -> bool {
        self.shared.accessed.load(Ordering::Relaxed)
    }

    /// The request's time: the clock is read once per request (when the
    /// cookie is checked, or at first need) and every deadline the request
    /// computes counts from it, until a store-backed session writes: the
    /// write reads the clock again (see `finish_with_store`).
    fn now(&self, state: &mut State) -> u64 {
        *state.now.get_or_insert_with(|| self.ctx().now())
    }

    /// [`SessionError::Finished`] once the request's response was made.
    fn live(&self) -> Result<(), SessionError> {
        // Acquire: pairs with the store in `finish`; a call that still sees
        // `false` here holds the state lock (see `loaded`), so its change is
        // made before the save (which takes the lock) reads the state.
        if self.shared.finished.load(Ordering::Acquire) {
            return Err(SessionError::Finished);
        }
        Ok(())
    }

    /// Locks the state, loading the session first if needed;
    /// [`SessionError::Finished`] once the response was made.
    async fn loaded(&self) -> Result<MutexGuard<'_, State>, SessionError> {
        let mut state = self.shared.state.lock().await;
        // Checked with the lock held: the save takes the lock after the flag
        // is set, so a call either lands before the save or fails here.
        self.live()?;
        if state.record.is_none() {
            self.load(&mut state).await?;
        }
        Ok(state)
    }

    async fn load(&self, state: &mut State) -> Result<(), SessionError> {
        let now = self.now(state);
        let existing = match (&state.incoming, &self.ctx().backend) {
            (Incoming::Id(id), Backend::Store(store)) => {
                let id = *id;
                match self.timed(store.load(&id, now)).await {
                    Ok(Some(record)) => Some(record),
                    Ok(None) => {
                        tracing::debug!(session = %id.log_tag(), "session gone or expired in the store");
                        state.expired = true;
                        state.remove_cookie = state.remove_ended;
                        None
                    }
                    Err(err) => return Err(self.load_failed(state, &id, err)),
                }
            }
            (Incoming::Candidates(candidates), Backend::Store(store)) => {
                let candidates = candidates.clone();
                // Rare: boxed, so that its state does not grow every load.
                Box::pin(self.load_one_of(store.as_ref(), state, candidates, now)).await?
            }
            (Incoming::Record(record), _) => Some(record.clone()),
            #[cfg(feature = "interop")]
            (Incoming::Unusable(reason), _) => {
                let err = StoreError::new(
                    StoreErrorKind::Corrupt,
                    format!(
                        "the request's session cookie is signed correctly, but keepsake cannot \
                         hold its session exactly ({reason}); it is left as it is, unused"
                    ),
                );
                tracing::error!(error = %err, "session cookie unusable");
                state.failure = Some(err.kind());
                return Err(SessionError::Unavailable(err));
            }
            (Incoming::Expired, _) => {
                state.expired = true;
                state.remove_cookie = state.remove_ended;
                None
            }
            _ => None,
        };
        self.shared.accessed.store(true, Ordering::Relaxed);
        state.is_new = existing.is_none();
        state.record = Some(existing.unwrap_or_else(|| Arc::new(self.fresh_record(now))));
        Ok(())
    }

    /// The session of a request that came with several verified session
    /// ids (cookies of one name for different paths or domains): the one
    /// still in the store, as if it had come alone. None is an ended
    /// session, as one id gone from the store. More than one make the
    /// request anonymous: one may have been planted by a sibling subdomain
    /// (cookie tossing), and neither can be told to be the visitor's own.
    async fn load_one_of(
        &self,
        store: &dyn context::DynStore,
        state: &mut State,
        candidates: Vec<(Id, bool)>,
        now: u64,
    ) -> Result<Option<Arc<Record>>, SessionError> {
        let mut live = None;
        for (id, stale_key) in candidates {
            match self.timed(store.load(&id, now)).await {
                Ok(None) => {}
                Ok(Some(record)) if live.is_none() => live = Some((record, stale_key)),
                Ok(Some(_)) => {
                    tracing::warn!(
                        reason = "several session cookies name live sessions",
                        "session cookie not used"
                    );
                    state.incoming = Incoming::Nothing;
                    return Ok(None);
                }
                Err(err) => return Err(self.load_failed(state, &id, err)),
            }
        }
        Ok(match live {
            Some((record, stale_key)) => {
                state.incoming = Incoming::Id(record.id);
                state.stale_key = stale_key;
                Some(record)
            }
            None => {
                tracing::debug!("sessions of every session cookie gone or expired in the store");
                state.incoming = Incoming::Expired;
                state.expired = true;
                state.remove_cookie = state.remove_ended;
                None
            }
        })
    }

    /// Notes and logs a failed load of `id`, and the error for the caller.
    fn load_failed(&self, state: &mut State, id: &Id, err: StoreError) -> SessionError {
        tracing::error!(session = %id.log_tag(), error = %err.with_causes(), "session store load failed");
        state.failure = Some(err.kind());
        SessionError::Unavailable(err)
    }

    fn fresh_record(&self, now: u64) -> Record {
        let mut record = Record::new(
            Id::random(),
            now,
            self.ctx().idle_timeout,
            self.ctx().absolute_lifetime,
        );
        record.persistent = self.ctx().persistent;
        record
    }

    /// With client-side sessions: [`SessionError::TooLarge`] if `record` no
    /// longer fits in a cookie (or [`SessionError::Unwritable`] if a
    /// framework's format cannot carry it). A change that fails this check must be
    /// undone, or the response would silently carry no cookie at all.
    fn check_size(&self, record: &Record) -> Result<(), SessionError> {
        if !matches!(self.ctx().backend, Backend::Cookie) {
            return Ok(());
        }
        // A framework's format escapes and compresses: only encoding tells
        // its size, and whether the framework can read the data at all.
        #[cfg(feature = "interop")]
        if let Some(interop) = &self.ctx().interop {
            use crate::codec::interop::InteropEncodeError;
            return match interop.encode_record(record, self.ctx().now()) {
                Ok(_) => Ok(()),
                Err(InteropEncodeError::TooLarge { size, limit, .. }) => {
                    Err(SessionError::TooLarge { size, limit })
                }
                Err(err) => Err(SessionError::Unwritable(err.to_string())),
            };
        }
        // The exact size from the payload's length alone: no MAC, cipher or
        // base64 on every insert.
        let size = self.ctx().cookie_name.len()
            + self.ctx().codec.encoded_len(record.cookie_payload_len());
        if size > MAX_COOKIE_SIZE {
            return Err(SessionError::TooLarge {
                size,
                limit: MAX_COOKIE_SIZE,
            });
        }
        Ok(())
    }

    /// Applies `change` to the working copy and records it. With client-side
    /// sessions a change that would make the cookie too large is undone.
    fn change(&self, state: &mut State, change: Change) -> Result<(), SessionError> {
        let record = Arc::make_mut(
            state
                .record
                .as_mut()
                .unwrap_or_else(|| unreachable!("loaded")),
        );
        // Only client-side sessions can refuse a change (cookie size), and
        // only a change that can grow the cookie: only then is there an undo.
        let undo = match self.ctx().backend {
            Backend::Cookie => change.undo(record),
            Backend::Store(_) => None,
        };
        change.apply(record)?;
        if let Some(undo) = undo
            && let Err(err) = self.check_size(record)
        {
            undo.apply(record)?;
            return Err(err);
        }
        state.changes.push(change);
        state.modified = true;
        Ok(())
    }

    /// The value under `key`, if any.
    ///
    /// # Errors
    ///
    /// [`SessionError::Unavailable`] if the session could not be loaded,
    /// [`SessionError::Json`] if the value is not a `T`,
    /// [`SessionError::Finished`] once the response was made.
    ///
    /// # Example
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let session = keepsake::session::Session::detached();
    /// assert_eq!(session.get::<u32>("n").await?, None);
    /// session.insert("n", 3).await?;
    /// assert_eq!(session.get::<u32>("n").await?, Some(3));
    /// assert!(session.get::<String>("n").await.is_err());
    /// # Ok::<(), keepsake::session::SessionError>(()) }).unwrap();
    /// ```
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        let state = self.loaded().await?;
        let data = &state
            .record
            .as_ref()
            .unwrap_or_else(|| unreachable!("loaded"))
            .data;
        data.get(key)
            .map(|value| T::deserialize(value))
            .transpose()
            .map_err(|source| SessionError::Json {
                key: key.to_owned(),
                source,
            })
    }

    /// Sets `key` to `value`.
    ///
    /// # Errors
    ///
    /// [`SessionError::Unavailable`], [`SessionError::Json`] if `value` cannot
    /// be serialized or nests arrays and objects more than 100 deep (every
    /// store reads records back with serde_json, which reads 127 levels,
    /// some of which the record itself takes), with client-side sessions
    /// [`SessionError::TooLarge`] (the session is left unchanged), and
    /// [`SessionError::Finished`] once the response was made (the
    /// change is not made). The session is unchanged on every error.
    ///
    /// A float that is not finite (NaN, ±infinity) has no JSON form: like
    /// `serde_json`, the session stores it as `null`.
    ///
    /// # Example
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// use keepsake::session::SessionError;
    ///
    /// let session = keepsake::session::Session::detached();
    /// session.insert("cart", vec!["apple"]).await?;
    /// assert!(session.insert("big", "x".repeat(5000)).await.is_err()); // client-side: too large
    /// let deep = (0..101).fold(serde_json::json!(1), |inner, _| serde_json::json!([inner]));
    /// let err = session.insert("deep", deep).await.unwrap_err();
    /// assert!(matches!(err, SessionError::Json { .. }));
    /// assert_eq!(session.len().await?, 1);
    /// # Ok::<(), keepsake::session::SessionError>(()) }).unwrap();
    /// ```
    pub async fn insert<T: Serialize>(&self, key: &str, value: T) -> Result<(), SessionError> {
        let value = session_value(value).map_err(|source| SessionError::Json {
            key: key.to_owned(),
            source,
        })?;
        let mut state = self.loaded().await?;
        self.change(&mut state, Change::Set(key.to_owned(), value))
    }

    /// Sets `key` to what `f` makes of its current value, atomically with
    /// respect to other requests of the same session: a read-modify-write
    /// that never loses a concurrent one. Returns the new value as this
    /// request computed it.
    ///
    /// With [`get`](Session::get) and [`insert`](Session::insert), two
    /// requests that both read 5 both write 6: one increment is lost. With
    /// `update`, the change is recorded as "apply `f`" rather than "set to
    /// 6": if another request saved the session in the meantime, the
    /// middleware reloads the stored session and runs `f` again on the value
    /// stored there before saving (see the [crate docs](crate#concurrent-requests)).
    /// So `N` concurrent `update(key, |n| n.unwrap_or(0) + 1)` calls end
    /// exactly `N` higher.
    ///
    /// Use it for values that concurrent requests of one visitor change
    /// from their current value: counters, lists that are appended to,
    /// running totals. For a value that is simply replaced (a flag, the
    /// current page) use `insert`.
    ///
    /// Cost: `f` runs once when called, and once more on each replay; on
    /// the conflict-free path the only extra work over `insert` is reading
    /// the returned value back (measured in `benches/session.rs`). `f` must
    /// therefore be a pure function of its argument, without side effects.
    /// When it is replayed, the value returned here may differ from what is
    /// finally stored (it reflects only the copy this request saw).
    ///
    /// The guarantee needs a server-side store. A client-side session lives
    /// in the cookie, which the browser replaces with whichever response
    /// comes last, so concurrent requests of a cookie session can still
    /// overwrite each other.
    ///
    /// # Errors
    ///
    /// [`SessionError::Unavailable`]; [`SessionError::Json`] if the current
    /// value is not a `T` (nothing is changed) or `f`'s result cannot be
    /// serialized or nests too deep (as for [`insert`](Session::insert)); with client-side sessions [`SessionError::TooLarge`];
    /// [`SessionError::Finished`] once the response was made.
    /// If, on a replay, the stored value is no longer a `T`, the request's
    /// changes are not saved and the response is a 503.
    ///
    /// # Example
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let session = keepsake::session::Session::detached();
    /// let visits: u64 = session.update("visits", |n: Option<u64>| n.unwrap_or(0) + 1).await?;
    /// assert_eq!(visits, 1);
    /// assert_eq!(session.update("visits", |n: Option<u64>| n.unwrap_or(0) + 1).await?, 2);
    /// session.insert("name", "ada").await?;
    /// assert!(session.update("name", |n: Option<u64>| n.unwrap_or(0)).await.is_err()); // not a number
    /// # Ok::<(), keepsake::session::SessionError>(()) }).unwrap();
    /// ```
    pub async fn update<T, F>(&self, key: &str, f: F) -> Result<T, SessionError>
    where
        T: Serialize + DeserializeOwned + 'static,
        F: Fn(Option<T>) -> T + Send + Sync + 'static,
    {
        let update: Box<Updater> = Box::new(move |current: Option<&Value>| {
            let current = current.map(T::deserialize).transpose()?;
            session_value(f(current))
        });
        let mut state = self.loaded().await?;
        self.change(&mut state, Change::Update(key.to_owned(), update))?;
        let value = state
            .record
            .as_ref()
            .and_then(|r| r.data.get(key))
            .unwrap_or_else(|| unreachable!("just set"));
        T::deserialize(value).map_err(|source| SessionError::Json {
            key: key.to_owned(),
            source,
        })
    }

    /// Removes `key`; `true` if it was there.
    ///
    /// # Errors
    ///
    /// [`SessionError::Unavailable`]; [`SessionError::Finished`] once the response was made.
    ///
    /// # Example
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let session = keepsake::session::Session::detached();
    /// session.insert("a", 1).await?;
    /// assert!(session.remove("a").await?);
    /// assert!(!session.remove("a").await?);
    /// # Ok::<(), keepsake::session::SessionError>(()) }).unwrap();
    /// ```
    pub async fn remove(&self, key: &str) -> Result<bool, SessionError> {
        let mut state = self.loaded().await?;
        let present = state
            .record
            .as_ref()
            .is_some_and(|r| r.data.contains_key(key));
        if present {
            self.change(&mut state, Change::Remove(key.to_owned()))?;
        }
        Ok(present)
    }

    /// Removes `key` and returns its value.
    ///
    /// The removal is conditional on that value: if another request of the
    /// same session stored a different value under `key` before this
    /// request's save landed, that value was read by nobody, and the save
    /// (which replays this request's changes on the newer session, see the
    /// [module docs](self)) leaves it in place for the next `pop`. A flash
    /// message set while another request was showing the previous one is
    /// thus never lost. Only a key that still holds the returned value is
    /// removed. [`remove`](Session::remove) and [`clear`](Session::clear),
    /// by contrast, remove whatever the key holds by then.
    ///
    /// # Errors
    ///
    /// [`SessionError::Unavailable`]; [`SessionError::Json`] if the value is
    /// not a `T` (it is then left in place); [`SessionError::Finished`] once the response was made.
    ///
    /// # Example
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let session = keepsake::session::Session::detached();
    /// session.insert("flash", "saved").await?;
    /// assert_eq!(session.pop::<String>("flash").await?.as_deref(), Some("saved"));
    /// assert_eq!(session.pop::<String>("flash").await?, None);
    /// # Ok::<(), keepsake::session::SessionError>(()) }).unwrap();
    /// ```
    pub async fn pop<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        let mut state = self.loaded().await?;
        let Some(value) = state.record.as_ref().and_then(|r| r.data.get(key)).cloned() else {
            return Ok(None);
        };
        let popped = T::deserialize(&value).map_err(|source| SessionError::Json {
            key: key.to_owned(),
            source,
        })?;
        self.change(&mut state, Change::RemoveIf(key.to_owned(), value))?;
        Ok(Some(popped))
    }

    /// Removes every key (the session itself goes on; see
    /// [`flush`](Session::flush) to end it).
    ///
    /// # Errors
    ///
    /// [`SessionError::Unavailable`]; [`SessionError::Finished`] once the response was made.
    ///
    /// # Example
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let session = keepsake::session::Session::detached();
    /// session.insert("a", 1).await?;
    /// session.clear().await?;
    /// assert!(session.is_empty().await?);
    /// # Ok::<(), keepsake::session::SessionError>(()) }).unwrap();
    /// ```
    pub async fn clear(&self) -> Result<(), SessionError> {
        let mut state = self.loaded().await?;
        self.change(&mut state, Change::Clear)
    }

    /// Whether `key` is set.
    ///
    /// # Errors
    ///
    /// [`SessionError::Unavailable`]; [`SessionError::Finished`] once the response was made.
    ///
    /// # Example
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let session = keepsake::session::Session::detached();
    /// session.insert("a", 1).await?;
    /// assert!(session.contains_key("a").await? && !session.contains_key("b").await?);
    /// # Ok::<(), keepsake::session::SessionError>(()) }).unwrap();
    /// ```
    pub async fn contains_key(&self, key: &str) -> Result<bool, SessionError> {
        let state = self.loaded().await?;
        Ok(state
            .record
            .as_ref()
            .is_some_and(|r| r.data.contains_key(key)))
    }

    /// The keys, in sorted order.
    ///
    /// # Errors
    ///
    /// [`SessionError::Unavailable`]; [`SessionError::Finished`] once the response was made.
    ///
    /// # Example
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let session = keepsake::session::Session::detached();
    /// session.insert("b", 1).await?;
    /// session.insert("a", 2).await?;
    /// assert_eq!(session.keys().await?, ["a", "b"]);
    /// # Ok::<(), keepsake::session::SessionError>(()) }).unwrap();
    /// ```
    pub async fn keys(&self) -> Result<Vec<String>, SessionError> {
        let state = self.loaded().await?;
        Ok(state
            .record
            .as_ref()
            .map(|r| r.data.keys().cloned().collect())
            .unwrap_or_default())
    }

    /// How many keys are set.
    ///
    /// # Errors
    ///
    /// [`SessionError::Unavailable`]; [`SessionError::Finished`] once the response was made.
    ///
    /// # Example
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let session = keepsake::session::Session::detached();
    /// session.insert("a", 1).await?;
    /// assert_eq!(session.len().await?, 1);
    /// # Ok::<(), keepsake::session::SessionError>(()) }).unwrap();
    /// ```
    pub async fn len(&self) -> Result<usize, SessionError> {
        let state = self.loaded().await?;
        Ok(state.record.as_ref().map_or(0, |r| r.data.len()))
    }

    /// Whether no key is set.
    ///
    /// # Errors
    ///
    /// [`SessionError::Unavailable`]; [`SessionError::Finished`] once the response was made.
    ///
    /// # Example
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// assert!(keepsake::session::Session::detached().is_empty().await?);
    /// # Ok::<(), keepsake::session::SessionError>(()) }).unwrap();
    /// ```
    pub async fn is_empty(&self) -> Result<bool, SessionError> {
        Ok(self.len().await? == 0)
    }

    /// The session id. A new session has one from the moment it is first
    /// used; [`cycle_id`](Session::cycle_id) changes it.
    ///
    /// # Errors
    ///
    /// [`SessionError::Unavailable`]; [`SessionError::Finished`] once the response was made.
    ///
    /// # Example
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let session = keepsake::session::Session::detached();
    /// let id = session.id().await?;
    /// session.cycle_id().await?;
    /// assert_ne!(session.id().await?, id);
    /// # Ok::<(), keepsake::session::SessionError>(()) }).unwrap();
    /// ```
    pub async fn id(&self) -> Result<Id, SessionError> {
        let state = self.loaded().await?;
        Ok(state
            .record
            .as_ref()
            .map(|r| r.id)
            .unwrap_or_else(|| unreachable!("loaded")))
    }

    /// Whether the request came without a live session (none, a bad cookie,
    /// or an expired one), so this one is new.
    ///
    /// # Errors
    ///
    /// [`SessionError::Unavailable`]; [`SessionError::Finished`] once the response was made.
    ///
    /// # Example
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// assert!(keepsake::session::Session::detached().is_new().await?);
    /// # Ok::<(), keepsake::session::SessionError>(()) }).unwrap();
    /// ```
    pub async fn is_new(&self) -> Result<bool, SessionError> {
        Ok(self.loaded().await?.is_new)
    }

    /// Whether the request came with a session that had expired (idle or
    /// absolute deadline passed, or ended elsewhere): "your session
    /// expired", as opposed to a first visit. The handle itself is a fresh
    /// session.
    ///
    /// Only a cookie that verifies can say its session expired. One that
    /// does not verify is a [bad cookie](BadCookie), not an expired
    /// session, and that includes a cookie signed with a retired key (one
    /// no longer in the [`KeyRing`](crate::key::KeyRing), not even as a
    /// fallback): under the default [`BadCookie::Ignore`] the request has
    /// no session, so `expired()` is `false` and [`is_new`](Self::is_new)
    /// `true`, exactly as on a first visit (under [`BadCookie::Reject`] the
    /// handler is not called). An app cannot tell a visitor logged out by a
    /// key rotation from a first visit this way. To avoid such logouts,
    /// keep a retired key as a fallback
    /// ([`KeyRing::with_fallback`](crate::key::KeyRing::with_fallback)) for
    /// as long as its cookies can live (the longest session lifetime: the
    /// layer's, or a longer one given to [`set_expiry`](Self::set_expiry)):
    /// its cookies then keep working, and are issued again under the
    /// current key when their sessions are used.
    ///
    /// # Errors
    ///
    /// [`SessionError::Unavailable`]; [`SessionError::Finished`] once the response was made.
    ///
    /// # Example
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// assert!(!keepsake::session::Session::detached().expired().await?);
    /// # Ok::<(), keepsake::session::SessionError>(()) }).unwrap();
    /// ```
    pub async fn expired(&self) -> Result<bool, SessionError> {
        Ok(self.loaded().await?.expired)
    }

    /// Gives the session a new id and keeps its data: call it when the user
    /// logs in, so an id planted before login (session fixation) is worth
    /// nothing. The old id stops working when the response is sent.
    ///
    /// Keeping the data suits a visitor who logs in (a cart made before
    /// login survives it), not a session on which *another* user was logged
    /// in, whose data would pass to the new one: there, start afresh with
    /// [`reset`](Session::reset), which gives a new id too (as Django's
    /// `login` flushes a session that belonged to someone else):
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// # let session = keepsake::session::Session::detached();
    /// # session.insert("user", "ada").await?;
    /// # session.insert("cart", [1, 2]).await?;
    /// let new_user = "bob";
    /// match session.get::<String>("user").await? {
    ///     Some(user) if user != new_user => session.reset().await?,
    ///     _ => session.cycle_id().await?,
    /// }
    /// session.insert("user", new_user).await?;
    /// assert!(!session.contains_key("cart").await?); // nothing of ada's
    /// # Ok::<(), keepsake::session::SessionError>(()) }).unwrap();
    /// ```
    ///
    /// A request the browser sent with the old cookie before the new one
    /// arrived, and that reaches a store-backed session after the cycle,
    /// finds its session gone. Had its answer removed the cookie, as an
    /// ended session's cookie is removed, the browser could apply that
    /// after the login's answer and delete the new cookie: the user would
    /// be logged out again. So a cookie whose session ended is removed only
    /// in the answer to a page load (`Sec-Fetch-Mode: navigate`); the
    /// answers to a page's `fetch`, XHR and subresource requests, and to
    /// clients that send no `Sec-Fetch-Mode` (an app or a script that polls
    /// while it logs in, an old browser), leave it, and the next page load
    /// or write replaces it. What remains is a page load in a second tab
    /// whose answer arrives after the login's. A handler that *writes* to the
    /// session in such a request starts a new session, whose cookie still
    /// replaces the login's (Django's sessions do the same; following the
    /// old id to the new session would undo the protection against
    /// fixation). Cycle the id on the login request itself, not on a page
    /// that writes to the session from several requests at once.
    ///
    /// # Errors
    ///
    /// [`SessionError::Unavailable`]; [`SessionError::Finished`] once the response was made.
    ///
    /// # Example
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let session = keepsake::session::Session::detached();
    /// session.insert("user", "ada").await?;
    /// let before = session.id().await?;
    /// session.cycle_id().await?;
    /// assert_ne!(session.id().await?, before);
    /// assert_eq!(session.get::<String>("user").await?.as_deref(), Some("ada"));
    /// # Ok::<(), keepsake::session::SessionError>(()) }).unwrap();
    /// ```
    pub async fn cycle_id(&self) -> Result<(), SessionError> {
        let mut state = self.loaded().await?;
        let record = Arc::make_mut(
            state
                .record
                .as_mut()
                .unwrap_or_else(|| unreachable!("loaded")),
        );
        let old = std::mem::replace(&mut record.id, Id::random());
        // Only the stored id needs deleting: one from an earlier cycle in
        // this request was never stored.
        if !state.is_new && !state.delete.contains(&old) && state.stored_id() == Some(old) {
            state.delete.push(old);
        }
        state.new_id = true;
        state.modified = true;
        Ok(())
    }

    /// Ends the session: its record is deleted and its cookie removed when
    /// the response is sent (log out). The handle is then a fresh, empty
    /// session; anything inserted afterwards starts a new session.
    ///
    /// # Errors
    ///
    /// [`SessionError::Unavailable`]; [`SessionError::Finished`] once the response was made.
    ///
    /// # Example
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let session = keepsake::session::Session::detached();
    /// session.insert("user", "ada").await?;
    /// session.flush().await?;
    /// assert!(session.is_empty().await?);
    /// # Ok::<(), keepsake::session::SessionError>(()) }).unwrap();
    /// ```
    pub async fn flush(&self) -> Result<(), SessionError> {
        let mut state = self.loaded().await?;
        let now = self.now(&mut state);
        let old = state.record.replace(Arc::new(self.fresh_record(now)));
        if let Some(old) = old
            && !state.is_new
            && !state.delete.contains(&old.id)
        {
            state.delete.push(old.id);
        }
        state.remove_cookie = true;
        state.changes.clear();
        state.modified = false;
        state.new_id = false;
        state.is_new = true;
        Ok(())
    }

    /// Starts over with a fresh, empty session: like
    /// [`flush`](Session::flush), and the handle no longer reports the
    /// incoming session as [expired](Session::expired).
    ///
    /// # Errors
    ///
    /// [`SessionError::Unavailable`]; [`SessionError::Finished`] once the response was made.
    ///
    /// # Example
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let session = keepsake::session::Session::detached();
    /// session.insert("a", 1).await?;
    /// session.reset().await?;
    /// assert!(session.is_new().await? && !session.expired().await? && session.is_empty().await?);
    /// # Ok::<(), keepsake::session::SessionError>(()) }).unwrap();
    /// ```
    pub async fn reset(&self) -> Result<(), SessionError> {
        self.flush().await?;
        self.loaded().await?.expired = false;
        Ok(())
    }

    /// Changes how long this session lasts, from now on: for example a
    /// persistent cookie with a long lifetime when the user ticks "remember
    /// me".
    ///
    /// # Errors
    ///
    /// [`SessionError::Unavailable`], with client-side sessions
    /// [`SessionError::TooLarge`] (the session is left unchanged),
    /// [`SessionError::InvalidExpiry`] for a lifetime or idle timeout under
    /// one second or over [`Expiry::MAX_LIFETIME`] (400 days), or an idle
    /// timeout longer than the lifetime (both count whole seconds: a
    /// sub-second part is dropped), and [`SessionError::Finished`] once the
    /// response was made. Behind
    /// [`SessionLayer::with_interop`](crate::middleware::SessionLayer::with_interop),
    /// always [`SessionError::Unwritable`]: a Flask, Starlette or Django
    /// cookie carries no lifetime of keepsake's (for Flask insert
    /// `_permanent`, for Django `_session_expiry`, as those frameworks do).
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use keepsake::session::{Expiry, SessionError};
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let session = keepsake::session::Session::detached();
    /// let err = session.set_expiry(Expiry::persistent(Duration::from_millis(500))).await.unwrap_err();
    /// assert!(matches!(err, SessionError::InvalidExpiry(_)));
    /// let two_years = Duration::from_secs(2 * 365 * 86_400);
    /// let err = session.set_expiry(Expiry::persistent(two_years)).await.unwrap_err();
    /// assert!(matches!(err, SessionError::InvalidExpiry(_)));
    /// let idle_too_long = Expiry::persistent(Duration::from_secs(60)).with_idle(Some(Duration::from_secs(90)));
    /// assert!(session.set_expiry(idle_too_long).await.is_err());
    /// session.set_expiry(Expiry::persistent(Duration::from_secs(30 * 86_400))).await?;
    /// # Ok::<(), keepsake::session::SessionError>(()) }).unwrap();
    /// ```
    pub async fn set_expiry(&self, expiry: Expiry) -> Result<(), SessionError> {
        #[cfg(feature = "interop")]
        if let Some(interop) = &self.ctx().interop {
            use crate::codec::interop::Framework;
            return Err(SessionError::Unwritable(format!(
                "set_expiry: a {} session cookie carries no lifetime of its own, so the \
                 expiry would be lost; {}",
                interop.framework(),
                match interop.framework() {
                    Framework::Flask => {
                        "insert `_permanent` = true (Flask's `session.permanent`) for a cookie \
                         lasting the codec's max_age (PERMANENT_SESSION_LIFETIME)"
                    }
                    Framework::Starlette => "set the codec's max_age instead",
                    Framework::Django => {
                        "insert `_session_expiry` (seconds, 0 for a browser-session cookie), \
                         as Django's set_expiry does"
                    }
                }
            )));
        }
        expiry.check().map_err(SessionError::InvalidExpiry)?;
        let mut state = self.loaded().await?;
        let now = self.now(&mut state);
        let absolute_deadline = crate::codec::deadline_after(now, expiry.absolute.as_secs());
        let idle_timeout = expiry.idle.map(|idle| idle.as_secs());
        let change = Change::Expiry {
            absolute_deadline,
            idle_timeout,
            idle_deadline: idle_timeout.map(|idle| now.saturating_add(idle).min(absolute_deadline)),
            persistent: expiry.persistent,
        };
        self.change(&mut state, change)?;
        state.new_id = true; // the cookie's lifetime changes: send it again
        Ok(())
    }

    /// Records which user the session belongs to (`None`: nobody), so that
    /// the user's sessions can be listed and ended together.
    ///
    /// # Errors
    ///
    /// [`SessionError::Unavailable`]; [`SessionError::InvalidUser`] for a
    /// user holding U+0000; with client-side sessions
    /// [`SessionError::TooLarge`]; [`SessionError::Finished`] once the response was made. The session is
    /// left unchanged on error. Behind
    /// [`SessionLayer::with_interop`](crate::middleware::SessionLayer::with_interop),
    /// always [`SessionError::Unwritable`]: a Flask, Starlette or Django
    /// cookie has no place for the user (store it in the session's data).
    ///
    /// # Example
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// use keepsake::session::{Session, SessionError};
    ///
    /// let session = Session::detached();
    /// session.set_user(Some("ada")).await?;
    /// assert_eq!(session.user().await?.as_deref(), Some("ada"));
    /// let err = session.set_user(Some("a\0b")).await.unwrap_err();
    /// assert!(matches!(err, SessionError::InvalidUser));
    /// assert_eq!(session.user().await?.as_deref(), Some("ada"));
    /// # Ok::<(), SessionError>(()) }).unwrap();
    /// ```
    pub async fn set_user(&self, user: Option<&str>) -> Result<(), SessionError> {
        #[cfg(feature = "interop")]
        if let Some(interop) = &self.ctx().interop {
            return Err(SessionError::Unwritable(format!(
                "set_user: a {} session cookie has no place for keepsake's session user, so it \
                 would be lost; store the user in the session's data instead (insert)",
                interop.framework()
            )));
        }
        if user.is_some_and(|user| user.contains('\0')) {
            return Err(SessionError::InvalidUser);
        }
        let mut state = self.loaded().await?;
        self.change(&mut state, Change::User(user.map(str::to_owned)))
    }

    /// The user the session belongs to, if set.
    ///
    /// # Errors
    ///
    /// [`SessionError::Unavailable`]; [`SessionError::Finished`] once the response was made.
    ///
    /// # Example
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// assert_eq!(keepsake::session::Session::detached().user().await?, None);
    /// # Ok::<(), keepsake::session::SessionError>(()) }).unwrap();
    /// ```
    pub async fn user(&self) -> Result<Option<String>, SessionError> {
        let state = self.loaded().await?;
        Ok(state.record.as_ref().and_then(|r| r.user.clone()))
    }

    /// The live sessions of `user`, as the store holds them (for a "your
    /// sessions" page). Client-side sessions are kept by browsers only, so
    /// there the list is always empty.
    ///
    /// # Errors
    ///
    /// [`SessionError::Unavailable`] if the store fails;
    /// [`SessionError::Finished`] once the response was made.
    ///
    /// # Example
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let session = keepsake::session::Session::detached(); // client-side
    /// assert!(session.user_sessions("ada").await?.is_empty());
    /// # Ok::<(), keepsake::session::SessionError>(()) }).unwrap();
    /// ```
    pub async fn user_sessions(&self, user: &str) -> Result<Vec<Record>, SessionError> {
        self.live()?;
        let Backend::Store(store) = &self.ctx().backend else {
            return Ok(Vec::new());
        };
        let now = self.ctx().now();
        self.timed(store.list_user(user, now))
            .await
            .map_err(|err| self.failed(err))
    }

    /// Ends every session of `user` ("log out everywhere"), this one
    /// included if it belongs to `user` (it is then [flushed](Self::flush)).
    /// Returns how many stored sessions were ended. Client-side sessions
    /// cannot be ended from the server: there only this one is flushed, and
    /// the count is 0.
    ///
    /// The other sessions are deleted in the store at once, not when the
    /// response is sent: unlike this request's own changes, their end
    /// stands even if the handler then fails (a 5xx saves nothing else).
    ///
    /// # Errors
    ///
    /// [`SessionError::Unavailable`] if the store fails;
    /// [`SessionError::Finished`] once the response was made.
    ///
    /// # Example
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let session = keepsake::session::Session::detached();
    /// session.set_user(Some("ada")).await?;
    /// assert_eq!(session.end_user_sessions("ada").await?, 0);
    /// assert_eq!(session.user().await?, None); // this one was flushed
    /// # Ok::<(), keepsake::session::SessionError>(()) }).unwrap();
    /// ```
    pub async fn end_user_sessions(&self, user: &str) -> Result<usize, SessionError> {
        self.live()?;
        let ended = match &self.ctx().backend {
            Backend::Store(store) => self
                .timed(store.delete_user(user))
                .await
                .map_err(|err| self.failed(err))?,
            Backend::Cookie => 0,
        };
        // An audit line; the user's name is the app's to log, not ours.
        tracing::info!(ended, "every session of a user ended (log out everywhere)");
        if self.user().await?.as_deref() == Some(user) {
            self.flush().await?;
        }
        Ok(ended)
    }

    /// Notes a store failure, so the response becomes a 503 whatever the
    /// handler does with the error.
    fn failed(&self, err: StoreError) -> SessionError {
        let mut session = None;
        if let Some(mut state) = self.shared.state.try_lock() {
            state.failure.get_or_insert(err.kind());
            session = state.stored_id().map(|id| id.log_tag());
        }
        tracing::error!(
            session = session.as_deref(),
            error = %err.with_causes(),
            "session store call failed"
        );
        SessionError::Unavailable(err)
    }

    /// Whether a store call failed (and was logged) while the handler ran.
    pub(crate) fn failed_during_request(&self) -> bool {
        self.shared
            .state
            .try_lock()
            .is_some_and(|state| state.failure.is_some())
    }

    /// Persists this request's changes after the handler answered with
    /// `status`, and says which Set-Cookie (if any) the response needs:
    /// at once when no store call is needed (an untouched or unchanged
    /// session, a client-side one), otherwise as a future of the store
    /// calls.
    ///
    /// From here on the handle is spent: every call on it or a clone fails
    /// with [`SessionError::Finished`]. A call that holds the state now
    /// (a task using a clone) completes first, and its change is saved.
    pub(crate) fn finish(&self, status: http::StatusCode) -> Finish {
        // Release: pairs with the load in `live`.
        self.shared.finished.store(true, Ordering::Release);
        // The state is free unless the handler left a clone of the session
        // in a task that is using it: that case waits, in the future.
        if let Some(mut state) = self.shared.state.try_lock()
            && let Some(outcome) = self.settle(&mut state, status)
        {
            return Finish::Now(outcome);
        }
        let session = self.clone();
        Finish::Later(Box::pin(
            async move { session.finish_with_store(status).await },
        ))
    }

    /// [`finish`](Self::finish) once the state is locked and the store is
    /// needed.
    async fn finish_with_store(
        &self,
        status: http::StatusCode,
    ) -> Result<Option<HeaderValue>, StoreError> {
        let mut state = self.shared.state.lock().await;
        if let Some(outcome) = self.settle(&mut state, status) {
            return outcome;
        }
        let Backend::Store(store) = &self.ctx().backend else {
            unreachable!("only a store-backed session needs the store")
        };
        let record = state
            .record
            .take()
            .unwrap_or_else(|| unreachable!("settled otherwise"));
        // The write goes by the clock again (only a request that writes
        // reads it twice): a request that outlived its session's deadline
        // (a slow handler) then finds the session ended in the store, and
        // the store reports it gone, instead of taking a deadline counted
        // from when the request started, already past, and losing the
        // write silently. Never earlier than the request's own time.
        let now = self.ctx().now().max(self.now(&mut state));
        let reissue = (state.stale_key && !state.is_new).then(|| record.clone());
        let cookie = self.write(store.as_ref(), &mut state, record, now).await?;
        Ok(self.with_reissue(cookie, reissue.as_deref(), now))
    }

    /// The outcome of the request for its session when it needs no store
    /// call; `None` when it does (the state is then left as it was).
    fn settle(
        &self,
        state: &mut State,
        status: http::StatusCode,
    ) -> Option<Result<Option<HeaderValue>, StoreError>> {
        if let Some(kind) = state.failure {
            return Some(Err(StoreError::new(
                kind,
                "a store call failed during the request",
            )));
        }
        // A 5xx is a handler that failed; a 408 a request the server did not
        // finish (a timeout layer inside this one answers it after dropping
        // the handler, whose changes may stop halfway).
        if status.is_server_error() || status == http::StatusCode::REQUEST_TIMEOUT {
            tracing::debug!(%status, "handler failed or timed out; session changes not saved");
            return Some(Ok(None));
        }
        if state.record.is_none() {
            // Never touched: no store call at all. A client-side session that
            // only a fallback key verified is issued again from what came in
            // (and a framework's cookie that its framework refreshes on
            // every request, issued now).
            return Some(Ok(match (&state.incoming, state.stale_key) {
                (Incoming::Record(record), stale) => {
                    let now = state.now.unwrap_or_else(|| self.ctx().now());
                    if self.interop_refreshes(record) == Some(true) {
                        self.ctx().cookie_for(record, now)
                    } else if stale {
                        self.reissue_cookie(record, now)
                    } else {
                        None
                    }
                }
                _ => None,
            }));
        }
        let now = self.now(state);
        let record = state
            .record
            .as_ref()
            .unwrap_or_else(|| unreachable!("checked"));
        let empty_and_new = state.is_new && record.data.is_empty() && record.user.is_none();
        let stored = matches!(self.ctx().backend, Backend::Store(_));
        if stored {
            let store_work = !state.delete.is_empty()
                || (!empty_and_new
                    && (state.is_new || state.modified || touch_due(record, now).is_some()));
            if store_work {
                return None;
            }
        }
        let mut record = state
            .record
            .take()
            .unwrap_or_else(|| unreachable!("checked"));
        let cookie = if empty_and_new {
            state.remove_cookie.then(|| self.ctx().removal_cookie())
        } else if stored {
            None
        } else if state.modified || state.is_new {
            // A visit that writes is activity too, as with a store (`save`
            // moves the deadline).
            refresh_idle_deadline(Arc::make_mut(&mut record), now);
            self.ctx().cookie_for(&record, now)
        } else if let Some(refresh) = self.interop_refreshes(&record) {
            // A framework's cookie follows the framework: a visit that does
            // not write extends the session only where the framework
            // re-issues the cookie on every request.
            if refresh {
                refresh_idle_deadline(Arc::make_mut(&mut record), now);
                self.ctx().cookie_for(&record, now)
            } else {
                None
            }
        } else if let Some(deadline) = touch_due(&record, now) {
            Arc::make_mut(&mut record).idle_deadline = Some(deadline);
            self.ctx().cookie_for(&record, now)
        } else {
            None
        };
        let reissue = (state.stale_key && !state.is_new).then_some(&*record);
        Some(Ok(self.with_reissue(cookie, reissue, now)))
    }

    /// `cookie`, or else, for a live session whose cookie only a fallback
    /// key verified, its cookie again under the current key.
    fn with_reissue(
        &self,
        cookie: Option<HeaderValue>,
        reissue: Option<&Record>,
        now: u64,
    ) -> Option<HeaderValue> {
        match (cookie, reissue) {
            (None, Some(record)) => {
                tracing::debug!(session = %record.id.log_tag(), "session cookie re-issued under the current key");
                self.reissue_cookie(record, now)
            }
            (cookie, _) => cookie,
        }
    }

    /// `record`'s cookie issued again under the current key, at `now`. A
    /// framework's cookie keeps its issue time (and gets the `Max-Age` it has
    /// left), so that rotating the key does not extend the session.
    fn reissue_cookie(&self, record: &Record, now: u64) -> Option<HeaderValue> {
        #[cfg(feature = "interop")]
        if let Some(interop) = &self.ctx().interop {
            return match interop.reissue(record, now) {
                Ok((value, max_age)) => self
                    .ctx()
                    .set_cookie
                    .header(&value, max_age.map(Duration::from_secs)),
                Err(err) => {
                    tracing::error!(error = %err, "session cookie not re-issued");
                    None
                }
            };
        }
        self.ctx().cookie_for(record, now)
    }

    /// With a framework's cookie ([`SessionLayer::with_interop`]), whether
    /// a request that does not change `record` issues its cookie again (the
    /// framework's rule, see `InteropCodec::with_refresh_each_request`);
    /// `None` with keepsake's own cookies, whose idle deadline
    /// [`touch_due`] moves.
    ///
    /// [`SessionLayer::with_interop`]: crate::middleware::SessionLayer::with_interop
    fn interop_refreshes(&self, record: &Record) -> Option<bool> {
        #[cfg(feature = "interop")]
        if let Some(interop) = &self.ctx().interop {
            return Some(interop.refreshes_every_request(record));
        }
        let _ = record;
        None
    }

    /// Writes to the store what the request changed; the Set-Cookie it
    /// needs, if any.
    async fn write(
        &self,
        store: &dyn context::DynStore,
        state: &mut State,
        mut record: Arc<Record>,
        now: u64,
    ) -> Result<Option<HeaderValue>, StoreError> {
        let removal = || self.ctx().removal_cookie();
        let empty_and_new = state.is_new && record.data.is_empty() && record.user.is_none();
        let cycled = (!state.is_new && state.new_id)
            .then(|| state.stored_id())
            .flatten()
            .filter(|old| state.delete.contains(old));
        let cookie = if empty_and_new {
            state.remove_cookie.then(removal)
        } else if state.is_new {
            // This visit is activity: the idle deadline counts from now.
            let new = Arc::make_mut(&mut record);
            new.version = 0;
            refresh_idle_deadline(new, now);
            // Once per session: boxed, so that its state does not grow the
            // future of every save.
            Box::pin(self.create(store, &mut record)).await?;
            tracing::debug!(session = %record.id.log_tag(), "session created");
            self.ctx().cookie_for(&record, now)
        } else if let Some(old) = cycled {
            // Deleted here, by version, not with the rest below.
            state.delete.retain(|id| *id != old);
            // Rare, and the largest state: boxed, as `create`.
            Box::pin(self.cycle(store, old, record, &state.changes, now)).await?
        } else if state.modified {
            self.save(
                store,
                record,
                &state.changes,
                state.new_id,
                state.remove_ended,
                now,
            )
            .await?
        } else if let Some(deadline) = touch_due(&record, now) {
            let touch = store.touch(&record.id, record.version, deadline, now);
            match self.timed(touch).await? {
                // Saved since: that save set the deadline.
                Touched::Touched | Touched::Outdated => None,
                Touched::Gone => state.remove_ended.then(removal),
            }
        } else {
            None
        };
        // Old ids go only once their replacement is stored, so a failure in
        // between leaves the visitor logged in.
        for id in &state.delete {
            self.timed(store.delete(id)).await?;
            tracing::debug!(session = %id.log_tag(), "session deleted (ended or moved to a new id)");
        }
        Ok(cookie)
    }

    /// Stores `record` as a new session. A collision of random 128-bit ids
    /// means a broken store or random source: a few tries, then give up.
    async fn create(
        &self,
        store: &dyn context::DynStore,
        record: &mut Arc<Record>,
    ) -> Result<(), StoreError> {
        for _ in 0..3 {
            if self.timed(store.create(record)).await? == Created::Created {
                return Ok(());
            }
            Arc::make_mut(record).id = Id::random();
        }
        Err(StoreError::new(
            StoreErrorKind::Unavailable,
            "new session ids keep colliding in the store",
        ))
    }

    /// Moves a session from `old` to `record`'s new id. The new record is
    /// stored first, so a failure in between leaves the visitor logged in;
    /// then `old` is deleted only if it still holds the version this
    /// request loaded. If another request saved `old` in the meantime, its
    /// write is carried over (reload, replay this request's changes, save
    /// the new record) and the delete is tried again. If `old` is gone,
    /// another request cycled or ended the session first: this request's
    /// new record is deleted again and its cookie left alone, so exactly one
    /// new id survives.
    async fn cycle(
        &self,
        store: &dyn context::DynStore,
        old: Id,
        mut record: Arc<Record>,
        changes: &[Change],
        now: u64,
    ) -> Result<Option<HeaderValue>, StoreError> {
        let mut old_version = record.version;
        let new = Arc::make_mut(&mut record);
        new.version = 0;
        refresh_idle_deadline(new, now);
        self.create(store, &mut record).await?;
        let _turn = self.write_turn(&old).await?;
        for attempt in 0..=self.ctx().max_replays {
            backoff(attempt).await;
            let outcome = self
                .timed(store.delete_if_version(&old, old_version))
                .await?;
            let fresh = match outcome {
                Deleted::Deleted => {
                    tracing::debug!(session = %record.id.log_tag(), "session id cycled");
                    return Ok(self.ctx().cookie_for(&record, now));
                }
                Deleted::Gone => None,
                Deleted::Conflict => self.timed(store.load(&old, now)).await?,
            };
            let Some(fresh) = fresh else {
                return self.lost_cycle(store, old, &record).await;
            };
            // Another request saved the old id: carry its write over.
            old_version = fresh.version;
            let mut next = replayed(fresh, changes, now)?;
            let moved = Arc::make_mut(&mut next);
            moved.id = record.id;
            moved.version = record.version;
            match self.timed(store.save(&mut next, now)).await? {
                Saved::Saved { .. } => record = next,
                // Ended meanwhile ("log out everywhere").
                Saved::Gone => return self.lost_cycle(store, old, &record).await,
                Saved::Conflict => {
                    return Err(StoreError::new(
                        StoreErrorKind::Unavailable,
                        "a new session record changed before its id was handed out",
                    ));
                }
            }
        }
        Err(too_many_replays())
    }

    /// Another request cycled or ended the session first: drops this
    /// request's new record and leaves the cookie alone.
    async fn lost_cycle(
        &self,
        store: &dyn context::DynStore,
        old: Id,
        record: &Record,
    ) -> Result<Option<HeaderValue>, StoreError> {
        self.timed(store.delete(&record.id)).await?;
        tracing::info!(
            session = %old.log_tag(),
            "session cycled or ended by another request first; this request's changes dropped"
        );
        Ok(None)
    }

    /// Saves a changed record; on a version conflict, reloads and replays
    /// this request's changes a bounded number of times.
    async fn save(
        &self,
        store: &dyn context::DynStore,
        mut record: Arc<Record>,
        changes: &[Change],
        resend_cookie: bool,
        remove_ended: bool,
        now: u64,
    ) -> Result<Option<HeaderValue>, StoreError> {
        refresh_idle_deadline(Arc::make_mut(&mut record), now);
        let removal = || remove_ended.then(|| self.ctx().removal_cookie());
        let mut turn = self.write_turn(&record.id).await?;
        // A request of this process saved the session since this one loaded
        // it: its record is the newer copy a conflict would load.
        if let Some(last) = turn.newer(&record.id, record.version) {
            record = replayed(Arc::clone(last), changes, now)?;
        }
        for attempt in 0..=self.ctx().max_replays {
            backoff(attempt).await;
            // The store sets the new version; a store in memory keeps this
            // very record, shared with `turn` below.
            match self.timed(store.save(&mut record, now)).await? {
                Saved::Saved { .. } => {
                    let cookie = resend_cookie
                        .then(|| self.ctx().cookie_for(&record, now))
                        .flatten();
                    turn.keep(record);
                    return Ok(cookie);
                }
                Saved::Gone => {
                    tracing::info!(session = %record.id.log_tag(), "session ended before this request saved; changes dropped");
                    return Ok(removal());
                }
                Saved::Conflict => {
                    let Some(fresh) = self.timed(store.load(&record.id, now)).await? else {
                        return Ok(removal());
                    };
                    record = replayed(fresh, changes, now)?;
                }
            }
        }
        Err(too_many_replays())
    }
}

/// `fresh`, a newer copy of the session from the store, with this
/// request's own changes (data, user, expiry) on top of it (on a copy of
/// its own if `fresh` is shared).
fn replayed(
    mut fresh: Arc<Record>,
    changes: &[Change],
    now: u64,
) -> Result<Arc<Record>, StoreError> {
    let record = Arc::make_mut(&mut fresh);
    for change in changes {
        change.apply(record).map_err(|err| {
            // This error is logged: it names the key, never the value (a
            // serde message quotes the value it could not read).
            let what = match &err {
                SessionError::Json { key, .. } => {
                    format!("the value of `{key}` is no longer of the type this request's update reads, or its result cannot be stored")
                }
                _ => "a change cannot be made on it".to_owned(),
            };
            StoreError::new(
                StoreErrorKind::Corrupt,
                format!("replaying this request's changes on a newer session failed: {what}"),
            )
        })?;
    }
    refresh_idle_deadline(record, now);
    Ok(fresh)
}

/// Before the `attempt`th try of a save that lost races: nothing before
/// the first two tries (the usual case of two tabs settles at once), then a
/// random wait of up to 2, 4, 8, ... ms, at most 50 ms, so that many
/// requests racing on one session spread out instead of colliding again.
async fn backoff(attempt: usize) {
    if attempt < 2 {
        return;
    }
    let ceiling = 1u64 << attempt.min(6);
    let wait = rand::random_range(0..=ceiling.min(50) * 1_000);
    // Boxed: only the third try of a save waits, and the timer's state
    // would otherwise be part of every save's future.
    Box::pin(tokio::time::sleep(Duration::from_micros(wait))).await;
}

/// How many arrays and objects a session value may nest. Stores and cookie
/// formats read records back with serde_json, which reads 127 levels, and the
/// record takes a few of them (its own object, its data's, a store's
/// envelope): a value nested deeper would be saved and then be unreadable.
pub(crate) const MAX_VALUE_DEPTH: usize = 100;

/// `value` as the JSON a session stores, refused if it nests arrays and
/// objects deeper than [`MAX_VALUE_DEPTH`].
fn session_value<T: Serialize>(value: T) -> Result<Value, serde_json::Error> {
    let value = serde_json::to_value(value)?;
    if nests_too_deep(&value) {
        return Err(serde::ser::Error::custom(format_args!(
            "it nests arrays and objects more than {MAX_VALUE_DEPTH} deep, deeper than a \
             stored session can be read back"
        )));
    }
    Ok(value)
}

/// Whether `value` nests arrays and objects more than [`MAX_VALUE_DEPTH`]
/// deep; walked without recursion (and without allocating for a plain
/// value, the common case).
fn nests_too_deep(value: &Value) -> bool {
    let container = |value: &Value| value.is_array() || value.is_object();
    if !container(value) {
        return false;
    }
    let mut stack = vec![(value, 1)];
    while let Some((value, depth)) = stack.pop() {
        if depth > MAX_VALUE_DEPTH {
            return true;
        }
        let next = depth + 1;
        match value {
            Value::Array(items) => {
                stack.extend(items.iter().filter(|v| container(v)).map(|v| (v, next)));
            }
            Value::Object(map) => {
                stack.extend(map.values().filter(|v| container(v)).map(|v| (v, next)));
            }
            _ => {}
        }
    }
    false
}

/// Sets `key` to `value`, copying the key only when it is new.
fn set(data: &mut crate::store::Data, key: &str, value: Value) {
    match data.get_mut(key) {
        Some(slot) => *slot = value,
        None => {
            data.insert(key.to_owned(), value);
        }
    }
}

/// The output of a poll, if it was ready.
fn ready<T>(poll: Poll<T>) -> Option<T> {
    match poll {
        Poll::Ready(value) => Some(value),
        Poll::Pending => None,
    }
}

/// The error when a session keeps changing under a request.
fn too_many_replays() -> StoreError {
    StoreError::new(
        StoreErrorKind::Unavailable,
        "the session kept changing under this request; its changes were not saved",
    )
}

/// Moves `record`'s idle deadline to what a visit at `now` gives, but
/// never earlier than it is: after the clock steps back, a visit must not
/// end the session sooner than the visit before it said (the touch path,
/// [`touch_due`], likewise only moves it later). The later deadline stays
/// within the absolute deadline.
fn refresh_idle_deadline(record: &mut Record, now: u64) {
    if let Some(deadline) = record.refreshed_idle_deadline(now) {
        let kept = record
            .idle_deadline
            .map_or(deadline, |current| current.min(record.absolute_deadline));
        record.idle_deadline = Some(deadline.max(kept));
    }
}

/// The idle deadline to move to, when a visit at `now` should refresh it:
/// only once at least a tenth of the idle window has passed since the last
/// refresh, so read-only traffic does not write on every request.
fn touch_due(record: &Record, now: u64) -> Option<u64> {
    let idle = record.idle_timeout?;
    let current = record.idle_deadline?;
    let next = record.refreshed_idle_deadline(now)?;
    let step = (idle / 10).max(1);
    (next >= current.saturating_add(step)).then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pop`'s change, replayed on a newer copy, removes the key only if it
    /// still holds the value `pop` returned; `remove` removes whatever is
    /// there.
    #[test]
    fn a_replayed_pop_removes_only_the_value_it_returned() {
        let mut record = Record::new(Id::random(), 1_000, Some(60), 3_600);
        record.data.insert("flash".to_owned(), Value::from("new"));
        let popped_old = Change::RemoveIf("flash".to_owned(), Value::from("old"));
        popped_old.apply(&mut record).unwrap();
        assert_eq!(record.data.get("flash"), Some(&Value::from("new")));
        let popped_new = Change::RemoveIf("flash".to_owned(), Value::from("new"));
        popped_new.apply(&mut record).unwrap();
        assert_eq!(record.data.get("flash"), None);
        // Nothing there: nothing to do.
        popped_new.apply(&mut record).unwrap();
        assert!(record.data.is_empty());
        record.data.insert("flash".to_owned(), Value::from("new"));
        Change::Remove("flash".to_owned())
            .apply(&mut record)
            .unwrap();
        assert!(record.data.is_empty());
    }

    /// `insert` and `update` refuse a value nested deeper than every store
    /// reads back, before changing anything; at the limit they take it. A
    /// value nested past the stack's depth is walked without recursion.
    #[tokio::test]
    async fn values_nested_too_deep_are_refused_before_any_change() {
        let nested = |levels: usize| {
            (1..levels).fold(serde_json::json!([1]), |inner, _| Value::Array(vec![inner]))
        };
        let session = Session::detached();
        session
            .insert("deep", nested(MAX_VALUE_DEPTH))
            .await
            .unwrap();
        let err = session
            .insert("deep", nested(MAX_VALUE_DEPTH + 1))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, SessionError::Json { key, .. } if key == "deep"),
            "{err:?}"
        );
        assert!(err.to_string().contains("100 deep"), "{err}");
        let err = session
            .update("other", move |_: Option<Value>| nested(MAX_VALUE_DEPTH + 1))
            .await
            .unwrap_err();
        assert!(matches!(err, SessionError::Json { .. }), "{err:?}");
        assert_eq!(
            session.get::<Value>("deep").await.unwrap(),
            Some(nested(MAX_VALUE_DEPTH))
        );
        assert!(!session.contains_key("other").await.unwrap());

        // Objects count as arrays do, and only the deepest path matters.
        let mut wide = serde_json::json!({"flat": [1, 2, 3]});
        let mut inner = serde_json::json!({});
        for _ in 0..MAX_VALUE_DEPTH {
            inner = serde_json::json!({ "k": inner });
        }
        wide["deep"] = inner;
        assert!(nests_too_deep(&wide));
        assert!(!nests_too_deep(&Value::from(1)));
        assert!(!nests_too_deep(&nested(MAX_VALUE_DEPTH)));
    }

    /// A write after the clock stepped back keeps the later idle deadline;
    /// the absolute deadline still caps it.
    #[test]
    fn a_refresh_never_moves_the_idle_deadline_earlier() {
        let mut record = Record::new(Id::random(), 1_000_000, Some(60), 3_600);
        refresh_idle_deadline(&mut record, 1_000_050);
        assert_eq!(record.idle_deadline, Some(1_000_110));
        refresh_idle_deadline(&mut record, 999_970);
        assert_eq!(record.idle_deadline, Some(1_000_110), "moved earlier");
        refresh_idle_deadline(&mut record, 1_000_100);
        assert_eq!(record.idle_deadline, Some(1_000_160));
        refresh_idle_deadline(&mut record, 1_003_590);
        assert_eq!(
            record.idle_deadline,
            Some(1_003_600),
            "the absolute deadline"
        );
        // An idle deadline past the absolute one (never made here) is
        // brought back within it.
        record.idle_deadline = Some(2_000_000);
        refresh_idle_deadline(&mut record, 1_000_000);
        assert_eq!(record.idle_deadline, Some(1_003_600));
    }

    /// Once the request is finished, every clone refuses every call; a
    /// detached session that nobody finishes keeps working.
    #[tokio::test]
    async fn a_finished_session_refuses_every_call() {
        let session = Session::detached();
        session.insert("k", 1).await.unwrap();
        let task = session.clone();
        assert!(matches!(
            session.finish(http::StatusCode::OK),
            Finish::Now(Ok(Some(_)))
        ));
        assert!(matches!(
            task.insert("k", 2).await,
            Err(SessionError::Finished)
        ));
        assert!(matches!(
            task.get::<u32>("k").await,
            Err(SessionError::Finished)
        ));
        assert!(matches!(task.reset().await, Err(SessionError::Finished)));
        assert!(matches!(
            task.user_sessions("ada").await,
            Err(SessionError::Finished)
        ));
        let other = Session::detached();
        other.insert("k", 1).await.unwrap();
        assert_eq!(other.get::<u32>("k").await.unwrap(), Some(1));
    }

    /// A change refused for size leaves exactly what was there before.
    #[tokio::test]
    async fn a_refused_change_is_undone_exactly() {
        let session = Session::detached();
        session.insert("k", "small").await.unwrap();
        session.set_user(Some("ada")).await.unwrap();
        let big = "x".repeat(5_000);
        assert!(matches!(
            session.insert("k", &big).await,
            Err(SessionError::TooLarge { .. })
        ));
        assert!(session.insert("new", &big).await.is_err());
        let grow = move |_: Option<String>| big.clone();
        assert!(session.update("k", grow).await.is_err());
        assert!(session.set_user(Some(&"u".repeat(5_000))).await.is_err());
        assert_eq!(
            session.get::<String>("k").await.unwrap().as_deref(),
            Some("small")
        );
        assert_eq!(session.keys().await.unwrap(), ["k"]);
        assert_eq!(session.user().await.unwrap().as_deref(), Some("ada"));
        // Shrinking changes are never refused.
        assert!(session.remove("k").await.unwrap());
        session.clear().await.unwrap();
        assert!(session.is_empty().await.unwrap());
    }
}
