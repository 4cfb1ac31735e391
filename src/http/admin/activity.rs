//! The Activity page: the sync log of every calendar, filterable, 50 lines a page, with
//! calendars named by alias and every block write naming its source and its target and
//! linking to the trace of its event.
//!
//! The writers word a block write's audit line as `block <block id> <result> (from <source
//! account> event <source event>, sync <sync id>)` (`actors/block_writer.rs`); a user's
//! deletion as `block <block id> deleted by the user; it stays deleted`. [`BlockLine`] reads
//! them back. The audit line of a failed write names only the writer's label ("transient");
//! Google's status and reason come from the block's outbox row while it is still failing.

use std::collections::HashMap;

use maud::{html, Markup};

use super::pages::{layout, short_id, stamp, time, Calendars, Page};
use super::status::google_reason;
use crate::domain::AccountId;
use crate::store::{log_kind, Account, BlockState, LogEntry, LogResult, OutboxRow};

/// A block write's audit line, read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BlockLine<'a> {
    pub block: &'a str,
    /// The writer's word: `ok`, `gone`, `transient`, `rate_limited`, `failed`, …
    pub result: &'a str,
    pub source: AccountId,
    pub event: &'a str,
    pub sync: &'a str,
}

impl<'a> BlockLine<'a> {
    pub fn parse(detail: &'a str) -> Option<Self> {
        let rest = detail.strip_prefix("block ")?;
        let (block, rest) = rest.split_once(' ')?;
        let (result, rest) = rest.split_once(" (from ")?;
        let rest = rest.strip_suffix(')')?;
        let (source, rest) = rest.split_once(" event ")?;
        let (event, sync) = rest.split_once(", sync ")?;
        Some(BlockLine {
            block,
            result,
            source: AccountId::new(source.parse().ok()?),
            event,
            sync,
        })
    }
}

/// The block id of a "deleted by the user" line.
pub(crate) fn excluded_block(detail: &str) -> Option<&str> {
    detail
        .strip_prefix("block ")?
        .strip_suffix(" deleted by the user; it stays deleted")
}

/// What the outbox says now about a block a log line names: its source, and Google's answer
/// to its last failed attempt while it still fails.
#[derive(Debug, Clone)]
pub(crate) struct BlockNow {
    pub source: AccountId,
    pub event: String,
    pub failing: Option<String>,
}

impl BlockNow {
    pub fn of(row: &OutboxRow) -> Self {
        let still_failing =
            matches!(row.state, BlockState::Pending | BlockState::Failed) && row.attempts > 0;
        BlockNow {
            source: row.source_account_id,
            event: row.source_event_id.to_string(),
            failing: still_failing.then(|| row.last_error.clone()).flatten(),
        }
    }
}

/// Blocks named by log lines, keyed by (target, block id).
pub(crate) type BlockNotes = HashMap<(AccountId, String), BlockNow>;

/// The (target, block id) pairs of `entries` whose outbox row the page wants to look at: the
/// failed writes and the user's deletions.
pub(crate) fn blocks_to_look_up(entries: &[LogEntry]) -> HashMap<AccountId, Vec<String>> {
    let mut wanted: HashMap<AccountId, Vec<String>> = HashMap::new();
    for entry in entries {
        let Some(target) = entry.account_id else {
            continue;
        };
        let block = match BlockLine::parse(&entry.detail) {
            Some(line) if entry.result == LogResult::Error => Some(line.block),
            Some(_) => None,
            None => excluded_block(&entry.detail),
        };
        if let Some(block) = block {
            wanted.entry(target).or_default().push(block.to_owned());
        }
    }
    wanted
}

/// The link to the trace of `event` of `source`.
pub(crate) fn trace_href(source: AccountId, event: &str) -> String {
    format!("/admin/events/{source}/{event}")
}

fn kind_words(kind: &str) -> String {
    kind.replace('_', " ")
}

fn result_class(r: LogResult) -> &'static str {
    match r {
        LogResult::Ok => "ok",
        LogResult::Error => "bad",
        LogResult::Skipped => "warn",
    }
}

/// The detail of one line, in words: block writes name source, target and a trace link.
fn detail(entry: &LogEntry, calendars: &Calendars, notes: &BlockNotes) -> Markup {
    if let Some(line) = BlockLine::parse(&entry.detail) {
        let target = entry.account_id;
        let note = target.and_then(|t| notes.get(&(t, line.block.to_owned())));
        let failed = !matches!(line.result, "ok" | "gone");
        return html! {
            "for " (calendars.link(line.source)) "'s event " (short_id(line.event))
            @if let Some(t) = target { " → block on " (calendars.link(t)) }
            @if failed { " " span.error { "(" (line.result) ")" } }
            " " a.trace href=(trace_href(line.source, line.event)) { "trace ›" }
            @if let Some(error) = note.and_then(|n| n.failing.as_deref()) {
                br; span.error { "still failing: Google answered " (google_reason(error)) }
            }
            br; small.muted { "block " (short_id(line.block)) " · sync " (short_id(line.sync)) }
        };
    }
    if let (Some(block), Some(target)) = (excluded_block(&entry.detail), entry.account_id) {
        let note = notes.get(&(target, block.to_owned()));
        return html! {
            "the owner of " (calendars.link(target)) " deleted block " (short_id(block)) "; it stays deleted"
            @if let Some(n) = note {
                " (a block of " (calendars.link(n.source)) "'s event) "
                a.trace href=(trace_href(n.source, &n.event)) { "trace ›" }
            }
        };
    }
    html! { (entry.detail) }
}

