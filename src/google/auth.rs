//! OAuth 2.0 for Google: access tokens for API calls, and the consent flow helpers.
//!
//! - [`OAuthClient`] wraps the `oauth2` crate configured from [`GoogleSettings`] (client id
//!   and secret, auth and token URLs, redirect URI). It builds the consent URL (PKCE S256,
//!   `access_type=offline`, `prompt=consent`), exchanges a code, and refreshes a token.
//!   Failures are classified: `invalid_grant` becomes [`GoogleError::InvalidGrant`] (the
//!   account needs a new consent), a 5xx or unreachable token endpoint is
//!   [`GoogleError::Transient`].
//! - [`TokenSource`] is one account's credential: the refresh token plus a cached access
//!   token that is refreshed about a minute before it expires, or at once when Google
//!   refused it. A `CalendarActor` owns one and hands it to the [`super::AccountClient`];
//!   clones share the cache, and concurrent callers wait for a single refresh.
//!
//! Tokens are held as [`SecretString`] and never logged.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use oauth2::basic::{
    BasicErrorResponse, BasicErrorResponseType, BasicRevocationErrorResponse,
    BasicTokenIntrospectionResponse, BasicTokenType,
};
use oauth2::{
    AsyncHttpClient, AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    EndpointNotSet, EndpointSet, ExtraTokenFields, HttpClientError, HttpRequest, HttpResponse,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, Scope,
    StandardRevocableToken, StandardTokenResponse, TokenResponse, TokenUrl,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tokio::time::Instant;
use url::Url;

use super::error::GoogleError;
use crate::config::GoogleSettings;

pub const SCOPE_CALENDAR_EVENTS: &str = "https://www.googleapis.com/auth/calendar.events";
pub const SCOPE_CALENDAR_LIST_READONLY: &str =
    "https://www.googleapis.com/auth/calendar.calendarlist.readonly";
pub const SCOPE_OPENID: &str = "openid";
pub const SCOPE_EMAIL: &str = "email";

/// What the consent screen asks for: events read/write, the calendar list (to resolve the
/// primary calendar), and the e-mail address (to name the account).
pub const SCOPES: [&str; 4] = [
    SCOPE_CALENDAR_EVENTS,
    SCOPE_CALENDAR_LIST_READONLY,
    SCOPE_OPENID,
    SCOPE_EMAIL,
];

/// An access token is renewed this long before Google says it expires.
const REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// Used when a token response carries no `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// Google's token response carries an `id_token` when `openid` was granted.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct IdTokenFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
}

impl ExtraTokenFields for IdTokenFields {}

type GoogleTokenResponse = StandardTokenResponse<IdTokenFields, BasicTokenType>;

type Oauth2Client = oauth2::Client<
    BasicErrorResponse,
    GoogleTokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// The OAuth client of this installation (one per process, cheap to clone).
#[derive(Clone)]
pub struct OAuthClient {
    inner: Arc<Oauth2Client>,
    http: TokenHttp,
    /// False without `GOOGLE_CLIENT_ID`: the service still runs (health, metrics, admin),
    /// but every token operation answers a clear configuration error.
    configured: bool,
}

impl std::fmt::Debug for OAuthClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthClient")
            .field("client_id", self.inner.client_id())
            .field("token_url", &self.inner.token_uri().as_str())
            .finish_non_exhaustive()
    }
}

/// A consent URL to send the browser to, and what the callback must be checked against.
#[derive(Debug, Clone)]
pub struct ConsentRequest {
    pub url: Url,
    /// The CSRF `state`; the callback must echo it.
    pub state: String,
    /// The PKCE verifier to send with the code exchange; keep it server-side.
    pub pkce_verifier: SecretString,
}

/// What a successful code exchange returns.
#[derive(Debug, Clone)]
pub struct GrantedTokens {
    /// Present on first consent or with `prompt=consent` (always, for our URL).
    pub refresh_token: Option<SecretString>,
    pub access_token: SecretString,
    pub expires_in: Option<Duration>,
    /// What the user actually granted; compare with [`SCOPES`] (consent is granular).
    pub scopes: Vec<String>,
    /// The `email` claim of the id_token, when `openid email` was granted.
    pub email: Option<String>,
}

