//! Observation sessions (DBLab's `/observation/*`): the start and stop requests, the session with
//! its result, and the summary artifact, with field names as DBLab's observer writes them.
//!
//! Times here are Go `time.Time` values (RFC 3339 with nanoseconds, in UTC), not `LocalTime`:
//! DBLab's observer marshals them directly. An unset time is Go's zero time.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::serde_util::null_as_default;

/// The artifact types DBLab's observer knows; a download of any other type is a 400.
pub const ARTIFACT_TYPES: &[&str] = &[
    "pg_stat_statements",
    "pg_stat_user_tables",
    "pg_stat_database",
    "pg_stat_bgwriter",
    "pg_stat_kcache",
    "pg_stat_all_indexes",
    "pg_stat_all_tables",
    "pg_statio_all_indexes",
    "pg_statio_all_tables",
    "pg_statio_all_sequences",
    "pg_stat_user_functions",
    "pg_stat_slru",
    "objects_size",
    "log_errors",
];

/// `status` of a passed session.
pub const STATUS_PASSED: &str = "passed";
/// `status` of a failed session.
pub const STATUS_FAILED: &str = "failed";

/// The observer's settings, in seconds; zero means DBLab's default (10, 10, 3600).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ObservationConfig {
    /// Seconds between two lock checks.
    #[serde(default, deserialize_with = "null_as_default")]
    pub observation_interval: u64,
    /// Seconds an `AccessExclusiveLock` may be held before its interval is a warning.
    #[serde(default, deserialize_with = "null_as_default")]
    pub max_lock_duration: u64,
    /// Seconds the whole session may last and still pass.
    #[serde(default, deserialize_with = "null_as_default")]
    pub max_duration: u64,
}

/// `POST /observation/start` body.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StartObservationRequest {
    /// The clone to observe.
    #[serde(default, deserialize_with = "null_as_default")]
    pub clone_id: String,
    /// The observer's settings.
    #[serde(default, deserialize_with = "null_as_default")]
    pub config: ObservationConfig,
    /// Free-form labels kept with the session.
    #[serde(default, deserialize_with = "null_as_default")]
    pub tags: BTreeMap<String, String>,
    /// The database whose statistics are collected (default: the clone's, else `postgres`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub db_name: String,
}

/// `POST /observation/stop` body.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StopObservationRequest {
    /// The observed clone.
    #[serde(default, deserialize_with = "null_as_default")]
    pub clone_id: String,
    /// The caller's own verdict: true when the observed work failed.
    #[serde(default, deserialize_with = "null_as_default")]
    pub overall_error: bool,
}

/// An observation session (DBLab's `observer.Session`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ObservationSession {
    /// The session's ID, unique on this engine.
    pub session_id: u64,
    /// When the session started.
    #[serde(with = "go_time")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub started_at: Option<DateTime<Utc>>,
    /// When it stopped; Go's zero time while it runs.
    #[serde(with = "go_time")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub finished_at: Option<DateTime<Utc>>,
    /// The settings it runs with, defaults filled in.
    pub config: ObservationConfig,
    /// The start request's tags.
    #[serde(default, deserialize_with = "null_as_default")]
    pub tags: BTreeMap<String, String>,
    /// The artifact types collected at stop.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<String>,
    /// The outcome, once stopped (DBLab also shows the intervals so far while it runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<ObservationResult>,
}

/// A session's outcome (DBLab's `models.ObservationResult`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ObservationResult {
    /// `passed` or `failed`; empty while the session runs.
    #[serde(default, deserialize_with = "null_as_default")]
    pub status: String,
    /// Every observation interval, oldest first.
    #[serde(default, deserialize_with = "null_as_default")]
    pub intervals: Vec<ObservationInterval>,
    /// The totals and the checklist.
    #[serde(default, deserialize_with = "null_as_default")]
    pub summary: ObservationSummary,
}

/// One observation interval (DBLab's `models.Interval`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ObservationInterval {
    /// When the interval started.
    #[serde(with = "go_time")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub started_at: Option<DateTime<Utc>>,
    /// Its length in seconds.
    #[serde(default, deserialize_with = "null_as_default")]
    pub duration: f64,
    /// The dangerous locks seen at its end, one JSON row a line; empty when none.
    #[serde(default, deserialize_with = "null_as_default")]
    pub warning: String,
}

/// A session's totals (DBLab's `models.Summary`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ObservationSummary {
    /// Seconds from start to the last interval's end.
    #[serde(default, deserialize_with = "null_as_default")]
    pub total_duration: f64,
    /// How many intervals were observed.
    #[serde(default, deserialize_with = "null_as_default")]
    pub total_intervals: u64,
    /// How many of them saw a dangerous lock.
    #[serde(default, deserialize_with = "null_as_default")]
    pub warning_intervals: u64,
    /// The checks the verdict is made of.
    #[serde(default, deserialize_with = "null_as_default")]
    pub checklist: Checklist,
}

