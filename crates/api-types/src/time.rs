//! DBLab's `LocalTime`: RFC 3339 in the server's local time zone, with Go's zero time written as `""`.

use std::fmt;

use chrono::{DateTime, FixedOffset, Local, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// DBLab's legacy time format, still accepted on input (`2006-01-02 15:04:05 UTC` in Go notation).
const LEGACY_FORMAT: &str = "%Y-%m-%d %H:%M:%S UTC";

/// Go's zero `time.Time` as RFC 3339; a Go client may send it back, and it means "no time".
const GO_ZERO_RFC3339: &str = "0001-01-01T00:00:00Z";

/// A point in time as DBLab puts it on the wire.
///
/// Serialized as RFC 3339 with whole seconds in the server's local zone (`2024-05-01T12:00:00+02:00`, or a `Z`
/// suffix when the zone is UTC), exactly like Go's `time.RFC3339`. The zero value (Go's zero time) is written as
/// `""`. A Go `*LocalTime` that may be `nil` is `Option<LocalTime>` here, and `None` becomes `null`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct LocalTime(Option<DateTime<Utc>>);

/// A time string that is neither RFC 3339 nor DBLab's legacy `YYYY-MM-DD HH:MM:SS UTC`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeParseError {
    input: String,
}

impl fmt::Display for TimeParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid time {:?}: expected RFC 3339 or \"YYYY-MM-DD HH:MM:SS UTC\"", self.input)
    }
}

impl std::error::Error for TimeParseError {}

impl LocalTime {
    /// Go's zero time: serialized as `""`.
    pub const ZERO: Self = Self(None);

    /// The current time.
    pub fn now() -> Self {
        Self(Some(Utc::now()))
    }

    /// The instant, or `None` for the zero value.
    pub fn get(self) -> Option<DateTime<Utc>> {
        self.0
    }

    /// Whether this is Go's zero time.
    pub fn is_zero(self) -> bool {
        self.0.is_none()
    }

    /// The wire form in the server's local time zone (`""` for the zero value).
    pub fn to_wire(self) -> String {
        match self.0 {
            Some(instant) => {
                instant.with_timezone(&Local).to_rfc3339_opts(SecondsFormat::Secs, true)
            }
            None => String::new(),
        }
    }

    /// The wire form in a given offset; what [`to_wire`](Self::to_wire) does with the local zone's offset.
    pub fn to_wire_in(self, offset: FixedOffset) -> String {
        match self.0 {
            Some(instant) => offset
                .from_utc_datetime(&instant.naive_utc())
                .to_rfc3339_opts(SecondsFormat::Secs, true),
            None => String::new(),
        }
    }

    /// Reads the wire form: `""` (zero), RFC 3339 (any offset, optional fraction) or the legacy UTC format.
    pub fn parse(input: &str) -> Result<Self, TimeParseError> {
        if input.is_empty() || input == GO_ZERO_RFC3339 {
            return Ok(Self::ZERO);
        }
        if let Ok(parsed) = DateTime::parse_from_rfc3339(input) {
            return Ok(Self(Some(parsed.with_timezone(&Utc))));
        }
        NaiveDateTime::parse_from_str(input, LEGACY_FORMAT)
            .map(|naive| Self(Some(naive.and_utc())))
            .map_err(|_| TimeParseError { input: input.to_owned() })
    }
}

impl From<DateTime<Utc>> for LocalTime {
    fn from(instant: DateTime<Utc>) -> Self {
        Self(Some(instant))
    }
}

impl fmt::Display for LocalTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_wire())
    }
}

impl Serialize for LocalTime {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_wire())
    }
}

impl<'de> Deserialize<'de> for LocalTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}
