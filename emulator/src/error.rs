//! Google's error envelopes.
//!
//! Calendar API errors use `{"error": {"code", "message", "errors": [{domain, reason, message,
//! locationType?, location?}], "status"?}}` (docs/emulator.md); OAuth endpoints use
//! `{"error", "error_description"}` (§7.4). Handlers return [`ApiError`] / [`OAuthError`] and
//! never build these bodies by hand, so every reason and message lives in this one file.
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// A Calendar API error, rendered as Google's JSON envelope. Boxed so that `Result`s stay small.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{} {}: {}", .0.code, .0.reason, .0.message)]
pub struct ApiError(pub Box<ApiErrorDetail>);

/// The parts of a Calendar API error.
#[derive(Debug, Clone)]
pub struct ApiErrorDetail {
    pub code: u16,
    pub domain: &'static str,
    pub reason: &'static str,
    pub message: String,
    /// Top-level message when it differs from the item message (Google does that for scopes).
    pub top_message: Option<String>,
    pub location: Option<(&'static str, String)>,
    pub status: Option<&'static str>,
}

impl ApiError {
    pub fn new(
        code: u16,
        domain: &'static str,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self(Box::new(ApiErrorDetail {
            code,
            domain,
            reason,
            message: message.into(),
            top_message: None,
            location: None,
            status: None,
        }))
    }
    pub fn at(mut self, location_type: &'static str, location: impl Into<String>) -> Self {
        self.0.location = Some((location_type, location.into()));
        self
    }
    pub fn param(self, name: &str) -> Self {
        self.at("parameter", name.to_string())
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, "global", "invalid", message)
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "global", "badRequest", message)
    }
    pub fn required(message: impl Into<String>) -> Self {
        Self::new(400, "global", "required", message)
    }
    pub fn invalid_id() -> Self {
        Self::invalid("Invalid resource id value.")
    }
    pub fn time_range_empty(location: &str) -> Self {
        Self::new(
            400,
            "calendar",
            "timeRangeEmpty",
            "The specified time range is empty.",
        )
        .param(location)
    }
    pub fn event_type_restriction(message: impl Into<String>) -> Self {
        Self::new(400, "calendar", "eventTypeRestriction", message)
    }
    pub fn auth() -> Self {
        let mut e = Self::new(401, "global", "authError", "Invalid Credentials")
            .at("header", "Authorization");
        e.0.status = Some("UNAUTHENTICATED");
        e
    }
    pub fn insufficient_scope() -> Self {
        let mut e = Self::new(
            403,
            "global",
            "insufficientPermissions",
            "Insufficient Permission",
        );
        e.0.top_message = Some("Request had insufficient authentication scopes.".into());
        e.0.status = Some("PERMISSION_DENIED");
        e
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "global", "forbidden", message)
    }
    pub fn not_found() -> Self {
        Self::new(404, "global", "notFound", "Not Found")
    }
    pub fn duplicate() -> Self {
        Self::new(
            409,
            "global",
            "duplicate",
            "The requested identifier already exists.",
        )
    }
    pub fn deleted() -> Self {
        Self::new(410, "global", "deleted", "Resource has been deleted")
    }
    pub fn full_sync_required() -> Self {
        Self::new(
            410,
            "calendar",
            "fullSyncRequired",
            "Sync token is no longer valid, a full sync is required.",
        )
        .param("syncToken")
    }
    pub fn updated_min_too_long_ago() -> Self {
        Self::new(
            410,
            "calendar",
            "updatedMinTooLongAgo",
            "The requested minimum modification time lies too far in the past.",
        )
        .param("updatedMin")
    }
    pub fn condition_not_met() -> Self {
        Self::new(412, "global", "conditionNotMet", "Precondition Failed").at("header", "If-Match")
    }
    pub fn rate_limit(code: u16) -> Self {
        Self::new(
            code,
            "usageLimits",
            "rateLimitExceeded",
            "Rate Limit Exceeded",
        )
    }
    pub fn user_rate_limit() -> Self {
        Self::new(
            403,
            "usageLimits",
            "userRateLimitExceeded",
            "User Rate Limit Exceeded",
        )
    }
    pub fn quota_exceeded() -> Self {
        Self::new(
            403,
            "usageLimits",
            "quotaExceeded",
            "Calendar usage limits exceeded.",
        )
    }
    pub fn backend(code: u16) -> Self {
        Self::new(code, "global", "backendError", "Backend Error")
    }
    pub fn parse_error() -> Self {
        Self::new(400, "global", "parseError", "Parse Error")
    }

    /// The JSON body Google sends for this error.
    pub fn body(&self) -> serde_json::Value {
        let d = &self.0;
        let mut item = json!({"domain": d.domain, "reason": d.reason, "message": d.message});
        if let Some((lt, l)) = &d.location {
            item["locationType"] = json!(lt);
            item["location"] = json!(l);
        }
        let mut err = json!({
            "errors": [item],
            "code": d.code,
            "message": d.top_message.clone().unwrap_or_else(|| d.message.clone()),
        });
        if let Some(s) = d.status {
            err["status"] = json!(s);
        }
        json!({ "error": err })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, self.body().to_string()).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=UTF-8"),
        );
        if self.0.code == 401 {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"https://accounts.google.com/\""),
            );
        }
        resp
    }
}

/// An OAuth endpoint error: `{"error": code, "error_description": text}`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{error}: {description}")]
pub struct OAuthError {
    pub status: u16,
    pub error: &'static str,
    pub description: String,
}

impl OAuthError {
    pub fn new(status: u16, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            description: description.into(),
        }
    }
    pub fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new(400, "invalid_grant", description)
    }
    pub fn revoked() -> Self {
        Self::invalid_grant("Token has been expired or revoked.")
    }
    pub fn invalid_client() -> Self {
        Self::new(401, "invalid_client", "The OAuth client was not found.")
    }
    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(400, "invalid_request", description)
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let body = json!({"error": self.error, "error_description": self.description});
        let mut resp = (status, body.to_string()).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        resp
    }
}
