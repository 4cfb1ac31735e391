//! `mcss demo`: the whole service on one machine, with nothing to configure.
//!
//! Role: start `gcal-emulator` in-process (five accounts, plain-HTTP webhooks allowed), the
//! service on a temporary SQLite database with every Google URL pointing at the emulator and
//! `WEBHOOK_BASE_URL` at the service itself, connect "Calendar 01".."Calendar 05", print the
//! dashboard address and a generated password, and serve until Ctrl-C.
//!
//! Collaborators: [`crate::ops::connect_account`] and `Control::start_account` connect the
//! calendars; the dashboard's demo panel calls [`DemoActions`] (implemented here by
//! [`EmulatorDemo`], which edits calendars through the emulator's Google API as their owner
//! would); `--scenario NAME` runs a scripted series of such edits after start-up.
//!
//! Lifecycle: [`Demo::start`] builds everything (tests use it too); [`run`] serves it and
//! deletes the temporary folder at the end.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use chrono::{Datelike as _, Duration as Days, NaiveDate, Timelike as _, Utc};
use gcal_emulator::{Emulator, EmulatorConfig, EmulatorHandle};
use parking_lot::Mutex;
use secrecy::SecretString;
use serde_json::{json, Value};

use crate::config::Settings;
use crate::domain::{AccountId, CalendarId, EventId};
use crate::google::{AccountClient, GoogleClient, TokenSource};
use crate::http::{DemoAction, DemoActions};
use crate::ops::{self, ConnectRequest};
use crate::services::Services;
use crate::startup::Application;
use crate::store::Store;

/// Options of `mcss demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Port of the dashboard and API (0 picks a free one).
    #[arg(long, env = "PORT", default_value_t = 3000)]
    pub port: u16,
    /// Run a scripted scenario after start-up (see `--help` of the dashboard's demo panel).
    #[arg(long)]
    pub scenario: Option<String>,
}

/// Demo calendars the emulator creates (user01@example.test …).
pub const DEMO_ACCOUNTS: usize = 5;

/// One demo calendar, edited as its owner through the emulator.
struct DemoCalendar {
    alias: String,
    calendar: CalendarId,
    client: AccountClient,
}

/// [`DemoActions`] through the emulator's Google API.
pub struct EmulatorDemo {
    calendars: Vec<DemoCalendar>,
    /// Events made by the panel or a scenario, newest last (for "delete the last one").
    made: Mutex<Vec<(usize, EventId, String)>>,
}

