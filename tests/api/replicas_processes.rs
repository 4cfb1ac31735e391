//! Several real `mcss serve` processes on one PostgreSQL database (with and without Redis),
//! behind a round-robin load balancer that also receives the emulator's push notifications,
//! under a steady load of changes made through the plain Calendar API:
//! - every calendar is owned by exactly one replica, as rendezvous hashing over the live
//!   replicas says, and Google calls per change stay within 10 % of one replica's;
//! - a replica killed with SIGKILL loses its calendars within the lease TTL and every change
//!   made meanwhile propagates, with zero duplicates and zero orphans;
//! - a replica paused with SIGSTOP past its leases, then resumed, writes nothing of its old
//!   tenure;
//! - a rolling deploy (start the new replica, SIGTERM the old one) moves every calendar in
//!   under two seconds and delays no change by more than two seconds;
//! - a session made on one replica works on another;
//! - on SQLite a second `serve` on the same file refuses to start.
//!
//! Each test takes well under a minute. CI runs every scenario without Redis and the first
//! one with Redis too; `MCSS_TEST_REPLICA_MATRIX=1 ./scripts/test.sh -E
//! 'test(/^replicas_processes::/)'` runs the pause and deploy scenarios with Redis as well.
//! PostgreSQL scenarios pass with a note without `MCSS_TEST_POSTGRES_URL`, Redis ones
//! without `MCSS_TEST_REDIS_URL`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gcal_emulator::{Emulator, EmulatorConfig, EmulatorHandle, Settings as EmuSettings};
use mcss::actors::ownership::{desired_owner, LiveSet};
use mcss::config::{EncryptionKey, Settings};
use mcss::domain::AccountId;
use mcss::store::Store;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::support::{
    base_vars, eventually_within, hour_slot, marker_of, Backend, Calendar, Observer, TestDb,
};

const BIN: &str = env!("CARGO_BIN_EXE_mcss");
const PASSWORD: &str = "replica-processes-password";
/// Short leases, so a dead replica's calendars move within seconds.
const TTL_SECS: u64 = 3;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn matrix() -> bool {
    std::env::var("MCSS_TEST_REPLICA_MATRIX").is_ok_and(|v| v == "1")
}

// ---------------------------------------------------------------------------------------
// The load balancer
// ---------------------------------------------------------------------------------------

/// Round-robin over the live backends' ports: a backend that refuses or does not answer
/// within a second is skipped for the next one, as Railway's edge would.
struct Balancer {
    port: u16,
    backends: Arc<Mutex<Vec<u16>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct Route {
    backends: Arc<Mutex<Vec<u16>>>,
    next: Arc<AtomicUsize>,
    http: reqwest::Client,
}

async fn start_balancer() -> Balancer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let backends = Arc::new(Mutex::new(Vec::new()));
    let route = Route {
        backends: backends.clone(),
        next: Arc::new(AtomicUsize::new(0)),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(1))
            .build()
            .unwrap(),
    };
    let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let route = route.clone();
        async move { relay(route, request).await }
    });
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Balancer {
        port,
        backends,
        task,
    }
}

async fn relay(route: Route, request: axum::extract::Request) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 1 << 20).await else {
        return axum::http::StatusCode::BAD_REQUEST.into_response();
    };
    let backends = route.backends.lock().clone();
    let first = route.next.fetch_add(1, Ordering::Relaxed);
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    for i in 0..backends.len() {
        let port = backends[(first + i) % backends.len()];
        let mut forward = route
            .http
            .request(
                parts.method.clone(),
                format!("http://127.0.0.1:{port}{path}"),
            )
            .body(body.clone());
        for (name, value) in &parts.headers {
            if name != axum::http::header::HOST {
                forward = forward.header(name, value);
            }
        }
        if let Ok(answer) = forward.send().await {
            let status = answer.status();
            let bytes = answer.bytes().await.unwrap_or_default();
            return (status, bytes).into_response();
        }
    }
    axum::http::StatusCode::BAD_GATEWAY.into_response()
}

