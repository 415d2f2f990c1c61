//! The observation's decisions as pure functions: the settings with DBLab's defaults filled in,
//! a session's verdict (DBLab's checklist), and the summary's Go-style duration and size text.

use api_types::{Checklist, ObservationConfig, STATUS_FAILED, STATUS_PASSED};

/// DBLab's defaults, in seconds, for settings given as zero.
const DEFAULT_INTERVAL: u64 = 10;
const DEFAULT_MAX_LOCK_DURATION: u64 = 10;
const DEFAULT_MAX_DURATION: u64 = 3600;

/// The settings a session runs with: zero means DBLab's default.
pub(crate) fn with_defaults(config: ObservationConfig) -> ObservationConfig {
    let or = |value: u64, default: u64| if value == 0 { default } else { value };
    ObservationConfig {
        observation_interval: or(config.observation_interval, DEFAULT_INTERVAL),
        max_lock_duration: or(config.max_lock_duration, DEFAULT_MAX_LOCK_DURATION),
        max_duration: or(config.max_duration, DEFAULT_MAX_DURATION),
    }
}

/// A stopped session's verdict: its status and the checks it is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// `passed` or `failed`.
    pub(crate) status: &'static str,
    /// The checks.
    pub(crate) checklist: Checklist,
}

/// DBLab's verdict: the session passed when it lasted less than `max_duration` (whole seconds,
/// as DBLab truncates), no interval saw a dangerous lock, and the caller did not report its work
/// as failed.
pub(crate) fn verdict(
    config: &ObservationConfig,
    total_duration_seconds: f64,
    warning_intervals: u64,
    overall_error: bool,
) -> Verdict {
    let whole_seconds = total_duration_seconds.max(0.0).trunc() as u64;
    let checklist = Checklist {
        overall_success: !overall_error,
        session_duration_acceptable: whole_seconds < config.max_duration,
        no_long_dangerous_locks: warning_intervals == 0,
    };
    let passed = checklist.overall_success
        && checklist.session_duration_acceptable
        && checklist.no_long_dangerous_locks;
    Verdict { status: if passed { STATUS_PASSED } else { STATUS_FAILED }, checklist }
}

/// A duration as Go's `time.Duration.String` writes one of whole milliseconds: `0s`, `250ms`,
/// `1.5s`, `2m3s`, `1h0m0s`.
pub(crate) fn go_duration(milliseconds: u64) -> String {
    if milliseconds == 0 {
        return "0s".to_owned();
    }
    if milliseconds < 1000 {
        return format!("{milliseconds}ms");
    }
    let (hours, rest) = (milliseconds / 3_600_000, milliseconds % 3_600_000);
    let (minutes, rest) = (rest / 60_000, rest % 60_000);
    let (seconds, millis) = (rest / 1000, rest % 1000);
    let seconds = if millis == 0 {
        format!("{seconds}s")
    } else {
        let fraction = format!("{millis:03}");
        format!("{seconds}.{}s", fraction.trim_end_matches('0'))
    };
    match (hours, minutes) {
        (0, 0) => seconds,
        (0, minutes) => format!("{minutes}m{seconds}"),
        (hours, minutes) => format!("{hours}h{minutes}m{seconds}"),
    }
}

/// A size as go-humanize's `IBytes` writes it: `9 B`, `512 B`, `8.0 KiB`, `12 MiB`; a negative
/// size (a database that shrank) gets a minus sign.
pub(crate) fn iec_bytes(bytes: i64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let sign = if bytes < 0 { "-" } else { "" };
    let size = bytes.unsigned_abs();
    if size < 10 {
        return format!("{sign}{size} B");
    }
    let exponent = ((size as f64).ln() / 1024f64.ln()).floor() as usize;
    let exponent = exponent.min(UNITS.len() - 1);
    let value = (size as f64 / 1024f64.powi(exponent as i32) * 10.0 + 0.5).floor() / 10.0;
    if value < 10.0 {
        format!("{sign}{value:.1} {}", UNITS[exponent])
    } else {
        format!("{sign}{value:.0} {}", UNITS[exponent])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_settings_take_dblab_s_defaults_and_others_are_kept() {
        let filled = with_defaults(ObservationConfig::default());
        assert_eq!(
            filled,
            ObservationConfig {
                observation_interval: 10,
                max_lock_duration: 10,
                max_duration: 3600
            }
        );
        let given =
            ObservationConfig { observation_interval: 1, max_lock_duration: 2, max_duration: 3 };
        assert_eq!(with_defaults(given), given);
    }

    #[test]
    fn the_verdict_passes_only_when_every_check_holds() {
        let config =
            ObservationConfig { observation_interval: 1, max_lock_duration: 2, max_duration: 60 };
        // (duration, warning intervals, overall error) → (status, success, duration ok, locks ok)
        let table = [
            (5.0, 0, false, ("passed", true, true, true)),
            (59.9, 0, false, ("passed", true, true, true)),
            (60.0, 0, false, ("failed", true, false, true)),
            (5.0, 1, false, ("failed", true, true, false)),
            (5.0, 0, true, ("failed", false, true, true)),
            (61.0, 3, true, ("failed", false, false, false)),
        ];
        for (duration, warnings, overall_error, (status, success, duration_ok, locks_ok)) in table {
            let verdict = verdict(&config, duration, warnings, overall_error);
            assert_eq!(
                (
                    verdict.status,
                    verdict.checklist.overall_success,
                    verdict.checklist.session_duration_acceptable,
                    verdict.checklist.no_long_dangerous_locks
                ),
                (status, success, duration_ok, locks_ok),
                "duration {duration}, warnings {warnings}, overall error {overall_error}"
            );
        }
    }

    #[test]
    fn durations_read_like_go_s() {
        for (millis, text) in [
            (0, "0s"),
            (250, "250ms"),
            (1000, "1s"),
            (1500, "1.5s"),
            (1234, "1.234s"),
            (123_000, "2m3s"),
            (3_600_000, "1h0m0s"),
            (3_723_400, "1h2m3.4s"),
        ] {
            assert_eq!(go_duration(millis), text, "{millis} ms");
        }
    }

    #[test]
    fn sizes_read_like_go_humanize_s() {
        for (bytes, text) in [
            (0, "0 B"),
            (9, "9 B"),
            (512, "512 B"),
            (8192, "8.0 KiB"),
            (12 * 1024 * 1024, "12 MiB"),
            (7_500_000, "7.2 MiB"),
            (-8192, "-8.0 KiB"),
        ] {
            assert_eq!(iec_bytes(bytes), text, "{bytes} bytes");
        }
    }
}
