//! The processes the scale benchmark drives: the emulator's release binary, `mcss serve` and
//! `mcss accounts import`, a throwaway PostgreSQL; and what `/proc` says about a process.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The folder the bench's own binaries are in (`target/release`): the bench executable is
/// `target/release/deps/scale-…`.
pub fn release_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the bench knows its own path");
    exe.parent()
        .and_then(Path::parent)
        .expect("the bench runs from target/<profile>/deps")
        .to_owned()
}

/// Builds the emulator's release binary (a no-op when it is fresh) and returns its path.
pub fn emulator_binary() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target = release_dir().parent().expect("target/<profile>").to_owned();
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "-p",
            "gcal-emulator",
            "--bin",
            "gcal-emulator",
        ])
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building gcal-emulator failed");
    target.join("release").join("gcal-emulator")
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The emulator in its own process.
pub struct EmulatorProcess {
    child: Child,
    pub base_url: String,
    pub client_id: String,
    pub client_secret: String,
}

impl EmulatorProcess {
    pub fn start(binary: &Path, latency_ms: u64) -> EmulatorProcess {
        let mut child = Command::new(binary)
            .args([
                "--accounts",
                "0",
                "--latency-ms",
                &latency_ms.to_string(),
                "--allow-http-webhooks",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("gcal-emulator starts");
        let stdout = child.stdout.take().expect("piped");
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the emulator prints its ready line");
        let ready: Value = serde_json::from_str(&line).expect("the ready line is JSON");
        let text = |k: &str| ready[k].as_str().expect("ready line field").to_owned();
        EmulatorProcess {
            base_url: text("base_url"),
            client_id: text("client_id"),
            client_secret: text("client_secret"),
            child,
        }
    }
}

impl Drop for EmulatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `mcss serve`.
pub struct ServeProcess {
    child: Child,
    pub pid: i32,
    pub port: u16,
    pub started: Instant,
}

impl ServeProcess {
    pub fn start(binary: &Path, env: &[(String, String)], port: u16, log: &Path) -> Self {
        let log = std::fs::File::create(log).expect("the serve log opens");
        // The service logs to stdout; a panic or a refusal to start goes to stderr.
        let stdout = log.try_clone().expect("the serve log");
        let child = Command::new(binary)
            .arg("serve")
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("PORT", port.to_string())
            .env("WEBHOOK_BASE_URL", format!("http://127.0.0.1:{port}"))
            .stdout(stdout)
            .stderr(log)
            .spawn()
            .expect("mcss serve starts");
        ServeProcess {
            pid: i32::try_from(child.id()).expect("a pid"),
            child,
            port,
            started: Instant::now(),
        }
    }

    /// SIGTERM, then waits for the exit (killing it after 30 s).
    pub fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.pid);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `/proc/PID/status` field in MiB (`VmHWM`, `VmRSS`).
pub fn status_mib(pid: i32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// User + system CPU seconds a process has used (clock ticks of 1/100 s).
pub fn cpu_seconds(pid: i32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // The command name is in parentheses and may hold spaces: count fields after it.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields 14 and 15 of stat (utime, stime) are 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// A throwaway PostgreSQL cluster (as `scripts/test.sh` starts one), or the one named by
/// `MCSS_BENCH_POSTGRES_URL`.
pub struct Postgres {
    pub admin_url: String,
    cluster: Option<(PathBuf, tempfile::TempDir)>,
}

impl Postgres {
    pub fn start() -> Option<Postgres> {
        if let Ok(url) = std::env::var("MCSS_BENCH_POSTGRES_URL") {
            return Some(Postgres {
                admin_url: url,
                cluster: None,
            });
        }
        let bin = std::iter::once(PathBuf::from("/usr/lib/postgresql/15/bin"))
            .chain(
                std::fs::read_dir("/usr/lib/postgresql")
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.path().join("bin")),
            )
            .find(|d| d.join("initdb").exists())?;
        let dir = tempfile::tempdir().ok()?;
        let root = nix::unistd::geteuid().is_root();
        if root {
            let _ = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(dir.path())
                .status();
        }
        let run = |program: &Path, args: &[&str]| {
            let mut command = if root {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(program);
                c
            } else {
                Command::new(program)
            };
            command
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let data = dir.path().join("data");
        let data_s = data.to_str()?.to_owned();
        if !run(
            &bin.join("initdb"),
            &["-D", &data_s, "-A", "trust", "-U", "postgres"],
        ) {
            return None;
        }
        let port = free_port();
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300",
            dir.path().display()
        );
        let log = dir.path().join("log");
        let started = run(
            &bin.join("pg_ctl"),
            &[
                "-D",
                &data_s,
                "-l",
                log.to_str()?,
                "-w",
                "-t",
                "30",
                "-o",
                &options,
                "start",
            ],
        );
        if !started {
            return None;
        }
        Some(Postgres {
            admin_url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            cluster: Some((bin, dir)),
        })
    }

    /// A fresh database on the cluster, by URL.
    pub async fn database(&self, name: &str) -> String {
        use sea_orm::ConnectionTrait as _;
        let admin = sea_orm::Database::connect(&self.admin_url)
            .await
            .expect("PostgreSQL answers");
        let _ = admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name}"))
            .await;
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .expect("CREATE DATABASE");
        let _ = admin.close().await;
        let (base, _) = self
            .admin_url
            .rsplit_once('/')
            .expect("the URL names a database");
        format!("{base}/{name}")
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some((bin, dir)) = &self.cluster {
            let data = dir.path().join("data");
            let mut command = if nix::unistd::geteuid().is_root() {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(bin.join("pg_ctl"));
                c
            } else {
                Command::new(bin.join("pg_ctl"))
            };
            let _ = command
                .arg("-D")
                .arg(data)
                .args(["-m", "immediate", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}
