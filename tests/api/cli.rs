//! The built `mcss` binary: `accounts add|list|remove`, `purge`, `reconcile` and `--help`,
//! against an in-process `gcal-emulator` and a SQLite file in a temp dir.

use std::process::Output;

use gcal_emulator::{Emulator, EmulatorConfig, EmulatorHandle};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt as _;

const INSTALLATION: &str = "cli-test-installation";

struct Cli {
    emulator: EmulatorHandle,
    dir: tempfile::TempDir,
}

/// What one run of the binary printed, and how it ended.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Self {
        Run {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Cli {
    async fn start() -> Cli {
        let emulator = Emulator::start(EmulatorConfig {
            accounts: 3,
            ..EmulatorConfig::default()
        })
        .await
        .expect("the emulator starts");
        Cli {
            emulator,
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// `mcss ARGS` with only the test's environment (and the temp dir as working directory,
    /// so no `.env` of the checkout is read), feeding `stdin`.
    async fn run_with(&self, args: &[&str], extra_env: &[(&str, &str)], stdin: &str) -> Run {
        let base = self.emulator.base_url();
        let db = format!(
            "sqlite://{}?mode=rwc",
            self.dir.path().join("mcss.db").display()
        );
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_mcss"));
        command
            .args(args)
            .env_clear()
            .current_dir(self.dir.path())
            .env("DATABASE_URL", db)
            .env("GOOGLE_CLIENT_ID", self.emulator.client_id())
            .env("GOOGLE_CLIENT_SECRET", self.emulator.client_secret())
            .env("GOOGLE_API_BASE_URL", base)
            .env("GOOGLE_AUTH_URL", self.emulator.auth_url())
            .env("GOOGLE_TOKEN_URL", self.emulator.token_url())
            .env("INSTALLATION_ID", INSTALLATION)
            .env("LOG_LEVEL", "warn")
            .envs(extra_env.iter().copied())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("the mcss binary starts");
        let mut input = child.stdin.take().expect("stdin is piped");
        input
            .write_all(stdin.as_bytes())
            .await
            .expect("write stdin");
        drop(input);
        let out =
            tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
                .await
                .expect("mcss finishes within a minute")
                .expect("mcss runs");
        out.into()
    }

    async fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, &[], "").await
    }

    fn token(&self, n: usize) -> String {
        self.emulator.accounts()[n].refresh_token.clone()
    }

    /// Inserts an event on account `n`'s primary calendar through the plain API.
    async fn insert(&self, n: usize, body: Value) -> String {
        let http = reqwest::Client::new();
        let email = self.emulator.accounts()[n].email.clone();
        let tokens: Value = http
            .post(format!(
                "{}/emulator/accounts/{email}/tokens",
                self.emulator.base_url()
            ))
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let access = tokens["access_token"].as_str().unwrap().to_owned();
        let event: Value = http
            .post(format!(
                "{}/calendar/v3/calendars/primary/events",
                self.emulator.base_url()
            ))
            .bearer_auth(&access)
            .json(&body)
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap();
        event["id"].as_str().unwrap().to_owned()
    }

    /// The status of an event in the emulator's raw dump.
    async fn status(&self, n: usize, id: &str) -> String {
        let calendar = self.emulator.accounts()[n].calendar_id.clone();
        let dump: Value = reqwest::get(format!(
            "{}/emulator/calendars/{calendar}/events",
            self.emulator.base_url()
        ))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        let item = dump["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["event"]["id"] == id)
            .unwrap_or_else(|| panic!("event {id} is in the dump"));
        item["event"]["status"]
            .as_str()
            .unwrap_or("confirmed")
            .to_owned()
    }
}

fn block(summary: &str, installation: &str) -> Value {
    json!({
        "summary": summary,
        "start": {"dateTime": "2030-01-01T10:00:00Z"},
        "end": {"dateTime": "2030-01-01T11:00:00Z"},
        "extendedProperties": {"private": {
            "mcssInstallation": installation,
            "mcssSourceAccount": "2",
            "mcssSourceEvent": "abc"
        }},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_add_list_and_remove_work_and_never_print_the_token() {
    let cli = Cli::start().await;
    let first = cli.token(0);
    let second = cli.token(1);

    let added = cli
        .run(&[
            "accounts",
            "add",
            "--alias",
            "Calendar 01",
            "--refresh-token",
            &first,
        ])
        .await;
    let from_stdin = cli
        .run_with(
            &[
                "accounts",
                "add",
                "--alias",
                "Calendar 02",
                "--refresh-token",
                "-",
            ],
            &[],
            &format!("{second}\n"),
        )
        .await;
    let listed = cli.run(&["accounts", "list"]).await;

    assert!(added.ok, "{}", added.stderr);
    assert!(
        added.stdout.contains("connected \"Calendar 01\""),
        "{}",
        added.stdout
    );
    assert!(
        added.stdout.contains("user01@example.test"),
        "{}",
        added.stdout
    );
    assert!(
        added.stdout.contains("time zone:   UTC"),
        "{}",
        added.stdout
    );
    assert!(!added.stdout.contains(&first) && !added.stderr.contains(&first));
    assert!(from_stdin.ok, "{}", from_stdin.stderr);
    assert!(from_stdin.stdout.contains("user02@example.test"));
    assert!(listed.ok, "{}", listed.stderr);
    assert!(listed.stdout.contains("Calendar 01") && listed.stdout.contains("Calendar 02"));

    // The same calendar again through MCSS_REFRESH_TOKEN is a reconnect, not a new account.
    let again = cli
        .run_with(
            &["accounts", "add", "--alias", "Calendar 01"],
            &[("MCSS_REFRESH_TOKEN", &first)],
            "",
        )
        .await;
    assert!(again.ok, "{}", again.stderr);
    assert!(again.stdout.contains("reconnected"), "{}", again.stdout);

    let removed = cli.run(&["accounts", "remove", "Calendar 02"]).await;
    let listed = cli.run(&["accounts", "list"]).await;

    assert!(removed.ok, "{}", removed.stderr);
    assert!(
        removed.stdout.contains("removed \"Calendar 02\""),
        "{}",
        removed.stdout
    );
    assert!(listed.stdout.contains("Calendar 01"));
    assert!(!listed.stdout.contains("Calendar 02"), "{}", listed.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_dry_run_counts_blocks_and_purge_deletes_only_ours() {
    let cli = Cli::start().await;
    let token = cli.token(0);
    let added = cli
        .run(&[
            "accounts",
            "add",
            "--alias",
            "Calendar 01",
            "--refresh-token",
            &token,
        ])
        .await;
    assert!(added.ok, "{}", added.stderr);
    let ours = cli
        .insert(0, block("Calendar 02 Block", INSTALLATION))
        .await;
    let theirs = cli.insert(0, block("Other Block", "someone-else")).await;

    let dry = cli.run(&["purge", "--dry-run"]).await;

    assert!(dry.ok, "{}", dry.stderr);
    assert!(
        dry.stdout.contains("dry run: 1 blocks would be deleted"),
        "{}",
        dry.stdout
    );
    assert_eq!(cli.status(0, &ours).await, "confirmed");

    let done = cli.run(&["purge"]).await;

    assert!(done.ok, "{}", done.stderr);
    assert!(done.stdout.contains("1 blocks deleted"), "{}", done.stdout);
    assert_eq!(cli.status(0, &ours).await, "cancelled");
    assert_eq!(cli.status(0, &theirs).await, "confirmed");

    let reconciled = cli.run(&["reconcile", "--dry-run"]).await;
    assert!(reconciled.ok, "{}", reconciled.stderr);
    assert!(
        reconciled.stdout.contains("reconcile (dry run)"),
        "{}",
        reconciled.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_clear_error_and_a_non_zero_exit() {
    let cli = Cli::start().await;
    let token = cli.token(0);

    let empty_alias = cli
        .run(&["accounts", "add", "--alias", "", "--refresh-token", &token])
        .await;
    let no_token = cli
        .run(&["accounts", "add", "--alias", "Calendar 01"])
        .await;
    let unknown = cli.run(&["accounts", "remove", "Nobody"]).await;
    let bad_token = cli
        .run(&[
            "accounts",
            "add",
            "--alias",
            "Calendar 01",
            "--refresh-token",
            "1//bogus",
        ])
        .await;

    assert!(!empty_alias.ok);
    assert!(
        empty_alias
            .stderr
            .contains("invalid alias: it must not be empty"),
        "{}",
        empty_alias.stderr
    );
    assert!(!no_token.ok);
    assert!(
        no_token.stderr.contains("--refresh-token"),
        "{}",
        no_token.stderr
    );
    assert!(!unknown.ok);
    assert!(
        unknown.stderr.contains("no account is named \"Nobody\""),
        "{}",
        unknown.stderr
    );
    assert!(!bad_token.ok);
    assert!(
        bad_token
            .stderr
            .contains("Google refused this refresh token"),
        "{}",
        bad_token.stderr
    );
    assert!(!bad_token.stderr.contains("1//bogus"));
    let listed = cli.run(&["accounts", "list"]).await;
    assert!(
        listed.stdout.contains("no accounts connected"),
        "{}",
        listed.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_explains_itself_in_help() {
    let cli = Cli::start().await;
    let cases: &[(&[&str], &str)] = &[
        (&["--help"], "reconcile"),
        (&["accounts", "--help"], "remove"),
        (&["accounts", "list", "--help"], "List connected calendars"),
        (&["accounts", "set", "--help"], "--exclude-title-regex"),
        (&["links", "--help"], "matrix"),
        (&["links", "set", "--help"], "SOURCE"),
        (&["accounts", "add", "--help"], "--refresh-token"),
        (&["accounts", "remove", "--help"], "--purge"),
        (&["reconcile", "--help"], "--dry-run"),
        (&["purge", "--help"], "--dry-run"),
    ];
    for (args, expected) in cases {
        let run = cli.run(args).await;
        assert!(run.ok, "{args:?}: {}", run.stderr);
        assert!(run.stdout.contains("Usage:"), "{args:?}: {}", run.stdout);
        assert!(run.stdout.contains(expected), "{args:?}: {}", run.stdout);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_add_backs_off_from_a_rate_limit_and_says_so() {
    // Arrange: Google answers the first calendarList.get with a rate limit.
    let cli = Cli::start().await;
    let token = cli.token(0);
    let rule = json!({
        "kind": "rateLimitExceeded",
        "status": 429,
        "methods": ["calendarList.get"],
        "count": 1,
    });
    reqwest::Client::new()
        .post(format!("{}/emulator/faults", cli.emulator.base_url()))
        .json(&rule)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .expect("the fault is accepted");

    // Act
    let added = cli
        .run(&[
            "accounts",
            "add",
            "--alias",
            "Calendar 01",
            "--refresh-token",
            &token,
        ])
        .await;

    // Assert
    assert!(added.ok, "{}", added.stderr);
    assert!(
        added.stdout.contains("connected \"Calendar 01\""),
        "{}",
        added.stdout
    );
    assert_eq!(
        added.stderr.trim(),
        "rate limited by Google, retrying in 2 s",
        "one line per wait, on stderr"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_calls_connected_accounts_without_an_oauth_client_an_error() {
    // Arrange: one connected account, then the OAuth client taken away.
    let cli = Cli::start().await;
    let token = cli.token(0);
    let added = cli
        .run(&[
            "accounts",
            "add",
            "--alias",
            "Calendar 01",
            "--refresh-token",
            &token,
        ])
        .await;
    assert!(added.ok, "{}", added.stderr);

    // Act: empty values count as unset.
    let checked = cli
        .run_with(
            &["check"],
            &[("GOOGLE_CLIENT_ID", ""), ("GOOGLE_CLIENT_SECRET", "")],
            "",
        )
        .await;

    // Assert
    assert!(!checked.ok, "{}", checked.stdout);
    assert!(
        checked.stdout.contains(
            "error: GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET are not set: the connected account cannot refresh its access token"
        ),
        "{}",
        checked.stdout
    );
    assert!(
        checked.stdout.contains("configuration: 1 error, "),
        "{}",
        checked.stdout
    );
    assert_eq!(checked.stderr.lines().count(), 1, "{}", checked.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_links_and_rules_are_set_from_the_cli_and_bad_input_changes_nothing() {
    let cli = Cli::start().await;
    for (n, alias, group) in [
        (0, "Calendar 01", None),
        (1, "Calendar 02", None),
        (2, "Family", Some("family")),
    ] {
        let token = cli.token(n);
        let mut args = vec![
            "accounts",
            "add",
            "--alias",
            alias,
            "--refresh-token",
            &token,
        ];
        if let Some(group) = group {
            args.extend(["--group", group]);
        }
        let added = cli.run(&args).await;
        assert!(added.ok, "{alias}: {}", added.stderr);
    }

    let set = cli
        .run(&[
            "accounts",
            "set",
            "Calendar 02",
            "--block-title",
            "Busy ({alias})",
            "--details",
            "busy-only",
            "--skip-all-day",
            "true",
        ])
        .await;
    let off = cli
        .run(&["links", "set", "Calendar 01", "Calendar 02", "off"])
        .await;
    let matrices = cli.run(&["links", "list"]).await;
    let listed = cli.run(&["accounts", "list", "--rules"]).await;

    assert!(set.ok, "{}", set.stderr);
    assert!(
        set.stdout.contains("rules of \"Calendar 02\" set"),
        "{}",
        set.stdout
    );
    assert!(off.ok, "{}", off.stderr);
    assert!(matrices.ok, "{}", matrices.stderr);
    let default = matrices
        .stdout
        .split("group ")
        .find(|m| m.starts_with("\"default\""))
        .unwrap_or_else(|| panic!("the default group's matrix: {}", matrices.stdout));
    let row = |alias: &str| -> Vec<&str> {
        default
            .lines()
            .find(|l| l.starts_with(alias))
            .unwrap_or_else(|| panic!("row {alias}: {default}"))[alias.len()..]
            .split_whitespace()
            .collect()
    };
    assert_eq!(row("Calendar 01"), ["-", "off"], "{default}");
    assert_eq!(row("Calendar 02"), ["on", "-"], "{default}");
    assert!(
        matrices.stdout.contains("group \"family\""),
        "{}",
        matrices.stdout
    );
    let second = listed
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("Calendar 02"))
        .nth(1)
        .unwrap_or_default();
    assert!(
        second.contains("title \"Busy ({alias})\", details busy-only")
            && second.contains("skip all-day true"),
        "{}",
        listed.stdout
    );
    assert!(
        listed
            .stdout
            .lines()
            .any(|l| l.starts_with("Family") && l.contains("family")),
        "{}",
        listed.stdout
    );

    // Every bad input: a non-zero exit, one line naming what is wrong, nothing changed.
    let cases: &[(&[&str], &str)] = &[
        (
            &["accounts", "set", "Nobody", "--group", "x"],
            "no account is named \"Nobody\"",
        ),
        (
            &[
                "accounts",
                "set",
                "Calendar 01",
                "--exclude-title-regex",
                "(unclosed",
            ],
            "exclude title regex",
        ),
        (
            &[
                "accounts",
                "set",
                "Calendar 01",
                "--block-title",
                "{nope} Block",
            ],
            "block title",
        ),
        (
            &["accounts", "set", "Calendar 01", "--details", "some"],
            "details",
        ),
        (
            &["accounts", "set", "Calendar 01", "--skip-all-day", "maybe"],
            "--skip-all-day",
        ),
        (
            &["accounts", "set", "Calendar 01", "--look-back-days", "9999"],
            "look back days",
        ),
        (&["accounts", "set", "Calendar 01", "--group", ""], "group"),
        (&["accounts", "set", "Calendar 01"], "nothing to change"),
        (
            &["links", "set", "Calendar 01", "Calendar 01", "off"],
            "cannot block itself",
        ),
        (
            &["links", "set", "Calendar 01", "Family", "off"],
            "different groups",
        ),
        (
            &["links", "set", "Calendar 01", "Calendar 02", "maybe"],
            "on",
        ),
    ];
    for (args, expected) in cases {
        let run = cli.run(args).await;
        assert!(!run.ok, "{args:?} was accepted: {}", run.stdout);
        let message = run.stderr.trim();
        assert!(message.contains(expected), "{args:?}: {message}");
        assert!(
            !message.contains("\n") || message.starts_with("error: invalid value"),
            "{args:?}: one line, not {message}"
        );
    }
    assert_eq!(cli.run(&["links", "list"]).await.stdout, matrices.stdout);
    assert_eq!(
        cli.run(&["accounts", "list", "--rules"]).await.stdout,
        listed.stdout
    );
}
