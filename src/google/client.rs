//! [`GoogleClient`] and [`AccountClient`]: the Calendar v3 methods the service calls.
//!
//! One `GoogleClient` per process holds the shared `reqwest::Client` (rustls, timeouts, no
//! redirects) and the [`RetryPolicy`]; [`GoogleClient::account`] pairs it with one
//! account's [`TokenSource`]. Every call:
//! - sends `Authorization: Bearer` with the account's cached access token;
//! - on 401 invalidates that token, refreshes once and retries;
//! - on [`GoogleError::is_retryable`] errors (429, rate-limit 403s, 5xx, timeouts) waits a
//!   truncated exponential backoff with full jitter — at least the `Retry-After` Google
//!   sent — within a bounded number of attempts and a bounded total time, then returns the
//!   error to the caller (an actor), which decides what happens next;
//! - percent-encodes calendar and event ids in the path;
//! - records `mcss_google_requests_total{method,status}` and
//!   `mcss_google_request_duration_seconds{method}` per HTTP attempt.
//!
//! Retried writes are safe because the service inserts with deterministic ids (a repeated
//! insert answers 409), patches are idempotent, and a repeated delete answers 410.
//! Logs carry method, calendar and event ids and statuses — never tokens, titles or
//! descriptions.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rand::Rng as _;
use reqwest::header::{CONTENT_TYPE, IF_MATCH, RETRY_AFTER};
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::time::Instant;
use url::Url;

use super::auth::{OAuthClient, TokenSource};
use super::error::{classify, parse_retry_after, CallKind, GoogleError};
use super::types::{
    Calendar, CalendarListEntry, Channel, Event, EventsPage, WatchParams, WatchRequest,
};
use crate::config::GoogleSettings;
use crate::domain::{CalendarId, ChannelId, EventId};
use crate::metrics::{GOOGLE_REQUESTS, GOOGLE_REQUEST_DURATION};

/// Largest page `events.list` serves; fewer round trips for the same quota.
pub const MAX_PAGE_SIZE: u32 = 2500;

/// Characters left as they are in a path segment: RFC 3986 unreserved. Everything else,
/// `@` included, is percent-encoded, as Google itself does in `resourceUri`.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn segment(raw: &str) -> String {
    utf8_percent_encode(raw, PATH_SEGMENT).to_string()
}

/// How retryable failures are retried before the error goes back to the caller.
///
/// Delay before retry `n` (0-based) is uniform in `[0, min(cap, base·2ⁿ)]` (full jitter),
/// but never less than Google's `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included; 1 means no retry.
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
    /// No retry is started that would end after this much time since the first attempt.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    /// Google's recipe (its usage-limits guide) with a 32 s cap, bounded to about a minute so an
    /// actor is never stuck in one call for long.
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base: Duration::from_secs(1),
            cap: Duration::from_secs(32),
            max_elapsed: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// Every failure goes straight back to the caller.
    pub fn no_retry() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The wait before retry number `retry` (0 for the first retry).
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(2u32.saturating_pow(retry.min(31)))
            .min(self.cap);
        let jittered = if ceiling.is_zero() {
            Duration::ZERO
        } else {
            rand::thread_rng().gen_range(Duration::ZERO..=ceiling)
        };
        jittered.max(retry_after.unwrap_or_default())
    }

    /// The wait before the next attempt after `failures` retryable failures in a row,
    /// `elapsed` since the first attempt; `None` when the budget is spent, including when
    /// Google's `Retry-After` alone would overrun it.
    pub fn next_delay(
        &self,
        failures: u32,
        elapsed: Duration,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        if failures >= self.max_attempts.max(1) {
            return None;
        }
        let delay = self.delay(failures.saturating_sub(1), retry_after);
        (elapsed + delay <= self.max_elapsed).then_some(delay)
    }
}

/// The process-wide Google API client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct GoogleClient {
    http: reqwest::Client,
    /// `…/calendar/v3`, without a trailing slash.
    api_base: Arc<str>,
    retry: RetryPolicy,
    /// Requests in flight at once through this client and its clones; `None`: unbounded.
    in_flight: Option<Arc<tokio::sync::Semaphore>>,
}

