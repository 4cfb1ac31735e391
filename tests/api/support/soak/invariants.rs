//! The exact invariant checker of the soak: what Google shows must be what the sync rules
//! (`docs/sync-rules.md`) say, occurrence by occurrence.
//!
//! It reads Google's side only, as the calendar owners see it: every calendar's occurrences
//! through the Calendar API (`singleEvents=true`, `showDeleted=true`, explicit `timeMin` and
//! `timeMax`, so the emulator expands every series itself) and every stored event through
//! the emulator's raw dump. It knows nothing of the service's database or code. For each
//! target T and each source S of T ([`Topology`], an input: today every other calendar):
//!
//! - the multiset of spans of T's live block occurrences whose marker names S equals the
//!   multiset of spans of S's busy occurrences (live, opaque, not declined by the owner,
//!   not a working location or birthday, not a block), over the [`Window`];
//! - occurrence by occurrence ([`OccurrenceKey`]): no busy occurrence without its block
//!   (missing), no two blocks for one (duplicate), no block without a busy occurrence
//!   (orphan, with what became of the source), no block at another time (wrong time);
//! - over the raw dump: no block of a block, no source title in any block summary, no block
//!   whose marker names a calendar that is not a source of T.
//!
//! Every finding names the target, the source occurrence, the spans expected and found.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use serde_json::Value;

use super::client::Owners;
use crate::support::{marker_of, Calendar, Observer, Stored};

// ---------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------

/// Which calendars block onto which: `sources_of(t)` are the calendars whose busy time must
/// show as blocks on `t`.
#[derive(Debug, Clone)]
pub struct Topology {
    sources: Vec<BTreeSet<usize>>,
}

impl Topology {
    /// Today's rule: every connected calendar blocks every other one.
    pub fn everyone_blocks_everyone(calendars: usize) -> Self {
        Self::from_sources(
            (0..calendars)
                .map(|t| (0..calendars).filter(|s| *s != t).collect())
                .collect(),
        )
    }

    /// An explicit topology (groups and links): `sources[t]` block onto `t`.
    pub fn from_sources(sources: Vec<BTreeSet<usize>>) -> Self {
        for (t, of_t) in sources.iter().enumerate() {
            assert!(!of_t.contains(&t), "calendar {t} cannot be its own source");
            assert!(
                of_t.iter().all(|s| *s < sources.len()),
                "a source of calendar {t} is not a calendar"
            );
        }
        Self { sources }
    }

    pub fn sources_of(&self, target: usize) -> &BTreeSet<usize> {
        &self.sources[target]
    }

    pub fn targets(&self) -> std::ops::Range<usize> {
        0..self.sources.len()
    }
}

/// The occurrences compared: those starting in `[from, to)`.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl Window {
    /// `days` days from `from`.
    pub fn days(from: DateTime<Utc>, days: i64) -> Self {
        Self {
            from,
            to: from + TimeDelta::days(days),
        }
    }

    fn holds(&self, span: &Span) -> bool {
        let start = span.start_instant();
        self.from <= start && start < self.to
    }
}

// ---------------------------------------------------------------------------------------
// Occurrences
// ---------------------------------------------------------------------------------------

/// The time an occurrence holds: instants for a timed one, dates (end exclusive) for an
/// all-day one. A block of an all-day event must be all-day, so the two never compare equal.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Span {
    Timed {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    },
    AllDay {
        start: NaiveDate,
        end: NaiveDate,
    },
}

impl Span {
    /// The span of an event resource, `None` when its times are unreadable.
    pub fn of(event: &Value) -> Option<Span> {
        let (start, end) = (&event["start"], &event["end"]);
        if let (Some(s), Some(e)) = (start["date"].as_str(), end["date"].as_str()) {
            return Some(Span::AllDay {
                start: NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?,
                end: NaiveDate::parse_from_str(e, "%Y-%m-%d").ok()?,
            });
        }
        let instant = |v: &Value| {
            DateTime::parse_from_rfc3339(v["dateTime"].as_str()?)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        };
        Some(Span::Timed {
            start: instant(start)?,
            end: instant(end)?,
        })
    }

