//! The emulator's clock: wall time plus an offset that the control API can advance.
//!
//! Everything that expires (access tokens, refresh tokens in "testing" mode, authorization
//! codes, push channels, the rate-limit window) reads time from here, so a test can jump an
//! hour ahead with `POST /emulator/clock/advance` instead of sleeping.
use chrono::{DateTime, Duration, Utc};
use std::sync::atomic::{AtomicI64, Ordering};

/// Wall clock shifted by an offset in milliseconds that only ever grows.
#[derive(Debug, Default)]
pub struct Clock {
    offset_ms: AtomicI64,
}

impl Clock {
    /// The emulator's "now".
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + Duration::milliseconds(self.offset_ms.load(Ordering::Relaxed))
    }

    /// Milliseconds since the Unix epoch, in emulator time.
    pub fn now_ms(&self) -> i64 {
        self.now().timestamp_millis()
    }

    /// Moves the clock forward; negative amounts are ignored (time never goes back).
    pub fn advance(&self, by: Duration) -> DateTime<Utc> {
        let ms = by.num_milliseconds().max(0);
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
        self.now()
    }

    /// How far the clock has been moved ahead of the wall clock.
    pub fn offset(&self) -> Duration {
        Duration::milliseconds(self.offset_ms.load(Ordering::Relaxed))
    }
}
