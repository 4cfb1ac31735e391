//! The Week page: seven days × 24 hours in the operator's zone (UTC unless chosen), one lane
//! per calendar in every day, drawn on the server as SVG.
//!
//! A lane shows the calendar's own events (solid in its colour; hollow when the rules give
//! them no block, with the reason on hover) and the blocks it holds (pale, dashed, in the
//! colour of the calendar the event came from). Every item links to the trace of its source
//! event. Titles of source events appear only when the operator ticks "show titles" (a query
//! parameter of this page, never stored and never logged); otherwise items are described by
//! calendar and time.

use std::collections::HashMap;

use chrono::{DateTime, Datelike as _, NaiveDate, TimeDelta, TimeZone as _, Timelike as _, Utc};
use maud::{html, Markup};

use super::calendar::{When, Window};
use super::model::{block_families, families, reason_words, BlockFamily, Explainer, Family};
use super::pages::{layout, live_region, Calendars, Page, Zone};
use super::trace::{block_state, TraceLink};
use crate::domain::AccountId;
use crate::http::AppState;
use crate::store::{Account, StoreError};

// The grid, in SVG user units (the image scales to the page width).
const GUTTER: f64 = 46.0;
const DAY_W: f64 = 156.0;
const HEADER: f64 = 30.0;
const LANE_HEAD: f64 = 10.0;
const ALL_DAY: f64 = 22.0;
const HOUR_H: f64 = 20.0;
const TOP: f64 = HEADER + LANE_HEAD + ALL_DAY;
const WIDTH: f64 = GUTTER + 7.0 * DAY_W + 2.0;
const HEIGHT: f64 = TOP + 24.0 * HOUR_H + 4.0;

/// What the page was asked for.
#[derive(Debug, Clone)]
pub(crate) struct WeekView {
    pub monday: NaiveDate,
    pub zone: Zone,
    pub titles: bool,
}

impl WeekView {
    /// The week holding `start` (or today in `zone`), from its Monday.
    pub fn new(start: Option<NaiveDate>, zone: Zone, titles: bool) -> Self {
        let day = start.unwrap_or_else(|| Utc::now().with_timezone(&zone.0).date_naive());
        let monday = day - TimeDelta::days(i64::from(day.weekday().num_days_from_monday()));
        WeekView {
            monday,
            zone,
            titles,
        }
    }

    fn midnight(&self, day: NaiveDate) -> DateTime<Utc> {
        let naive = day.and_hms_opt(0, 0, 0).unwrap_or_default();
        self.zone
            .0
            .from_local_datetime(&naive)
            .earliest()
            .map_or_else(|| naive.and_utc(), |t| t.with_timezone(&Utc))
    }

    fn day(&self, n: i64) -> NaiveDate {
        self.monday + TimeDelta::days(n)
    }

    pub fn window(&self) -> Window {
        Window {
            start: self.midnight(self.monday),
            end: self.midnight(self.day(7)),
            first_day: self.monday,
            end_day: self.day(7),
        }
    }

    fn href(&self, monday: NaiveDate) -> String {
        let mut url = url::Url::parse("http://x/admin/week").expect("a fixed URL parses");
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("start", &monday.to_string());
            if !self.zone.is_utc() {
                q.append_pair("tz", self.zone.name());
            }
            if self.titles {
                q.append_pair("titles", "1");
            }
        }
        format!("{}?{}", url.path(), url.query().unwrap_or_default())
    }

    fn link(&self) -> TraceLink {
        TraceLink {
            zone: self.zone,
            titles: self.titles,
        }
    }
}

/// One thing drawn in a lane.
struct Item {
    lane: usize,
    block: bool,
    when: When,
    href: String,
    /// The calendar whose lane it is in.
    account: AccountId,
    source_account: AccountId,
    source_event: String,
    state: &'static str,
    color: &'static str,
    hollow: bool,
    tooltip: String,
}

/// Everything the page draws, read from the store.
pub(crate) struct Week {
    view: WeekView,
    calendars: Calendars,
    items: Vec<Item>,
}

impl Week {
    pub async fn read(state: &AppState, view: WeekView) -> Result<Week, StoreError> {
        let accounts = state.store.list_accounts().await?;
        let calendars = Calendars::new(accounts.clone());
        let mut by_account: HashMap<AccountId, Vec<Family>> = HashMap::new();
        for account in &accounts {
            let stored = state.store.source_events(account.id).await?;
            by_account.insert(account.id, families(stored));
        }
        let blocks = block_families(state.store.wanted_blocks().await?);
        let explain = Explainer::new(state).await?;
        let lanes = Lanes {
            view: &view,
            window: view.window(),
            calendars: &calendars,
            accounts: &accounts,
            by_account: &by_account,
            explain: &explain,
        };
        let mut items = Vec::new();
        for (lane, account) in accounts.iter().enumerate() {
            items.extend(lanes.events(lane, account));
            let held = blocks.get(&account.id).map_or(&[][..], Vec::as_slice);
            items.extend(lanes.blocks(lane, account, held));
        }
        Ok(Week {
            view,
            calendars,
            items,
        })
    }
}

