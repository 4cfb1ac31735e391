//! Ownership of calendars among several replicas (PostgreSQL): the heartbeat, taking and
//! renewing leases, spreading calendars over the live replicas, handing them over, and
//! starting or stopping the actors of the calendars this replica owns.
//!
//! Role: every calendar has one owner at a time, the only replica running its
//! `CalendarActor` and `BlockWriter` (see `store::leases` for the lease and its fence). Every
//! tick (a third of `LEASE_TTL_SECS`, or at once when nudged — leases were handed to us, an
//! account appeared) the loop:
//! 1. heartbeats (`replicas`) and renews its leases, which also reveals the leases handed to
//!    it; a lease that is no longer renewed is lost, and its actors stop;
//! 2. computes each active calendar's desired owner by rendezvous hashing over the live
//!    replicas ([`desired_owner`]): calendars spread evenly, and when a replica joins or
//!    leaves only the calendars that must move do;
//! 3. takes the free leases of the calendars it should own, hands the ones another live
//!    replica should own straight to it (at most [`move_cap`] per tick, so a join moves
//!    calendars gradually instead of all at once), and releases those of calendars that no
//!    longer want actors (paused, removed);
//! 4. makes the running actors match (`background::reconcile_children_with`), and starts
//!    the replans and wakes the writers another process asked for (`background::nudge`;
//!    only actors running here answer). This step runs beside the loop, one pass at a
//!    time: starting thousands of actors takes seconds, and must not delay the renewals.
//!
//! A replica that dies stops renewing: its leases expire within `LEASE_TTL_SECS`, and each
//! survivor takes its share at its next tick. Each held lease also has a local deadline a
//! margin before its expiry in the database (`coordinator::Replica`): a replica that was
//! paused or cut off past it stops writing by itself before anyone else may start, and its
//! late commits fail their fence.
//!
//! Lifecycle: [`spawn`] starts the loop under `serve` (leased mode only); at SIGTERM
//! [`OwnershipHandle::hand_over`] marks the replica draining and gives every lease straight
//! to the replica that should own it next, telling it to start at once, before the actors
//! are stopped — a deploy moves every calendar in well under two seconds, with no gap.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::background::reconcile_children_with;
use super::control::{wants_actors, Control};
use crate::coordinator::{Note, Replica};
use crate::domain::AccountId;
use crate::metrics::{LEASE_ACQUISITIONS, LEASE_HANDOVERS, LEASE_LOSSES, OWNED_CALENDARS};
use crate::shutdown::Shutdown;
use crate::store::{HeldLease, Store, StoreError};

/// At least this many calendars may move per tick.
const MIN_MOVES: usize = 50;
/// The shortest tick, whatever the TTL.
const MIN_TICK: Duration = Duration::from_millis(500);
/// Sweep stale lease rows every this many ticks (leader only).
const SWEEP_EVERY: u64 = 60;
/// How long a stopping replica waits for the loop to finish its tick.
const LOOP_STOP_WAIT: Duration = Duration::from_secs(2);

/// How often leases are renewed: a third of their TTL.
pub fn tick_interval(ttl: Duration) -> Duration {
    (ttl / 3).max(MIN_TICK)
}

/// The local deadline of a lease renewed (or taken) by a statement sent at `sent`: a fifth
/// of the TTL before the database's expiry, which began no earlier than `sent`.
pub fn valid_until(sent: Instant, ttl: Duration) -> Instant {
    sent + ttl - ttl / 5
}

/// How many calendars one replica hands over per tick when rebalancing.
pub fn move_cap(held: usize) -> usize {
    MIN_MOVES.max(held / 10)
}

