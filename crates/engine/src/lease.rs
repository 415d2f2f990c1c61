//! Protection leases: how long a protection request lasts, and what the lease checker does
//! when a lease nears its end or passes it.
//!
//! The rules are DBLab 4.1's: `protected: true` without a duration takes the server's default
//! lease; a duration of 0 means forever; every lease is silently capped by the maximum when one
//! is configured, forever included.

use chrono::{DateTime, Duration, Utc};

use crate::config::{CloningConfig, minutes};

/// The protection a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProtectionRequest {
    /// Protection on or off.
    pub protected: bool,
    /// The lease in minutes; `None` means the server default, `Some(0)` forever.
    pub duration_minutes: Option<u64>,
}

/// The protection a clone gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Protection {
    /// Whether the clone is protected.
    pub protected: bool,
    /// When protection ends; `None` while protected means it never does.
    pub till: Option<DateTime<Utc>>,
}

impl Protection {
    /// No protection.
    pub const NONE: Protection = Protection { protected: false, till: None };

    /// Whether the clone is protected at `now`.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.protected && self.till.is_none_or(|till| till > now)
    }
}

/// Grants the protection `request` asks for at `now`, under the configured default and cap.
pub(crate) fn grant(
    request: ProtectionRequest,
    config: &CloningConfig,
    now: DateTime<Utc>,
) -> Protection {
    grant_within(
        request,
        config.protection_lease_duration_minutes,
        config.protection_max_duration_minutes,
        now,
    )
}

/// Grants protection with a default lease of `default_minutes` and a cap of `cap_minutes`
/// (0 meaning forever and no cap), as for snapshots and branches.
pub(crate) fn grant_within(
    request: ProtectionRequest,
    default_minutes: f64,
    cap: f64,
    now: DateTime<Utc>,
) -> Protection {
    if !request.protected {
        return Protection::NONE;
    }
    let asked = request.duration_minutes.map_or(default_minutes, |asked| asked as f64);
    let lease = match (asked > 0.0, cap > 0.0) {
        (false, false) => return Protection { protected: true, till: None },
        (false, true) => cap,
        (true, false) => asked,
        (true, true) => asked.min(cap),
    };
    // A lease longer than chrono can add is as good as forever.
    let till = Duration::from_std(minutes(lease))
        .ok()
        .and_then(|duration| now.checked_add_signed(duration));
    Protection { protected: true, till }
}

/// What the lease checker must do about one clone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LeaseAction {
    /// Nothing.
    None,
    /// Send `clone_protection_expiring`: the lease ends within the warning window.
    Warn {
        /// When the lease ends.
        till: DateTime<Utc>,
        /// Whole hours left, at least 1, as DBLab reports them.
        expires_in_hours: u32,
    },
    /// Lift protection and send `clone_protection_expired`.
    Expire,
}

/// Decides what the lease checker does for a clone with `protection` at `now`.
pub(crate) fn check(
    protection: Protection,
    warning_sent: bool,
    config: &CloningConfig,
    now: DateTime<Utc>,
) -> LeaseAction {
    let Some(till) = protection.till.filter(|_| protection.protected) else {
        return LeaseAction::None;
    };
    if till <= now {
        return LeaseAction::Expire;
    }
    let window = Duration::from_std(minutes(config.protection_expiry_warning_minutes))
        .unwrap_or(Duration::MAX);
    if warning_sent || till - now > window {
        return LeaseAction::None;
    }
    let hours = (till - now).num_minutes().div_euclid(60);
    LeaseAction::Warn { till, expires_in_hours: u32::try_from(hours).unwrap_or(u32::MAX).max(1) }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap()
    }

    fn config(default: u64, cap: u64) -> CloningConfig {
        CloningConfig {
            protection_lease_duration_minutes: default as f64,
            protection_max_duration_minutes: cap as f64,
            protection_expiry_warning_minutes: 60.0,
            ..CloningConfig::default()
        }
    }

    fn till(request: (bool, Option<u64>), default: u64, cap: u64) -> Option<Option<i64>> {
        let protection = grant(
            ProtectionRequest { protected: request.0, duration_minutes: request.1 },
            &config(default, cap),
            now(),
        );
        protection.protected.then(|| protection.till.map(|till| (till - now()).num_minutes()))
    }

    #[test]
    fn the_seed_post_forms() {
        // --protected true: the server's default lease.
        assert_eq!(till((true, None), 1440, 10080), Some(Some(1440)));
        // --protected 120: exactly that.
        assert_eq!(till((true, Some(120)), 1440, 10080), Some(Some(120)));
        // --protected 0: forever, capped when a cap is set.
        assert_eq!(till((true, Some(0)), 1440, 10080), Some(Some(10080)));
        assert_eq!(till((true, Some(0)), 1440, 0), Some(None));
        // --protected false: off.
        assert_eq!(till((false, Some(120)), 1440, 10080), None);
        // 30 days asked, 7 allowed: silently capped.
        assert_eq!(till((true, Some(43200)), 1440, 10080), Some(Some(10080)));
        // A default of 0 means forever, still capped.
        assert_eq!(till((true, None), 0, 0), Some(None));
        assert_eq!(till((true, None), 0, 60), Some(Some(60)));
    }

    #[test]
    fn fractional_caps_give_short_leases() {
        let mut config = config(1440, 0);
        config.protection_max_duration_minutes = 0.05;
        let protection = grant(
            ProtectionRequest { protected: true, duration_minutes: Some(60) },
            &config,
            now(),
        );
        assert_eq!(protection.till, Some(now() + Duration::seconds(3)));
    }

    #[test]
    fn absurd_leases_mean_forever() {
        assert_eq!(till((true, Some(u64::MAX)), 0, 0), Some(None));
    }

    #[test]
    fn checker_warns_once_then_expires() {
        let config = config(1440, 0);
        let soon = Protection { protected: true, till: Some(now() + Duration::minutes(30)) };
        assert_eq!(
            check(soon, false, &config, now()),
            LeaseAction::Warn { till: soon.till.unwrap(), expires_in_hours: 1 }
        );
        assert_eq!(check(soon, true, &config, now()), LeaseAction::None);
        let later = Protection { protected: true, till: Some(now() + Duration::minutes(61)) };
        assert_eq!(check(later, false, &config, now()), LeaseAction::None);
        let past = Protection { protected: true, till: Some(now()) };
        assert_eq!(check(past, true, &config, now()), LeaseAction::Expire);
        let forever = Protection { protected: true, till: None };
        assert_eq!(check(forever, false, &config, now()), LeaseAction::None);
        assert_eq!(check(Protection::NONE, false, &config, now()), LeaseAction::None);
    }

    #[test]
    fn hours_left_are_whole_and_at_least_one() {
        let mut config = config(1440, 0);
        config.protection_expiry_warning_minutes = 1440.0;
        let protection = Protection { protected: true, till: Some(now() + Duration::minutes(150)) };
        assert!(matches!(
            check(protection, false, &config, now()),
            LeaseAction::Warn { expires_in_hours: 2, .. }
        ));
    }

    #[test]
    fn protection_is_active_until_till() {
        let protection = Protection { protected: true, till: Some(now()) };
        assert!(protection.is_active(now() - Duration::seconds(1)));
        assert!(!protection.is_active(now()));
        assert!(Protection { protected: true, till: None }.is_active(now()));
        assert!(!Protection::NONE.is_active(now()));
    }
}
