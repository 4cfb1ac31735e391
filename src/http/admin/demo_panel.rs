//! The dashboard's demo panel: what it can ask of a demo, as a small trait.
//!
//! The panel only knows [`DemoActions`]; `mcss demo` implements it (`crate::demo`) by editing
//! the emulator's calendars as their owners would. So the dependency runs one way: the demo
//! uses the dashboard, never the reverse.

use async_trait::async_trait;

/// What the dashboard's demo panel can do on a calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemoAction {
    /// A one-hour meeting starting in about an hour.
    Meeting,
    /// An all-day event tomorrow.
    AllDay,
    /// A weekly series of ten meetings.
    Weekly,
    /// Delete the event the panel made last.
    DeleteLast,
}

impl DemoAction {
    pub const ALL: [DemoAction; 4] = [Self::Meeting, Self::AllDay, Self::Weekly, Self::DeleteLast];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Meeting => "meeting",
            Self::AllDay => "all-day",
            Self::Weekly => "weekly",
            Self::DeleteLast => "delete-last",
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
            Self::DeleteLast => "Delete the last one",
        }
    }
}

/// The demo panel's back end, held by the admin pages in `mcss demo` only.
#[async_trait]
pub trait DemoActions: Send + Sync {
    /// Calendars the panel offers, by alias.
    fn calendars(&self) -> Vec<String>;
    /// Performs `action` on `calendar`; `Ok` says what was done, in words for the page.
    async fn perform(&self, calendar: &str, action: DemoAction) -> Result<String, String>;
}
