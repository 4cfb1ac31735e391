//! [`GoogleError`]: every way a Google call can fail, classified so callers can branch.
//!
//! Classification follows Google's error and usage-limits guides: the HTTP status first, then
//! `error.errors[0].reason` where one status means several things (403 is both "permission
//! denied", which is permanent, and "rate limited", which is not). A 410 means "full sync
//! required" only on a list that carried a sync token — the message text varies, so only the
//! status is trusted there. The client retries [`GoogleError::is_retryable`] errors itself;
//! everything else is returned for the caller (an actor) to decide.

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;

use super::types::ErrorEnvelope;

/// A classified failure of a Google API or OAuth call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GoogleError {
    /// 401: the access token was refused even after one refresh.
    #[error("Google refused the access token (401)")]
    Unauthorized,
    /// 410 on `events.list` with a sync token: drop the token and do a full sync.
    #[error("the sync token is no longer valid; a full sync is required (410)")]
    SyncTokenExpired,
    /// 410 on anything else (a second delete): the resource is already deleted.
    #[error("the resource has already been deleted (410)")]
    Gone,
    /// 404: the id never existed or the calendar is not accessible.
    #[error("not found (404)")]
    NotFound,
    /// 409: an insert with an id that exists (deleted ids stay reserved).
    #[error("the identifier already exists (409)")]
    Conflict,
    /// 412: the `If-Match` etag is stale.
    #[error("the resource changed since it was read (412)")]
    PreconditionFailed,
    /// 429, or 403 `rateLimitExceeded`/`userRateLimitExceeded`: back off and retry.
    #[error("rate limited by Google")]
    RateLimited { retry_after: Option<Duration> },
    /// 403 `quotaExceeded`: Calendar usage limits; retrying soon does not help.
    #[error("Calendar usage limits exceeded (403 quotaExceeded)")]
    QuotaExceeded,
    /// 5xx, 408, a timeout or a connection failure.
    #[error("transient failure: {0}")]
    Transient(String),
    /// Any other refusal (400, permission 403, …): the request itself must change.
    #[error("Google refused the request: {status} {reason}: {message}")]
    Permanent {
        status: u16,
        reason: String,
        message: String,
    },
    /// The refresh token was revoked or expired: the account needs a new consent.
    #[error("the refresh token was revoked or has expired (invalid_grant)")]
    InvalidGrant,
    /// A response that does not parse as what the method returns.
    #[error("malformed response from Google: {0}")]
    Malformed(String),
    /// The client cannot be built from the settings (e.g. `GOOGLE_CLIENT_ID` unset).
    #[error("Google client misconfigured: {0}")]
    Config(String),
}

impl GoogleError {
    /// Whether the client's own short backoff loop may retry this error.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::RateLimited { .. } | Self::Transient(_))
    }

    /// The wait Google asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }

    /// A short label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::SyncTokenExpired => "sync_token_expired",
            Self::Gone => "gone",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::PreconditionFailed => "precondition_failed",
            Self::RateLimited { .. } => "rate_limited",
            Self::QuotaExceeded => "quota_exceeded",
            Self::Transient(_) => "transient",
            Self::Permanent { .. } => "permanent",
            Self::InvalidGrant => "invalid_grant",
            Self::Malformed(_) => "malformed",
            Self::Config(_) => "config",
        }
    }

    pub(crate) fn from_transport(err: reqwest::Error) -> Self {
        // Without the URL (it carries sync and page tokens); headers are never displayed.
        let err = err.without_url();
        let what = if err.is_timeout() {
            "timed out"
        } else if err.is_connect() {
            "connection failed"
        } else if err.is_body() || err.is_decode() {
            "reading the body failed"
        } else {
            "request failed"
        };
        Self::Transient(format!("{what}: {err}"))
    }
}

/// Which call a response answers, where that changes what a status means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// `events.list` with a `syncToken`: a 410 means the token expired.
    SyncList,
    /// Everything else.
    Other,
}

/// Turns an unsuccessful response into a [`GoogleError`].
///
/// `retry_after` is the already-parsed `Retry-After` header; `body` the raw error body,
/// which may be Google's envelope, something else, or nothing.
pub fn classify(
    status: StatusCode,
    body: &[u8],
    retry_after: Option<Duration>,
    kind: CallKind,
) -> GoogleError {
    let envelope: Option<ErrorEnvelope> = serde_json::from_slice(body).ok();
    let reason = envelope
        .as_ref()
        .and_then(ErrorEnvelope::reason)
        .unwrap_or_default()
        .to_owned();
    let message = envelope
        .as_ref()
        .map(|e| e.error.message.clone())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_owned());
    match status.as_u16() {
        401 => GoogleError::Unauthorized,
        404 => GoogleError::NotFound,
        409 => GoogleError::Conflict,
        410 if kind == CallKind::SyncList => GoogleError::SyncTokenExpired,
        410 => GoogleError::Gone,
        412 => GoogleError::PreconditionFailed,
        429 => GoogleError::RateLimited { retry_after },
        403 if matches!(
            reason.as_str(),
            "rateLimitExceeded" | "userRateLimitExceeded"
        ) =>
        {
            GoogleError::RateLimited { retry_after }
        }
        403 if reason == "quotaExceeded" => GoogleError::QuotaExceeded,
        408 => GoogleError::Transient(format!("{} {message}", status.as_u16())),
        code if status.is_server_error() => {
            GoogleError::Transient(format!("{code} {reason} {message}").trim().to_owned())
        }
        code => GoogleError::Permanent {
            status: code,
            reason,
            message,
        },
    }
}