impl GrantedTokens {
    /// Whether every scope the service needs to sync was granted.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// A fresh access token and how long Google says it lives.
#[derive(Debug, Clone)]
pub struct AccessToken {
    pub secret: SecretString,
    pub expires_in: Option<Duration>,
}

impl OAuthClient {
    /// Builds the client from settings. `http` must not follow redirects (the `oauth2`
    /// crate's requirement, against leaking codes to a redirect target); the
    /// [`super::GoogleClient`]'s shared client qualifies.
    pub fn new(settings: &GoogleSettings, http: reqwest::Client) -> Result<Self, GoogleError> {
        let configured = settings.client_id.is_some();
        let client_id = settings.client_id.clone().unwrap_or_default();
        let auth_url = AuthUrl::from_url(settings.auth_url.clone());
        let token_url = TokenUrl::from_url(settings.token_url.clone());
        let mut client = oauth2::Client::new(ClientId::new(client_id))
            .set_auth_uri(auth_url)
            .set_token_uri(token_url)
            // Google documents the credentials as form fields of the token request.
            .set_auth_type(AuthType::RequestBody);
        if let Some(secret) = &settings.client_secret {
            client = client.set_client_secret(ClientSecret::new(secret.expose_secret().to_owned()));
        }
        if let Some(redirect) = &settings.redirect_uri {
            client = client.set_redirect_uri(RedirectUrl::from_url(redirect.clone()));
        }
        Ok(Self {
            inner: Arc::new(client),
            http: TokenHttp(http),
            configured,
        })
    }

    /// Whether an OAuth client id is configured.
    pub fn is_configured(&self) -> bool {
        self.configured
    }

    fn ensure_configured(&self) -> Result<(), GoogleError> {
        if self.configured {
            Ok(())
        } else {
            Err(GoogleError::Config("GOOGLE_CLIENT_ID is not set".into()))
        }
    }

    /// The consent URL for one account: offline access, forced consent (so a refresh token
    /// is always issued), PKCE S256, a random state, and `login_hint` when the e-mail is
    /// known.
    pub fn consent_request(&self, login_hint: Option<&str>) -> Result<ConsentRequest, GoogleError> {
        self.ensure_configured()?;
        if self.inner.redirect_uri().is_none() {
            return Err(GoogleError::Config("GOOGLE_REDIRECT_URI is not set".into()));
        }
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = self
            .inner
            .authorize_url(CsrfToken::new_random)
            .add_scopes(SCOPES.iter().map(|s| Scope::new((*s).to_owned())))
            .set_pkce_challenge(challenge)
            .add_extra_param("access_type", "offline")
            .add_extra_param("prompt", "consent");
        if let Some(hint) = login_hint {
            request = request.add_extra_param("login_hint", Cow::Owned(hint.to_owned()));
        }
        let (url, state) = request.url();
        Ok(ConsentRequest {
            url,
            state: state.secret().clone(),
            pkce_verifier: SecretString::from(verifier.secret().clone()),
        })
    }

    /// Exchanges the callback's `code` (with the PKCE verifier of its consent request).
    #[tracing::instrument(skip_all, err(Display))]
    pub async fn exchange_code(
        &self,
        code: &str,
        pkce_verifier: &SecretString,
    ) -> Result<GrantedTokens, GoogleError> {
        self.ensure_configured()?;
        let response = self
            .inner
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(
                pkce_verifier.expose_secret().to_owned(),
            ))
            .request_async(&self.http)
            .await
            .map_err(classify_token_error)?;
        let email = response
            .extra_fields()
            .id_token
            .as_deref()
            .and_then(email_from_id_token);
        Ok(GrantedTokens {
            refresh_token: response
                .refresh_token()
                .map(|t| SecretString::from(t.secret().clone())),
            access_token: SecretString::from(response.access_token().secret().clone()),
            expires_in: response.expires_in(),
            scopes: response
                .scopes()
                .map(|s| s.iter().map(|s| s.to_string()).collect())
                .unwrap_or_default(),
            email,
        })
    }

    /// Trades a refresh token for a new access token.
    #[tracing::instrument(skip_all, err(Display))]
    pub async fn refresh(&self, refresh_token: &SecretString) -> Result<AccessToken, GoogleError> {
        self.ensure_configured()?;
        let token = RefreshToken::new(refresh_token.expose_secret().to_owned());
        let response = self
            .inner
            .exchange_refresh_token(&token)
            .request_async(&self.http)
            .await
            .map_err(classify_token_error)?;
        Ok(AccessToken {
            secret: SecretString::from(response.access_token().secret().clone()),
            expires_in: response.expires_in(),
        })
    }
}

