//! What a standby says about its WAL replay: positions, the last replayed commit, lag, and its
//! connection to the primary (`pg_stat_wal_receiver`), read over an admin session.
//!
//! Lag follows DBLab's definition (reference §6.5): 0 when every received byte is replayed,
//! else the time since the last replayed commit. One change: a standby that should stream
//! (it has a `primary_conninfo`) but has no WAL receiver is not known to be caught up, so its
//! lag is the time since the last replayed commit even when the received and replayed
//! positions match; otherwise a standby cut off from its primary would report no lag forever.

use std::time::{Duration, SystemTime};

use crate::admin::Admin;
use crate::controldata::Lsn;
use crate::error::{Error, Result};

/// A standby's replay, as one consistent reading.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayStatus {
    /// False once the server has left recovery (promoted): it replays nothing any more.
    pub in_recovery: bool,
    /// The last WAL position received from the primary and flushed; `None` when nothing was
    /// streamed since the server started (archive recovery only).
    pub receive_lsn: Option<Lsn>,
    /// The last WAL position replayed.
    pub replay_lsn: Option<Lsn>,
    /// The commit time of the last replayed transaction; `None` when none was replayed since
    /// the server started.
    pub last_replayed_at: Option<SystemTime>,
    /// Seconds behind the primary (see the module's notes), by the server's clock.
    pub lag_seconds: i64,
    /// When the postmaster started.
    pub started_at: SystemTime,
    /// Seconds since the postmaster started, by the server's clock.
    pub uptime_seconds: i64,
    /// Whether the standby is set up to stream from a primary (`primary_conninfo` is set).
    pub streams: bool,
    /// The WAL receiver, when one runs.
    pub receiver: Option<WalReceiver>,
    /// Whether replay is paused (`pg_wal_replay_pause()`).
    pub paused: bool,
}

/// The WAL receiver of a standby (`pg_stat_wal_receiver`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalReceiver {
    /// The receiver's PID in the server's PID namespace.
    pub pid: i32,
    /// `streaming`, `starting`, `catchup`, `waiting`, `restarting`, `stopping`; `None` when the
    /// session's role may not see it (neither a superuser nor `pg_read_all_stats`).
    pub status: Option<String>,
}

impl WalReceiver {
    /// True when it streams WAL from the primary.
    pub fn is_streaming(&self) -> bool {
        self.status.as_deref() == Some("streaming")
    }
}

const REPLAY_QUERY: &str = "\
WITH r AS (
  SELECT pg_catalog.pg_is_in_recovery() AS in_recovery,
         pg_catalog.pg_last_wal_receive_lsn() AS received,
         pg_catalog.pg_last_wal_replay_lsn() AS replayed,
         pg_catalog.pg_last_xact_replay_timestamp() AS replayed_at,
         coalesce(pg_catalog.current_setting('primary_conninfo', true), '') <> '' AS streams,
         (SELECT pid FROM pg_catalog.pg_stat_wal_receiver LIMIT 1) AS receiver_pid,
         (SELECT status FROM pg_catalog.pg_stat_wal_receiver LIMIT 1) AS receiver_status)
SELECT in_recovery, received::text, replayed::text,
       extract(epoch FROM replayed_at)::float8,
       CASE WHEN NOT in_recovery THEN 0::int8
            WHEN received = replayed AND (receiver_pid IS NOT NULL OR NOT streams) THEN 0::int8
            ELSE coalesce(round(extract(epoch FROM now() - replayed_at))::int8, 0) END,
       extract(epoch FROM pg_catalog.pg_postmaster_start_time())::float8,
       extract(epoch FROM now() - pg_catalog.pg_postmaster_start_time())::int8,
       streams, receiver_pid, receiver_status,
       CASE WHEN in_recovery THEN pg_catalog.pg_is_wal_replay_paused() ELSE false END
FROM r";

fn epoch(seconds: f64) -> SystemTime {
    if seconds.is_finite() && seconds >= 0.0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs_f64(seconds)
    } else {
        SystemTime::UNIX_EPOCH
    }
}

impl Admin {
    /// Reads the standby's replay status in one statement. Works for any role the session
    /// logs in as, except that the receiver's status needs a superuser or `pg_read_all_stats`.
    pub async fn replay_status(&self) -> Result<ReplayStatus> {
        let row = self
            .client()
            .query_one(REPLAY_QUERY, &[])
            .await
            .map_err(Error::sql("read the replay status"))?;
        let lsn = |index: usize| row.get::<_, Option<String>>(index)?.parse::<Lsn>().ok();
        let receiver_pid: Option<i32> = row.get(8);
        Ok(ReplayStatus {
            in_recovery: row.get(0),
            receive_lsn: lsn(1),
            replay_lsn: lsn(2),
            last_replayed_at: row.get::<_, Option<f64>>(3).map(epoch),
            lag_seconds: row.get(4),
            started_at: epoch(row.get(5)),
            uptime_seconds: row.get(6),
            streams: row.get(7),
            receiver: receiver_pid.map(|pid| WalReceiver { pid, status: row.get(9) }),
            paused: row.get(10),
        })
    }
}
