//! `mcss accounts import FILE`: connects many calendars from a CSV file (or standard input)
//! in one command, the bulk form of `accounts add`.
//!
//! Every line is checked before anything is connected (fields, alias, calendar id, group,
//! an alias used twice in the file); a bad line is reported with its number and one reason
//! and the others go on. Lines are connected through [`ops::connect_account_with`], the
//! path `accounts add` takes (so a Google account's calendars share one credential, and rate
//! limits are waited out), with at most `--concurrency` connects in flight. Lines that carry
//! the same refresh token (calendars of one Google account) are connected one after the
//! other, so their shared credential is created once. A line whose calendar is already
//! connected under the same alias, group and token is left alone: importing a file again
//! changes nothing and asks Google nothing.

use std::collections::HashMap;
use std::fmt;

use anyhow::Context as _;
use futures::StreamExt as _;
use secrecy::{ExposeSecret as _, SecretString};

use crate::domain::CalendarId;
use crate::ops;
use crate::services::Services;
use crate::store::{Account, DEFAULT_GROUP};

/// The header line the file must start with.
pub const HEADER: &str = "alias,refresh_token,calendar_id,group";

/// Options of `mcss accounts import`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
The file is CSV with the header line `alias,refresh_token,calendar_id,group`, then one
calendar per line, e.g.

  alias,refresh_token,calendar_id,group
  Work,1//0abc...,primary,alice
  Team,1//0abc...,team@group.calendar.google.com,alice
  Home,1//0xyz...,,bob

An empty calendar_id is `primary`, an empty group is `default`. Fields may be quoted
(\"a, b\"). Failed lines are reported as `line N: reason` on stderr and the others are
imported; the command then exits with status 1. Importing the same file again changes
nothing.")]
pub struct ImportArgs {
    /// The CSV file; `-` reads standard input.
    pub file: String,
    /// How many calendars are connected at once (1 to 512).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=512))]
    pub concurrency: u16,
}

/// Tries again after a store error of a connect (a race between concurrent lines).
const STORE_RETRIES: usize = 2;

/// One checked line of the file.
#[derive(Clone)]
struct Line {
    number: usize,
    alias: String,
    refresh_token: SecretString,
    calendar_id: CalendarId,
    /// `None`: the default group (and, on a reconnect, the calendar's current one).
    group: Option<String>,
}

/// What became of one line.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Connected,
    Reconnected,
    Unchanged,
    Failed(String),
}

/// The counts printed at the end.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    pub lines: usize,
    pub connected: usize,
    pub reconnected: usize,
    pub unchanged: usize,
    pub failed: usize,
}

impl fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} lines: {} connected, {} reconnected, {} unchanged, {} failed",
            self.lines, self.connected, self.reconnected, self.unchanged, self.failed
        )
    }
}

/// `mcss accounts import`: prints each failed line on stderr and the summary on stdout;
/// fails when any line failed.
pub(super) async fn import(services: &Services, args: ImportArgs) -> anyhow::Result<()> {
    let text = read_input(&args.file)?;
    let (lines, mut failures) = parse_file(&text)?;
    for (number, reason) in &failures {
        eprintln!("line {number}: {reason}");
    }
    let existing: HashMap<String, Account> = services
        .store
        .list_accounts()
        .await?
        .into_iter()
        .map(|a| (a.alias.clone(), a))
        .collect();
    let mut summary = ImportSummary {
        lines: lines.len() + failures.len(),
        failed: failures.len(),
        ..ImportSummary::default()
    };
    let mut outcomes = futures::stream::iter(chains(lines))
        .map(|chain| connect_chain(services, &existing, chain))
        .buffer_unordered(usize::from(args.concurrency));
    while let Some(done) = outcomes.next().await {
        for (number, outcome) in done {
            match outcome {
                Outcome::Connected => summary.connected += 1,
                Outcome::Reconnected => summary.reconnected += 1,
                Outcome::Unchanged => summary.unchanged += 1,
                Outcome::Failed(reason) => {
                    eprintln!("line {number}: {reason}");
                    failures.push((number, reason));
                    summary.failed += 1;
                }
            }
        }
    }
    println!("imported {summary}");
    if summary.connected + summary.reconnected > 0 {
        println!("a running `mcss serve` picks the new calendars up within 10 s");
    }
    anyhow::ensure!(
        summary.failed == 0,
        "{} of {} lines failed (see `line N:` above); the others were imported, and importing the file again after fixing them skips those",
        summary.failed,
        summary.lines
    );
    Ok(())
}

