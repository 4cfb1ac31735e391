//! The `mcss` command line: parses arguments and settings, then calls into the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mcss::commands;
use mcss::config::Settings;

/// OM76.MCSS — keeps private busy blocks in step across your Google calendars.
///
/// Configuration comes from environment variables (and `.env`); see the README.
#[derive(Parser)]
#[command(name = "mcss", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service: HTTP ingress, supervised sync actors; runs migrations at start.
    Serve {
        /// Listen on this port instead of `PORT`.
        #[arg(long)]
        port: Option<u16>,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Run everything embedded: Google emulator, temporary SQLite, five demo calendars.
    Demo(mcss::demo::DemoArgs),
    /// Manage connected accounts.
    #[command(subcommand)]
    Accounts(commands::AccountsCommand),
    /// Show or change which calendars block which, within each group.
    #[command(subcommand)]
    Links(commands::LinksCommand),
    /// Validate configuration and connect to the database and Redis; print what was found.
    Check,
    /// Repair drift, orphans and duplicates by comparing the store with the calendars.
    Reconcile(commands::ReconcileArgs),
    /// Remove every block this installation made, found by marker on each connected calendar.
    Purge(commands::PurgeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match &cli.command {
        // The demo makes its own settings; everything else reads the environment.
        Command::Demo(_) => None,
        _ => match Settings::from_env() {
            Ok(mut settings) => {
                if let Command::Serve { port: Some(port) } = cli.command {
                    settings.port = port;
                }
                Some(settings)
            }
            Err(e) => {
                eprintln!("mcss: invalid configuration: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mcss: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match (cli.command, settings) {
            (Command::Demo(args), _) => commands::demo(args).await,
            (Command::Serve { .. }, Some(s)) => commands::serve(s).await,
            (Command::Migrate, Some(s)) => commands::migrate(s).await,
            (Command::Accounts(cmd), Some(s)) => commands::accounts(s, cmd).await,
            (Command::Links(cmd), Some(s)) => commands::links(s, cmd).await,
            (Command::Check, Some(s)) => commands::check(s).await,
            (Command::Reconcile(args), Some(s)) => commands::reconcile(s, args).await,
            (Command::Purge(args), Some(s)) => commands::purge(s, args).await,
            (_, None) => unreachable!("settings are read for every command but demo"),
        }
    });
    // Don't wait for stray blocking tasks (a hung DNS lookup) past our own deadline.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mcss: {}", commands::error_line(&e));
            ExitCode::from(commands::exit_code(&e))
        }
    }
}
