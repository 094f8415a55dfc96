//! Where "now" comes from: the system clock, or a clock a test controls.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

/// A source of the current time in Unix seconds.
///
/// The middleware asks its clock for every expiry decision, so tests can move
/// time with a [`ManualClock`] instead of sleeping.
///
/// # Example
///
/// ```
/// use keepsake::session::{Clock, SystemClock};
///
/// assert!(SystemClock.now() > 1_700_000_000);
/// ```
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current time, in Unix seconds.
    fn now(&self) -> u64;
}

/// The system clock (the default).
///
/// # Example
///
/// ```
/// use keepsake::session::{Clock, SystemClock};
///
/// assert_eq!(SystemClock.now() / 10, keepsake::codec::unix_now() / 10);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        crate::codec::unix_now()
    }
}

/// A clock that moves only when told to; clones share the same time.
///
/// # Example
///
/// ```
/// use keepsake::session::{Clock, ManualClock};
///
/// let clock = ManualClock::new(1_000);
/// let shared = clock.clone();
/// clock.advance(30);
/// assert_eq!(shared.now(), 1_030);
/// clock.set(5);
/// assert_eq!(shared.now(), 5);
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock showing `now`.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::session::{Clock, ManualClock};
    ///
    /// assert_eq!(ManualClock::new(42).now(), 42);
    /// ```
    pub fn new(now: u64) -> Self {
        Self(Arc::new(AtomicU64::new(now)))
    }

    /// Sets the time.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::session::{Clock, ManualClock};
    ///
    /// let clock = ManualClock::new(0);
    /// clock.set(9);
    /// assert_eq!(clock.now(), 9);
    /// ```
    pub fn set(&self, now: u64) {
        self.0.store(now, Ordering::SeqCst);
    }

    /// Moves the time forward by `secs`.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::session::{Clock, ManualClock};
    ///
    /// let clock = ManualClock::new(0);
    /// clock.advance(3);
    /// assert_eq!(clock.now(), 3);
    /// ```
    pub fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}
