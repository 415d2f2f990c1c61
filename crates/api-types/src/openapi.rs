//! OpenAPI schemas (feature `openapi`) for the types whose serde is written by hand: [`LocalTime`],
//! the validated IDs and the open string enums of `wire_enum!`. The plain structs derive
//! `utoipa::ToSchema` where they are declared.

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::{PartialSchema, ToSchema};

use crate::LocalTime;

/// A string schema with a description and examples.
fn string_schema(description: String, examples: &[&str]) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .description(Some(description))
        .examples(examples.iter().copied())
}

/// One paragraph from the lines of a doc comment (`///` lines arrive with a leading space).
fn paragraph(lines: &[&str]) -> String {
    lines.iter().map(|line| line.trim()).collect::<Vec<_>>().join(" ")
}

/// The schema of a `wire_enum!` type: a string whose known values are listed, but which is not an `enum`,
/// because DBLab adds values between releases and readers keep unknown ones verbatim.
pub(crate) fn open_string_enum(doc: &[&str], values: &[(&str, &[&str])]) -> RefOr<Schema> {
    let mut description = paragraph(doc);
    description.push_str("\n\nKnown values (others may appear and must be accepted):");
    for (wire, doc) in values {
        description.push_str(&format!("\n- `{wire}`: {}", paragraph(doc)));
    }
    let examples: Vec<&str> = values.iter().map(|(wire, _)| *wire).collect();
    string_schema(description, &examples).into()
}

/// The schema of a validated identifier: a string with DBLab's pattern and Scion's length limit.
pub(crate) fn identifier(
    noun: &str,
    pattern: &str,
    max_length: usize,
    example: &str,
) -> RefOr<Schema> {
    let description =
        format!("A {noun}: DBLab's pattern, and at most {max_length} bytes (Scion's limit).");
    string_schema(description, &[example])
        .pattern(Some(pattern))
        .min_length(Some(1))
        .max_length(Some(max_length))
        .into()
}

impl PartialSchema for LocalTime {
    fn schema() -> RefOr<Schema> {
        string_schema(
            "A time as RFC 3339 with whole seconds in the server's local time zone, or `\"\"` for Go's zero time \
             (no time). On input DBLab's legacy `YYYY-MM-DD HH:MM:SS UTC` is accepted too."
                .to_owned(),
            &["2024-05-01T12:00:00+02:00", ""],
        )
        .into()
    }
}

impl ToSchema for LocalTime {}
