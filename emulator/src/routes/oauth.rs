//! The OAuth 2.0 fake: consent page, `/token`, `/revoke` and OpenID userinfo.
//!
//! `/o/oauth2/v2/auth` redirects straight back with a code when `login_hint` names a known
//! account; otherwise it shows a page with one "Allow" link per account, a form that adds a
//! new test account (prefilled with the next free `userNN@example.test`) and allows as it,
//! and a "Deny" link (a browser, or a test following links, picks one). Codes are single-use, expire after
//! 10 minutes and are bound to the client, redirect URI and PKCE challenge. The `id_token`
//! returned when `openid` was granted is an UNSIGNED JWT (`alg: none`) carrying `email`.
use crate::auth::bearer;
use crate::error::{ApiError, OAuthError};
use crate::routes::json_response;
use crate::state::{AuthCode, PendingAuth, Shared};
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;

fn form(raw: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(raw).into_owned().collect()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn error_page(status: StatusCode, title: &str, detail: &str) -> Response {
    let body = format!(
        "<!doctype html><html><head><title>Error</title></head><body><h1>{}</h1><p>{}</p></body></html>",
        html_escape(title),
        html_escape(detail)
    );
    (status, Html(body)).into_response()
}

fn redirect_with(redirect_uri: &str, pairs: &[(&str, &str)]) -> Response {
    match url::Url::parse(redirect_uri) {
        Ok(mut u) => {
            {
                let mut q = u.query_pairs_mut();
                for (k, v) in pairs {
                    q.append_pair(k, v);
                }
            }
            (
                StatusCode::FOUND,
                [(header::LOCATION, u.as_str().to_string())],
            )
                .into_response()
        }
        Err(_) => error_page(
            StatusCode::BAD_REQUEST,
            "Error 400: redirect_uri_mismatch",
            "Invalid redirect_uri.",
        ),
    }
}

/// `GET /o/oauth2/v2/auth`
pub async fn authorize(State(shared): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Response {
    let p = form(q.unwrap_or_default().as_bytes());
    let client_id = p.get("client_id").cloned().unwrap_or_default();
    if client_id != shared.client_id {
        return error_page(
            StatusCode::UNAUTHORIZED,
            "Error 401: invalid_client",
            "The OAuth client was not found.",
        );
    }
    let Some(redirect_uri) = p.get("redirect_uri").cloned() else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Error 400: invalid_request",
            "Missing required parameter: redirect_uri",
        );
    };
    if url::Url::parse(&redirect_uri).is_err() {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Error 400: redirect_uri_mismatch",
            "Invalid redirect_uri.",
        );
    }
    let state = p.get("state").cloned();
    let st = state.clone().unwrap_or_default();
    if p.get("response_type").map(String::as_str) != Some("code") {
        return redirect_with(
            &redirect_uri,
            &[("error", "unsupported_response_type"), ("state", &st)],
        );
    }
    let scopes: Vec<String> = p
        .get("scope")
        .map(|s| s.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    if scopes.is_empty() {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Error 400: invalid_request",
            "Missing required parameter: scope",
        );
    }
    let code_challenge = match (
        p.get("code_challenge"),
        p.get("code_challenge_method").map(String::as_str),
    ) {
        (None, _) => None,
        (Some(c), Some("S256")) => Some((c.clone(), "S256".to_string())),
        (Some(c), None) | (Some(c), Some("plain")) => Some((c.clone(), "plain".to_string())),
        (Some(_), Some(_)) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Error 400: invalid_request",
                "Invalid code_challenge_method.",
            )
        }
    };
    let pending = PendingAuth {
        client_id,
        redirect_uri,
        scopes,
        state,
        code_challenge,
        offline: p.get("access_type").map(String::as_str) == Some("offline"),
    };
    if let Some(hint) = p.get("login_hint") {
        if shared.account(hint).is_some() {
            return approve_pending(&shared, pending, hint, None);
        }
    }
    let request_id = crate::state::random_token(24);
    shared
        .pending_auth
        .lock()
        .insert(request_id.clone(), pending.clone());
    let emails = shared.account_order.read().clone();
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Sign in - Google Accounts (emulator)</title></head><body>\
         <h1>Choose an account</h1><p>The application is requesting access to:</p><ul>",
    );
    for s in &pending.scopes {
        html.push_str(&format!("<li>{}</li>", html_escape(s)));
    }
    html.push_str("</ul><ul id=\"accounts\">");
    for e in emails {
        let href = format!(
            "/o/oauth2/v2/auth/approve?request={request_id}&email={}",
            url::form_urlencoded::byte_serialize(e.as_bytes()).collect::<String>()
        );
        html.push_str(&format!(
            "<li><a class=\"account\" data-email=\"{0}\" href=\"{1}\">Allow as {0}</a></li>",
            html_escape(&e),
            html_escape(&href)
        ));
    }
    html.push_str("</ul>");
    html.push_str(&add_account_form(&shared, &request_id));
    html.push_str(&format!(
        "<p><a id=\"deny\" href=\"/o/oauth2/v2/auth/deny?request={request_id}\">Deny</a></p></body></html>"
    ));
    Html(html).into_response()
}

