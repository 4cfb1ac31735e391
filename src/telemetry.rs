//! Logging: a tracing subscriber writing JSON (the default when stdout is not a terminal,
//! which is the case on Railway) or pretty lines, filtered by `LOG_LEVEL`, and a panic hook
//! that logs the panic with its location before ractor turns it into a supervision event.
//!
//! `LOG_LEVEL` has been checked by [`crate::config`] (every directive names a real level);
//! this module only adds quieter defaults for chatty dependencies the filter does not name.

use std::io::IsTerminal as _;

use tracing_subscriber::{fmt, layer::SubscriberExt as _, util::SubscriberInitExt as _, EnvFilter};

use crate::config::{log_filter_targets, LogFormat};

/// Dependencies that stay at `warn` unless `LOG_LEVEL` names them.
const QUIET_TARGETS: [&str; 6] = ["sqlx", "sea_orm", "hyper", "reqwest", "fred", "ractor"];

/// The filter `level` plus `target=warn` for every quiet dependency it leaves unnamed.
fn directives(level: &str) -> String {
    let named = log_filter_targets(level);
    let mut directives = level.to_owned();
    for target in QUIET_TARGETS.iter().filter(|t| !named.contains(t)) {
        directives.push_str(&format!(",{target}=warn"));
    }
    directives
}

/// Installs the global subscriber once, writing to standard output; later calls (tests, the
/// demo) are harmless no-ops.
pub fn init(level: &str, format: Option<LogFormat>) {
    let terminal = std::io::stdout().is_terminal();
    let writer = fmt::writer::BoxMakeWriter::new(std::io::stdout);
    init_with_writer(level, format, writer, terminal);
}

/// [`init`], writing to `writer` instead (the demo keeps its logs out of its banner);
/// `colours` only where a terminal reads them.
pub fn init_with_writer(
    level: &str,
    format: Option<LogFormat>,
    writer: fmt::writer::BoxMakeWriter,
    colours: bool,
) {
    // Settings checked the filter; the demo passes its own, which falls back to `info`.
    let filter = EnvFilter::try_new(directives(level)).unwrap_or_else(|_| EnvFilter::new("info"));
    let format = format.unwrap_or(if std::io::stdout().is_terminal() {
        LogFormat::Pretty
    } else {
        LogFormat::Json
    });
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match format {
        LogFormat::Json => registry
            .with(
                // Every line carries its spans (request, sync, actor handler), so one
                // `sync_id` or `account_id` filter follows a change through the logs.
                fmt::layer()
                    .with_writer(writer)
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(true),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(
                fmt::layer()
                    .with_writer(writer)
                    .with_ansi(colours)
                    .compact(),
            )
            .try_init(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatty_dependencies_are_quieted_unless_the_filter_names_them() {
        assert_eq!(
            directives("debug,sqlx=info"),
            "debug,sqlx=info,sea_orm=warn,hyper=warn,reqwest=warn,fred=warn,ractor=warn"
        );
    }
}