impl EmulatorDemo {
    /// Acts on the emulator's accounts as "Calendar 01".."Calendar NN", with their own
    /// refresh tokens (the owner's view, not the service's).
    pub fn new(settings: &Settings, emulator: &EmulatorHandle) -> anyhow::Result<Self> {
        let google = GoogleClient::new(&settings.google)?;
        let oauth = google.oauth(&settings.google)?;
        let calendars = emulator
            .accounts()
            .into_iter()
            .enumerate()
            .map(|(i, info)| {
                Ok(DemoCalendar {
                    alias: alias(i),
                    calendar: CalendarId::parse(&info.calendar_id)
                        .map_err(|e| anyhow::anyhow!("emulator calendar id: {e}"))?,
                    client: google.account(TokenSource::new(
                        oauth.clone(),
                        SecretString::from(info.refresh_token),
                    )),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            calendars,
            made: Mutex::new(Vec::new()),
        })
    }

    fn index(&self, alias: &str) -> Result<usize, String> {
        self.calendars
            .iter()
            .position(|c| c.alias == alias)
            .ok_or_else(|| format!("no demo calendar is called {alias:?}"))
    }

    /// Creates `body` on calendar `index` and remembers it; returns its id.
    async fn insert(&self, index: usize, body: Value, what: String) -> Result<EventId, String> {
        let cal = &self.calendars[index];
        let event = cal
            .client
            .events_insert(&cal.calendar, &body)
            .await
            .map_err(|e| e.to_string())?;
        let id = event
            .id
            .ok_or_else(|| "Google answered without an event id".to_owned())?;
        self.made.lock().push((index, id.clone(), what));
        Ok(id)
    }

    async fn delete(&self, index: usize, id: &EventId) -> Result<(), String> {
        let cal = &self.calendars[index];
        cal.client
            .events_delete(&cal.calendar, id)
            .await
            .map_err(|e| e.to_string())
    }
}

fn alias(index: usize) -> String {
    format!("Calendar {:02}", index + 1)
}

/// A timed event body in UTC.
fn timed(summary: &str, start: chrono::DateTime<Utc>, minutes: i64) -> Value {
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

/// The next whole hour at least an hour from now.
fn in_an_hour() -> chrono::DateTime<Utc> {
    let t = Utc::now() + Days::hours(1);
    t.with_minute(0)
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(t)
        + Days::hours(1)
}

/// Tomorrow at `hour`:00 UTC.
fn tomorrow_at(hour: u32) -> chrono::DateTime<Utc> {
    let day = Utc::now().date_naive() + Days::days(1);
    day.and_hms_opt(hour, 0, 0)
        .expect("a whole hour below 24 is a valid time")
        .and_utc()
}

#[async_trait]
impl DemoActions for EmulatorDemo {
    fn calendars(&self) -> Vec<String> {
        self.calendars.iter().map(|c| c.alias.clone()).collect()
    }

    async fn perform(&self, calendar: &str, action: DemoAction) -> Result<String, String> {
        let index = self.index(calendar)?;
        match action {
            DemoAction::Meeting => {
                let start = in_an_hour();
                self.insert(
                    index,
                    timed("Demo meeting", start, 60),
                    "a one-hour meeting".into(),
                )
                .await?;
                Ok(format!(
                    "Created a one-hour meeting at {} UTC on {calendar}; its blocks will appear on the other calendars.",
                    start.format("%H:%M")
                ))
            }
            DemoAction::AllDay => {
                let day = Utc::now().date_naive() + Days::days(1);
                self.insert(
                    index,
                    all_day("Demo day off", day),
                    "an all-day event".into(),
                )
                .await?;
                Ok(format!("Created an all-day event on {day} on {calendar}."))
            }
            DemoAction::Weekly => {
                let start = tomorrow_at(10);
                let mut body = timed("Demo weekly", start, 30);
                body["recurrence"] = json!(["RRULE:FREQ=WEEKLY;COUNT=10"]);
                self.insert(index, body, "a weekly series".into()).await?;
                Ok(format!(
                    "Created a weekly series (10 × 30 min, {}s 10:00 UTC) on {calendar}; it costs one block per other calendar, not ten.",
                    start.weekday()
                ))
            }
            DemoAction::DeleteLast => {
                let last = self.made.lock().pop();
                let Some((i, id, what)) = last else {
                    return Err("the demo has not created anything yet".into());
                };
                self.delete(i, &id).await?;
                Ok(format!(
                    "Deleted {what} from {}; its blocks will disappear.",
                    self.calendars[i].alias
                ))
            }
        }
    }
}

/// The scripted scenarios of `mcss demo --scenario NAME`.
pub const SCENARIOS: [(&str, &str); 3] = [
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
];

impl EmulatorDemo {
    /// Runs scenario `name`, returning one line per step.
    pub async fn scenario(&self, name: &str) -> Result<Vec<String>, String> {
        let mut done = Vec::new();
        match name {
            "busy-week" => {
                let day0 = Utc::now().date_naive() + Days::days(1);
                for d in 0..5i64 {
                    let index = usize::try_from(d).unwrap_or(0) % 3;
                    let hour = 9 + u32::try_from(d).unwrap_or(0);
                    let start = (day0 + Days::days(d))
                        .and_hms_opt(hour, 0, 0)
                        .expect("hours 9..14 are valid")
                        .and_utc();
                    self.insert(
                        index,
                        timed("Busy-week meeting", start, 60),
                        "a busy-week meeting".into(),
                    )
                    .await?;
                    done.push(format!(
                        "{}: one-hour meeting {} UTC",
                        alias(index),
                        start.format("%a %d %b %H:%M")
                    ));
                }
            }
            "recurring" => {
                let start = tomorrow_at(9);
                let mut standup = timed("Daily stand-up", start, 15);
                standup["recurrence"] = json!(["RRULE:FREQ=DAILY;COUNT=10"]);
                let series = self.insert(0, standup, "a daily stand-up".into()).await?;
                done.push(format!("{}: daily stand-up 09:00 UTC × 10", alias(0)));
                let mut one_to_one = timed("Weekly 1:1", tomorrow_at(14), 30);
                one_to_one["recurrence"] = json!(["RRULE:FREQ=WEEKLY;COUNT=8"]);
                self.insert(1, one_to_one, "a weekly 1:1".into()).await?;
                done.push(format!("{}: weekly 1:1 14:00 UTC × 8", alias(1)));
                let second = start + Days::days(1);
                let instance =
                    EventId::parse(&format!("{}_{}", series, second.format("%Y%m%dT%H%M%SZ")))
                        .map_err(|e| e.to_string())?;
                self.delete(0, &instance).await?;
                done.push(format!(
                    "{}: cancelled the stand-up of {} (its block occurrence is cancelled too)",
                    alias(0),
                    second.format("%a %d %b")
                ));
            }
            "conflict" => {
                let start = in_an_hour();
                self.insert(0, timed("Client call", start, 60), "a client call".into())
                    .await?;
                self.insert(
                    1,
                    timed("Team review", start + Days::minutes(30), 60),
                    "a team review".into(),
                )
                .await?;
                let mut free = timed("Lunch (free)", start + Days::hours(2), 60);
                free["transparency"] = json!("transparent");
                self.insert(2, free, "a free-time event".into()).await?;
                done.push(format!(
                    "{}: client call {} UTC",
                    alias(0),
                    start.format("%H:%M")
                ));
                done.push(format!(
                    "{}: team review {} UTC, overlapping it; each calendar gets the other's block",
                    alias(1),
                    (start + Days::minutes(30)).format("%H:%M")
                ));
                done.push(format!(
                    "{}: lunch marked free — not mirrored (free time blocks nobody)",
                    alias(2)
                ));
            }
            other => return Err(format!("unknown scenario {other:?}")),
        }
        Ok(done)
    }
}

/// What [`Demo::start`] needs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// 0 picks a free port.
    pub port: u16,
    /// How many of the five demo calendars to connect at start (the browser tests connect
    /// one more through the consent page).
    pub connect: usize,
    /// Where the SQLite database goes.
    pub data_dir: PathBuf,
    /// `None` generates one.
    pub admin_password: Option<String>,
    pub log_level: String,
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
        let port = match options.port {
            0 => free_port()?,
            p => p,
        };
        let password = options
            .admin_password
            .unwrap_or_else(|| crate::config::EncryptionKey::generate().to_hex()[..16].to_owned());
        let settings = demo_settings(
            &emulator,
            port,
            &options.data_dir,
            &password,
            &options.log_level,
        )?;

        // Connect the calendars before the service starts, on the same database.
        let store = Store::connect(&settings).await?;
        store.migrate().await?;
        let services = Services::build(Arc::new(settings.clone()), store.clone()).await?;
        let mut connected = Vec::new();
        for (i, info) in emulator
            .accounts()
            .into_iter()
            .take(options.connect)
            .enumerate()
        {
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
        store.close().await;

        let actions = Arc::new(EmulatorDemo::new(&settings, &emulator)?);
        let mut app = Application::build(settings).await?;
        app.admin_config_mut().demo = Some(actions.clone() as Arc<dyn DemoActions>);
        for id in &connected {
            app.state()
                .control
                .start_account(*id)
                .await
                .with_context(|| format!("cannot start the actors of account {id}"))?;
        }
        Ok(Demo {
            dashboard: format!("http://127.0.0.1:{}/admin", app.port()),
            emulator,
            app,
            password,
            actions,
            connected,
        })
    }
}

fn free_port() -> anyhow::Result<u16> {
    let listener =
        std::net::TcpListener::bind(("127.0.0.1", 0)).context("cannot find a free port")?;
    Ok(listener.local_addr()?.port())
}

fn demo_settings(
    emulator: &EmulatorHandle,
    port: u16,
    dir: &Path,
    password: &str,
    log_level: &str,
) -> anyhow::Result<Settings> {
    let base = emulator.base_url().trim_end_matches('/').to_owned();
    let me = format!("http://127.0.0.1:{port}");
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

/// `mcss demo [--port P] [--scenario NAME]`
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    if let Some(name) = &args.scenario {
        if !SCENARIOS.iter().any(|(n, _)| n == name) {
            let known: Vec<String> = SCENARIOS
                .iter()
                .map(|(n, what)| format!("  {n}: {what}"))
                .collect();
            anyhow::bail!(
                "unknown scenario {name:?}; choose one of:\n{}",
                known.join("\n")
            );
        }
    }
    let log_level = std::env::var("LOG_LEVEL").unwrap_or_else(|_| "warn".into());
    crate::telemetry::init(&log_level, None);
    let dir = std::env::temp_dir().join(format!("mcss-demo-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).context("cannot create the demo's temporary folder")?;
    let result = serve_demo(args, &dir, log_level).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn serve_demo(args: DemoArgs, dir: &Path, log_level: String) -> anyhow::Result<()> {
    let demo = Demo::start(DemoOptions {
        port: args.port,
        connect: DEMO_ACCOUNTS,
        data_dir: dir.to_owned(),
        admin_password: None,
        log_level,
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
    println!();
    println!("  {DEMO_ACCOUNTS} calendars are connected (\"Calendar 01\"..\"Calendar {DEMO_ACCOUNTS:02}\") on an emulated Google.");
    println!("  Use the demo panel at the bottom of the dashboard to create events; their");
    println!("  blocks appear on the other calendars within seconds. Ctrl-C stops everything.");
    if let Some(name) = args.scenario {
        tokio::spawn(async move {
            // Let the first full syncs finish so the scenario's changes arrive as pushes.
            tokio::time::sleep(Duration::from_secs(2)).await;
            println!();
            println!("scenario {name}:");
            match actions.scenario(&name).await {
                Ok(lines) => {
                    for line in lines {
                        println!("  {line}");
                    }
                    println!("  done; watch the blocks appear on the dashboard.");
                }
                Err(e) => println!("  failed: {e}"),
            }
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
}