fn read_input(file: &str) -> anyhow::Result<String> {
    if file == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .context("cannot read the CSV from standard input")?;
        return Ok(text);
    }
    std::fs::read_to_string(file).with_context(|| format!("cannot read {file}"))
}

/// `(line number, reason)` for each line refused.
type LineFailures = Vec<(usize, String)>;

/// The checked lines, and the lines refused. Fails only when the header is missing or
/// wrong (then no line can be trusted).
fn parse_file(text: &str) -> anyhow::Result<(Vec<Line>, LineFailures)> {
    let mut numbered = text
        .trim_start_matches('\u{feff}')
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
        .filter(|(_, l)| !l.trim().is_empty());
    let header_ok = numbered.next().is_some_and(|(_, header)| {
        split_fields(header).is_ok_and(|fields| {
            fields
                .iter()
                .map(|f| f.trim().to_ascii_lowercase())
                .eq(HEADER.split(','))
        })
    });
    anyhow::ensure!(
        header_ok,
        "the first line must be the header `{HEADER}` (see `mcss accounts import --help`)"
    );
    let mut lines = Vec::new();
    let mut failures = Vec::new();
    let mut aliases: HashMap<String, usize> = HashMap::new();
    for (number, raw) in numbered {
        match parse_line(number, raw) {
            Ok(line) => match aliases.get(&line.alias) {
                Some(first) => failures.push((
                    number,
                    format!("the alias {:?} is already used on line {first}", line.alias),
                )),
                None => {
                    aliases.insert(line.alias.clone(), number);
                    lines.push(line);
                }
            },
            Err(reason) => failures.push((number, reason)),
        }
    }
    Ok((lines, failures))
}

/// One data line; the error never repeats the refresh token.
fn parse_line(number: usize, raw: &str) -> Result<Line, String> {
    let fields = split_fields(raw)?;
    let [alias, token, calendar, group] = <[String; 4]>::try_from(fields)
        .map_err(|fields| format!("has {} fields; 4 are needed ({HEADER})", fields.len()))?;
    let alias = alias.trim().to_owned();
    if alias.is_empty() {
        return Err("the alias is empty".to_owned());
    }
    if alias.chars().count() > ops::MAX_ALIAS_LEN || alias.chars().any(char::is_control) {
        return Err(format!(
            "the alias must be 1 to {} printable characters",
            ops::MAX_ALIAS_LEN
        ));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err("the refresh token is empty".to_owned());
    }
    let calendar = match calendar.trim() {
        "" => CalendarId::primary(),
        raw => CalendarId::parse(raw).map_err(|e| format!("calendar_id: {e}"))?,
    };
    let group = match group.trim() {
        "" => None,
        raw => Some(ops::validate_group(raw).map_err(|e| e.to_string())?),
    };
    Ok(Line {
        number,
        alias,
        refresh_token: SecretString::from(token.to_owned()),
        calendar_id: calendar,
        group,
    })
}

/// The fields of one CSV line: comma-separated, a field in double quotes may hold commas
/// and `""` for a quote (RFC 4180, without line breaks inside a field).
fn split_fields(raw: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = raw.chars().peekable();
    loop {
        let mut field = String::new();
        while chars.peek().is_some_and(|c| *c == ' ') {
            chars.next();
        }
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err("a quoted field is not closed".to_owned()),
                }
            }
            while chars.peek().is_some_and(|c| *c == ' ') {
                chars.next();
            }
            match chars.peek() {
                None | Some(',') => {}
                Some(_) => return Err("text after a quoted field".to_owned()),
            }
        } else {
            while let Some(c) = chars.peek().copied().filter(|c| *c != ',') {
                field.push(c);
                chars.next();
            }
        }
        fields.push(field);
        match chars.next() {
            Some(',') => continue,
            _ => return Ok(fields),
        }
    }
}

/// Lines grouped by refresh token, in file order within each group.
fn chains(lines: Vec<Line>) -> Vec<Vec<Line>> {
    let mut by_token: HashMap<String, usize> = HashMap::new();
    let mut chains: Vec<Vec<Line>> = Vec::new();
    for line in lines {
        let key = line.refresh_token.expose_secret().to_owned();
        match by_token.get(&key) {
            Some(&i) => chains[i].push(line),
            None => {
                by_token.insert(key, chains.len());
                chains.push(vec![line]);
            }
        }
    }
    chains
}

async fn connect_chain(
    services: &Services,
    existing: &HashMap<String, Account>,
    chain: Vec<Line>,
) -> Vec<(usize, Outcome)> {
    let mut done = Vec::with_capacity(chain.len());
    for line in chain {
        let number = line.number;
        done.push((
            number,
            connect_line(services, existing.get(&line.alias), line).await,
        ));
    }
    done
}

