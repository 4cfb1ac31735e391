//! Google's own client library (Python `google-api-python-client`, built from Google's
//! discovery document, the copy in `emulator/data/calendar.v3.json`) lists, inserts, patches
//! and deletes events on the emulator binary's printed base URL.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn googles_own_client_library_works_against_the_emulator_binary() {
    let have_library = Command::new("python3")
        .args(["-c", "import googleapiclient, google.oauth2"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !have_library && std::env::var("CI").is_err() {
        eprintln!(
            "skipped: google-api-python-client is not installed (scripts/test.sh installs it)"
        );
        return;
    }
    assert!(have_library, "CI installs google-api-python-client");
    let discovery = concat!(env!("CARGO_MANIFEST_DIR"), "/data/calendar.v3.json");
    assert!(std::path::Path::new(discovery).exists(), "{discovery}");

    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gcal-emulator"))
        .args(["--port", "0", "--accounts", "5"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the emulator starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("one JSON line");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "ready line within 2 s"
    );
    let ready: serde_json::Value = serde_json::from_str(&line).expect("the line is JSON");
    let account = &ready["accounts"][0];

    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/conformance/calendar_roundtrip.py"
    );
    let out = Command::new("python3")
        .args([
            script,
            ready["base_url"].as_str().unwrap(),
            discovery,
            account["refresh_token"].as_str().unwrap(),
            ready["client_id"].as_str().unwrap(),
            ready["client_secret"].as_str().unwrap(),
        ])
        .output()
        .expect("python3 runs");
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("list, insert, patch, delete ok"));
}