/// The log table of the account page and the Activity page.
pub(crate) fn log_table(
    entries: &[LogEntry],
    calendars: &Calendars,
    notes: &BlockNotes,
    with_account: bool,
) -> Markup {
    html! {
        @if entries.is_empty() {
            p.empty { "Nothing logged yet." }
        } @else {
            table.log {
                thead { tr {
                    th { "When (UTC)" }
                    @if with_account { th { "Calendar" } }
                    th { "What" } th { "Result" } th.num { "Count" } th.num { "Took" } th { "Detail" }
                } }
                tbody {
                    @for e in entries {
                        tr data-kind=(e.kind) data-result=(e.result.as_str()) {
                            td { (time(e.at, stamp(e.at))) }
                            @if with_account {
                                td { @match e.account_id {
                                    Some(id) => (calendars.link(id)),
                                    None => span.muted { "—" },
                                } }
                            }
                            td { (kind_words(&e.kind)) }
                            td { span class={ "status " (result_class(e.result)) } { (e.result.as_str()) } }
                            td.num { (e.count.map(|c| c.to_string()).unwrap_or_default()) }
                            td.num { (e.duration_ms.map(|d| format!("{d} ms")).unwrap_or_default()) }
                            td.detail { (detail(e, calendars, notes)) }
                        }
                    }
                }
            }
        }
    }
}

/// Every log kind the activity filter offers.
pub(crate) const LOG_KINDS: &[&str] = &[
    log_kind::FULL_SYNC,
    log_kind::INCREMENTAL_SYNC,
    log_kind::BLOCK_INSERT,
    log_kind::BLOCK_PATCH,
    log_kind::BLOCK_DELETE,
    log_kind::BLOCK_RESTORE,
    log_kind::BLOCK_EXCLUDED,
    log_kind::ACCOUNT_ADDED,
    log_kind::ACCOUNT_REMOVED,
    log_kind::ACCOUNT_STATUS,
    log_kind::REAUTH_NEEDED,
    log_kind::CHANNEL_CREATED,
    log_kind::CHANNEL_STOPPED,
    log_kind::RECONCILE,
    log_kind::MASS_DELETE_HOLD,
    log_kind::PURGE,
];

pub(crate) struct ActivityFilter {
    pub account: Option<AccountId>,
    pub kind: Option<String>,
    pub result: Option<LogResult>,
    pub page: u64,
    pub pages: u64,
    pub total: u64,
}

impl ActivityFilter {
    fn href(&self, page: u64) -> String {
        let mut url = url::Url::parse("http://x/admin/activity").expect("a fixed URL parses");
        {
            let mut q = url.query_pairs_mut();
            if let Some(a) = self.account {
                q.append_pair("account", &a.to_string());
            }
            if let Some(k) = &self.kind {
                q.append_pair("kind", k);
            }
            if let Some(r) = self.result {
                q.append_pair("result", r.as_str());
            }
            q.append_pair("page", &page.to_string());
        }
        format!("{}?{}", url.path(), url.query().unwrap_or_default())
    }
}

pub(crate) fn activity(
    page: &Page,
    accounts: &[Account],
    calendars: &Calendars,
    entries: &[LogEntry],
    notes: &BlockNotes,
    filter: &ActivityFilter,
) -> Markup {
    layout(
        "Activity",
        Some(page),
        html! {
            h1 { "Activity" }
            form.filters method="get" action="/admin/activity" {
                label { "Calendar "
                    select name="account" {
                        option value="" { "all" }
                        @for a in accounts {
                            option value=(a.id) selected[filter.account == Some(a.id)] { (a.alias) }
                        }
                    }
                }
                label { "What "
                    select name="kind" {
                        option value="" { "all" }
                        @for k in LOG_KINDS {
                            option value=(k) selected[filter.kind.as_deref() == Some(*k)] { (kind_words(k)) }
                        }
                    }
                }
                label { "Result "
                    select name="result" {
                        option value="" { "all" }
                        @for r in LogResult::ALL {
                            option value=(r.as_str()) selected[filter.result == Some(*r)] { (r.as_str()) }
                        }
                    }
                }
                button type="submit" { "Filter" }
            }
            p.muted { (filter.total) " entries · page " (filter.page) " of " (filter.pages) " · times in UTC" }
            (log_table(entries, calendars, notes, true))
            nav.pager {
                @if filter.page > 1 { a.button href=(filter.href(filter.page - 1)) { "‹ Newer" } }
                @if filter.page < filter.pages { a.button href=(filter.href(filter.page + 1)) { "Older ›" } }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_writes_audit_line_is_read_back_into_its_parts() {
        let line = BlockLine::parse(
            "block mcss0abc transient (from 3 event ev123_20260305T100000Z, sync 9f8e)",
        )
        .unwrap();

        assert_eq!(line.block, "mcss0abc");
        assert_eq!(line.result, "transient");
        assert_eq!(line.source, AccountId::new(3));
        assert_eq!(line.event, "ev123_20260305T100000Z");
        assert_eq!(line.sync, "9f8e");
    }

    #[test]
    fn other_lines_are_not_block_writes() {
        assert_eq!(
            BlockLine::parse("3 listed, 1 changed, 0 removed, 4 blocks planned"),
            None
        );
        assert_eq!(
            excluded_block("block mcss0abc deleted by the user; it stays deleted"),
            Some("mcss0abc")
        );
    }
}
