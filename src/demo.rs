//! `mcss demo`: the whole service on one machine, with nothing to configure.
//!
//! Role: start `gcal-emulator` in-process (five accounts, plain-HTTP webhooks allowed), the
//! service on a temporary SQLite database with every Google URL pointing at the emulator and
//! `WEBHOOK_BASE_URL` at the service itself, connect "Calendar 01".."Calendar 05", print the
//! dashboard's and the emulator's addresses and a generated password, and serve until
//! Ctrl-C. It listens on 127.0.0.1 unless `--host` says otherwise, and writes its logs to a
//! file it names (or to standard error), never into the banner on standard output.
//!
//! Collaborators: [`crate::ops::connect_account`] and `Control::start_account` connect the
//! calendars; the dashboard's demo panel calls [`DemoActions`] (implemented here by
//! [`EmulatorDemo`], which edits calendars through the emulator's Google API as their owner
//! would — the service sees only real changes); `--scenario NAME` runs a scripted series of
//! such edits after start-up. A calendar connected later through the dashboard (the
//! emulator's consent page can add a new test account) is offered by the panel too.
//!
//! Lifecycle: [`Demo::start`] builds everything (tests use it too); [`run`] serves it and
//! deletes the temporary folder at the end (the log file stays).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use chrono::{DateTime, Datelike as _, Duration as Days, NaiveDate, Timelike as _, Utc};
use clap::builder::{PossibleValue, PossibleValuesParser};
use gcal_emulator::state::Shared;
use gcal_emulator::{Emulator, EmulatorConfig, EmulatorHandle};
use parking_lot::Mutex;
use secrecy::SecretString;
use serde_json::{json, Value};

use crate::config::Settings;
use crate::domain::{AccountId, CalendarId, EventId};
use crate::google::{AccountClient, GoogleClient, OAuthClient, TokenSource};
use crate::http::{DemoAction, DemoActions};
use crate::ops::{self, ConnectRequest};
use crate::services::Services;
use crate::startup::Application;
use crate::store::Store;

/// The scripted scenarios of `mcss demo --scenario NAME`, with one line each.
pub const SCENARIOS: [(&str, &str); 4] = [
    (
        "busy-week",
        "meetings on three calendars across the next five days",
    ),
    (
        "recurring",
        "a daily stand-up and a weekly one-to-one, then one cancelled occurrence",
    ),
    (
        "conflict",
        "overlapping meetings on two calendars and a free-time event that is not mirrored",
    ),
    (
        "two-people",
        "a second person's three calendars in a group of their own (family); blocks never cross groups",
    ),
];

/// The group and the calendars of the second person in `--scenario two-people`: a primary
/// calendar and two secondary ones of one Google account.
pub const FAMILY_GROUP: &str = "family";
/// The second person's e-mail at the emulator.
pub const PARTNER_EMAIL: &str = "partner@example.test";
/// Their calendars' names: the primary one first.
pub const FAMILY_CALENDARS: [&str; 3] = ["Partner", "Partner family", "Kids"];

fn scenario_values() -> PossibleValuesParser {
    PossibleValuesParser::new(
        SCENARIOS
            .iter()
            .map(|(name, what)| PossibleValue::new(*name).help(*what)),
    )
}

/// Options of `mcss demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Port of the dashboard and API (0 picks a free one).
    #[arg(long, env = "PORT", default_value_t = 3000)]
    pub port: u16,
    /// Address to listen on. The demo prints its password and fakes Google, so it stays on
    /// loopback unless you ask for another (e.g. 0.0.0.0 in a container).
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub host: IpAddr,
    /// Run a scripted scenario after start-up.
    #[arg(long, value_parser = scenario_values())]
    pub scenario: Option<String>,
    /// Where the logs go: a file, or `-` for standard error. Default: mcss-demo-<pid>.log in
    /// the system's temporary folder (kept after the demo stops). `LOG_LEVEL` sets the level.
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
}

/// Demo calendars the emulator creates (user01@example.test …).
pub const DEMO_ACCOUNTS: usize = 5;

fn alias(index: usize) -> String {
    format!("Calendar {:02}", index + 1)
}

