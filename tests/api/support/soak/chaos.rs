//! The soak's disruptions, drawn from their own seeded stream so that switching them off
//! leaves the users' script unchanged: Google faults through the emulator's fault rules
//! (`docs/emulator.md`, "Fault rules") and SIGKILLs of `mcss serve`, which the runner carries
//! out and undoes a few edits later.
//!
//! - request bursts: the next 3–12 writes, lists or both of one account answer 500, 503,
//!   429 or a rate-limit 403 (owners meet them too, and retry);
//! - push faults: the next 1–5 notifications of one account's channels are dropped, sent
//!   twice or sent 0.5–4 s late;
//! - expired sync tokens: one calendar's sync tokens answer 410 from now on.
//!
//! Every fault rule carries a `count`, so a burst ends by itself; the runner clears what is
//! left when the chaos phase ends.

use std::collections::BTreeMap;

use rand::prelude::*;
use serde_json::{json, Value};

/// Chance, after each edit, of a fault being injected.
const FAULT_CHANCE: f64 = 0.12;
/// Chance, after each edit, of a SIGKILL (when the service is up).
const KILL_CHANCE: f64 = 0.025;

/// What the runner does next besides editing.
#[derive(Debug, Clone)]
pub enum Disruption {
    /// Post this fault rule; the label is for the tally and the history.
    Fault { label: &'static str, rule: Value },
    /// Invalidate the sync tokens of this calendar.
    ExpireSyncTokens { calendar: usize },
    /// SIGKILL the service, and start it again after this many more edits.
    Kill { down_for_edits: usize },
}

/// How many disruptions of each kind were made.
#[derive(Debug, Clone, Default)]
pub struct ChaosTally {
    pub faults: BTreeMap<&'static str, u64>,
    pub kills: u64,
}

/// The seeded disruption stream.
pub struct Chaos {
    rng: StdRng,
    /// Each calendar's owner e-mail, the `account` of a fault rule.
    emails: Vec<String>,
    faults: bool,
    kills: bool,
    pub tally: ChaosTally,
}

const WRITES: [&str; 4] = [
    "events.insert",
    "events.patch",
    "events.update",
    "events.delete",
];

impl Chaos {
    pub fn new(seed: u64, emails: Vec<String>, faults: bool, kills: bool) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            emails,
            faults,
            kills,
            tally: ChaosTally::default(),
        }
    }

    /// A pause before the next edit (people do not type at machine speed), in milliseconds.
    pub fn pause_ms(&mut self) -> u64 {
        self.rng.gen_range(10..200)
    }

    /// The disruption after an edit, if any. `service_up` says whether a kill is possible.
    pub fn after_edit(&mut self, service_up: bool) -> Option<Disruption> {
        if self.kills && service_up && self.rng.gen_bool(KILL_CHANCE) {
            self.tally.kills += 1;
            return Some(Disruption::Kill {
                down_for_edits: self.rng.gen_range(0..6),
            });
        }
        if !self.faults || !self.rng.gen_bool(FAULT_CHANCE) {
            return None;
        }
        let calendar = self.rng.gen_range(0..self.emails.len());
        let disruption = match self.rng.gen_range(0..10) {
            0..=5 => self.request_burst(calendar),
            6..=8 => self.push_fault(calendar),
            _ => Disruption::ExpireSyncTokens { calendar },
        };
        let label = match &disruption {
            Disruption::Fault { label, .. } => label,
            Disruption::ExpireSyncTokens { .. } => "expired sync tokens",
            Disruption::Kill { .. } => unreachable!("kills are counted above"),
        };
        *self.tally.faults.entry(label).or_default() += 1;
        Some(disruption)
    }

    fn request_burst(&mut self, calendar: usize) -> Disruption {
        let (label, kind, status) = [
            ("500 burst", "backendError", 500),
            ("503 burst", "backendError", 503),
            ("429 burst", "rateLimitExceeded", 429),
            ("rate-limit 403 burst", "rateLimitExceeded", 403),
            ("user-rate-limit 403 burst", "userRateLimitExceeded", 403),
        ]
        .choose(&mut self.rng)
        .copied()
        .expect("burst kinds");
        let methods: Vec<&str> = match self.rng.gen_range(0..3) {
            0 => WRITES.to_vec(),
            1 => vec!["events.list"],
            _ => WRITES.iter().copied().chain(["events.list"]).collect(),
        };
        Disruption::Fault {
            label,
            rule: json!({
                "kind": kind,
                "status": status,
                "account": self.emails[calendar],
                "methods": methods,
                "count": self.rng.gen_range(3..=12),
            }),
        }
    }

    fn push_fault(&mut self, calendar: usize) -> Disruption {
        let count = self.rng.gen_range(1..=5);
        let account = &self.emails[calendar];
        let (label, rule) = match self.rng.gen_range(0..3) {
            0 => (
                "dropped pushes",
                json!({"kind": "dropNotification", "account": account, "count": count}),
            ),
            1 => (
                "duplicated pushes",
                json!({"kind": "duplicateNotification", "account": account, "count": count}),
            ),
            _ => (
                "delayed pushes",
                json!({"kind": "delayNotification", "account": account, "count": count,
                       "delayMs": self.rng.gen_range(500..=4000)}),
            ),
        };
        Disruption::Fault { label, rule }
    }
}
