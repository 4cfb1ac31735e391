//! Admin sign-in: server-side sessions behind a signed cookie, per-session CSRF tokens, the
//! login form's own CSRF nonce, and the per-client login limit.
//!
//! Lifecycle: sessions and login attempts live in the database (`store::web_state`), and the
//! cookie key is generated once and kept there too, so any replica serves any signed-in
//! request, and a restart signs nobody out. Only hashes of session ids are stored. A
//! database that does not answer signs the request out (a page asks to sign in again) and
//! refuses logins, rather than letting anyone in.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use cookie::{Cookie, CookieJar, Key, SameSite};
use rand::RngCore as _;
use subtle::ConstantTimeEq as _;

use crate::store::web_state::secret_hash;
use crate::store::Store;

/// The session cookie (holds only a random session id, signed).
pub(crate) const SESSION_COOKIE: &str = "mcss_admin";
/// The login form's nonce cookie (double-submit CSRF before a session exists).
pub(crate) const LOGIN_COOKIE: &str = "mcss_login";
/// Sessions kept at most; the oldest are dropped beyond it (a flood of logins cannot grow
/// memory without bound).
const MAX_SESSIONS: u64 = 1000;

/// 32 random bytes as hex: session ids, CSRF tokens, nonces.
pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Equality in time independent of where the first difference is.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// What a signed-in request knows about its session.
#[derive(Debug, Clone)]
pub(crate) struct SessionInfo {
    pub id: String,
    pub csrf: String,
}

/// The session table (in the store) and the cookie key.
pub(crate) struct Sessions {
    key: Key,
    ttl: Duration,
    secure: bool,
    store: Store,
}

impl Sessions {
    /// `key` is the installation's cookie key (`Store::cookie_key`), the same on every
    /// replica.
    pub fn new(store: Store, key: &[u8; 64], ttl: Duration, secure: bool) -> Self {
        Self {
            key: Key::from(key),
            ttl,
            secure,
            store,
        }
    }

    /// Opens a session and returns the `Set-Cookie` value that carries it; `None` when the
    /// store cannot keep it.
    pub async fn create(&self) -> Option<(SessionInfo, HeaderValue)> {
        let id = random_token();
        let csrf = random_token();
        if let Err(e) = self
            .store
            .create_session(&secret_hash(&id), &csrf, self.ttl, MAX_SESSIONS)
            .await
        {
            tracing::error!(error = %e, "cannot store an admin session");
            return None;
        }
        let cookie = self.signed_cookie(SESSION_COOKIE, id.clone(), Some(self.ttl));
        Some((SessionInfo { id, csrf }, cookie))
    }

