//! The threads that own the SQLite store's connections.
//!
//! Each connection belongs to one thread for its whole life. Operations reach
//! a thread through a [`Queue`] and their results come back on a
//! [`oneshot`](tokio::sync::oneshot) channel, so the async side never blocks and no runtime's
//! blocking pool is involved.
//!
//! A thread takes everything queued when it wakes (up to [`MAX_BATCH`]
//! operations) and runs it as one batch:
//!
//! - the **writer** runs a batch in one `BEGIN IMMEDIATE` transaction, each
//!   operation inside its own savepoint, so one that fails is rolled back
//!   alone; results are sent only once the batch has committed (or, if the
//!   commit fails, every operation of the batch gets the commit's error). A
//!   busy server therefore pays for one write lock and one WAL commit per
//!   batch instead of one per operation (group commit);
//! - a **reader** runs a batch in one read transaction (one WAL snapshot).
//!
//! An operation whose caller stopped waiting before it started (a timed-out
//! request) is dropped unrun.

use std::{
    collections::VecDeque,
    panic::{AssertUnwindSafe, catch_unwind},
    sync::{Arc, Condvar, Mutex},
};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::{StoreError, StoreErrorKind, lock, sql_error};

/// The most operations one batch takes from its queue.
pub(super) const MAX_BATCH: usize = 64;

/// An operation on a connection: a statement or a few, no transaction
/// control of its own.
type Op<T> = Box<dyn FnOnce(&Connection) -> Result<T, StoreError> + Send>;

/// A queued operation with the channel its caller waits on.
pub(super) trait Task: Send {
    /// Whether the caller stopped waiting.
    fn abandoned(&self) -> bool;
    /// Runs the operation, keeping its result; false if it failed (or
    /// panicked), so its changes must be rolled back.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Sends the kept result, or `failure` instead of a success if the
    /// batch could not be committed.
    fn finish(self: Box<Self>, failure: Option<&StoreError>);
}

/// A [`Task`] for one operation returning `T`.
struct Pending<T> {
    op: Option<Op<T>>,
    result: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

/// A task for `op`, and the receiver of its result.
pub(super) fn task<T, F>(op: F) -> (Box<dyn Task>, oneshot::Receiver<Result<T, StoreError>>)
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
{
    let (reply, receiver) = oneshot::channel();
    let task = Pending {
        op: Some(Box::new(op)),
        result: None,
        reply,
    };
    (Box::new(task), receiver)
}

impl<T: Send> Task for Pending<T> {
    fn abandoned(&self) -> bool {
        self.reply.is_closed()
    }

    fn run(&mut self, conn: &Connection) -> bool {
        let Some(op) = self.op.take() else {
            return false;
        };
        let result = catch_unwind(AssertUnwindSafe(|| op(conn))).unwrap_or_else(|_| {
            Err(StoreError::new(
                StoreErrorKind::Unavailable,
                "an SQLite session store operation panicked",
            ))
        });
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(self: Box<Self>, failure: Option<&StoreError>) {
        let result = match (self.result, failure) {
            (Some(Ok(_)), Some(failure)) | (None, Some(failure)) => Err(failure.copied()),
            (Some(result), _) => result,
            (None, None) => Err(StoreError::new(
                StoreErrorKind::Unavailable,
                "an SQLite session store operation was not run",
            )),
        };
        // The caller may have stopped waiting meanwhile; nothing to do then.
        let _ = self.reply.send(result);
    }
}

/// Operations waiting for a thread.
pub(super) struct Queue {
    state: Mutex<QueueState>,
    ready: Condvar,
}

struct QueueState {
    tasks: VecDeque<Box<dyn Task>>,
    /// Threads waiting on `ready`: a push only signals when one sleeps.
    sleeping: usize,
    closed: bool,
}

impl Queue {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(QueueState {
                tasks: VecDeque::new(),
                sleeping: 0,
                closed: false,
            }),
            ready: Condvar::new(),
        })
    }

    /// Queues `task`; gives it back if the store is closed.
    pub(super) fn push(&self, task: Box<dyn Task>) -> Result<(), Box<dyn Task>> {
        let mut state = lock(&self.state);
        if state.closed {
            return Err(task);
        }
        state.tasks.push_back(task);
        let wake = state.sleeping > 0;
        drop(state);
        if wake {
            self.ready.notify_one();
        }
        Ok(())
    }

    /// Lets the threads finish what is queued and stop.
    pub(super) fn close(&self) {
        lock(&self.state).closed = true;
        self.ready.notify_all();
    }

    /// Waits for work and moves up to [`MAX_BATCH`] tasks into `batch`;
    /// false once the queue is closed and empty.
    fn take(&self, batch: &mut Vec<Box<dyn Task>>) -> bool {
        let mut state = lock(&self.state);
        loop {
            if !state.tasks.is_empty() {
                let n = state.tasks.len().min(MAX_BATCH);
                batch.extend(state.tasks.drain(..n));
                return true;
            }
            if state.closed {
                return false;
            }
            state.sleeping += 1;
            state = self
                .ready
                .wait(state)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            state.sleeping -= 1;
        }
    }
}

