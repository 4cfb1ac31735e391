//! The benchmark's side of Google: acting as the calendars' users through the plain API (as
//! their own apps would), the emulator's control API, the floor probe, and reading the
//! blocks' `updated` back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use serde_json::{json, Value};

/// One provisioned Google account.
#[derive(Debug, Clone)]
pub struct User {
    pub email: String,
    pub refresh_token: String,
}

/// The emulator, as the benchmark uses it.
#[derive(Clone)]
pub struct Google {
    pub http: reqwest::Client,
    pub base: String,
    access: Arc<Mutex<HashMap<String, String>>>,
}

impl Google {
    pub fn new(base: &str) -> Google {
        Google {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .pool_max_idle_per_host(512)
                .build()
                .expect("an HTTP client"),
            base: base.to_owned(),
            access: Arc::default(),
        }
    }

    /// `count` accounts named `{prefix}NNNNN@example.test`, in one request.
    pub async fn provision(&self, prefix: &str, count: usize) -> Vec<User> {
        let created: Value = self
            .http
            .post(format!("{}/emulator/accounts/bulk", self.base))
            .json(&json!({"count": count, "prefix": prefix}))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .expect("bulk accounts")
            .json()
            .await
            .expect("JSON");
        created["accounts"]
            .as_array()
            .expect("accounts")
            .iter()
            .map(|a| User {
                email: a["email"].as_str().expect("email").to_owned(),
                refresh_token: a["refresh_token"].as_str().expect("token").to_owned(),
            })
            .collect()
    }

    async fn token(&self, email: &str) -> String {
        if let Some(token) = self.access.lock().get(email) {
            return token.clone();
        }
        let minted: Value = self
            .http
            .post(format!("{}/emulator/accounts/{email}/tokens", self.base))
            .json(&json!({}))
            .send()
            .await
            .expect("mint a token")
            .json()
            .await
            .expect("JSON");
        let token = minted["access_token"].as_str().expect("token").to_owned();
        self.access.lock().insert(email.to_owned(), token.clone());
        token
    }

    /// Inserts an hour-long event on the user's primary calendar; its id.
    pub async fn insert(&self, email: &str, summary: &str, day: i64, hour: u32) -> Option<String> {
        let start = (chrono::Utc::now().date_naive() + chrono::Days::new(day as u64))
            .and_hms_opt(hour, 0, 0)
            .expect("a valid hour")
            .and_utc();
        let end = start + chrono::TimeDelta::hours(1);
        let body = json!({
            "summary": summary,
            "start": {"dateTime": start.to_rfc3339()},
            "end": {"dateTime": end.to_rfc3339()},
        });
        let token = self.token(email).await;
        let response = self
            .http
            .post(format!(
                "{}/calendar/v3/calendars/{email}/events",
                self.base
            ))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        let event: Value = response.json().await.ok()?;
        event["id"].as_str().map(str::to_owned)
    }

