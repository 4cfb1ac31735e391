//! `mcss accounts import`: the built binary against an in-process `gcal-emulator` (accounts
//! provisioned in bulk through `POST /emulator/accounts/bulk`) and a SQLite file in a temp dir.

use gcal_emulator::{Emulator, EmulatorConfig, EmulatorHandle};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt as _;

use crate::support::count_2xx;

const HEADER: &str = "alias,refresh_token,calendar_id,group";

struct Import {
    emulator: EmulatorHandle,
    dir: tempfile::TempDir,
    /// `(email, refresh token)` of each provisioned Google account.
    users: Vec<(String, String)>,
}

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Import {
    async fn start(users: usize) -> Import {
        let emulator = Emulator::start(EmulatorConfig::default())
            .await
            .expect("the emulator starts");
        let created: Value = reqwest::Client::new()
            .post(format!("{}/emulator/accounts/bulk", emulator.base_url()))
            .json(&json!({"count": users, "prefix": "imp"}))
            .send()
            .await
            .expect("the emulator answers")
            .error_for_status()
            .expect("the bulk request is accepted")
            .json()
            .await
            .expect("JSON");
        let users = created["accounts"]
            .as_array()
            .expect("accounts")
            .iter()
            .map(|a| {
                (
                    a["email"].as_str().unwrap().to_owned(),
                    a["refresh_token"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        Import {
            emulator,
            dir: tempfile::tempdir().expect("temp dir"),
            users,
        }
    }

    fn token(&self, n: usize) -> &str {
        &self.users[n].1
    }

    /// `mcss ARGS` with only the test's environment, feeding `stdin`.
    async fn run(&self, args: &[&str], stdin: &str) -> Run {
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
            .env("GOOGLE_API_BASE_URL", self.emulator.base_url())
            .env("GOOGLE_AUTH_URL", self.emulator.auth_url())
            .env("GOOGLE_TOKEN_URL", self.emulator.token_url())
            .env("INSTALLATION_ID", "import-test")
            .env("LOG_LEVEL", "warn")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("the mcss binary starts");
        let mut input = child.stdin.take().expect("stdin is piped");
        input.write_all(stdin.as_bytes()).await.expect("stdin");
        drop(input);
        let out =
            tokio::time::timeout(std::time::Duration::from_secs(90), child.wait_with_output())
                .await
                .expect("mcss finishes within 90 s")
                .expect("mcss runs");
        Run {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Writes `text` into the temp dir and imports it.
    async fn import_file(&self, text: &str) -> Run {
        let path = self.dir.path().join("calendars.csv");
        std::fs::write(&path, text).expect("write the CSV");
        self.run(&["accounts", "import", path.to_str().unwrap()], "")
            .await
    }

    /// `mcss accounts list`, as (alias, group, calendar id, status) per line.
    async fn accounts(&self) -> Vec<(String, String, String, String)> {
        let run = self.run(&["accounts", "list"], "").await;
        assert!(run.ok, "accounts list fails: {}", run.stderr);
        run.stdout
            .lines()
            .filter(|l| *l != "no accounts connected")
            .map(|l| {
                let mut parts = l.split_whitespace();
                let mut next = || parts.next().unwrap().to_owned();
                (next(), next(), next(), next())
            })
            .collect()
    }

    async fn counters(&self) -> Value {
        reqwest::get(format!("{}/emulator/counters", self.emulator.base_url()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn secondary_calendar(&self, n: usize) -> String {
        let created: Value = reqwest::Client::new()
            .post(format!(
                "{}/emulator/accounts/{}/calendars",
                self.emulator.base_url(),
                self.users[n].0
            ))
            .json(&json!({"summary": "Team"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        created["id"].as_str().unwrap().to_owned()
    }
}

#[tokio::test]
async fn a_good_file_connects_every_line_into_its_group() {
    // Arrange: three Google accounts, the first with a secondary calendar too.
    let import = Import::start(3).await;
    let team = import.secondary_calendar(0).await;
    let text = format!(
        "{HEADER}\nAliceWork,{t0},primary,alice\nAliceTeam,{t0},{team},alice\n\"Bob,home\",{t1},,bob\nCarol,{t2},,\n",
        t0 = import.token(0),
        t1 = import.token(1),
        t2 = import.token(2),
    );

    // Act
    let run = import.import_file(&text).await;

    // Assert
    assert!(run.ok, "import fails: {}", run.stderr);
    assert!(
        run.stdout
            .contains("4 lines: 4 connected, 0 reconnected, 0 unchanged, 0 failed"),
        "{}",
        run.stdout
    );
    let accounts = import.accounts().await;
    let calendars: Vec<_> = accounts.iter().map(|a| a.2.as_str()).collect();
    assert_eq!(accounts.len(), 4, "{accounts:?}");
    assert!(calendars.contains(&team.as_str()));
    assert!(calendars.contains(&import.users[0].0.as_str()));
    assert!(accounts.iter().all(|a| a.3 == "active"));
    assert!(accounts.iter().any(|a| a.0 == "Bob,home"), "{accounts:?}");
    let group_of = |alias: &str| {
        accounts
            .iter()
            .find(|a| a.0 == alias)
            .map(|a| a.1.clone())
            .unwrap_or_default()
    };
    assert_eq!(group_of("AliceWork"), "alice");
    assert_eq!(group_of("AliceTeam"), "alice");
    assert_eq!(group_of("Bob,home"), "bob");
    assert_eq!(group_of("Carol"), "default");
    assert!(!run.stdout.contains(import.token(0)) && !run.stderr.contains(import.token(0)));
}

#[tokio::test]
async fn bad_lines_are_reported_by_number_with_one_reason_and_the_other_lines_are_imported() {
    // Arrange: line 3 lacks a field, line 4 repeats an alias, line 5 has a refused token, line
    // 6 a malformed calendar id; lines 2 and 7 are good. (Aliases without spaces: `accounts
    // list` is read by columns.)
    let import = Import::start(2).await;
    let text = format!(
        "{HEADER}\nGoodOne,{t0},,\nShort,{t1}\nGoodOne,{t1},,\nRefused,1//not-a-token,,\nOdd,{t1},bad id with spaces,\nGoodTwo,{t1},,\n",
        t0 = import.token(0),
        t1 = import.token(1),
    );

    // Act
    let run = import.import_file(&text).await;

    // Assert
    assert!(!run.ok, "a file with failed lines exits non-zero");
    let reported: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("line "))
        .collect();
    assert_eq!(reported.len(), 4, "{}", run.stderr);
    assert!(run.stderr.contains("line 3: has 2 fields; 4 are needed"));
    assert!(run
        .stderr
        .contains("line 4: the alias \"GoodOne\" is already used on line 2"));
    assert!(run
        .stderr
        .contains("line 5: Google refused this refresh token"));
    assert!(run.stderr.contains("line 6: calendar_id"), "{}", run.stderr);
    assert!(run.stdout.contains("2 connected"), "{}", run.stdout);
    assert!(run.stdout.contains("4 failed"), "{}", run.stdout);
    let aliases: Vec<_> = import.accounts().await.into_iter().map(|a| a.0).collect();
    assert_eq!(aliases.len(), 2, "{aliases:?}");
    assert!(!run.stderr.contains(import.token(1)));
}

#[tokio::test]
async fn a_file_on_standard_input_is_imported_and_a_rate_limit_is_waited_out() {
    // Arrange: Google answers the first calendarList.get with 429.
    let import = Import::start(2).await;
    reqwest::Client::new()
        .post(format!("{}/emulator/faults", import.emulator.base_url()))
        .json(&json!({"kind": "rateLimitExceeded", "status": 429, "count": 1, "methods": ["calendarList.get"]}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let text = format!(
        "{HEADER}\nFirst,{},,\nSecond,{},,\n",
        import.token(0),
        import.token(1)
    );

    // Act
    let run = import.run(&["accounts", "import", "-"], &text).await;

    // Assert
    assert!(run.ok, "import fails: {}", run.stderr);
    assert!(run.stdout.contains("2 connected"), "{}", run.stdout);
    assert!(
        run.stderr.contains("rate limited by Google, retrying in"),
        "{}",
        run.stderr
    );
    assert_eq!(import.accounts().await.len(), 2);
}

#[tokio::test]
async fn importing_the_same_file_again_changes_nothing_and_asks_google_nothing() {
    // Arrange
    let import = Import::start(3).await;
    let text = format!(
        "{HEADER}\nA,{},,g\nB,{},,g\nC,{},,g\n",
        import.token(0),
        import.token(1),
        import.token(2)
    );
    let first = import.import_file(&text).await;
    assert!(first.ok, "first import fails: {}", first.stderr);
    let before = import.accounts().await;
    let calls_before = count_2xx(&import.counters().await, "calendarList.get");

    // Act
    let again = import.import_file(&text).await;

    // Assert
    assert!(again.ok, "second import fails: {}", again.stderr);
    assert!(
        again
            .stdout
            .contains("0 connected, 0 reconnected, 3 unchanged, 0 failed"),
        "{}",
        again.stdout
    );
    assert_eq!(import.accounts().await, before);
    assert_eq!(
        count_2xx(&import.counters().await, "calendarList.get"),
        calls_before
    );
}

#[tokio::test]
async fn a_file_without_the_header_is_refused_before_anything_is_connected() {
    let import = Import::start(1).await;

    let run = import
        .import_file(&format!("A,{},,\n", import.token(0)))
        .await;

    assert!(!run.ok);
    assert!(
        run.stderr
            .contains("the first line must be the header `alias,refresh_token,calendar_id,group`"),
        "{}",
        run.stderr
    );
    assert!(import.accounts().await.is_empty());
}