/// The reqwest client as the `oauth2` crate's HTTP client, except that a 5xx, 408 or 429
/// from the token endpoint is reported as a request failure: the crate would otherwise try
/// to parse the error page and call it malformed, hiding that a retry may help.
#[derive(Clone)]
struct TokenHttp(reqwest::Client);

impl<'c> AsyncHttpClient<'c> for TokenHttp {
    type Error = HttpClientError<reqwest::Error>;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<HttpResponse, Self::Error>> + Send + Sync + 'c>,
    >;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let response = self.0.call(request).await?;
            let status = response.status();
            if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
                return Err(HttpClientError::Other(format!(
                    "the token endpoint answered {status}"
                )));
            }
            Ok(response)
        })
    }
}

fn classify_token_error(
    err: RequestTokenError<HttpClientError<reqwest::Error>, BasicErrorResponse>,
) -> GoogleError {
    match err {
        RequestTokenError::ServerResponse(response) => match response.error() {
            BasicErrorResponseType::InvalidGrant => GoogleError::InvalidGrant,
            other => GoogleError::Permanent {
                status: if matches!(other, BasicErrorResponseType::InvalidClient) {
                    401
                } else {
                    400
                },
                reason: other.as_ref().to_owned(),
                message: response.error_description().cloned().unwrap_or_default(),
            },
        },
        RequestTokenError::Request(HttpClientError::Reqwest(e)) => GoogleError::from_transport(*e),
        RequestTokenError::Request(e) => GoogleError::Transient(e.to_string()),
        // Never echo the body: a success body that failed to parse holds tokens.
        RequestTokenError::Parse(e, _) => {
            GoogleError::Malformed(format!("token response: {}", e.path()))
        }
        RequestTokenError::Other(what) => GoogleError::Malformed(format!("token response: {what}")),
    }
}

/// The `email` claim of an id_token. The token came straight from Google's token endpoint
/// over TLS, so (per OpenID Connect §3.1.3.7) its signature need not be checked here.
fn email_from_id_token(id_token: &str) -> Option<String> {
    let payload = id_token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    #[derive(Deserialize)]
    struct Claims {
        email: Option<String>,
    }
    serde_json::from_slice::<Claims>(&bytes).ok()?.email
}

struct CachedToken {
    secret: SecretString,
    /// When to stop using it: its expiry minus [`REFRESH_MARGIN`].
    refresh_at: Instant,
}

struct TokenSourceInner {
    oauth: OAuthClient,
    refresh_token: SecretString,
    /// Held across a refresh so concurrent callers share one refresh.
    cached: Mutex<Option<CachedToken>>,
}

/// One account's credential: a refresh token and the cached access token it yields.
#[derive(Clone)]
pub struct TokenSource {
    inner: Arc<TokenSourceInner>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSource([REDACTED])")
    }
}

impl TokenSource {
    pub fn new(oauth: OAuthClient, refresh_token: SecretString) -> Self {
        Self {
            inner: Arc::new(TokenSourceInner {
                oauth,
                refresh_token,
                cached: Mutex::new(None),
            }),
        }
    }

    /// Starts with an access token already in hand (e.g. from the code exchange).
    pub fn with_access_token(
        oauth: OAuthClient,
        refresh_token: SecretString,
        access_token: SecretString,
        expires_in: Option<Duration>,
    ) -> Self {
        Self {
            inner: Arc::new(TokenSourceInner {
                oauth,
                refresh_token,
                cached: Mutex::new(Some(CachedToken {
                    secret: access_token,
                    refresh_at: refresh_deadline(expires_in),
                })),
            }),
        }
    }

    /// A usable access token: the cached one, or a fresh one when it is near expiry.
    pub async fn access_token(&self) -> Result<SecretString, GoogleError> {
        let mut cached = self.inner.cached.lock().await;
        if let Some(token) = cached.as_ref() {
            if Instant::now() < token.refresh_at {
                return Ok(token.secret.clone());
            }
        }
        let fresh = self.inner.oauth.refresh(&self.inner.refresh_token).await?;
        tracing::debug!(expires_in = ?fresh.expires_in, "access token refreshed");
        let secret = fresh.secret.clone();
        *cached = Some(CachedToken {
            secret: fresh.secret,
            refresh_at: refresh_deadline(fresh.expires_in),
        });
        Ok(secret)
    }

