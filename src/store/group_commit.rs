//! Group commit: the hot path's write transactions — a sync's commit
//! ([`Store::commit_sync`]) and a writer's record of its batch ([`Store::record_writes`]) —
//! that are asked for while another one runs are written together, in ONE transaction.
//!
//! With one writer at a time (SQLite's single write lock, and row locks on PostgreSQL), a
//! change mirrored onto four calendars used to cost a transaction per step: the source's
//! commit, each target writer's record, each target's echo sync. Those arrive within a few
//! milliseconds of each other, so while one transaction runs the next ones queue up; the
//! caller that takes the lead next writes everything queued in one go.
//!
//! Protocol ("flat combining"): a caller queues its job, then waits for the leader lock.
//! Whoever holds the lock takes every queued job, runs them in one transaction and hands
//! each caller its result before letting go. A caller that gets the lock and finds its
//! result already there returns it. When the joint transaction fails, its jobs are run
//! again without the failing one (a job under a lapsed lease, which the one fence check
//! names) or in halves (any other failure, down to jobs on their own), so one bad job
//! cannot fail the others, costs a few transactions rather than one per job, and each job
//! keeps its own all-or-nothing guarantee.

use std::time::Instant;

use parking_lot::Mutex;
use sea_orm::DatabaseTransaction;
use tokio::sync::oneshot;

use super::deferred::Deferred;
use super::leases::check_fences;
use super::sync_log::insert_log_rows;
use super::{
    CommitOutcome, Fence, NewLogEntry, Store, StoreError, SyncCommit, SyncFence, WriteReport,
};
use crate::domain::AccountId;
use crate::metrics::{DB_COMMIT_WAIT, DB_GROUP_COMMIT_DURATION, DB_GROUP_COMMIT_JOBS};

/// How long a job that finds the queue otherwise empty waits for company.
const GATHER_FOR: std::time::Duration = std::time::Duration::from_millis(2);

/// One write that may share a transaction with others.
#[derive(Debug, Clone)]
pub(super) enum Job {
    Sync {
        account: AccountId,
        commit: Box<SyncCommit>,
        fence: Option<SyncFence>,
    },
    Record {
        owner: String,
        reports: Vec<WriteReport>,
        log: Vec<NewLogEntry>,
        fence: Option<Fence>,
    },
    /// Deferred sync tokens (`deferred.rs`), each written over the token it continues from.
    Tokens(Vec<(AccountId, Deferred)>),
}

/// A job's result.
#[derive(Debug)]
pub(super) enum Done {
    Synced(CommitOutcome),
    Recorded(usize),
    Tokens(u64),
}

type Reply = oneshot::Sender<Result<Done, StoreError>>;

/// The queue and the leader lock; one per store (shared by its clones).
#[derive(Default)]
pub(super) struct GroupCommit {
    queue: Mutex<Vec<(Job, Reply)>>,
    leader: tokio::sync::Mutex<()>,
}

