//! The block body: exactly the event resource Google should hold for one block, and its hash.
//!
//! The BlockWriter sends the body (adding `id` on insert, and `sendUpdates=none`) and compares
//! [`BlockBody::hash`] with the hash it last applied, so an unchanged source costs no write.
//! Serialization is canonical (fixed field order, sorted property keys), which keeps the hash
//! stable across re-planning and restarts.

use std::collections::BTreeMap;

use chrono::TimeDelta;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::BlockDetails;

use super::marker::Marker;
use super::model::{
    EventStatus, EventTime, PlannerConfig, SourceAccount, SourceEvent, Transparency, Visibility,
};

/// A block as Google should hold it (`calendar#event` JSON, without `id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockBody {
    /// `confirmed`, or `cancelled` for a cancelled occurrence of a block series.
    pub status: EventStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// The source's details for the owner; absent in busy-only mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<BlockTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<BlockTime>,
    /// The source's recurrence lines, on a block series only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recurrence: Vec<String>,
    /// On a block occurrence: the block series' id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recurring_event_id: Option<String>,
    /// On a block occurrence: which occurrence (the source occurrence's original start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_start_time: Option<BlockTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility: Option<Visibility>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transparency: Option<Transparency>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reminders: Option<Reminders>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extended_properties: Option<ExtendedProperties>,
}

/// Google's `EventDateTime`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockTime {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reminders {
    pub use_default: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtendedProperties {
    pub private: BTreeMap<String, String>,
}

impl BlockBody {
    /// SHA-256 (lowercase hex) of the canonical JSON.
    pub fn hash(&self) -> String {
        let json = serde_json::to_vec(self).expect("a block body always serializes");
        hex::encode(Sha256::digest(json))
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a block body always serializes")
    }

    /// The body for a PATCH that also clears what a block must not carry (a user's edits,
    /// or the description after a switch to busy-only): PATCH keeps fields it is not sent.
    /// A start or end says both of `date` and `dateTime` (the one not used as null), so an
    /// event switched between all-day and timed does not keep the other kind of time.
    pub fn to_patch_json(&self) -> serde_json::Value {
        let mut json = self.to_json();
        if let (serde_json::Value::Object(map), EventStatus::Confirmed) = (&mut json, self.status) {
            for field in ["description", "location"] {
                map.entry(field).or_insert(serde_json::Value::Null);
            }
            for field in ["start", "end"] {
                if let Some(serde_json::Value::Object(time)) = map.get_mut(field) {
                    for part in ["date", "dateTime", "timeZone"] {
                        time.entry(part).or_insert(serde_json::Value::Null);
                    }
                }
            }
        }
        json
    }

    pub fn is_cancelled(&self) -> bool {
        self.status == EventStatus::Cancelled
    }

    /// The marker this body carries (none on a cancelled occurrence).
    pub fn marker(&self) -> Option<Marker> {
        Marker::from_private_properties(&self.extended_properties.as_ref()?.private)
    }
}

impl BlockTime {
    fn from_time(time: &EventTime, fallback_zone: Option<&str>) -> Self {
        match time {
            EventTime::AllDay { date } => Self {
                date: Some(date.format("%Y-%m-%d").to_string()),
                date_time: None,
                time_zone: None,
            },
            EventTime::Timed {
                time_zone,
                date_time,
                ..
            } => Self {
                date: None,
                date_time: Some(date_time.clone()),
                time_zone: time_zone
                    .clone()
                    .or_else(|| fallback_zone.map(str::to_owned)),
            },
        }
    }
}