    /// Where the span starts; an all-day span at midnight UTC (the soak's calendars are UTC).
    fn start_instant(&self) -> DateTime<Utc> {
        match self {
            Span::Timed { start, .. } => *start,
            Span::AllDay { start, .. } => start.and_time(chrono::NaiveTime::MIN).and_utc(),
        }
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Span::Timed { start, end } => write!(
                f,
                "{}..{}",
                start.format("%Y-%m-%dT%H:%MZ"),
                end.format("%Y-%m-%dT%H:%MZ")
            ),
            Span::AllDay { start, end } => write!(f, "{start}..{end} (all day)"),
        }
    }
}

/// One source occurrence, named the same way on the source and on its blocks: the source
/// account, the source event (the series, for an occurrence of one) and Google's occurrence
/// suffix (`YYYYMMDD` or `YYYYMMDDTHHMMSSZ`, from the original start), none for a single event.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct OccurrenceKey {
    pub account: String,
    pub event: String,
    pub occurrence: Option<String>,
}

impl fmt::Display for OccurrenceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.occurrence {
            Some(suffix) => write!(f, "{}_{suffix}", self.event),
            None => f.write_str(&self.event),
        }
    }
}

/// Splits Google's instance id `<series>_<YYYYMMDD[THHMMSSZ]>`; other ids are whole.
pub fn split_occurrence(id: &str) -> (&str, Option<&str>) {
    let is_suffix = |s: &str| {
        let b = s.as_bytes();
        let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
        match b.len() {
            8 => digits(0..8),
            16 => digits(0..8) && b[8] == b'T' && digits(9..15) && b[15] == b'Z',
            _ => false,
        }
    };
    match id.rsplit_once('_') {
        Some((series, suffix)) if !series.is_empty() && is_suffix(suffix) => (series, Some(suffix)),
        _ => (id, None),
    }
}

/// One occurrence as the owner's `events.list?singleEvents=true` shows it.
#[derive(Debug, Clone)]
struct Occurrence {
    id: String,
    span: Option<Span>,
    event: Value,
}

impl Occurrence {
    fn from_item(event: Value) -> Self {
        Self {
            id: event["id"].as_str().unwrap_or_default().to_owned(),
            span: Span::of(&event),
            event,
        }
    }

    fn is_live(&self) -> bool {
        self.event["status"] != "cancelled"
    }

    fn in_window(&self, window: &Window) -> bool {
        self.span.as_ref().is_some_and(|s| window.holds(s))
    }

    fn summary(&self) -> &str {
        self.event["summary"].as_str().unwrap_or_default()
    }

    /// The key of this occurrence as a source event of `account`.
    fn source_key(&self, account: &str) -> OccurrenceKey {
        let (event, occurrence) = split_occurrence(&self.id);
        OccurrenceKey {
            account: account.to_owned(),
            event: event.to_owned(),
            occurrence: occurrence.map(str::to_owned),
        }
    }

    /// The key of the source occurrence this block stands for: the marker names the source
    /// event (a series, or one occurrence of it); the block's own instance suffix names the
    /// occurrence when the marker names the series.
    fn block_key(&self) -> Option<OccurrenceKey> {
        let (account, event) = marker_of(&self.event)?;
        let (series, marked) = split_occurrence(&event);
        let (_, own) = split_occurrence(&self.id);
        Some(OccurrenceKey {
            account,
            event: series.to_owned(),
            occurrence: marked.or(own).map(str::to_owned),
        })
    }