/// What a thread does with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// Write transactions (and reads too, when the store has no readers).
    Writer,
    /// Read transactions only.
    Reader,
}

/// Starts the thread that owns `conn` and serves `queue`.
pub(super) fn spawn(
    conn: Connection,
    queue: Arc<Queue>,
    role: Role,
    name: String,
) -> Result<std::thread::JoinHandle<()>, StoreError> {
    std::thread::Builder::new()
        .name(name)
        .spawn(move || serve(&conn, &queue, role))
        .map_err(|err| {
            StoreError::with_source(
                StoreErrorKind::Unavailable,
                "could not start a thread for the SQLite session store",
                err,
            )
        })
}

fn serve(conn: &Connection, queue: &Queue, role: Role) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.take(&mut batch) {
        // Dropping an abandoned task drops its channel: nothing to answer.
        batch.retain(|task| !task.abandoned());
        match role {
            Role::Writer => write_batch(conn, &mut batch),
            Role::Reader => read_batch(conn, &mut batch),
        }
        debug_assert!(batch.is_empty());
    }
}

/// Runs a batch in one write transaction, one savepoint per task.
fn write_batch(conn: &Connection, batch: &mut Vec<Box<dyn Task>>) {
    if batch.is_empty() {
        return;
    }
    let result = (|| {
        exec(conn, "BEGIN IMMEDIATE")?;
        // Getting the lock may have taken longer than a caller waits (the
        // busy timeout, 5 s by default, against the layer's 1 s): a write
        // whose caller gave up, and was answered that it failed, must not
        // be made after all.
        batch.retain(|task| !task.abandoned());
        if batch.len() == 1 {
            // No savepoint needed: a failed task rolls back the transaction.
            if !batch[0].run(conn) {
                exec(conn, "ROLLBACK")?;
                return Ok(());
            }
        } else {
            for task in batch.iter_mut() {
                exec(conn, "SAVEPOINT task")?;
                if !task.run(conn) {
                    exec(conn, "ROLLBACK TO task")?;
                }
                exec(conn, "RELEASE task")?;
            }
        }
        exec(conn, "COMMIT")
    })();
    let failure = result.err();
    if failure.is_some() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    for task in batch.drain(..) {
        task.finish(failure.as_ref());
    }
}

/// Runs a batch of reads in one read transaction (one snapshot).
fn read_batch(conn: &Connection, batch: &mut Vec<Box<dyn Task>>) {
    let transaction = batch.len() > 1 && exec(conn, "BEGIN").is_ok();
    for task in batch.iter_mut() {
        task.run(conn);
    }
    if transaction && exec(conn, "COMMIT").is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    for task in batch.drain(..) {
        task.finish(None);
    }
}