    pub async fn delete(&self, email: &str, id: &str) -> bool {
        let token = self.token(email).await;
        self.http
            .delete(format!(
                "{}/calendar/v3/calendars/{email}/events/{id}",
                self.base
            ))
            .bearer_auth(token)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    /// An incremental list from `sync_token`; the next token.
    async fn list(&self, email: &str, sync_token: Option<&str>) -> Option<String> {
        let token = self.token(email).await;
        let mut request = self
            .http
            .get(format!(
                "{}/calendar/v3/calendars/{email}/events",
                self.base
            ))
            .bearer_auth(token);
        if let Some(sync) = sync_token {
            request = request.query(&[("syncToken", sync)]);
        }
        let page: Value = request.send().await.ok()?.json().await.ok()?;
        page["nextSyncToken"].as_str().map(str::to_owned)
    }

    /// The emulator's request counters (`byMethod` → status → count).
    pub async fn counters(&self) -> Value {
        self.http
            .get(format!("{}/emulator/counters", self.base))
            .send()
            .await
            .expect("counters")
            .json()
            .await
            .expect("JSON")
    }

    pub async fn reset_counters(&self) {
        let _ = self
            .http
            .delete(format!("{}/emulator/counters", self.base))
            .send()
            .await;
    }

    /// The blocks on `calendar` by their source event: (deleted, Google's `updated` in ms).
    pub async fn blocks_on(&self, calendar: &str) -> Vec<(String, bool, i64)> {
        let Ok(response) = self
            .http
            .get(format!(
                "{}/emulator/calendars/{calendar}/events",
                self.base
            ))
            .send()
            .await
        else {
            return Vec::new();
        };
        let dump: Value = response.json().await.unwrap_or_default();
        dump["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| {
                let event = &item["event"];
                let source = event["extendedProperties"]["private"]["mcssSourceEvent"].as_str()?;
                let updated = chrono::DateTime::parse_from_rfc3339(event["updated"].as_str()?)
                    .ok()?
                    .timestamp_millis();
                let deleted = item["deleted"].as_bool().unwrap_or(false)
                    || event["status"].as_str() == Some("cancelled");
                Some((source.to_owned(), deleted, updated))
            })
            .collect()
    }
}

/// The floor of one propagation: push delay + one `events.list` + one write round trip,
/// each the median of `probes` measurements on a calendar the service does not know.
#[derive(Debug, Clone, Copy, Default)]
pub struct Floor {
    pub push: Duration,
    pub list: Duration,
    pub write: Duration,
}

impl Floor {
    pub fn total(&self) -> Duration {
        self.push + self.list + self.write
    }
}

/// Measures the floor against `probe` (an account of the emulator nobody else uses),
/// receiving its push notifications on a listener of our own.
pub async fn measure_floor(google: &Google, probe: &str, probes: usize) -> Floor {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a probe listener");
    let port = listener.local_addr().expect("address").port();
    let app = axum::Router::new().route(
        "/probe",
        axum::routing::post(move |headers: axum::http::HeaderMap| {
            let tx = tx.clone();
            async move {
                if headers
                    .get("x-goog-resource-state")
                    .is_some_and(|v| v == "exists")
                {
                    let _ = tx.send(Instant::now());
                }
                axum::http::StatusCode::OK
            }
        }),
    );
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let token = google.token(probe).await;
    let _ = google
        .http
        .post(format!(
            "{}/calendar/v3/calendars/{probe}/events/watch",
            google.base
        ))
        .bearer_auth(&token)
        .json(&json!({
            "id": uuid::Uuid::new_v4().to_string(),
            "type": "web_hook",
            "address": format!("http://127.0.0.1:{port}/probe"),
        }))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .expect("the probe channel opens");
    let mut sync_token = google.list(probe, None).await;
    let (mut push, mut list, mut write) = (Vec::new(), Vec::new(), Vec::new());
    for n in 0..probes {
        while rx.try_recv().is_ok() {}
        let started = Instant::now();
        let inserted = google
            .insert(probe, &format!("floor probe {n}"), 3, 9 + (n % 8) as u32)
            .await;
        let answered = Instant::now();
        if inserted.is_none() {
            continue;
        }
        write.push(answered - started);
        if let Ok(Some(at)) = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            push.push(at.saturating_duration_since(answered));
        }
        let started = Instant::now();
        sync_token = google.list(probe, sync_token.as_deref()).await;
        list.push(started.elapsed());
    }
    server.abort();
    Floor {
        push: median(&mut push),
        list: median(&mut list),
        write: median(&mut write),
    }
}

fn median(values: &mut [Duration]) -> Duration {
    values.sort();
    values.get(values.len() / 2).copied().unwrap_or_default()
}

/// Milliseconds since the epoch, as Google's `updated` counts them.
pub fn epoch_ms(at: SystemTime) -> i64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
