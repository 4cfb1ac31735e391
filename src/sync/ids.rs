//! Deterministic block ids.
//!
//! A block's id is derived from (installation, source calendar, source event id, target
//! calendar), so a retried insert hits 409 instead of creating a duplicate, and reconciliation
//! can recompute every id from a block's marker. An occurrence of a series keeps Google's
//! instance suffix, so it addresses the matching occurrence of the block series.
//!
//! An exception of a series whose block series must not exist (the series was made free,
//! declined, filtered…) but which is itself busy gets a *detached* block: a single event
//! whose id hashes the whole instance id ([`detached_block_id`]). Google's ids may not
//! contain `_` outside instance ids, and [`block_id`] never hashes a string with an instance
//! suffix, so the two kinds can never collide.
//!
//! Layout: lowercase base32hex (`[0-9a-v]`, Google's id alphabet) of 25 bytes = 40 characters:
//! 20 bytes of SHA-256 over the inputs, then a 5-byte tag over (installation, those 20 bytes).
//! The tag lets [`is_block_id`] recognise our blocks from the id alone — tombstones of deleted
//! blocks carry no marker, and without it they would be planned as source events.

use data_encoding::BASE32HEX_NOPAD;
use sha2::{Digest, Sha256};

use crate::domain::{BlockId, CalendarId, EventId};

const BODY_LEN: usize = 20;
const TAG_LEN: usize = 5;
/// Characters of a series block id.
pub const BLOCK_ID_LEN: usize = (BODY_LEN + TAG_LEN) * 8 / 5;
// Block ids are at least 26 characters (docs/sync-rules.md) (and `BlockId::parse` enforces it).
const _: () = assert!(BLOCK_ID_LEN >= 26);

/// The id of the block on `target_calendar` for `source_event_id` of `source_calendar`.
/// An instance id `<series>_<YYYYMMDD[THHMMSSZ]>` maps to `<block series id>_<same suffix>`.
pub fn block_id(
    installation: &str,
    source_calendar: &CalendarId,
    source_event_id: &EventId,
    target_calendar: &CalendarId,
) -> BlockId {
    let (series, suffix) = split_instance_id(source_event_id.as_str());
    let series_id = series_block_id(installation, source_calendar, series, target_calendar);
    let raw = match suffix {
        Some(suffix) => format!("{series_id}_{suffix}"),
        None => series_id,
    };
    BlockId::parse(&raw).expect("a base32hex digest with a checked instance suffix is a block id")
}

/// The id of the single block on `target_calendar` that stands in for the exception
/// `exception_id` (`<series>_<suffix>`) of a series that has no block series there.
pub fn detached_block_id(
    installation: &str,
    source_calendar: &CalendarId,
    exception_id: &EventId,
    target_calendar: &CalendarId,
) -> BlockId {
    let raw = series_block_id(
        installation,
        source_calendar,
        exception_id.as_str(),
        target_calendar,
    );
    BlockId::parse(&raw).expect("a base32hex digest is a block id")
}

/// Whether `id` (a series id or an instance id) is a block id of `installation`.
pub fn is_block_id(installation: &str, id: &str) -> bool {
    let (series, _) = split_instance_id(id);
    if series.len() != BLOCK_ID_LEN {
        return false;
    }
    let Ok(bytes) = BASE32HEX_NOPAD.decode(series.to_ascii_uppercase().as_bytes()) else {
        return false;
    };
    if series.bytes().any(|b| b.is_ascii_uppercase()) || bytes.len() != BODY_LEN + TAG_LEN {
        return false;
    }
    let (body, tag) = bytes.split_at(BODY_LEN);
    tag == self::tag(installation, body)
}

/// Splits Google's instance id `<series>_<YYYYMMDD>` / `<series>_<YYYYMMDDTHHMMSSZ>`.
/// Ids without such a suffix (imported events may contain `_` anywhere) are whole.
pub fn split_instance_id(id: &str) -> (&str, Option<&str>) {
    match id.rsplit_once('_') {
        Some((series, suffix)) if !series.is_empty() && is_instance_suffix(suffix) => {
            (series, Some(suffix))
        }
        _ => (id, None),
    }
}

fn is_instance_suffix(suffix: &str) -> bool {
    let b = suffix.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    match b.len() {
        8 => digits(0..8),
        16 => digits(0..8) && b[8] == b'T' && digits(9..15) && b[15] == b'Z',
        _ => false,
    }
}

