//! The PII detector: from a column's name, its table's name and a sample of its values, the
//! kind of personal data it looks like it holds. A pure function, so its judgement is
//! table-tested; `run` feeds it samples read from the prepared data.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::TableName;

/// At least this share of the non-empty sampled values must look like a kind for the column
/// to be reported on its values alone.
const VALUE_SHARE: f64 = 0.5;
/// Table names whose `name` column is a person's name.
const PERSON_TABLES: &[&str] = &[
    "user",
    "customer",
    "client",
    "person",
    "people",
    "employee",
    "contact",
    "patient",
    "member",
    "account",
    "author",
    "student",
    "staff",
    "subscriber",
    "profile",
];

/// One column and what was sampled from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnSample {
    /// Its table.
    pub table: TableName,
    /// Its name.
    pub column: String,
    /// `format_type()` of it.
    pub sql_type: String,
    /// Non-null values read, as text.
    pub values: Vec<String>,
}

/// A kind of personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiKind {
    /// E-mail addresses.
    Email,
    /// Phone numbers.
    Phone,
    /// People's names.
    Name,
    /// Payment card numbers.
    CardNumber,
    /// IP addresses.
    IpAddress,
    /// Postal addresses.
    Address,
    /// Dates of birth.
    BirthDate,
    /// Free text that holds e-mail addresses.
    TextWithEmail,
}

impl PiiKind {
    /// The kind's name.
    pub fn as_str(self) -> &'static str {
        match self {
            PiiKind::Email => "email",
            PiiKind::Phone => "phone",
            PiiKind::Name => "name",
            PiiKind::CardNumber => "card_number",
            PiiKind::IpAddress => "ip_address",
            PiiKind::Address => "address",
            PiiKind::BirthDate => "birth_date",
            PiiKind::TextWithEmail => "text_with_email",
        }
    }
}

/// A column that looks personal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// The database.
    pub database: String,
    /// The table's schema.
    pub schema: String,
    /// The table.
    pub table: String,
    /// The column.
    pub column: String,
    /// What it looks like.
    pub kind: PiiKind,
    /// Why: its name, or how many sampled values matched.
    pub reason: String,
}

impl std::fmt::Display for Finding {
    /// `crm: public.logins.client_ip looks like ip_address (its name (client_ip))`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}.{}.{} looks like {} ({})",
            self.database,
            self.schema,
            self.table,
            self.column,
            self.kind.as_str(),
            self.reason
        )
    }
}

/// A test of one sampled value.
type ValueCheck = fn(&str) -> bool;

/// The kind `sample` looks like, and why; `None` when it looks impersonal.
pub fn detect(sample: &ColumnSample) -> Option<(PiiKind, String)> {
    if let Some(kind) = kind_by_name(&sample.table.table, &sample.column, &sample.sql_type) {
        return Some((kind, format!("its name ({})", sample.column)));
    }
    let values: Vec<&str> =
        sample.values.iter().map(|value| value.trim()).filter(|value| !value.is_empty()).collect();
    if values.is_empty() {
        return None;
    }
    let checks: [(PiiKind, ValueCheck); 4] = [
        (PiiKind::Email, is_email),
        (PiiKind::CardNumber, is_card_number),
        (PiiKind::IpAddress, |value| value.parse::<IpAddr>().is_ok() || is_network(value)),
        (PiiKind::Phone, is_phone),
    ];
    for (kind, check) in checks {
        let matched = values.iter().filter(|value| check(value)).count();
        #[allow(clippy::cast_precision_loss)] // sample sizes are small
        if matched as f64 >= values.len() as f64 * VALUE_SHARE {
            return Some((kind, format!("{matched} of {} sampled values", values.len())));
        }
    }
    let with_email = values
        .iter()
        .filter(|value| {
            value.split_whitespace().count() > 1
                && value
                    .split_whitespace()
                    .any(|word| is_email(word.trim_matches(|c: char| !c.is_alphanumeric())))
        })
        .count();
    (with_email > 0).then(|| {
        (
            PiiKind::TextWithEmail,
            format!("{with_email} of {} sampled values hold an e-mail address", values.len()),
        )
    })
}

