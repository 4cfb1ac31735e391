//! `LOG_LEVEL`: a tracing-subscriber filter, checked before it is used.
//!
//! The logging library reads any word it does not know as a target name, so `LOG_LEVEL=loud`
//! would mean "only the target `loud`, at trace" and switch every other line off, and
//! `info,mcss=loud` is refused by it, which used to fall back to `info` without a word. Here
//! every directive must end in one of [`LEVELS`]; targets and span filters are free. The
//! checked text goes to [`crate::telemetry::init`].

use tracing_subscriber::EnvFilter;

/// The level words a directive may use (in any letter case).
pub const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// `raw` (trimmed) when every comma-separated directive is `level`, `target=level` or
/// `target[span{field}]=level`; otherwise what is wrong, in one line.
pub fn check(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    for directive in raw.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let level = level_word(directive)
            .filter(|l| !l.is_empty())
            .ok_or_else(|| {
                format!(
                    "`{directive}` names no level; write `target=level`, e.g. `info,mcss=debug`"
                )
            })?;
        if !LEVELS.iter().any(|l| l.eq_ignore_ascii_case(level)) {
            return Err(format!(
                "`{level}` is not a log level; use {} (per target: `info,mcss=debug`)",
                LEVELS.join(", ")
            ));
        }
    }
    EnvFilter::builder()
        .parse(raw)
        .map_err(|e| format!("is not a log filter ({e}); e.g. `info` or `info,mcss=debug`"))?;
    Ok(raw.to_owned())
}

/// The level part of one directive: everything after the `=` that follows the target (and
/// its span filter, whose field values may hold `=` themselves); a bare word is all level.
fn level_word(directive: &str) -> Option<&str> {
    let tail = match directive.rfind(']') {
        Some(end) => &directive[end + 1..],
        None if directive.contains('[') => return None,
        None => match directive.split_once('=') {
            Some((_, level)) => return Some(level.trim()),
            None => return Some(directive),
        },
    };
    tail.strip_prefix('=').map(str::trim)
}

/// The targets `filter` names, so defaults for other targets can be added without
/// overriding the operator's choice.
pub fn named_targets(filter: &str) -> Vec<&str> {
    filter
        .split(',')
        .filter_map(|d| {
            let d = d.trim();
            let end = d.find(['=', '['])?;
            Some(d[..end].trim()).filter(|t| !t.is_empty())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_levels_and_per_target_levels_are_accepted() {
        for ok in [
            "info",
            "WARN",
            "info,mcss=debug",
            "off,mcss::sync=trace",
            "mcss[store.connect]=debug",
            "mcss[span{name=x}]=debug",
            " debug ",
        ] {
            assert!(check(ok).is_ok(), "{ok}: {:?}", check(ok));
        }
    }

    #[test]
    fn a_word_that_is_not_a_level_is_refused_even_where_the_library_would_take_it_as_a_target() {
        for bad in ["loud", "verbose", "info,mcss=loud", "mcss=", "mcss[span]"] {
            let err = check(bad).unwrap_err();
            assert!(!err.contains('\n'), "{err}");
        }
        assert!(check("loud")
            .unwrap_err()
            .contains("`loud` is not a log level"));
    }

    #[test]
    fn targets_are_read_from_every_directive() {
        assert_eq!(
            named_targets("info,sqlx=debug,mcss[x]=trace"),
            ["sqlx", "mcss"]
        );
    }
}
