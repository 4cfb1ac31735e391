//! `POST /batch/calendar/v3`: multipart/mixed in, ordered multipart/mixed out.
//!
//! Each part is a complete HTTP request (path only); it is dispatched through the same router
//! as a direct call, so it is authorized, rate-limited, fault-injected and counted on its own.
//! The outer `Authorization` header applies to parts that carry none.
use crate::error::ApiError;
use crate::state::Shared;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use std::sync::Arc;
use tower::ServiceExt;

/// Most parts accepted in one batch (Google's current guide).
pub const MAX_PARTS: usize = 1000;

struct Part {
    content_id: Option<String>,
    method: Method,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn split_head(text: &str) -> (&str, &str) {
    if let Some(i) = text.find("\r\n\r\n") {
        (&text[..i], &text[i + 4..])
    } else if let Some(i) = text.find("\n\n") {
        (&text[..i], &text[i + 2..])
    } else {
        (text, "")
    }
}

fn header_lines(head: &str) -> Vec<(String, String)> {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn parse_parts(body: &str, boundary: &str) -> Option<Vec<Part>> {
    let delim = format!("--{boundary}");
    let mut parts = Vec::new();
    for chunk in body.split(&delim).skip(1) {
        if chunk.starts_with("--") {
            break;
        }
        let chunk = chunk.trim_start_matches(['\r', '\n']);
        let (outer_head, inner) = split_head(chunk);
        let content_id = header_lines(outer_head)
            .into_iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-id"))
            .map(|(_, v)| v.trim_start_matches('<').trim_end_matches('>').to_string());
        let (inner_head, inner_body) = split_head(inner);
        let mut lines = inner_head.lines();
        let request_line = lines.next()?.trim();
        let mut it = request_line.split_whitespace();
        let method = Method::from_bytes(it.next()?.as_bytes()).ok()?;
        let mut path = it.next()?.to_string();
        if let Some(i) = path.find("://") {
            let rest = &path[i + 3..];
            path = rest.find('/').map(|j| rest[j..].to_string())?;
        }
        let headers = header_lines(&lines.collect::<Vec<_>>().join("\n"));
        let body = inner_body
            .trim_end_matches(['\r', '\n'])
            .as_bytes()
            .to_vec();
        parts.push(Part {
            content_id,
            method,
            path,
            headers,
            body,
        });
    }
    Some(parts)
}

pub async fn batch(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.to_ascii_lowercase().starts_with("multipart/mixed") {
        return Err(ApiError::bad_request(
            "Batch requests must use Content-Type multipart/mixed.",
        ));
    }
    let boundary = ct
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("boundary="))
        .next()
        .map(|b| b.trim_matches('"').to_string())
        .ok_or_else(|| ApiError::bad_request("Missing multipart boundary."))?;
    let text = String::from_utf8_lossy(&body);
    let parts = parse_parts(&text, &boundary)
        .ok_or_else(|| ApiError::bad_request("Malformed batch request."))?;
    if parts.is_empty() {
        return Err(ApiError::bad_request("Batch request contains no parts."));
    }
    if parts.len() > MAX_PARTS {
        return Err(ApiError::bad_request(format!(
            "A batch may contain at most {MAX_PARTS} calls."
        )));
    }
    let router = shared
        .router
        .read()
        .clone()
        .ok_or_else(|| ApiError::backend(503))?;
    let outer_auth = headers.get(header::AUTHORIZATION).cloned();
    let futures = parts.into_iter().map(|part| {
        let router = router.clone();
        let outer_auth = outer_auth.clone();
        async move {
            let resp = if part.path.starts_with("/batch") {
                ApiError::bad_request("Nested batch requests are not allowed.").into_response()
            } else {
                let mut req = Request::builder().method(part.method).uri(&part.path);
                let mut has_auth = false;
                for (k, v) in &part.headers {
                    if let (Ok(k), Ok(v)) = (
                        HeaderName::from_bytes(k.as_bytes()),
                        HeaderValue::from_str(v),
                    ) {
                        has_auth |= k == header::AUTHORIZATION;
                        req = req.header(k, v);
                    }
                }
                if let (false, Some(a)) = (has_auth, outer_auth) {
                    req = req.header(header::AUTHORIZATION, a);
                }
                match req.body(Body::from(part.body)) {
                    Ok(req) => match router.oneshot(req).await {
                        Ok(r) => r,
                        Err(never) => match never {},
                    },
                    Err(_) => ApiError::bad_request("Malformed batch part.").into_response(),
                }
            };
            (part.content_id, resp)
        }
    });
    let results = futures::future::join_all(futures).await;
    let out_boundary = format!("batch_{}", crate::state::random_token(20));
    let mut out = String::new();
    for (content_id, resp) in results {
        let (parts, body) = resp.into_parts();
        let bytes = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        out.push_str(&format!(
            "--{out_boundary}\r\nContent-Type: application/http\r\n"
        ));
        if let Some(id) = content_id {
            out.push_str(&format!("Content-ID: <response-{id}>\r\n"));
        }
        out.push_str("\r\n");
        let reason = parts.status.canonical_reason().unwrap_or("");
        out.push_str(&format!(
            "HTTP/1.1 {} {}\r\n",
            parts.status.as_u16(),
            reason
        ));
        for (k, v) in parts.headers.iter() {
            if let Ok(v) = v.to_str() {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
        }
        out.push_str(&format!("Content-Length: {}\r\n\r\n", bytes.len()));
        out.push_str(&String::from_utf8_lossy(&bytes));
        out.push_str("\r\n");
    }
    out.push_str(&format!("--{out_boundary}--\r\n"));
    let mut resp = (StatusCode::OK, out).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("multipart/mixed; boundary={out_boundary}")) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    Ok(resp)
}
