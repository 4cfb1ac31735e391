//! The Events pages: upcoming and recent source events per calendar (searchable by calendar
//! and dates), and the trace of one event — its block on every other calendar and where each
//! stands (in step, pending, failing and why, excluded by the user, or no block and why),
//! the time from the event's change to each block write, and the event's audit history.
//!
//! So "why is there (not) a block here?" has an answer on one page: a block that exists is
//! its outbox row (the writer's state and Google's last answer); a block that does not is the
//! planner's own rule ([`crate::sync::mirror_decision`]) asked again with what the store
//! holds. Titles appear only with "show titles" ticked, never in a log line.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use maud::{html, Markup};

use super::activity::BlockLine;
use super::calendar::Window;
use super::model::{
    families, holdings, reason_label, reason_words, Explainer, Family, NoBlock, Source,
};
use super::pages::{
    ago, layout, live_region, millis, short_id, time, until, Calendars, Page, Zone,
};
use super::status::google_reason;
use super::week::when_words;
use crate::domain::{AccountId, EventId};
use crate::http::AppState;
use crate::store::{Account, BlockState, LogEntry, OutboxRow, RowRole, StoreError};

/// Links to trace pages that keep the operator's zone and title choice.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TraceLink {
    pub zone: Zone,
    pub titles: bool,
}