/// The next `userNN@example.test` no account has.
fn next_free_email(shared: &Shared) -> String {
    (1..)
        .map(|n| format!("user{n:02}@example.test"))
        .find(|e| shared.account(e).is_none())
        .unwrap_or_default()
}

/// A GET form to the approve endpoint that creates the account first (`new=1`).
fn add_account_form(shared: &Shared, request_id: &str) -> String {
    format!(
        "<form id=\"add-account\" method=\"get\" action=\"/o/oauth2/v2/auth/approve\">\
         <h2>Or add a test account</h2>\
         <input type=\"hidden\" name=\"request\" value=\"{}\">\
         <input type=\"hidden\" name=\"new\" value=\"1\">\
         <label>E-mail <input name=\"email\" type=\"email\" required value=\"{}\"></label> \
         <button type=\"submit\">Add this account and allow</button></form>",
        html_escape(request_id),
        html_escape(&next_free_email(shared))
    )
}

/// An e-mail address good enough for a test account: one `@`, no spaces, not too long.
fn plausible_email(email: &str) -> bool {
    email.len() <= 254
        && email.split('@').count() == 2
        && email.split('@').all(|part| !part.is_empty())
        && !email
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>' || c == '"')
}

fn approve_pending(
    shared: &Shared,
    pending: PendingAuth,
    email: &str,
    scope_subset: Option<&str>,
) -> Response {
    let scopes: Vec<String> = match scope_subset {
        Some(s) => s
            .split_whitespace()
            .filter(|x| pending.scopes.iter().any(|p| p == x))
            .map(str::to_string)
            .collect(),
        None => pending.scopes.clone(),
    };
    let code = format!("4/0emu-{}", crate::state::random_token(40));
    shared.codes.lock().insert(
        code.clone(),
        AuthCode {
            email: email.to_string(),
            client_id: pending.client_id.clone(),
            redirect_uri: pending.redirect_uri.clone(),
            scopes: scopes.clone(),
            code_challenge: pending.code_challenge.clone(),
            offline: pending.offline,
            expires_at_ms: shared.clock.now_ms() + 600_000,
        },
    );
    let scope = scopes.join(" ");
    let mut pairs = vec![("code", code.as_str()), ("scope", scope.as_str())];
    if let Some(s) = &pending.state {
        pairs.push(("state", s.as_str()));
    }
    redirect_with(&pending.redirect_uri, &pairs)
}

/// `GET /o/oauth2/v2/auth/approve?request=ID&email=E[&scope=granted subset][&new=1]`; with
/// `new=1` an unknown e-mail becomes a new test account (with its primary calendar) first.
pub async fn approve(State(shared): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Response {
    let p = form(q.unwrap_or_default().as_bytes());
    let (Some(req), Some(email)) = (p.get("request"), p.get("email")) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Error 400: invalid_request",
            "Missing request or email.",
        );
    };
    let email = email.trim();
    let wants_new = p.get("new").map(String::as_str) == Some("1");
    let pending_known = shared.pending_auth.lock().contains_key(req);
    if wants_new && pending_known && shared.account(email).is_none() {
        if !plausible_email(email) {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Error 400: invalid_request",
                "That is not an e-mail address.",
            );
        }
        shared.create_account(Some(email.to_owned()), None, None);
    }
    if shared.account(email).is_none() {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Error 400: invalid_request",
            "Unknown account.",
        );
    }
    let Some(pending) = shared.pending_auth.lock().remove(req) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Error 400: invalid_request",
            "Unknown or used authorization request.",
        );
    };
    approve_pending(&shared, pending, email, p.get("scope").map(String::as_str))
}

