//! The `--protected` value, parsed exactly as DBLab's CLI parses it (`cmd/cli/commands/protection.go`):
//! `""`/`true` (server default lease), `false`, or a lease as minutes or with an `m`/`h`/`d` suffix.

use std::fmt;

/// The longest lease the flag accepts: 365 days, in minutes (DBLab's limit).
const MAX_MINUTES: u64 = 525_600;

/// What `--protected VALUE` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protection {
    /// Protected, for `minutes` (None: the server's default lease; 0: as long as the server allows).
    On { minutes: Option<u64> },
    /// Not protected.
    Off,
}

impl Protection {
    /// Parses a flag value; the error is DBLab's message.
    pub(crate) fn parse_arg(value: &str) -> Result<Protection, String> {
        let lower = value.trim().to_ascii_lowercase();
        match lower.as_str() {
            "" | "true" => return Ok(Protection::On { minutes: None }),
            "false" => return Ok(Protection::Off),
            _ => {}
        }
        let invalid = || {
            format!(
                "invalid --protected value {value:?} (use 'true', 'false', minutes, or duration like 30m/2h/7d)"
            )
        };
        let (number, factor) = match lower.as_bytes().last() {
            Some(b'm') => (&lower[..lower.len() - 1], 1),
            Some(b'h') => (&lower[..lower.len() - 1], 60),
            Some(b'd') => (&lower[..lower.len() - 1], 1440),
            _ => (lower.as_str(), 1),
        };
        // Digits only: DBLab parses the number as a uint32, which refuses signs.
        if number.is_empty() || !number.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(invalid());
        }
        let count: u32 = number.parse().map_err(|_| invalid())?;
        let minutes = u64::from(count) * factor;
        if minutes > MAX_MINUTES {
            return Err(format!(
                "invalid --protected value {value:?}: at most {MAX_MINUTES} minutes (365 days)"
            ));
        }
        Ok(Protection::On { minutes: Some(minutes) })
    }

    /// The `protected` and `protectionDurationMinutes` request fields.
    pub(crate) fn fields(this: Option<Protection>) -> (bool, Option<u64>) {
        match this {
            Some(Protection::On { minutes }) => (true, minutes),
            Some(Protection::Off) | None => (false, None),
        }
    }
}

impl Protection {
    /// The body of `PATCH /snapshot/{id}` and `PATCH /branch/{name}`: `true` without a lease
    /// means forever there.
    pub(crate) fn update_request(self) -> api_types::ProtectionUpdateRequest {
        let (protected, protection_duration_minutes) = Protection::fields(Some(self));
        api_types::ProtectionUpdateRequest {
            protected: Some(protected),
            protection_duration_minutes,
            delete_at: None,
        }
    }
}

impl fmt::Display for Protection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Protection::On { minutes: None } => f.write_str("true"),
            Protection::On { minutes: Some(minutes) } => write!(f, "{minutes}"),
            Protection::Off => f.write_str("false"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(minutes: u64) -> Result<Protection, String> {
        Ok(Protection::On { minutes: Some(minutes) })
    }

    #[test]
    fn the_forms_of_the_seed_post_and_dblab() {
        assert_eq!(Protection::parse_arg(""), Ok(Protection::On { minutes: None }));
        assert_eq!(Protection::parse_arg("true"), Ok(Protection::On { minutes: None }));
        assert_eq!(Protection::parse_arg("TRUE"), Ok(Protection::On { minutes: None }));
        assert_eq!(Protection::parse_arg("False"), Ok(Protection::Off));
        assert_eq!(Protection::parse_arg("120"), on(120));
        assert_eq!(Protection::parse_arg("0"), on(0));
        assert_eq!(Protection::parse_arg("30m"), on(30));
        assert_eq!(Protection::parse_arg("2h"), on(120));
        assert_eq!(Protection::parse_arg("2H"), on(120));
        assert_eq!(Protection::parse_arg("7d"), on(10_080));
        assert_eq!(Protection::parse_arg("365d"), on(525_600));
        assert_eq!(Protection::parse_arg("525600"), on(525_600));
    }

    #[test]
    fn everything_else_is_refused() {
        for value in ["yes", "-5", "+5", "1.5h", "h", "2w", "366d", "525601", "99999999999", "1 h"]
        {
            let error = Protection::parse_arg(value).unwrap_err();
            assert!(error.starts_with("invalid --protected value"), "{value}: {error}");
        }
    }

    #[test]
    fn request_fields() {
        assert_eq!(Protection::fields(None), (false, None));
        assert_eq!(Protection::fields(Some(Protection::Off)), (false, None));
        assert_eq!(Protection::fields(Some(Protection::On { minutes: None })), (true, None));
        assert_eq!(Protection::fields(Some(Protection::On { minutes: Some(0) })), (true, Some(0)));
        let off = Protection::Off.update_request();
        assert_eq!((off.protected, off.protection_duration_minutes), (Some(false), None));
        let on = Protection::On { minutes: Some(60) }.update_request();
        assert_eq!((on.protected, on.protection_duration_minutes), (Some(true), Some(60)));
    }
}
