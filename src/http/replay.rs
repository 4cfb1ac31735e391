//! [`PingMemory`]: the in-process record of recent webhook pings, so a replayed ping causes
//! no sync even without Redis.
//!
//! Role: anyone who captured one genuine ping (headers only, no body) could otherwise send it
//! again and again, each time costing the account an `events.list` for the channel's whole
//! life. Google numbers the pings of a channel in increasing order (`X-Goog-Message-Number`),
//! so a bounded window per channel is enough: a number already seen, or one older than
//! [`WINDOW`] numbers below the highest seen, is a replay. A ping without a number (Google
//! always sends one) is let through at most once per [`NUMBERLESS_INTERVAL`].
//!
//! Collaborators: the webhook handler ([`super::webhook`]) asks [`PingMemory::admit`] before
//! handing a ping to `Control`, and [`PingMemory::forget`]s it when the ping was refused or
//! could not be handled, so a forged ping leaves nothing behind and Google's retry of a 503
//! is not mistaken for a replay. Entries are keyed by channel id *and* token, so a forger
//! without the token cannot push a real channel's window forward.
//!
//! Lifecycle: one per router, in memory only. At most [`MAX_CHANNELS`] entries are kept in
//! two generations: when the current one fills up it becomes the previous one and the
//! oldest generation is dropped, so memory stays bounded under a flood of forged channels.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sha2::{Digest as _, Sha256};

/// How many message numbers below the highest seen are remembered per channel.
pub const WINDOW: u64 = 128;
/// At most one ping without a message number per channel and token in this interval.
pub const NUMBERLESS_INTERVAL: Duration = Duration::from_secs(30);
/// Channels remembered at most (both generations together).
pub const MAX_CHANNELS: usize = 100_000;

/// What [`PingMemory::admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Not seen before: handle it.
    Fresh,
    /// Seen already, or too old to tell: answer 200 and do nothing.
    Replay,
}

/// One channel's recent message numbers.
#[derive(Debug, Clone, Default)]
struct Window {
    /// The highest number admitted.
    highest: u64,
    /// Bit `i` set: number `highest - i` was admitted.
    seen: u128,
    /// When a ping without a number was last admitted.
    numberless_at: Option<Instant>,
}

impl Window {
    fn admit(&mut self, number: Option<u64>, now: Instant) -> Admission {
        let Some(n) = number else {
            if self
                .numberless_at
                .is_some_and(|at| now.duration_since(at) < NUMBERLESS_INTERVAL)
            {
                return Admission::Replay;
            }
            self.numberless_at = Some(now);
            return Admission::Fresh;
        };
        if self.seen == 0 || n > self.highest {
            let shift = n - self.highest.min(n);
            self.seen = if self.seen == 0 || shift >= WINDOW {
                0
            } else {
                self.seen << shift
            };
            self.seen |= 1;
            self.highest = n;
            return Admission::Fresh;
        }
        let age = self.highest - n;
        if age >= WINDOW || self.seen & (1 << age) != 0 {
            return Admission::Replay;
        }
        self.seen |= 1 << age;
        Admission::Fresh
    }

    /// Undoes the admission of `number`, as far as the window still holds it.
    fn forget(&mut self, number: Option<u64>) {
        match number {
            None => self.numberless_at = None,
            Some(n) if n <= self.highest && self.highest - n < WINDOW => {
                self.seen &= !(1 << (self.highest - n));
            }
            Some(_) => {}
        }
    }

    fn is_empty(&self) -> bool {
        self.seen == 0 && self.numberless_at.is_none()
    }
}

type Key = [u8; 32];

/// Recent pings of every channel; cheap to share behind an `Arc`.
#[derive(Debug, Default)]
pub struct PingMemory {
    generations: Mutex<Generations>,
}

#[derive(Debug, Default)]
struct Generations {
    current: HashMap<Key, Window>,
    previous: HashMap<Key, Window>,
}

impl Generations {
    /// The window of `key`, moved into the current generation (rotating when it is full).
    fn window(&mut self, key: Key) -> &mut Window {
        if !self.current.contains_key(&key) {
            let window = self.previous.remove(&key).unwrap_or_default();
            if self.current.len() >= MAX_CHANNELS / 2 {
                self.previous = std::mem::take(&mut self.current);
            }
            self.current.insert(key, window);
        }
        self.current.get_mut(&key).expect("inserted above")
    }
}

impl PingMemory {
    /// Records the ping `(channel, token, number)` and says whether it is new.
    pub fn admit(&self, channel: &str, token: Option<&str>, number: Option<u64>) -> Admission {
        self.admit_at(channel, token, number, Instant::now())
    }

    fn admit_at(
        &self,
        channel: &str,
        token: Option<&str>,
        number: Option<u64>,
        now: Instant,
    ) -> Admission {
        self.generations
            .lock()
            .window(key(channel, token))
            .admit(number, now)
    }