/// A demo calendar, as its owner acts on it.
struct Owner {
    alias: String,
    email: String,
    calendar: CalendarId,
    client: AccountClient,
}

/// An event the panel or a scenario made.
#[derive(Debug, Clone)]
struct Made {
    key: u64,
    alias: String,
    id: EventId,
    what: String,
    /// When it starts, in words ("Tue 03 Mar 10:00 UTC").
    when: String,
}

/// [`DemoActions`] through the emulator's Google API, as the calendars' owners.
pub struct EmulatorDemo {
    shared: Arc<Shared>,
    store: Store,
    google: GoogleClient,
    oauth: OAuthClient,
    /// One client per owner (by e-mail), with the owner's own refresh token.
    clients: Mutex<HashMap<String, AccountClient>>,
    /// Events made by the panel or a scenario, newest last.
    made: Mutex<Vec<Made>>,
    next_key: Mutex<u64>,
}

impl EmulatorDemo {
    /// Acts on the emulator's accounts with their own refresh tokens (the owner's view, not
    /// the service's); calendars are named as the service's accounts name them.
    pub fn new(
        settings: &Settings,
        emulator: &EmulatorHandle,
        store: Store,
    ) -> anyhow::Result<Self> {
        let google = GoogleClient::new(&settings.google)?;
        let oauth = google.oauth(&settings.google)?;
        Ok(Self {
            shared: emulator.shared().clone(),
            store,
            google,
            oauth,
            clients: Mutex::new(HashMap::new()),
            made: Mutex::new(Vec::new()),
            next_key: Mutex::new(1),
        })
    }

    /// The owner of the calendar the service calls `alias`; before anything is connected,
    /// "Calendar NN" is the emulator's NN-th account.
    async fn owner(&self, alias: &str) -> Result<Owner, String> {
        let infos = self.shared.account_infos();
        let connected = self
            .store
            .account_by_alias(alias)
            .await
            .map_err(|e| format!("cannot read the accounts: {e}"))?;
        // A secondary calendar is reached through the account that owns it.
        let info = match &connected {
            Some(account) => self
                .shared
                .calendar(account.calendar_id.as_str())
                .and_then(|cal| infos.into_iter().find(|i| i.email == cal.owner)),
            None => alias
                .strip_prefix("Calendar ")
                .and_then(|n| n.parse::<usize>().ok())
                .and_then(|n| n.checked_sub(1))
                .and_then(|i| infos.into_iter().nth(i)),
        }
        .ok_or_else(|| format!("no demo calendar is called {alias:?}"))?;
        let client = self
            .clients
            .lock()
            .entry(info.email.clone())
            .or_insert_with(|| {
                self.google.account(TokenSource::new(
                    self.oauth.clone(),
                    SecretString::from(info.refresh_token.clone()),
                ))
            })
            .clone();
        let calendar = match connected {
            Some(account) => account.calendar_id,
            None => CalendarId::parse(&info.calendar_id)
                .map_err(|e| format!("emulator calendar id: {e}"))?,
        };
        Ok(Owner {
            alias: alias.to_owned(),
            calendar,
            email: info.email,
            client,
        })
    }

    /// Creates `body` on `alias` and remembers it as `what`; returns its id.
    async fn insert(&self, alias: &str, body: Value, what: &str) -> Result<EventId, String> {
        let owner = self.owner(alias).await?;
        let event = owner
            .client
            .events_insert(&owner.calendar, &body)
            .await
            .map_err(|e| e.to_string())?;
        let id = event
            .id
            .ok_or_else(|| "Google answered without an event id".to_owned())?;
        let key = {
            let mut next = self.next_key.lock();
            *next += 1;
            *next
        };
        self.made.lock().push(Made {
            key,
            alias: owner.alias,
            id: id.clone(),
            what: what.to_owned(),
            when: start_words(&body),
        });
        Ok(id)
    }

    async fn delete(&self, alias: &str, id: &EventId) -> Result<(), String> {
        let owner = self.owner(alias).await?;
        owner
            .client
            .events_delete(&owner.calendar, id)
            .await
            .map_err(|e| e.to_string())
    }

