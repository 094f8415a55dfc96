//! Saves of concurrent requests, sent to Redis together: one `EVALSHA` of
//! the `SAVE` script for every save queued while the previous call was on
//! its way (group commit).
//!
//! A save waits for no timer and no batch to fill: when nothing is on its
//! way it is sent at once, alone. Under load, saves queue while a call is
//! on its way and go in the next one, so Redis runs its script setup, and
//! this process its round trip, once per call instead of once per save.
//! Each save in a call is still its own compare-and-set, with its own
//! status.

use std::{
    sync::{Arc, PoisonError, RwLock},
    time::Duration,
};

use tokio::sync::{mpsc, oneshot};

use super::{SAVE, cache::Ticket, link::Connection, map_error, timed_out};
use crate::store::{Id, Record, StoreError, StoreErrorKind};

/// Saves per call at most, so no one call keeps Redis busy for long.
const MAX_BATCH: usize = 128;

/// One save, as the `SAVE` script takes it.
pub(super) struct Job {
    pub(super) key: String,
    /// The session in the local cache.
    pub(super) cached: (u64, Id),
    /// What Redis is to hold: a header or a version (see `SAVE`).
    pub(super) expected: Vec<u8>,
    pub(super) value: Vec<u8>,
    pub(super) now: u64,
    pub(super) expire_at: String,
    /// As [`user_arg`](super::user_arg) makes it.
    pub(super) user: Vec<u8>,
    /// What Redis holds once the save succeeds, for the local cache (none
    /// when the store handle keeps no copies).
    pub(super) keep: Option<Arc<Record>>,
    pub(super) timeout: Duration,
    pub(super) reply: oneshot::Sender<Result<i64, StoreError>>,
}

/// The queue of saves of one connection, and the task that sends them.
#[derive(Clone)]
pub(super) struct Saves(Arc<Queue>);

struct Queue {
    conn: Arc<Connection>,
    /// Written only to start the task again (see [`Saves::push`]).
    sender: RwLock<mpsc::UnboundedSender<Job>>,
}

impl Saves {
    /// Starts the task that sends the saves (it ends when the last handle
    /// is dropped).
    pub(super) fn start(conn: Arc<Connection>) -> Self {
        let sender = RwLock::new(spawn(Arc::clone(&conn)));
        Self(Arc::new(Queue { conn, sender }))
    }

    /// Queues `job`; its status arrives on its `reply`. If the task has
    /// stopped because the runtime it was started on shut down (a store
    /// made on one runtime and used on another), it starts again on the
    /// current one.
    pub(super) fn push(&self, job: Job) -> Result<(), StoreError> {
        let read = self.0.sender.read().unwrap_or_else(PoisonError::into_inner);
        let Err(mpsc::error::SendError(job)) = read.send(job) else {
            return Ok(());
        };
        drop(read);
        let mut sender = self
            .0
            .sender
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        // Another save may have started it again meanwhile.
        if sender.is_closed() {
            *sender = spawn(Arc::clone(&self.0.conn));
        }
        sender.send(job).map_err(|_| stopped())
    }
}

/// Starts a task that sends the saves queued on the sender it returns.
fn spawn(conn: Arc<Connection>) -> mpsc::UnboundedSender<Job> {
    let (sender, jobs) = mpsc::unbounded_channel();
    tokio::spawn(send_all(conn, jobs));
    sender
}

/// The error of a save when the task that sends them is gone.
pub(super) fn stopped() -> StoreError {
    StoreError::new(
        StoreErrorKind::Unavailable,
        "save: the Redis store's save task has stopped (its runtime shut down)",
    )
}

async fn send_all(conn: Arc<Connection>, mut queue: mpsc::UnboundedReceiver<Job>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        send(&conn, &mut jobs).await;
    }
}

/// Sends `jobs` in one call and answers each; leaves `jobs` empty.
async fn send(conn: &Connection, jobs: &mut Vec<Job>) {
    let timeout = jobs.iter().map(|job| job.timeout).max().unwrap_or_default();
    let link = match tokio::time::timeout(timeout, conn.link()).await {
        Ok(Ok(link)) => link,
        Ok(Err(err)) => return fail(conn, jobs, &[], &map_error(err, "save")),
        Err(_) => return fail(conn, jobs, &[], &timed_out("save", timeout)),
    };
    let tracked = conn.track(&link, timeout).await;
    if link.is_broken() {
        // Redis did not answer the tracking request either: the next batch
        // connects again, rather than this one waiting out another timeout.
        return fail(conn, jobs, &[], &timed_out("save", timeout));
    }
    // A save whose request stopped waiting (and was answered that it
    // failed) is not sent: it must not be made after all.
    jobs.retain(|job| !job.reply.is_closed());
    if jobs.is_empty() {
        return;
    }
    let keeps = tracked && jobs.iter().any(|job| job.keep.is_some());
    let mut cmd = super::evalsha(&SAVE, jobs.len());
    for job in jobs.iter() {
        cmd.arg(&job.key);
    }
    cmd.arg(if keeps { super::READ_BACK } else { "0" });
    let mut tickets = Vec::with_capacity(jobs.len());
    for job in jobs.iter() {
        cmd.arg(&job.expected)
            .arg(&job.value)
            .arg(job.now)
            .arg(&job.expire_at)
            .arg(&job.user);
        tickets.push(conn.cache.ticket(&job.cached));
    }
    let mut redis = link.conn();
    let request = super::Request::new(cmd, keeps);
    let call = super::eval::<Vec<i64>>(&mut redis, &SAVE, &request);
    let codes = match tokio::time::timeout(timeout, call).await {
        Ok(Ok(codes)) if codes.len() == jobs.len() => codes,
        Ok(Ok(codes)) => {
            let err = StoreError::new(
                StoreErrorKind::Unavailable,
                format!(
                    "save: Redis answered {} statuses for {} saves",
                    codes.len(),
                    jobs.len()
                ),
            );
            return fail(conn, jobs, &tickets, &err);
        }
        Ok(Err(err)) => {
            link.failed(&err);
            return fail(conn, jobs, &tickets, &map_error(err, "save"));
        }
        Err(_) => {
            conn.timed_out(&link, timeout);
            return fail(conn, jobs, &tickets, &timed_out("save", timeout));
        }
    };
    conn.heard(&link);
    for ((mut job, code), ticket) in jobs.drain(..).zip(codes).zip(tickets) {
        // Taken in any case: a saver whose save failed gets its record
        // back unshared.
        let kept = job.keep.take().filter(|_| code == 1 && keeps);
        conn.cache.wrote(ticket, &job.cached, kept);
        let status = super::corrupt_status("save", code);
        // The request may have given up (its own timeout): nothing to do.
        let _ = job.reply.send(status);
    }
}

/// Answers every job with `err`; what Redis now holds is unknown, so the
/// cache drops its copies.
fn fail(conn: &Connection, jobs: &mut Vec<Job>, tickets: &[Ticket], err: &StoreError) {
    for (i, job) in jobs.drain(..).enumerate() {
        match tickets.get(i) {
            Some(ticket) => conn.cache.wrote(*ticket, &job.cached, None),
            None => conn.cache.invalidate(&job.cached),
        }
        let _ = job.reply.send(Err(err.copied()));
    }
}