/// `GET /o/oauth2/v2/auth/deny?request=ID` → redirect with `error=access_denied`.
pub async fn deny(State(shared): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Response {
    let p = form(q.unwrap_or_default().as_bytes());
    let Some(pending) = p
        .get("request")
        .and_then(|r| shared.pending_auth.lock().remove(r))
    else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Error 400: invalid_request",
            "Unknown or used authorization request.",
        );
    };
    let st = pending.state.clone().unwrap_or_default();
    let mut pairs = vec![("error", "access_denied")];
    if pending.state.is_some() {
        pairs.push(("state", st.as_str()));
    }
    redirect_with(&pending.redirect_uri, &pairs)
}

fn client_credentials(
    headers: &HeaderMap,
    f: &HashMap<String, String>,
) -> (Option<String>, Option<String>) {
    if let Some(basic) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    {
        if let Some((id, secret)) = base64::engine::general_purpose::STANDARD
            .decode(basic.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| {
                s.split_once(':')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
            })
        {
            let id = url::form_urlencoded::parse(format!("a={id}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned());
            let secret = url::form_urlencoded::parse(format!("a={secret}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned());
            return (id, secret);
        }
    }
    (f.get("client_id").cloned(), f.get("client_secret").cloned())
}

/// An unsigned JWT (`alg: none`) with the claims a client reads to learn the account e-mail.
fn id_token(shared: &Shared, email: &str, client_id: &str) -> String {
    let e = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let now = shared.clock.now().timestamp();
    let header = e(json!({"alg": "none", "typ": "JWT"}));
    let claims = e(json!({
        "iss": "https://accounts.google.com", "aud": client_id, "azp": client_id,
        "sub": format!("{:x}", Sha256::digest(email.as_bytes()))[..21].to_string(),
        "email": email, "email_verified": true, "iat": now, "exp": now + 3600,
    }));
    format!("{header}.{claims}.")
}

/// `POST /token`: `authorization_code` (PKCE checked) and `refresh_token` grants.
pub async fn token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let f = form(&body);
    let (client_id, client_secret) = client_credentials(&headers, &f);
    let client_id = client_id
        .ok_or_else(|| OAuthError::invalid_request("Missing required parameter: client_id"))?;
    if client_id != shared.client_id
        || client_secret.as_deref() != Some(shared.client_secret.as_str())
    {
        return Err(OAuthError::invalid_client());
    }
    let now = shared.clock.now_ms();
    match f.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let code = f
                .get("code")
                .ok_or_else(|| OAuthError::invalid_request("Missing required parameter: code"))?;
            let grant = shared
                .codes
                .lock()
                .remove(code)
                .ok_or_else(|| OAuthError::invalid_grant("Malformed auth code."))?;
            if grant.expires_at_ms <= now || grant.client_id != client_id {
                return Err(OAuthError::invalid_grant("Bad Request"));
            }
            if f.get("redirect_uri") != Some(&grant.redirect_uri) {
                return Err(OAuthError::new(400, "redirect_uri_mismatch", "Bad Request"));
            }
            if let Some((challenge, method)) = &grant.code_challenge {
                let verifier = f
                    .get("code_verifier")
                    .ok_or_else(|| OAuthError::invalid_grant("Missing code verifier."))?;
                let computed = if method == "S256" {
                    base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .encode(Sha256::digest(verifier.as_bytes()))
                } else {
                    verifier.clone()
                };
                if &computed != challenge {
                    return Err(OAuthError::invalid_grant("Invalid code verifier."));
                }
            }
            let refresh = grant
                .offline
                .then(|| shared.mint_refresh_token(&grant.email, &client_id, grant.scopes.clone()));
            let (access, ttl) = shared.mint_access_token(
                &grant.email,
                &client_id,
                grant.scopes.clone(),
                refresh.clone(),
            );
            let mut v = json!({
                "access_token": access, "expires_in": ttl, "scope": grant.scopes.join(" "), "token_type": "Bearer",
            });
            if let Some(r) = refresh {
                v["refresh_token"] = json!(r);
                if let Some(t) = shared.settings.read().refresh_token_ttl_secs {
                    v["refresh_token_expires_in"] = json!(t);
                }
            }
            if grant.scopes.iter().any(|s| s == "openid") {
                v["id_token"] = json!(id_token(&shared, &grant.email, &client_id));
            }
            Ok(json_response(&v, None))
        }
        Some("refresh_token") => {
            let rt = f.get("refresh_token").ok_or_else(|| {
                OAuthError::invalid_request("Missing required parameter: refresh_token")
            })?;
            let grant = shared
                .refresh_tokens
                .read()
                .get(rt)
                .cloned()
                .ok_or_else(OAuthError::revoked)?;
            if grant.revoked || grant.expires_at_ms.is_some_and(|e| e <= now) {
                return Err(OAuthError::revoked());
            }
            if grant.client_id != client_id {
                return Err(OAuthError::new(401, "unauthorized_client", "Unauthorized"));
            }
            let (access, ttl) = shared.mint_access_token(
                &grant.email,
                &client_id,
                grant.scopes.clone(),
                Some(rt.clone()),
            );
            let mut v = json!({"access_token": access, "expires_in": ttl, "scope": grant.scopes.join(" "), "token_type": "Bearer"});
            if grant.scopes.iter().any(|s| s == "openid") {
                v["id_token"] = json!(id_token(&shared, &grant.email, &client_id));
            }
            Ok(json_response(&v, None))
        }
        Some(_) => Err(OAuthError::new(
            400,
            "unsupported_grant_type",
            "Invalid grant_type",
        )),
        None => Err(OAuthError::invalid_request(
            "Missing required parameter: grant_type",
        )),
    }
}

/// `POST /revoke` with `token=` (form or query): kills the grant behind an access or refresh token.
pub async fn revoke(
    State(shared): State<Arc<Shared>>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let mut f = form(&body);
    if let Some(q) = q {
        f.extend(form(q.as_bytes()));
    }
    let token = f
        .get("token")
        .ok_or_else(|| OAuthError::invalid_request("Missing required parameter: token"))?;
    let refresh = if shared.refresh_tokens.read().contains_key(token) {
        Some(token.clone())
    } else {
        let access = shared.access_tokens.write().remove(token);
        match access {
            Some(a) => a.refresh_token,
            None => {
                return Err(OAuthError::new(
                    400,
                    "invalid_token",
                    "Token expired or revoked",
                ))
            }
        }
    };
    if let Some(rt) = refresh {
        let mut tokens = shared.refresh_tokens.write();
        match tokens.get_mut(&rt) {
            Some(g) if g.revoked => {
                return Err(OAuthError::new(
                    400,
                    "invalid_token",
                    "Token expired or revoked",
                ))
            }
            Some(g) => g.revoked = true,
            None => {}
        }
        drop(tokens);
        shared
            .access_tokens
            .write()
            .retain(|_, a| a.refresh_token.as_deref() != Some(rt.as_str()));
    }
    Ok(json_response(&json!({}), None))
}

/// `GET /oauth2/v3/userinfo` (also `/oauth2/v2/userinfo`): who the access token belongs to.
pub async fn userinfo(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let token = bearer(&headers, None).ok_or_else(ApiError::auth)?;
    let grant = shared
        .access_tokens
        .read()
        .get(&token)
        .cloned()
        .ok_or_else(ApiError::auth)?;
    if grant.expires_at_ms <= shared.clock.now_ms() {
        return Err(ApiError::auth());
    }
    let sub = format!("{:x}", Sha256::digest(grant.email.as_bytes()))[..21].to_string();
    Ok(json_response(
        &json!({"sub": sub, "email": grant.email, "email_verified": true}),
        None,
    ))
}