impl GoogleClient {
    /// Builds the shared HTTP client: every request bounded by `request_timeout`, rustls,
    /// no redirects (required by the OAuth client that shares it).
    pub fn new(settings: &GoogleSettings) -> Result<Self, GoogleError> {
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(settings.request_timeout)
            .connect_timeout(settings.request_timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("mcss/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| GoogleError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self::with_http(settings.api_base_url.clone(), http))
    }

    /// Uses a ready HTTP client (tests, or a caller with its own pool).
    pub fn with_http(api_base_url: Url, http: reqwest::Client) -> Self {
        let api_base = format!(
            "{}/calendar/v3",
            api_base_url.as_str().trim_end_matches('/')
        );
        Self {
            http,
            api_base: api_base.into(),
            retry: RetryPolicy::default(),
            in_flight: None,
        }
    }

    /// At most `max` requests in flight at once through this client and every clone made
    /// from it after this; the others wait for a slot (`MAX_CONCURRENT_GOOGLE_REQUESTS`).
    pub fn with_concurrency_limit(mut self, max: usize) -> Self {
        self.in_flight = Some(Arc::new(tokio::sync::Semaphore::new(max.max(1))));
        self
    }

    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// The shared HTTP client (no redirects), e.g. for [`OAuthClient::new`].
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// An [`OAuthClient`] on the shared HTTP client.
    pub fn oauth(&self, settings: &GoogleSettings) -> Result<OAuthClient, GoogleError> {
        OAuthClient::new(settings, self.http.clone())
    }

    /// The client of one account.
    pub fn account(&self, tokens: TokenSource) -> AccountClient {
        AccountClient {
            client: self.clone(),
            tokens,
        }
    }
}

/// Parameters of `events.list`. `showDeleted=true` is always sent, so a full sync and the
/// incremental syncs after it use the same parameter set (Google's incremental sync guide).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventsQuery {
    /// Incremental sync from this token; `None` is a full sync.
    pub sync_token: Option<String>,
    pub page_token: Option<String>,
    /// Page size; [`MAX_PAGE_SIZE`] when `None`.
    pub max_results: Option<u32>,
    /// Expand series into occurrences. Must match between a full sync and its increments.
    pub single_events: bool,
    /// `name=value`: only events carrying this private extended property (not with a sync
    /// token). Finds our blocks by marker.
    pub private_extended_property: Option<String>,
    /// Only events ending after this instant (not with a sync token).
    pub time_min: Option<DateTime<Utc>>,
}

impl EventsQuery {
    /// A full sync: every event, no time bounds, series unexpanded.
    pub fn full() -> Self {
        Self::default()
    }

    /// An incremental sync from `sync_token`.
    pub fn incremental(sync_token: impl Into<String>) -> Self {
        Self {
            sync_token: Some(sync_token.into()),
            ..Self::default()
        }
    }
}

/// Parameters of `events.instances`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstancesQuery {
    pub page_token: Option<String>,
    pub max_results: Option<u32>,
    pub show_deleted: bool,
    pub time_min: Option<DateTime<Utc>>,
    pub time_max: Option<DateTime<Utc>>,
}

/// Every page of one `events.list`, concatenated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventsListing {
    pub events: Vec<Event>,
    /// From the last page; `None` only if Google sent none (filtered lists).
    pub next_sync_token: Option<String>,
    /// The calendar's time zone.
    pub time_zone: Option<String>,
}

/// One request, described once and sent as many times as the retry policy allows.
struct Call<'a> {
    /// The API method name, the `method` label of the metrics (`events.list`).
    name: &'static str,
    method: Method,
    /// After `…/calendar/v3`, starting with `/`, segments already encoded.
    path: String,
    query: Vec<(&'static str, String)>,
    body: Option<Bytes>,
    if_match: Option<&'a str>,
    kind: CallKind,
}

impl<'a> Call<'a> {
    fn new(name: &'static str, method: Method, path: String) -> Self {
        Self {
            name,
            method,
            path,
            query: Vec::new(),
            body: None,
            if_match: None,
            kind: CallKind::Other,
        }
    }

    fn query(mut self, key: &'static str, value: impl ToString) -> Self {
        self.query.push((key, value.to_string()));
        self
    }

    fn json(mut self, body: &impl Serialize) -> Result<Self, GoogleError> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| GoogleError::Malformed(format!("request body: {e}")))?;
        self.body = Some(Bytes::from(bytes));
        Ok(self)
    }

    fn if_match(mut self, etag: Option<&'a str>) -> Self {
        self.if_match = etag;
        self
    }
}