    /// Undoes [`Self::admit`] of a ping that was refused or could not be handled.
    pub fn forget(&self, channel: &str, token: Option<&str>, number: Option<u64>) {
        let key = key(channel, token);
        let mut guard = self.generations.lock();
        let generations = &mut *guard;
        for generation in [&mut generations.current, &mut generations.previous] {
            if let Some(window) = generation.get_mut(&key) {
                window.forget(number);
                if window.is_empty() {
                    generation.remove(&key);
                }
            }
        }
    }

    /// Channels remembered now.
    #[cfg(test)]
    fn len(&self) -> usize {
        let generations = self.generations.lock();
        generations.current.len() + generations.previous.len()
    }
}

/// The channel id and token, hashed: the memory never holds a token itself.
fn key(channel: &str, token: Option<&str>) -> Key {
    let mut hash = Sha256::new();
    hash.update(channel.as_bytes());
    hash.update([0]);
    hash.update(token.unwrap_or_default().as_bytes());
    hash.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHANNEL: &str = "chan-1";
    const TOKEN: Option<&str> = Some("token");

    #[test]
    fn a_ping_is_fresh_once_and_a_replay_afterwards() {
        let memory = PingMemory::default();

        let first = memory.admit(CHANNEL, TOKEN, Some(7));
        let replays: Vec<_> = (0..50)
            .map(|_| memory.admit(CHANNEL, TOKEN, Some(7)))
            .collect();

        assert_eq!(first, Admission::Fresh);
        assert!(replays.iter().all(|a| *a == Admission::Replay));
    }

    #[test]
    fn later_and_late_but_unseen_numbers_are_fresh() {
        let memory = PingMemory::default();

        assert_eq!(memory.admit(CHANNEL, TOKEN, Some(10)), Admission::Fresh);
        assert_eq!(memory.admit(CHANNEL, TOKEN, Some(15)), Admission::Fresh);
        // Delivered out of order (a retry overtaken by the next ping).
        assert_eq!(memory.admit(CHANNEL, TOKEN, Some(12)), Admission::Fresh);
        assert_eq!(memory.admit(CHANNEL, TOKEN, Some(12)), Admission::Replay);
        assert_eq!(memory.admit(CHANNEL, TOKEN, Some(10)), Admission::Replay);
    }

    #[test]
    fn a_number_older_than_the_window_is_a_replay() {
        let memory = PingMemory::default();
        memory.admit(CHANNEL, TOKEN, Some(5));

        memory.admit(CHANNEL, TOKEN, Some(5 + WINDOW + 10));

        assert_eq!(memory.admit(CHANNEL, TOKEN, Some(6)), Admission::Replay);
    }

    #[test]
    fn a_forged_token_neither_shares_nor_moves_the_real_window() {
        let memory = PingMemory::default();
        memory.admit(CHANNEL, TOKEN, Some(3));

        let forged = memory.admit(CHANNEL, Some("forged"), Some(1_000_000));
        memory.forget(CHANNEL, Some("forged"), Some(1_000_000));

        assert_eq!(forged, Admission::Fresh);
        assert_eq!(memory.admit(CHANNEL, TOKEN, Some(4)), Admission::Fresh);
        assert_eq!(memory.len(), 1, "the forged entry is gone");
    }

    #[test]
    fn a_ping_that_could_not_be_handled_is_fresh_again_for_googles_retry() {
        let memory = PingMemory::default();
        memory.admit(CHANNEL, TOKEN, Some(8));
        memory.admit(CHANNEL, TOKEN, Some(9));

        memory.forget(CHANNEL, TOKEN, Some(9));

        assert_eq!(memory.admit(CHANNEL, TOKEN, Some(9)), Admission::Fresh);
        assert_eq!(memory.admit(CHANNEL, TOKEN, Some(8)), Admission::Replay);
    }

    #[test]
    fn pings_without_a_number_are_let_through_once_per_interval() {
        let memory = PingMemory::default();
        let start = Instant::now();

        let first = memory.admit_at(CHANNEL, TOKEN, None, start);
        let soon = memory.admit_at(CHANNEL, TOKEN, None, start + Duration::from_secs(1));
        let later = memory.admit_at(CHANNEL, TOKEN, None, start + NUMBERLESS_INTERVAL);

        assert_eq!(first, Admission::Fresh);
        assert_eq!(soon, Admission::Replay);
        assert_eq!(later, Admission::Fresh);
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_channels() {
        let memory = PingMemory::default();

        for n in 0..(MAX_CHANNELS + 10) {
            memory.admit(&format!("forged-{n}"), None, Some(1));
        }

        assert!(memory.len() <= MAX_CHANNELS, "{}", memory.len());
    }
}
