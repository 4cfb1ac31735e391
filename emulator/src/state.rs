//! The emulator's in-memory world: accounts, calendars with their events, OAuth grants and
//! push channels.
//!
//! Locking is fine-grained so that thousands of accounts can be served concurrently: the maps
//! of accounts, calendars, tokens and channels sit behind `parking_lot::RwLock`s that are only
//! held for a lookup, and each calendar's events sit behind that calendar's own `Mutex`. No lock
//! is ever held across an `.await`. Every change to any event takes a number from one global
//! change sequence ([`Shared::next_seq`]); sync tokens are positions in that sequence.
use crate::clock::Clock;
use crate::events::StoredEvent;
use crate::faults::Faults;
use crate::push::Channel;
use parking_lot::{Mutex, RwLock};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The scope seeded refresh tokens carry unless told otherwise.
pub const DEFAULT_SCOPES: &[&str] = &[
    "https://www.googleapis.com/auth/calendar",
    "openid",
    "email",
];

/// Knobs that tests change at run time through `PUT /emulator/settings`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Settings {
    /// Lifetime of issued access tokens (Google: 3600 s).
    pub access_token_ttl_secs: i64,
    /// When set, refresh tokens die this many seconds after issue (Google's "Testing" mode: 7 days).
    pub refresh_token_ttl_secs: Option<i64>,
    /// Per-user sliding-window limit per minute; `None` disables it.
    pub rate_limit_per_minute: Option<u32>,
    /// Accept `http://` webhook addresses (Google requires HTTPS).
    pub allow_http_webhooks: bool,
    /// Fixed latency added to every Calendar API request.
    pub latency_ms: u64,
    /// How far back `updatedMin` may reach before 410 `updatedMinTooLongAgo`.
    pub updated_min_window_secs: i64,
    /// Cap on items per list page (to force short pages), on top of `maxResults`.
    pub page_size_cap: Option<usize>,
    /// Every N-th page of a listing is returned empty (with a `nextPageToken`); 0 disables.
    pub empty_page_every: u32,
    /// Default channel lifetime when `params.ttl` and `expiration` are absent.
    pub channel_default_ttl_secs: i64,
    /// Longest channel lifetime granted.
    pub channel_max_ttl_secs: i64,
    /// First retry delay of a failed push delivery; doubles each attempt.
    pub push_retry_base_ms: u64,
    /// Delivery attempts per notification before it is given up.
    pub push_max_attempts: u32,
    /// How far ahead open-ended series are expanded by `singleEvents=true`.
    pub expansion_horizon_days: i64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            access_token_ttl_secs: 3600,
            refresh_token_ttl_secs: None,
            rate_limit_per_minute: Some(600),
            allow_http_webhooks: false,
            latency_ms: 0,
            updated_min_window_secs: 30 * 86400,
            page_size_cap: None,
            empty_page_every: 0,
            channel_default_ttl_secs: 604_800,
            channel_max_ttl_secs: 30 * 86400,
            push_retry_base_ms: 1000,
            push_max_attempts: 5,
            expansion_horizon_days: 365,
        }
    }
}

/// One Google account with its primary calendar (id = e-mail) and any secondary calendars.
#[derive(Debug)]
pub struct Account {
    pub email: String,
    pub time_zone: String,
    /// Calendar ids in calendarList order, primary first.
    pub calendars: RwLock<Vec<String>>,
    /// Emulator-clock milliseconds of accepted requests in the last minute (sliding window).
    pub window: Mutex<VecDeque<i64>>,
    /// The latest refresh token minted for the emulator's own client (what `accounts()` shows).
    pub refresh_token: RwLock<String>,
}

/// A calendar and its events.
#[derive(Debug)]
pub struct Calendar {
    pub id: String,
    pub owner: String,
    pub summary: String,
    pub time_zone: String,
    pub primary: bool,
    /// Stable `resourceId` of this calendar's events collection for push channels.
    pub resource_id: String,
    pub data: Mutex<CalendarData>,
}

/// Mutable part of a calendar, guarded by the calendar's own lock.
#[derive(Debug, Default)]
pub struct CalendarData {
    /// Every event ever stored, including tombstones and exceptions, by id.
    pub events: HashMap<String, StoredEvent>,
    /// Sync tokens minted before this sequence number are refused with 410.
    pub sync_floor: u64,
    /// Push channels watching this calendar.
    pub channels: Vec<Arc<Channel>>,
}