/// One account's view of the API: the shared client plus that account's tokens.
#[derive(Debug, Clone)]
pub struct AccountClient {
    client: GoogleClient,
    tokens: TokenSource,
}

impl AccountClient {
    pub fn tokens(&self) -> &TokenSource {
        &self.tokens
    }

    /// `calendars.get`: id (the e-mail address for `primary`), summary, time zone.
    #[tracing::instrument(level = "debug", skip(self), fields(calendar = %calendar))]
    pub async fn calendars_get(&self, calendar: &CalendarId) -> Result<Calendar, GoogleError> {
        let call = Call::new(
            "calendars.get",
            Method::GET,
            format!("/calendars/{}", segment(calendar.as_str())),
        );
        self.fetch(call).await
    }

    /// `calendarList.get`: the user's entry for a calendar (works with the
    /// `calendar.calendarlist.readonly` scope, unlike `calendars.get`).
    #[tracing::instrument(level = "debug", skip(self), fields(calendar = %calendar))]
    pub async fn calendar_list_get(
        &self,
        calendar: &CalendarId,
    ) -> Result<CalendarListEntry, GoogleError> {
        let call = Call::new(
            "calendarList.get",
            Method::GET,
            format!("/users/me/calendarList/{}", segment(calendar.as_str())),
        );
        self.fetch(call).await
    }