/// A stable 64-bit hash (FNV-1a, then a splitmix finaliser): the same in every replica and
/// every version, unlike `std`'s hasher.
fn stable_hash(bytes: &[u8], seed: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut z = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The live replicas, hashed once per tick for [`desired_owner`].
pub struct LiveSet {
    replicas: Vec<(String, u64)>,
}

impl LiveSet {
    pub fn new(live: &[String]) -> Self {
        Self {
            replicas: live
                .iter()
                .map(|r| (r.clone(), stable_hash(r.as_bytes(), 0)))
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.replicas.is_empty()
    }

    pub fn contains(&self, replica: &str) -> bool {
        self.replicas.iter().any(|(r, _)| r == replica)
    }

    /// The first replica by id: the one that does the chores for all.
    pub fn leader(&self) -> Option<&str> {
        self.replicas.iter().map(|(r, _)| r.as_str()).min()
    }
}

/// Rendezvous (highest random weight) hashing: the live replica with the highest score for
/// `calendar`. Every replica computes the same answer from the same live set; a replica that
/// joins takes about 1/N of the calendars, one that leaves gives away only its own.
pub fn desired_owner(calendar: AccountId, live: &LiveSet) -> Option<&str> {
    let key = calendar.get().to_le_bytes();
    live.replicas
        .iter()
        .max_by_key(|(id, seed)| (stable_hash(&key, *seed), id.as_str()))
        .map(|(id, _)| id.as_str())
}

/// The running loop; [`OwnershipHandle::hand_over`] ends it for good.
pub struct OwnershipHandle {
    task: JoinHandle<()>,
    ownership: Ownership,
}

#[derive(Clone)]
struct Ownership {
    control: Control,
    replica: Replica,
    /// On its own pool (`Store::for_ownership`); the actors use the main one.
    store: Store,
    ttl: Duration,
}

/// Starts the ownership loop; it runs until `shutdown` trips.
pub fn spawn(control: Control, shutdown: Shutdown) -> OwnershipHandle {
    let services = control.services();
    let ownership = Ownership {
        replica: services.replica.clone(),
        store: services.store.for_ownership(),
        ttl: services.settings.lease_ttl,
        control: control.clone(),
    };
    let task = tokio::spawn(ownership.clone().run(shutdown));
    OwnershipHandle { task, ownership }
}

impl OwnershipHandle {
    /// SIGTERM: stop taking leases, leave the live set, and give every lease straight to the
    /// replica that should own it next (or release it when there is none), telling each new
    /// owner to start at once. Local actors lose their fences first, so nothing they still do
    /// can land after the new owner began. Returns how many leases were handed over.
    pub async fn hand_over(self) -> usize {
        if tokio::time::timeout(LOOP_STOP_WAIT, self.task)
            .await
            .is_err()
        {
            tracing::warn!("the ownership loop did not stop in time; handing over anyway");
        }
        match self.ownership.hand_over_all().await {
            Ok(moved) => moved,
            Err(e) => {
                tracing::warn!(error = %e, "could not hand the leases over; they expire on their own");
                0
            }
        }
    }
}

/// How long one tick's steps took; a tick longer than its interval delays the next renewal
/// and so puts the leases at risk.
#[derive(Default)]
struct Phases {
    /// Heartbeat and renewal.
    renew: Duration,
    /// Reading the live set and accounts, taking, handing over and releasing leases.
    place: Duration,
    /// The whole tick (zero when it failed).
    total: Duration,
}

impl Phases {
    fn report(&self, interval: Duration, held: usize) {
        let ms = |d: Duration| d.as_millis() as u64;
        if self.total > interval {
            tracing::warn!(
                total_ms = ms(self.total),
                renew_ms = ms(self.renew),
                place_ms = ms(self.place),
                interval_ms = ms(interval),
                held,
                "an ownership tick took longer than its interval"
            );
        } else {
            tracing::debug!(
                total_ms = ms(self.total),
                renew_ms = ms(self.renew),
                place_ms = ms(self.place),
                held,
                "ownership tick"
            );
        }
    }
}

/// The pass of [`Ownership::match_actors`] running beside the loop, if any; aborted when
/// the loop ends.
#[derive(Default)]
struct ActorsPass(Option<JoinHandle<()>>);

impl ActorsPass {
    /// Starts a pass unless the last one is still at work (the next tick starts the one it
    /// skipped, from fresher accounts and leases).
    fn start_unless_running<F: std::future::Future<Output = ()> + Send + 'static>(
        &mut self,
        pass: impl FnOnce() -> F,
    ) {
        if self.0.as_ref().is_none_or(JoinHandle::is_finished) {
            self.0 = Some(tokio::spawn(pass()));
        }
    }
}

impl Drop for ActorsPass {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

impl Ownership {
    async fn run(self, shutdown: Shutdown) {
        let every = tick_interval(self.ttl);
        let stop = shutdown.wait();
        tokio::pin!(stop);
        let mut ticks: u64 = 0;
        // Starting and stopping actors runs beside the ticks, one pass at a time, so a
        // thousand actors starting never delays the next renewal; it stops with the loop.
        let mut actors = ActorsPass::default();
        loop {
            let mut phases = Phases::default();
            let tick = tokio::select! {
                () = &mut stop => return,
                result = self.tick(ticks, &mut phases) => result,
            };
            match tick {
                Ok(accounts) => actors.start_unless_running(|| self.clone().match_actors(accounts)),
                Err(e) => {
                    tracing::warn!(error = %e, "ownership tick failed; retrying at the next one")
                }
            }
            phases.report(every, self.replica.held_count());
            ticks += 1;
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(every) => {}
                () = self.replica.nudged() => {}
            }
        }
    }

    fn me(&self) -> &str {
        self.replica.id()
    }

    /// One round of steps 1–3 (see the module docs); returns the accounts for step 4.
    async fn tick(
        &self,
        n: u64,
        phases: &mut Phases,
    ) -> Result<Vec<crate::store::Account>, super::ControlError> {
        let sent = Instant::now();
        self.store.heartbeat_replica(self.me(), self.ttl).await?;
        let renewed = self.store.renew_leases(self.me(), self.ttl).await?;
        self.settle(renewed, valid_until(sent, self.ttl));
        phases.renew = sent.elapsed();

        let live = LiveSet::new(&self.store.live_replicas().await?);
        self.replica.set_leader(live.leader() == Some(self.me()));
        let accounts = self.store.list_accounts().await?;
        let wanted: BTreeSet<AccountId> = accounts
            .iter()
            .filter(|a| wants_actors(a.status))
            .map(|a| a.id)
            .collect();
        if live.contains(self.me()) && !self.replica.is_draining() {
            self.acquire(&wanted, &live).await?;
            self.rebalance(&wanted, &live).await?;
        }
        metrics::gauge!(OWNED_CALENDARS).set(self.replica.held_count() as f64);
        if self.replica.is_leader() && n.is_multiple_of(SWEEP_EVERY) {
            self.store.sweep_leases().await?;
        }
        phases.total = sent.elapsed();
        Ok(accounts)
    }

    /// Step 4: the running actors follow the leases held now, then the replans and queued
    /// writes another process left in the store reach them (what the account watcher does
    /// in single-replica mode).
    async fn match_actors(self, accounts: Vec<crate::store::Account>) {
        let started = Instant::now();
        let replica = self.replica.clone();
        let result = async {
            reconcile_children_with(&self.control, &accounts, move |id| replica.owns(id)).await?;
            super::background::nudge(&self.control).await
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not start or stop actors for the leases held; retrying at the next tick");
        }
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "actors matched to the leases"
        );
    }

    /// The book follows the renewal: what was not renewed is lost, what is new was handed to
    /// this replica.
    fn settle(&self, renewed: Vec<HeldLease>, until: Instant) {
        let renewed_ids: BTreeSet<AccountId> = renewed.iter().map(|l| l.calendar).collect();
        let lost: Vec<AccountId> = self
            .replica
            .held()
            .into_iter()
            .filter(|c| !renewed_ids.contains(c))
            .collect();
        if !lost.is_empty() {
            tracing::warn!(count = lost.len(), "leases lost (expired or taken over)");
            metrics::counter!(LEASE_LOSSES).increment(lost.len() as u64);
            self.replica.forget(&lost);
        }
        let handed = self
            .replica
            .hold(renewed.iter().map(|l| (l.calendar, l.epoch)), until);
        if !handed.is_empty() {
            tracing::info!(count = handed.len(), "leases handed to this replica");
            metrics::counter!(LEASE_ACQUISITIONS, "how" => "handed").increment(handed.len() as u64);
        }
    }

    /// Takes the free leases of the calendars this replica should own.
    async fn acquire(
        &self,
        wanted: &BTreeSet<AccountId>,
        live: &LiveSet,
    ) -> Result<(), StoreError> {
        let held_elsewhere: HashMap<AccountId, bool> = self
            .store
            .leases()
            .await?
            .into_iter()
            .map(|l| (l.calendar, l.owner.is_some()))
            .collect();
        let free: Vec<AccountId> = wanted
            .iter()
            .copied()
            .filter(|c| !held_elsewhere.get(c).copied().unwrap_or(false))
            .filter(|c| desired_owner(*c, live) == Some(self.me()))
            .collect();
        if free.is_empty() {
            return Ok(());
        }
        let sent = Instant::now();
        let taken = self
            .store
            .acquire_leases(self.me(), &free, self.ttl)
            .await?;
        if !taken.is_empty() {
            tracing::info!(count = taken.len(), "leases taken");
            metrics::counter!(LEASE_ACQUISITIONS, "how" => "free").increment(taken.len() as u64);
            self.replica.hold(
                taken.iter().map(|l| (l.calendar, l.epoch)),
                valid_until(sent, self.ttl),
            );
        }
        Ok(())
    }

    /// Hands calendars another live replica should own to it (a bounded number per tick),
    /// and releases those of calendars that no longer want actors.
    async fn rebalance(
        &self,
        wanted: &BTreeSet<AccountId>,
        live: &LiveSet,
    ) -> Result<(), StoreError> {
        let held = self.replica.held();
        let cap = move_cap(held.len());
        let mut release = Vec::new();
        let mut moves = Vec::new();
        for calendar in held {
            if self.replica.is_pinned(calendar) {
                continue;
            }
            if !wanted.contains(&calendar) {
                release.push(calendar);
                continue;
            }
            match desired_owner(calendar, live) {
                Some(owner) if owner != self.me() && moves.len() < cap => {
                    moves.push((calendar, owner.to_owned()));
                }
                _ => {}
            }
        }
        if !release.is_empty() {
            self.replica.forget(&release);
            self.store.release_leases(self.me(), Some(&release)).await?;
        }
        if !moves.is_empty() {
            self.give(&moves, false, "rebalance").await?;
        }
        Ok(())
    }

    /// Hands `moves` over and tells each new owner; returns how many moved.
    async fn give(
        &self,
        moves: &[(AccountId, String)],
        wait: bool,
        why: &'static str,
    ) -> Result<usize, StoreError> {
        let moved = self
            .store
            .hand_over_leases(self.me(), moves, self.ttl, wait)
            .await?;
        let calendars: Vec<AccountId> = moved.iter().map(|m| m.calendar).collect();
        self.replica.forget(&calendars);
        metrics::counter!(LEASE_HANDOVERS, "why" => why).increment(moved.len() as u64);
        let owners: BTreeSet<&str> = moved.iter().map(|m| m.to.as_str()).collect();
        for owner in owners {
            self.replica.send(&self.store, owner, &Note::Leases).await;
        }
        if !moved.is_empty() {
            tracing::info!(count = moved.len(), why, "leases handed over");
        }
        Ok(moved.len())
    }

    async fn hand_over_all(&self) -> Result<usize, StoreError> {
        let started = Instant::now();
        self.replica.set_draining();
        self.store.mark_replica_draining(self.me()).await?;
        // From here on no local actor holds a fence: their late writes are refused.
        let held = self.replica.forget_all();
        let live = LiveSet::new(&self.store.live_replicas().await?);
        let moves: Vec<(AccountId, String)> = held
            .iter()
            .filter_map(|c| desired_owner(*c, &live).map(|owner| (*c, owner.to_owned())))
            .collect();
        let moved = if moves.is_empty() {
            0
        } else {
            self.give(&moves, true, "shutdown").await?
        };
        // Whatever could not be handed over (no replica left, a race) is free at once for the
        // next replica to start, rather than after the TTL.
        self.store.release_leases(self.me(), None).await?;
        self.store.remove_replica(self.me()).await?;
        tracing::info!(
            moved,
            held = held.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "leases handed over for shutdown"
        );
        Ok(moved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replicas(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("mcss-{i}-0000beef")).collect()
    }

    fn owners(calendars: u64, live: &LiveSet) -> HashMap<AccountId, String> {
        (1..=calendars)
            .map(|c| {
                let id = AccountId::new(c as i64);
                (id, desired_owner(id, live).unwrap().to_owned())
            })
            .collect()
    }

    #[test]
    fn ten_thousand_calendars_spread_evenly_over_three_replicas() {
        let live = LiveSet::new(&replicas(3));

        let owners = owners(10_000, &live);

        for replica in replicas(3) {
            let share = owners.values().filter(|o| **o == replica).count();
            assert!(
                (3_000..=3_700).contains(&share),
                "{replica} owns {share} of 10,000"
            );
        }
    }

    #[test]
    fn a_joining_replica_takes_calendars_only_from_others_and_about_a_quarter() {
        let before = owners(4_000, &LiveSet::new(&replicas(3)));

        let after = owners(4_000, &LiveSet::new(&replicas(4)));

        let moved: Vec<_> = before.iter().filter(|(c, o)| after[*c] != **o).collect();
        assert!(moved.iter().all(|(c, _)| after[*c] == replicas(4)[3]));
        assert!(
            (800..=1_200).contains(&moved.len()),
            "{} moved",
            moved.len()
        );
    }

    #[test]
    fn a_leaving_replica_gives_away_only_its_own_calendars() {
        let all = replicas(3);
        let before = owners(3_000, &LiveSet::new(&all));

        let after = owners(3_000, &LiveSet::new(&all[..2]));

        for (calendar, owner) in &before {
            if *owner != all[2] {
                assert_eq!(&after[calendar], owner);
            }
        }
    }

    #[test]
    fn the_local_deadline_comes_before_the_database_expiry() {
        let sent = Instant::now();
        let ttl = Duration::from_secs(10);

        let until = valid_until(sent, ttl);

        assert_eq!(until, sent + Duration::from_secs(8));
        assert_eq!(tick_interval(ttl), ttl / 3);
        assert!(tick_interval(ttl) < until - sent);
    }

    #[test]
    fn the_move_rate_is_bounded_but_never_zero() {
        assert_eq!(move_cap(0), MIN_MOVES);
        assert_eq!(move_cap(10_000), 1_000);
    }

    #[test]
    fn the_leader_is_the_first_live_replica() {
        let live = LiveSet::new(&["mcss-9-b".to_owned(), "mcss-1-a".to_owned()]);

        assert_eq!(live.leader(), Some("mcss-1-a"));
        assert!(LiveSet::new(&[]).is_empty());
    }
}