impl TraceLink {
    pub fn href(&self, account: AccountId, event: &str) -> String {
        let mut url = url::Url::parse("http://x/admin/events/").expect("a fixed URL parses");
        url.set_path(&format!("/admin/events/{account}/{event}"));
        {
            let mut q = url.query_pairs_mut();
            if !self.zone.is_utc() {
                q.append_pair("tz", self.zone.name());
            }
            if self.titles {
                q.append_pair("titles", "1");
            }
        }
        match url.query().filter(|q| !q.is_empty()) {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }
}

/// Where one outbox row stands, as a slug (`data-state`) and in words. `no_block_because`
/// explains a row that wants no block.
pub(crate) fn block_state(
    row: &OutboxRow,
    no_block_because: Option<&str>,
) -> (&'static str, String) {
    let because = no_block_because
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    match row.state {
        BlockState::Excluded => (
            "excluded",
            "excluded: the calendar's owner deleted this block, so it is not put back (until the event itself is deleted)".into(),
        ),
        BlockState::Failed => (
            "gave-up",
            format!(
                "given up: Google answered {}; tried again when the event changes or at the next reconciliation",
                row.last_error.as_deref().map(google_reason).unwrap_or_else(|| "an error".into())
            ),
        ),
        BlockState::Pending if row.attempts > 0 => (
            "failing",
            format!(
                "failing: Google answered {}; retrying {} ({} failed attempts)",
                row.last_error.as_deref().map(google_reason).unwrap_or_else(|| "an error".into()),
                row.next_attempt_at.map_or_else(|| "soon".into(), until).replace("expired", "now"),
                row.attempts
            ),
        ),
        BlockState::Pending if row.body.is_none() => (
            "removing",
            format!("no block wanted{because}; its deletion is waiting to be written"),
        ),
        BlockState::Pending => (
            "pending",
            match &row.last_error {
                Some(waiting) => format!("pending: {waiting}"),
                None => format!("pending: queued {}, not written yet", ago(row.updated_at)),
            },
        ),
        BlockState::Applied if row.body.is_none() => (
            "skipped",
            format!("no block{because}"),
        ),
        BlockState::Applied if !row.wants_live() => (
            "in-step",
            format!("in step: this occurrence is cancelled on the block series{because}"),
        ),
        BlockState::Applied => ("in-step", "in step".into()),
    }
}

/// One target calendar's line on the trace.
struct TargetLine {
    target: Account,
    state: &'static str,
    words: String,
    row: Option<OutboxRow>,
    /// The last write of that block: when, what, with which result.
    last_write: Option<(DateTime<Utc>, String, String)>,
    /// From the event's change at Google to the first successful write after it.
    latency: Option<std::time::Duration>,
    /// For a series: its changed occurrences on this target, by state.
    occurrences: Vec<(&'static str, usize)>,
}

/// Everything the trace shows.
pub(crate) struct Trace {
    pub link: TraceLink,
    pub calendars: Calendars,
    pub source: Account,
    pub event_id: EventId,
    /// The stored event asked for, when it is still stored.
    focus: Option<Source>,
    family: Option<Family>,
    lines: Vec<TargetLine>,
    history: Vec<LogEntry>,
    /// Why the event gets no block anywhere (free, declined, …), when so.
    source_reason: Option<String>,
}

impl Trace {
    pub async fn read(
        state: &AppState,
        source: Account,
        event_id: EventId,
        link: TraceLink,
    ) -> Result<Trace, StoreError> {
        let store = &state.store;
        let accounts = store.list_accounts().await?;
        let stored = store.source_event(source.id, &event_id).await?;
        let series_id = stored
            .as_ref()
            .and_then(|s| s.recurring_event_id.clone())
            .unwrap_or_else(|| event_id.clone());
        let family = families(
            store
                .events_and_their_series(source.id, &[&series_id])
                .await?,
        )
        .into_iter()
        .find(|f| f.id == series_id);
        let focus = family.as_ref().and_then(|f| {
            f.master
                .iter()
                .chain(&f.exceptions)
                .find(|s| s.stored.event_id == event_id)
                .cloned()
        });
        let mut ids: Vec<EventId> = vec![event_id.clone()];
        if let Some(f) = &family {
            ids.extend(f.exceptions.iter().map(|e| e.stored.event_id.clone()));
        }
        let id_refs: Vec<&EventId> = ids.iter().collect();
        let rows = store.rows_for_source_events(source.id, &id_refs).await?;
        let history = store.log_for_event(source.id, &series_id, 200).await?;
        let explain = Explainer::new(state).await?;
        let source_reason = focus.as_ref().and_then(|f| {
            explain
                .source_reason(&source, &f.event, &accounts)
                .map(|r| reason_words(r, ""))
        });
        let mut lines = Vec::new();
        // Calendars of other groups never get its blocks: only the group's are listed.
        for target in accounts
            .iter()
            .filter(|a| a.id != source.id && a.group == source.group)
        {
            let reason = match &focus {
                Some(f) => {
                    let held = holdings(state, &f.event, target.id).await?;
                    explain.reason(&source, &f.event, target, &held)
                }
                None => None,
            };
            lines.push(target_line(
                target,
                &event_id,
                &rows,
                &history,
                reason.map(|r| reason_words(r, &target.alias)),
                focus.as_ref().and_then(|f| f.stored.google_updated),
                focus.is_some(),
            ));
        }
        Ok(Trace {
            link,
            calendars: Calendars::new(accounts),
            source,
            event_id,
            focus,
            family,
            lines,
            history,
            source_reason,
        })
    }
}

fn target_line(
    target: &Account,
    event_id: &EventId,
    rows: &[OutboxRow],
    history: &[LogEntry],
    reason: Option<String>,
    changed_at: Option<DateTime<Utc>>,
    stored: bool,
) -> TargetLine {
    let own: Vec<&OutboxRow> = rows
        .iter()
        .filter(|r| r.target_account_id == target.id && &r.source_event_id == event_id)
        .collect();
    let row = own
        .iter()
        .find(|r| r.wants_live())
        .or_else(|| own.first())
        .map(|r| (*r).clone());
    let (state, words) = match &row {
        Some(row) => block_state(row, reason.as_deref()),
        None => match (&reason, stored) {
            (Some(r), _) => ("skipped", format!("no block: {r}")),
            (None, true) => (
                "not-planned",
                "no block yet: the next sync of this event's calendar plans it".into(),
            ),
            (None, false) => (
                "skipped",
                "no block: the event is no longer on its calendar".into(),
            ),
        },
    };
    let writes: Vec<(&LogEntry, BlockLine<'_>)> = history
        .iter()
        .filter(|e| e.account_id == Some(target.id))
        .filter_map(|e| Some((e, BlockLine::parse(&e.detail)?)))
        .filter(|(_, line)| {
            row.as_ref()
                .is_some_and(|r| r.block_id.as_str() == line.block)
        })
        .collect();
    let last_write = writes
        .first()
        .map(|(e, line)| (e.at, e.kind.replace("block_", ""), line.result.to_owned()));
    let latency = changed_at.and_then(|changed| {
        writes
            .iter()
            .rev()
            .find(|(e, line)| e.at >= changed && matches!(line.result, "ok" | "gone"))
            .and_then(|(e, _)| (e.at - changed).to_std().ok())
    });
    let mut occurrences: HashMap<&'static str, usize> = HashMap::new();
    for r in rows.iter().filter(|r| {
        r.target_account_id == target.id
            && r.role == RowRole::Occurrence
            && &r.source_event_id != event_id
    }) {
        *occurrences.entry(block_state(r, None).0).or_default() += 1;
    }
    let mut occurrences: Vec<(&'static str, usize)> = occurrences.into_iter().collect();
    occurrences.sort();
    TargetLine {
        target: target.clone(),
        state,
        words,
        row,
        last_write,
        latency,
        occurrences,
    }
}

fn state_class(state: &str) -> &'static str {
    match state {
        "in-step" => "ok",
        "failing" | "gave-up" => "bad",
        "pending" | "removing" | "not-planned" => "warn",
        _ => "muted",
    }
}

fn event_facts(trace: &Trace) -> Markup {
    let zone = trace.link.zone;
    html! {
        dl.facts {
            dt { "Calendar" } dd { (trace.calendars.link(trace.source.id)) }
            dt { "Event id" } dd { code { (trace.event_id) } }
            @if let Some(f) = &trace.focus {
                @let e = &f.event;
                @if trace.link.titles {
                    dt { "Title" } dd { (e.summary.as_deref().unwrap_or("(no title)")) }
                }
                dt { "Kind" } dd {
                    @if e.is_series() { "a series: " (e.recurrence.join("; ")) }
                    @else if let Some(series) = &e.recurring_event_id {
                        "a changed occurrence of the series "
                        a href=(trace.link.href(trace.source.id, series.as_str())) { code { (series) } }
                    }
                    @else { "a single event" }
                }
                dt { "When" } dd {
                    @match (&e.start, &e.end) {
                        (Some(s), Some(en)) => {
                            @match super::calendar::When::of(s, en) {
                                Some(w) => { (when_words(&w, zone)) @if e.is_series() { " (first occurrence)" } },
                                None => "unreadable",
                            }
                        },
                        _ => "cancelled",
                    }
                }
                dt { "Status" } dd {
                    (format!("{:?}", e.status).to_lowercase()) ", "
                    (format!("{:?}", e.transparency).to_lowercase().replace("opaque", "busy").replace("transparent", "free"))
                    @if let Some(r) = e.self_response { ", owner's answer: " (format!("{r:?}").to_lowercase()) }
                }
                dt { "Changed at Google" } dd {
                    @match f.stored.google_updated { Some(at) => (time(at, zone.show(at, "%a %d %b %H:%M:%S"))), None => "—" }
                }
                dt { "Seen by the service" } dd { (time(f.stored.updated_at, ago(f.stored.updated_at))) }
                dt { "Blocks" } dd {
                    @match &trace.source_reason {
                        Some(r) => { "none anywhere: " (r) },
                        None => "on every other calendar, unless that calendar is in the same meeting",
                    }
                }
            } @else {
                dt { "Event" } dd.error { "not stored: deleted from its calendar, or not synced yet. What the outbox and the log still hold is below." }
            }
        }
    }
}

fn targets_table(trace: &Trace) -> Markup {
    let zone = trace.link.zone;
    html! {
        table.targets {
            thead { tr {
                th { "Other calendar" } th { "Block" } th { "State" } th { "Last write" } th.num { "Change → write" }
            } }
            tbody {
                @for line in &trace.lines {
                    tr data-target=(line.target.id) data-state=(line.state) {
                        td { (trace.calendars.link(line.target.id)) }
                        td {
                            @match &line.row {
                                Some(r) => { (short_id(r.block_id.as_str())) br; small.muted { (r.role.as_str()) } },
                                None => span.muted { "—" },
                            }
                        }
                        td {
                            span class={ "status " (state_class(line.state)) } { (line.state.replace('-', " ")) }
                            " " (line.words)
                            @if !line.occurrences.is_empty() {
                                br; small.muted {
                                    "changed occurrences: "
                                    @for (i, (state, n)) in line.occurrences.iter().enumerate() {
                                        @if i > 0 { ", " }
                                        (n) " " (state.replace('-', " "))
                                    }
                                }
                            }
                        }
                        td {
                            @match &line.last_write {
                                Some((at, op, result)) => { (time(*at, zone.show(*at, "%H:%M:%S"))) " " (op) " " (result) },
                                None => span.muted { "none yet" },
                            }
                        }
                        td.num { (line.latency.map(millis).unwrap_or_default()) }
                    }
                }
            }
        }
        @if trace.lines.is_empty() {
            p.empty { "There is no other calendar to block." }
        }
    }
}

fn history(trace: &Trace) -> Markup {
    let zone = trace.link.zone;
    html! {
        @if trace.history.is_empty() {
            p.empty { "No block write for this event in the log yet." }
        } @else {
            table.log {
                thead { tr { th { "When (" (zone.name()) ")" } th { "On" } th { "What" } th { "Result" } th { "Block" } th { "Sync" } } }
                tbody {
                    @for e in &trace.history {
                        @let line = BlockLine::parse(&e.detail);
                        tr data-result=(e.result.as_str()) {
                            td { (time(e.at, zone.plain(e.at, "%Y-%m-%d %H:%M:%S"))) }
                            td { @if let Some(t) = e.account_id { (trace.calendars.link(t)) } }
                            td { (e.kind.replace('_', " ")) }
                            td { (line.as_ref().map_or(e.result.as_str(), |l| l.result)) }
                            td { @if let Some(l) = &line { (short_id(l.block)) } }
                            td { @if let Some(l) = &line { (short_id(l.sync)) } }
                        }
                    }
                }
            }
        }
    }
}

pub(crate) fn trace_page(page: &Page, trace: &Trace) -> Markup {
    let title = format!("Trace of an event on {}", trace.source.alias);
    let family_rows = trace
        .family
        .as_ref()
        .map(|f| f.exceptions.len())
        .unwrap_or(0);
    layout(
        &title,
        Some(page),
        html! {
            p.crumbs { a href="/admin/events" { "Events" } " › " (trace.source.alias) " › " (short_id(trace.event_id.as_str())) }
            h1 { (title) }
            form.filters method="get" {
                label { "Time zone " input name="tz" value=(trace.link.zone.name()) size="18"; }
                label { input type="checkbox" name="titles" value="1" checked[trace.link.titles]; " show titles" }
                button type="submit" { "Show" }
            }
            section.card { (event_facts(trace)) }
            (live_region("trace", html! {
                section.card {
                    h2 { "Its block on every other calendar" }
                    (targets_table(trace))
                    @if family_rows > 0 {
                        p.muted { "The series has " (family_rows) " changed occurrence(s); each has its own trace:" }
                        ul.inline-list {
                            @for e in trace.family.iter().flat_map(|f| &f.exceptions) {
                                li { a href=(trace.link.href(trace.source.id, e.stored.event_id.as_str())) { (short_id(e.stored.event_id.as_str())) } }
                            }
                        }
                    }
                }
                section.card {
                    h2 { "History" }
                    p.muted { "The block writes of this event (and of its occurrences), newest first. Times are Google's answers as recorded; stamps in UTC on hover." }
                    (history(trace))
                }
            }))
        },
    )
}

// ---------------------------------------------------------------------------------------
// The events list
// ---------------------------------------------------------------------------------------

/// What the list was asked for.
pub(crate) struct EventsQuery {
    pub account: Option<AccountId>,
    pub from: NaiveDate,
    /// Inclusive.
    pub to: NaiveDate,
    pub link: TraceLink,
}

/// One line of the list.
struct EventLine {
    when: super::calendar::When,
    account: AccountId,
    event: String,
    title: Option<String>,
    series: bool,
    blocks: String,
    class: &'static str,
}

/// Lines shown at most.
const MAX_LINES: usize = 300;

pub(crate) struct EventList {
    query: EventsQuery,
    calendars: Calendars,
    lines: Vec<EventLine>,
    truncated: bool,
}

impl EventList {
    pub async fn read(state: &AppState, query: EventsQuery) -> Result<EventList, StoreError> {
        let accounts = state.store.list_accounts().await?;
        let zone = query.link.zone;
        let midnight = |d: NaiveDate| {
            let naive = d.and_hms_opt(0, 0, 0).unwrap_or_default();
            chrono::TimeZone::from_local_datetime(&zone.0, &naive)
                .earliest()
                .map_or_else(|| naive.and_utc(), |t| t.with_timezone(&Utc))
        };
        let end_day = query.to + TimeDelta::days(1);
        let window = Window {
            start: midnight(query.from),
            end: midnight(end_day),
            first_day: query.from,
            end_day,
        };
        let explain = Explainer::new(state).await?;
        let mut lines = Vec::new();
        for account in accounts
            .iter()
            .filter(|a| query.account.is_none_or(|id| id == a.id))
        {
            let fams = families(state.store.source_events(account.id).await?);
            let rows = state.store.rows_from_source(account.id).await?;
            for family in &fams {
                for (span, source) in family.spans(account.time_zone.as_deref(), &window) {
                    let (blocks, class) = summary(
                        explain.source_reason(account, &source.event, &accounts),
                        &rows,
                        source.stored.event_id.as_str(),
                        &family.id,
                    );
                    lines.push(EventLine {
                        when: span.when,
                        account: account.id,
                        event: source.stored.event_id.to_string(),
                        title: query
                            .link
                            .titles
                            .then(|| source.event.summary.clone())
                            .flatten(),
                        series: family.is_series(),
                        blocks,
                        class,
                    });
                }
            }
        }
        lines.sort_by_key(|l| l.when.sort_key());
        let truncated = lines.len() > MAX_LINES;
        lines.truncate(MAX_LINES);
        Ok(EventList {
            query,
            calendars: Calendars::new(accounts),
            lines,
            truncated,
        })
    }
}

/// The blocks of one event (or one occurrence) in a few words, and their colour.
fn summary(
    reason: Option<NoBlock>,
    rows: &[OutboxRow],
    event: &str,
    family: &EventId,
) -> (String, &'static str) {
    if let Some(reason) = reason {
        return (format!("no blocks: {}", reason_label(reason)), "muted");
    }
    let mine: Vec<&OutboxRow> = rows
        .iter()
        .filter(|r| r.source_event_id.as_str() == event)
        .collect();
    let mine = if mine.is_empty() {
        // A plain occurrence of a series: the series' rows stand for it.
        rows.iter()
            .filter(|r| &r.source_event_id == family)
            .collect()
    } else {
        mine
    };
    let mut counts: Vec<(&'static str, usize)> = Vec::new();
    for row in mine {
        let state = block_state(row, None).0;
        match counts.iter_mut().find(|(s, _)| *s == state) {
            Some((_, n)) => *n += 1,
            None => counts.push((state, 1)),
        }
    }
    if counts.is_empty() {
        return ("no blocks yet".into(), "warn");
    }
    counts.sort();
    let class = if counts
        .iter()
        .any(|(s, _)| matches!(*s, "failing" | "gave-up"))
    {
        "bad"
    } else if counts.iter().all(|(s, _)| *s == "in-step") {
        "ok"
    } else {
        "warn"
    };
    let words: Vec<String> = counts
        .iter()
        .map(|(s, n)| format!("{n} {}", s.replace('-', " ")))
        .collect();
    (words.join(" · "), class)
}

pub(crate) fn list_page(page: &Page, list: &EventList) -> Markup {
    let q = &list.query;
    let zone = q.link.zone;
    layout(
        "Events",
        Some(page),
        html! {
            h1 { "Events " small.muted { "times in " (zone.name()) } }
            form.filters method="get" action="/admin/events" {
                label { "Calendar "
                    select name="account" {
                        option value="" { "all" }
                        @for a in &list.calendars.list {
                            option value=(a.id) selected[q.account == Some(a.id)] { (a.alias) }
                        }
                    }
                }
                label { "From " input type="date" name="from" value=(q.from.to_string()); }
                label { "to " input type="date" name="to" value=(q.to.to_string()); }
                label { "Time zone " input name="tz" value=(zone.name()) size="16"; }
                label { input type="checkbox" name="titles" value="1" checked[q.link.titles]; " show titles" }
                button type="submit" { "Search" }
            }
            (live_region("events", html! {
                @if list.lines.is_empty() {
                    p.empty { "No event on these calendars between these dates." }
                } @else {
                    table.log.events {
                        thead { tr { th { "When" } th { "Calendar" } th { "Event" } th { "Its blocks" } th {} } }
                        tbody {
                            @for l in &list.lines {
                                tr data-account=(l.account) data-event=(l.event) {
                                    td { (when_words(&l.when, zone)) }
                                    td { (list.calendars.link(l.account)) }
                                    td {
                                        @match &l.title { Some(t) => (t), None => (short_id(&l.event)) }
                                        @if l.series { " " small.muted { "series" } }
                                    }
                                    td { span class={ "status " (l.class) } { (l.blocks) } }
                                    td { a href=(q.link.href(l.account, &l.event)) { "trace ›" } }
                                }
                            }
                        }
                    }
                    @if list.truncated { p.muted { "Only the first " (MAX_LINES) " are shown; narrow the dates or the calendar." } }
                }
            }))
        },
    )
}
