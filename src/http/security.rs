//! The security headers of every HTML page the service serves (`/admin/*` and `/auth/*`):
//! no framing, no referrer leaks, nothing cached, scripts and styles only from here.
//!
//! Applied as a `map_response` layer by the admin and OAuth routers; a handler that sets one
//! of these headers itself keeps its own value.

use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;

/// The headers and their values.
pub(crate) const HEADERS: [(&str, &str); 5] = [
    (
        "content-security-policy",
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("x-content-type-options", "nosniff"),
    ("cache-control", "no-store"),
];

/// Adds [`HEADERS`] to `response` where it does not set them itself.
pub(crate) async fn headers(mut response: Response) -> Response {
    add(response.headers_mut());
    response
}

fn add(headers: &mut HeaderMap) {
    for (name, value) in HEADERS {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    }
}
