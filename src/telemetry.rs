//! Logging: a tracing subscriber writing JSON (the default when stdout is not a terminal,
//! which is the case on Railway) or pretty lines, filtered by `LOG_LEVEL`, and a panic hook
//! that logs the panic with its location before ractor turns it into a supervision event.

use std::io::IsTerminal as _;

use tracing_subscriber::{fmt, layer::SubscriberExt as _, util::SubscriberInitExt as _, EnvFilter};

use crate::config::LogFormat;

/// Installs the global subscriber once; later calls (tests, the demo) are harmless no-ops.
pub fn init(level: &str, format: Option<LogFormat>) {
    // Noisy dependencies stay at warn unless asked for explicitly.
    let directives = if level.contains('=') {
        level.to_owned()
    } else {
        format!("{level},sqlx=warn,sea_orm=warn,hyper=warn,reqwest=warn,fred=warn,ractor=warn")
    };
    let filter = EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("info"));
    let format = format.unwrap_or(if std::io::stdout().is_terminal() {
        LogFormat::Pretty
    } else {
        LogFormat::Json
    });
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false),
            )
            .try_init(),
        LogFormat::Pretty => registry.with(fmt::layer().compact()).try_init(),
    };
    if installed.is_ok() {
        install_panic_hook();
    }
}

fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(panic = %info, %location, "panic");
        previous(info);
    }));
}
