//! Shared test scaffolding: an emulator per test, an authorized HTTP client, a push receiver
//! and bounded `eventually` polling.
#![allow(dead_code)]

use gcal_emulator::{AccountInfo, Emulator, EmulatorConfig, EmulatorHandle, Settings};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

pub struct TestEmu {
    pub handle: EmulatorHandle,
    pub http: reqwest::Client,
    pub accounts: Vec<AccountInfo>,
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl TestEmu {
    pub async fn start(accounts: usize) -> Self {
        Self::with_settings(
            accounts,
            Settings {
                allow_http_webhooks: true,
                push_retry_base_ms: 20,
                ..Settings::default()
            },
        )
        .await
    }

    pub async fn with_settings(accounts: usize, settings: Settings) -> Self {
        let handle = Emulator::start(EmulatorConfig {
            accounts,
            settings,
            ..EmulatorConfig::default()
        })
        .await
        .expect("emulator starts");
        let accounts = handle.accounts();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Self {
            handle,
            http,
            accounts,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.handle.base_url(), path)
    }

    pub fn email(&self, i: usize) -> String {
        self.accounts[i].email.clone()
    }

    /// An access token for account `i`, via the refresh-token grant.
    pub async fn token(&self, i: usize) -> String {
        self.token_for(&self.accounts[i].refresh_token).await
    }

    pub async fn token_for(&self, refresh_token: &str) -> String {
        let r = self
            .http
            .post(self.url("/token"))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
                ("client_id", self.handle.client_id()),
                ("client_secret", self.handle.client_secret()),
            ])
            .send()
            .await
            .expect("token request");
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.expect("json");
        v["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }

    /// An access token limited to `scopes`.
    pub async fn scoped_token(&self, i: usize, scopes: &[&str]) -> String {
        let v = self
            .control(
                Method::POST,
                &format!("/emulator/accounts/{}/tokens", self.email(i)),
                Some(json!({"scopes": scopes})),
            )
            .await;
        v.body["access_token"]
            .as_str()
            .expect("access token")
            .to_string()
    }

    pub async fn call(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> Resp {
        self.call_with(method, path, token, body, &[]).await
    }

    pub async fn call_with(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut req = self.http.request(method, self.url(path)).bearer_auth(token);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("request");
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn control(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let mut req = self.http.request(method, self.url(path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("control request");
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn settings(&self, patch: Value) {
        let r = self
            .control(Method::PUT, "/emulator/settings", Some(patch))
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
    }

    pub async fn fault(&self, rule: Value) -> u64 {
        let r = self
            .control(Method::POST, "/emulator/faults", Some(rule))
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        r.body["id"].as_u64().expect("fault id")
    }

    /// Inserts a timed one-hour event on the primary calendar and returns it.
    pub async fn insert(&self, token: &str, body: Value) -> Value {
        let r = self
            .call(
                Method::POST,
                "/calendar/v3/calendars/primary/events",
                token,
                Some(body),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.body
    }

    /// Lists all pages, returning (items, nextSyncToken).
    pub async fn list_all(&self, token: &str, query: &str) -> (Vec<Value>, String) {
        let mut items = Vec::new();
        let mut page: Option<String> = None;
        for _ in 0..1000 {
            let mut q = query.to_string();
            if let Some(p) = &page {
                q.push_str(&format!("&pageToken={p}"));
            }
            let r = self
                .call(
                    Method::GET,
                    &format!("/calendar/v3/calendars/primary/events?{q}"),
                    token,
                    None,
                )
                .await;
            assert_eq!(r.status, 200, "{}", r.text);
            items.extend(r.body["items"].as_array().cloned().unwrap_or_default());
            match (r.body.get("nextPageToken"), r.body.get("nextSyncToken")) {
                (Some(p), None) => page = Some(p.as_str().expect("string").to_string()),
                (None, Some(s)) => return (items, s.as_str().expect("string").to_string()),
                other => {
                    panic!("exactly one of nextPageToken/nextSyncToken expected, got {other:?}")
                }
            }
        }
        panic!("too many pages")
    }
}

pub fn timed(summary: &str, start: &str, end: &str) -> Value {
    json!({"summary": summary, "start": {"dateTime": start}, "end": {"dateTime": end}})
}

pub fn error_reason(r: &Resp) -> String {
    r.body["error"]["errors"][0]["reason"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// Polls `check` every 20 ms for at most 10 s.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..500 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// One notification as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: axum::http::HeaderMap,
    pub body_len: usize,
}

/// A local webhook receiver that answers with the statuses queued in `script` (then 200).
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    pub got: Arc<parking_lot::Mutex<Vec<Received>>>,
    pub script: Arc<parking_lot::Mutex<Vec<u16>>>,
}

impl Receiver {
    pub async fn start() -> Self {
        let got: Arc<parking_lot::Mutex<Vec<Received>>> = Arc::default();
        let script: Arc<parking_lot::Mutex<Vec<u16>>> = Arc::default();
        let (g, s) = (got.clone(), script.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let g = g.clone();
                    let s = s.clone();
                    async move {
                        g.lock().push(Received {
                            headers,
                            body_len: body.len(),
                        });
                        let code = {
                            let mut s = s.lock();
                            if s.is_empty() {
                                200
                            } else {
                                s.remove(0)
                            }
                        };
                        axum::http::StatusCode::from_u16(code).expect("status")
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url: format!("http://{addr}/hook"),
            got,
            script,
        }
    }

    pub fn states(&self) -> Vec<String> {
        self.got
            .lock()
            .iter()
            .map(|r| {
                r.headers
                    .get("x-goog-resource-state")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string()
            })
            .collect()
    }

    pub fn count(&self) -> usize {
        self.got.lock().len()
    }
}
