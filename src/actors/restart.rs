//! The supervisor's restart policy, as plain data: how long a failed child waits before it
//! comes back, and when the supervisor stops trying.
//!
//! Role: [`RestartTracker`] is owned by the supervisor, one per child. It counts failures in
//! a sliding window ([`SupervisionSettings::window`]); every failure gets an exponentially
//! growing, jittered delay from [`Backoff`]; more than [`SupervisionSettings::max_restarts`]
//! failures inside the window means [`RestartDecision::Degrade`]. A child that stays up for a
//! whole window has its failures age out, so its next crash starts again at
//! `backoff_initial` (the "quiet period" reset); an operator's resume calls
//! [`RestartTracker::reset`].
//!
//! Nothing here touches actors, clocks or tasks: the caller passes the instant in, which is
//! what lets the unit tests below use explicit instants instead of sleeping.

use std::collections::VecDeque;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

use crate::config::SupervisionSettings;

/// What the supervisor should do about a child that just failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartDecision {
    /// Spawn the child again once this delay has passed.
    RestartAfter(Duration),
    /// The child failed too often within the window: stop restarting it and report it.
    Degrade,
}

/// Truncated exponential backoff with jitter, always within `initial..=max`.
///
/// The n-th consecutive failure (0-based) waits somewhere in
/// `[max(initial, c/2), c]` with `c = min(max, initial * 2^(n+1))` ("equal jitter"): the
/// delay still grows, yet many children that failed together (a Google outage takes every
/// calendar down at once) do not all come back in the same instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
}

impl Backoff {
    /// A `max` below `initial` is raised to `initial`, so the bounds are never inverted.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max: max.max(initial),
        }
    }

    /// The longest delay the `attempt`-th consecutive failure can get.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        // 2^(attempt+1), saturating: past 2^31 the cap has long been reached anyway.
        let factor = 1u32
            .checked_shl(attempt.saturating_add(1))
            .unwrap_or(u32::MAX);
        self.initial
            .checked_mul(factor)
            .map_or(self.max, |d| d.min(self.max))
    }

    /// The shortest delay the `attempt`-th consecutive failure can get.
    pub fn floor(&self, attempt: u32) -> Duration {
        (self.ceiling(attempt) / 2).max(self.initial)
    }

    /// The delay for the `attempt`-th consecutive failure, `jitter` in `[0, 1]` choosing
    /// where between [`Backoff::floor`] and [`Backoff::ceiling`] it lands.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let floor = self.floor(attempt);
        let spread = self.ceiling(attempt).saturating_sub(floor);
        floor + spread.mul_f64(jitter.clamp(0.0, 1.0))
    }
}

/// Failure history of one child and the policy applied to it.
///
/// Kept small on purpose (no RNG inside): the supervisor holds one per child, and there is a
/// child per account and per target calendar.
#[derive(Debug, Clone)]
pub struct RestartTracker {
    backoff: Backoff,
    max_restarts: u32,
    window: Duration,
    /// Instants of the failures still inside the window, oldest first.
    failures: VecDeque<Instant>,
}

impl RestartTracker {
    pub fn new(settings: &SupervisionSettings) -> Self {
        Self {
            backoff: Backoff::new(settings.backoff_initial, settings.backoff_max),
            max_restarts: settings.max_restarts,
            window: settings.window,
            failures: VecDeque::new(),
        }
    }

    /// Records a failure at `now` and decides, with random jitter.
    pub fn record_failure(&mut self, now: Instant) -> RestartDecision {
        let jitter = rand::thread_rng().gen_range(0.0..=1.0);
        self.record_failure_with_jitter(now, jitter)
    }

    /// Records a failure at `now` and decides, with the jitter given (`0.0..=1.0`).
    pub fn record_failure_with_jitter(&mut self, now: Instant, jitter: f64) -> RestartDecision {
        self.forget_before(now);
        self.failures.push_back(now);
        let in_window = self.failures.len();
        if in_window > self.max_restarts as usize {
            return RestartDecision::Degrade;
        }
        let attempt = u32::try_from(in_window - 1).unwrap_or(u32::MAX);
        RestartDecision::RestartAfter(self.backoff.delay(attempt, jitter))
    }