    /// Why this source occurrence needs no block, `None` when it is busy.
    fn not_busy_because(&self) -> Option<&'static str> {
        let event = &self.event;
        if marker_of(event).is_some() {
            return Some("it is a block");
        }
        if !matches!(
            event["status"].as_str(),
            None | Some("confirmed") | Some("tentative")
        ) {
            return Some("it is cancelled");
        }
        if event["transparency"] == "transparent" {
            return Some("it is free");
        }
        let declined = event["attendees"].as_array().is_some_and(|people| {
            people
                .iter()
                .any(|p| p["self"] == true && p["responseStatus"] == "declined")
        });
        if declined {
            return Some("the owner declined it");
        }
        match event["eventType"].as_str() {
            Some("workingLocation") => Some("it is a working location"),
            Some("birthday") => Some("it is a birthday"),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Findings
// ---------------------------------------------------------------------------------------

/// One way Google's side differs from the rules. Calendars are named by alias.
#[derive(Debug, Clone)]
pub enum Finding {
    /// The headline invariant: the spans blocked on `target` for `source` are not the busy
    /// spans of `source` (`missing` busy spans without a block, `extra` blocked spans).
    SpansDiffer {
        target: String,
        source: String,
        missing: Vec<Span>,
        extra: Vec<Span>,
    },
    Missing {
        target: String,
        source: String,
        key: OccurrenceKey,
        span: Span,
        title: String,
    },
    Duplicate {
        target: String,
        source: String,
        key: OccurrenceKey,
        blocks: Vec<String>,
    },
    Orphan {
        target: String,
        source: String,
        block: String,
        key: OccurrenceKey,
        span: Option<Span>,
        why: String,
    },
    WrongTime {
        target: String,
        source: String,
        block: String,
        key: OccurrenceKey,
        expected: Span,
        found: Option<Span>,
    },
    BlockOfBlock {
        target: String,
        block: String,
        source_event: String,
    },
    NotFromASource {
        target: String,
        block: String,
        marker_account: String,
    },
    TitleLeak {
        target: String,
        block: String,
        summary: String,
    },
}

impl Finding {
    /// The source occurrence the finding is about, when it names one.
    pub fn key(&self) -> Option<&OccurrenceKey> {
        match self {
            Finding::Missing { key, .. }
            | Finding::Duplicate { key, .. }
            | Finding::Orphan { key, .. }
            | Finding::WrongTime { key, .. } => Some(key),
            _ => None,
        }
    }

    /// A short name per kind, for counting.
    pub fn kind(&self) -> &'static str {
        match self {
            Finding::SpansDiffer { .. } => "spans differ",
            Finding::Missing { .. } => "missing",
            Finding::Duplicate { .. } => "duplicate",
            Finding::Orphan { .. } => "orphan",
            Finding::WrongTime { .. } => "wrong time",
            Finding::BlockOfBlock { .. } => "block of a block",
            Finding::NotFromASource { .. } => "not from a source",
            Finding::TitleLeak { .. } => "title in a block summary",
        }
    }
}

fn spans(list: &[Span]) -> String {
    let shown: Vec<String> = list.iter().take(6).map(Span::to_string).collect();
    let more = list.len().saturating_sub(6);
    if more > 0 {
        format!("[{}, … {more} more]", shown.join(", "))
    } else {
        format!("[{}]", shown.join(", "))
    }
}

fn or_none(span: &Option<Span>) -> String {
    span.as_ref()
        .map_or_else(|| "no readable time".to_owned(), Span::to_string)
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::SpansDiffer {
                target,
                source,
                missing,
                extra,
            } => write!(
                f,
                "{target} ← {source}: blocked spans ≠ busy spans; busy but not blocked {}, \
                 blocked but not busy {}",
                spans(missing),
                spans(extra)
            ),
            Finding::Missing {
                target,
                source,
                key,
                span,
                title,
            } => write!(
                f,
                "{target} ← {source}: missing block for {key} ({title:?}) at {span}"
            ),
            Finding::Duplicate {
                target,
                source,
                key,
                blocks,
            } => write!(
                f,
                "{target} ← {source}: {} blocks for {key}: {}",
                blocks.len(),
                blocks.join(", ")
            ),
            Finding::Orphan {
                target,
                source,
                block,
                key,
                span,
                why,
            } => write!(
                f,
                "{target} ← {source}: orphan block {block} at {} for {key}: {why}",
                or_none(span)
            ),
            Finding::WrongTime {
                target,
                source,
                block,
                key,
                expected,
                found,
            } => write!(
                f,
                "{target} ← {source}: block {block} of {key} at {}, expected {expected}",
                or_none(found)
            ),
            Finding::BlockOfBlock {
                target,
                block,
                source_event,
            } => write!(
                f,
                "{target}: block {block} stands for {source_event}, which is itself a block"
            ),
            Finding::NotFromASource {
                target,
                block,
                marker_account,
            } => write!(
                f,
                "{target}: block {block} names account {marker_account:?}, not a source of {target}"
            ),
            Finding::TitleLeak {
                target,
                block,
                summary,
            } => write!(
                f,
                "{target}: block {block} shows a source title in its summary {summary:?}"
            ),
        }
    }
}

