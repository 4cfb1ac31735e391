//! `POST /emulator/accounts/bulk`: many accounts in one request, for benchmarks and tests
//! that connect thousands of calendars (one `POST /emulator/accounts` each would cost a
//! round trip per account). Documented in `docs/emulator.md` with the rest of the control API.
use crate::state::{AccountInfo, Shared};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// The most accounts one request may create.
pub const MAX_BULK_ACCOUNTS: usize = 100_000;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkAccounts {
    /// How many accounts to create (1 to [`MAX_BULK_ACCOUNTS`]).
    pub count: usize,
    /// E-mails are `{prefix}{n}@example.test` with n from 1 (zero-padded to 5 digits);
    /// without a prefix they follow the emulator's own `userNN@example.test` numbering.
    pub prefix: Option<String>,
    pub time_zone: Option<String>,
}

/// `POST /emulator/accounts/bulk` `{count, prefix?, timeZone?}` → 201 `{accounts: [{email,
/// calendar_id, refresh_token}]}`; an existing e-mail gets a new refresh token, like
/// `POST /emulator/accounts`.
pub async fn create_accounts(
    State(shared): State<Arc<Shared>>,
    Json(req): Json<BulkAccounts>,
) -> Response {
    if req.count == 0 || req.count > MAX_BULK_ACCOUNTS {
        return bad_request(format!("count must be 1 to {MAX_BULK_ACCOUNTS}"));
    }
    if let Some(tz) = &req.time_zone {
        if tz.parse::<chrono_tz::Tz>().is_err() {
            return bad_request(format!("unknown time zone {tz}"));
        }
    }
    if let Some(prefix) = &req.prefix {
        let valid = !prefix.is_empty()
            && prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_');
        if !valid {
            return bad_request("prefix must be letters, digits, '.', '-' or '_'".into());
        }
    }
    let accounts: Vec<AccountInfo> = (1..=req.count)
        .map(|n| {
            let email = req
                .prefix
                .as_ref()
                .map(|p| format!("{p}{n:05}@example.test"));
            shared.create_account(email, req.time_zone.clone(), None)
        })
        .collect();
    (StatusCode::CREATED, Json(json!({ "accounts": accounts }))).into_response()
}

fn bad_request(msg: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": msg}))).into_response()
}
