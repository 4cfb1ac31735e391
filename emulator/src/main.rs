//! `gcal-emulator` binary: parses flags, starts the emulator, prints one JSON line with the
//! base URL, client credentials and accounts, and serves until SIGTERM or SIGINT.
use clap::Parser;
use gcal_emulator::{Emulator, EmulatorConfig, Settings};

#[derive(Debug, Parser)]
#[command(name = "gcal-emulator", about = "Google Calendar API v3 emulator")]
struct Args {
    /// Port on 127.0.0.1 (0 = any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Accounts to create at start.
    #[arg(long, default_value_t = 1)]
    accounts: usize,
    /// Latency added to every Calendar API request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Accept http:// webhook addresses in events.watch (Google requires HTTPS).
    #[arg(long)]
    allow_http_webhooks: bool,
    #[arg(long, default_value = "emulator-client.apps.googleusercontent.com")]
    client_id: String,
    #[arg(long, default_value = "emulator-secret")]
    client_secret: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args = Args::parse();
    let settings = Settings {
        latency_ms: args.latency_ms,
        allow_http_webhooks: args.allow_http_webhooks,
        ..Settings::default()
    };
    let handle = Emulator::start(EmulatorConfig {
        port: Some(args.port),
        accounts: args.accounts,
        client_id: args.client_id,
        client_secret: args.client_secret,
        settings,
    })
    .await?;
    // Handlers go in before the ready line: a supervisor may signal us right after it.
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let line = serde_json::json!({
        "base_url": handle.base_url(),
        "client_id": handle.client_id(),
        "client_secret": handle.client_secret(),
        "accounts": handle.accounts(),
    });
    println!("{line}");
    use std::io::Write;
    std::io::stdout().flush()?;
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    handle.shutdown().await;
    Ok(())
}