    async fn patch(&self, made: &Made, body: Value) -> Result<Value, String> {
        let owner = self.owner(&made.alias).await?;
        let event = owner
            .client
            .events_patch(&owner.calendar, &made.id, &body, None)
            .await
            .map_err(|e| e.to_string())?;
        Ok(serde_json::to_value(event).unwrap_or(Value::Null))
    }

    fn chosen(&self, key: Option<&str>) -> Result<Made, String> {
        let key: u64 = key
            .and_then(|k| k.parse().ok())
            .ok_or_else(|| "choose an event the demo made".to_owned())?;
        self.made
            .lock()
            .iter()
            .find(|m| m.key == key)
            .cloned()
            .ok_or_else(|| "that event is not one the demo made (or it was deleted)".to_owned())
    }

    fn forget(&self, key: u64) {
        self.made.lock().retain(|m| m.key != key);
    }

    fn remember_when(&self, key: u64, when: String) {
        if let Some(m) = self.made.lock().iter_mut().find(|m| m.key == key) {
            m.when = when;
        }
    }

    /// Moves `made` one hour later (an all-day event one day).
    async fn move_later(&self, made: &Made) -> Result<String, String> {
        let owner = self.owner(&made.alias).await?;
        let event = owner
            .client
            .events_get(&owner.calendar, &made.id)
            .await
            .map_err(|e| e.to_string())?;
        let event = serde_json::to_value(event).unwrap_or(Value::Null);
        let shift = |side: &Value| -> Option<Value> {
            if let Some(dt) = side["dateTime"].as_str() {
                let moved = DateTime::parse_from_rfc3339(dt).ok()? + Days::hours(1);
                let mut out = json!({"dateTime": moved.to_rfc3339()});
                if let Some(zone) = side["timeZone"].as_str() {
                    out["timeZone"] = json!(zone);
                }
                return Some(out);
            }
            let day = NaiveDate::parse_from_str(side["date"].as_str()?, "%Y-%m-%d").ok()?;
            Some(json!({"date": (day + Days::days(1)).to_string()}))
        };
        let (Some(start), Some(end)) = (shift(&event["start"]), shift(&event["end"])) else {
            return Err("the event has no start and end to move".into());
        };
        let body = json!({"start": start, "end": end});
        self.patch(made, body.clone()).await?;
        let when = start_words(&body);
        self.remember_when(made.key, when.clone());
        Ok(format!(
            "Moved {} on {} to {when}; its blocks move with it.",
            made.what, made.alias
        ))
    }

    async fn change(&self, made: &Made, action: DemoAction) -> Result<String, String> {
        let what = &made.what;
        let on = &made.alias;
        match action {
            DemoAction::Move => self.move_later(made).await,
            DemoAction::Rename => {
                let title = format!("Renamed demo event ({})", Utc::now().format("%H:%M:%S"));
                self.patch(made, json!({"summary": title})).await?;
                Ok(format!(
                    "Renamed {what} on {on}; its blocks' descriptions follow (their titles stay \"{on} Block\")."
                ))
            }
            DemoAction::MarkFree => {
                self.patch(made, json!({"transparency": "transparent"}))
                    .await?;
                Ok(format!(
                    "Marked {what} on {on} free; its blocks are removed (free time blocks nobody)."
                ))
            }
            DemoAction::MarkBusy => {
                self.patch(made, json!({"transparency": "opaque"})).await?;
                Ok(format!("Marked {what} on {on} busy; its blocks come back."))
            }
            DemoAction::Decline => {
                let owner = self.owner(on).await?;
                self.patch(
                    made,
                    json!({"attendees": [
                        {"email": "organizer@example.test", "organizer": true, "responseStatus": "accepted"},
                        {"email": owner.email, "self": true, "responseStatus": "declined"},
                    ]}),
                )
                .await?;
                Ok(format!(
                    "{what} on {on} is now an invitation its owner declined; its blocks are removed."
                ))
            }
            DemoAction::Delete => {
                self.delete(on, &made.id).await?;
                self.forget(made.key);
                Ok(format!("Deleted {what} from {on}; its blocks disappear."))
            }
            other => Err(format!("{} does not change an event", other.as_str())),
        }
    }
}

