//! Notes from other replicas: forwarded pings, writer wake-ups, operators' sync requests and
//! "leases were handed to you".
//!
//! Role: with several replicas a push ping lands on whichever replica the load balancer
//! picks, but only the owner of the channel's calendar runs its `CalendarActor`. The replica
//! that got the ping authenticates it (`Control::ping`) and sends it to the owner as a
//! [`Note::Ping`]; this module receives it on the owner and hands it on like a ping that
//! arrived here — through the same [`PingMemory`] as the webhook route, so a ping is
//! de-duplicated by (channel, message number) wherever its copies landed, with or without
//! Redis (with Redis the webhook also drops copies across replicas before forwarding). The
//! same channel carries the other [`Note`]s.
//!
//! Transport: every replica listens on its own channel (`coordinator::replica_channel`)
//! twice — PostgreSQL `LISTEN` (always: the command line, which has no Redis connection,
//! sends through `NOTIFY`) and, when `REDIS_URL` is set, a Redis subscription (what replicas
//! send through then). A lost note costs latency, never a change: pings have the backstop
//! poll and the new owner's start-up sync, wake-ups the writers' own timers, handed leases
//! the next ownership tick.
//!
//! Lifecycle: [`start`] (leased mode only) spawns the listeners; they end when the shutdown
//! latch trips, before the pools close.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::replay::{Admission, PingMemory};
use crate::actors::{Control, PingOutcome, WebhookPing};
use crate::coordinator::{replica_channel, Coordinator, CoordinatorError, ForwardedPing, Note};
use crate::domain::SyncId;
use crate::metrics::REPLICA_NOTES;
use crate::shutdown::Shutdown;
use crate::store::StoreError;

/// How long a listener waits before connecting again after losing its connection.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// Why the listeners could not start.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("cannot listen for other replicas on PostgreSQL: {0}")]
    Postgres(#[from] StoreError),
    #[error("cannot listen for other replicas on Redis: {0}")]
    Redis(#[from] CoordinatorError),
}

/// What the listeners hand notes to.
#[derive(Clone)]
struct Hub {
    control: Control,
    memory: Arc<PingMemory>,
}

/// Starts the listeners of this replica's channel; none without leases (a single replica).
pub async fn start(
    control: Control,
    memory: Arc<PingMemory>,
    redis: Option<Coordinator>,
    shutdown: Shutdown,
) -> Result<Vec<JoinHandle<()>>, ForwardError> {
    let replica = control.services().replica.clone();
    if !replica.is_leased() {
        return Ok(Vec::new());
    }
    let channel = replica_channel(replica.id());
    let hub = Hub { control, memory };
    let mut tasks = vec![listen_postgres(hub.clone(), &channel, shutdown.clone()).await?];
    if let Some(redis) = redis {
        let subscription = redis.subscribe(&channel).await?;
        tasks.push(tokio::spawn(listen_redis(hub, subscription, shutdown)));
    }
    Ok(tasks)
}

async fn listen_postgres(
    hub: Hub,
    channel: &str,
    shutdown: Shutdown,
) -> Result<JoinHandle<()>, ForwardError> {
    use sea_orm::sqlx::postgres::PgListener;
    let pool = hub
        .control
        .services()
        .store
        .connection()
        .get_postgres_connection_pool()
        .clone();
    let connect = |pool: sea_orm::sqlx::PgPool, channel: String| async move {
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen(&channel).await?;
        Ok::<_, sea_orm::sqlx::Error>(listener)
    };
    let mut listener = connect(pool.clone(), channel.to_owned())
        .await
        .map_err(|e| StoreError::Database(sea_orm::DbErr::Custom(e.to_string())))?;
    let channel = channel.to_owned();
    Ok(tokio::spawn(async move {
        let stop = shutdown.wait();
        tokio::pin!(stop);
        loop {
            let received = tokio::select! {
                () = &mut stop => return,
                received = listener.recv() => received,
            };
            match received {
                Ok(notification) => hub.dispatch(notification.payload()).await,
                Err(e) => {
                    tracing::warn!(error = %e, "lost the PostgreSQL connection listening for other replicas; reconnecting");
                    tokio::select! {
                        () = &mut stop => return,
                        () = tokio::time::sleep(RECONNECT_DELAY) => {}
                    }
                    match connect(pool.clone(), channel.clone()).await {
                        Ok(fresh) => listener = fresh,
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot listen for other replicas yet")
                        }
                    }
                }
            }
        }
    }))
}

async fn listen_redis(
    hub: Hub,
    mut subscription: crate::coordinator::Subscription,
    shutdown: Shutdown,
) {
    let stop = shutdown.wait();
    tokio::pin!(stop);
    loop {
        let next = tokio::select! {
            () = &mut stop => break,
            next = subscription.next() => next,
        };
        match next {
            Some(payload) => hub.dispatch(&payload).await,
            None => {
                tracing::warn!("the Redis subscription for other replicas ended");
                break;
            }
        }
    }
    subscription.close().await;
}

fn count(kind: &'static str, result: &'static str) {
    metrics::counter!(REPLICA_NOTES, "kind" => kind, "result" => result).increment(1);
}

impl Hub {
    /// Handles one note; the payload is never logged (a ping carries its channel token).
    async fn dispatch(&self, payload: &str) {
        let note: Note = match serde_json::from_str(payload) {
            Ok(note) => note,
            Err(e) => {
                count("unknown", "invalid");
                tracing::warn!(error = %e, "a note from another replica could not be read");
                return;
            }
        };
        match note {
            Note::Ping(ping) => self.ping(ping).await,
            Note::Wake { targets } => {
                count("wake", "ok");
                for target in targets {
                    self.control.wake_writer(target);
                }
            }
            Note::Sync { calendar, ask } => {
                count("sync", "ok");
                self.control.sync_here(calendar, ask);
            }
            Note::Leases => {
                count("leases", "ok");
                self.control.services().replica.nudge();
            }
        }
    }

    /// A forwarded ping, admitted by the same memory as the pings that arrive here.
    async fn ping(&self, ping: ForwardedPing) {
        let (channel, token, number) = (
            ping.channel_id.clone(),
            ping.token.clone(),
            ping.message_number,
        );
        if self.memory.admit(&channel, token.as_deref(), number) == Admission::Replay {
            count("ping", "duplicate");
            return;
        }
        let sync_id = SyncId::parse(&ping.sync_id).unwrap_or_else(SyncId::random);
        let outcome = self
            .control
            .ping_forwarded(WebhookPing {
                channel_id: ping.channel_id,
                token: ping.token,
                resource_id: ping.resource_id,
                resource_state: ping.resource_state,
                message_number: ping.message_number,
                received: Instant::now(),
                sync_id,
            })
            .await;
        let accepted = matches!(outcome, Ok(PingOutcome::Accepted | PingOutcome::Sync));
        if !accepted {
            self.memory.forget(&channel, token.as_deref(), number);
        }
        count("ping", if accepted { "accepted" } else { "refused" });
        tracing::debug!(%sync_id, accepted, "forwarded ping handled");
    }
}
