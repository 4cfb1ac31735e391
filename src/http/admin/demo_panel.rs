//! The dashboard's demo panel: what it can ask of a demo, as a small trait, and its form.
//!
//! The panel only knows [`DemoActions`]; `mcss demo` implements it (`crate::demo`) by editing
//! the emulator's calendars as their owners would. So the dependency runs one way: the demo
//! uses the dashboard, never the reverse.

use async_trait::async_trait;
use maud::{html, Markup};

use super::pages::Page;

/// What the dashboard's demo panel can do: make an event on a calendar, or change one the
/// demo made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemoAction {
    /// A one-hour meeting starting in about an hour.
    Meeting,
    /// An all-day event tomorrow.
    AllDay,
    /// A weekly series of ten meetings.
    Weekly,
    /// Delete the event the panel made last on the chosen calendar.
    DeleteLast,
    /// Move the chosen event one hour later (an all-day one, one day).
    Move,
    /// Give the chosen event a new title.
    Rename,
    /// Mark the chosen event free: its blocks go.
    MarkFree,
    /// Mark the chosen event busy again: its blocks come back.
    MarkBusy,
    /// Make the chosen event an invitation its owner declined: its blocks go.
    Decline,
    /// Delete the chosen event.
    Delete,
}

impl DemoAction {
    pub const ALL: [DemoAction; 10] = [
        Self::Meeting,
        Self::AllDay,
        Self::Weekly,
        Self::DeleteLast,
        Self::Move,
        Self::Rename,
        Self::MarkFree,
        Self::MarkBusy,
        Self::Decline,
        Self::Delete,
    ];

    /// The actions that make something on the chosen calendar.
    pub const CREATE: [DemoAction; 4] =
        [Self::Meeting, Self::AllDay, Self::Weekly, Self::DeleteLast];

    /// The actions that change the chosen event.
    pub const CHANGE: [DemoAction; 6] = [
        Self::Move,
        Self::Rename,
        Self::MarkFree,
        Self::MarkBusy,
        Self::Decline,
        Self::Delete,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Meeting => "meeting",
            Self::AllDay => "all-day",
            Self::Weekly => "weekly",
            Self::DeleteLast => "delete-last",
            Self::Move => "move",
            Self::Rename => "rename",
            Self::MarkFree => "mark-free",
            Self::MarkBusy => "mark-busy",
            Self::Decline => "decline",
            Self::Delete => "delete",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == raw)
    }

    /// The button's words.
    pub fn label(self) -> &'static str {
        match self {
            Self::Meeting => "One-hour meeting in 1 h",
            Self::AllDay => "All-day event tomorrow",
            Self::Weekly => "Weekly series (10 weeks)",
            Self::DeleteLast => "Delete the last one made here",
            Self::Move => "Move 1 h later",
            Self::Rename => "Rename",
            Self::MarkFree => "Mark free",
            Self::MarkBusy => "Mark busy",
            Self::Decline => "Decline",
            Self::Delete => "Delete",
        }
    }

    /// Whether the action works on a chosen event rather than on a calendar.
    pub fn needs_event(self) -> bool {
        Self::CHANGE.contains(&self)
    }
}

/// The demo panel's back end, held by the admin pages in `mcss demo` only.
#[async_trait]
pub trait DemoActions: Send + Sync {
    /// Calendars the panel offers, by alias (every connected demo calendar).
    async fn calendars(&self) -> Vec<String>;
    /// Events the panel can change: (key, label), newest first. The label names the
    /// calendar, the time and what the demo made, never a title.
    async fn events(&self) -> Vec<(String, String)>;
    /// Performs `action` on `calendar` (or on the event `event`, a key from
    /// [`DemoActions::events`]); `Ok` says what was done, `Err` what went wrong, in words for
    /// the page.
    async fn perform(
        &self,
        calendar: &str,
        event: Option<&str>,
        action: DemoAction,
    ) -> Result<String, String>;
}

/// The panel at the bottom of the overview.
pub(crate) fn panel(page: &Page, calendars: &[String], events: &[(String, String)]) -> Markup {
    html! {
        section.card.demo #demo {
            h2 { "Demo: make something happen" }
            p.muted { "These buttons act as the calendar's owner would, through the emulated Google API. The blocks follow on the other calendars within seconds; the table above updates by itself." }
            form method="post" action="/admin/demo" {
                input type="hidden" name="csrf" value=(page.csrf);
                label for="demo-calendar" { "On calendar" }
                select #demo-calendar name="calendar" {
                    @for c in calendars { option value=(c) { (c) } }
                }
                div.buttons {
                    @for action in DemoAction::CREATE {
                        button type="submit" name="action" value=(action.as_str()) { (action.label()) }
                    }
                }
            }
            form method="post" action="/admin/demo" {
                input type="hidden" name="csrf" value=(page.csrf);
                label for="demo-event" { "Change an event the demo made" }
                @if events.is_empty() {
                    p.empty { "Nothing made yet: create an event above first." }
                } @else {
                    select #demo-event name="event" {
                        @for (key, label) in events { option value=(key) { (label) } }
                    }
                    div.buttons {
                        @for action in DemoAction::CHANGE {
                            button type="submit" name="action" value=(action.as_str()) { (action.label()) }
                        }
                    }
                }
            }
        }
    }
}