/// A live access token.
#[derive(Debug, Clone)]
pub struct AccessGrant {
    pub email: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub expires_at_ms: i64,
    /// The refresh token it came from: revoking that one kills this one too.
    pub refresh_token: Option<String>,
}

/// A refresh token (a "grant" in Google's words).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RefreshGrant {
    pub email: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub revoked: bool,
    pub expires_at_ms: Option<i64>,
}

/// An authorization code waiting to be exchanged at `/token`.
#[derive(Debug, Clone)]
pub struct AuthCode {
    pub email: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub code_challenge: Option<(String, String)>,
    pub offline: bool,
    pub expires_at_ms: i64,
}

/// An authorization request shown on the consent page, waiting for a click.
#[derive(Debug, Clone)]
pub struct PendingAuth {
    pub client_id: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub state: Option<String>,
    pub code_challenge: Option<(String, String)>,
    pub offline: bool,
}

/// Everything the handlers share.
#[derive(Debug)]
pub struct Shared {
    pub settings: RwLock<Settings>,
    pub clock: Clock,
    pub client_id: String,
    pub client_secret: String,
    pub accounts: RwLock<HashMap<String, Arc<Account>>>,
    /// Account emails in creation order (for listing).
    pub account_order: RwLock<Vec<String>>,
    pub calendars: RwLock<HashMap<String, Arc<Calendar>>>,
    pub access_tokens: RwLock<HashMap<String, AccessGrant>>,
    pub refresh_tokens: RwLock<HashMap<String, RefreshGrant>>,
    pub codes: Mutex<HashMap<String, AuthCode>>,
    pub pending_auth: Mutex<HashMap<String, PendingAuth>>,
    /// Every channel id ever used (ids are never reusable), with the channel.
    pub channels: RwLock<HashMap<String, Arc<Channel>>>,
    pub faults: Faults,
    pub counters: crate::faults::Counters,
    seq: AtomicU64,
    pub push_client: reqwest::Client,
    /// Base URL of this emulator, used to build `resourceUri`s.
    pub base_url: RwLock<String>,
    /// The full router, for the batch endpoint to dispatch parts through; cleared at
    /// shutdown to break the router → state → router cycle.
    pub router: RwLock<Option<axum::Router>>,
}

/// What a new account looks like from outside.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccountInfo {
    pub email: String,
    pub calendar_id: String,
    pub refresh_token: String,
}

impl Shared {
    pub fn new(client_id: String, client_secret: String, settings: Settings) -> Self {
        Self {
            settings: RwLock::new(settings),
            clock: Clock::default(),
            client_id,
            client_secret,
            accounts: RwLock::new(HashMap::new()),
            account_order: RwLock::new(Vec::new()),
            calendars: RwLock::new(HashMap::new()),
            access_tokens: RwLock::new(HashMap::new()),
            refresh_tokens: RwLock::new(HashMap::new()),
            codes: Mutex::new(HashMap::new()),
            pending_auth: Mutex::new(HashMap::new()),
            channels: RwLock::new(HashMap::new()),
            faults: Faults::default(),
            counters: Default::default(),
            seq: AtomicU64::new(1),
            push_client: reqwest::Client::builder()
                .user_agent(
                    "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)",
                )
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            base_url: RwLock::new(String::new()),
            router: RwLock::new(None),
        }
    }