/// A timed event body in UTC.
fn timed(summary: &str, start: DateTime<Utc>, minutes: i64) -> Value {
    json!({
        "summary": summary,
        "start": {"dateTime": start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), "timeZone": "UTC"},
        "end": {"dateTime": (start + Days::minutes(minutes)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true), "timeZone": "UTC"},
    })
}

fn all_day(summary: &str, day: NaiveDate) -> Value {
    json!({
        "summary": summary,
        "start": {"date": day.to_string()},
        "end": {"date": (day + Days::days(1)).to_string()},
    })
}

/// "Tue 03 Mar 10:00 UTC" or "Wed 04 Mar, all day" for an event body's start.
fn start_words(body: &Value) -> String {
    let start = &body["start"];
    if let Some(at) = start["dateTime"]
        .as_str()
        .and_then(|dt| DateTime::parse_from_rfc3339(dt).ok())
    {
        return at
            .with_timezone(&Utc)
            .format("%a %d %b %H:%M UTC")
            .to_string();
    }
    start["date"]
        .as_str()
        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .map(|d| format!("{}, all day", d.format("%a %d %b")))
        .unwrap_or_else(|| "no time".into())
}

/// The next whole hour at least an hour from now.
fn in_an_hour() -> DateTime<Utc> {
    let t = Utc::now() + Days::hours(1);
    t.with_minute(0)
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(t)
        + Days::hours(1)
}

/// Tomorrow at `hour`:00 UTC.
fn tomorrow_at(hour: u32) -> DateTime<Utc> {
    let day = Utc::now().date_naive() + Days::days(1);
    day.and_hms_opt(hour, 0, 0)
        .expect("a whole hour below 24 is a valid time")
        .and_utc()
}

#[async_trait]
impl DemoActions for EmulatorDemo {
    async fn calendars(&self) -> Vec<String> {
        match self.store.list_accounts().await {
            Ok(accounts) => accounts
                .into_iter()
                .filter(|a| self.shared.calendar(a.calendar_id.as_str()).is_some())
                .map(|a| a.alias)
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "the demo panel cannot read the accounts");
                Vec::new()
            }
        }
    }

    async fn events(&self) -> Vec<(String, String)> {
        self.made
            .lock()
            .iter()
            .rev()
            .map(|m| {
                (
                    m.key.to_string(),
                    format!("{} · {} · {}", m.alias, m.when, m.what),
                )
            })
            .collect()
    }

    async fn perform(
        &self,
        calendar: &str,
        event: Option<&str>,
        action: DemoAction,
    ) -> Result<String, String> {
        if action.needs_event() {
            let made = self.chosen(event)?;
            return self.change(&made, action).await;
        }
        match action {
            DemoAction::Meeting => {
                let start = in_an_hour();
                self.insert(
                    calendar,
                    timed("Demo meeting", start, 60),
                    "a one-hour meeting",
                )
                .await?;
                Ok(format!(
                    "Created a one-hour meeting at {} UTC on {calendar}; its blocks will appear on the other calendars.",
                    start.format("%H:%M")
                ))
            }
            DemoAction::AllDay => {
                let day = Utc::now().date_naive() + Days::days(1);
                self.insert(calendar, all_day("Demo day off", day), "an all-day event")
                    .await?;
                Ok(format!("Created an all-day event on {day} on {calendar}."))
            }
            DemoAction::Weekly => {
                let start = tomorrow_at(10);
                let mut body = timed("Demo weekly", start, 30);
                body["recurrence"] = json!(["RRULE:FREQ=WEEKLY;COUNT=10"]);
                self.insert(calendar, body, "a weekly series").await?;
                Ok(format!(
                    "Created a weekly series (10 × 30 min, {}s 10:00 UTC) on {calendar}; it costs one block per other calendar, not ten.",
                    start.weekday()
                ))
            }
            DemoAction::DeleteLast => {
                let last = self
                    .made
                    .lock()
                    .iter()
                    .rev()
                    .find(|m| m.alias == calendar)
                    .cloned();
                let Some(made) = last else {
                    return Err(format!("the demo has not made anything on {calendar} yet"));
                };
                self.delete(calendar, &made.id).await?;
                self.forget(made.key);
                Ok(format!(
                    "Deleted {} from {calendar}; its blocks will disappear.",
                    made.what
                ))
            }
            other => Err(format!("{} needs an event", other.as_str())),
        }
    }
}

