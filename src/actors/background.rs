//! The background loops `serve` runs beside the actor tree, all until shutdown:
//! - [`watch_accounts`] keeps the supervisor's children in step with the accounts table, so
//!   accounts added, paused or removed by another process (`mcss accounts add` while `serve`
//!   runs) are noticed within [`super::ACCOUNT_WATCH_INTERVAL`], and so are the replans and
//!   queued deletions a settings change of another process left in the store;
//! - [`reconcile_periodically`] runs [`crate::ops::reconcile`] every
//!   `RECONCILE_INTERVAL_SECS` (with several replicas, on the leader only); what it finds is
//!   queued in the outbox and the writers are woken through [`Control`].
//!
//! A third, [`flush_tokens_periodically`], writes the sync tokens echoes left in memory.
//!
//! With several replicas the account watcher does not run: `super::ownership` starts and
//! stops actors as leases come and go, through [`reconcile_children_with`], and calls
//! [`nudge`] every tick.

use std::collections::HashSet;
use std::time::Duration;

use super::control::{wants_actors, Control, ControlError};
use crate::domain::AccountId;
use crate::shutdown::Shutdown;

/// Writes the sync tokens of echoes that no other write took along (`store::deferred`)
/// every `every`, so a quiet calendar's stored token lags by at most that.
pub(crate) async fn flush_tokens_periodically(
    store: crate::store::Store,
    every: Duration,
    shutdown: Shutdown,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = ticker.tick() => {}
        }
        if let Err(e) = store.flush_deferred_tokens().await {
            tracing::warn!(error = %e, "could not write the deferred sync tokens; the next syncs list their echoes again");
        }
    }
}

/// Compares the accounts table with the running actors every `every`.
pub(crate) async fn watch_accounts(control: Control, every: Duration, shutdown: Shutdown) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await; // the first tick is immediate; start() already added everyone
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = ticker.tick() => {}
        }
        if let Err(e) = reconcile_children(&control).await {
            tracing::warn!(error = %e, "could not compare accounts with running actors");
        }
        if let Err(e) = nudge(&control).await {
            tracing::warn!(error = %e, "could not look for requested replans and queued writes");
        }
    }
}

/// One pass of [`watch_accounts`].
pub(crate) async fn reconcile_children(control: &Control) -> Result<(), ControlError> {
    let accounts = control.services().store.list_accounts().await?;
    reconcile_children_with(control, &accounts, |_| true).await
}

/// Makes the running actors match `accounts`, for the calendars `here` says this replica
/// runs (with several replicas: those it owns; `super::ownership` calls this every tick).
pub(crate) async fn reconcile_children_with(
    control: &Control,
    accounts: &[crate::store::Account],
    here: impl Fn(AccountId) -> bool,
) -> Result<(), ControlError> {
    let children = control.children().await;
    // Sets, not scans: this runs every few seconds over every account.
    let running: HashSet<AccountId> = children.iter().map(|c| c.key.account_id()).collect();
    let known: HashSet<AccountId> = accounts.iter().map(|a| a.id).collect();
    let starting: Vec<crate::store::Account> = accounts
        .iter()
        .filter(|a| !running.contains(&a.id) && wants_actors(a.status) && here(a.id))
        .cloned()
        .collect();
    if !starting.is_empty() {
        if let Err(e) = control.services().warm(&starting).await {
            // Only a shortcut: each actor reads its own rows instead.
            tracing::warn!(error = %e, "could not read the calendars' tokens in one go");
        }
        tracing::info!(
            count = starting.len(),
            "starting the actors of newly seen calendars"
        );
        let ids: Vec<AccountId> = starting.iter().map(|a| a.id).collect();
        control.add_children_of(&ids).await?;
    }
    for account in accounts {
        let has = running.contains(&account.id);
        let wanted = wants_actors(account.status) && here(account.id);
        if wanted || !has {
            continue;
        }
        if !here(account.id) {
            tracing::info!(account_id = %account.id, "stopping actors of a calendar another replica owns");
            control.remove_children(account.id).await?;
        } else {
            tracing::info!(account_id = %account.id, status = %account.status, "stopping actors of an account that is no longer active");
            control.remove_children(account.id).await?;
        }
    }
    for child in &children {
        let id = child.key.account_id();
        if !known.contains(&id) {
            tracing::info!(account_id = %id, "stopping actors of a removed account");
            control.remove_children(id).await?;
        }
    }
    Ok(())
}

/// Changes made by another process (`mcss accounts set`, `mcss links set`, `mcss accounts
/// add`) leave replan requests and queued deletions in the store: start those syncs and wake
/// those writers.
pub(crate) async fn nudge(control: &Control) -> Result<(), ControlError> {
    let store = &control.services().store;
    for calendar in store.replans_requested().await? {
        control.replan(calendar);
    }
    for (target, _) in store.queue_depths().await? {
        control.wake_writer(target);
    }
    Ok(())
}

/// Runs [`crate::ops::reconcile`] every `every` (the first one interval after start). A
/// failed run is logged and the next one comes at its time.
pub(crate) async fn reconcile_periodically(control: Control, every: Duration, shutdown: Shutdown) {
    let stop = shutdown.wait();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(every) => {}
        }
        if !control.services().replica.is_leader() {
            // With several replicas one of them reconciles (its queued repairs reach the
            // other replicas' writers through their owners).
            continue;
        }
        let report = tokio::select! {
            () = &mut stop => return,
            report = crate::ops::reconcile(control.services(), &control, false) => report,
        };
        match report {
            Ok(report) => tracing::info!(report = %report, "periodic reconciliation"),
            Err(e) => tracing::warn!(error = %e, "periodic reconciliation failed"),
        }
    }
}