/// The column's name split into lower-case words (`firstName`, `first_name` → first, name).
fn words(name: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut previous_lower = false;
    for character in name.chars() {
        if !character.is_alphanumeric() {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            previous_lower = false;
            continue;
        }
        if character.is_uppercase() && previous_lower && !current.is_empty() {
            words.push(std::mem::take(&mut current));
        }
        previous_lower = character.is_lowercase() || character.is_ascii_digit();
        current.extend(character.to_lowercase());
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

fn kind_by_name(table: &str, column: &str, sql_type: &str) -> Option<PiiKind> {
    let words = words(column);
    let has = |word: &str| words.iter().any(|found| found == word);
    let joined = words.concat();
    if has("email") || has("mail") || joined.contains("email") {
        return Some(PiiKind::Email);
    }
    if has("ip") || joined == "ipaddress" || joined == "remoteaddr" || sql_type == "inet" {
        return Some(PiiKind::IpAddress);
    }
    if has("phone")
        || has("mobile")
        || has("tel")
        || has("telephone")
        || has("msisdn")
        || has("fax")
        || joined.contains("phone")
    {
        return Some(PiiKind::Phone);
    }
    if joined.contains("cardnumber")
        || has("pan")
        || has("cc")
        || (has("card") && has("number"))
        || joined.contains("creditcard")
    {
        return Some(PiiKind::CardNumber);
    }
    if ["dob", "birthdate", "dateofbirth", "birthday", "born"].contains(&joined.as_str()) {
        return Some(PiiKind::BirthDate);
    }
    if has("surname")
        || has("firstname")
        || has("lastname")
        || has("fullname")
        || has("forename")
        || (has("name")
            && ["first", "last", "full", "given", "family", "middle", "maiden"]
                .iter()
                .any(|word| has(word)))
    {
        return Some(PiiKind::Name);
    }
    if joined == "name" {
        let table = table.to_lowercase();
        if PERSON_TABLES.iter().any(|person| table.starts_with(person)) {
            return Some(PiiKind::Name);
        }
    }
    if has("address") || has("street") || has("addr") || joined == "postcode" || joined == "zipcode"
    {
        return Some(PiiKind::Address);
    }
    None
}

fn is_email(value: &str) -> bool {
    let Some((local, domain)) = value.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && !local.contains(char::is_whitespace)
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && domain.chars().all(|c| c.is_alphanumeric() || c == '.' || c == '-')
}

fn is_network(value: &str) -> bool {
    value.split_once('/').is_some_and(|(address, bits)| {
        address.parse::<IpAddr>().is_ok() && bits.parse::<u8>().is_ok()
    })
}

fn digits_and_separators(value: &str, separators: &[char]) -> Option<Vec<u32>> {
    let mut digits = Vec::new();
    for character in value.chars() {
        if let Some(digit) = character.to_digit(10) {
            digits.push(digit);
        } else if !separators.contains(&character) {
            return None;
        }
    }
    Some(digits)
}

/// 13 to 19 digits (spaces and dashes between) that pass the Luhn check.
fn is_card_number(value: &str) -> bool {
    let Some(digits) = digits_and_separators(value, &[' ', '-']) else {
        return false;
    };
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(index, digit)| {
            if index % 2 == 1 {
                let doubled = digit * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                *digit
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// 7 to 15 digits written like a phone number: with a leading `+`, or separators, or at least
/// 10 digits.
fn is_phone(value: &str) -> bool {
    let Some(digits) = digits_and_separators(value, &['+', ' ', '-', '(', ')', '.']) else {
        return false;
    };
    let written_like_one =
        value.starts_with('+') || value.contains(['-', ' ', '(']) || digits.len() >= 10;
    (7..=15).contains(&digits.len()) && written_like_one && value.matches('+').count() <= 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(table: &str, column: &str, sql_type: &str, values: &[&str]) -> ColumnSample {
        ColumnSample {
            table: TableName { schema: "public".into(), table: table.into() },
            column: column.into(),
            sql_type: sql_type.into(),
            values: values.iter().map(|value| (*value).to_owned()).collect(),
        }
    }

    #[test]
    fn columns_that_look_personal() {
        type Case<'a> = (&'a str, &'a str, &'a str, &'a [&'a str], Option<PiiKind>);
        let cases: &[Case<'_>] = &[
            ("users", "email", "text", &[], Some(PiiKind::Email)),
            ("users", "contactEmail", "text", &[], Some(PiiKind::Email)),
            ("users", "first_name", "text", &[], Some(PiiKind::Name)),
            ("users", "lastName", "text", &[], Some(PiiKind::Name)),
            ("customers", "name", "text", &[], Some(PiiKind::Name)),
            ("products", "name", "text", &["Widget", "Gadget"], None),
            ("users", "mobile_phone", "text", &[], Some(PiiKind::Phone)),
            ("logins", "client_ip", "text", &[], Some(PiiKind::IpAddress)),
            ("logins", "origin", "inet", &[], Some(PiiKind::IpAddress)),
            ("users", "dob", "date", &[], Some(PiiKind::BirthDate)),
            ("users", "street_address", "text", &[], Some(PiiKind::Address)),
            ("payments", "card_number", "text", &[], Some(PiiKind::CardNumber)),
            // By values alone.
            ("t", "contact", "text", &["a@b.io", "c.d@example.org", "x"], Some(PiiKind::Email)),
            (
                "t",
                "pay",
                "text",
                &["4111 1111 1111 1111", "5500-0000-0000-0004"],
                Some(PiiKind::CardNumber),
            ),
            ("t", "pay", "text", &["4111 1111 1111 1112"], None),
            (
                "t",
                "origin",
                "text",
                &["10.0.0.1", "2001:db8::1", "192.168.0.0/16"],
                Some(PiiKind::IpAddress),
            ),
            ("t", "reach", "text", &["+44 20 7946 0958", "(555) 123-4567"], Some(PiiKind::Phone)),
            ("t", "code", "text", &["12345", "A-1"], None),
            (
                "t",
                "body",
                "text",
                &["please write to ann@example.com today", "nothing here"],
                Some(PiiKind::TextWithEmail),
            ),
            ("t", "body", "text", &["the meeting is at noon", "fine"], None),
            ("t", "status", "text", &["active", "closed"], None),
        ];
        for (table, column, sql_type, values, expected) in cases {
            let found = detect(&sample(table, column, sql_type, values)).map(|(kind, _)| kind);
            assert_eq!(found, *expected, "{table}.{column} {values:?}");
        }
    }

    #[test]
    fn the_reason_says_names_or_counts() {
        let by_name = detect(&sample("users", "email", "text", &[]));
        assert_eq!(by_name.map(|(_, reason)| reason), Some("its name (email)".to_owned()));
        let by_values = detect(&sample("t", "c", "text", &["a@b.io", "x", "y@z.org"]));
        assert_eq!(by_values.map(|(_, reason)| reason), Some("2 of 3 sampled values".to_owned()));
    }

    #[test]
    fn names_split_into_words() {
        assert_eq!(words("contactEmail"), vec!["contact", "email"]);
        assert_eq!(words("first_name"), vec!["first", "name"]);
        assert_eq!(words("IP"), vec!["ip"]);
    }
}