    /// Google refused `rejected`: forget it so the next [`Self::access_token`] refreshes.
    /// A token that was already replaced by another caller's refresh is left alone.
    pub async fn invalidate(&self, rejected: &SecretString) {
        let mut cached = self.inner.cached.lock().await;
        if cached
            .as_ref()
            .is_some_and(|t| t.secret.expose_secret() == rejected.expose_secret())
        {
            *cached = None;
        }
    }

    /// The refresh token, for storing (encrypted) after a consent.
    pub fn refresh_token(&self) -> &SecretString {
        &self.inner.refresh_token
    }
}

/// How long a token that lives `expires_in` may be used before it is renewed.
fn usable_for(expires_in: Option<Duration>) -> Duration {
    let lifetime = expires_in.unwrap_or(DEFAULT_LIFETIME);
    // Short-lived tokens (tests, the emulator's knob) are renewed at half-life instead.
    let margin = REFRESH_MARGIN.min(lifetime / 2);
    lifetime.saturating_sub(margin)
}

fn refresh_deadline(expires_in: Option<Duration>) -> Instant {
    Instant::now() + usable_for(expires_in)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> GoogleSettings {
        GoogleSettings {
            client_id: Some("client-1.apps.googleusercontent.com".into()),
            client_secret: Some(SecretString::from("shh".to_owned())),
            redirect_uri: Some(Url::parse("https://mcss.example.com/auth/callback").unwrap()),
            api_base_url: Url::parse("https://www.googleapis.com").unwrap(),
            auth_url: Url::parse("https://accounts.google.com/o/oauth2/v2/auth").unwrap(),
            token_url: Url::parse("https://oauth2.googleapis.com/token").unwrap(),
            revoke_url: Url::parse("https://oauth2.googleapis.com/revoke").unwrap(),
            request_timeout: Duration::from_secs(5),
        }
    }

    fn oauth() -> OAuthClient {
        OAuthClient::new(&settings(), reqwest::Client::new()).unwrap()
    }

    #[test]
    fn the_consent_url_asks_for_offline_access_with_pkce_and_every_scope() {
        let request = oauth().consent_request(Some("alice@example.com")).unwrap();
        let query: std::collections::HashMap<String, String> =
            request.url.query_pairs().into_owned().collect();
        assert_eq!(query["response_type"], "code");
        assert_eq!(query["client_id"], "client-1.apps.googleusercontent.com");
        assert_eq!(
            query["redirect_uri"],
            "https://mcss.example.com/auth/callback"
        );
        assert_eq!(query["access_type"], "offline");
        assert_eq!(query["prompt"], "consent");
        assert_eq!(query["login_hint"], "alice@example.com");
        assert_eq!(query["code_challenge_method"], "S256");
        assert_eq!(query["state"], request.state);
        assert_eq!(query["scope"], SCOPES.join(" "));
        assert!(!request
            .url
            .as_str()
            .contains(request.pkce_verifier.expose_secret()));
        assert!(request
            .url
            .as_str()
            .starts_with("https://accounts.google.com/o/oauth2/v2/auth?"));
    }

    #[test]
    fn two_consent_requests_have_different_state_and_verifier() {
        let a = oauth().consent_request(None).unwrap();
        let b = oauth().consent_request(None).unwrap();
        assert_ne!(a.state, b.state);
        assert_ne!(
            a.pkce_verifier.expose_secret(),
            b.pkce_verifier.expose_secret()
        );
        assert!(!a.url.query_pairs().any(|(k, _)| k == "login_hint"));
    }

    #[test]
    fn a_consent_request_without_a_redirect_uri_is_a_configuration_error() {
        let mut s = settings();
        s.redirect_uri = None;
        let oauth = OAuthClient::new(&s, reqwest::Client::new()).unwrap();
        assert!(matches!(
            oauth.consent_request(None),
            Err(GoogleError::Config(_))
        ));
    }

    #[test]
    fn without_a_client_id_every_token_operation_is_a_configuration_error() {
        let mut s = settings();
        s.client_id = None;
        let client = OAuthClient::new(&s, reqwest::Client::new()).expect("the service still runs");
        assert!(!client.is_configured());
        assert!(matches!(
            client.consent_request(None),
            Err(GoogleError::Config(_))
        ));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let refreshed = runtime.block_on(client.refresh(&SecretString::from("r".to_owned())));
        assert!(matches!(refreshed, Err(GoogleError::Config(_))));
        let exchanged =
            runtime.block_on(client.exchange_code("c", &SecretString::from("v".to_owned())));
        assert!(matches!(exchanged, Err(GoogleError::Config(_))));
    }

    #[test]
    fn the_email_is_read_from_the_id_token_payload() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"iss":"https://accounts.google.com","email":"alice@example.com"}"#);
        let token = format!("eyJhbGciOiJSUzI1NiJ9.{payload}.sig");
        assert_eq!(
            email_from_id_token(&token).as_deref(),
            Some("alice@example.com")
        );
        assert_eq!(email_from_id_token("not-a-jwt"), None);
    }

    #[test]
    fn invalid_grant_from_the_token_endpoint_means_the_account_needs_reauth() {
        let response: BasicErrorResponse = serde_json::from_str(
            r#"{"error":"invalid_grant","error_description":"Token has been expired or revoked."}"#,
        )
        .unwrap();
        assert_eq!(
            classify_token_error(RequestTokenError::ServerResponse(response)),
            GoogleError::InvalidGrant
        );
        let response: BasicErrorResponse =
            serde_json::from_str(r#"{"error":"invalid_client"}"#).unwrap();
        assert!(matches!(
            classify_token_error(RequestTokenError::ServerResponse(response)),
            GoogleError::Permanent { status: 401, .. }
        ));
        assert!(
            classify_token_error(RequestTokenError::Request(HttpClientError::Other(
                "the token endpoint answered 503".into()
            )))
            .is_retryable()
        );
    }

    #[tokio::test]
    async fn a_cached_token_is_reused_and_an_invalidated_one_is_dropped() {
        let token = SecretString::from("ya29.cached".to_owned());
        let source = TokenSource::with_access_token(
            oauth(),
            SecretString::from("1//refresh".to_owned()),
            token.clone(),
            Some(Duration::from_secs(3600)),
        );
        assert_eq!(
            source.access_token().await.unwrap().expose_secret(),
            "ya29.cached"
        );
        // A different token being rejected does not drop ours.
        source
            .invalidate(&SecretString::from("ya29.other".to_owned()))
            .await;
        assert!(source.inner.cached.lock().await.is_some());
        source.invalidate(&token).await;
        assert!(source.inner.cached.lock().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_is_served_until_a_minute_before_expiry_and_then_refreshed() {
        // Nothing listens on port 9: a refresh attempt fails at once, which shows it happened.
        let mut s = settings();
        s.token_url = Url::parse("http://127.0.0.1:9/token").unwrap();
        let oauth = OAuthClient::new(&s, reqwest::Client::new()).unwrap();
        let source = TokenSource::with_access_token(
            oauth,
            SecretString::from("1//refresh".to_owned()),
            SecretString::from("ya29.cached".to_owned()),
            Some(Duration::from_secs(3600)),
        );
        tokio::time::advance(Duration::from_secs(3600 - 61)).await;
        assert_eq!(
            source.access_token().await.unwrap().expose_secret(),
            "ya29.cached"
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        let err = source.access_token().await.unwrap_err();
        assert!(
            err.is_retryable(),
            "an unreachable token endpoint is transient: {err:?}"
        );
    }

    #[test]
    fn the_refresh_deadline_keeps_a_minute_or_half_a_short_lifetime() {
        assert_eq!(
            usable_for(Some(Duration::from_secs(3599))),
            Duration::from_secs(3539)
        );
        assert_eq!(
            usable_for(Some(Duration::from_secs(20))),
            Duration::from_secs(10)
        );
        assert_eq!(usable_for(None), Duration::from_secs(3540));
    }

    #[test]
    fn debug_output_never_shows_a_token() {
        let source = TokenSource::new(oauth(), SecretString::from("1//very-secret".to_owned()));
        assert!(!format!("{source:?}").contains("very-secret"));
        assert!(!format!("{:?}", oauth()).contains("shh"));
    }
}