/// Reads a `Retry-After` value: delay-seconds or an HTTP date (RFC 9110 §10.2.3).
///
/// A date in the past means "now" (zero); anything unreadable is ignored.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let at = SystemTime::from(at.with_timezone(&chrono::Utc));
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(code: u16, reason: &str) -> Vec<u8> {
        serde_json::json!({"error": {"code": code, "message": "msg",
            "errors": [{"domain": "global", "reason": reason, "message": "msg"}]}})
        .to_string()
        .into_bytes()
    }

    fn classify_as(code: u16, reason: &str, kind: CallKind) -> GoogleError {
        classify(
            StatusCode::from_u16(code).unwrap(),
            &body(code, reason),
            None,
            kind,
        )
    }

    #[test]
    fn every_documented_status_and_reason_is_classified_as_the_reference_says() {
        use CallKind::*;
        let rate_limited = GoogleError::RateLimited { retry_after: None };
        let table: Vec<(u16, &str, CallKind, GoogleError)> = vec![
            (400, "invalid", Other, permanent(400, "invalid")),
            (
                400,
                "timeRangeEmpty",
                Other,
                permanent(400, "timeRangeEmpty"),
            ),
            (401, "authError", Other, GoogleError::Unauthorized),
            (403, "forbidden", Other, permanent(403, "forbidden")),
            (
                403,
                "requiredAccessLevel",
                Other,
                permanent(403, "requiredAccessLevel"),
            ),
            (
                403,
                "insufficientPermissions",
                Other,
                permanent(403, "insufficientPermissions"),
            ),
            (
                403,
                "forbiddenForNonOrganizer",
                Other,
                permanent(403, "forbiddenForNonOrganizer"),
            ),
            (403, "rateLimitExceeded", Other, rate_limited.clone()),
            (403, "userRateLimitExceeded", Other, rate_limited.clone()),
            (403, "quotaExceeded", Other, GoogleError::QuotaExceeded),
            (404, "notFound", Other, GoogleError::NotFound),
            (409, "duplicate", Other, GoogleError::Conflict),
            (409, "conflict", Other, GoogleError::Conflict),
            (410, "deleted", Other, GoogleError::Gone),
            (
                410,
                "fullSyncRequired",
                SyncList,
                GoogleError::SyncTokenExpired,
            ),
            (
                410,
                "somethingElse",
                SyncList,
                GoogleError::SyncTokenExpired,
            ),
            (
                412,
                "conditionNotMet",
                Other,
                GoogleError::PreconditionFailed,
            ),
            (429, "rateLimitExceeded", Other, rate_limited.clone()),
            (429, "", Other, rate_limited),
        ];
        for (code, reason, kind, expected) in table {
            assert_eq!(classify_as(code, reason, kind), expected, "{code} {reason}");
        }
    }

    fn permanent(status: u16, reason: &str) -> GoogleError {
        GoogleError::Permanent {
            status,
            reason: reason.into(),
            message: "msg".into(),
        }
    }

    #[test]
    fn server_errors_are_transient_and_retryable() {
        for code in [500, 502, 503, 504] {
            let err = classify_as(code, "backendError", CallKind::Other);
            assert!(matches!(err, GoogleError::Transient(_)), "{code}");
            assert!(err.is_retryable());
        }
    }

    #[test]
    fn only_rate_limits_and_transient_failures_are_retryable() {
        assert!(GoogleError::RateLimited { retry_after: None }.is_retryable());
        for err in [
            GoogleError::QuotaExceeded,
            GoogleError::Unauthorized,
            GoogleError::InvalidGrant,
            GoogleError::NotFound,
            GoogleError::Conflict,
            GoogleError::Gone,
            GoogleError::SyncTokenExpired,
            permanent(403, "forbidden"),
        ] {
            assert!(!err.is_retryable(), "{err:?}");
        }
    }

    #[test]
    fn a_body_that_is_not_googles_envelope_still_classifies_by_status() {
        let err = classify(
            StatusCode::FORBIDDEN,
            b"<html>nope</html>",
            None,
            CallKind::Other,
        );
        assert_eq!(
            err,
            GoogleError::Permanent {
                status: 403,
                reason: String::new(),
                message: "Forbidden".into()
            }
        );
        let err = classify(StatusCode::BAD_GATEWAY, b"", None, CallKind::Other);
        assert!(err.is_retryable());
    }

    #[test]
    fn the_retry_after_delay_travels_with_a_rate_limit() {
        let err = classify(
            StatusCode::TOO_MANY_REQUESTS,
            &body(429, "rateLimitExceeded"),
            Some(Duration::from_secs(7)),
            CallKind::Other,
        );
        assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    }

    #[test]
    fn retry_after_is_read_as_seconds() {
        let now = SystemTime::now();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
    }

    #[test]
    fn retry_after_is_read_as_an_http_date_relative_to_now() {
        let now =
            SystemTime::from(chrono::DateTime::parse_from_rfc3339("2013-11-19T01:13:00Z").unwrap());
        assert_eq!(
            parse_retry_after("Tue, 19 Nov 2013 01:13:52 GMT", now),
            Some(Duration::from_secs(52))
        );
        assert_eq!(
            parse_retry_after("Tue, 19 Nov 2013 01:12:00 GMT", now),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn an_unreadable_retry_after_is_ignored() {
        let now = SystemTime::now();
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }
}
