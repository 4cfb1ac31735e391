//! Validated newtypes for the identifiers that cross layers.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a string was refused as an identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} must not be empty")]
    Empty { kind: &'static str },
    #[error("{kind} is {len} characters long; at most {max} are allowed")]
    TooLong {
        kind: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{kind} is {len} characters long; at least {min} are required")]
    TooShort {
        kind: &'static str,
        len: usize,
        min: usize,
    },
    #[error("{kind} contains a character that is not allowed: {found:?}")]
    BadCharacter { kind: &'static str, found: char },
    #[error("{kind} must be a positive integer, got {value:?}")]
    NotAnInteger { kind: &'static str, value: String },
}

/// The store's key of a connected account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AccountId(i64);

impl AccountId {
    pub fn new(raw: i64) -> Self {
        Self(raw)
    }

    pub fn parse(raw: &str) -> Result<Self, IdError> {
        raw.trim()
            .parse::<i64>()
            .ok()
            .filter(|n| *n > 0)
            .map(Self)
            .ok_or_else(|| IdError::NotAnInteger {
                kind: "account id",
                value: raw.to_owned(),
            })
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

fn check_len(kind: &'static str, raw: &str, min: usize, max: usize) -> Result<(), IdError> {
    let len = raw.chars().count();
    if len == 0 {
        return Err(IdError::Empty { kind });
    }
    if len < min {
        return Err(IdError::TooShort { kind, len, min });
    }
    if len > max {
        return Err(IdError::TooLong { kind, len, max });
    }
    Ok(())
}

fn check_chars(kind: &'static str, raw: &str, ok: impl Fn(char) -> bool) -> Result<(), IdError> {
    match raw.chars().find(|c| !ok(*c)) {
        Some(found) => Err(IdError::BadCharacter { kind, found }),
        None => Ok(()),
    }
}

macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                Self::parse(&raw).map_err(serde::de::Error::custom)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(raw: &str) -> Result<Self, IdError> {
                Self::parse(raw)
            }
        }
    };
}

string_id!(
    /// A Google calendar id: `primary`, an email address, or `…@group.calendar.google.com`.
    CalendarId
);
string_id!(
    /// A Google event id as Google returns it (imported events may use any printable
    /// characters, so only length and control characters are checked).
    EventId
);
string_id!(
    /// A push channel id chosen by us: at most 64 characters of `[A-Za-z0-9-_+/=]`.
    ChannelId
);
string_id!(
    /// The deterministic id of a block: lowercase base32hex (`[0-9a-v]`), 26 to 1024 characters,
    /// optionally followed by `_` and an instance suffix for a single occurrence.
    BlockId
);

impl CalendarId {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        const KIND: &str = "calendar id";
        check_len(KIND, raw, 1, 1024)?;
        check_chars(KIND, raw, |c| {
            !c.is_whitespace() && !c.is_control() && c != '/'
        })?;
        Ok(Self(raw.to_owned()))
    }

    pub fn primary() -> Self {
        Self("primary".to_owned())
    }
}

impl EventId {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        const KIND: &str = "event id";
        check_len(KIND, raw, 1, 1024)?;
        check_chars(KIND, raw, |c| {
            !c.is_whitespace() && !c.is_control() && c != '/'
        })?;
        Ok(Self(raw.to_owned()))
    }
}

impl ChannelId {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        const KIND: &str = "channel id";
        check_len(KIND, raw, 1, 64)?;
        check_chars(KIND, raw, |c| {
            c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+' | '/' | '=')
        })?;
        Ok(Self(raw.to_owned()))
    }

    /// A fresh random channel id; Google wants a new one for every watch.
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }
}

impl BlockId {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        const KIND: &str = "block id";
        check_len(KIND, raw, 26, 1024)?;
        let (series, suffix) = match raw.split_once('_') {
            Some((series, suffix)) => (series, Some(suffix)),
            None => (raw, None),
        };
        check_chars(KIND, series, |c| matches!(c, '0'..='9' | 'a'..='v'))?;
        if let Some(suffix) = suffix {
            check_len(KIND, suffix, 8, 16)?;
            check_chars(KIND, suffix, |c| c.is_ascii_digit() || c == 'T' || c == 'Z')?;
        }
        Ok(Self(raw.to_owned()))
    }

    /// The series part of an instance id (`abc_20261124T090000Z` → `abc`).
    pub fn series(&self) -> &str {
        self.0.split_once('_').map_or(&self.0, |(s, _)| s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_id_accepts_base32hex_and_instance_suffixes() {
        let series = "0123456789abcdefghijklmnopqrstuv";
        assert!(BlockId::parse(series).is_ok());
        let instance = BlockId::parse(&format!("{series}_20261124T090000Z")).unwrap();
        assert_eq!(instance.series(), series);
        assert!(BlockId::parse(&format!("{series}_20261124")).is_ok());
    }

    #[test]
    fn a_block_id_refuses_uppercase_short_and_bad_suffixes() {
        assert!(matches!(
            BlockId::parse("ABCDEFGHIJKLMNOPQRSTUVWXYZ01"),
            Err(IdError::BadCharacter { .. })
        ));
        assert!(matches!(
            BlockId::parse("abc"),
            Err(IdError::TooShort { .. })
        ));
        assert!(BlockId::parse("0123456789abcdefghijklmnopqrstuv_x").is_err());
    }

    #[test]
    fn a_channel_id_is_limited_to_64_safe_characters() {
        assert!(ChannelId::parse(&"a".repeat(64)).is_ok());
        assert!(matches!(
            ChannelId::parse(&"a".repeat(65)),
            Err(IdError::TooLong { .. })
        ));
        assert!(ChannelId::parse("a b").is_err());
        assert_eq!(ChannelId::random().as_str().len(), 36);
    }

    #[test]
    fn calendar_and_event_ids_refuse_empty_and_whitespace() {
        assert!(CalendarId::parse("").is_err());
        assert!(CalendarId::parse("a b@x.com").is_err());
        assert!(CalendarId::parse("team@group.calendar.google.com").is_ok());
        assert!(EventId::parse("abc\n").is_err());
        assert!(EventId::parse(
            "_60q30c1g60o30e1i60o4ac1g60rj8gpl88rj2c1h84s34h9g60s30c1g60o30c1g"
        )
        .is_ok());
    }

    #[test]
    fn account_ids_are_positive_integers() {
        assert_eq!(AccountId::parse("42").unwrap().get(), 42);
        assert!(AccountId::parse("0").is_err());
        assert!(AccountId::parse("x").is_err());
    }
}
