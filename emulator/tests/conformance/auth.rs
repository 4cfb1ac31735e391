//! Auth: bearer tokens, expiry, scopes, the consent page, /token (PKCE, refresh, revoked),
//! /revoke and userinfo (docs/emulator.md, "Auth" and "OAuth details").

use crate::support::{error_reason, TestEmu};
use base64::Engine;
use reqwest::Method;
use serde_json::{json, Value};
use sha2::Digest;

const EV: &str = "/calendar/v3/calendars/primary/events";
const REDIRECT: &str = "http://127.0.0.1:1/callback";

fn query_of(location: &str) -> std::collections::HashMap<String, String> {
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

#[tokio::test]
async fn missing_or_unknown_tokens_get_401_auth_error() {
    let emu = TestEmu::start(1).await;
    let r = emu.http.get(emu.url(EV)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = emu.call(Method::GET, EV, "ya29.bogus", None).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.body["error"]["errors"][0],
        json!({"domain": "global", "reason": "authError", "message": "Invalid Credentials", "locationType": "header", "location": "Authorization"})
    );
    assert_eq!(r.body["error"]["message"], "Invalid Credentials");
}

#[tokio::test]
async fn access_tokens_expire_after_their_lifetime() {
    let emu = TestEmu::start(1).await;
    emu.settings(json!({"accessTokenTtlSecs": 120})).await;
    let t = emu.token(0).await;
    assert_eq!(emu.call(Method::GET, EV, &t, None).await.status, 200);
    emu.control(
        Method::POST,
        "/emulator/clock/advance",
        Some(json!({"seconds": 121})),
    )
    .await;
    let r = emu.call(Method::GET, EV, &t, None).await;
    assert_eq!(r.status, 401);
    assert_eq!(error_reason(&r), "authError");
}

#[tokio::test]
async fn scopes_are_checked_per_method() {
    let emu = TestEmu::start(1).await;
    let events_only = emu
        .scoped_token(0, &["https://www.googleapis.com/auth/calendar.events"])
        .await;
    assert_eq!(
        emu.call(Method::GET, EV, &events_only, None).await.status,
        200
    );
    let r = emu
        .call(
            Method::GET,
            "/calendar/v3/users/me/calendarList",
            &events_only,
            None,
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(error_reason(&r), "insufficientPermissions");
    assert_eq!(
        r.body["error"]["message"],
        "Request had insufficient authentication scopes."
    );
    assert_eq!(
        emu.call(
            Method::GET,
            "/calendar/v3/calendars/primary",
            &events_only,
            None
        )
        .await
        .status,
        403
    );
    let readonly = emu
        .scoped_token(0, &["https://www.googleapis.com/auth/calendar.readonly"])
        .await;
    let w = emu
        .call(
            Method::POST,
            EV,
            &readonly,
            Some(crate::support::timed(
                "x",
                "2030-01-01T10:00:00Z",
                "2030-01-01T11:00:00Z",
            )),
        )
        .await;
    assert_eq!(w.status, 403);
    let list = emu
        .scoped_token(
            0,
            &["https://www.googleapis.com/auth/calendar.calendarlist.readonly"],
        )
        .await;
    let cl = emu
        .call(
            Method::GET,
            "/calendar/v3/users/me/calendarList",
            &list,
            None,
        )
        .await;
    assert_eq!(cl.status, 200);
    assert_eq!(cl.body["items"][0]["primary"], true);
    assert_eq!(cl.body["items"][0]["id"], json!(emu.email(0)));
}

async fn consent(emu: &TestEmu, extra: &str) -> reqwest::Response {
    let url = format!(
        "{}?client_id={}&redirect_uri={}&response_type=code&scope=openid%20email%20https://www.googleapis.com/auth/calendar.events&state=xyz&access_type=offline{extra}",
        emu.handle.auth_url(),
        emu.handle.client_id(),
        url::form_urlencoded::byte_serialize(REDIRECT.as_bytes()).collect::<String>()
    );
    emu.http.get(url).send().await.unwrap()
}

async fn exchange(emu: &TestEmu, code: &str, verifier: Option<&str>) -> (u16, Value) {
    let mut form = vec![
        ("grant_type", "authorization_code".to_string()),
        ("code", code.to_string()),
        ("redirect_uri", REDIRECT.to_string()),
        ("client_id", emu.handle.client_id().to_string()),
        ("client_secret", emu.handle.client_secret().to_string()),
    ];
    if let Some(v) = verifier {
        form.push(("code_verifier", v.to_string()));
    }
    let r = emu
        .http
        .post(emu.url("/token"))
        .form(&form)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

#[tokio::test]
async fn login_hint_redirects_with_a_code_that_pkce_protects() {
    let emu = TestEmu::start(2).await;
    let verifier = "a-verifier-that-is-long-enough-for-pkce-0123456789";
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    let r = consent(
        &emu,
        &format!(
            "&login_hint={}&code_challenge={challenge}&code_challenge_method=S256",
            emu.email(1)
        ),
    )
    .await;
    assert_eq!(r.status(), 302);
    let q = query_of(r.headers()["location"].to_str().unwrap());
    assert_eq!(q["state"], "xyz");
    let code = q["code"].clone();
    let (status, body) = exchange(&emu, &code, Some("wrong-verifier")).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");
    // The code was consumed by the failed attempt, as Google does.
    let r = consent(
        &emu,
        &format!(
            "&login_hint={}&code_challenge={challenge}&code_challenge_method=S256",
            emu.email(1)
        ),
    )
    .await;
    let code = query_of(r.headers()["location"].to_str().unwrap())["code"].clone();
    let (status, body) = exchange(&emu, &code, Some(verifier)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert!(body["refresh_token"].is_string());
    let id_token = body["id_token"].as_str().unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(id_token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["email"], json!(emu.email(1)));
    let (again, body) = exchange(&emu, &code, Some(verifier)).await;
    assert_eq!(again, 400);
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn the_consent_page_lists_accounts_and_deny_redirects_with_access_denied() {
    let emu = TestEmu::start(2).await;
    let page = consent(&emu, "").await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains(&emu.email(0)) && html.contains(&emu.email(1)));
    let approve = html
        .split("href=\"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap().replace("&amp;", "&"))
        .find(|h| h.contains("approve"))
        .unwrap();
    let r = emu.http.get(emu.url(&approve)).send().await.unwrap();
    let q = query_of(r.headers()["location"].to_str().unwrap());
    let (status, body) = exchange(&emu, &q["code"], None).await;
    assert_eq!(status, 200);
    let info = emu
        .http
        .get(emu.url("/oauth2/v3/userinfo"))
        .bearer_auth(body["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let info: Value = info.json().await.unwrap();
    assert_eq!(info["email"], json!(emu.email(0)));

    let html = consent(&emu, "").await.text().await.unwrap();
    let deny = html
        .split("href=\"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap().replace("&amp;", "&"))
        .find(|h| h.contains("deny"))
        .unwrap();
    let r = emu.http.get(emu.url(&deny)).send().await.unwrap();
    let q = query_of(r.headers()["location"].to_str().unwrap());
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["state"], "xyz");
}

#[tokio::test]
async fn revoked_refresh_tokens_get_invalid_grant_and_their_access_tokens_die() {
    let emu = TestEmu::start(1).await;
    let t = emu.token(0).await;
    let rt = emu.accounts[0].refresh_token.clone();
    let r = emu
        .http
        .post(emu.url("/revoke"))
        .form(&[("token", rt.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(emu.call(Method::GET, EV, &t, None).await.status, 401);
    let r = emu
        .http
        .post(emu.url("/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt.as_str()),
            ("client_id", emu.handle.client_id()),
            ("client_secret", emu.handle.client_secret()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error": "invalid_grant", "error_description": "Token has been expired or revoked."})
    );
}

#[tokio::test]
async fn control_api_revocation_and_testing_mode_expiry_kill_refresh_tokens() {
    let emu = TestEmu::start(2).await;
    let r = emu
        .control(
            Method::POST,
            &format!("/emulator/accounts/{}/revoke", emu.email(0)),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    let refresh = |rt: String| {
        let emu = &emu;
        async move {
            emu.http
                .post(emu.url("/token"))
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", rt.as_str()),
                    ("client_id", emu.handle.client_id()),
                    ("client_secret", emu.handle.client_secret()),
                ])
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(refresh(emu.accounts[0].refresh_token.clone()).await, 400);
    assert_eq!(refresh(emu.accounts[1].refresh_token.clone()).await, 200);
    emu.settings(json!({"refreshTokenTtlSecs": 604800})).await;
    let fresh = emu
        .control(
            Method::POST,
            "/emulator/accounts",
            Some(json!({"email": "tester@example.test"})),
        )
        .await;
    assert_eq!(fresh.status, 201);
    let rt = fresh.body["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(refresh(rt.clone()).await, 200);
    emu.control(
        Method::POST,
        "/emulator/clock/advance",
        Some(json!({"seconds": 604801})),
    )
    .await;
    assert_eq!(refresh(rt).await, 400);
}

#[tokio::test]
async fn wrong_client_secret_is_invalid_client() {
    let emu = TestEmu::start(1).await;
    let r = emu
        .http
        .post(emu.url("/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", emu.accounts[0].refresh_token.as_str()),
            ("client_id", emu.handle.client_id()),
            ("client_secret", "nope"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
}
