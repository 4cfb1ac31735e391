//! [`ProductionFactory`]: builds the real children of the supervisor — a
//! [`CalendarActor`](super::calendar::CalendarActor) or a
//! [`BlockWriter`](super::block_writer::BlockWriter) per [`ChildKey`] — spawned linked to the
//! supervisor and registered under their [`ActorNames`], so senders find the current
//! incarnation by name (ractor frees a name as the actor stops, before the supervisor hears
//! of it, so a respawn can take the same name).

use async_trait::async_trait;
use ractor::{Actor, ActorCell, SpawnErr};

use super::block_writer::{BlockWriter, WriterArgs};
use super::calendar::{CalendarActor, CalendarArgs};
use super::latency::LatencyRing;
use super::supervisor::{ChildFactory, ChildKey};
use super::ActorNames;
use crate::services::Services;

/// The factory `serve` uses.
#[derive(Clone)]
pub struct ProductionFactory {
    pub services: Services,
    pub names: ActorNames,
    pub latency: LatencyRing,
}

#[async_trait]
impl ChildFactory for ProductionFactory {
    async fn spawn(&self, key: ChildKey, supervisor: ActorCell) -> Result<ActorCell, SpawnErr> {
        match key {
            ChildKey::Calendar(account) => {
                let args = CalendarArgs {
                    services: self.services.clone(),
                    names: self.names.clone(),
                    account,
                };
                let name = self.names.calendar(account);
                let (actor, _) =
                    Actor::spawn_linked(Some(name), CalendarActor, args, supervisor).await?;
                Ok(actor.get_cell())
            }
            ChildKey::Writer(account) => {
                let args = WriterArgs {
                    services: self.services.clone(),
                    names: self.names.clone(),
                    account,
                    latency: self.latency.clone(),
                };
                let name = self.names.writer(account);
                let (actor, _) =
                    Actor::spawn_linked(Some(name), BlockWriter, args, supervisor).await?;
                Ok(actor.get_cell())
            }
        }
    }
}