fn series_block_id(
    installation: &str,
    source_calendar: &CalendarId,
    source_event_id: &str,
    target_calendar: &CalendarId,
) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"mcss-block-id-v1");
    for field in [
        installation,
        source_calendar.as_str(),
        source_event_id,
        target_calendar.as_str(),
    ] {
        // Length prefixes keep ("ab","c") and ("a","bc") apart.
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field.as_bytes());
    }
    let digest = hasher.finalize();
    let body = &digest[..BODY_LEN];
    let mut bytes = Vec::with_capacity(BODY_LEN + TAG_LEN);
    bytes.extend_from_slice(body);
    bytes.extend_from_slice(&tag(installation, body));
    BASE32HEX_NOPAD.encode(&bytes).to_ascii_lowercase()
}

fn tag(installation: &str, body: &[u8]) -> [u8; TAG_LEN] {
    let mut hasher = Sha256::new();
    hasher.update(b"mcss-block-tag-v1");
    hasher.update((installation.len() as u64).to_be_bytes());
    hasher.update(installation.as_bytes());
    hasher.update(body);
    let digest = hasher.finalize();
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(&digest[..TAG_LEN]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cal(raw: &str) -> CalendarId {
        CalendarId::parse(raw).unwrap()
    }

    fn ev(raw: &str) -> EventId {
        EventId::parse(raw).unwrap()
    }

    #[test]
    fn a_block_id_is_40_lowercase_base32hex_characters() {
        let id = block_id("inst", &cal("a@x.com"), &ev("abc123"), &cal("b@x.com"));
        assert_eq!(id.as_str().len(), BLOCK_ID_LEN);
        assert!(id
            .as_str()
            .chars()
            .all(|c| matches!(c, '0'..='9' | 'a'..='v')));
    }

    #[test]
    fn an_instance_keeps_its_suffix_on_the_block_series_id() {
        let series = block_id("inst", &cal("a@x.com"), &ev("abc123"), &cal("b@x.com"));
        let timed = block_id(
            "inst",
            &cal("a@x.com"),
            &ev("abc123_20260826T110000Z"),
            &cal("b@x.com"),
        );
        let all_day = block_id(
            "inst",
            &cal("a@x.com"),
            &ev("abc123_20260826"),
            &cal("b@x.com"),
        );
        assert_eq!(timed.as_str(), format!("{series}_20260826T110000Z"));
        assert_eq!(all_day.as_str(), format!("{series}_20260826"));
        assert_eq!(timed.series(), series.as_str());
    }

    #[test]
    fn an_underscore_that_is_not_an_instance_suffix_is_part_of_the_id() {
        assert_eq!(
            split_instance_id("imported_event_1"),
            ("imported_event_1", None)
        );
        assert_eq!(split_instance_id("_20260826"), ("_20260826", None));
        assert_eq!(split_instance_id("x_2026082"), ("x_2026082", None));
        let id = block_id(
            "inst",
            &cal("a@x.com"),
            &ev("imported_event_1"),
            &cal("b@x.com"),
        );
        assert!(!id.as_str().contains('_'));
    }

    #[test]
    fn a_detached_block_id_is_a_plain_block_id_of_its_own() {
        let exception = ev("abc123_20260826T110000Z");
        let detached = detached_block_id("inst", &cal("a@x.com"), &exception, &cal("b@x.com"));
        let occurrence = block_id("inst", &cal("a@x.com"), &exception, &cal("b@x.com"));
        assert!(!detached.as_str().contains('_'));
        assert_eq!(detached.as_str().len(), BLOCK_ID_LEN);
        assert_ne!(detached.as_str(), occurrence.series());
        assert!(is_block_id("inst", detached.as_str()));
    }

    #[test]
    fn our_block_ids_are_recognised_and_others_are_not() {
        let id = block_id(
            "inst",
            &cal("a@x.com"),
            &ev("abc123_20260826"),
            &cal("b@x.com"),
        );
        assert!(is_block_id("inst", id.as_str()));
        assert!(is_block_id("inst", id.series()));
        assert!(!is_block_id("other-installation", id.as_str()));
        assert!(!is_block_id("inst", "0kngo39kavkg0vvru71bsar1gf"));
        assert!(!is_block_id("inst", &"0".repeat(BLOCK_ID_LEN)));
        assert!(!is_block_id("inst", &id.as_str().to_ascii_uppercase()));
    }
}
