//! The connection behind a [`RedisStore`](super::RedisStore) and its
//! clones: one multiplexed RESP3 connection (a [`Link`]), replaced by a new
//! one when it breaks, and the local session cache that Redis keeps
//! coherent by client tracking on that connection.

use std::{
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use redis::{
    AsyncConnectionConfig, Client, PushInfo, PushKind, RedisError, Value,
    aio::MultiplexedConnection,
};

use super::cache::Cache;

/// One connection to Redis. Commands run on the current link; a link that
/// broke is replaced by a new connection when the next command needs one.
pub(super) struct Link {
    conn: MultiplexedConnection,
    state: Arc<LinkState>,
    /// Whether Redis tracks, for this connection, the keys it reads: set
    /// by the first command that needs it.
    tracking: tokio::sync::OnceCell<bool>,
    /// Ends the link's watch task when the link is dropped (see
    /// [`watch_runtime`]).
    _watch: tokio::sync::oneshot::Sender<Infallible>,
}

/// What a link's push handler shares with the store.
struct LinkState {
    /// Counts the links a [`Connection`] opened, from 1.
    generation: u64,
    /// The connection closed or failed: no command is sent on it again,
    /// and no copy it read is kept.
    broken: AtomicBool,
    /// When Redis was last heard from on this link, in milliseconds since
    /// the [`Connection`] was made.
    heard: AtomicU64,
    /// The cache the link's invalidations go to.
    cache: Arc<Cache>,
}

impl Link {
    /// A handle to send commands on.
    pub(super) fn conn(&self) -> MultiplexedConnection {
        self.conn.clone()
    }

    pub(super) fn generation(&self) -> u64 {
        self.state.generation
    }

    pub(super) fn is_broken(&self) -> bool {
        self.state.broken.load(Ordering::Acquire)
    }

    /// Marks the link broken after a command failed in a way that leaves
    /// the connection unusable, and empties the cache (as its push handler
    /// does once it sees the connection close; this may come first).
    pub(super) fn failed(&self, err: &RedisError) {
        if breaks_link(err) {
            self.state.broken.store(true, Ordering::Release);
            self.state.cache.flush();
        }
    }
}

/// Whether `err` leaves the connection it came on unusable.
fn breaks_link(err: &RedisError) -> bool {
    err.is_unrecoverable_error() || err.is_connection_dropped() || err.is_io_error()
}

/// The connection shared by a store and its clones.
pub(super) struct Connection {
    client: Client,
    connect_timeout: Duration,
    current: ArcSwap<Link>,
    /// One reconnection at a time.
    reconnecting: tokio::sync::Mutex<()>,
    generations: AtomicU64,
    /// The local copies of sessions (used by the store handles that keep
    /// them).
    pub(super) cache: Arc<Cache>,
    /// How long the cache is trusted after Redis was last heard from.
    trust: Duration,
    started: Instant,
}

impl Connection {
    /// Connects to Redis (RESP3, which carries the invalidations on the
    /// same connection as the replies).
    pub(super) async fn open(
        client: Client,
        connect_timeout: Duration,
        cache: Arc<Cache>,
        trust: Duration,
    ) -> Result<Self, RedisError> {
        let started = Instant::now();
        let first = new_link(&client, connect_timeout, 1, cache.clone(), started).await?;
        Ok(Self {
            client,
            connect_timeout,
            current: ArcSwap::from_pointee(first),
            reconnecting: tokio::sync::Mutex::new(()),
            generations: AtomicU64::new(1),
            cache,
            trust,
            started,
        })
    }

    /// The current link, without waiting: it may be broken.
    pub(super) fn current(&self) -> arc_swap::Guard<Arc<Link>> {
        self.current.load()
    }

    /// The link to send a command on, after connecting again if the last
    /// one broke.
    pub(super) async fn link(&self) -> Result<Arc<Link>, RedisError> {
        let link = self.current.load_full();
        if !link.is_broken() {
            return Ok(link);
        }
        let _turn = self.reconnecting.lock().await;
        let current = self.current.load_full();
        if !current.is_broken() {
            // Another request reconnected meanwhile.
            return Ok(current);
        }
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        let link = Arc::new(
            new_link(
                &self.client,
                self.connect_timeout,
                generation,
                self.cache.clone(),
                self.started,
            )
            .await?,
        );
        self.current.store(link.clone());
        Ok(link)
    }

    /// Notes that a command on `link` got no answer within `timeout`. If
    /// Redis has said nothing on the link for that long, the link is taken
    /// for dead and marked broken (the cache drops its copies), so that the
    /// next command connects again: a connection that a firewall or NAT
    /// forgot answers nothing and is not closed, and TCP may take many
    /// minutes to notice. A Redis that is only slow still answers other
    /// commands, which keeps the link.
    pub(super) fn timed_out(&self, link: &Link, timeout: Duration) {
        let silent = self
            .millis()
            .saturating_sub(link.state.heard.load(Ordering::Relaxed));
        if u128::from(silent) >= timeout.as_millis()
            && !link.state.broken.swap(true, Ordering::AcqRel)
        {
            tracing::warn!(
                silent_ms = silent,
                "Redis said nothing on its connection within the command timeout; connecting again"
            );
            link.state.cache.flush();
        }
    }

    /// Notes that Redis answered on `link`.
    pub(super) fn heard(&self, link: &Link) {
        let now = self.millis();
        // Written only when it changes: every reply passes here.
        if link.state.heard.load(Ordering::Relaxed) != now {
            link.state.heard.store(now, Ordering::Relaxed);
        }
    }

    fn millis(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether copies may be served from the cache on `link`: Redis tracks
    /// them there, the link is whole, and it was heard from recently (a
    /// connection that stopped answering without closing would also stop
    /// carrying invalidations).
    pub(super) fn trusted(&self, link: &Link) -> bool {
        link.tracking.get() == Some(&true)
            && !link.is_broken()
            && self
                .millis()
                .saturating_sub(link.state.heard.load(Ordering::Relaxed))
                <= u64::try_from(self.trust.as_millis()).unwrap_or(u64::MAX)
    }

    /// Asks Redis, once per link, to track the keys this connection reads
    /// right after `CLIENT CACHING YES` (`CLIENT TRACKING ON OPTIN NOLOOP`):
    /// Redis then sends an invalidation the first time another connection
    /// changes such a key, and none for this connection's own changes, which
    /// the store applies to the cache itself. Only the reads whose copy the
    /// cache keeps are tracked, not the store's other reads (a purge, a
    /// listing), so Redis remembers no more keys than it must. Whether Redis
    /// does.
    ///
    /// `CLIENT CACHING YES`, which every tracked command is sent after, is
    /// tried too (followed by a `PING`, which uses it up, so that no other
    /// command of the connection is tracked): a server may allow the one
    /// and refuse the other (an ACL user with `-client|caching`), and every
    /// tracked command would then fail. When Redis refuses either, tracking
    /// is turned off again and the link has no cache, as when it refuses
    /// `CLIENT TRACKING` itself.
    pub(super) async fn track(&self, link: &Link, timeout: Duration) -> bool {
        // Only a definite answer is kept: after a timeout or a broken
        // connection the next command asks again.
        let ask = || async {
            let mut conn = link.conn();
            let mut on = redis::cmd("CLIENT");
            on.arg("TRACKING").arg("ON").arg("OPTIN").arg("NOLOOP");
            let mut probe = redis::pipe();
            probe
                .cmd("CLIENT")
                .arg("CACHING")
                .arg("YES")
                .ignore()
                .cmd("PING")
                .ignore();
            let asked = async {
                // Whether tracking is on when a command is refused.
                let mut on_now = false;
                let result = async {
                    on.query_async::<()>(&mut conn).await?;
                    on_now = true;
                    probe.query_async::<()>(&mut conn).await
                }
                .await;
                (result, on_now)
            };
            match tokio::time::timeout(timeout, asked).await {
                Ok((Ok(()), _)) => {
                    self.heard(link);
                    Ok(true)
                }
                Ok((Err(err), _)) if breaks_link(&err) => {
                    link.failed(&err);
                    Err(())
                }
                Ok((Err(err), on_now)) => {
                    tracing::warn!(error = %err, "Redis refused client tracking; sessions are read from Redis every time");
                    if on_now {
                        // Only `CLIENT CACHING` was refused. With `OPTIN`,
                        // Redis tracks nothing for this connection without
                        // it anyway, so the answer changes nothing: turning
                        // tracking off only spares Redis the bookkeeping.
                        let mut off = redis::cmd("CLIENT");
                        off.arg("TRACKING").arg("OFF");
                        let _ =
                            tokio::time::timeout(timeout, off.query_async::<()>(&mut conn)).await;
                    }
                    Ok(false)
                }
                Err(_) => {
                    self.timed_out(link, timeout);
                    Err(())
                }
            }
        };
        match link.tracking.get() {
            Some(tracked) => *tracked,
            None => link
                .tracking
                .get_or_try_init(ask)
                .await
                .is_ok_and(|tracked| *tracked),
        }
    }
}

/// Opens link number `generation`, whose push handler applies Redis's
/// invalidations to `cache` and flushes it when the connection closes.
async fn new_link(
    client: &Client,
    connect_timeout: Duration,
    generation: u64,
    cache: Arc<Cache>,
    started: Instant,
) -> Result<Link, RedisError> {
    let state = Arc::new(LinkState {
        generation,
        broken: AtomicBool::new(false),
        heard: AtomicU64::new(u64::try_from(started.elapsed().as_millis()).unwrap_or(0)),
        cache,
    });
    let pushed = state.clone();
    // Called by the connection's reader for each push, in order with the
    // replies around it.
    let on_push = move |push: PushInfo| -> Result<(), Infallible> {
        on_push(&pushed, &push);
        Ok(())
    };
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(connect_timeout))
        // Every command gets the store's own timeout instead.
        .set_response_timeout(None)
        .set_push_sender(on_push);
    let conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    Ok(Link {
        conn,
        tracking: tokio::sync::OnceCell::new(),
        _watch: watch_runtime(state.clone()),
        state,
    })
}

/// The connection's reader runs as a task of the runtime the link was
/// opened on, and goes when that runtime shuts down, without a word (no
/// disconnection push): a store made on one runtime and used on another
/// (kept in a `static` for many `#[tokio::test]`s, say) would fail its
/// next command. So a task of the same runtime marks the link broken when
/// it is dropped with its runtime, and the next command connects again on
/// the runtime it runs on. The task ends when the link is dropped (the
/// returned sender with it).
fn watch_runtime(state: Arc<LinkState>) -> tokio::sync::oneshot::Sender<Infallible> {
    struct BreakOnDrop(Arc<LinkState>);
    impl Drop for BreakOnDrop {
        fn drop(&mut self) {
            // A link replaced after it broke is dropped too, later: the
            // cache then already holds the next link's copies.
            if !self.0.broken.swap(true, Ordering::AcqRel) {
                self.0.cache.flush();
            }
        }
    }
    let (watch, dropped) = tokio::sync::oneshot::channel();
    let guard = BreakOnDrop(state);
    tokio::spawn(async move {
        let _guard = guard;
        let _ = dropped.await;
    });
    watch
}

fn on_push(state: &LinkState, push: &PushInfo) {
    let cache = &state.cache;
    match push.kind {
        PushKind::Disconnection => {
            state.broken.store(true, Ordering::Release);
            cache.flush();
        }
        PushKind::Invalidate => {
            match push.data.first() {
                Some(Value::Array(keys)) => {
                    for key in keys {
                        match key {
                            Value::BulkString(key) => cache.invalidate_key(key),
                            Value::SimpleString(key) => cache.invalidate_key(key.as_bytes()),
                            _ => cache.flush(),
                        }
                    }
                }
                // `null`: the whole database was flushed.
                _ => cache.flush(),
            }
        }
        _ => {}
    }
}
