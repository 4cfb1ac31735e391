//! `mcss demo` as a person starts it: its `--help`, the banner it prints, where it listens
//! and where its logs go. Runs the built binary.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn demo_help_lists_every_scenario_with_one_line_each() {
    let out = Command::new(env!("CARGO_BIN_EXE_mcss"))
        .args(["demo", "--help"])
        .output()
        .expect("mcss runs");

    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for (name, what) in mcss::demo::SCENARIOS {
        let line = help
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("{name} in --help:\n{help}"));
        assert!(
            line.contains(what),
            "{name} is explained on its line: {line}"
        );
    }
}

/// A running `mcss demo`, killed when dropped.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_demo_listens_on_loopback_prints_both_addresses_and_keeps_logs_out_of_the_banner() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("demo.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mcss"))
        .args(["demo", "--port", "0", "--log-file"])
        .arg(&log)
        .env("LOG_LEVEL", "info")
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mcss demo starts");
    let stdout = child.stdout.take().unwrap();
    let running = Running(child);

    // Read the banner up to the line that ends it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut banner = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let done = line.contains("Ctrl-C");
        banner.push(line);
        if done || Instant::now() > deadline {
            break;
        }
    }
    let text = banner.join("\n");
    let address = |label: &str| -> String {
        banner
            .iter()
            .find_map(|l| {
                l.trim()
                    .strip_prefix(label)
                    .map(|rest| rest.trim().to_owned())
            })
            .unwrap_or_else(|| panic!("a `{label}` line in the banner:\n{text}"))
    };
    let dashboard = address("dashboard:");
    let emulator = address("emulator:");
    assert!(dashboard.starts_with("http://127.0.0.1:"), "{dashboard}");
    assert!(emulator.starts_with("http://127.0.0.1:"), "{emulator}");
    assert!(
        text.contains(&log.display().to_string()),
        "the log file is named:\n{text}"
    );
    assert!(
        !banner
            .iter()
            .any(|l| l.trim_start().starts_with('{') || l.contains(" INFO ")),
        "no log line in the banner:\n{text}"
    );

    // Loopback only: the same port on the IPv6 loopback (which a wildcard bind would also
    // answer) is refused.
    let port: u16 = dashboard
        .trim_start_matches("http://127.0.0.1:")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    assert!(
        std::net::TcpStream::connect(("::1", port)).is_err(),
        "the demo does not listen beyond 127.0.0.1"
    );
    assert!(log.exists(), "logs go to the named file");
    drop(running);
}
