//! What each `mcss` subcommand does. `main.rs` only parses; the work happens here so tests
//! and the demo can call the same code.

use std::sync::Arc;

use anyhow::Context as _;
use secrecy::SecretString;

mod calendars;
mod import;

pub use calendars::{render as render_links, LinksCommand, SetAccountArgs};
pub use import::{ImportArgs, ImportSummary, HEADER as IMPORT_HEADER};

use crate::actors::LocalWriters;
use crate::config::{one_line, ConfigError, DatabaseKind, Settings, Severity};
use crate::coordinator::Coordinator;
use crate::domain::CalendarId;
use crate::ops::{self, BlockWrites as _};
use crate::services::Services;
use crate::startup::Application;
use crate::store::Store;

/// `mcss accounts …`
#[derive(Debug, Clone, clap::Subcommand)]
pub enum AccountsCommand {
    /// List connected calendars: alias, group, calendar id, status, Google account.
    List {
        /// Also print each calendar's rules (as a target, then as a source).
        #[arg(long)]
        rules: bool,
    },
    /// Connect a calendar from a refresh token, without a browser.
    ///
    /// The calendar's real id and time zone are read from Google (calendarList.get). If an
    /// account with this alias or on this calendar exists, its refresh token is replaced and
    /// it is made active again (a reconnect). The token is never printed.
    Add(AddAccountArgs),
    /// Remove an account: delete its blocks from every other calendar, then forget it.
    ///
    /// Meant for when `mcss serve` is not running (the service's admin page does the same
    /// live). Blocks on the account's own calendar stay unless `--purge` is given.
    Remove(RemoveAccountArgs),
    /// Change a calendar's group or rules; only the options given change.
    ///
    /// A running `serve` picks the change up within 10 s: blocks that no longer belong are
    /// deleted, missing ones made, and only blocks whose content changes are written.
    Set(calendars::SetAccountArgs),
    /// Connect many calendars from a CSV file with the header line
    /// `alias,refresh_token,calendar_id,group` (`-` reads standard input).
    ///
    /// Each line is connected as `accounts add` would; a bad line is reported as `line N:
    /// reason` and the others go on. Google's rate limits are waited out. Importing the same
    /// file again changes nothing.
    Import(import::ImportArgs),
}

/// Options of `mcss accounts add`.
#[derive(Debug, Clone, clap::Args)]
pub struct AddAccountArgs {
    /// The calendar's name in block titles and on the dashboard, e.g. "Calendar 01"
    /// (1 to 64 characters).
    #[arg(long)]
    pub alias: String,
    /// The account's OAuth refresh token; `-` reads it from standard input, so it stays out
    /// of the shell history.
    #[arg(long, env = "MCSS_REFRESH_TOKEN", hide_env_values = true)]
    pub refresh_token: RefreshTokenArg,
    /// Which of the account's calendars to keep in step.
    #[arg(long, default_value = "primary")]
    pub calendar_id: String,
    /// The account's e-mail address, shown on the dashboard (for the primary calendar it is
    /// found by itself).
    #[arg(long)]
    pub email: Option<String>,
    /// The group the calendar joins (created when new; `default` when omitted). Blocks
    /// never cross groups.
    #[arg(long)]
    pub group: Option<String>,
}

/// A refresh token from the command line; its `Debug` hides it.
#[derive(Clone)]
pub struct RefreshTokenArg(String);

impl std::fmt::Debug for RefreshTokenArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefreshTokenArg([REDACTED])")
    }
}

impl std::str::FromStr for RefreshTokenArg {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        if raw.trim().is_empty() {
            return Err("the refresh token must not be empty".into());
        }
        Ok(Self(raw.to_owned()))
    }
}

impl RefreshTokenArg {
    /// The token, read from standard input when it was given as `-`.
    fn resolve(self) -> anyhow::Result<SecretString> {
        if self.0 != "-" {
            return Ok(SecretString::from(self.0.trim().to_owned()));
        }
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("cannot read the refresh token from standard input")?;
        let token = line.trim();
        anyhow::ensure!(!token.is_empty(), "no refresh token on standard input");
        Ok(SecretString::from(token.to_owned()))
    }
}

