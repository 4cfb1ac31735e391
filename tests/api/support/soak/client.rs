//! The calendar owners' own Calendar API client: how the soak's users edit their calendars
//! and how the checker reads them. Each owner signs in with their refresh token (through
//! `crash_restart::token`, the OAuth refresh grant); the access token is cached and minted
//! again after a 401.
//!
//! Owners meet the injected faults too (a fault rule cannot tell them from the service), so
//! a refused request is retried the way Google asks clients to (429, rate-limit 403s and
//! 5xx, with a growing pause) and, if the burst outlasts the retries, reported as
//! [`Refused`]: the edit did not happen (the emulator refuses before it changes anything)
//! and the soak goes on. Any other error means the soak itself is wrong and panics, with the
//! replay line.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use gcal_emulator::EmulatorHandle;
use parking_lot::Mutex;
use reqwest::Method;
use serde_json::Value;

use crate::crash_restart::token;
use crate::support::Calendar;

/// Every request an owner makes is bounded by this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Attempts of one request before it counts as refused (pauses 0.1 s doubling to 1.6 s).
const ATTEMPTS: u32 = 7;

/// An owner's request that the injected faults refused every time.
#[derive(Debug, Clone, Copy)]
pub struct Refused {
    pub status: u16,
}

/// The owners of the soak's calendars.
pub struct Owners {
    emulator: Arc<EmulatorHandle>,
    http: reqwest::Client,
    calendars: Vec<Calendar>,
    tokens: Mutex<HashMap<usize, String>>,
    /// Said in every panic: the seed and switches of the run.
    replay: String,
    /// Retries after a refused attempt, for the figures.
    pub retries: AtomicU64,
}

impl Owners {
    pub fn new(emulator: Arc<EmulatorHandle>, calendars: Vec<Calendar>, replay: String) -> Self {
        Self {
            emulator,
            http: reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .build()
                .expect("an HTTP client"),
            calendars,
            tokens: Mutex::new(HashMap::new()),
            replay,
            retries: AtomicU64::new(0),
        }
    }

    async fn access_token(&self, n: usize) -> String {
        if let Some(token) = self.tokens.lock().get(&n) {
            return token.clone();
        }
        let fresh = token(&self.emulator, &self.http, &self.calendars[n].refresh_token).await;
        self.tokens.lock().insert(n, fresh.clone());
        fresh
    }

    fn events_url(&self, n: usize) -> String {
        format!(
            "{}/calendar/v3/calendars/{}/events",
            self.emulator.base_url(),
            self.calendars[n].calendar_id
        )
    }

    /// One request of owner `n` with Google's retry advice; the JSON answer (Null for 204).
    async fn call(
        &self,
        n: usize,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, Refused> {
        let url = format!("{}{path}", self.events_url(n));
        let mut pause = Duration::from_millis(100);
        let mut last = 0;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                self.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(1600));
            }
            let mut request = self
                .http
                .request(method.clone(), &url)
                .query(query)
                .bearer_auth(self.access_token(n).await);
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = match request.send().await {
                Ok(response) => response,
                Err(_) => {
                    last = 0;
                    continue;
                }
            };
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            if (200..300).contains(&status) {
                return Ok(serde_json::from_str(&text).unwrap_or(Value::Null));
            }
            last = status;
            match status {
                401 => {
                    self.tokens.lock().remove(&n);
                }
                429 | 500 | 502 | 503 | 504 => {}
                403 if is_rate_limit(&text) => {}
                _ => panic!(
                    "{method} {path} of {} failed with {status}: {text}\nreplay: {}",
                    self.calendars[n].alias, self.replay
                ),
            }
        }
        Err(Refused { status: last })
    }

    pub async fn insert(&self, n: usize, body: &Value) -> Result<Value, Refused> {
        self.call(n, Method::POST, "", &[], Some(body)).await
    }

    pub async fn patch(&self, n: usize, id: &str, body: &Value) -> Result<Value, Refused> {
        self.call(n, Method::PATCH, &format!("/{id}"), &[], Some(body))
            .await
    }

    pub async fn delete(&self, n: usize, id: &str) -> Result<(), Refused> {
        self.call(n, Method::DELETE, &format!("/{id}"), &[], None)
            .await
            .map(drop)
    }

    /// events.instances of series `id` (cancelled ones included), every page.
    pub async fn instances(&self, n: usize, id: &str) -> Result<Vec<Value>, Refused> {
        let query = vec![
            ("showDeleted", "true".to_owned()),
            ("maxResults", "2500".to_owned()),
        ];
        self.pages(n, &format!("/{id}/instances"), query).await
    }

    /// Every occurrence of calendar `n` in `[from, to)` (series expanded, cancelled ones
    /// included): the checker's view. Faults are off when it runs, so a refusal panics.
    pub async fn occurrences(
        &self,
        n: usize,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<Value> {
        let query = vec![
            ("singleEvents", "true".to_owned()),
            ("showDeleted", "true".to_owned()),
            ("maxResults", "2500".to_owned()),
            (
                "timeMin",
                from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            ),
            (
                "timeMax",
                to.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            ),
        ];
        self.pages(n, "", query).await.unwrap_or_else(|refused| {
            panic!(
                "the checker's listing of {} was refused ({}); replay: {}",
                self.calendars[n].alias, refused.status, self.replay
            )
        })
    }

    async fn pages(
        &self,
        n: usize,
        path: &str,
        query: Vec<(&str, String)>,
    ) -> Result<Vec<Value>, Refused> {
        let mut items = Vec::new();
        let mut page_token: Option<String> = None;
        loop {
            let mut query = query.clone();
            if let Some(token) = page_token.take() {
                query.push(("pageToken", token));
            }
            let page = self.call(n, Method::GET, path, &query, None).await?;
            items.extend(page["items"].as_array().cloned().unwrap_or_default());
            match page["nextPageToken"].as_str() {
                Some(token) => page_token = Some(token.to_owned()),
                None => return Ok(items),
            }
        }
    }
}

/// Whether a 403 body is one of Google's "slow down" answers (retry) rather than a refusal.
fn is_rate_limit(body: &str) -> bool {
    ["rateLimitExceeded", "userRateLimitExceeded"]
        .iter()
        .any(|reason| body.contains(reason))
}