impl EmulatorDemo {
    /// Runs scenario `name`, returning one line per step.
    pub async fn scenario(&self, name: &str) -> Result<Vec<String>, String> {
        match name {
            "busy-week" => self.busy_week().await,
            "recurring" => self.recurring().await,
            "conflict" => self.conflict().await,
            "two-people" => self.two_people().await,
            other => Err(format!("unknown scenario {other:?}")),
        }
    }

    /// A meeting a day for five days, spread over the first three calendars.
    async fn busy_week(&self) -> Result<Vec<String>, String> {
        let mut done = Vec::new();
        let day0 = Utc::now().date_naive() + Days::days(1);
        for d in 0..5i64 {
            let on = alias(usize::try_from(d).unwrap_or(0) % 3);
            let hour = 9 + u32::try_from(d).unwrap_or(0);
            let start = (day0 + Days::days(d))
                .and_hms_opt(hour, 0, 0)
                .expect("hours 9..14 are valid")
                .and_utc();
            self.insert(
                &on,
                timed("Busy-week meeting", start, 60),
                "a busy-week meeting",
            )
            .await?;
            done.push(format!(
                "{on}: one-hour meeting {} UTC",
                start.format("%a %d %b %H:%M")
            ));
        }
        Ok(done)
    }

    /// Two series, one of them with a cancelled occurrence.
    async fn recurring(&self) -> Result<Vec<String>, String> {
        let mut done = Vec::new();
        let start = tomorrow_at(9);
        let mut standup = timed("Daily stand-up", start, 15);
        standup["recurrence"] = json!(["RRULE:FREQ=DAILY;COUNT=10"]);
        let series = self.insert(&alias(0), standup, "a daily stand-up").await?;
        done.push(format!("{}: daily stand-up 09:00 UTC × 10", alias(0)));
        let mut one_to_one = timed("Weekly 1:1", tomorrow_at(14), 30);
        one_to_one["recurrence"] = json!(["RRULE:FREQ=WEEKLY;COUNT=8"]);
        self.insert(&alias(1), one_to_one, "a weekly 1:1").await?;
        done.push(format!("{}: weekly 1:1 14:00 UTC × 8", alias(1)));
        let second = start + Days::days(1);
        let instance = EventId::parse(&format!("{}_{}", series, second.format("%Y%m%dT%H%M%SZ")))
            .map_err(|e| e.to_string())?;
        self.delete(&alias(0), &instance).await?;
        done.push(format!(
            "{}: cancelled the stand-up of {} (its block occurrence is cancelled too)",
            alias(0),
            second.format("%a %d %b")
        ));
        Ok(done)
    }

    /// Two overlapping meetings on two calendars, and a free event that blocks nobody.
    async fn conflict(&self) -> Result<Vec<String>, String> {
        let start = in_an_hour();
        self.insert(&alias(0), timed("Client call", start, 60), "a client call")
            .await?;
        self.insert(
            &alias(1),
            timed("Team review", start + Days::minutes(30), 60),
            "a team review",
        )
        .await?;
        let mut free = timed("Lunch (free)", start + Days::hours(2), 60);
        free["transparency"] = json!("transparent");
        self.insert(&alias(2), free, "a free-time event").await?;
        Ok(vec![
            format!("{}: client call {} UTC", alias(0), start.format("%H:%M")),
            format!(
                "{}: team review {} UTC, overlapping it; each calendar gets the other's block",
                alias(1),
                (start + Days::minutes(30)).format("%H:%M")
            ),
            format!(
                "{}: lunch marked free — not mirrored (free time blocks nobody)",
                alias(2)
            ),
        ])
    }