async fn connect_line(services: &Services, existing: Option<&Account>, line: Line) -> Outcome {
    if let Some(account) = existing {
        if let Some(group) = line.group.as_deref().filter(|g| *g != account.group) {
            return Outcome::Failed(format!(
                "{:?} is already connected in group {:?}; `mcss accounts set {:?} --group {group:?}` moves it",
                account.alias, account.group, account.alias
            ));
        }
        match already_connected(services, account, &line).await {
            Ok(true) => return Outcome::Unchanged,
            Ok(false) => {}
            Err(e) => return Outcome::Failed(super::error_line(&e)),
        }
    }
    let number = line.number;
    let notice = move |err: &crate::google::GoogleError, wait: std::time::Duration| {
        eprintln!(
            "line {number}: {}, retrying in {} s",
            super::retry_reason(err),
            wait.as_secs()
        );
    };
    let request = ops::ConnectRequest {
        alias: line.alias,
        refresh_token: line.refresh_token,
        calendar_id: Some(line.calendar_id),
        email: None,
        group: Some(line.group.unwrap_or_else(|| DEFAULT_GROUP.to_owned())),
    };
    let mut connected = ops::connect_account_with(services, request.clone(), &notice).await;
    // Two lines creating the same new group at once race on PostgreSQL (the loser's
    // insert violates the unique name); the second try finds the group made.
    for _ in 0..STORE_RETRIES {
        if !matches!(connected, Err(ops::OpsError::Store(_))) {
            break;
        }
        connected = ops::connect_account_with(services, request.clone(), &notice).await;
    }
    match connected {
        Ok(_) if existing.is_some() => Outcome::Reconnected,
        Ok(_) => Outcome::Connected,
        Err(e) => Outcome::Failed(super::error_line(&anyhow::Error::new(e))),
    }
}

/// Whether `account` is this line already: the same calendar (a `primary` line matches the
/// account's primary calendar) reached with the same refresh token, and active.
async fn already_connected(
    services: &Services,
    account: &Account,
    line: &Line,
) -> anyhow::Result<bool> {
    let same_calendar = line.calendar_id == account.calendar_id
        || (line.calendar_id == CalendarId::primary()
            && account.email.as_deref() == Some(account.calendar_id.as_str()));
    if !same_calendar || account.status != crate::store::AccountStatus::Active {
        return Ok(false);
    }
    let stored = services.store.refresh_token(account.id).await?;
    Ok(stored.expose_secret() == line.refresh_token.expose_secret())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_fields_may_hold_commas_and_quotes() {
        let fields = split_fields(r#"a, "b, c" ,"say ""hi""","#).unwrap();

        assert_eq!(fields, ["a", "b, c", "say \"hi\"", ""]);
        assert!(split_fields(r#""open"#).is_err());
    }

    #[test]
    fn a_bad_line_is_refused_with_its_number_and_the_rest_is_kept() {
        let text =
            format!("{HEADER}\nA,tok-a,,g1\n\nB,tok-b\nA,tok-c,,\n,tok-d,,\nC,tok-e,primary,\n");

        let (lines, failures) = parse_file(&text).unwrap();

        let kept: Vec<_> = lines.iter().map(|l| (l.number, l.alias.as_str())).collect();
        assert_eq!(kept, [(2, "A"), (7, "C")]);
        let numbers: Vec<_> = failures.iter().map(|(n, _)| *n).collect();
        assert_eq!(numbers, [4, 5, 6]);
        assert!(failures[1].1.contains("already used on line 2"));
        assert!(failures.iter().all(|(_, r)| !r.contains("tok-")));
    }

    #[test]
    fn a_file_without_the_header_is_refused_whole() {
        assert!(parse_file("A,tok,primary,g\n").is_err());
        assert!(parse_file("").is_err());
        assert!(parse_file(&format!("\u{feff}{}\r\n", HEADER.to_uppercase())).is_ok());
    }

    #[test]
    fn lines_with_one_refresh_token_form_one_chain_in_file_order() {
        let text = format!("{HEADER}\nA,t1,,\nB,t2,,\nC,t1,x@group.calendar.google.com,\n");
        let (lines, _) = parse_file(&text).unwrap();

        let chains = chains(lines);

        let shape: Vec<Vec<usize>> = chains
            .iter()
            .map(|c| c.iter().map(|l| l.number).collect())
            .collect();
        assert_eq!(shape, [vec![2, 4], vec![3]]);
    }
}