/// What one check looked at.
#[derive(Debug, Clone, Copy, Default)]
pub struct Coverage {
    /// (target, source) pairs compared.
    pub pairs: usize,
    /// Busy source occurrences in the window, summed over the pairs.
    pub busy: usize,
    /// Live block occurrences in the window, over every target.
    pub blocked: usize,
    /// Live stored block events (series, exceptions, single) scanned in the raw dumps.
    pub block_events: usize,
}

/// The result of one check: converged when there are no findings.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub coverage: Coverage,
}

impl Report {
    pub fn holds(&self) -> bool {
        self.findings.is_empty()
    }

    /// Findings counted by kind.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for finding in &self.findings {
            *counts.entry(finding.kind()).or_default() += 1;
        }
        counts
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.coverage;
        write!(
            f,
            "{} findings {:?} over {} target←source pairs, {} busy source occurrences, \
             {} block occurrences, {} stored block events",
            self.findings.len(),
            self.counts(),
            c.pairs,
            c.busy,
            c.blocked,
            c.block_events
        )?;
        const SHOWN: usize = 60;
        for finding in self.findings.iter().take(SHOWN) {
            write!(f, "\n  - {finding}")?;
        }
        if self.findings.len() > SHOWN {
            write!(f, "\n  … and {} more", self.findings.len() - SHOWN)?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// The checker
// ---------------------------------------------------------------------------------------

/// Google's side of every calendar at one moment (read calendar by calendar).
struct Snapshot {
    occurrences: Vec<Vec<Occurrence>>,
    stored: Vec<Vec<Stored>>,
}

/// Checks the invariants over the calendars of `owners`.
pub struct Checker {
    pub owners: std::sync::Arc<Owners>,
    pub observer: Observer,
    pub topology: Topology,
    pub window: Window,
}

impl Checker {
    fn calendars(&self) -> &[Calendar] {
        &self.observer.calendars
    }

    /// Checks every invariant; `titles` are every source title ever used (none may show in a
    /// block summary).
    pub async fn check(&self, titles: &BTreeSet<String>) -> Report {
        let snapshot = self.snapshot().await;
        let mut report = Report::default();
        for target in self.topology.targets() {
            for source in self.topology.sources_of(target) {
                self.compare(target, *source, &snapshot, &mut report);
            }
            self.blocks_from_elsewhere(target, &snapshot, &mut report);
            self.stored_blocks(target, &snapshot, titles, &mut report);
        }
        report
    }

    async fn snapshot(&self) -> Snapshot {
        // A margin around the window, so an occurrence whose block moved just outside it is
        // still seen (and reported at its wrong time).
        let from = self.window.from - TimeDelta::days(2);
        let to = self.window.to + TimeDelta::days(14);
        let mut snapshot = Snapshot {
            occurrences: Vec::new(),
            stored: Vec::new(),
        };
        for n in 0..self.calendars().len() {
            let items = self.owners.occurrences(n, from, to).await;
            snapshot
                .occurrences
                .push(items.into_iter().map(Occurrence::from_item).collect());
            snapshot.stored.push(self.observer.dump(n).await);
        }
        snapshot
    }

    /// The headline multiset comparison and the occurrence-by-occurrence one, for one pair.
    fn compare(&self, target: usize, source: usize, snap: &Snapshot, report: &mut Report) {
        let account = self.calendars()[source].account.to_string();
        let (t_alias, s_alias) = (
            self.calendars()[target].alias.clone(),
            self.calendars()[source].alias.clone(),
        );
        // Every occurrence of the source by key, busy or not (blocks too): an orphan's
        // report says what became of its source.
        let sources: BTreeMap<OccurrenceKey, &Occurrence> = snap.occurrences[source]
            .iter()
            .map(|o| (o.source_key(&account), o))
            .collect();
        let busy: BTreeMap<&OccurrenceKey, &Occurrence> = sources
            .iter()
            .filter(|(_, o)| o.is_live() && o.not_busy_because().is_none())
            .map(|(k, o)| (k, *o))
            .collect();
        let mut blocks: BTreeMap<OccurrenceKey, Vec<&Occurrence>> = BTreeMap::new();
        for block in snap.occurrences[target].iter().filter(|o| o.is_live()) {
            if let Some(key) = block.block_key().filter(|k| k.account == account) {
                blocks.entry(key).or_default().push(block);
            }
        }

        let expected: Vec<Span> = busy
            .values()
            .filter(|o| o.in_window(&self.window))
            .filter_map(|o| o.span.clone())
            .collect();
        let found: Vec<Span> = blocks
            .values()
            .flatten()
            .filter(|o| o.in_window(&self.window))
            .filter_map(|o| o.span.clone())
            .collect();
        report.coverage.pairs += 1;
        report.coverage.busy += expected.len();
        report.coverage.blocked += found.len();
        let (missing, extra) = multiset_difference(expected, found);
        if !missing.is_empty() || !extra.is_empty() {
            report.findings.push(Finding::SpansDiffer {
                target: t_alias.clone(),
                source: s_alias.clone(),
                missing,
                extra,
            });
        }

        let keys: BTreeSet<&OccurrenceKey> = busy.keys().copied().chain(blocks.keys()).collect();
        for key in keys {
            let source_occurrence = busy.get(key);
            let held = blocks.get(key).map(Vec::as_slice).unwrap_or_default();
            let relevant = source_occurrence.is_some_and(|o| o.in_window(&self.window))
                || held.iter().any(|b| b.in_window(&self.window));
            if !relevant {
                continue;
            }
            let (target, source) = (t_alias.clone(), s_alias.clone());
            match source_occurrence {
                Some(o) if held.is_empty() => report.findings.push(Finding::Missing {
                    target,
                    source,
                    key: key.clone(),
                    span: o
                        .span
                        .clone()
                        .expect("a busy occurrence in the window has a span"),
                    title: o.summary().to_owned(),
                }),
                Some(o) => {
                    if held.len() > 1 {
                        report.findings.push(Finding::Duplicate {
                            target: target.clone(),
                            source: source.clone(),
                            key: key.clone(),
                            blocks: held.iter().map(|b| b.id.clone()).collect(),
                        });
                    }
                    for block in held.iter().filter(|b| b.span != o.span) {
                        report.findings.push(Finding::WrongTime {
                            target: target.clone(),
                            source: source.clone(),
                            block: block.id.clone(),
                            key: key.clone(),
                            expected: o.span.clone().expect("a busy occurrence has a span"),
                            found: block.span.clone(),
                        });
                    }
                }
                None => {
                    let why = match sources.get(key) {
                        Some(o) if !o.is_live() => {
                            format!("the source occurrence {:?} is cancelled", o.summary())
                        }
                        Some(o) => format!(
                            "the source occurrence {:?} is not busy: {}",
                            o.summary(),
                            o.not_busy_because().unwrap_or("?")
                        ),
                        None => "no such source occurrence (deleted, moved away or never there)"
                            .to_owned(),
                    };
                    for block in held {
                        report.findings.push(Finding::Orphan {
                            target: target.clone(),
                            source: source.clone(),
                            block: block.id.clone(),
                            key: key.clone(),
                            span: block.span.clone(),
                            why: why.clone(),
                        });
                    }
                }
            }
        }
    }

    /// Blocks on `target` whose marker names no source of `target` (its own account, an
    /// unlinked calendar or an unknown account).
    fn blocks_from_elsewhere(&self, target: usize, snap: &Snapshot, report: &mut Report) {
        let allowed: BTreeSet<String> = self
            .topology
            .sources_of(target)
            .iter()
            .map(|s| self.calendars()[*s].account.to_string())
            .collect();
        let mut seen = BTreeSet::new();
        for block in snap.occurrences[target].iter().filter(|o| o.is_live()) {
            let Some((account, _)) = marker_of(&block.event) else {
                continue;
            };
            let (series, _) = split_occurrence(&block.id);
            if !allowed.contains(&account)
                && block.in_window(&self.window)
                && seen.insert(series.to_owned())
            {
                report.findings.push(Finding::NotFromASource {
                    target: self.calendars()[target].alias.clone(),
                    block: series.to_owned(),
                    marker_account: account,
                });
            }
        }
    }

    /// Over the raw dump of `target`: no block of a block, no title in a block summary.
    fn stored_blocks(
        &self,
        target: usize,
        snap: &Snapshot,
        titles: &BTreeSet<String>,
        report: &mut Report,
    ) {
        let alias = &self.calendars()[target].alias;
        for stored in snap.stored[target].iter().filter(|s| s.is_live()) {
            let Some((account, event)) = marker_of(&stored.event) else {
                continue;
            };
            report.coverage.block_events += 1;
            let summary = stored.event["summary"].as_str().unwrap_or_default();
            if titles.iter().any(|title| summary.contains(title.as_str())) {
                report.findings.push(Finding::TitleLeak {
                    target: alias.clone(),
                    block: stored.id().to_owned(),
                    summary: summary.to_owned(),
                });
            }
            let Some(source) = self
                .calendars()
                .iter()
                .position(|c| c.account.to_string() == account)
            else {
                continue;
            };
            let (series, _) = split_occurrence(&event);
            let marked_source = snap.stored[source]
                .iter()
                .find(|s| s.id() == event || s.id() == series);
            if marked_source.is_some_and(|s| marker_of(&s.event).is_some()) {
                report.findings.push(Finding::BlockOfBlock {
                    target: alias.clone(),
                    block: stored.id().to_owned(),
                    source_event: event,
                });
            }
        }
    }
}

/// `(a − b, b − a)` as multisets.
fn multiset_difference(mut a: Vec<Span>, mut b: Vec<Span>) -> (Vec<Span>, Vec<Span>) {
    a.sort();
    b.sort();
    let (mut only_a, mut only_b) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Equal => {
                i += 1;
                j += 1;
            }
            std::cmp::Ordering::Less => {
                only_a.push(a[i].clone());
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                only_b.push(b[j].clone());
                j += 1;
            }
        }
    }
    only_a.extend_from_slice(&a[i..]);
    only_b.extend_from_slice(&b[j..]);
    (only_a, only_b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(hour: u32) -> Span {
        let day = NaiveDate::from_ymd_opt(2030, 1, 7).expect("a date");
        Span::Timed {
            start: day.and_hms_opt(hour, 0, 0).expect("a time").and_utc(),
            end: day.and_hms_opt(hour + 1, 0, 0).expect("a time").and_utc(),
        }
    }

    #[test]
    fn the_multiset_difference_counts_repeated_spans() {
        let (missing, extra) = multiset_difference(vec![at(9), at(9), at(10)], vec![at(9), at(11)]);

        assert_eq!(missing, vec![at(9), at(10)]);
        assert_eq!(extra, vec![at(11)]);
    }

    #[test]
    fn an_occurrence_of_a_block_series_is_keyed_by_its_source_series_and_suffix() {
        let block = Occurrence::from_item(json!({
            "id": "blockseriesid0000000000000000000000000000_20300107T090000Z",
            "start": {"dateTime": "2030-01-07T09:00:00Z"},
            "end": {"dateTime": "2030-01-07T10:00:00Z"},
            "extendedProperties": {"private": {
                "mcssInstallation": "i", "mcssSourceAccount": "3", "mcssSourceEvent": "srcseries"
            }},
        }));
        let source = Occurrence::from_item(json!({
            "id": "srcseries_20300107T090000Z",
            "recurringEventId": "srcseries",
            "start": {"dateTime": "2030-01-07T10:00:00+01:00"},
            "end": {"dateTime": "2030-01-07T11:00:00+01:00"},
        }));

        assert_eq!(block.block_key(), Some(source.source_key("3")));
        assert_eq!(block.span, source.span);
    }

    #[test]
    fn a_free_a_declined_and_a_working_location_occurrence_are_not_busy() {
        let with = |extra: Value| {
            let mut event = json!({"id": "e1", "status": "confirmed"});
            for (k, v) in extra.as_object().expect("an object") {
                event[k] = v.clone();
            }
            Occurrence::from_item(event).not_busy_because()
        };

        assert_eq!(with(json!({})), None);
        assert_eq!(with(json!({"status": "tentative"})), None);
        assert_eq!(
            with(json!({"transparency": "transparent"})),
            Some("it is free")
        );
        assert_eq!(
            with(
                json!({"attendees": [{"email": "o@x", "self": true, "responseStatus": "declined"}]})
            ),
            Some("the owner declined it")
        );
        assert_eq!(
            with(json!({"attendees": [{"email": "b@x", "responseStatus": "declined"}]})),
            None,
            "another attendee's answer does not count"
        );
        assert_eq!(
            with(json!({"eventType": "workingLocation"})),
            Some("it is a working location")
        );
    }
}