/// What every lane is drawn from: the week asked for and what the store holds.
struct Lanes<'a> {
    view: &'a WeekView,
    window: Window,
    calendars: &'a Calendars,
    accounts: &'a [Account],
    by_account: &'a HashMap<AccountId, Vec<Family>>,
    explain: &'a Explainer<'a>,
}

impl Lanes<'_> {
    /// The calendar's own events in the week, hollow when the rules give them no block.
    fn events(&self, lane: usize, account: &Account) -> Vec<Item> {
        let zone = account.time_zone.as_deref();
        let mut items = Vec::new();
        for family in self.by_account.get(&account.id).into_iter().flatten() {
            for (span, source) in family.spans(zone, &self.window) {
                let reason = self
                    .explain
                    .source_reason(account, &source.event, self.accounts);
                let what = self
                    .view
                    .titles
                    .then(|| source.event.summary.clone())
                    .flatten()
                    .unwrap_or_else(|| "an event".into());
                let mirrored = match reason {
                    Some(r) => format!("no block elsewhere: {}", reason_words(r, "")),
                    None => "blocked on the other calendars".into(),
                };
                items.push(Item {
                    lane,
                    block: false,
                    when: span.when,
                    href: self
                        .view
                        .link()
                        .href(account.id, source.stored.event_id.as_str()),
                    account: account.id,
                    source_account: account.id,
                    source_event: source.stored.event_id.to_string(),
                    state: if reason.is_some() {
                        "not-mirrored"
                    } else {
                        "mirrored"
                    },
                    color: self.calendars.color(account.id),
                    hollow: reason.is_some(),
                    tooltip: format!(
                        "{}: {what} · {} · {mirrored}",
                        account.alias,
                        when_words(&span.when, self.view.zone)
                    ),
                });
            }
        }
        items
    }

    /// The blocks the calendar holds in the week, in the colour of their source.
    fn blocks(&self, lane: usize, account: &Account, held: &[BlockFamily]) -> Vec<Item> {
        let zone = account.time_zone.as_deref();
        let mut items = Vec::new();
        for family in held {
            for (span, row) in family.spans(zone, &self.window) {
                let source = row.source_account_id;
                let title = self
                    .view
                    .titles
                    .then(|| title_of(self.by_account, source, row.source_event_id.as_str()))
                    .flatten();
                let (state, words) = block_state(row, None);
                items.push(Item {
                    lane,
                    block: true,
                    when: span.when,
                    href: self.view.link().href(source, row.source_event_id.as_str()),
                    account: account.id,
                    source_account: source,
                    source_event: row.source_event_id.to_string(),
                    state,
                    color: self.calendars.color(source),
                    hollow: false,
                    tooltip: format!(
                        "Block on {} for {}'s {} · {} · {words}",
                        account.alias,
                        self.calendars.alias(source),
                        title.map_or_else(|| "event".to_owned(), |t| format!("“{t}”")),
                        when_words(&span.when, self.view.zone)
                    ),
                });
            }
        }
        items
    }
}

fn title_of(
    by_account: &HashMap<AccountId, Vec<Family>>,
    account: AccountId,
    event: &str,
) -> Option<String> {
    by_account.get(&account)?.iter().find_map(|f| {
        f.master
            .iter()
            .chain(&f.exceptions)
            .find(|s| s.stored.event_id.as_str() == event)
            .and_then(|s| s.event.summary.clone())
    })
}

/// "Tue 05 Mar 10:00–11:00 UTC", "Sun 08 Mar, all day".
pub(crate) fn when_words(when: &When, zone: Zone) -> String {
    match *when {
        When::Timed { start, end } => {
            let same_day = start.with_timezone(&zone.0).date_naive()
                == end.with_timezone(&zone.0).date_naive();
            let end_fmt = if same_day { "%H:%M" } else { "%a %d %b %H:%M" };
            format!(
                "{}–{}",
                zone.plain(start, "%a %d %b %H:%M"),
                zone.show(end, end_fmt)
            )
        }
        When::AllDay { first, end } => {
            let last = end - TimeDelta::days(1);
            if last <= first {
                format!("{}, all day", first.format("%a %d %b"))
            } else {
                format!(
                    "{} to {}, all day",
                    first.format("%a %d %b"),
                    last.format("%a %d %b")
                )
            }
        }
    }
}