    /// Takes the next number of the global change sequence.
    pub fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::SeqCst)
    }

    /// The sequence number the next change will get (a sync token "now").
    pub fn current_seq(&self) -> u64 {
        self.seq.load(Ordering::SeqCst)
    }

    pub fn settings(&self) -> Settings {
        self.settings.read().clone()
    }

    pub fn account(&self, email: &str) -> Option<Arc<Account>> {
        self.accounts.read().get(email).cloned()
    }

    pub fn calendar(&self, id: &str) -> Option<Arc<Calendar>> {
        self.calendars.read().get(id).cloned()
    }

    /// Creates an account with its primary calendar and one refresh token for our client.
    /// An existing e-mail gets a fresh refresh token instead.
    pub fn create_account(
        &self,
        email: Option<String>,
        time_zone: Option<String>,
        scopes: Option<Vec<String>>,
    ) -> AccountInfo {
        let email = email.unwrap_or_else(|| {
            let n = self.account_order.read().len() + 1;
            format!("user{n:02}@example.test")
        });
        let tz = time_zone.unwrap_or_else(|| "UTC".to_string());
        let exists = self.accounts.read().contains_key(&email);
        if !exists {
            let account = Arc::new(Account {
                email: email.clone(),
                time_zone: tz.clone(),
                calendars: RwLock::new(vec![email.clone()]),
                window: Mutex::new(VecDeque::new()),
                refresh_token: RwLock::new(String::new()),
            });
            let calendar = Arc::new(Calendar {
                id: email.clone(),
                owner: email.clone(),
                summary: email.clone(),
                time_zone: tz,
                primary: true,
                resource_id: random_token(27),
                data: Mutex::new(CalendarData::default()),
            });
            self.calendars.write().insert(email.clone(), calendar);
            let mut accounts = self.accounts.write();
            if accounts.insert(email.clone(), account).is_none() {
                self.account_order.write().push(email.clone());
            }
        }
        let scopes =
            scopes.unwrap_or_else(|| DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect());
        let refresh_token = self.mint_refresh_token(&email, &self.client_id.clone(), scopes);
        if let Some(account) = self.account(&email) {
            *account.refresh_token.write() = refresh_token.clone();
        }
        AccountInfo {
            email: email.clone(),
            calendar_id: email,
            refresh_token,
        }
    }

    /// Adds a secondary calendar to an account; its id looks like Google's group calendars.
    pub fn create_secondary_calendar(
        &self,
        owner: &str,
        summary: String,
        time_zone: Option<String>,
    ) -> Option<Arc<Calendar>> {
        let account = self.account(owner)?;
        let id = format!("{}@group.calendar.google.com", random_token(26));
        let calendar = Arc::new(Calendar {
            id: id.clone(),
            owner: owner.to_string(),
            summary,
            time_zone: time_zone.unwrap_or_else(|| account.time_zone.clone()),
            primary: false,
            resource_id: random_token(27),
            data: Mutex::new(CalendarData::default()),
        });
        self.calendars.write().insert(id.clone(), calendar.clone());
        account.calendars.write().push(id);
        Some(calendar)
    }

    pub fn mint_refresh_token(&self, email: &str, client_id: &str, scopes: Vec<String>) -> String {
        let token = format!("1//emu-{}", random_token(40));
        let ttl = self.settings.read().refresh_token_ttl_secs;
        let expires_at_ms = ttl.map(|t| self.clock.now_ms() + t * 1000);
        self.refresh_tokens.write().insert(
            token.clone(),
            RefreshGrant {
                email: email.into(),
                client_id: client_id.into(),
                scopes,
                revoked: false,
                expires_at_ms,
            },
        );
        token
    }

    /// Issues an access token; returns it with its lifetime in seconds.
    pub fn mint_access_token(
        &self,
        email: &str,
        client_id: &str,
        scopes: Vec<String>,
        refresh_token: Option<String>,
    ) -> (String, i64) {
        let token = format!("ya29.emu-{}", random_token(48));
        let ttl = self.settings.read().access_token_ttl_secs;
        self.access_tokens.write().insert(
            token.clone(),
            AccessGrant {
                email: email.into(),
                client_id: client_id.into(),
                scopes,
                expires_at_ms: self.clock.now_ms() + ttl * 1000,
                refresh_token,
            },
        );
        (token, ttl)
    }

    /// Revokes every refresh token of an account (and thereby their access tokens).
    pub fn revoke_account(&self, email: &str) -> usize {
        let mut n = 0;
        for grant in self.refresh_tokens.write().values_mut() {
            if grant.email == email && !grant.revoked {
                grant.revoked = true;
                n += 1;
            }
        }
        self.access_tokens.write().retain(|_, g| g.email != email);
        n
    }

    pub fn account_infos(&self) -> Vec<AccountInfo> {
        let order = self.account_order.read().clone();
        order
            .into_iter()
            .filter_map(|email| {
                let account = self.account(&email)?;
                let refresh_token = account.refresh_token.read().clone();
                Some(AccountInfo {
                    calendar_id: email.clone(),
                    email,
                    refresh_token,
                })
            })
            .collect()
    }
}

/// A random lowercase base32hex string (`[0-9a-v]`), the alphabet of Google's event ids.
pub fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuv";
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| ALPHABET[rng.gen_range(0..32)] as char)
        .collect()
}