/// The checks of a session (DBLab's `models.Checklist`); it passed when all hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Checklist {
    /// The caller did not report the observed work as failed.
    #[serde(default, deserialize_with = "null_as_default")]
    pub overall_success: bool,
    /// The session lasted less than `max_duration`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub session_duration_acceptable: bool,
    /// No interval saw an `AccessExclusiveLock` held longer than `max_lock_duration`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub no_long_dangerous_locks: bool,
}

/// The summary artifact (`GET /observation/summary/{clone_id}/{session_id}`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SummaryArtifact {
    /// The session.
    pub session_id: u64,
    /// The observed clone.
    pub clone_id: String,
    /// How long it lasted.
    pub duration: SummaryDuration,
    /// The database's size and its objects.
    pub db_size: SummaryDbSize,
    /// Intervals observed and those with dangerous locks.
    pub locks: SummaryLocks,
    /// Errors in the clone's log during the session.
    pub log_errors: SummaryLogErrors,
    /// The artifact types that can be downloaded.
    #[serde(default, deserialize_with = "null_as_default")]
    pub artifact_types: Vec<String>,
}

/// The summary's `duration`: Go durations as text (`1m30s`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SummaryDuration {
    /// The session's length.
    pub total: String,
    /// When it started.
    #[serde(with = "go_time")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub started_at: Option<DateTime<Utc>>,
    /// When it stopped.
    #[serde(with = "go_time")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub finished_at: Option<DateTime<Utc>>,
    /// The longest statement (from `pg_stat_statements`; `0s` without it).
    pub query_duration_longest: String,
}

/// The summary's `db_size`: sizes as IEC text (`8.1 MiB`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SummaryDbSize {
    /// The database's size at stop.
    pub total: String,
    /// Its growth during the session.
    pub diff: String,
    /// Tables: how many, rows and bytes.
    pub objects_stat: ObjectsStat,
}

/// Totals over the database's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ObjectsStat {
    /// Tables.
    pub count: i64,
    /// Their estimated rows.
    pub row_estimate_sum: i64,
    /// Their bytes with indexes and TOAST.
    pub total_size_bytes_sum: i64,
    /// Their heap bytes.
    pub table_size_bytes_sum: i64,
    /// Their index bytes.
    pub indexes_size_bytes_sum: i64,
    /// Their TOAST bytes.
    pub toast_size_bytes_sum: i64,
}

/// The summary's `locks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SummaryLocks {
    /// Intervals observed.
    pub total_interval: u64,
    /// Intervals with a dangerous lock.
    pub warning_interval: u64,
}

/// The summary's `log_errors`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SummaryLogErrors {
    /// `ERROR` and `FATAL` lines in the clone's log during the session.
    pub count: u64,
    /// Their distinct messages, comma-separated.
    pub message: String,
}

/// Go's `time.Time` on the wire: RFC 3339 with nanoseconds, `0001-01-01T00:00:00Z` for none.
mod go_time {
    use super::*;

    const ZERO: &str = "0001-01-01T00:00:00Z";

    pub(crate) fn serialize<S: Serializer>(
        time: &Option<DateTime<Utc>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match time {
            Some(time) => {
                serializer.serialize_str(&time.to_rfc3339_opts(SecondsFormat::AutoSi, true))
            }
            None => serializer.serialize_str(ZERO),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<DateTime<Utc>>, D::Error> {
        let text = Option::<String>::deserialize(deserializer)?.unwrap_or_default();
        if text.is_empty() || text == ZERO {
            return Ok(None);
        }
        DateTime::parse_from_rfc3339(&text)
            .map(|time| Some(time.with_timezone(&Utc)))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_session_has_go_s_zero_finish_and_no_result() {
        let started = DateTime::parse_from_rfc3339("2026-12-03T04:00:00.5Z").unwrap().to_utc();
        let session = ObservationSession {
            session_id: 7,
            started_at: Some(started),
            finished_at: None,
            config: ObservationConfig {
                observation_interval: 10,
                max_lock_duration: 10,
                max_duration: 3600,
            },
            tags: BTreeMap::new(),
            artifacts: Vec::new(),
            result: None,
        };
        let json = serde_json::to_value(&session).unwrap();
        assert_eq!(json["started_at"], "2026-12-03T04:00:00.500Z");
        assert_eq!(json["finished_at"], "0001-01-01T00:00:00Z");
        assert!(json.get("result").is_none() && json.get("artifacts").is_none());
        let back: ObservationSession = serde_json::from_value(json).unwrap();
        assert_eq!(back, session);
    }

    #[test]
    fn requests_take_null_and_missing_fields_as_zero() {
        let start: StartObservationRequest =
            serde_json::from_str(r#"{"clone_id":"c1","config":null,"tags":null}"#).unwrap();
        assert_eq!(start.clone_id, "c1");
        assert_eq!(start.config, ObservationConfig::default());
        let stop: StopObservationRequest = serde_json::from_str(r#"{"clone_id":"c1"}"#).unwrap();
        assert!(!stop.overall_error);
    }
}