/// Options of `mcss accounts remove`.
#[derive(Debug, Clone, clap::Args)]
pub struct RemoveAccountArgs {
    /// The alias of the account (see `mcss accounts list`).
    pub alias: String,
    /// Also delete every block this installation placed on the account's own calendar.
    #[arg(long)]
    pub purge: bool,
}

/// Options of `mcss reconcile`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReconcileArgs {
    /// Print what would change without writing anything.
    #[arg(long)]
    pub dry_run: bool,
}

/// Options of `mcss purge`.
#[derive(Debug, Clone, clap::Args)]
pub struct PurgeArgs {
    /// Print what would be deleted without deleting anything.
    #[arg(long)]
    pub dry_run: bool,
}

/// `mcss serve`: runs until SIGTERM/SIGINT (exit 0) or until the root supervisor dies (error).
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    crate::telemetry::init(&settings.log_level, settings.log_format);
    if settings.admin_password.is_none() {
        tracing::info!("ADMIN_PASSWORD is not set: the admin pages are off");
    }
    let app = Application::build(settings).await?;
    app.run_with_signals().await
}

/// `mcss migrate`
pub async fn migrate(settings: Settings) -> anyhow::Result<()> {
    crate::telemetry::init(&settings.log_level, settings.log_format);
    let store = Store::connect(&settings).await?;
    store.migrate().await?;
    println!("migrations applied");
    store.close().await;
    Ok(())
}

/// `mcss check`: database and Redis reached, the settings that matter, and what the
/// configuration leaves out ([`Settings::findings`]). Fails when a finding is an error (for
/// example accounts that cannot refresh their tokens without an OAuth client).
pub async fn check(settings: Settings) -> anyhow::Result<()> {
    let store = Store::connect(&settings).await?;
    let pinged = store.ping().await;
    // A database `serve` has not migrated yet has no accounts table: nothing to count.
    let listed = store.list_accounts().await;
    store.close().await;
    pinged.context("database: no answer")?;
    let kind = match settings.database_kind() {
        DatabaseKind::Postgres => "PostgreSQL",
        DatabaseKind::Sqlite => "SQLite",
    };
    let accounts = match listed {
        Ok(accounts) => {
            println!("database: ok ({kind}, {} accounts)", accounts.len());
            accounts.len()
        }
        Err(_) => {
            println!("database: ok ({kind}, no schema yet: `mcss migrate` creates it)");
            0
        }
    };
    match &settings.redis_url {
        None => println!("redis: not configured (single replica)"),
        Some(url) => {
            let redis = Coordinator::connect(url, settings.db_connect_timeout).await?;
            let pong = redis.ping().await.context("redis: no answer");
            redis.quit().await;
            pong?;
            println!("redis: ok");
        }
    }
    print_settings(&settings);
    let findings = settings.findings(accounts);
    for finding in &findings {
        println!("{finding}");
    }
    let errors = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    let warnings = findings.len() - errors;
    if findings.is_empty() {
        println!("configuration: ok");
    } else {
        println!(
            "configuration: {}, {}",
            plural(errors, "error"),
            plural(warnings, "warning")
        );
    }
    anyhow::ensure!(
        errors == 0,
        "the configuration has {}; see `error:` above",
        plural(errors, "error")
    );
    Ok(())
}

/// "1 error", "2 errors".
fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn print_settings(settings: &Settings) {
    let on_off = |on: bool| if on { "on" } else { "off" };
    println!("settings:");
    println!("  port: {}", settings.port);
    println!(
        "  push: {}",
        settings
            .webhook_url()
            .map_or_else(|| "off (polling only)".to_owned(), |u| u.to_string())
    );
    println!("  google api: {}", settings.google.api_base_url);
    println!(
        "  oauth client: {}",
        if settings.google.client_id.is_some() {
            "configured"
        } else {
            "not configured"
        }
    );
    println!(
        "  admin pages: {}",
        on_off(settings.admin_password.is_some())
    );
    println!("  metrics: {}", on_off(settings.enable_metrics));
}

