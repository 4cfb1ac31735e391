//! Browser onboarding through Google's consent screen: `GET /auth/google/start` and
//! `GET /auth/callback`.
//!
//! Role: an operator signed in to the dashboard asks to connect (or reconnect) a calendar
//! under an alias; `start` sends the browser to Google with PKCE (S256), a random
//! single-use `state`, `access_type=offline`, `prompt=consent` and the service's scopes
//! ([`crate::google::SCOPES`]). The `state`, the PKCE verifier and the alias stay here, in
//! memory, for [`CONSENT_TTL`]. `callback` takes them back exactly once, exchanges the code,
//! checks that every needed scope was granted, stores the account through
//! [`crate::ops::connect_account`] (the refresh token is encrypted at rest; a reconnect of a
//! `needs_reauth` account replaces its token) and starts its actors through `Control`.
//!
//! The callback needs no session cookie: the browser arrives from Google, a cross-site
//! navigation on which SameSite=Strict cookies are not sent. The single-use `state`, created
//! for a signed-in operator, is what authorizes it. Pending consents live in this process
//! only: with several replicas, the one that started a consent must receive its callback
//! (see docs/operations.md).
//!
//! Both pages carry the dashboard's security headers ([`super::security`]). A code Google
//! refuses to exchange is the browser's request gone wrong (400, "start again"); only
//! Google failing to answer is a 502.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Extension, Router};
use parking_lot::Mutex;
use secrecy::SecretString;
use serde::Deserialize;

use super::admin::{self, pages_message as message, Admin, Runtime};
use super::AppState;
use crate::google::auth::{SCOPE_CALENDAR_EVENTS, SCOPE_CALENDAR_LIST_READONLY};
use crate::google::{GoogleError, GrantedTokens};
use crate::ops::{self, ConnectRequest, OpsError, MAX_ALIAS_LEN};

/// How long a consent may take before its `state` is refused.
pub(crate) const CONSENT_TTL: Duration = Duration::from_secs(600);
/// Consents kept waiting at most; older ones are dropped first.
const MAX_PENDING: usize = 500;

/// What `start` remembers for its callback.
struct Pending {
    verifier: SecretString,
    alias: String,
    created: Instant,
}

/// Consents waiting for their callback, by `state`.
#[derive(Default)]
pub(crate) struct PendingConsents {
    table: Mutex<HashMap<String, Pending>>,
}

impl PendingConsents {
    fn insert(&self, state: String, pending: Pending) {
        let mut table = self.table.lock();
        table.retain(|_, p| p.created.elapsed() < CONSENT_TTL);
        while table.len() >= MAX_PENDING {
            let Some(oldest) = table
                .iter()
                .min_by_key(|(_, p)| p.created)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            table.remove(&oldest);
        }
        table.insert(state, pending);
    }

    /// Takes the consent of `state` out (so it can never be used twice), if it is live.
    fn take(&self, state: &str) -> Option<Pending> {
        let pending = self.table.lock().remove(state)?;
        (pending.created.elapsed() < CONSENT_TTL).then_some(pending)
    }
}

pub(crate) fn routes(runtime: Arc<Runtime>) -> Router<AppState> {
    Router::new()
        .route("/auth/google/start", get(start))
        .route("/auth/callback", get(callback))
        .layer(axum::middleware::map_response(super::security::headers))
        .layer(Extension(runtime))
}

#[derive(Deserialize)]
struct StartQuery {
    #[serde(default)]
    alias: String,
    #[serde(default)]
    login_hint: Option<String>,
}

/// Why an alias or login hint from the form is refused, in words for the page.
pub(crate) fn check_alias(alias: &str) -> Result<String, String> {
    let alias = alias.trim();
    if alias.is_empty() {
        return Err("Give the calendar a name (for example \"Calendar 06\").".into());
    }
    if alias.chars().count() > MAX_ALIAS_LEN {
        return Err(format!(
            "The name is longer than {MAX_ALIAS_LEN} characters."
        ));
    }
    if alias.chars().any(char::is_control) {
        return Err("The name contains control characters.".into());
    }
    Ok(alias.to_owned())
}

fn check_hint(hint: Option<&str>) -> Result<Option<String>, String> {
    match hint.map(str::trim).filter(|h| !h.is_empty()) {
        None => Ok(None),
        Some(h) if h.len() <= 254 && !h.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            Ok(Some(h.to_owned()))
        }
        Some(_) => Err("The e-mail address is not valid.".into()),
    }
}

