//! `LocalTime`: RFC 3339 with whole seconds, zero time as "", legacy input format, null pointers.

use api_types::{LocalTime, Snapshot};
use chrono::{FixedOffset, Offset, TimeZone, Utc};

#[test]
fn formats_rfc3339_seconds_in_a_given_offset() {
    let instant = LocalTime::from(Utc.with_ymd_and_hms(2024, 5, 1, 10, 0, 0).unwrap());
    let plus_two = FixedOffset::east_opt(2 * 3600).unwrap();
    let minus_five_thirty = FixedOffset::west_opt(5 * 3600 + 1800).unwrap();
    assert_eq!(instant.to_wire_in(FixedOffset::east_opt(0).unwrap()), "2024-05-01T10:00:00Z");
    assert_eq!(instant.to_wire_in(plus_two), "2024-05-01T12:00:00+02:00");
    assert_eq!(instant.to_wire_in(minus_five_thirty), "2024-05-01T04:30:00-05:30");
}

#[test]
fn drops_fractional_seconds_like_go_rfc3339() {
    let instant = LocalTime::parse("2024-05-01T10:00:00.987654Z").unwrap();
    assert_eq!(instant.to_wire_in(FixedOffset::east_opt(0).unwrap()), "2024-05-01T10:00:00Z");
}

#[test]
fn local_wire_form_is_the_same_instant_in_the_local_offset() {
    let instant = LocalTime::parse("2024-01-15T23:59:59Z").unwrap();
    let wire = instant.to_wire();
    let offset =
        chrono::Local.from_utc_datetime(&instant.get().unwrap().naive_utc()).offset().fix();
    assert_eq!(wire, instant.to_wire_in(offset));
    assert_eq!(LocalTime::parse(&wire).unwrap(), instant);
    assert!(wire.ends_with('Z') || wire.len() == "2024-01-15T23:59:59+00:00".len(), "{wire}");
}

#[test]
fn zero_time_is_an_empty_string_both_ways() {
    assert_eq!(serde_json::to_value(LocalTime::ZERO).unwrap(), serde_json::json!(""));
    assert_eq!(serde_json::from_str::<LocalTime>("\"\"").unwrap(), LocalTime::ZERO);
    assert_eq!(
        serde_json::from_str::<LocalTime>("\"0001-01-01T00:00:00Z\"").unwrap(),
        LocalTime::ZERO,
        "Go's zero time sent back by a Go client"
    );
    assert!(LocalTime::default().is_zero());
}

#[test]
fn accepts_other_offsets_and_the_legacy_format() {
    let expected = LocalTime::from(Utc.with_ymd_and_hms(2024, 5, 1, 10, 0, 0).unwrap());
    for input in ["2024-05-01T10:00:00Z", "2024-05-01T12:00:00+02:00", "2024-05-01 10:00:00 UTC"] {
        assert_eq!(LocalTime::parse(input).unwrap(), expected, "{input}");
    }
}

#[test]
fn rejects_garbage() {
    for input in ["yesterday", "2024-05-01", "2024-13-01T10:00:00Z", "2024-05-01 10:00:00 CET", " "]
    {
        let error = LocalTime::parse(input).unwrap_err();
        assert!(error.to_string().contains("invalid time"), "{input}: {error}");
        assert!(serde_json::from_value::<LocalTime>(serde_json::json!(input)).is_err());
    }
}

#[test]
fn a_null_pointer_time_is_null_and_reads_back_as_none() {
    let json = serde_json::json!({"id": "p@s", "createdAt": null, "dataStateAt": null});
    let snapshot: Snapshot = serde_json::from_value(json).unwrap();
    assert_eq!(snapshot.created_at, None);
    let out = serde_json::to_value(&snapshot).unwrap();
    assert_eq!(out["createdAt"], serde_json::Value::Null);
}