    /// `calendarList.list`, every page: the calendars the account sees (hidden ones too),
    /// primary first as Google lists them. At most ten pages of 250 are followed.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn calendar_list(&self) -> Result<Vec<CalendarListEntry>, GoogleError> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Page {
            #[serde(default)]
            items: Vec<CalendarListEntry>,
            #[serde(default)]
            next_page_token: Option<String>,
        }
        let mut entries = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..10 {
            let mut call = Call::new(
                "calendarList.list",
                Method::GET,
                "/users/me/calendarList".to_owned(),
            )
            .query("maxResults", 250)
            .query("showHidden", true);
            if let Some(token) = &token {
                call = call.query("pageToken", token);
            }
            let page: Page = self.fetch(call).await?;
            entries.extend(page.items);
            match page.next_page_token {
                Some(next) => token = Some(next),
                None => break,
            }
        }
        Ok(entries)
    }

    /// One page of `events.list`. With a sync token, a 410 is
    /// [`GoogleError::SyncTokenExpired`].
    #[tracing::instrument(
        level = "debug",
        skip(self, query),
        fields(calendar = %calendar, incremental = query.sync_token.is_some())
    )]
    pub async fn events_list_page(
        &self,
        calendar: &CalendarId,
        query: &EventsQuery,
    ) -> Result<EventsPage, GoogleError> {
        let mut call = Call::new(
            "events.list",
            Method::GET,
            format!("/calendars/{}/events", segment(calendar.as_str())),
        )
        .query("showDeleted", true)
        .query("singleEvents", query.single_events)
        .query("maxResults", query.max_results.unwrap_or(MAX_PAGE_SIZE));
        if let Some(token) = &query.sync_token {
            call = call.query("syncToken", token);
            call.kind = CallKind::SyncList;
        }
        if let Some(token) = &query.page_token {
            call = call.query("pageToken", token);
        }
        if let Some(filter) = &query.private_extended_property {
            call = call.query("privateExtendedProperty", filter);
        }
        if let Some(time_min) = query.time_min {
            call = call.query("timeMin", rfc3339(time_min));
        }
        self.fetch(call).await
    }

    /// Follows every page of `events.list` (empty pages included) and returns all items
    /// with the sync token of the last page. Store that token only after the items are
    /// committed.
    #[tracing::instrument(
        level = "debug",
        skip(self, query),
        fields(calendar = %calendar, incremental = query.sync_token.is_some())
    )]
    pub async fn list_all(
        &self,
        calendar: &CalendarId,
        query: &EventsQuery,
    ) -> Result<EventsListing, GoogleError> {
        let mut query = query.clone();
        let mut listing = EventsListing::default();
        let mut pages = 0u32;
        loop {
            let page = self.events_list_page(calendar, &query).await?;
            pages += 1;
            listing.events.extend(page.items);
            if page.time_zone.is_some() {
                listing.time_zone = page.time_zone;
            }
            match page.next_page_token {
                Some(next) if query.page_token.as_deref() == Some(next.as_str()) => {
                    return Err(GoogleError::Malformed(
                        "events.list returned the same page token twice".into(),
                    ));
                }
                Some(next) => query.page_token = Some(next),
                None => {
                    listing.next_sync_token = page.next_sync_token;
                    tracing::debug!(pages, events = listing.events.len(), "listed");
                    return Ok(listing);
                }
            }
        }
    }

    /// `events.get`; returns cancelled events too (`status: cancelled`).
    #[tracing::instrument(level = "debug", skip(self), fields(calendar = %calendar, event = %event))]
    pub async fn events_get(
        &self,
        calendar: &CalendarId,
        event: &EventId,
    ) -> Result<Event, GoogleError> {
        let call = Call::new("events.get", Method::GET, event_path(calendar, event));
        self.fetch(call).await
    }

    /// `events.insert` with `sendUpdates=none`. An existing id (even a deleted one) is
    /// [`GoogleError::Conflict`].
    #[tracing::instrument(level = "debug", skip(self, body), fields(calendar = %calendar))]
    pub async fn events_insert(
        &self,
        calendar: &CalendarId,
        body: &impl Serialize,
    ) -> Result<Event, GoogleError> {
        let call = Call::new(
            "events.insert",
            Method::POST,
            format!("/calendars/{}/events", segment(calendar.as_str())),
        )
        .query("sendUpdates", "none")
        .json(body)?;
        self.fetch(call).await
    }

    /// `events.patch` with `sendUpdates=none`: only the fields in `body` change. With
    /// `if_match`, a stale etag is [`GoogleError::PreconditionFailed`].
    #[tracing::instrument(level = "debug", skip(self, body, if_match), fields(calendar = %calendar, event = %event))]
    pub async fn events_patch(
        &self,
        calendar: &CalendarId,
        event: &EventId,
        body: &impl Serialize,
        if_match: Option<&str>,
    ) -> Result<Event, GoogleError> {
        let call = Call::new("events.patch", Method::PATCH, event_path(calendar, event))
            .query("sendUpdates", "none")
            .json(body)?
            .if_match(if_match);
        self.fetch(call).await
    }

    /// `events.update` (PUT) with `sendUpdates=none`: replaces the whole event.
    #[tracing::instrument(level = "debug", skip(self, body, if_match), fields(calendar = %calendar, event = %event))]
    pub async fn events_update(
        &self,
        calendar: &CalendarId,
        event: &EventId,
        body: &impl Serialize,
        if_match: Option<&str>,
    ) -> Result<Event, GoogleError> {
        let call = Call::new("events.update", Method::PUT, event_path(calendar, event))
            .query("sendUpdates", "none")
            .json(body)?
            .if_match(if_match);
        self.fetch(call).await
    }

    /// `events.delete` with `sendUpdates=none`. Already deleted is [`GoogleError::Gone`],
    /// which callers treat as success.
    #[tracing::instrument(level = "debug", skip(self), fields(calendar = %calendar, event = %event))]
    pub async fn events_delete(
        &self,
        calendar: &CalendarId,
        event: &EventId,
    ) -> Result<(), GoogleError> {
        let call = Call::new("events.delete", Method::DELETE, event_path(calendar, event))
            .query("sendUpdates", "none");
        self.execute(&call).await.map(drop)
    }

    /// One page of `events.instances`: the occurrences of a series.
    #[tracing::instrument(level = "debug", skip(self, query), fields(calendar = %calendar, event = %event))]
    pub async fn events_instances(
        &self,
        calendar: &CalendarId,
        event: &EventId,
        query: &InstancesQuery,
    ) -> Result<EventsPage, GoogleError> {
        let mut call = Call::new(
            "events.instances",
            Method::GET,
            format!("{}/instances", event_path(calendar, event)),
        )
        .query("showDeleted", query.show_deleted)
        .query("maxResults", query.max_results.unwrap_or(MAX_PAGE_SIZE));
        if let Some(token) = &query.page_token {
            call = call.query("pageToken", token);
        }
        if let Some(time_min) = query.time_min {
            call = call.query("timeMin", rfc3339(time_min));
        }
        if let Some(time_max) = query.time_max {
            call = call.query("timeMax", rfc3339(time_max));
        }
        self.fetch(call).await
    }

    /// `events.watch`: a push channel on the calendar's events. `channel` must be fresh
    /// (reused ids are refused); the returned `expiration` is authoritative.
    #[tracing::instrument(level = "debug", skip(self, address, token), fields(calendar = %calendar, channel = %channel))]
    pub async fn events_watch(
        &self,
        calendar: &CalendarId,
        channel: &ChannelId,
        address: &Url,
        token: Option<&str>,
        ttl: Option<Duration>,
    ) -> Result<Channel, GoogleError> {
        let body = WatchRequest {
            id: channel.clone(),
            kind: "web_hook".into(),
            address: address.to_string(),
            token: token.map(str::to_owned),
            params: ttl.map(|ttl| WatchParams {
                ttl: ttl.as_secs().to_string(),
            }),
        };
        let call = Call::new(
            "events.watch",
            Method::POST,
            format!("/calendars/{}/events/watch", segment(calendar.as_str())),
        )
        .json(&body)?;
        self.fetch(call).await
    }

    /// `channels.stop`: no more pings on this channel (a few may still arrive).
    #[tracing::instrument(level = "debug", skip(self), fields(channel = %channel))]
    pub async fn channels_stop(
        &self,
        channel: &ChannelId,
        resource_id: &str,
    ) -> Result<(), GoogleError> {
        let body = serde_json::json!({"id": channel.as_str(), "resourceId": resource_id});
        let call = Call::new("channels.stop", Method::POST, "/channels/stop".into()).json(&body)?;
        self.execute(&call).await.map(drop)
    }

    async fn fetch<T: DeserializeOwned>(&self, call: Call<'_>) -> Result<T, GoogleError> {
        let body = self.execute(&call).await?;
        serde_json::from_slice(&body).map_err(|e| {
            // The serde message names the field and position, never the content.
            GoogleError::Malformed(format!("{} response: {e}", call.name))
        })
    }

    /// Sends `call` under the 401-refresh rule and the retry policy.
    async fn execute(&self, call: &Call<'_>) -> Result<Bytes, GoogleError> {
        let policy = self.client.retry;
        let started = Instant::now();
        let mut failures = 0u32;
        let mut refreshed = false;
        loop {
            let result = match self.tokens.access_token().await {
                Ok(token) => match self.attempt(call, &token).await {
                    Err(GoogleError::Unauthorized) if !refreshed => {
                        tracing::debug!(method = call.name, "access token refused; refreshing");
                        self.tokens.invalidate(&token).await;
                        refreshed = true;
                        continue;
                    }
                    other => other,
                },
                Err(e) => Err(e),
            };
            let err = match result {
                Ok(body) => return Ok(body),
                Err(e) if e.is_retryable() => e,
                Err(e) => return Err(e),
            };
            failures += 1;
            let Some(delay) = policy.next_delay(failures, started.elapsed(), err.retry_after())
            else {
                tracing::debug!(method = call.name, failures, error = %err, "retry budget exhausted");
                return Err(err);
            };
            tracing::debug!(method = call.name, failures, ?delay, error = %err, "retrying");
            tokio::time::sleep(delay).await;
        }
    }

    /// One HTTP exchange, measured and classified.
    async fn attempt(&self, call: &Call<'_>, token: &SecretString) -> Result<Bytes, GoogleError> {
        let url = format!("{}{}", self.client.api_base, call.path);
        let mut request = self
            .client
            .http
            .request(call.method.clone(), url)
            .bearer_auth(token.expose_secret())
            .query(&call.query);
        if let Some(body) = &call.body {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        if let Some(etag) = call.if_match {
            request = request.header(IF_MATCH, etag);
        }
        // Held until the body is read; the semaphore is never closed, so `ok()` only
        // drops the impossible error.
        let _slot = match &self.client.in_flight {
            Some(limit) => limit.acquire().await.ok(),
            None => None,
        };
        let started = std::time::Instant::now();
        let outcome = async {
            let response = request.send().await?;
            let status = response.status();
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now()));
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, retry_after, body))
        }
        .await;
        let elapsed = started.elapsed();
        let status_label = match &outcome {
            Ok((status, _, _)) => status.as_str().to_owned(),
            Err(e) if e.is_timeout() => "timeout".to_owned(),
            Err(_) => "error".to_owned(),
        };
        metrics::counter!(GOOGLE_REQUESTS, "method" => call.name, "status" => status_label.clone())
            .increment(1);
        metrics::histogram!(GOOGLE_REQUEST_DURATION, "method" => call.name)
            .record(elapsed.as_secs_f64());
        tracing::debug!(method = call.name, status = %status_label, ?elapsed, "google request");
        let (status, retry_after, body) = outcome.map_err(GoogleError::from_transport)?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(classify(status, &body, retry_after, call.kind))
        }
    }
}