/// `GET /auth/google/start?alias=..&login_hint=..` (admin session required).
async fn start(
    admin: Admin,
    State(state): State<AppState>,
    Query(q): Query<StartQuery>,
) -> Response {
    let back = Some(("/admin/connect", "Back to the form"));
    let alias = match check_alias(&q.alias) {
        Ok(a) => a,
        Err(problem) => return message(StatusCode::BAD_REQUEST, "Cannot connect", &problem, back),
    };
    let hint = match check_hint(q.login_hint.as_deref()) {
        Ok(h) => h,
        Err(problem) => return message(StatusCode::BAD_REQUEST, "Cannot connect", &problem, back),
    };
    let consent = match admin::control(&state)
        .services()
        .oauth
        .consent_request(hint.as_deref())
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot build a consent request");
            return message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Google sign-in is not configured",
                &format!("{e}. Set GOOGLE_CLIENT_ID, GOOGLE_CLIENT_SECRET and GOOGLE_REDIRECT_URI (see docs/operations.md)."),
                back,
            );
        }
    };
    admin.runtime.consents.insert(
        consent.state,
        Pending {
            verifier: consent.pkce_verifier,
            alias: alias.clone(),
            created: Instant::now(),
        },
    );
    tracing::info!(%alias, "consent started");
    Redirect::to(consent.url.as_str()).into_response()
}

#[derive(Deserialize)]
struct CallbackQuery {
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

/// The scopes the service cannot work without that `granted` lacks. The broad `calendar`
/// scope covers both.
pub(crate) fn missing_scopes(granted: &GrantedTokens) -> Vec<&'static str> {
    const FULL: &str = "https://www.googleapis.com/auth/calendar";
    if granted.has_scope(FULL) {
        return Vec::new();
    }
    [SCOPE_CALENDAR_EVENTS, SCOPE_CALENDAR_LIST_READONLY]
        .into_iter()
        .filter(|s| !granted.has_scope(s))
        .collect()
}

fn scope_words(scope: &str) -> &'static str {
    match scope {
        SCOPE_CALENDAR_EVENTS => "View and edit events on all your calendars",
        SCOPE_CALENDAR_LIST_READONLY => "See the list of Google calendars you're subscribed to",
        _ => "another permission",
    }
}

/// `GET /auth/callback?state=..&code=..` or `?state=..&error=access_denied`.
async fn callback(
    State(state): State<AppState>,
    Extension(rt): Extension<Arc<Runtime>>,
    Query(q): Query<CallbackQuery>,
) -> Response {
    if !rt.enabled {
        return admin::disabled();
    }
    let again = Some(("/admin/connect", "Start again"));
    let Some(pending) = q.state.as_deref().and_then(|s| rt.consents.take(s)) else {
        tracing::warn!("OAuth callback with an unknown, used or expired state");
        return message(
            StatusCode::BAD_REQUEST,
            "This sign-in link is not valid",
            "It was already used, is older than 10 minutes, or did not start on this dashboard. Nothing was changed. Start the connection again from the dashboard.",
            again,
        );
    };
    let alias = pending.alias;
    if let Some(error) = q.error.as_deref() {
        tracing::info!(%alias, error, "consent not granted");
        return if error == "access_denied" {
            message(
                StatusCode::FORBIDDEN,
                "Access was not granted",
                &format!("Google reports that access for {alias} was declined on the consent screen. Nothing was changed. To connect the calendar, start again and choose Allow."),
                again,
            )
        } else {
            let code: String = error
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect();
            message(
                StatusCode::BAD_REQUEST,
                "Google did not complete the sign-in",
                &format!("Google answered \"{code}\". Nothing was changed. Start again; if it keeps failing, check the OAuth client settings (docs/operations.md)."),
                again,
            )
        };
    }
    let Some(code) = q.code.as_deref().filter(|c| !c.is_empty()) else {
        return message(
            StatusCode::BAD_REQUEST,
            "Google did not send a code",
            "The answer from Google had neither a code nor an error. Start again.",
            again,
        );
    };
    let control = admin::control(&state);
    let services = control.services();
    let granted = match services.oauth.exchange_code(code, &pending.verifier).await {
        Ok(g) => g,
        Err(e) => {
            tracing::warn!(%alias, error = %e, "code exchange failed");
            return exchange_failed(&e, again);
        }
    };
    let missing = missing_scopes(&granted);
    if !missing.is_empty() {
        let list: Vec<String> = missing
            .iter()
            .map(|s| format!("\"{}\" ({s})", scope_words(s)))
            .collect();
        tracing::info!(%alias, missing = ?missing, "consent granted only part of the scopes");
        return message(
            StatusCode::FORBIDDEN,
            "Some permissions are missing",
            &format!("Google granted only part of what the service needs. Missing: {}. Nothing was changed. Start again and leave every box on the consent screen ticked.", list.join(", ")),
            again,
        );
    }
    let Some(refresh_token) = granted.refresh_token.clone() else {
        return message(
            StatusCode::BAD_GATEWAY,
            "Google sent no refresh token",
            "Without one the service cannot sync while you are away. Remove the app's access at https://myaccount.google.com/permissions and connect again.",
            again,
        );
    };
    let existed = matches!(state.store.account_by_alias(&alias).await, Ok(Some(_)));
    // A new name for an account with several calendars: the operator picks which.
    if !existed {
        if let Some(page) =
            admin::offer_calendars(&state, &rt, &alias, &refresh_token, granted.email.clone()).await
        {
            return page;
        }
    }
    let account = match ops::connect_account(
        services,
        ConnectRequest {
            group: None,
            alias: alias.clone(),
            refresh_token,
            calendar_id: None,
            email: granted.email.clone(),
        },
    )
    .await
    {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(%alias, error = %e, "connecting the account failed");
            let status = match e {
                OpsError::InvalidAlias(_) | OpsError::AliasTaken { .. } => StatusCode::CONFLICT,
                OpsError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::BAD_GATEWAY,
            };
            return message(
                status,
                "The account could not be connected",
                &e.to_string(),
                again,
            );
        }
    };
    services.forget_tokens(account.id);
    // A calendar already connected under another name was reconnected under that name.
    let existed = existed || account.alias != alias;
    let started = if existed {
        control.resume(account.id).await
    } else {
        control.start_account(account.id).await
    };
    if let Err(e) = started {
        tracing::warn!(account = %account.id, error = %e, "connected, but its actors did not start");
    }
    tracing::info!(account = %account.id, alias = %account.alias, reconnected = existed, "account connected through consent");
    super::admin::connected_page(&account, existed, &alias)
}