// ---------------------------------------------------------------------------------------
// The cluster
// ---------------------------------------------------------------------------------------

/// One `mcss serve` process.
struct Replica {
    child: Child,
    port: u16,
    log: PathBuf,
    id: String,
}

impl Replica {
    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).expect("the signal is sent");
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = kill(self.pid(), Signal::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Cluster {
    emulator: EmulatorHandle,
    env: Vec<(String, String)>,
    balancer: Balancer,
    replicas: Vec<Option<Replica>>,
    calendars: Vec<Calendar>,
    store: Store,
    http: reqwest::Client,
    dir: tempfile::TempDir,
    _db: TestDb,
}

impl Cluster {
    /// `calendars` accounts added with `mcss accounts add` on a fresh PostgreSQL database;
    /// no replica running yet. `None` (with a note) without PostgreSQL, or without Redis
    /// when `redis` is asked for.
    async fn new(test: &str, calendars: usize, redis: bool) -> Option<Cluster> {
        let redis_url = if redis {
            match std::env::var("MCSS_TEST_REDIS_URL") {
                Ok(url) => Some(url),
                Err(_) => {
                    eprintln!("{test}: skipped with Redis: MCSS_TEST_REDIS_URL unset");
                    return None;
                }
            }
        } else {
            None
        };
        let db = TestDb::create(Backend::Postgres, test).await?;
        let emulator = Emulator::start(EmulatorConfig {
            accounts: calendars,
            settings: EmuSettings {
                allow_http_webhooks: true,
                rate_limit_per_minute: None,
                ..EmuSettings::default()
            },
            ..EmulatorConfig::default()
        })
        .await
        .expect("the emulator starts");
        let balancer = start_balancer().await;
        let mut env: BTreeMap<String, String> =
            base_vars(&emulator, &db.url()).into_iter().collect();
        for (k, v) in [
            ("ENCRYPTION_KEY", EncryptionKey::generate().to_hex()),
            (
                "WEBHOOK_BASE_URL",
                format!("http://127.0.0.1:{}", balancer.port),
            ),
            ("POLL_INTERVAL_SECS", "300".to_owned()),
            ("LEASE_TTL_SECS", TTL_SECS.to_string()),
            ("ADMIN_PASSWORD", PASSWORD.to_owned()),
            ("ENABLE_METRICS", "true".to_owned()),
            ("LOG_LEVEL", "info".to_owned()),
            ("LOG_FORMAT", "json".to_owned()),
        ] {
            env.insert(k.to_owned(), v);
        }
        if let Some(url) = redis_url {
            env.insert("REDIS_URL".into(), url);
        }
        let env: Vec<(String, String)> = env.into_iter().collect();
        let settings = Settings::from_vars(env.clone()).expect("valid settings");
        let store = Store::connect(&settings)
            .await
            .expect("the test reads the store");
        store.migrate().await.expect("migrations");
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let mut cluster = Cluster {
            emulator,
            env,
            balancer,
            replicas: Vec::new(),
            calendars: Vec::new(),
            store,
            http,
            dir: tempfile::tempdir().expect("a temp dir"),
            _db: db,
        };
        cluster.add_accounts().await;
        Some(cluster)
    }

    fn command(&self) -> Command {
        let mut command = Command::new(BIN);
        command.env_clear();
        if let Ok(path) = std::env::var("PATH") {
            command.env("PATH", path);
        }
        command.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        command
    }

    async fn add_accounts(&mut self) {
        for (n, info) in self.emulator.accounts().iter().enumerate() {
            let output = self
                .command()
                .args([
                    "accounts",
                    "add",
                    "--alias",
                    &format!("Calendar {:02}", n + 1),
                ])
                .args(["--calendar-id", &info.calendar_id])
                .env("MCSS_REFRESH_TOKEN", &info.refresh_token)
                .output()
                .expect("mcss accounts add runs");
            assert!(
                output.status.success(),
                "accounts add: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let accounts = self.store.list_accounts().await.unwrap();
        self.calendars = self
            .emulator
            .accounts()
            .into_iter()
            .enumerate()
            .map(|(n, info)| Calendar {
                alias: format!("Calendar {:02}", n + 1),
                account: accounts
                    .iter()
                    .find(|a| a.calendar_id.as_str() == info.calendar_id)
                    .unwrap()
                    .id,
                email: info.email,
                calendar_id: info.calendar_id,
                refresh_token: info.refresh_token,
            })
            .collect();
    }

    /// Starts one more replica and waits until it answers and registered; returns its index.
    async fn launch(&mut self) -> usize {
        let port = free_port();
        let index = self.replicas.len();
        let log = self.dir.path().join(format!("replica-{index}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = self
            .command()
            .arg("serve")
            .env("PORT", port.to_string())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("mcss serve starts");
        let url = format!("http://127.0.0.1:{port}/health/detailed");
        let http = self.http.clone();
        let id = eventually_within("a new replica to answer", Duration::from_secs(30), || {
            let http = http.clone();
            let url = url.clone();
            async move {
                let health: Value = http.get(&url).send().await.ok()?.json().await.ok()?;
                health["replica"]["id"].as_str().map(str::to_owned)
            }
        })
        .await;
        self.replicas.push(Some(Replica {
            child,
            port,
            log,
            id,
        }));
        self.balancer.backends.lock().push(port);
        index
    }

    fn replica(&self, index: usize) -> &Replica {
        self.replicas[index].as_ref().expect("a running replica")
    }

    /// Takes replica `index` out of the balancer and returns it.
    fn take(&mut self, index: usize) -> Replica {
        let replica = self.replicas[index].take().expect("a running replica");
        self.balancer.backends.lock().retain(|p| *p != replica.port);
        replica
    }

    /// Calendar → the replica holding its unexpired lease.
    async fn owners(&self) -> HashMap<AccountId, String> {
        self.store
            .leases()
            .await
            .unwrap()
            .into_iter()
            .filter_map(|l| Some((l.calendar, l.owner?)))
            .collect()
    }

    fn running_ids(&self) -> Vec<String> {
        self.replicas
            .iter()
            .flatten()
            .map(|r| r.id.clone())
            .collect()
    }

    /// Waits until every calendar is owned by the running replica rendezvous hashing picks
    /// among them, every replica knows them all as live, and every calendar has synced.
    async fn settled(&self, within: Duration) {
        let ids = self.running_ids();
        let live = LiveSet::new(&ids);
        eventually_within("every calendar at its rendezvous owner", within, || async {
            let owners = self.owners().await;
            for calendar in &self.calendars {
                let want = desired_owner(calendar.account, &live)?;
                if owners.get(&calendar.account).map(String::as_str) != Some(want) {
                    return None;
                }
            }
            let mut owned = 0;
            for replica in self.replicas.iter().flatten() {
                let health: Value = self
                    .http
                    .get(replica.url("/health/detailed"))
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                let seen: HashSet<&str> = health["replica"]["live"]
                    .as_array()?
                    .iter()
                    .filter_map(Value::as_str)
                    .collect();
                if seen != ids.iter().map(String::as_str).collect() {
                    return None;
                }
                owned += health["replica"]["owned_calendars"].as_u64()?;
            }
            for calendar in &self.calendars {
                self.store
                    .sync_state(calendar.account)
                    .await
                    .ok()?
                    .sync_token?;
                self.store.current_channel(calendar.account).await.ok()??;
            }
            (owned == self.calendars.len() as u64).then_some(())
        })
        .await;
    }

    fn observer(&self) -> Observer {
        Observer {
            http: self.http.clone(),
            base_url: self.emulator.base_url().to_owned(),
            calendars: self.calendars.clone(),
        }
    }

    /// The users of the calendars, acting through the plain Calendar API.
    fn users(&self) -> Users {
        Users {
            http: self.http.clone(),
            base: self.emulator.base_url().to_owned(),
            token_url: self.emulator.token_url(),
            client: (
                self.emulator.client_id().to_owned(),
                self.emulator.client_secret().to_owned(),
            ),
            calendars: self.calendars.clone(),
            tokens: Arc::default(),
        }
    }

    /// Calendar API calls counted by the emulator since the last reset.
    async fn calendar_calls(&self) -> u64 {
        let counters: Value = self
            .http
            .get(format!("{}/emulator/counters", self.emulator.base_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        counters["byMethod"]
            .as_object()
            .map(|methods| {
                methods
                    .iter()
                    .filter(|(m, _)| m.starts_with("events.") || m.starts_with("channels."))
                    .flat_map(|(_, by)| by.as_object().into_iter().flatten())
                    .filter_map(|(_, n)| n.as_u64())
                    .sum()
            })
            .unwrap_or(0)
    }

    async fn reset_counters(&self) {
        self.http
            .delete(format!("{}/emulator/counters", self.emulator.base_url()))
            .send()
            .await
            .unwrap();
    }

    /// Zero duplicates, zero orphans, nothing missing, nothing pending.
    async fn assert_converged(&self, within: Duration) {
        let observer = self.observer();
        eventually_within("the calendars to converge", within, || async {
            let report = observer.check().await;
            let pending = self.store.pending_count(None).await.ok()?;
            (report.holds() && pending == 0).then_some(())
        })
        .await;
        let report = observer.check().await;
        assert!(report.holds(), "{report:?}");
    }

    /// `changes` changes one after another, each waited for; Calendar API calls per change.
    async fn calls_per_change(&self, changes: usize, tag: &str) -> f64 {
        let users = self.users();
        users.token(0).await;
        self.reset_counters().await;
        for k in 0..changes {
            let n = k % self.calendars.len();
            let id = users.insert(n, k, &format!("{tag} {k}")).await;
            users.propagated(n, &id, Duration::from_secs(20)).await;
        }
        // The echo of the last writes (each target lists its own change once).
        self.assert_converged(Duration::from_secs(20)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.calendar_calls().await as f64 / changes as f64
    }
}

/// The calendars' users: each change is an event inserted with the account's own token.
#[derive(Clone)]
struct Users {
    http: reqwest::Client,
    base: String,
    token_url: String,
    client: (String, String),
    calendars: Vec<Calendar>,
    tokens: Arc<Mutex<HashMap<usize, String>>>,
}

impl Users {
    async fn token(&self, n: usize) -> String {
        if let Some(token) = self.tokens.lock().get(&n).cloned() {
            return token;
        }
        let answer: Value = self
            .http
            .post(&self.token_url)
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", self.calendars[n].refresh_token.as_str()),
                ("client_id", self.client.0.as_str()),
                ("client_secret", self.client.1.as_str()),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = answer["access_token"].as_str().unwrap().to_owned();
        self.tokens.lock().insert(n, token.clone());
        token
    }

    /// A busy event inserted on calendar `n` (change number `k`); returns its id.
    async fn insert(&self, n: usize, k: usize, label: &str) -> String {
        let token = self.token(n).await;
        let (start, end) = hour_slot(1 + (k as i64 % 30), 8 + (k % 9) as u32);
        let url = format!(
            "{}/calendar/v3/calendars/{}/events",
            self.base, self.calendars[n].calendar_id
        );
        let event: Value = self
            .http
            .post(url)
            .bearer_auth(token)
            .json(&json!({
                "summary": label,
                "start": {"dateTime": start},
                "end": {"dateTime": end},
            }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        event["id"].as_str().expect("an event id").to_owned()
    }

    /// Waits until every other calendar holds a block for `event` of calendar `n`.
    async fn propagated(&self, n: usize, event: &str, within: Duration) {
        let observer = Observer {
            http: self.http.clone(),
            base_url: self.base.clone(),
            calendars: self.calendars.clone(),
        };
        let source = self.calendars[n].account.to_string();
        eventually_within("a change to reach every other calendar", within, || async {
            for other in (0..self.calendars.len()).filter(|o| *o != n) {
                let blocks = observer.blocks_on(other).await;
                let held = blocks
                    .iter()
                    .any(|b| marker_of(b) == Some((source.clone(), event.to_owned())));
                if !held {
                    return None;
                }
            }
            Some(())
        })
        .await;
    }
}

/// Changes made in the background, one every `every`, until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<(usize, String)>>,
}

impl Load {
    fn start(users: Users, every: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut made = Vec::new();
            let mut k = 0usize;
            while !flag.load(Ordering::Relaxed) {
                let n = k % users.calendars.len();
                let id = users.insert(n, k, &format!("Load {k}")).await;
                made.push((n, id));
                k += 1;
                tokio::time::sleep(every).await;
            }
            made
        });
        Load { stop, task }
    }

    async fn finish(self) -> Vec<(usize, String)> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the load task")
    }
}

/// The replica owning the most calendars.
async fn busiest(cluster: &Cluster) -> usize {
    let owners = cluster.owners().await;
    (0..cluster.replicas.len())
        .filter(|i| cluster.replicas[*i].is_some())
        .max_by_key(|i| {
            let id = &cluster.replica(*i).id;
            owners.values().filter(|o| *o == id).count()
        })
        .expect("a running replica")
}

// ---------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------

async fn three_replicas_share_the_calendars_and_a_killed_ones_move_within_the_ttl(redis: bool) {
    // Arrange: eight calendars on one replica, then three.
    let name = if redis {
        "replicas_kill_redis"
    } else {
        "replicas_kill"
    };
    let Some(mut cluster) = Cluster::new(name, 8, redis).await else {
        return;
    };
    cluster.launch().await;
    cluster.settled(Duration::from_secs(30)).await;
    let one = cluster.calls_per_change(8, "Alone").await;
    cluster.launch().await;
    cluster.launch().await;
    cluster.settled(Duration::from_secs(30)).await;
    let three = cluster.calls_per_change(8, "Shared").await;

    // A session made on one replica works on another.
    let session = sign_in(&cluster, 0).await;
    let overview = cluster
        .http
        .get(cluster.replica(2).url("/admin"))
        .header("Cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(overview.status(), reqwest::StatusCode::OK);

    // Act: SIGKILL the busiest replica under a steady load of changes.
    let load = Load::start(cluster.users(), Duration::from_millis(250));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let victim_index = busiest(&cluster).await;
    let victim = cluster.take(victim_index);
    let lost: Vec<AccountId> = cluster
        .owners()
        .await
        .into_iter()
        .filter(|(_, o)| *o == victim.id)
        .map(|(c, _)| c)
        .collect();
    let killed = Instant::now();
    drop(victim); // SIGKILL
    let survivors = cluster.running_ids();
    let moved = eventually_within(
        "the killed replica's calendars to move",
        Duration::from_secs(4 * TTL_SECS),
        || async {
            let owners = cluster.owners().await;
            lost.iter()
                .all(|c| owners.get(c).is_some_and(|o| survivors.contains(o)))
                .then(|| killed.elapsed())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let made = load.finish().await;

    // Assert
    eprintln!(
        "{name}: {} calendars moved {moved:?} after SIGKILL (TTL {TTL_SECS} s); Calendar API calls per change: {one:.2} alone, {three:.2} on three replicas; {} changes under load",
        lost.len(),
        made.len()
    );
    assert!(!lost.is_empty());
    assert!(
        moved <= Duration::from_secs(TTL_SECS) + Duration::from_millis(2_500),
        "the calendars moved {moved:?} after the kill"
    );
    assert!(
        (three - one).abs() <= one * 0.10,
        "{three:.2} calls per change on three replicas against {one:.2} on one"
    );
    cluster.assert_converged(Duration::from_secs(40)).await;
    let users = cluster.users();
    for (n, id) in &made {
        users.propagated(*n, id, Duration::from_secs(5)).await;
    }
    cluster.settled(Duration::from_secs(20)).await;
}

/// Signs in on replica `index`; returns the session cookie.
async fn sign_in(cluster: &Cluster, index: usize) -> String {
    let replica = cluster.replica(index);
    let form = cluster
        .http
        .get(replica.url("/admin/login"))
        .send()
        .await
        .unwrap();
    let nonce_cookie = form
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let html = form.text().await.unwrap();
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).unwrap() + marker.len();
    let csrf = &html[start..start + 64];
    let answer = cluster
        .http
        .post(replica.url("/admin/login"))
        .header("Cookie", nonce_cookie)
        .form(&[("password", PASSWORD), ("csrf", csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), reqwest::StatusCode::SEE_OTHER);
    answer
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("mcss_admin="))
        .expect("a session cookie")
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_the_calendars_and_a_killed_ones_move_within_the_ttl_without_redis() {
    three_replicas_share_the_calendars_and_a_killed_ones_move_within_the_ttl(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_the_calendars_and_a_killed_ones_move_within_the_ttl_with_redis() {
    three_replicas_share_the_calendars_and_a_killed_ones_move_within_the_ttl(true).await;
}

/// The lines of `log` from byte `from` on.
fn lines_after(log: &str, from: usize) -> Vec<&str> {
    log.get(from..).unwrap_or_default().lines().collect()
}

async fn a_stale_owner_paused_past_its_leases_writes_nothing_of_its_old_tenure(redis: bool) {
    // Arrange: three replicas, six calendars.
    let name = if redis {
        "replicas_pause_redis"
    } else {
        "replicas_pause"
    };
    let Some(mut cluster) = Cluster::new(name, 6, redis).await else {
        return;
    };
    for _ in 0..3 {
        cluster.launch().await;
    }
    cluster.settled(Duration::from_secs(30)).await;
    let stale_index = busiest(&cluster).await;
    let stale_id = cluster.replica(stale_index).id.clone();
    let its: Vec<AccountId> = cluster
        .owners()
        .await
        .into_iter()
        .filter(|(_, o)| *o == stale_id)
        .map(|(c, _)| c)
        .collect();

    // Act: SIGSTOP it, wait until the others hold its calendars, change those calendars
    // (some of their pings queue up in the paused replica's socket), then SIGCONT it.
    cluster.replica(stale_index).signal(Signal::SIGSTOP);
    eventually_within(
        "the paused replica's calendars to move",
        Duration::from_secs(4 * TTL_SECS),
        || async {
            let owners = cluster.owners().await;
            its.iter()
                .all(|c| owners.get(c).is_some_and(|o| *o != stale_id))
                .then_some(())
        },
    )
    .await;
    let users = cluster.users();
    let mut changed = Vec::new();
    for (k, calendar) in its.iter().enumerate() {
        let n = cluster
            .calendars
            .iter()
            .position(|c| c.account == *calendar)
            .unwrap();
        let id = users.insert(n, k, &format!("While paused {k}")).await;
        changed.push((n, id));
    }
    for (n, id) in &changed {
        users.propagated(*n, id, Duration::from_secs(20)).await;
    }
    let resumed_at = cluster.replica(stale_index).log_text().len();
    cluster.replica(stale_index).signal(Signal::SIGCONT);
    let stale = cluster.replica(stale_index);
    let noticed = Instant::now();
    while !stale.log_text()[resumed_at..].contains("leases lost") {
        assert!(
            noticed.elapsed() < Duration::from_secs(10),
            "the resumed replica did not notice its leases were gone; its log since:\n{}",
            &stale.log_text()[resumed_at..]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Back in the live set, it gets its share again and works normally.
    cluster.settled(Duration::from_secs(30)).await;
    let (n, _) = changed[0];
    let id = users.insert(n, 99, "After the pause").await;
    users.propagated(n, &id, Duration::from_secs(20)).await;

    // Assert: after SIGCONT, no block write and no sync of the old tenure — every write it
    // logged came after it was given leases again.
    let log = cluster.replica(stale_index).log_text();
    let after = lines_after(&log, resumed_at);
    let regained = after
        .iter()
        .position(|l| l.contains("leases handed to this replica") || l.contains("leases taken"))
        .unwrap_or(after.len());
    let stale_work: Vec<&&str> = after[..regained]
        .iter()
        .filter(|l| l.contains("\"block write\"") || l.contains("\"sync done\""))
        .collect();
    let forwarded = after[..regained]
        .iter()
        .filter(|l| l.contains("push ping accepted"))
        .count();
    eprintln!("{name}: after SIGCONT the stale replica passed on {forwarded} pings it had queued, and wrote nothing until it was given leases again");
    assert!(stale_work.is_empty(), "stale writes: {stale_work:?}");
    let metrics = cluster
        .http
        .get(cluster.replica(stale_index).url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("mcss_lease_losses_total") && !l.ends_with(" 0")),
        "a lease loss is counted"
    );
    cluster.assert_converged(Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_owner_paused_past_its_leases_writes_nothing_of_its_old_tenure_without_redis() {
    a_stale_owner_paused_past_its_leases_writes_nothing_of_its_old_tenure(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_owner_paused_past_its_leases_writes_nothing_of_its_old_tenure_with_redis() {
    if !matrix() {
        eprintln!("skipped: set MCSS_TEST_REPLICA_MATRIX=1 for the Redis variant");
        return;
    }
    a_stale_owner_paused_past_its_leases_writes_nothing_of_its_old_tenure(true).await;
}

async fn a_rolling_deploy_moves_every_calendar_at_once_and_delays_no_change(redis: bool) {
    // Arrange: the old replica owns four calendars.
    let name = if redis {
        "replicas_deploy_redis"
    } else {
        "replicas_deploy"
    };
    let Some(mut cluster) = Cluster::new(name, 4, redis).await else {
        return;
    };
    let old = cluster.launch().await;
    cluster.settled(Duration::from_secs(30)).await;

    // Changes one after another throughout the deploy, each timed from the insert until
    // its blocks are on every other calendar.
    let stop = Arc::new(AtomicBool::new(false));
    let changes = {
        let (users, stop) = (cluster.users(), stop.clone());
        tokio::spawn(async move {
            let mut delays = Vec::new();
            let mut k = 0;
            while !stop.load(Ordering::Relaxed) {
                let n = k % users.calendars.len();
                let started = Instant::now();
                let id = users.insert(n, k, &format!("Deploy {k}")).await;
                users.propagated(n, &id, Duration::from_secs(20)).await;
                delays.push(started.elapsed());
                k += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            delays
        })
    };

    // Act: start the new replica, let it take its share, then SIGTERM the old one.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let new = cluster.launch().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let new_id = cluster.replica(new).id.clone();
    let mut retiring = cluster.take(old);
    let termed = Instant::now();
    retiring.signal(Signal::SIGTERM);
    let moved = eventually_within(
        "every calendar to move to the new replica",
        Duration::from_secs(10),
        || async {
            let owners = cluster.owners().await;
            cluster
                .calendars
                .iter()
                .all(|c| owners.get(&c.account) == Some(&new_id))
                .then(|| termed.elapsed())
        },
    )
    .await;
    let (exit, _retired) = tokio::task::spawn_blocking(move || {
        let status = retiring.child.wait().expect("the old replica exits");
        (status, retiring)
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let delays = changes.await.unwrap();

    // Assert
    let slowest = delays.iter().max().copied().unwrap_or_default();
    eprintln!(
        "{name}: every calendar moved {moved:?} after SIGTERM; {} changes, slowest {slowest:?}",
        delays.len()
    );
    assert!(exit.success(), "the old replica stopped cleanly: {exit:?}");
    assert!(
        moved < Duration::from_secs(2),
        "moved {moved:?} after SIGTERM"
    );
    assert!(delays.len() >= 5, "{} changes made", delays.len());
    assert!(
        slowest <= Duration::from_secs(2),
        "a change took {slowest:?}: {delays:?}"
    );
    cluster.assert_converged(Duration::from_secs(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_deploy_moves_every_calendar_at_once_and_delays_no_change_without_redis() {
    a_rolling_deploy_moves_every_calendar_at_once_and_delays_no_change(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_deploy_moves_every_calendar_at_once_and_delays_no_change_with_redis() {
    if !matrix() {
        eprintln!("skipped: set MCSS_TEST_REPLICA_MATRIX=1 for the Redis variant");
        return;
    }
    a_rolling_deploy_moves_every_calendar_at_once_and_delays_no_change(true).await;
}

/// Settings changed with the command line beside two replicas (another process, no
/// `Control`, neither replica's actors in it) reach the calendars' owners: a link turned off
/// removes its block, whichever replica owns the target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_set_with_the_cli_beside_two_replicas_take_effect_on_the_owners() {
    // Arrange: two replicas, three calendars, one event mirrored to both others.
    let Some(mut cluster) = Cluster::new("replicas_cli_links", 3, false).await else {
        return;
    };
    cluster.launch().await;
    cluster.launch().await;
    cluster.settled(Duration::from_secs(30)).await;
    let users = cluster.users();
    let event = users.insert(0, 0, "Board").await;
    users.propagated(0, &event, Duration::from_secs(20)).await;

    // Act
    let output = cluster
        .command()
        .args(["links", "set", "Calendar 01", "Calendar 03", "off"])
        .output()
        .expect("mcss links set runs");
    assert!(
        output.status.success(),
        "links set: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    // Assert: within a couple of ownership ticks (TTL 3 s: a tick a second), not at the
    // next poll (300 s).
    let observer = cluster.observer();
    eventually_within(
        "the block of the link turned off to go",
        Duration::from_secs(10),
        || async {
            let on_2 = observer.blocks_on(1).await;
            let on_3 = observer.blocks_on(2).await;
            let pending = cluster.store.pending_count(None).await.ok()?;
            (on_2.len() == 1 && on_3.is_empty() && pending == 0).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_serve_on_the_same_sqlite_file_refuses_to_start_with_one_line() {
    // Arrange: one `serve` on a SQLite file.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("mcss.db").display());
    let run = move |port: u16| {
        let mut command = Command::new(BIN);
        command
            .env_clear()
            .env("DATABASE_URL", &url)
            .env("PORT", port.to_string())
            .env("LOG_LEVEL", "warn")
            .env("ENABLE_METRICS", "false")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .arg("serve");
        command
    };
    let first_port = free_port();
    let mut first = run(first_port).spawn().expect("the first serve starts");
    let http = reqwest::Client::new();
    eventually_within(
        "the first serve to answer",
        Duration::from_secs(30),
        || async {
            let r = http
                .get(format!("http://127.0.0.1:{first_port}/health"))
                .send()
                .await
                .ok()?;
            r.status().is_success().then_some(())
        },
    )
    .await;

    // Act
    let again = run.clone();
    let second = tokio::task::spawn_blocking(move || again(free_port()).output())
        .await
        .unwrap()
        .expect("the second serve runs");

    // Assert: exit status 2 (configuration), one line naming DATABASE_URL and the reason.
    let _ = first.kill();
    let _ = first.wait();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("DATABASE_URL"))
        .unwrap_or_else(|| panic!("a line naming DATABASE_URL: {stderr}"));
    assert!(line.contains("another `mcss serve` already runs"), "{line}");

    // The lock dies with its process: a new serve starts once the first is gone.
    let port = free_port();
    let mut third = run(port).spawn().expect("a new serve starts");
    eventually_within(
        "a serve after the first one died",
        Duration::from_secs(30),
        || async {
            let r = http
                .get(format!("http://127.0.0.1:{port}/health"))
                .send()
                .await
                .ok()?;
            r.status().is_success().then_some(())
        },
    )
    .await;
    let _ = third.kill();
    let _ = third.wait();
}
