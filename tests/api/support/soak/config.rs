//! The soak's knobs, read once from the environment by [`SoakConfig::from_env`]: the seed
//! (printed, so a failing run can be replayed), the length of the chaos phase and of the
//! stepwise run, and switches for each kind of disruption. A bad value stops the test with
//! one line naming the variable. `docs/testing.md` lists every variable.

use std::time::Duration;

/// Whether series edits are in the mix when `MCSS_SOAK_SERIES` is unset (so in CI).
pub const SERIES_EDITS_BY_DEFAULT: bool = true;
/// Whether switching a single event between timed and all-day is in the mix when
/// `MCSS_SOAK_RESHAPE` is unset (so in CI).
pub const RESHAPE_EDITS_BY_DEFAULT: bool = true;

/// Everything a soak run depends on besides the machine's timing.
#[derive(Debug, Clone)]
pub struct SoakConfig {
    /// Seeds every random choice of the run (`MCSS_SOAK_SEED`, random when unset).
    pub seed: u64,
    /// How long the chaos phase edits and disrupts (`MCSS_SOAK_SECS`).
    pub chaos: Duration,
    /// How many edits the stepwise run makes, each checked on its own (`MCSS_SOAK_STEPS`).
    pub steps: usize,
    /// Connected calendars (`MCSS_SOAK_CALENDARS`).
    pub calendars: usize,
    /// Series edits in the mix (`MCSS_SOAK_SERIES`).
    pub series: bool,
    /// Timed ↔ all-day switches of single events in the mix (`MCSS_SOAK_RESHAPE`).
    pub reshape: bool,
    /// Edit kinds left out of the mix, by name (`MCSS_SOAK_SKIP`, comma-separated), to
    /// narrow a failure down.
    pub skip: Vec<String>,
    /// 5xx/429 bursts, dropped, duplicated and delayed pushes, expired sync tokens
    /// (`MCSS_SOAK_FAULTS`).
    pub faults: bool,
    /// SIGKILL and restart of `mcss serve` (`MCSS_SOAK_KILLS`).
    pub kills: bool,
    /// How long the calendars may take to converge once the chaos stops
    /// (`MCSS_SOAK_SETTLE_SECS`); the stepwise run allows a third of it per step.
    pub settle: Duration,
}

impl SoakConfig {
    /// Reads the `MCSS_SOAK_*` variables; panics with one clear line on a bad value.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let seed = number(&get, "MCSS_SOAK_SEED", None).unwrap_or_else(rand::random);
        Self {
            seed,
            chaos: Duration::from_secs(
                number(&get, "MCSS_SOAK_SECS", Some(1..=86_400)).unwrap_or(30),
            ),
            steps: number(&get, "MCSS_SOAK_STEPS", Some(1..=100_000)).unwrap_or(25) as usize,
            calendars: number(&get, "MCSS_SOAK_CALENDARS", Some(2..=20)).unwrap_or(4) as usize,
            series: flag(&get, "MCSS_SOAK_SERIES", SERIES_EDITS_BY_DEFAULT),
            reshape: flag(&get, "MCSS_SOAK_RESHAPE", RESHAPE_EDITS_BY_DEFAULT),
            skip: get("MCSS_SOAK_SKIP")
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|kind| !kind.is_empty())
                .map(str::to_owned)
                .collect(),
            faults: flag(&get, "MCSS_SOAK_FAULTS", true),
            kills: flag(&get, "MCSS_SOAK_KILLS", true),
            settle: Duration::from_secs(
                number(&get, "MCSS_SOAK_SETTLE_SECS", Some(10..=3_600)).unwrap_or(120),
            ),
        }
    }

    /// The command that replays this run's script (same seed, same switches).
    pub fn replay(&self) -> String {
        let skip = if self.skip.is_empty() {
            String::new()
        } else {
            format!("MCSS_SOAK_SKIP='{}' ", self.skip.join(","))
        };
        format!(
            "MCSS_SOAK_SEED={} MCSS_SOAK_SECS={} MCSS_SOAK_STEPS={} MCSS_SOAK_CALENDARS={} \
             MCSS_SOAK_SERIES={} MCSS_SOAK_RESHAPE={} MCSS_SOAK_FAULTS={} MCSS_SOAK_KILLS={} \
             {skip}scripts/soak.sh",
            self.seed,
            self.chaos.as_secs(),
            self.steps,
            self.calendars,
            u8::from(self.series),
            u8::from(self.reshape),
            u8::from(self.faults),
            u8::from(self.kills),
        )
    }

    /// A seed for one independent stream of choices (edits, disruptions), so switching
    /// the disruptions off leaves the edit script as it was.
    pub fn stream(&self, name: &str) -> u64 {
        name.bytes()
            .fold(self.seed ^ 0x9e37_79b9_7f4a_7c15, |acc, b| {
                (acc ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            })
    }
}

fn number(
    get: &impl Fn(&str) -> Option<String>,
    name: &str,
    range: Option<std::ops::RangeInclusive<u64>>,
) -> Option<u64> {
    let raw = get(name)?;
    let value: u64 = raw
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{name} must be a whole number, got `{raw}`"));
    if let Some(range) = range {
        assert!(
            range.contains(&value),
            "{name} must be within {}..={}, got {value}",
            range.start(),
            range.end()
        );
    }
    Some(value)
}

fn flag(get: &impl Fn(&str) -> Option<String>, name: &str, default: bool) -> bool {
    match get(name).as_deref().map(str::trim) {
        None => default,
        Some("1" | "true" | "on") => true,
        Some("0" | "false" | "off") => false,
        Some(other) => panic!("{name} must be 1 or 0, got `{other}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> SoakConfig {
        SoakConfig::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    /// The `NAME=value` words of a shell line (single quotes group, as the shell does).
    fn assignments(line: &str) -> Vec<(String, String)> {
        let (mut words, mut word, mut quoted) = (Vec::new(), String::new(), false);
        for c in line.chars() {
            match c {
                '\'' => quoted = !quoted,
                ' ' if !quoted => words.push(std::mem::take(&mut word)),
                c => word.push(c),
            }
        }
        words.push(word);
        words
            .iter()
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn a_replay_line_reproduces_the_configuration() {
        let original = config(&[
            ("MCSS_SOAK_SEED", "42"),
            ("MCSS_SOAK_SERIES", "1"),
            ("MCSS_SOAK_KILLS", "0"),
            ("MCSS_SOAK_SKIP", "free occurrence, decline occurrence"),
        ]);
        let line = original.replay();
        let vars = assignments(&line);
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();

        let replayed = config(&vars);

        assert_eq!(replayed.seed, 42);
        assert!(replayed.series);
        assert!(!replayed.kills);
        assert_eq!(replayed.skip, ["free occurrence", "decline occurrence"]);
        assert_eq!(replayed.replay(), line);
    }

    #[test]
    #[should_panic(expected = "MCSS_SOAK_SECS must be a whole number, got `soon`")]
    fn a_bad_value_names_its_variable() {
        config(&[("MCSS_SOAK_SECS", "soon")]);
    }
}