/// The page for a code Google would not exchange. A refused code (used, expired, forged,
/// not ours) is the browser's request gone wrong: 400, and none of the refresh-token words
/// the token endpoint's `invalid_grant` means elsewhere. Only Google being unreachable or
/// confused is a gateway failure.
fn exchange_failed(err: &GoogleError, again: Option<(&str, &str)>) -> Response {
    match err {
        GoogleError::InvalidGrant
        | GoogleError::Unauthorized
        | GoogleError::Permanent { .. }
        | GoogleError::NotFound => message(
            StatusCode::BAD_REQUEST,
            "The authorization code was refused",
            "Google refused the authorization code: it was already used, has expired, or was not issued for this sign-in. Nothing was changed. Start again.",
            again,
        ),
        GoogleError::Config(_) => message(
            StatusCode::SERVICE_UNAVAILABLE,
            "Google sign-in is not configured",
            "Set GOOGLE_CLIENT_ID, GOOGLE_CLIENT_SECRET and GOOGLE_REDIRECT_URI (see docs/operations.md). Nothing was changed.",
            again,
        ),
        _ => message(
            StatusCode::BAD_GATEWAY,
            "Google could not finish the sign-in",
            "Google did not answer the code exchange properly (it may be busy). Nothing was changed. Start again in a moment.",
            again,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn granted(scopes: &[&str]) -> GrantedTokens {
        GrantedTokens {
            refresh_token: None,
            access_token: SecretString::from("x".to_owned()),
            expires_in: None,
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            email: None,
        }
    }

    #[test]
    fn a_partial_grant_names_what_is_missing() {
        let g = granted(&[SCOPE_CALENDAR_EVENTS, "openid", "email"]);
        assert_eq!(missing_scopes(&g), [SCOPE_CALENDAR_LIST_READONLY]);
    }

    #[test]
    fn the_broad_calendar_scope_covers_everything() {
        let g = granted(&["https://www.googleapis.com/auth/calendar"]);
        assert!(missing_scopes(&g).is_empty());
    }

    #[test]
    fn a_state_is_good_for_one_callback_only() {
        let consents = PendingConsents::default();
        consents.insert(
            "s1".into(),
            Pending {
                verifier: SecretString::from("v".to_owned()),
                alias: "Calendar 01".into(),
                created: Instant::now(),
            },
        );
        assert!(consents.take("s1").is_some());
        assert!(consents.take("s1").is_none());
        assert!(consents.take("forged").is_none());
    }

    #[test]
    fn aliases_and_hints_are_checked() {
        assert!(check_alias("  ").is_err());
        assert_eq!(check_alias(" Calendar 06 ").unwrap(), "Calendar 06");
        assert!(check_alias(&"x".repeat(65)).is_err());
        assert!(check_hint(Some("a b@example.com")).is_err());
        assert_eq!(check_hint(Some("")).unwrap(), None);
    }
}