/// Runs one transaction-control statement (prepared once per connection).
fn exec(conn: &Connection, sql: &str) -> Result<(), StoreError> {
    conn.prepare_cached(sql)
        .and_then(|mut statement| statement.execute([]))
        .map(drop)
        .map_err(|err| sql_error(sql, err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copied_error_says_its_kind_once_and_keeps_its_source_text() {
        let err = StoreError::with_source(
            StoreErrorKind::Unavailable,
            "SQLite ROLLBACK TO task failed",
            std::io::Error::other("no such savepoint"),
        );
        assert_eq!(
            err.copied().to_string(),
            "session store unavailable: SQLite ROLLBACK TO task failed: no such savepoint"
        );
        assert_eq!(err.copied().kind(), StoreErrorKind::Unavailable);
        // A message that has its source's text already (as `sql_error`
        // writes them) does not get it twice.
        let err = StoreError::with_source(
            StoreErrorKind::Unavailable,
            "SQLite COMMIT failed: disk I/O error",
            std::io::Error::other("disk I/O error"),
        );
        assert_eq!(
            err.copied().to_string(),
            "session store unavailable: SQLite COMMIT failed: disk I/O error"
        );
    }

    fn table() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (n INTEGER NOT NULL)")
            .unwrap();
        conn
    }

    fn insert(n: i64, fail: bool) -> impl FnOnce(&Connection) -> Result<i64, StoreError> {
        move |conn: &Connection| {
            conn.execute("INSERT INTO t (n) VALUES (?1)", [n])
                .map_err(|err| sql_error("insert", err))?;
            if fail {
                return Err(StoreError::new(StoreErrorKind::Corrupt, "refused"));
            }
            Ok(n)
        }
    }

    /// Starts a writer on a fresh table, serving `queue`.
    fn start_writer(queue: &Arc<Queue>) {
        spawn(
            table(),
            Arc::clone(queue),
            Role::Writer,
            "test-writer".into(),
        )
        .unwrap();
    }

    fn count(conn: &Connection) -> Result<i64, StoreError> {
        conn.query_row("SELECT COUNT(*) FROM t", [], |row| row.get(0))
            .map_err(|err| sql_error("count", err))
    }

    /// Tasks queued before the writer starts form one batch: a failing or
    /// panicking one is rolled back alone, an abandoned one never runs, and
    /// the rest commit together.
    #[tokio::test]
    async fn one_batch_keeps_its_tasks_apart() {
        let queue = Queue::new();
        let mut replies = Vec::new();
        for (n, fail) in [(1, false), (2, true), (3, false)] {
            let (job, reply) = task(insert(n, fail));
            assert!(queue.push(job).is_ok());
            replies.push(reply);
        }
        let (job, reply) = task(|_: &Connection| -> Result<i64, StoreError> {
            panic!("an operation that panics")
        });
        assert!(queue.push(job).is_ok());
        replies.push(reply);
        let (job, abandoned) = task(insert(5, false));
        assert!(queue.push(job).is_ok());
        drop(abandoned);
        let (job, counted) = task(count);
        assert!(queue.push(job).is_ok());

        start_writer(&queue);
        let mut results = Vec::new();
        for reply in replies {
            results.push(reply.await.unwrap().map_err(|err| err.kind()));
        }
        assert_eq!(
            results,
            [
                Ok(1),
                Err(StoreErrorKind::Corrupt),
                Ok(3),
                Err(StoreErrorKind::Unavailable)
            ]
        );
        // Only 1 and 3 were kept: 2 rolled back, 5 never ran.
        assert_eq!(counted.await.unwrap().unwrap(), 2);

        // The thread is still serving after the panic, and stops when closed.
        let (job, again) = task(insert(6, false));
        assert!(queue.push(job).is_ok());
        assert_eq!(again.await.unwrap().unwrap(), 6);
        queue.close();
        let (job, _) = task(count);
        assert!(queue.push(job).is_err());
    }

    /// A batch whose transaction cannot be ended as planned answers every
    /// task with the error, even those whose statements succeeded.
    #[tokio::test]
    async fn a_failed_commit_fails_the_whole_batch() {
        let queue = Queue::new();
        let mut replies = Vec::new();
        for n in 1..=2 {
            let (job, reply) = task(insert(n, false));
            assert!(queue.push(job).is_ok());
            replies.push(reply);
        }
        // Ending the transaction early makes the writer's RELEASE fail.
        let (job, reply) = task(|conn: &Connection| {
            conn.execute_batch("RELEASE task; COMMIT")
                .map_err(|err| sql_error("end", err))
                .map(|()| 0)
        });
        assert!(queue.push(job).is_ok());
        replies.push(reply);
        start_writer(&queue);
        for reply in replies {
            assert!(reply.await.unwrap().is_err());
        }
        queue.close();
    }
}