/// The one line `main` prints for a failed command: the error, then each cause the text so
/// far does not already contain (wrappers that repeat their source would otherwise say the
/// same thing up to four times), folded to one line.
pub fn error_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = one_line(&cause.to_string());
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// The exit status of a failed command: 2 when a configuration value is the cause
/// (malformed, or pointing at a database, Redis or port that cannot be used), else 1.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    let config = err
        .chain()
        .any(|cause| cause.downcast_ref::<ConfigError>().is_some());
    if config {
        2
    } else {
        1
    }
}

/// `mcss accounts …`
pub async fn accounts(settings: Settings, command: AccountsCommand) -> anyhow::Result<()> {
    let store = Store::connect(&settings).await?;
    store.migrate().await?;
    let result = match command {
        AccountsCommand::List { rules } => list_accounts(&store, rules).await,
        AccountsCommand::Add(args) => add_account(settings, store.clone(), args).await,
        AccountsCommand::Remove(args) => remove_account(settings, store.clone(), args).await,
        AccountsCommand::Set(args) => {
            let services = services(settings, store.clone()).await?;
            calendars::set_account(&services, args).await
        }
        AccountsCommand::Import(args) => {
            let services = services(settings, store.clone()).await?;
            import::import(&services, args).await
        }
    };
    store.close().await;
    result
}

async fn list_accounts(store: &Store, with_rules: bool) -> anyhow::Result<()> {
    let accounts = store.list_accounts().await?;
    if accounts.is_empty() {
        println!("no accounts connected");
    }
    for a in accounts {
        println!(
            "{:<14} {:<12} {:<40} {:<13} {}",
            a.alias,
            a.group,
            a.calendar_id,
            a.status.as_str(),
            a.email.as_deref().unwrap_or("-")
        );
        if with_rules {
            println!("  {}", calendars::describe_rules(&a.rules));
        }
    }
    Ok(())
}

/// The services a Google-talking command needs, on an already migrated store.
async fn services(settings: Settings, store: Store) -> anyhow::Result<Services> {
    Services::build(Arc::new(settings), store)
        .await
        .context("cannot set up the Google client")
}

/// `mcss accounts add`
async fn add_account(settings: Settings, store: Store, args: AddAccountArgs) -> anyhow::Result<()> {
    let calendar_id = CalendarId::parse(args.calendar_id.trim())
        .map_err(|e| anyhow::anyhow!("--calendar-id: {e}"))?;
    let refresh_token = args.refresh_token.resolve()?;
    let services = services(settings, store).await?;
    let account = ops::connect_account_with(
        &services,
        ops::ConnectRequest {
            alias: args.alias,
            refresh_token,
            calendar_id: Some(calendar_id),
            email: args.email,
            group: args.group,
        },
        &|err, wait| eprintln!("{}, retrying in {} s", retry_reason(err), wait.as_secs()),
    )
    .await?;
    let verb = if account.created_at == account.updated_at {
        "connected"
    } else {
        "reconnected"
    };
    println!("{verb} {:?} (account {})", account.alias, account.id);
    println!("  calendar id: {}", account.calendar_id);
    println!(
        "  time zone:   {}",
        account.time_zone.as_deref().unwrap_or("unknown")
    );
    println!("  status:      {}", account.status);
    Ok(())
}

/// Why `accounts add` waits, for its stderr line.
fn retry_reason(err: &crate::google::GoogleError) -> String {
    match err {
        crate::google::GoogleError::RateLimited { .. } => "rate limited by Google".to_owned(),
        other => format!("Google is unavailable ({other})"),
    }
}

