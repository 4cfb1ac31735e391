//! Bad configuration, fed to the real `mcss` binary in a clean environment: every variable
//! of `config::VARIABLES` with a malformed value (exit status 2, exactly one stderr line
//! naming it, no secret repeated), the README's table against that list, and databases or
//! Redis that cannot be reached.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use mcss::config::VARIABLES;

const BIN: &str = env!("CARGO_BIN_EXE_mcss");

/// `mcss ARGS` with only `vars` (and `PATH`), in an empty temp dir so no `.env` is read.
fn mcss(args: &[&str], vars: &[(&str, &str)]) -> (Output, Duration) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let started = Instant::now();
    let out = Command::new(BIN)
        .args(args)
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(vars.iter().copied())
        .output()
        .expect("mcss runs");
    (out, started.elapsed())
}

/// Asserts the run failed with status 2 and exactly one stderr line naming `variable`.
fn assert_one_line_naming(out: &Output, variable: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "exit status; stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line: {stderr}");
    assert!(lines[0].starts_with("mcss: "), "{stderr}");
    assert!(lines[0].contains(variable), "names {variable}: {stderr}");
    stderr
}

/// `mcss check` with `variable` (its numbered form for `CALENDAR_NN_ID`) set to `value`.
fn assert_refused(variable: &str, value: &str) {
    let name = if variable == "CALENDAR_NN_ID" {
        "CALENDAR_01_ID"
    } else {
        variable
    };

    let (out, _) = mcss(&["check"], &[(name, value)]);

    let stderr = assert_one_line_naming(&out, name);
    if SECRETS.contains(&variable) {
        assert!(
            !stderr.contains(value),
            "the secret is not repeated: {stderr}"
        );
    }
    assert!(out.stdout.is_empty(), "nothing else happened");
}

/// Variables whose value must never be printed.
const SECRETS: &[&str] = &[
    "DATABASE_URL",
    "REDIS_URL",
    "ENCRYPTION_KEY",
    "WEBHOOK_SECRET",
    "GOOGLE_CLIENT_SECRET",
    "ADMIN_PASSWORD",
];

/// One test per variable: `test: "VARIABLE" = "malformed value"`, and [`COVERED`], the
/// variables that have one.
macro_rules! malformed {
    ($($test:ident: $variable:literal = $value:literal),+ $(,)?) => {
        mod malformed {
            $(
                #[test]
                fn $test() {
                    super::assert_refused($variable, $value);
                }
            )+
        }

        const COVERED: &[&str] = &[$($variable),+];
    };
}

malformed! {
    port: "PORT" = "http",
    database_url: "DATABASE_URL" = "mysql://u:hunter2@db.example.com/mcss",
    db_connect_timeout_secs: "DB_CONNECT_TIMEOUT_SECS" = "600",
    redis_url: "REDIS_URL" = "cache.example.com:6379",
    encryption_key: "ENCRYPTION_KEY" = "zzzz",
    webhook_base_url: "WEBHOOK_BASE_URL" = "ftp://mcss.example.com",
    webhook_secret: "WEBHOOK_SECRET" = "s3cr3t",
    google_client_id: "GOOGLE_CLIENT_ID" = "my client",
    google_client_secret: "GOOGLE_CLIENT_SECRET" = "top secret",
    google_redirect_uri: "GOOGLE_REDIRECT_URI" = "https://mcss.example.com/oauth",
    google_api_base_url: "GOOGLE_API_BASE_URL" = "www.googleapis.com",
    google_auth_url: "GOOGLE_AUTH_URL" = "accounts.google.com",
    google_token_url: "GOOGLE_TOKEN_URL" = "file:///token",
    google_revoke_url: "GOOGLE_REVOKE_URL" = "revoke",
    google_request_timeout_secs: "GOOGLE_REQUEST_TIMEOUT_SECS" = "forever",
    calendar_nn_id: "CALENDAR_NN_ID" = "two words",
    admin_password: "ADMIN_PASSWORD" = "pa55word",
    log_level: "LOG_LEVEL" = "loud",
    log_format: "LOG_FORMAT" = "xml",
    enable_metrics: "ENABLE_METRICS" = "maybe",
    installation_id: "INSTALLATION_ID" = "my installation",
    block_title_template: "BLOCK_TITLE_TEMPLATE" = "{name} Block",
    block_details: "BLOCK_DETAILS" = "some",
    skip_all_day: "SKIP_ALL_DAY" = "sometimes",
    skip_out_of_office: "SKIP_OUT_OF_OFFICE" = "sometimes",
    skip_focus_time: "SKIP_FOCUS_TIME" = "sometimes",
    exclude_title_regex: "EXCLUDE_TITLE_REGEX" = "(unclosed",
    sync_lookback_days: "SYNC_LOOKBACK_DAYS" = "-1",
    poll_interval_secs: "POLL_INTERVAL_SECS" = "1",
    reconcile_interval_secs: "RECONCILE_INTERVAL_SECS" = "often",
    token_flush_interval_secs: "TOKEN_FLUSH_INTERVAL_SECS" = "0",
    writes_per_second: "WRITES_PER_SECOND" = "fast",
    max_concurrent_syncs: "MAX_CONCURRENT_SYNCS" = "0",
    max_concurrent_full_syncs: "MAX_CONCURRENT_FULL_SYNCS" = "many",
    max_concurrent_google_requests: "MAX_CONCURRENT_GOOGLE_REQUESTS" = "lots",
    mass_delete_threshold: "MASS_DELETE_THRESHOLD" = "0",
    channel_renew_before_secs: "CHANNEL_RENEW_BEFORE_SECS" = "10",
    channel_ttl_secs: "CHANNEL_TTL_SECS" = "60",
    restart_backoff_initial_ms: "RESTART_BACKOFF_INITIAL_MS" = "0",
    restart_backoff_max_secs: "RESTART_BACKOFF_MAX_SECS" = "0",
    restart_max: "RESTART_MAX" = "none",
    restart_window_secs: "RESTART_WINDOW_SECS" = "0",
    shutdown_timeout_secs: "SHUTDOWN_TIMEOUT_SECS" = "0",
    lease_ttl_secs: "LEASE_TTL_SECS" = "1",
    max_body_bytes: "MAX_BODY_BYTES" = "1",
    request_timeout_secs: "REQUEST_TIMEOUT_SECS" = "1000",
}

