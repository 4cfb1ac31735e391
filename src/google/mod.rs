//! The Google Calendar v3 and OAuth client.
//!
//! Role: the only code that talks HTTP to Google (or to `gcal-emulator`, which serves the
//! same paths). Collaborators: `CalendarActor` lists events and manages watch channels
//! through an [`AccountClient`]; `BlockWriter` inserts, patches and deletes blocks through
//! one; onboarding uses [`OAuthClient`] for the consent URL and the code exchange.
//! Lifecycle: one [`GoogleClient`] per process (shared connection pool); one
//! [`TokenSource`] per connected account, owned by its actor.
//!
//! - [`types`]: serde wire types (Event, EventsPage, Channel, Calendar, error envelope).
//! - [`error`]: [`GoogleError`], classified by status and reason.
//! - [`auth`]: [`OAuthClient`] and [`TokenSource`].
//! - [`client`]: [`GoogleClient`], [`AccountClient`], [`RetryPolicy`].

pub mod auth;
pub mod client;
pub mod error;
pub mod types;

pub use auth::{ConsentRequest, GrantedTokens, OAuthClient, TokenSource, SCOPES};
pub use client::{
    AccountClient, EventsListing, EventsQuery, GoogleClient, InstancesQuery, RetryPolicy,
    MAX_PAGE_SIZE,
};
pub use error::GoogleError;
pub use types::{
    Attendee, Calendar, CalendarListEntry, Channel, Event, EventDateTime, EventStatus, EventType,
    EventsPage, ExtendedProperties, Person, Reminders, ResponseStatus, Transparency, Visibility,
};
