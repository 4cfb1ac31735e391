//! Admin sign-in: server-side sessions behind a signed cookie, per-session CSRF tokens, the
//! login form's own CSRF nonce, and the per-client login limit.
//!
//! Lifecycle: everything here lives in memory for the life of the process. The cookie key is
//! random per process, so a restart signs everybody out (documented in `docs/operations.md`);
//! with several replicas an operator needs sticky sessions or one admin replica.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use cookie::{Cookie, CookieJar, Key, SameSite};
use parking_lot::Mutex;
use rand::RngCore as _;
use subtle::ConstantTimeEq as _;

/// The session cookie (holds only a random session id, signed).
pub(crate) const SESSION_COOKIE: &str = "mcss_admin";
/// The login form's nonce cookie (double-submit CSRF before a session exists).
pub(crate) const LOGIN_COOKIE: &str = "mcss_login";
/// Sessions kept at most; the oldest are dropped beyond it (a flood of logins cannot grow
/// memory without bound).
const MAX_SESSIONS: usize = 1000;

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

struct SessionData {
    csrf: String,
    expires_at: Instant,
    created_at: Instant,
    /// A one-shot notice for the next page ("Sync started").
    flash: Option<String>,
}

/// The session table and the cookie key.
pub(crate) struct Sessions {
    key: Key,
    ttl: Duration,
    secure: bool,
    table: Mutex<HashMap<String, SessionData>>,
}

impl Sessions {
    pub fn new(ttl: Duration, secure: bool) -> Self {
        Self {
            key: Key::generate(),
            ttl,
            secure,
            table: Mutex::new(HashMap::new()),
        }
    }

    /// Opens a session and returns the `Set-Cookie` value that carries it.
    pub fn create(&self) -> (SessionInfo, HeaderValue) {
        let id = random_token();
        let csrf = random_token();
        let now = Instant::now();
        let mut table = self.table.lock();
        table.retain(|_, s| s.expires_at > now);
        if table.len() >= MAX_SESSIONS {
            if let Some(oldest) = table
                .iter()
                .min_by_key(|(_, s)| s.created_at)
                .map(|(k, _)| k.clone())
            {
                table.remove(&oldest);
            }
        }
        table.insert(
            id.clone(),
            SessionData {
                csrf: csrf.clone(),
                expires_at: now + self.ttl,
                created_at: now,
                flash: None,
            },
        );
        drop(table);
        let cookie = self.signed_cookie(SESSION_COOKIE, id.clone(), Some(self.ttl));
        (SessionInfo { id, csrf }, cookie)
    }

    /// The live session named by the request's signed cookie, if any.
    pub fn current(&self, headers: &HeaderMap) -> Option<SessionInfo> {
        let id = self.read_signed(headers, SESSION_COOKIE)?;
        let mut table = self.table.lock();
        let data = table.get(&id)?;
        if Instant::now() >= data.expires_at {
            table.remove(&id);
            return None;
        }
        Some(SessionInfo {
            id,
            csrf: data.csrf.clone(),
        })
    }

    pub fn end(&self, id: &str) {
        self.table.lock().remove(id);
    }

    pub fn set_flash(&self, id: &str, message: impl Into<String>) {
        if let Some(data) = self.table.lock().get_mut(id) {
            data.flash = Some(message.into());
        }
    }

    pub fn take_flash(&self, id: &str) -> Option<String> {
        self.table.lock().get_mut(id).and_then(|d| d.flash.take())
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

/// A sliding one-minute window of login attempts per client address.
pub(crate) struct LoginLimiter {
    per_minute: u32,
    attempts: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

const WINDOW: Duration = Duration::from_secs(60);

impl LoginLimiter {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            attempts: Mutex::new(HashMap::new()),
        }
    }

    /// Records an attempt from `client`; `false` when it is over the limit (the attempt is
    /// refused and not counted, so waiting a minute always helps).
    pub fn allow(&self, client: IpAddr) -> bool {
        let now = Instant::now();
        let mut attempts = self.attempts.lock();
        if attempts.len() > 10_000 {
            attempts.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < WINDOW));
        }
        let queue = attempts.entry(client).or_default();
        while queue
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            queue.pop_front();
        }
        if queue.len() >= self.per_minute as usize {
            return false;
        }
        queue.push_back(now);
        true
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
    fn the_sixth_attempt_in_a_minute_is_refused() {
        let limiter = LoginLimiter::new(5);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..5 {
            assert!(limiter.allow(ip));
        }
        assert!(!limiter.allow(ip));
        assert!(limiter.allow("192.0.2.2".parse().unwrap()));
    }

    #[test]
    fn a_session_cookie_signed_by_another_process_is_ignored() {
        let ours = Sessions::new(Duration::from_secs(60), false);
        let theirs = Sessions::new(Duration::from_secs(60), false);
        let (_, cookie) = theirs.create();
        let mut headers = HeaderMap::new();
        let pair = cookie
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        headers.insert(COOKIE, HeaderValue::from_str(&pair).unwrap());
        assert!(theirs.current(&headers).is_some());
        assert!(ours.current(&headers).is_none());
    }

    #[test]
    fn secrets_compare_equal_only_when_identical() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
    }
}