/// The live block for a mirrored event (a single event, a series, or a modified occurrence).
pub(crate) fn live_body(
    cfg: &PlannerConfig,
    source: &SourceAccount,
    event: &SourceEvent,
    block_series_id: Option<&str>,
) -> Option<BlockBody> {
    let (start, end) = (event.start.as_ref()?, event.end.as_ref()?);
    // Google needs a zone to expand a timed series; the calendar's own zone is what the
    // source was expanded in when the event named none.
    let fallback_zone = if event.is_series() {
        source.time_zone.as_deref()
    } else {
        None
    };
    let original_start_time = match (block_series_id, &event.original_start) {
        (Some(_), Some(original)) => Some(BlockTime::from_time(original, None)),
        _ => None,
    };
    Some(BlockBody {
        status: EventStatus::Confirmed,
        summary: Some(cfg.title_template.replace("{alias}", &source.alias)),
        description: match cfg.details {
            BlockDetails::Full => Some(describe(source, event, start, end)),
            BlockDetails::BusyOnly => None,
        },
        start: Some(BlockTime::from_time(start, fallback_zone)),
        end: Some(BlockTime::from_time(end, fallback_zone)),
        recurrence: if event.is_series() {
            event.recurrence.clone()
        } else {
            Vec::new()
        },
        recurring_event_id: block_series_id.map(str::to_owned),
        original_start_time,
        visibility: Some(Visibility::Private),
        transparency: Some(Transparency::Opaque),
        reminders: Some(Reminders { use_default: false }),
        extended_properties: Some(ExtendedProperties {
            private: Marker::new(&cfg.installation, source.id, &event.id).to_private_properties(),
        }),
    })
}

/// A cancelled occurrence of a block series, as Google lists one.
pub(crate) fn cancelled_occurrence_body(
    block_series_id: &str,
    original_start: &EventTime,
) -> BlockBody {
    BlockBody {
        status: EventStatus::Cancelled,
        summary: None,
        description: None,
        start: None,
        end: None,
        recurrence: Vec::new(),
        recurring_event_id: Some(block_series_id.to_owned()),
        original_start_time: Some(BlockTime::from_time(original_start, None)),
        visibility: None,
        transparency: None,
        reminders: None,
        extended_properties: None,
    }
}

/// The owner's view of the source: a private block hides this from everyone else.
fn describe(
    source: &SourceAccount,
    event: &SourceEvent,
    start: &EventTime,
    end: &EventTime,
) -> String {
    let mut lines = vec![
        event
            .summary
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or("(no title)")
            .to_owned(),
        format!("When: {}", describe_time(start, end)),
    ];
    if event.is_series() {
        lines.push(format!("Repeats: {}", event.recurrence.join("; ")));
    }
    if let Some(location) = event.location.as_deref().filter(|l| !l.trim().is_empty()) {
        lines.push(format!("Where: {location}"));
    }
    lines.push(format!("Calendar: {}", source.alias));
    if let Some(link) = &event.html_link {
        lines.push(format!("Open: {link}"));
    }
    lines.join("\n")
}

fn describe_time(start: &EventTime, end: &EventTime) -> String {
    match (start, end) {
        (EventTime::AllDay { date: first }, EventTime::AllDay { date: end }) => {
            let last = *end - TimeDelta::days(1);
            if last <= *first {
                format!("{} (all day)", first.format("%a %Y-%m-%d"))
            } else {
                format!(
                    "{} – {} (all day)",
                    first.format("%a %Y-%m-%d"),
                    last.format("%a %Y-%m-%d")
                )
            }
        }
        _ => match (start.local(), end.local()) {
            (Some(s), Some(e)) => {
                let zone = start
                    .time_zone()
                    .map_or_else(|| s.format("UTC%:z").to_string(), str::to_owned);
                if s.date_naive() == e.date_naive() {
                    format!(
                        "{}–{} ({zone})",
                        s.format("%a %Y-%m-%d %H:%M"),
                        e.format("%H:%M")
                    )
                } else {
                    format!(
                        "{} – {} ({zone})",
                        s.format("%a %Y-%m-%d %H:%M"),
                        e.format("%a %Y-%m-%d %H:%M")
                    )
                }
            }
            _ => String::new(),
        },
    }
}