    /// Events in two groups: blocks stay inside each.
    async fn two_people(&self) -> Result<Vec<String>, String> {
        let start = tomorrow_at(10);
        self.insert(
            &alias(0),
            timed("Planning", start, 60),
            "a planning meeting",
        )
        .await?;
        self.insert(
            FAMILY_CALENDARS[0],
            timed("Dentist", start, 60),
            "a dentist appointment",
        )
        .await?;
        self.insert(
            FAMILY_CALENDARS[2],
            timed("School play", tomorrow_at(16), 90),
            "a school play",
        )
        .await?;
        Ok(vec![
            format!(
                "{}: planning {} UTC — blocks on the other four calendars of group default only",
                alias(0),
                start.format("%a %d %b %H:%M")
            ),
            format!(
                "{}: dentist at the same time — blocks on {} and {} only (group {FAMILY_GROUP})",
                FAMILY_CALENDARS[0], FAMILY_CALENDARS[1], FAMILY_CALENDARS[2]
            ),
            format!(
                "{}: school play {} UTC — blocks on {} and {}",
                FAMILY_CALENDARS[2],
                tomorrow_at(16).format("%H:%M"),
                FAMILY_CALENDARS[0],
                FAMILY_CALENDARS[1]
            ),
        ])
    }
}

/// What [`Demo::start`] needs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// 0 picks a free port.
    pub port: u16,
    /// Where to listen; `None` is 127.0.0.1.
    pub host: Option<IpAddr>,
    /// How many of the five demo calendars to connect at start (the browser tests connect
    /// more through the consent page).
    pub connect: usize,
    /// Where the SQLite database goes.
    pub data_dir: PathBuf,
    /// `None` generates one.
    pub admin_password: Option<String>,
    pub log_level: String,
    /// Also connect the second person's calendars in their own group (`--scenario
    /// two-people`).
    pub two_people: bool,
}

/// A started demo: emulator, built (not yet running) service, and how to reach it.
pub struct Demo {
    pub emulator: EmulatorHandle,
    pub app: Application,
    pub password: String,
    /// `http://127.0.0.1:PORT/admin`
    pub dashboard: String,
    pub actions: Arc<EmulatorDemo>,
    pub connected: Vec<AccountId>,
}

/// The address a browser on this machine uses for `host`.
fn reachable(host: IpAddr) -> String {
    match host {
        h if h.is_unspecified() => "127.0.0.1".to_owned(),
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    }
}

impl Demo {
    pub async fn start(options: DemoOptions) -> anyhow::Result<Demo> {
        let emulator = Emulator::start(EmulatorConfig {
            accounts: DEMO_ACCOUNTS,
            settings: gcal_emulator::Settings {
                allow_http_webhooks: true,
                ..gcal_emulator::Settings::default()
            },
            ..EmulatorConfig::default()
        })
        .await
        .context("cannot start the Google Calendar emulator")?;
        let host = options.host.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let port = match options.port {
            0 => free_port(host)?,
            p => p,
        };
        let password = options
            .admin_password
            .unwrap_or_else(|| crate::config::EncryptionKey::generate().to_hex()[..16].to_owned());
        let me = format!("http://{}:{port}", reachable(host));
        let settings = demo_settings(
            &emulator,
            port,
            &me,
            &options.data_dir,
            &password,
            &options.log_level,
        )?;

        let connected =
            connect_calendars(&emulator, &settings, options.connect, options.two_people).await?;
        let mut app = Application::build_on(settings.clone(), Some(host)).await?;
        let actions = Arc::new(EmulatorDemo::new(
            &settings,
            &emulator,
            app.state().store.clone(),
        )?);
        app.admin_config_mut().demo = Some(actions.clone() as Arc<dyn DemoActions>);
        for id in &connected {
            app.state()
                .control
                .start_account(*id)
                .await
                .with_context(|| format!("cannot start the actors of account {id}"))?;
        }
        Ok(Demo {
            dashboard: format!("http://{}:{}/admin", reachable(host), app.port()),
            emulator,
            app,
            password,
            actions,
            connected,
        })
    }
}

/// Connects the demo's calendars before the service starts, on the same database: the
/// first `count` emulator accounts, and the second person's with `two_people`.
async fn connect_calendars(
    emulator: &EmulatorHandle,
    settings: &Settings,
    count: usize,
    two_people: bool,
) -> anyhow::Result<Vec<AccountId>> {
    let store = Store::connect(settings).await?;
    store.migrate().await?;
    let services = Services::build(Arc::new(settings.clone()), store.clone()).await?;
    let mut connected = Vec::new();
    for (i, info) in emulator.accounts().into_iter().take(count).enumerate() {
        let account = ops::connect_account(
            &services,
            ConnectRequest {
                group: None,
                alias: alias(i),
                refresh_token: SecretString::from(info.refresh_token),
                calendar_id: None,
                email: Some(info.email),
            },
        )
        .await
        .with_context(|| format!("cannot connect {}", alias(i)))?;
        connected.push(account.id);
    }
    if two_people {
        connected.extend(connect_family(emulator, &services).await?);
    }
    store.close().await;
    Ok(connected)
}

