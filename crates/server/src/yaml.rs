//! The configuration as YAML for `/admin/config.yaml`, with secrets masked as DBLab masks
//! them: every non-empty string whose key contains `secret`, `key`, `token` or `password`.
//!
//! A small emitter over `serde_json::Value` rather than a YAML library: strings are written
//! as JSON strings, which are valid YAML double-quoted scalars, so nothing needs escaping rules
//! of its own.

use serde_json::Value;

/// What DBLab writes in place of a secret.
pub(crate) const MASK: &str = "****";

/// Whether a key names a secret.
fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["secret", "key", "token", "password"].iter().any(|word| key.contains(word))
}

/// Replaces every secret string in `value` with [`MASK`].
pub(crate) fn mask(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                if is_secret_key(key) && value.as_str().is_some_and(|text| !text.is_empty()) {
                    *value = Value::String(MASK.to_owned());
                } else {
                    mask(value);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask),
        _ => {}
    }
}

/// `value` (a mapping) as a YAML document.
pub(crate) fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => mapping(&mut out, map, 0),
        other => {
            out.push_str(&inline(other));
            out.push('\n');
        }
    }
    out
}

fn key(text: &str) -> String {
    let plain = !text.is_empty()
        && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !text.starts_with('-');
    if plain { text.to_owned() } else { Value::String(text.to_owned()).to_string() }
}

/// A scalar, or an empty collection, on one line.
fn inline(value: &Value) -> String {
    match value {
        Value::Object(map) if map.is_empty() => "{}".to_owned(),
        Value::Array(items) if items.is_empty() => "[]".to_owned(),
        // Strings as JSON: valid YAML double-quoted scalars.
        other => other.to_string(),
    }
}

fn is_block(value: &Value) -> bool {
    match value {
        Value::Object(map) => !map.is_empty(),
        Value::Array(items) => !items.is_empty(),
        _ => false,
    }
}

fn mapping(out: &mut String, map: &serde_json::Map<String, Value>, indent: usize) {
    for (name, value) in map {
        out.push_str(&" ".repeat(indent));
        out.push_str(&key(name));
        out.push(':');
        block_or_inline(out, value, indent + 2);
    }
}

fn block_or_inline(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Object(map) if is_block(value) => {
            out.push('\n');
            mapping(out, map, indent);
        }
        Value::Array(items) if is_block(value) => {
            out.push('\n');
            for item in items {
                out.push_str(&" ".repeat(indent));
                out.push('-');
                block_or_inline(out, item, indent + 2);
            }
        }
        other => {
            out.push(' ');
            out.push_str(&inline(other));
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn secrets_are_masked_and_the_document_is_block_yaml() {
        let mut value = json!({
            "server": { "port": 2345, "verification_token_file": "/etc/scion/token" },
            "webhooks": { "hooks": [ { "url": "http://x", "secret": "s3", "trigger": [] } ] },
            "retrieval": { "source": { "password_env": "", "host": "db: \"a\"" } },
            "keep_user_passwords": false,
        });
        mask(&mut value);
        assert_eq!(
            to_yaml(&value),
            "keep_user_passwords: false\n\
             retrieval:\n  source:\n    host: \"db: \\\"a\\\"\"\n    password_env: \"\"\n\
             server:\n  port: 2345\n  verification_token_file: \"****\"\n\
             webhooks:\n  hooks:\n    -\n      secret: \"****\"\n      trigger: []\n      url: \"http://x\"\n"
        );
    }
}
