//! The binary prints exactly one JSON line when ready and stops on SIGTERM.
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn the_binary_prints_one_json_line_with_accounts_and_stops_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gcal-emulator"))
        .args([
            "--port",
            "0",
            "--accounts",
            "5",
            "--client-id",
            "cid",
            "--client-secret",
            "csecret",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("a line");
    let v: serde_json::Value = serde_json::from_str(&line).expect("the line is JSON");
    assert!(v["base_url"]
        .as_str()
        .expect("base_url")
        .starts_with("http://127.0.0.1:"));
    assert_eq!(v["client_id"], "cid");
    assert_eq!(v["client_secret"], "csecret");
    let accounts = v["accounts"].as_array().expect("accounts");
    assert_eq!(accounts.len(), 5);
    for a in accounts {
        assert!(
            a["email"].is_string()
                && a["calendar_id"].is_string()
                && a["refresh_token"].is_string()
        );
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let exit = child.wait().expect("child exits");
    assert!(exit.success(), "{exit:?}");
}