/// The second person of `--scenario two-people`: one Google account with a primary and two
/// secondary calendars, connected in [`FAMILY_GROUP`] through the one refresh token.
async fn connect_family(
    emulator: &EmulatorHandle,
    services: &Services,
) -> anyhow::Result<Vec<AccountId>> {
    let shared = emulator.shared();
    let info = shared.create_account(Some(PARTNER_EMAIL.to_owned()), None, None);
    let mut calendars = vec![info.calendar_id.clone()];
    for name in &FAMILY_CALENDARS[1..] {
        let calendar = shared
            .create_secondary_calendar(PARTNER_EMAIL, (*name).to_owned(), None)
            .context("cannot create the second person's calendars")?;
        calendars.push(calendar.id.clone());
    }
    let mut connected = Vec::new();
    for (name, calendar) in FAMILY_CALENDARS.iter().zip(calendars) {
        let account = ops::connect_account(
            services,
            ConnectRequest {
                group: Some(FAMILY_GROUP.to_owned()),
                alias: (*name).to_owned(),
                refresh_token: SecretString::from(info.refresh_token.clone()),
                calendar_id: Some(CalendarId::parse(&calendar)?),
                email: Some(info.email.clone()),
            },
        )
        .await
        .with_context(|| format!("cannot connect {name}"))?;
        connected.push(account.id);
    }
    Ok(connected)
}

fn free_port(host: IpAddr) -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind((host, 0)).context("cannot find a free port")?;
    Ok(listener.local_addr()?.port())
}

fn demo_settings(
    emulator: &EmulatorHandle,
    port: u16,
    me: &str,
    dir: &Path,
    password: &str,
    log_level: &str,
) -> anyhow::Result<Settings> {
    let base = emulator.base_url().trim_end_matches('/').to_owned();
    let vars = [
        ("PORT", port.to_string()),
        (
            "DATABASE_URL",
            format!("sqlite://{}?mode=rwc", dir.join("demo.db").display()),
        ),
        ("ADMIN_PASSWORD", password.to_owned()),
        ("GOOGLE_CLIENT_ID", emulator.client_id().to_owned()),
        ("GOOGLE_CLIENT_SECRET", emulator.client_secret().to_owned()),
        ("GOOGLE_API_BASE_URL", base.clone()),
        ("GOOGLE_AUTH_URL", emulator.auth_url()),
        ("GOOGLE_TOKEN_URL", emulator.token_url()),
        ("GOOGLE_REVOKE_URL", format!("{base}/revoke")),
        ("GOOGLE_REDIRECT_URI", format!("{me}/auth/callback")),
        ("WEBHOOK_BASE_URL", format!("{me}/")),
        (
            "WEBHOOK_SECRET",
            crate::config::EncryptionKey::generate().to_hex(),
        ),
        // Push does the work; the poll is only a backstop.
        ("POLL_INTERVAL_SECS", "60".to_owned()),
        ("LOG_LEVEL", log_level.to_owned()),
    ];
    Ok(Settings::from_vars(
        vars.into_iter().map(|(k, v)| (k.to_owned(), v)),
    )?)
}

/// Where the demo's logs go, in words for the banner.
fn install_logs(path: Option<&Path>, level: &str) -> anyhow::Result<String> {
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    if path.is_some_and(|p| p == Path::new("-")) {
        crate::telemetry::init_with_writer(level, None, BoxMakeWriter::new(std::io::stderr), false);
        return Ok("standard error".into());
    }
    let path = path.map_or_else(
        || std::env::temp_dir().join(format!("mcss-demo-{}.log", std::process::id())),
        Path::to_owned,
    );
    let file = std::fs::File::create(&path)
        .with_context(|| format!("cannot write the log file {}", path.display()))?;
    crate::telemetry::init_with_writer(
        level,
        Some(crate::config::LogFormat::Pretty),
        BoxMakeWriter::new(Arc::new(file)),
        false,
    );
    Ok(path.display().to_string())
}

