//! Fault injection, the per-user rate limiter and request counters.
//!
//! Tests add [`FaultRule`]s through `POST /emulator/faults`; every Calendar API request (and
//! every push delivery, for the notification kinds) asks [`Faults::pick`] whether a rule fires.
//! A rule matches globally or for one account, for all or some methods, fires with a
//! probability and/or for a number of times, and disappears when its count is used up.
use crate::error::ApiError;
use parking_lot::Mutex;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};

/// What a fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FaultKind {
    /// 403 (default) or 429 `usageLimits/rateLimitExceeded`.
    RateLimitExceeded,
    /// 403 `usageLimits/userRateLimitExceeded`.
    UserRateLimitExceeded,
    /// 403 `usageLimits/quotaExceeded`.
    QuotaExceeded,
    /// 500 (default) or 503 `global/backendError`.
    BackendError,
    /// 404 `notFound` (Google's transient read-after-write miss).
    NotFound,
    /// Adds `latencyMs` plus up to `jitterMs` before answering.
    Latency,
    /// A push notification is silently not sent.
    DropNotification,
    /// A push notification is sent twice.
    DuplicateNotification,
    /// A push notification is sent `delayMs` late.
    DelayNotification,
}

impl FaultKind {
    pub fn is_notification(self) -> bool {
        matches!(
            self,
            Self::DropNotification | Self::DuplicateNotification | Self::DelayNotification
        )
    }
}

/// One fault-injection rule as posted to the control API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultRule {
    #[serde(default)]
    pub id: u64,
    pub kind: FaultKind,
    /// Only requests of this account (or deliveries of its channels); all when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Only these methods (`events.insert`, `events.list`, …); all when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
    /// Chance that a matching request is hit (default 1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
    /// Number of hits before the rule removes itself; unlimited when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// HTTP status for kinds with a choice (403/429, 500/503).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
}

impl FaultRule {
    /// The error this rule produces, if it is an error kind.
    pub fn error(&self) -> Option<ApiError> {
        Some(match self.kind {
            FaultKind::RateLimitExceeded => {
                ApiError::rate_limit(if self.status == Some(429) { 429 } else { 403 })
            }
            FaultKind::UserRateLimitExceeded => ApiError::user_rate_limit(),
            FaultKind::QuotaExceeded => ApiError::quota_exceeded(),
            FaultKind::BackendError => {
                ApiError::backend(if self.status == Some(503) { 503 } else { 500 })
            }
            FaultKind::NotFound => ApiError::not_found(),
            _ => return None,
        })
    }

    /// Latency this rule adds.
    pub fn latency(&self) -> std::time::Duration {
        let jitter = match self.jitter_ms {
            Some(j) if j > 0 => rand::thread_rng().gen_range(0..=j),
            _ => 0,
        };
        std::time::Duration::from_millis(self.latency_ms.unwrap_or(0) + jitter)
    }
}

/// The rule set.
#[derive(Debug, Default)]
pub struct Faults {
    rules: Mutex<Vec<FaultRule>>,
    next_id: AtomicU64,
}

impl Faults {
    pub fn add(&self, mut rule: FaultRule) -> FaultRule {
        rule.id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        self.rules.lock().push(rule.clone());
        rule
    }
    pub fn list(&self) -> Vec<FaultRule> {
        self.rules.lock().clone()
    }
    pub fn remove(&self, id: u64) -> bool {
        let mut rules = self.rules.lock();
        let before = rules.len();
        rules.retain(|r| r.id != id);
        rules.len() != before
    }
    pub fn clear(&self) {
        self.rules.lock().clear();
    }
    pub fn is_empty(&self) -> bool {
        self.rules.lock().is_empty()
    }

    /// Finds the first rule among `kinds` that matches and fires, consuming one of its count.
    pub fn pick(
        &self,
        account: Option<&str>,
        method: &str,
        kinds: &[FaultKind],
    ) -> Option<FaultRule> {
        let mut rules = self.rules.lock();
        if rules.is_empty() {
            return None;
        }
        let mut rng = rand::thread_rng();
        let mut hit = None;
        for (i, r) in rules.iter_mut().enumerate() {
            if !kinds.contains(&r.kind) {
                continue;
            }
            if let Some(a) = &r.account {
                if Some(a.as_str()) != account {
                    continue;
                }
            }
            if let Some(ms) = &r.methods {
                if !ms.iter().any(|m| m == method) {
                    continue;
                }
            }
            if let Some(p) = r.probability {
                if rng.gen::<f64>() >= p {
                    continue;
                }
            }
            if let Some(c) = r.count.as_mut() {
                *c = c.saturating_sub(1);
            }
            hit = Some((i, r.clone()));
            break;
        }
        let (i, rule) = hit?;
        if rule.count == Some(0) {
            rules.remove(i);
        }
        Some(rule)
    }
}

/// Request counters by method and status, globally and per account.
#[derive(Debug, Default)]
pub struct Counters {
    inner: Mutex<CounterData>,
}

#[derive(Debug, Default)]
struct CounterData {
    total: HashMap<(String, u16), u64>,
    by_account: HashMap<String, HashMap<(String, u16), u64>>,
}

/// Counter snapshot as served by `GET /emulator/counters`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CounterSnapshot {
    pub total: u64,
    /// method → status → count.
    pub by_method: BTreeMap<String, BTreeMap<String, u64>>,
}

impl Counters {
    pub fn record(&self, account: Option<&str>, method: &str, status: u16) {
        let mut d = self.inner.lock();
        *d.total.entry((method.to_string(), status)).or_default() += 1;
        if let Some(a) = account {
            *d.by_account
                .entry(a.to_string())
                .or_default()
                .entry((method.to_string(), status))
                .or_default() += 1;
        }
    }
    pub fn snapshot(&self, account: Option<&str>) -> CounterSnapshot {
        let d = self.inner.lock();
        let empty = HashMap::new();
        let map = match account {
            Some(a) => d.by_account.get(a).unwrap_or(&empty),
            None => &d.total,
        };
        let mut snap = CounterSnapshot::default();
        for ((m, s), n) in map {
            snap.total += n;
            *snap
                .by_method
                .entry(m.clone())
                .or_default()
                .entry(s.to_string())
                .or_default() += n;
        }
        snap
    }
    pub fn reset(&self) {
        let mut d = self.inner.lock();
        d.total.clear();
        d.by_account.clear();
    }
}