impl Store {
    /// Runs `job`, in one transaction with whatever else is queued; see the module docs.
    pub(super) async fn group_commit(&self, job: Job) -> Result<Done, StoreError> {
        let asked = Instant::now();
        let (reply, mut result) = oneshot::channel();
        self.group.queue.lock().push((job, reply));
        loop {
            let _leader = self.group.leader.lock().await;
            match result.try_recv() {
                Ok(done) => {
                    metrics::histogram!(DB_COMMIT_WAIT).record(asked.elapsed().as_secs_f64());
                    return done;
                }
                Err(oneshot::error::TryRecvError::Closed) => {
                    // The leader that took our job was cancelled midway (its transaction
                    // rolled back): nothing of it was written.
                    return Err(StoreError::Corrupt(
                        "a group commit was cancelled; nothing was written".into(),
                    ));
                }
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            if self.group.queue.lock().len() == 1 {
                // Alone: the writers of one change get Google's answers within a few
                // milliseconds of each other, so a moment's wait lets them share this
                // transaction instead of queueing for one each.
                tokio::time::sleep(GATHER_FOR).await;
            }
            let mut batch = std::mem::take(&mut *self.group.queue.lock());
            // Echo tokens ride along with whatever is written anyway.
            if !batch.is_empty() && !self.deferred.is_empty() {
                let (reply, _) = oneshot::channel();
                batch.push((Job::Tokens(self.deferred.take_all()), reply));
            }
            self.run_batch(batch).await;
        }
    }

    /// Writes every deferred sync token now (`deferred.rs`); returns how many were written.
    pub async fn flush_deferred_tokens(&self) -> Result<u64, StoreError> {
        if self.deferred.is_empty() {
            return Ok(0);
        }
        match self
            .group_commit(Job::Tokens(self.deferred.take_all()))
            .await?
        {
            Done::Tokens(written) => Ok(written),
            _ => unreachable!("a tokens job is answered with its count"),
        }
    }

    async fn run_batch(&self, batch: Vec<(Job, Reply)>) {
        let started = Instant::now();
        metrics::counter!(DB_GROUP_COMMIT_JOBS).increment(batch.len() as u64);
        self.run_jobs(batch).await;
        metrics::histogram!(DB_GROUP_COMMIT_DURATION).record(started.elapsed().as_secs_f64());
    }

    /// Runs `batch` together; when that fails, answers the jobs under a lapsed lease (as
    /// they would be answered alone) and runs the others together again, or, for any other
    /// failure, runs each half of the batch apart, so one bad job among hundreds costs a
    /// few transactions, not one per job.
    async fn run_jobs(&self, mut batch: Vec<(Job, Reply)>) {
        while batch.len() > 1 {
            let jobs: Vec<Job> = batch.iter().map(|(job, _)| job.clone()).collect();
            let err = match self.run_together(jobs).await {
                Ok(results) => {
                    for ((_, reply), done) in batch.into_iter().zip(results) {
                        let _ = reply.send(Ok(done));
                    }
                    return;
                }
                Err(err) => err,
            };
            if let StoreError::Fenced { calendar } = err {
                let (lapsed, rest): (Vec<_>, Vec<_>) = batch
                    .into_iter()
                    .partition(|(job, _)| job.fence().is_some_and(|f| f.calendar == calendar));
                batch = rest;
                if !lapsed.is_empty() {
                    for (_, reply) in lapsed {
                        let _ = reply.send(Err(StoreError::Fenced { calendar }));
                    }
                    continue;
                }
            } else {
                tracing::warn!(
                    jobs = batch.len(),
                    error = %err,
                    "a group commit failed; committing its halves apart"
                );
            }
            let second = batch.split_off(batch.len() / 2);
            Box::pin(self.run_jobs(batch)).await;
            Box::pin(self.run_jobs(second)).await;
            return;
        }
        for (job, reply) in batch {
            let _ = reply.send(self.run_alone(job).await);
        }
    }

    /// Runs `jobs` in one transaction. Statements that each job would make on its own are
    /// made once for all of them: one check of every fence, first, and one insert of every
    /// audit row, last (each statement is a round trip to PostgreSQL, and while the
    /// transaction runs every other commit waits for it).
    async fn run_together(&self, jobs: Vec<Job>) -> Result<Vec<Done>, StoreError> {
        let txn = self.write_txn().await?;
        let written: Result<Vec<Done>, StoreError> = async {
            let fences: Vec<&Fence> = jobs.iter().filter_map(Job::fence).collect();
            check_fences(&txn, &fences).await?;
            let mut log = Vec::new();
            let mut results = Vec::with_capacity(jobs.len());
            for job in jobs {
                results.push(run_job(&txn, job, &mut log).await?);
            }
            insert_log_rows(&txn, log).await?;
            Ok(results)
        }
        .await;
        match written {
            Ok(results) => {
                txn.commit().await?;
                Ok(results)
            }
            Err(err) => {
                // Rolling back explicitly returns the connection clean; the error that
                // matters is the first one. A deadlock (with a settings change) is counted;
                // `run_jobs` then runs a joint transaction's jobs again in halves, and a lone
                // job's caller tries again later.
                let _ = txn.rollback().await;
                if err.is_deadlock() {
                    super::counters::deadlock();
                }
                Err(err)
            }
        }
    }

    async fn run_alone(&self, job: Job) -> Result<Done, StoreError> {
        let mut done = self.run_together(vec![job]).await?;
        Ok(done.remove(0))
    }
}

impl Job {
    /// The lease the job writes under, when there are several replicas.
    fn fence(&self) -> Option<&Fence> {
        match self {
            Job::Sync { fence, .. } => fence.as_ref().map(|f| &f.source),
            Job::Record { fence, .. } => fence.as_ref(),
            Job::Tokens(_) => None,
        }
    }
}

/// One job in the shared transaction, its fence already checked; its audit rows go to
/// `log`, written after the last job. A job of a replica that lost its lease fails the
/// joint transaction at the fence check, and is then answered alone.
async fn run_job(
    txn: &DatabaseTransaction,
    job: Job,
    log: &mut Vec<NewLogEntry>,
) -> Result<Done, StoreError> {
    match job {
        Job::Sync {
            account,
            mut commit,
            fence,
        } => {
            log.append(&mut commit.log);
            let claim_targets = fence.as_ref().map(|f| &f.claim_targets);
            super::sync_state::write_commit(txn, account, *commit, claim_targets)
                .await
                .map(Done::Synced)
        }
        Job::Record {
            owner,
            reports,
            log: mut entries,
            fence: _,
        } => {
            log.append(&mut entries);
            super::writes::write_records(txn, &owner, &reports)
                .await
                .map(Done::Recorded)
        }
        Job::Tokens(tokens) => super::deferred::write_tokens(txn, &tokens)
            .await
            .map(Done::Tokens),
    }
}