fn attr_time(when: &When) -> (String, String) {
    let fmt = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    match *when {
        When::Timed { start, end } => (fmt(start), fmt(end)),
        When::AllDay { first, end } => (first.to_string(), end.to_string()),
    }
}

/// The rectangles of one item: one per day it covers.
fn rects(item: &Item, view: &WeekView, lanes: usize) -> Vec<(f64, f64, f64, f64)> {
    let lane_w = DAY_W / lanes.max(1) as f64;
    let x = |day: i64| GUTTER + day as f64 * DAY_W + item.lane as f64 * lane_w + 1.0;
    let w = (lane_w - 2.0).max(2.0);
    let mut out = Vec::new();
    match item.when {
        When::AllDay { first, end } => {
            for d in 0..7 {
                let day = view.day(d);
                if day >= first && day < end {
                    out.push((x(d), HEADER + LANE_HEAD + 3.0, w, ALL_DAY - 6.0));
                }
            }
        }
        When::Timed { start, end } => {
            for d in 0..7 {
                let (from, to) = (view.midnight(view.day(d)), view.midnight(view.day(d + 1)));
                let (s, e) = (start.max(from), end.min(to));
                if s > e || (s == e && (s == to || start != end)) {
                    continue;
                }
                let hour = |t: DateTime<Utc>| {
                    let local = t.with_timezone(&view.zone.0);
                    f64::from(local.hour())
                        + f64::from(local.minute()) / 60.0
                        + f64::from(local.second()) / 3600.0
                };
                let y0 = TOP + hour(s) * HOUR_H;
                let y1 = if e == to {
                    TOP + 24.0 * HOUR_H
                } else {
                    TOP + hour(e) * HOUR_H
                };
                out.push((x(d), y0, w, (y1 - y0).max(3.0)));
            }
        }
    }
    out
}

fn grid(view: &WeekView, calendars: &Calendars) -> Markup {
    let lanes = calendars.list.len().max(1);
    let lane_w = DAY_W / lanes as f64;
    let today = Utc::now().with_timezone(&view.zone.0).date_naive();
    html! {
        @for d in 0..7i64 {
            @let x = GUTTER + d as f64 * DAY_W;
            @let day = view.day(d);
            rect x=(x) y="0" width=(DAY_W) height=(HEIGHT) class={ "day" @if day == today { " today" } } {}
            text x=(x + DAY_W / 2.0) y="19" text-anchor="middle" class="dayname" { (day.format("%a %d %b")) }
            @for (lane, account) in calendars.list.iter().enumerate() {
                rect x=(x + lane as f64 * lane_w + 1.0) y=(HEADER) width=((lane_w - 2.0).max(2.0)) height=(LANE_HEAD - 4.0)
                    fill=(calendars.color(account.id)) { title { (account.alias) } }
            }
        }
        text x="4" y=(HEADER + LANE_HEAD + 15.0) class="hour" { "all day" }
        @for h in 0..=24u32 {
            @let y = TOP + f64::from(h) * HOUR_H;
            line x1=(GUTTER) x2=(WIDTH) y1=(y) y2=(y) class={ "hourline" @if h % 6 == 0 { " major" } } {}
            @if h < 24 { text x="4" y=(y + 13.0) class="hour" { (format!("{h:02}:00")) } }
        }
    }
}

fn now_line(view: &WeekView) -> Option<Markup> {
    let now = Utc::now();
    let window = view.window();
    if now < window.start || now >= window.end {
        return None;
    }
    let local = now.with_timezone(&view.zone.0);
    let d = (local.date_naive() - view.monday).num_days();
    let y = TOP + (f64::from(local.hour()) + f64::from(local.minute()) / 60.0) * HOUR_H;
    let x = GUTTER + d as f64 * DAY_W;
    Some(html! { line.now x1=(x) x2=(x + DAY_W) y1=(y) y2=(y) {} })
}