/// `mcss demo [--port P] [--host H] [--scenario NAME] [--log-file PATH]`
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let log_level = std::env::var("LOG_LEVEL").unwrap_or_else(|_| "info".into());
    let logs = install_logs(args.log_file.as_deref(), &log_level)?;
    let dir = std::env::temp_dir().join(format!("mcss-demo-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).context("cannot create the demo's temporary folder")?;
    let result = serve_demo(args, &dir, log_level, logs).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn serve_demo(
    args: DemoArgs,
    dir: &Path,
    log_level: String,
    logs: String,
) -> anyhow::Result<()> {
    let demo = Demo::start(DemoOptions {
        port: args.port,
        host: Some(args.host),
        connect: DEMO_ACCOUNTS,
        data_dir: dir.to_owned(),
        admin_password: None,
        log_level,
        two_people: args.scenario.as_deref() == Some("two-people"),
    })
    .await?;
    let Demo {
        emulator,
        app,
        password,
        dashboard,
        actions,
        ..
    } = demo;
    println!("mcss demo is running");
    println!();
    println!("  dashboard: {dashboard}");
    println!("  password:  {password}");
    println!("  emulator:  {}", emulator.base_url());
    println!("  logs:      {logs}");
    println!();
    if args.host.is_unspecified() {
        println!("  Listening on every interface ({}).", args.host);
    }
    println!("  {DEMO_ACCOUNTS} calendars are connected (\"Calendar 01\"..\"Calendar {DEMO_ACCOUNTS:02}\") on an emulated Google");
    if args.scenario.as_deref() == Some("two-people") {
        println!(
            "  and {} more of a second person in group {FAMILY_GROUP:?} ({}).",
            FAMILY_CALENDARS.len(),
            FAMILY_CALENDARS.join(", ")
        );
    }
    println!(
        "  (its Calendar API, consent page and /emulator control API are at the emulator address)."
    );
    println!(
        "  Use the demo panel at the bottom of the dashboard to create and change events; their"
    );
    println!("  blocks follow on the other calendars within seconds. Ctrl-C stops everything.");
    if let Some(name) = args.scenario {
        tokio::spawn(async move {
            // Let the first full syncs finish so the scenario's changes arrive as pushes.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let report = match actions.scenario(&name).await {
                Ok(lines) => {
                    let mut text = format!("\nscenario {name}:\n");
                    for line in lines {
                        text.push_str(&format!("  {line}\n"));
                    }
                    text.push_str("  done; watch the blocks appear on the dashboard.");
                    text
                }
                Err(e) => format!("\nscenario {name} failed: {e}"),
            };
            println!("{report}");
        });
    }
    let result = app.run_with_signals().await;
    emulator.shutdown().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_actions_round_trip_through_their_names() {
        for action in DemoAction::ALL {
            assert_eq!(DemoAction::parse(action.as_str()), Some(action));
        }
        assert_eq!(DemoAction::parse("nonsense"), None);
    }

    #[test]
    fn the_next_meeting_starts_on_a_whole_hour_at_least_an_hour_ahead() {
        let start = in_an_hour();
        assert_eq!(start.minute(), 0);
        assert!(start - Utc::now() >= Days::minutes(59));
    }

    #[test]
    fn the_panel_names_a_start_in_utc_or_as_a_day() {
        let start: DateTime<Utc> = "2026-03-03T10:00:00Z".parse().unwrap();
        assert_eq!(start_words(&timed("x", start, 60)), "Tue 03 Mar 10:00 UTC");
        let day = NaiveDate::from_ymd_opt(2026, 3, 4).unwrap();
        assert_eq!(start_words(&all_day("x", day)), "Wed 04 Mar, all day");
    }

    #[test]
    fn a_wildcard_host_is_reached_on_loopback() {
        assert_eq!(reachable("0.0.0.0".parse().unwrap()), "127.0.0.1");
        assert_eq!(reachable("::1".parse().unwrap()), "[::1]");
    }
}
