//! Black-box tests of the `mcss serve` binary: start-up on its defaults, on PostgreSQL with
//! Redis, a bad configuration, a database that never answers, a port in use, SIGTERM, and
//! the Railway config naming a served route.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::PostgresDb;

const BIN: &str = env!("CARGO_BIN_EXE_mcss");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A `mcss serve` child in its own empty working directory and a clean environment.
struct Served {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Served {
    fn start(extra: &[(&str, String)]) -> Self {
        let dir = tempfile::tempdir().expect("a temp dir");
        let port = free_port();
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("mcss starts");
        Self {
            child,
            port,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn wait_healthy(&mut self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("mcss serve exited early with {status}");
            }
            if let Ok(r) = client.get(self.url("/health")).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("mcss serve did not answer /health within 30 s");
    }

    /// Sends SIGTERM and returns the exit code and how long the stop took.
    fn terminate(&mut self) -> (Option<i32>, Duration) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM sent");
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait works") {
                return (status.code(), started.elapsed());
            }
            if started.elapsed() > Duration::from_secs(15) {
                let _ = self.child.kill();
                return (None, started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn check_endpoints(served: &Served) -> serde_json::Value {
    let client = reqwest::Client::new();
    let health = client.get(served.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let detailed = client
        .get(served.url("/health/detailed"))
        .send()
        .await
        .unwrap();
    assert_eq!(detailed.status(), 200);
    let detailed: serde_json::Value = detailed.json().await.unwrap();
    assert_eq!(detailed["status"], "ok");
    assert_eq!(detailed["database"]["status"], "ok");
    assert_eq!(detailed["supervisor"]["status"], "ok");
    let metrics = client.get(served.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    assert!(text.contains("mcss_http_requests_total"), "{text}");
    detailed
}

#[tokio::test]
async fn serve_with_no_environment_starts_on_sqlite_and_stops_cleanly_on_sigterm() {
    let mut served = Served::start(&[]);
    served.wait_healthy().await;
    let detailed = check_endpoints(&served).await;
    assert_eq!(detailed["redis"]["status"], "not_configured");
    assert!(
        served._dir.path().join("mcss.db").exists(),
        "the default database is mcss.db in the working directory"
    );

    let (code, took) = served.terminate();
    assert_eq!(code, Some(0), "SIGTERM is a clean stop");
    assert!(took < Duration::from_secs(10), "stopped in {took:?}");
}

#[tokio::test]
async fn serve_on_postgres_with_redis_reports_both_healthy() {
    let Ok(redis) = std::env::var("MCSS_TEST_REDIS_URL") else {
        eprintln!("skipped: MCSS_TEST_REDIS_URL unset");
        return;
    };
    let Some(pg) = PostgresDb::create(
        "serve_on_postgres_with_redis_reports_both_healthy",
        "mcss_serve_",
    )
    .await
    else {
        return;
    };

    let mut served = Served::start(&[
        ("DATABASE_URL", pg.url.clone()),
        ("REDIS_URL", redis),
        ("ENCRYPTION_KEY", "11".repeat(32)),
    ]);
    served.wait_healthy().await;
    let detailed = check_endpoints(&served).await;
    assert_eq!(detailed["redis"]["status"], "ok");
    let (code, _) = served.terminate();
    assert_eq!(code, Some(0));
}

#[test]
fn a_nonsense_database_url_exits_non_zero_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("serve")
        .current_dir(dir.path())
        .env_clear()
        .env("DATABASE_URL", "nonsense")
        .output()
        .expect("mcss runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<_> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("DATABASE_URL"), "{stderr}");
}

#[test]
fn railway_json_parses_and_its_health_check_is_a_route_the_server_serves() {
    let raw = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/railway.json"))
        .expect("railway.json exists");
    let config: serde_json::Value = serde_json::from_str(&raw).expect("railway.json is JSON");
    assert_eq!(config["build"]["builder"], "DOCKERFILE");
    assert_eq!(config["deploy"]["restartPolicyType"], "ON_FAILURE");
    let path = config["deploy"]["healthcheckPath"]
        .as_str()
        .expect("a health check path");
    assert!(config["deploy"]["overlapSeconds"].is_u64());
    assert!(config["deploy"]["drainingSeconds"].is_u64());

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut served = Served::start(&[]);
        served.wait_healthy().await;
        let response = reqwest::get(served.url(path)).await.unwrap();
        assert_eq!(response.status(), 200, "{path} is served");
    });
}

#[test]
fn the_dockerfile_runs_mcss_serve_as_a_non_root_user_in_exec_form() {
    let dockerfile =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile")).unwrap();
    assert!(dockerfile.contains("ENTRYPOINT [\"/usr/local/bin/mcss\"]"));
    assert!(dockerfile.contains("CMD [\"serve\"]"));
    assert!(dockerfile.contains("USER mcss"));
    assert!(dockerfile.contains("ca-certificates"));
}

#[tokio::test]
async fn the_redis_coordinator_remembers_what_it_has_seen() {
    let Ok(url) = std::env::var("MCSS_TEST_REDIS_URL") else {
        eprintln!("skipped: MCSS_TEST_REDIS_URL unset");
        return;
    };
    let url = secrecy::SecretString::from(url);
    let redis = mcss::coordinator::Coordinator::connect(&url, Duration::from_secs(5))
        .await
        .expect("Redis is up");
    redis.ping().await.expect("PING answers");
    let key = format!("test:{}", uuid::Uuid::new_v4());
    assert!(redis
        .first_seen(&key, Duration::from_secs(60))
        .await
        .unwrap());
    assert!(!redis
        .first_seen(&key, Duration::from_secs(60))
        .await
        .unwrap());
    redis.quit().await;
}

#[tokio::test]
async fn an_unreachable_redis_is_a_clear_error_within_the_timeout() {
    let port = free_port();
    let url = secrecy::SecretString::from(format!("redis://127.0.0.1:{port}"));
    let started = Instant::now();
    let err = mcss::coordinator::Coordinator::connect(&url, Duration::from_secs(2))
        .await
        .expect_err("nothing listens there");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(err.to_string().contains("Redis"), "{err}");
}

/// `mcss serve` with only `vars`, in an empty temp dir, stdout dropped and stderr kept.
fn serve_child(args: &[&str], vars: &[(&str, String)]) -> (Child, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let child = Command::new(BIN)
        .arg("serve")
        .args(args)
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mcss starts");
    (child, dir)
}

/// A TCP server that accepts connections and never says a word, like a hung database.
fn silent_server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    port
}

fn stderr_lines(child: Child) -> Vec<String> {
    let out = child.wait_with_output().expect("mcss exits");
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_database_that_never_answers_fails_the_start_within_ten_seconds_and_no_port_is_bound() {
    // Arrange
    let db_port = silent_server();
    let port = free_port();

    // Act
    let (mut child, _dir) = serve_child(
        &[],
        &[
            ("PORT", port.to_string()),
            (
                "DATABASE_URL",
                format!("postgres://mcss:hunter2@127.0.0.1:{db_port}/mcss"),
            ),
            ("ENCRYPTION_KEY", "11".repeat(32)),
        ],
    );
    let started = Instant::now();
    let mut listened = false;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait works") {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            break None;
        }
        listened |= std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        std::thread::sleep(Duration::from_millis(100));
    };
    let took = started.elapsed();
    let lines = stderr_lines(child);

    // Assert
    assert!(!listened, "the port was bound before the database answered");
    assert!(took < Duration::from_secs(10), "exited after {took:?}");
    assert_eq!(status.and_then(|s| s.code()), Some(2), "{lines:?}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("DATABASE_URL"), "{lines:?}");
    assert!(lines[0].contains("did not answer"), "{lines:?}");
    assert!(!lines[0].contains("hunter2"), "{lines:?}");
}

#[test]
fn a_port_in_use_is_one_line_naming_the_way_out() {
    // Arrange: someone else holds the port, on every address.
    let holder = std::net::TcpListener::bind("[::]:0")
        .or_else(|_| std::net::TcpListener::bind("0.0.0.0:0"))
        .expect("a free port");
    let port = holder.local_addr().unwrap().port();

    // Act
    let (child, _dir) = serve_child(&["--port", &port.to_string()], &[]);
    let lines = stderr_lines(child);

    // Assert
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert!(
        line.starts_with(&format!("mcss: PORT: port {port} is already in use")),
        "{line}"
    );
    assert!(line.contains("--port or PORT"), "{line}");
    assert!(
        line.contains("another `mcss serve` or `mcss demo` running?"),
        "{line}"
    );
    assert_eq!(line.matches("in use").count(), 1, "{line}");
    drop(holder);
}
