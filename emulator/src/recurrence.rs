//! TEMPORARY placeholder: the recurrence helper overwrites this file with the real engine.
//! Only the agreed API, with a trivial expansion (the master occurrence only).
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    Date(NaiveDate),
    DateTime { local: NaiveDateTime, tz: chrono_tz::Tz },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occurrence {
    pub start: Start,
    pub end: Start,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceKey {
    Date(NaiveDate),
    Utc(DateTime<Utc>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecurrenceError {
    #[error("invalid recurrence: {0}")]
    Invalid(String),
}

impl Start {
    pub fn to_utc(&self) -> DateTime<Utc> {
        match self {
            Start::Date(d) => Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight")),
            Start::DateTime { local, tz } => tz
                .from_local_datetime(local)
                .earliest()
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_else(|| Utc.from_utc_datetime(local)),
        }
    }
    pub fn key(&self) -> InstanceKey {
        match self {
            Start::Date(d) => InstanceKey::Date(*d),
            Start::DateTime { .. } => InstanceKey::Utc(self.to_utc()),
        }
    }
}

pub fn expand(
    recurrence: &[String],
    master_start: &Start,
    master_end: &Start,
    window_start: Option<DateTime<Utc>>,
    window_end: Option<DateTime<Utc>>,
    max: usize,
) -> Result<Vec<Occurrence>, RecurrenceError> {
    if recurrence.iter().any(|l| !l.starts_with("RRULE:") && !l.starts_with("EXDATE") && !l.starts_with("RDATE") && !l.starts_with("EXRULE")) {
        return Err(RecurrenceError::Invalid("bad line".into()));
    }
    let _ = (window_start, window_end);
    let mut v = vec![Occurrence { start: master_start.clone(), end: master_end.clone() }];
    v.truncate(max);
    Ok(v)
}

pub fn instance_id(series_id: &str, original_start: &Start) -> String {
    match original_start.key() {
        InstanceKey::Date(d) => format!("{series_id}_{}", d.format("%Y%m%d")),
        InstanceKey::Utc(t) => format!("{series_id}_{}", t.format("%Y%m%dT%H%M%SZ")),
    }
}

pub fn parse_instance_id(id: &str) -> Option<(&str, InstanceKey)> {
    let (series, suffix) = id.rsplit_once('_')?;
    if let Ok(d) = NaiveDate::parse_from_str(suffix, "%Y%m%d") {
        return Some((series, InstanceKey::Date(d)));
    }
    let t = NaiveDateTime::parse_from_str(suffix, "%Y%m%dT%H%M%SZ").ok()?;
    Some((series, InstanceKey::Utc(Utc.from_utc_datetime(&t))))
}
