//! The gate every Calendar API request passes: latency, bearer token, scope, per-user rate
//! limit and injected faults, in the order Google would apply them.
use crate::error::ApiError;
use crate::faults::FaultKind;
use crate::state::{Calendar, Shared};
use axum::http::HeaderMap;
use std::sync::Arc;

const SCOPE_PREFIX: &str = "https://www.googleapis.com/auth/";

/// Scope sets per method family (the discovery document, `emulator/data/calendar.v3.json`).
pub mod scopes {
    pub const EVENTS_READ: &[&str] = &[
        "calendar",
        "calendar.app.created",
        "calendar.events",
        "calendar.events.freebusy",
        "calendar.events.owned",
        "calendar.events.owned.readonly",
        "calendar.events.public.readonly",
        "calendar.events.readonly",
        "calendar.readonly",
    ];
    pub const EVENTS_WRITE: &[&str] = &[
        "calendar",
        "calendar.app.created",
        "calendar.events",
        "calendar.events.owned",
    ];
    pub const CALENDAR_LIST: &[&str] = &[
        "calendar",
        "calendar.app.created",
        "calendar.calendarlist",
        "calendar.calendarlist.readonly",
        "calendar.readonly",
    ];
    pub const CALENDARS_GET: &[&str] = &[
        "calendar",
        "calendar.app.created",
        "calendar.calendars",
        "calendar.calendars.readonly",
        "calendar.readonly",
    ];
    pub const SETTINGS: &[&str] = &[
        "calendar",
        "calendar.readonly",
        "calendar.settings",
        "calendar.settings.readonly",
    ];
    /// `channels.stop` accepts any Calendar scope.
    pub const ANY: &[&str] = &[];
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub email: String,
    pub client_id: String,
    pub scopes: Vec<String>,
}

/// Extracts the bearer token from the header (or the legacy `oauth_token` query parameter).
pub fn bearer(headers: &HeaderMap, query_token: Option<&str>) -> Option<String> {
    if let Some(v) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, token) = v.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_string());
    }
    query_token.map(str::to_string)
}

/// Checks the token and scope, applies latency, the rate limiter and faults.
pub async fn authorize(
    shared: &Shared,
    headers: &HeaderMap,
    method: &'static str,
    accepted: &[&str],
) -> Result<Caller, ApiError> {
    let latency = shared.settings.read().latency_ms;
    if latency > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(latency)).await;
    }
    let token = bearer(headers, None).ok_or_else(ApiError::auth)?;
    let now = shared.clock.now_ms();
    let grant = shared
        .access_tokens
        .read()
        .get(&token)
        .cloned()
        .ok_or_else(ApiError::auth)?;
    if grant.expires_at_ms <= now {
        return Err(ApiError::auth());
    }
    if let Some(rt) = &grant.refresh_token {
        if shared
            .refresh_tokens
            .read()
            .get(rt)
            .is_none_or(|g| g.revoked)
        {
            return Err(ApiError::auth());
        }
    }
    let allowed = grant.scopes.iter().any(|s| {
        let short = s.strip_prefix(SCOPE_PREFIX).unwrap_or("");
        if accepted.is_empty() {
            short.starts_with("calendar")
        } else {
            accepted.contains(&short)
        }
    });
    if !allowed {
        return Err(ApiError::insufficient_scope());
    }
    if !shared.faults.is_empty() {
        if let Some(rule) = shared
            .faults
            .pick(Some(&grant.email), method, &[FaultKind::Latency])
        {
            tokio::time::sleep(rule.latency()).await;
        }
    }
    rate_limit(shared, &grant.email, now)?;
    if !shared.faults.is_empty() {
        let kinds = [
            FaultKind::RateLimitExceeded,
            FaultKind::UserRateLimitExceeded,
            FaultKind::QuotaExceeded,
            FaultKind::BackendError,
            FaultKind::NotFound,
        ];
        if let Some(err) = shared
            .faults
            .pick(Some(&grant.email), method, &kinds)
            .and_then(|r| r.error())
        {
            return Err(err);
        }
    }
    Ok(Caller {
        email: grant.email,
        client_id: grant.client_id,
        scopes: grant.scopes,
    })
}

/// The per-user sliding window (600 requests per 60 s by default): a request over the limit is
/// refused with 403 `userRateLimitExceeded` and does not count.
fn rate_limit(shared: &Shared, email: &str, now_ms: i64) -> Result<(), ApiError> {
    let Some(limit) = shared.settings.read().rate_limit_per_minute else {
        return Ok(());
    };
    let Some(account) = shared.account(email) else {
        return Ok(());
    };
    let mut window = account.window.lock();
    while window.front().is_some_and(|t| *t <= now_ms - 60_000) {
        window.pop_front();
    }
    if window.len() >= limit as usize {
        return Err(ApiError::user_rate_limit());
    }
    window.push_back(now_ms);
    Ok(())
}

/// Resolves a path calendar id (`primary` or an id) to a calendar the caller owns; anything
/// else is 404 `notFound`, as Google answers for calendars you cannot see.
pub fn resolve_calendar(
    shared: &Shared,
    caller: &Caller,
    calendar_id: &str,
) -> Result<Arc<Calendar>, ApiError> {
    let id = if calendar_id == "primary" {
        caller.email.as_str()
    } else {
        calendar_id
    };
    let cal = shared.calendar(id).ok_or_else(ApiError::not_found)?;
    if cal.owner != caller.email {
        return Err(ApiError::not_found());
    }
    Ok(cal)
}