fn event_path(calendar: &CalendarId, event: &EventId) -> String {
    format!(
        "/calendars/{}/events/{}",
        segment(calendar.as_str()),
        segment(event.as_str())
    )
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_and_event_ids_are_percent_encoded_in_paths() {
        let calendar = CalendarId::parse("team+x@group.calendar.google.com").unwrap();
        let event = EventId::parse("abc_20260826T110000Z").unwrap();
        assert_eq!(
            event_path(&calendar, &event),
            "/calendars/team%2Bx%40group.calendar.google.com/events/abc_20260826T110000Z"
        );
        assert_eq!(segment("a?b#c%d"), "a%3Fb%23c%25d");
    }

    #[test]
    fn the_backoff_grows_exponentially_and_is_capped() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base: Duration::from_millis(100),
            cap: Duration::from_millis(800),
            max_elapsed: Duration::from_secs(60),
        };
        for _ in 0..200 {
            assert!(policy.delay(0, None) <= Duration::from_millis(100));
            assert!(policy.delay(2, None) <= Duration::from_millis(400));
            assert!(policy.delay(30, None) <= Duration::from_millis(800));
        }
    }

    #[test]
    fn the_backoff_is_jittered() {
        let policy = RetryPolicy::default();
        let delays: std::collections::HashSet<Duration> =
            (0..50).map(|_| policy.delay(3, None)).collect();
        assert!(delays.len() > 1);
    }

    #[test]
    fn the_backoff_never_undercuts_retry_after() {
        let policy = RetryPolicy::default();
        for _ in 0..100 {
            assert!(policy.delay(0, Some(Duration::from_secs(5))) >= Duration::from_secs(5));
        }
    }

    #[test]
    fn the_retry_budget_bounds_attempts_and_total_time() {
        let policy = RetryPolicy {
            max_attempts: 3,
            base: Duration::from_millis(10),
            cap: Duration::from_millis(10),
            max_elapsed: Duration::from_secs(5),
        };
        assert!(policy.next_delay(1, Duration::ZERO, None).is_some());
        assert!(policy.next_delay(2, Duration::ZERO, None).is_some());
        assert_eq!(policy.next_delay(3, Duration::ZERO, None), None);
        assert_eq!(policy.next_delay(1, Duration::from_secs(6), None), None);
    }

    #[test]
    fn a_retry_after_longer_than_the_budget_goes_back_to_the_caller() {
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.next_delay(1, Duration::ZERO, Some(Duration::from_secs(3600))),
            None
        );
        assert_eq!(
            policy.next_delay(1, Duration::ZERO, Some(Duration::from_secs(40))),
            Some(Duration::from_secs(40))
        );
    }

    #[test]
    fn no_retry_means_one_attempt() {
        assert_eq!(
            RetryPolicy::no_retry().next_delay(1, Duration::ZERO, None),
            None
        );
    }

    #[test]
    fn a_zero_base_retries_at_once() {
        let policy = RetryPolicy {
            base: Duration::ZERO,
            ..RetryPolicy::default()
        };
        assert_eq!(policy.delay(4, None), Duration::ZERO);
    }

    #[test]
    fn the_api_base_is_joined_with_the_calendar_path_once() {
        let client = GoogleClient::with_http(
            Url::parse("http://127.0.0.1:9/").unwrap(),
            reqwest::Client::new(),
        );
        assert_eq!(&*client.api_base, "http://127.0.0.1:9/calendar/v3");
    }

    #[test]
    fn a_full_query_and_an_incremental_query_differ_only_in_the_token() {
        let full = EventsQuery::full();
        let incremental = EventsQuery::incremental("tok");
        assert_eq!(
            EventsQuery {
                sync_token: None,
                ..incremental.clone()
            },
            full
        );
        assert_eq!(incremental.sync_token.as_deref(), Some("tok"));
    }
}