#[test]
fn every_variable_the_code_reads_has_a_malformed_value_test() {
    let mut covered = COVERED.to_vec();
    let mut listed = VARIABLES.to_vec();
    covered.sort_unstable();
    listed.sort_unstable();

    assert_eq!(covered, listed);
}

/// The variable names in the first column of the README's configuration table.
fn readme_variables() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md exists");
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Configuration"))
        .expect("a Configuration section");
    let mut names: Vec<String> = section
        .lines()
        .filter(|l| l.starts_with('|'))
        .skip(2) // the header and its separator
        .filter_map(|row| row.split('|').nth(1))
        .flat_map(|cell| {
            cell.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .map(|name| {
            let numbered = name.strip_prefix("CALENDAR_").is_some_and(|rest| {
                rest.strip_suffix("_ID")
                    .is_some_and(|n| n == "NN" || n.chars().all(|c| c.is_ascii_digit()))
            });
            if numbered {
                "CALENDAR_NN_ID".to_owned()
            } else {
                name
            }
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

#[test]
fn the_readme_table_lists_exactly_the_variables_the_code_reads() {
    let mut listed: Vec<String> = VARIABLES.iter().map(|v| (*v).to_owned()).collect();
    listed.sort_unstable();

    let documented = readme_variables();

    let missing: Vec<_> = listed.iter().filter(|v| !documented.contains(v)).collect();
    let unknown: Vec<_> = documented.iter().filter(|v| !listed.contains(v)).collect();
    assert!(missing.is_empty(), "not in the README table: {missing:?}");
    assert!(
        unknown.is_empty(),
        "in the README but never read: {unknown:?}"
    );
}

#[test]
fn a_log_filter_with_a_made_up_level_for_one_target_is_refused() {
    let (out, _) = mcss(&["check"], &[("LOG_LEVEL", "info,mcss=loud")]);

    let stderr = assert_one_line_naming(&out, "LOG_LEVEL");
    assert!(stderr.contains("`loud` is not a log level"), "{stderr}");
}

#[test]
fn a_bad_regex_is_one_line_with_the_parsers_reason() {
    let (out, _) = mcss(&["check"], &[("EXCLUDE_TITLE_REGEX", "(unclosed")]);

    let stderr = assert_one_line_naming(&out, "EXCLUDE_TITLE_REGEX");
    assert!(stderr.contains("unclosed group"), "{stderr}");
}

#[test]
fn a_sqlite_file_in_a_missing_folder_names_the_variable_and_the_folder() {
    let (out, _) = mcss(
        &["check"],
        &[("DATABASE_URL", "sqlite:///no/such/dir/x.db")],
    );

    let stderr = assert_one_line_naming(&out, "DATABASE_URL");
    assert!(stderr.contains("/no/such/dir"), "{stderr}");
}

#[test]
fn a_postgres_port_where_nothing_listens_is_named_in_one_line_within_ten_seconds() {
    let port = closed_port();
    let url = format!("postgres://mcss:hunter2@127.0.0.1:{port}/mcss");
    let key = "11".repeat(32);

    let (out, took) = mcss(
        &["check"],
        &[("DATABASE_URL", &url), ("ENCRYPTION_KEY", &key)],
    );

    let stderr = assert_one_line_naming(&out, "DATABASE_URL");
    assert!(!stderr.contains("hunter2"), "{stderr}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn an_unreachable_redis_is_named_in_one_line_within_ten_seconds() {
    let url = format!("redis://:hunter2@127.0.0.1:{}", closed_port());

    let (out, took) = mcss(&["check"], &[("REDIS_URL", &url)]);

    let stderr = assert_one_line_naming(&out, "REDIS_URL");
    assert!(!stderr.contains("hunter2"), "{stderr}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn check_without_an_oauth_client_warns_what_is_missing_for_what() {
    let (out, _) = mcss(&["check"], &[]);

    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    for expected in [
        "warning: GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET are not set: accounts cannot be connected or refreshed",
        "warning: WEBHOOK_BASE_URL is not set: polling only, no push",
        "warning: ADMIN_PASSWORD is not set: no dashboard",
    ] {
        assert!(stdout.contains(expected), "{expected}\n{stdout}");
    }
    assert!(!stdout.contains("configuration: ok"), "{stdout}");
}

/// A port on loopback that refuses connections (bound, then closed again).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