fn item_markup(item: &Item, view: &WeekView, lanes: usize) -> Markup {
    let (start, end) = attr_time(&item.when);
    let opacity = if item.block {
        "0.35"
    } else if item.hollow {
        "0"
    } else {
        "0.9"
    };
    html! {
        a.item href=(item.href) data-kind=(if item.block { "block" } else { "event" })
            data-account=(item.account) data-source-account=(item.source_account)
            data-source-event=(item.source_event) data-start=(start) data-end=(end) data-state=(item.state) {
            title { (item.tooltip) }
            @for (x, y, w, h) in rects(item, view, lanes) {
                rect x=(format!("{x:.1}")) y=(format!("{y:.1}")) width=(format!("{w:.1}")) height=(format!("{h:.1}"))
                    rx="2" fill=(item.color) fill-opacity=(opacity) stroke=(item.color)
                    stroke-width=(if item.block || item.hollow { "1.5" } else { "0.5" })
                    stroke-dasharray=(if item.block { "3 2" } else { "none" })
                    class=(if item.state == "failing" || item.state == "gave-up" { "problem" } else { "" }) {}
            }
        }
    }
}

fn svg(week: &Week) -> Markup {
    let lanes = week.calendars.list.len().max(1);
    html! {
        svg.week xmlns="http://www.w3.org/2000/svg" viewBox=(format!("0 0 {WIDTH} {HEIGHT}"))
            role="img" aria-label=(format!("The week from {}, one lane per calendar", week.view.monday)) {
            (grid(&week.view, &week.calendars))
            @for item in week.items.iter().filter(|i| !i.block) { (item_markup(item, &week.view, lanes)) }
            @for item in week.items.iter().filter(|i| i.block) { (item_markup(item, &week.view, lanes)) }
            @if let Some(line) = now_line(&week.view) { (line) }
        }
    }
}

fn legend(calendars: &Calendars) -> Markup {
    html! {
        ul.legend {
            @for a in &calendars.list {
                li { (swatch(calendars.color(a.id))) " " a href={ "/admin/accounts/" (a.id) } { (a.alias) } }
            }
        }
        p.muted.small {
            "In each day, one lane per calendar, left to right in this order. Solid: the calendar's own event. "
            "Hollow: its own event that gets no block (hover for why). Pale and dashed: a block, in the colour of the calendar its event is on; red outline: its write is failing. "
            "Hover for details, click for the event's trace."
        }
    }
}

/// A small square of `color` (an SVG, since the page's policy allows no inline styles).
pub(crate) fn swatch(color: &str) -> Markup {
    html! {
        svg.swatch width="12" height="12" viewBox="0 0 12 12" aria-hidden="true" {
            rect width="12" height="12" rx="2" fill=(color) {}
        }
    }
}

fn problems(week: &Week) -> Markup {
    let mut seen = std::collections::BTreeSet::new();
    let off: Vec<&Item> = week
        .items
        .iter()
        .filter(|i| i.block && i.state != "in-step")
        .filter(|i| seen.insert((i.account, i.source_account, i.source_event.clone())))
        .collect();
    html! {
        @if off.is_empty() {
            p.muted { "Every block drawn this week is in step with its event." }
        } @else {
            h2 { "Blocks not in step this week" }
            table.log {
                thead { tr { th { "On" } th { "For" } th { "When" } th { "State" } th {} } }
                tbody {
                    @for i in off {
                        tr {
                            td { (week.calendars.alias(i.account)) }
                            td { (week.calendars.alias(i.source_account)) "'s event" }
                            td { (when_words(&i.when, week.view.zone)) }
                            td { (i.state) }
                            td { a href=(i.href) { "trace ›" } }
                        }
                    }
                }
            }
        }
    }
}

fn controls(view: &WeekView) -> Markup {
    html! {
        form.filters method="get" action="/admin/week" {
            label { "Week of " input type="date" name="start" value=(view.monday.to_string()); }
            label { "Time zone " input name="tz" list="zones" value=(view.zone.name()) size="18"; }
            datalist #zones {
                @for z in ["UTC", "Europe/London", "Europe/Berlin", "America/New_York", "America/Los_Angeles", "Asia/Tokyo"] {
                    option value=(z) {}
                }
            }
            label { input type="checkbox" name="titles" value="1" checked[view.titles]; " show titles" }
            button type="submit" { "Show" }
            " "
            a.button href=(view.href(view.monday - TimeDelta::days(7))) { "‹ Previous week" }
            " "
            a.button href=(view.href(view.monday + TimeDelta::days(7))) { "Next week ›" }
        }
    }
}

pub(crate) fn page(page: &Page, week: &Week) -> Markup {
    let view = &week.view;
    let title = format!("Week of {}", view.monday.format("%d %b %Y"));
    layout(
        &title,
        Some(page),
        html! {
            h1 { (title) " " small.muted { "times in " (view.zone.name()) } }
            (controls(view))
            @if week.calendars.list.is_empty() {
                p.empty { "No calendar is connected yet." }
            } @else {
                (legend(&week.calendars))
                (live_region("week", html! {
                    div.weekgrid { (svg(week)) }
                    (problems(week))
                }))
            }
        },
    )
}
