//! The limiter's time source: monotonic nanoseconds since the limiter was
//! created, real or fake (tests advance it by hand, nothing sleeps).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Time source shared by every GCRA and token bucket of one [`RateLimiter`].
///
/// [`RateLimiter`]: super::RateLimiter
#[derive(Clone, Debug)]
pub struct Clock(Source);

#[derive(Clone, Debug)]
enum Source {
    Real(Instant),
    Fake(Arc<AtomicU64>),
}

impl Clock {
    /// The monotonic clock, starting now.
    pub fn real() -> Self {
        Clock(Source::Real(Instant::now()))
    }

    /// A clock that stands still at zero until [`Clock::advance`]d; clones
    /// share the same time.
    pub fn fake() -> Self {
        Clock(Source::Fake(Arc::default()))
    }

    /// Moves a fake clock forward; a real clock ignores it.
    pub fn advance(&self, by: Duration) {
        if let Source::Fake(n) = &self.0 {
            n.fetch_add(nanos_of(by), Ordering::Relaxed);
        }
    }

    /// Nanoseconds since the clock started.
    pub(crate) fn nanos(&self) -> u64 {
        match &self.0 {
            Source::Real(origin) => nanos_of(origin.elapsed()),
            Source::Fake(n) => n.load(Ordering::Relaxed),
        }
    }
}

/// governor reads the same time line (as a `Duration` since the start).
impl governor::clock::Clock for Clock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos())
    }
}

pub(crate) fn nanos_of(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