    /// The live session named by the request's signed cookie, if any.
    pub async fn current(&self, headers: &HeaderMap) -> Option<SessionInfo> {
        let id = self.read_signed(headers, SESSION_COOKIE)?;
        match self.store.session(&secret_hash(&id)).await {
            Ok(Some(session)) => Some(SessionInfo {
                id,
                csrf: session.csrf,
            }),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read an admin session");
                None
            }
        }
    }

    pub async fn end(&self, id: &str) {
        if let Err(e) = self.store.end_session(&secret_hash(id)).await {
            tracing::warn!(error = %e, "cannot end an admin session");
        }
    }

    pub async fn set_flash(&self, id: &str, message: impl Into<String>) {
        let message = message.into();
        if let Err(e) = self
            .store
            .set_session_flash(&secret_hash(id), &message)
            .await
        {
            tracing::warn!(error = %e, "cannot keep a notice for the next page");
        }
    }

    pub async fn take_flash(&self, id: &str) -> Option<String> {
        match self.store.take_session_flash(&secret_hash(id)).await {
            Ok(flash) => flash,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the notice of a session");
                None
            }
        }
    }

    /// A `Set-Cookie` value that deletes `name`.
    pub fn clear_cookie(&self, name: &'static str) -> HeaderValue {
        let mut cookie = self.base_cookie(name, String::new());
        cookie.make_removal();
        header_value(&cookie)
    }

    /// A fresh login nonce and the cookie carrying it.
    pub fn login_nonce(&self) -> (String, HeaderValue) {
        let nonce = random_token();
        let cookie = self.signed_cookie(LOGIN_COOKIE, nonce.clone(), None);
        (nonce, cookie)
    }

    /// Whether the login form's `csrf` field matches its cookie.
    pub fn login_nonce_matches(&self, headers: &HeaderMap, submitted: &str) -> bool {
        self.read_signed(headers, LOGIN_COOKIE)
            .is_some_and(|nonce| same_secret(&nonce, submitted))
    }

    fn base_cookie(&self, name: &'static str, value: String) -> Cookie<'static> {
        Cookie::build((name, value))
            .path("/")
            .http_only(true)
            .same_site(SameSite::Strict)
            .secure(self.secure)
            .build()
    }

    fn signed_cookie(
        &self,
        name: &'static str,
        value: String,
        max_age: Option<Duration>,
    ) -> HeaderValue {
        let mut cookie = self.base_cookie(name, value);
        if let Some(age) = max_age {
            cookie.set_max_age(cookie::time::Duration::seconds(
                i64::try_from(age.as_secs()).unwrap_or(i64::MAX),
            ));
        }
        let mut jar = CookieJar::new();
        jar.signed_mut(&self.key).add(cookie);
        let signed = jar
            .get(name)
            .cloned()
            .expect("a cookie just added to the jar is in it");
        header_value(&signed)
    }

    fn read_signed(&self, headers: &HeaderMap, name: &str) -> Option<String> {
        let mut jar = CookieJar::new();
        for header in headers.get_all(COOKIE) {
            let Ok(text) = header.to_str() else { continue };
            for cookie in Cookie::split_parse_encoded(text.to_owned()).flatten() {
                jar.add_original(cookie.into_owned());
            }
        }
        jar.signed(&self.key)
            .get(name)
            .map(|c| c.value().to_owned())
    }
}

fn header_value(cookie: &Cookie<'_>) -> HeaderValue {
    HeaderValue::from_str(&cookie.encoded().to_string())
        .expect("a percent-encoded cookie is a valid header value")
}

/// Adds `cookie` as a `Set-Cookie` header.
pub(crate) fn set_cookie(headers: &mut HeaderMap, cookie: HeaderValue) {
    headers.append(SET_COOKIE, cookie);
}

/// A sliding one-minute window of login attempts per client address, shared by every replica.
pub(crate) struct LoginLimiter {
    per_minute: u32,
    store: Store,
}

const WINDOW: Duration = Duration::from_secs(60);

impl LoginLimiter {
    pub fn new(store: Store, per_minute: u32) -> Self {
        Self { per_minute, store }
    }

    /// Records an attempt from `client`; `false` when it is over the limit (the attempt is
    /// refused and not counted, so waiting a minute always helps), or when the store cannot
    /// tell.
    pub async fn allow(&self, client: IpAddr) -> bool {
        match self
            .store
            .allow_login_attempt(&client.to_string(), self.per_minute, WINDOW)
            .await
        {
            Ok(allowed) => allowed,
            Err(e) => {
                tracing::warn!(error = %e, "cannot count a login attempt; refusing it");
                false
            }
        }
    }
}

/// The client address a login attempt is counted against: the TCP peer, or — when the peer
/// is a proxy on a private or loopback address (Railway's edge, a local reverse proxy) — the
/// last address that proxy appended to `X-Forwarded-For`. A client cannot choose its bucket
/// by sending that header itself to a public listener.
pub(crate) fn client_ip(parts: &Parts) -> IpAddr {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let behind_proxy = peer.is_none_or(|ip| match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| v4.is_private() || v4.is_loopback())
        }
    });
    if behind_proxy {
        let forwarded = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|s| s.trim().parse::<IpAddr>().ok())
            .next_back();
        if let Some(ip) = forwarded {
            return ip;
        }
    }
    peer.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_equal_only_when_identical() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
    }
}