/// `mcss accounts remove`
async fn remove_account(
    settings: Settings,
    store: Store,
    args: RemoveAccountArgs,
) -> anyhow::Result<()> {
    let account = store
        .account_by_alias(args.alias.trim())
        .await?
        .ok_or_else(|| ops::OpsError::UnknownAlias(args.alias.clone()))?;
    let services = services(settings, store).await?;
    let writers = LocalWriters::new(services.clone());
    let report = ops::remove_account(&services, &writers, &account, args.purge).await;
    writers.shutdown().await;
    let report = report?;
    println!("removed {:?} ({})", account.alias, account.calendar_id);
    print!("{report}");
    Ok(())
}

/// `mcss links`
pub async fn links(settings: Settings, command: LinksCommand) -> anyhow::Result<()> {
    calendars::links(settings, command).await
}

/// `mcss reconcile`
pub async fn reconcile(settings: Settings, args: ReconcileArgs) -> anyhow::Result<()> {
    let store = Store::connect(&settings).await?;
    store.migrate().await?;
    let result = async {
        let services = services(settings, store.clone()).await?;
        let writers = LocalWriters::new(services.clone());
        let report = ops::reconcile(&services, &writers, args.dry_run).await;
        if let Ok(report) = &report {
            let busy: Vec<_> = report.accounts.iter().map(|a| a.account).collect();
            writers.drained(&busy, ops::DRAIN_DEADLINE).await;
        }
        writers.shutdown().await;
        let report = report?;
        print!("{report}");
        let failed = report.failures();
        anyhow::ensure!(failed == 0, "{failed} calendars could not be reconciled");
        Ok(())
    }
    .await;
    store.close().await;
    result
}

/// `mcss purge`
pub async fn purge(settings: Settings, args: PurgeArgs) -> anyhow::Result<()> {
    let store = Store::connect(&settings).await?;
    store.migrate().await?;
    let result = async {
        let services = services(settings, store.clone()).await?;
        let writers = LocalWriters::new(services.clone());
        let reports = ops::purge_all(&services, &writers, args.dry_run).await;
        writers.shutdown().await;
        let reports = reports?;
        if reports.is_empty() {
            println!("no accounts connected: nothing to purge");
        }
        let (mut total, mut failed) = (0, 0);
        for (account, report) in &reports {
            println!("{:<14} {report}", account.alias);
            total += if args.dry_run {
                report.found
            } else {
                report.deleted
            };
            failed += usize::from(report.error.is_some());
        }
        if args.dry_run {
            println!("dry run: {total} blocks would be deleted; nothing was changed");
        } else {
            println!("{total} blocks deleted");
        }
        anyhow::ensure!(failed == 0, "{failed} calendars could not be purged");
        Ok(())
    }
    .await;
    store.close().await;
    result
}

/// `mcss demo`: a temporary SQLite database and demo settings.
pub async fn demo(args: crate::demo::DemoArgs) -> anyhow::Result<()> {
    crate::demo::run(args).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot open the database: {0}")]
    struct Wrapper(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("database error: {0}")]
    struct Inner(#[source] std::io::Error);

    #[test]
    fn a_cause_already_told_by_its_wrapper_is_not_repeated() {
        let err = anyhow::Error::new(Wrapper(Inner(std::io::Error::other(
            "unable to open\n  database file",
        ))));

        assert_eq!(
            error_line(&err),
            "cannot open the database: database error: unable to open database file"
        );
        assert_eq!(exit_code(&err), 1);
    }

    #[test]
    fn a_configuration_cause_anywhere_in_the_chain_exits_with_2() {
        let err = anyhow::Error::new(crate::store::StoreError::Unusable(ConfigError::new(
            "DATABASE_URL",
            "PostgreSQL at h:5432/db did not answer within 5 s",
        )))
        .context("database");

        assert_eq!(exit_code(&err), 2);
        assert_eq!(
            error_line(&err),
            "database: DATABASE_URL: PostgreSQL at h:5432/db did not answer within 5 s"
        );
    }
}
