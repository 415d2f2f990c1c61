//! Integration tests for the wire contract: golden JSON per shape, round trips, lenient requests, ID rules.

mod branch;
mod clone;
mod errors;
mod ids;
mod instance;
mod snapshot;
mod time;
mod webhook;

use api_types::LocalTime;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A time from an RFC 3339 literal.
fn at(rfc3339: &str) -> LocalTime {
    LocalTime::parse(rfc3339).expect("test times are valid RFC 3339")
}

/// How `at(rfc3339)` appears on the wire: RFC 3339 in this machine's local zone (checked separately in `time`).
fn wire_time(rfc3339: &str) -> Value {
    Value::String(at(rfc3339).to_wire())
}

/// Serializes `value`, compares it with the golden JSON, and checks that the golden JSON reads back to `value`.
fn assert_golden<T>(value: &T, golden: &Value)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let actual = serde_json::to_value(value).expect("serialize");
    assert_eq!(
        &actual,
        golden,
        "serialized:\n{}\nexpected:\n{}",
        serde_json::to_string_pretty(&actual).expect("print"),
        serde_json::to_string_pretty(golden).expect("print")
    );
    let back: T = serde_json::from_value(golden.clone()).expect("golden JSON reads back");
    assert_eq!(&back, value);
}