    /// How many failures still count against the child at `now`.
    pub fn failures_in_window(&mut self, now: Instant) -> usize {
        self.forget_before(now);
        self.failures.len()
    }

    /// Forgets every failure: an operator has looked at the child and wants it back.
    pub fn reset(&mut self) {
        self.failures.clear();
    }

    fn forget_before(&mut self, now: Instant) {
        while let Some(oldest) = self.failures.front() {
            if now.saturating_duration_since(*oldest) >= self.window {
                self.failures.pop_front();
            } else {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn settings(max_restarts: u32, window: Duration) -> SupervisionSettings {
        SupervisionSettings {
            backoff_initial: ms(100),
            backoff_max: ms(1_000),
            max_restarts,
            window,
        }
    }

    fn restart_delay(decision: RestartDecision) -> Duration {
        match decision {
            RestartDecision::RestartAfter(delay) => delay,
            RestartDecision::Degrade => panic!("expected a restart, got {decision:?}"),
        }
    }

    #[test]
    fn backoff_doubles_per_attempt_until_it_reaches_the_cap() {
        let backoff = Backoff::new(ms(100), ms(1_000));

        let ceilings: Vec<_> = (0..6).map(|n| backoff.ceiling(n)).collect();

        assert_eq!(
            ceilings,
            vec![ms(200), ms(400), ms(800), ms(1_000), ms(1_000), ms(1_000)]
        );
    }

    #[test]
    fn backoff_never_leaves_the_initial_to_max_range_whatever_the_jitter() {
        let backoff = Backoff::new(ms(100), ms(1_000));

        for attempt in [0, 1, 2, 3, 10, 31, 32, 1_000, u32::MAX] {
            for jitter in [-1.0, 0.0, 0.25, 0.5, 1.0, 7.0] {
                let delay = backoff.delay(attempt, jitter);
                assert!(
                    (ms(100)..=ms(1_000)).contains(&delay),
                    "attempt {attempt}, jitter {jitter}: {delay:?}"
                );
            }
        }
    }

    #[test]
    fn jitter_spreads_the_delay_between_half_the_ceiling_and_the_ceiling() {
        let backoff = Backoff::new(ms(100), ms(1_000));

        assert_eq!(backoff.delay(1, 0.0), ms(200));
        assert_eq!(backoff.delay(1, 0.5), ms(300));
        assert_eq!(backoff.delay(1, 1.0), ms(400));
        // At the cap the spread is max/2..max.
        assert_eq!(backoff.delay(9, 0.0), ms(500));
        assert_eq!(backoff.delay(9, 1.0), ms(1_000));
    }

    #[test]
    fn the_first_failure_waits_between_initial_and_twice_initial() {
        let backoff = Backoff::new(ms(100), ms(1_000));

        assert_eq!(backoff.delay(0, 0.0), ms(100));
        assert_eq!(backoff.delay(0, 1.0), ms(200));
    }

    #[test]
    fn a_max_below_initial_is_raised_to_initial() {
        let backoff = Backoff::new(ms(500), ms(10));

        assert_eq!(backoff.delay(0, 0.0), ms(500));
        assert_eq!(backoff.delay(5, 1.0), ms(500));
    }

    #[test]
    fn consecutive_failures_get_growing_delays() {
        let mut tracker = RestartTracker::new(&settings(10, Duration::from_secs(60)));
        let t0 = Instant::now();

        let delays: Vec<_> = (0..4)
            .map(|n| restart_delay(tracker.record_failure_with_jitter(t0 + ms(n), 0.0)))
            .collect();

        assert_eq!(delays, vec![ms(100), ms(200), ms(400), ms(500)]);
    }

    #[test]
    fn random_jitter_stays_within_the_bounds_of_the_attempt() {
        let mut tracker = RestartTracker::new(&settings(100, Duration::from_secs(60)));
        let backoff = Backoff::new(ms(100), ms(1_000));
        let t0 = Instant::now();

        for attempt in 0..50u32 {
            let delay = restart_delay(tracker.record_failure(t0 + ms(u64::from(attempt))));
            assert!(
                (backoff.floor(attempt)..=backoff.ceiling(attempt)).contains(&delay),
                "attempt {attempt}: {delay:?}"
            );
        }
    }

    #[test]
    fn more_than_max_restarts_failures_within_the_window_degrades() {
        let mut tracker = RestartTracker::new(&settings(3, Duration::from_secs(60)));
        let t0 = Instant::now();

        let decisions: Vec<_> = (0..4)
            .map(|n| tracker.record_failure_with_jitter(t0 + Duration::from_secs(n), 0.0))
            .collect();

        assert!(matches!(decisions[0], RestartDecision::RestartAfter(_)));
        assert!(matches!(decisions[1], RestartDecision::RestartAfter(_)));
        assert!(matches!(decisions[2], RestartDecision::RestartAfter(_)));
        assert_eq!(decisions[3], RestartDecision::Degrade);
    }

    #[test]
    fn failures_spread_wider_than_the_window_never_degrade() {
        let window = Duration::from_secs(60);
        let mut tracker = RestartTracker::new(&settings(2, window));
        let t0 = Instant::now();

        for n in 0..20u32 {
            let decision = tracker.record_failure_with_jitter(t0 + window * n, 0.0);
            assert_eq!(
                decision,
                RestartDecision::RestartAfter(ms(100)),
                "failure {n}"
            );
        }
    }

    #[test]
    fn a_quiet_window_resets_the_backoff_to_its_initial_value() {
        let window = Duration::from_secs(60);
        let mut tracker = RestartTracker::new(&settings(5, window));
        let t0 = Instant::now();
        tracker.record_failure_with_jitter(t0, 0.0);
        tracker.record_failure_with_jitter(t0 + ms(1), 0.0);
        tracker.record_failure_with_jitter(t0 + ms(2), 0.0);

        let after_quiet = t0 + ms(2) + window;

        assert_eq!(tracker.failures_in_window(after_quiet), 0);
        assert_eq!(
            tracker.record_failure_with_jitter(after_quiet, 0.0),
            RestartDecision::RestartAfter(ms(100))
        );
    }

    #[test]
    fn old_failures_slide_out_of_the_window_one_by_one() {
        let mut tracker = RestartTracker::new(&settings(5, Duration::from_secs(10)));
        let t0 = Instant::now();
        tracker.record_failure_with_jitter(t0, 0.0);
        tracker.record_failure_with_jitter(t0 + Duration::from_secs(5), 0.0);

        assert_eq!(tracker.failures_in_window(t0 + Duration::from_secs(9)), 2);
        assert_eq!(tracker.failures_in_window(t0 + Duration::from_secs(10)), 1);
        assert_eq!(tracker.failures_in_window(t0 + Duration::from_secs(15)), 0);
    }

    #[test]
    fn reset_lets_a_degraded_child_start_over() {
        let mut tracker = RestartTracker::new(&settings(1, Duration::from_secs(60)));
        let t0 = Instant::now();
        tracker.record_failure_with_jitter(t0, 0.0);
        assert_eq!(
            tracker.record_failure_with_jitter(t0 + ms(1), 0.0),
            RestartDecision::Degrade
        );

        tracker.reset();

        assert_eq!(
            tracker.record_failure_with_jitter(t0 + ms(2), 0.0),
            RestartDecision::RestartAfter(ms(100))
        );
    }

    #[test]
    fn zero_max_restarts_degrades_on_the_first_failure() {
        let mut tracker = RestartTracker::new(&settings(0, Duration::from_secs(60)));

        assert_eq!(
            tracker.record_failure_with_jitter(Instant::now(), 0.0),
            RestartDecision::Degrade
        );
    }
}
