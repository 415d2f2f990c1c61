//! The sync instance: the server on the golden dataset that keeps it current — in physical
//! mode a standby replaying WAL from the source, with continuous refresh (logical mode) a
//! primary whose subscriptions apply the source's changes — its supervision, and what
//! `/status` (`synchronization`) and `/metrics` (`dblab_sync_*`) say about it.
//!
//! The golden dataset's PGDATA is a standby already (the copy tool wrote `standby.signal` and
//! `primary_conninfo`), or a primary whose restore created its subscriptions (continuous
//! refresh, `continuous.rs`); the engine only runs it, through `servers` like every clone's server:
//! as the servers' OS user, sandboxed, on a socket of its own and no TCP port. Which dataset it
//! serves and its settings are recorded in the store (`meta`), so a new start of the engine
//! adopts the running server (found by its working directory) instead of starting another.
//!
//! One supervision pass every `health_interval` starts it when it is not running (a crash, a
//! reboot), stops it when it is disabled or its dataset is no longer the one recorded, and
//! reads its replay status into memory; `/status` and `/metrics` read that copy and never
//! wait for the server.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::RwLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use postgres::{Admin, Instance, ReplayStatus};
use serde::{Deserialize, Serialize};
use storage::DatasetName;
use tracing::{info, warn};

use crate::Engine;
use crate::error::{Error, Result};
use crate::refresh::CURRENT_DATA_KEY;
use crate::store::Store;
use crate::sync::{read, write};

/// The store key of the sync instance's record.
const SYNC_KEY: &str = "sync_instance";
/// DBLab's default health check interval of the sync container.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// The retrieval alert of a subscription that fails (continuous refresh).
const SUBSCRIPTION_ALERT: &str = "subscription_error";
/// How much of the sync instance's log is searched for why it does not stream.
const LOG_TAIL_BYTES: u64 = 16 * 1024;

/// What the sync instance is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncKind {
    /// Physical mode: a standby; its replay status is read.
    #[default]
    Standby,
    /// Continuous refresh: a primary with subscriptions; their apply workers are read.
    Subscriber,
}

/// How the sync instance runs: `[retrieval.physical.sync]` or `[retrieval.continuous.sync]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncSettings {
    /// Whether the engine runs the sync instance at all.
    pub enabled: bool,
    /// How often it is checked (restarted when down) and its replay status read.
    pub health_interval: Duration,
    /// Settings of the server (e.g. `shared_buffers`), applied after Scion's.
    pub configs: BTreeMap<String, String>,
    /// A standby or a subscriber.
    pub kind: SyncKind,
}

impl Default for SyncSettings {
    fn default() -> Self {
        SyncSettings {
            enabled: true,
            health_interval: DEFAULT_HEALTH_INTERVAL,
            configs: BTreeMap::new(),
            kind: SyncKind::Standby,
        }
    }
}

impl SyncSettings {
    /// Checks what types alone cannot: a usable interval, and settings Scion may write.
    pub fn validate(&self) -> Result<()> {
        if self.health_interval.is_zero() {
            return Err(Error::InvalidInput(
                "retrieval.physical.sync.health_interval must be longer than 0".to_owned(),
            ));
        }
        postgres::conf::check_settings(
            self.configs.iter().map(|(name, value)| (name.as_str(), value.as_str())),
        )
        .map_err(|error| Error::InvalidInput(format!("retrieval.physical.sync.configs: {error}")))
    }
}

/// The record in the store: which dataset the sync instance serves, and how it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SyncRecord {
    dataset: String,
    enabled: bool,
    health_interval_ms: u64,
    configs: BTreeMap<String, String>,
    /// Absent in records written before continuous refresh existed: a standby.
    #[serde(default)]
    kind: SyncKind,
}

impl SyncRecord {
    fn settings(&self) -> SyncSettings {
        SyncSettings {
            enabled: self.enabled,
            health_interval: Duration::from_millis(self.health_interval_ms),
            configs: self.configs.clone(),
            kind: self.kind,
        }
    }
}

/// DBLab's status codes of the sync instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncCode {
    /// Replaying, and streaming from the source when it is set up to.
    Ok,
    /// Being started, or catching up with the source.
    Starting,
    /// Not running.
    Down,
    /// Running, but not following the source (unreachable, promoted) or not answering.
    Error,
    /// No sync instance: not physical mode, or disabled.
    NotAvailable,
}

impl SyncCode {
    /// DBLab's wire value, also the `status` label of `dblab_sync_status`.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncCode::Ok => "OK",
            SyncCode::Starting => "Starting",
            SyncCode::Down => "Down",
            SyncCode::Error => "Error",
            SyncCode::NotAvailable => "Not available",
        }
    }
}

/// The sync instance as the last supervision pass saw it, for `/status` and `/metrics`.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncView {
    /// The status code.
    pub code: SyncCode,
    /// What is wrong, or what it is doing; empty when all is well.
    pub message: String,
    /// The golden dataset it runs on.
    pub dataset: Option<String>,
    /// The postmaster's PID on the host, while it runs.
    pub pid: Option<u32>,
    /// When the server started.
    pub started_at: Option<DateTime<Utc>>,
    /// The last replayed WAL position.
    pub last_replayed_lsn: Option<String>,
    /// The commit time of the last replayed transaction.
    pub last_replayed_at: Option<DateTime<Utc>>,
    /// Seconds behind the source: 0 when everything received is replayed while streaming,
    /// else the time since the last replayed commit.
    pub replication_lag: i64,
    /// Seconds since the server started.
    pub replication_uptime: i64,
    /// When this was read.
    pub checked_at: Option<DateTime<Utc>>,
}

impl SyncView {
    fn not_available() -> SyncView {
        SyncView::with(SyncCode::NotAvailable, String::new(), None)
    }

    fn with(code: SyncCode, message: String, dataset: Option<String>) -> SyncView {
        SyncView {
            code,
            message,
            dataset,
            pid: None,
            started_at: None,
            last_replayed_lsn: None,
            last_replayed_at: None,
            replication_lag: 0,
            replication_uptime: 0,
            checked_at: Some(Utc::now()),
        }
    }

    /// Whether a sync instance is configured (physical mode), running or not.
    pub fn is_configured(&self) -> bool {
        self.code != SyncCode::NotAvailable
    }
}

/// The running server and an admin session kept between passes.
#[derive(Debug)]
struct Running {
    instance: Instance,
    admin: Option<Admin>,
}

/// The sync instance component.
#[derive(Debug)]
pub(crate) struct Standby {
    /// The store's record, copied in memory (written to the store first).
    record: RwLock<Option<SyncRecord>>,
    /// The server; a Tokio mutex because a pass holds it while the server starts or stops,
    /// which also makes passes one at a time.
    running: tokio::sync::Mutex<Option<Running>>,
    view: RwLock<SyncView>,
}

impl Default for Standby {
    fn default() -> Self {
        Standby {
            record: RwLock::new(None),
            running: tokio::sync::Mutex::new(None),
            view: RwLock::new(SyncView::not_available()),
        }
    }
}

fn to_utc(time: std::time::SystemTime) -> DateTime<Utc> {
    DateTime::<Utc>::from(time)
}

/// The last [`LOG_TAIL_BYTES`] of the sync instance's log, where the reason it does not follow
/// the source is.
fn log_tail(log: &Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(log).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES))).ok()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// Why a standby that should stream does not: the last connection error in its log.
fn last_receiver_error(log: &Path) -> Option<String> {
    let text = log_tail(log)?;
    let line = text.lines().rev().find(|line| {
        line.contains("could not connect to the primary server")
            || line.contains("replication terminated by primary")
            || line.contains("could not receive data from WAL stream")
            || (line.contains("FATAL:") && line.contains("WAL"))
    })?;
    let message = line.split_once("FATAL:").map_or(line, |(_, rest)| rest).trim();
    Some(message.to_owned())
}

/// The code and message of a standby's replay status.
fn judge(status: &ReplayStatus, log: &Path) -> (SyncCode, String) {
    if !status.in_recovery {
        return (
            SyncCode::Error,
            "the sync instance left recovery (promoted): it no longer follows the source"
                .to_owned(),
        );
    }
    let paused = if status.paused { "WAL replay is paused" } else { "" };
    if !status.streams {
        // Archive recovery only (restore_command): nothing to stream from.
        return (SyncCode::Ok, paused.to_owned());
    }
    match &status.receiver {
        None => {
            let why =
                last_receiver_error(log).unwrap_or_else(|| "no WAL receiver is running".to_owned());
            (SyncCode::Error, format!("not streaming from the source: {why}"))
        }
        Some(receiver) => match receiver.status.as_deref() {
            Some("streaming") | None => (SyncCode::Ok, paused.to_owned()),
            Some(state @ ("starting" | "catchup")) => {
                (SyncCode::Starting, format!("the WAL receiver is {state}"))
            }
            Some(state) => (SyncCode::Error, format!("the WAL receiver is {state}")),
        },
    }
}

/// The last apply error of a subscription in the sync instance's log, if any.
fn last_apply_error(log: &Path) -> Option<String> {
    let text = log_tail(log)?;
    let lines: Vec<&str> = text.lines().collect();
    // The ERROR line of a logical replication worker, and its CONTEXT (which names the
    // subscription and the change) when one follows.
    let at = lines.iter().rposition(|line| {
        line.contains("ERROR:")
            && (line.contains("logical replication")
                || line.contains("could not connect to the publisher"))
    })?;
    let mut message =
        lines[at].split_once("ERROR:").map_or(lines[at], |(_, rest)| rest).trim().to_owned();
    if let Some(context) = lines.get(at + 1).and_then(|line| line.split_once("CONTEXT:")) {
        message = format!("{message} ({})", context.1.trim());
    }
    Some(message)
}

/// The code and message of a subscriber sync instance: OK while every subscription is
/// enabled and has its apply worker. DDL is not replicated, so a change the golden copy cannot
/// apply fails the worker, which `disable_on_error` turns into a disabled subscription.
fn judge_subscriber(status: &retrieval::SubscriberStatus, log: &Path) -> (SyncCode, String) {
    if status.subscriptions.is_empty() {
        return (
            SyncCode::Error,
            "the golden copy has no subscription: it does not follow the source".to_owned(),
        );
    }
    let why = || last_apply_error(log).map(|error| format!(": {error}")).unwrap_or_default();
    for subscription in &status.subscriptions {
        if !subscription.enabled {
            return (
                SyncCode::Error,
                format!(
                    "subscription {} is disabled (an apply error disables it; a full refresh starts over){}",
                    subscription.name,
                    why()
                ),
            );
        }
    }
    for subscription in &status.subscriptions {
        if subscription.worker_pid.is_none() {
            return (
                SyncCode::Error,
                format!(
                    "the apply worker of subscription {} is not running{}",
                    subscription.name,
                    why()
                ),
            );
        }
    }
    (SyncCode::Ok, String::new())
}

/// Records in `store` that the sync instance runs on `dataset` with `settings`, and makes the
/// dataset the pool's current data: what [`Engine::start_sync`] records, for an engine that
/// is not running (a golden dataset prepared while it was stopped); its next start runs the
/// sync instance.
pub fn record_sync(store: &Store, dataset: &DatasetName, settings: &SyncSettings) -> Result<()> {
    write_record(store, dataset, settings).map(|_| ())
}

fn write_record(
    store: &Store,
    dataset: &DatasetName,
    settings: &SyncSettings,
) -> Result<SyncRecord> {
    settings.validate()?;
    let record = SyncRecord {
        dataset: dataset.to_string(),
        enabled: settings.enabled,
        health_interval_ms: u64::try_from(settings.health_interval.as_millis()).unwrap_or(u64::MAX),
        configs: settings.configs.clone(),
        kind: settings.kind,
    };
    let text = serde_json::to_string(&record)
        .map_err(|error| Error::InvalidInput(format!("sync settings: {error}")))?;
    store.set_meta(SYNC_KEY, &text)?;
    store.set_meta(CURRENT_DATA_KEY, dataset.as_str())?;
    Ok(record)
}

impl Engine {
    /// Makes `dataset` the pool's current data and runs the sync instance on it: adopts the
    /// server already running there, or starts it and waits until it accepts connections.
    /// A sync instance running on another dataset (the data a refresh replaced) is stopped
    /// first. The dataset's PGDATA must be a standby made by the copy tool.
    pub async fn start_sync(&self, dataset: &DatasetName, settings: SyncSettings) -> Result<()> {
        let record = write_record(&self.inner.store, dataset, &settings)?;
        *write(&self.inner.standby.record) = Some(record);
        self.supervise_sync().await;
        let view = self.sync_status();
        match view.code {
            SyncCode::Down => {
                Err(Error::Refused(format!("the sync instance did not start: {}", view.message)))
            }
            _ => Ok(()),
        }
    }

    /// Stops the sync instance and forgets it: the dataset stays the current data, with no
    /// server on it. Used when retrieval is replaced, and on request.
    pub async fn stop_sync(&self) -> Result<()> {
        let mut running = self.inner.standby.running.lock().await;
        let record = read(&self.inner.standby.record).clone();
        self.inner.store.delete_meta(SYNC_KEY)?;
        *write(&self.inner.standby.record) = None;
        let instance = match running.take() {
            Some(held) => Some(held.instance),
            // Not held (no pass has run since the engine started, or adopting it failed): the
            // server found on the dataset, if one runs.
            None => match record.and_then(|record| DatasetName::new(record.dataset).ok()) {
                Some(dataset) => {
                    self.inner.servers.adopt_sync(&self.inner.pool.pgdata_of(&dataset)).await
                }
                None => None,
            },
        };
        if let Some(instance) = instance {
            self.inner.servers.stop_sync(instance).await?;
        }
        *write(&self.inner.standby.view) = SyncView::not_available();
        Ok(())
    }

    /// The sync instance as the last pass saw it, from memory.
    pub fn sync_status(&self) -> SyncView {
        read(&self.inner.standby.view).clone()
    }

    /// The sync instance's settings, if one is recorded.
    pub fn sync_settings(&self) -> Option<SyncSettings> {
        read(&self.inner.standby.record).as_ref().map(SyncRecord::settings)
    }

    /// The dataset the sync instance serves, for reconciliation.
    pub(crate) fn sync_dataset(&self) -> Option<String> {
        read(&self.inner.standby.record).as_ref().map(|record| record.dataset.clone())
    }

    /// Loads the record at start; a record the store cannot parse is reported and ignored.
    pub(crate) fn load_sync_record(&self) -> Result<()> {
        let Some(text) = self.inner.store.meta(SYNC_KEY)? else { return Ok(()) };
        match serde_json::from_str::<SyncRecord>(&text) {
            Ok(record) => {
                *write(&self.inner.standby.view) =
                    SyncView::with(SyncCode::Starting, String::new(), Some(record.dataset.clone()));
                *write(&self.inner.standby.record) = Some(record);
            }
            Err(error) => warn!(error = %error, "ignoring an unreadable sync instance record"),
        }
        Ok(())
    }

    /// How long until the next supervision pass.
    pub(crate) fn sync_health_interval(&self) -> Duration {
        read(&self.inner.standby.record)
            .as_ref()
            .map_or(DEFAULT_HEALTH_INTERVAL, |record| {
                Duration::from_millis(record.health_interval_ms)
            })
            .max(Duration::from_millis(100))
    }

    /// One supervision pass: brings the server in line with the record (started, adopted,
    /// restarted after it died, stopped when disabled or replaced) and reads its status.
    pub(crate) async fn supervise_sync(&self) {
        let mut running = self.inner.standby.running.lock().await;
        let record = read(&self.inner.standby.record).clone();
        let Some(record) = record.filter(|record| record.enabled) else {
            if let Some(held) = running.take() {
                info!("sync instance disabled: stopping it");
                if let Err(error) = self.inner.servers.stop_sync(held.instance).await {
                    warn!(error = %error, "failed to stop the sync instance");
                }
            }
            *write(&self.inner.standby.view) = SyncView::not_available();
            return;
        };
        let dataset = match DatasetName::new(record.dataset.clone()) {
            Ok(dataset) => dataset,
            Err(error) => {
                self.set_sync_view(SyncView::with(
                    SyncCode::Error,
                    format!("the recorded dataset is not valid: {error}"),
                    Some(record.dataset.clone()),
                ));
                return;
            }
        };
        let pgdata = self.inner.pool.pgdata_of(&dataset);
        if let Some(held) = running.take_if(|held| held.instance.spec().data_dir != pgdata) {
            info!(data_dir = %held.instance.spec().data_dir.display(), "stopping the sync instance of replaced data");
            if let Err(error) = self.inner.servers.stop_sync(held.instance).await {
                warn!(error = %error, "failed to stop the sync instance of replaced data");
            }
        }
        if let Some(held) = running.take_if(|held| !held.instance.is_running()) {
            warn!(
                pid = held.instance.pid(),
                "the sync instance's server exited; starting it again"
            );
        }
        if running.is_none() {
            let instance = match self.inner.servers.adopt_sync(&pgdata).await {
                Some(instance) => instance,
                None => {
                    let mut view = SyncView::with(
                        SyncCode::Starting,
                        String::new(),
                        Some(record.dataset.clone()),
                    );
                    view.replication_lag = self.sync_status().replication_lag;
                    self.set_sync_view(view);
                    let restore_dirs = self.sync_restore_dirs();
                    match self
                        .inner
                        .servers
                        .start_sync(&pgdata, &record.configs, &restore_dirs)
                        .await
                    {
                        Ok(instance) => {
                            info!(pid = instance.pid(), %dataset, "sync instance started");
                            instance
                        }
                        Err(error) => {
                            warn!(error = %error, %dataset, "the sync instance failed to start");
                            self.set_sync_view(SyncView::with(
                                SyncCode::Down,
                                error.to_string(),
                                Some(record.dataset.clone()),
                            ));
                            return;
                        }
                    }
                }
            };
            *running = Some(Running { instance, admin: None });
        }
        let Some(held) = running.as_mut() else { return };
        let view = self.read_sync(held, &record.dataset, record.kind).await;
        self.set_sync_view(view);
    }

    fn set_sync_view(&self, view: SyncView) {
        *write(&self.inner.standby.view) = view;
    }

    async fn read_sync(&self, held: &mut Running, dataset: &str, kind: SyncKind) -> SyncView {
        let pid = held.instance.pid();
        let admin = match held.admin.take().filter(|admin| !admin.is_closed()) {
            Some(admin) => Ok(admin),
            None => held.instance.admin().await,
        };
        if kind == SyncKind::Subscriber {
            let status = match admin {
                Ok(admin) => {
                    let status = retrieval::subscription_status(admin.client())
                        .await
                        .map_err(|error| error.to_string());
                    held.admin = Some(admin);
                    status
                }
                Err(error) => Err(error.to_string()),
            };
            return self.subscriber_view(status, pid, dataset, held);
        }
        let status = match admin {
            Ok(admin) => {
                let status = admin.replay_status().await;
                held.admin = Some(admin);
                status
            }
            Err(error) => Err(error),
        };
        match status {
            Ok(status) => {
                let (code, message) = judge(&status, &self.inner.servers.sync_log_file());
                SyncView {
                    code,
                    message,
                    dataset: Some(dataset.to_owned()),
                    pid: Some(pid),
                    started_at: Some(to_utc(status.started_at)),
                    last_replayed_lsn: status.replay_lsn.map(|lsn| lsn.to_string()),
                    last_replayed_at: status.last_replayed_at.map(to_utc),
                    replication_lag: status.lag_seconds.max(0),
                    replication_uptime: status.uptime_seconds.max(0),
                    checked_at: Some(Utc::now()),
                }
            }
            Err(error) => self.unanswered(&error.to_string(), pid, dataset, held),
        }
    }

    /// The view of a sync instance that did not answer its status query.
    fn unanswered(&self, error: &str, pid: u32, dataset: &str, held: &mut Running) -> SyncView {
        held.admin = None;
        let mut view = SyncView::with(
            SyncCode::Error,
            format!("the sync instance does not answer: {error}"),
            Some(dataset.to_owned()),
        );
        view.pid = Some(pid);
        view
    }

    /// The view of a subscriber sync instance; a failing subscription is also the retrieval
    /// alert `subscription_error` until it is well again.
    fn subscriber_view(
        &self,
        status: std::result::Result<retrieval::SubscriberStatus, String>,
        pid: u32,
        dataset: &str,
        held: &mut Running,
    ) -> SyncView {
        let status = match status {
            Ok(status) => status,
            Err(error) => return self.unanswered(&error, pid, dataset, held),
        };
        let (code, message) = judge_subscriber(&status, &self.inner.servers.sync_log_file());
        {
            let mut refresh = self.refresh_state();
            if code == SyncCode::Error {
                refresh.alert(SUBSCRIPTION_ALERT, "error", message.clone());
            } else {
                refresh.alerts.remove(SUBSCRIPTION_ALERT);
            }
        }
        let subscriptions = &status.subscriptions;
        let now = Utc::now();
        SyncView {
            code,
            message,
            dataset: Some(dataset.to_owned()),
            pid: Some(pid),
            started_at: Some(status.started_at),
            // The least advanced subscription is how far the golden copy is.
            last_replayed_lsn: subscriptions
                .iter()
                .filter_map(|subscription| subscription.received_lsn.as_deref())
                .filter_map(|lsn| lsn.parse::<postgres::Lsn>().ok())
                .min()
                .map(|lsn| lsn.to_string()),
            last_replayed_at: subscriptions
                .iter()
                .filter_map(|subscription| subscription.last_message_sent_at)
                .min(),
            replication_lag: subscriptions
                .iter()
                .map(retrieval::SubscriptionStatus::lag_seconds)
                .max()
                .unwrap_or(0),
            replication_uptime: (now - status.started_at).num_seconds().max(0),
            checked_at: Some(now),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use postgres::WalReceiver;

    use super::*;

    fn replaying() -> ReplayStatus {
        ReplayStatus {
            in_recovery: true,
            receive_lsn: None,
            replay_lsn: None,
            last_replayed_at: None,
            lag_seconds: 0,
            started_at: SystemTime::UNIX_EPOCH,
            uptime_seconds: 0,
            streams: true,
            receiver: Some(WalReceiver { pid: 7, status: Some("streaming".to_owned()) }),
            paused: false,
        }
    }

    #[test]
    fn judges_a_standby_by_its_receiver() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sync.log");
        assert_eq!(judge(&replaying(), &log), (SyncCode::Ok, String::new()));
        let paused = ReplayStatus { paused: true, ..replaying() };
        assert_eq!(judge(&paused, &log), (SyncCode::Ok, "WAL replay is paused".to_owned()));
        let catching_up = ReplayStatus {
            receiver: Some(WalReceiver { pid: 7, status: Some("catchup".to_owned()) }),
            ..replaying()
        };
        assert_eq!(judge(&catching_up, &log).0, SyncCode::Starting);
        let archive_only = ReplayStatus { streams: false, receiver: None, ..replaying() };
        assert_eq!(judge(&archive_only, &log).0, SyncCode::Ok);
        let promoted = ReplayStatus { in_recovery: false, ..replaying() };
        assert_eq!(judge(&promoted, &log).0, SyncCode::Error);

        let cut_off = ReplayStatus { receiver: None, ..replaying() };
        assert_eq!(
            judge(&cut_off, &log),
            (
                SyncCode::Error,
                "not streaming from the source: no WAL receiver is running".to_owned()
            )
        );
        std::fs::write(
            &log,
            "2026-12-02 19:46:18.685 UTC [1] LOG:  database system is ready\n\
             2026-12-02 19:46:18.706 UTC [5] FATAL:  could not connect to the primary server: \
             connection to server at \"127.0.0.1\", port 5433 failed: Connection refused\n\
             2026-12-02 19:46:18.712 UTC [4] LOG:  waiting for WAL to become available at 0/3000018\n",
        )
        .unwrap();
        assert_eq!(
            judge(&cut_off, &log).1,
            "not streaming from the source: could not connect to the primary server: connection \
             to server at \"127.0.0.1\", port 5433 failed: Connection refused"
        );
    }

    fn subscription(
        name: &str,
        enabled: bool,
        worker: Option<i32>,
    ) -> retrieval::SubscriptionStatus {
        retrieval::SubscriptionStatus {
            name: name.to_owned(),
            enabled,
            worker_pid: worker,
            received_lsn: Some("0/3000060".to_owned()),
            last_message_sent_at: None,
            last_message_received_at: None,
        }
    }

    #[test]
    fn judges_a_subscriber_by_its_subscriptions() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sync.log");
        let status =
            |subscriptions| retrieval::SubscriberStatus { started_at: Utc::now(), subscriptions };
        let well = status(vec![subscription("a", true, Some(7)), subscription("b", true, Some(8))]);
        assert_eq!(judge_subscriber(&well, &log), (SyncCode::Ok, String::new()));
        assert_eq!(judge_subscriber(&status(Vec::new()), &log).0, SyncCode::Error);
        let stopped = status(vec![subscription("a", true, Some(7)), subscription("b", true, None)]);
        assert_eq!(
            judge_subscriber(&stopped, &log),
            (SyncCode::Error, "the apply worker of subscription b is not running".to_owned())
        );
        std::fs::write(
            &log,
            "2026-12-03 04:10:00.000 UTC [9] LOG:  logical replication apply worker for subscription \"a\" has started\n\
             2026-12-03 04:10:01.000 UTC [9] ERROR:  logical replication target relation \"public.facts\" is missing replicated column: \"extra\"\n\
             2026-12-03 04:10:01.000 UTC [9] CONTEXT:  processing remote data for replication origin \"pg_16390\" during message type \"INSERT\"\n\
             2026-12-03 04:10:01.000 UTC [9] LOG:  subscription \"a\" has been disabled because of an error\n",
        )
        .unwrap();
        let disabled = status(vec![subscription("a", false, None)]);
        let (code, message) = judge_subscriber(&disabled, &log);
        assert_eq!(code, SyncCode::Error);
        assert!(message.starts_with("subscription a is disabled"), "{message}");
        assert!(
            message.ends_with(
                ": logical replication target relation \"public.facts\" is missing replicated column: \"extra\" (processing remote data for replication origin \"pg_16390\" during message type \"INSERT\")"
            ),
            "{message}"
        );
    }

    #[test]
    fn a_subscriptions_lag_is_the_stream_behind_the_worker() {
        let sent = Utc::now();
        let mut lagging = subscription("a", true, Some(7));
        assert_eq!(lagging.lag_seconds(), 0);
        lagging.last_message_sent_at = Some(sent);
        lagging.last_message_received_at = Some(sent + chrono::Duration::seconds(12));
        assert_eq!(lagging.lag_seconds(), 12);
        lagging.last_message_received_at = Some(sent - chrono::Duration::seconds(3));
        assert_eq!(lagging.lag_seconds(), 0, "a clock ahead on the source is no lag");
    }

    #[test]
    fn settings_are_checked() {
        assert!(SyncSettings::default().validate().is_ok());
        let zero = SyncSettings { health_interval: Duration::ZERO, ..SyncSettings::default() };
        assert!(zero.validate().unwrap_err().to_string().contains("health_interval"));
        let reserved = SyncSettings {
            configs: [("port".to_owned(), "1".to_owned())].into(),
            ..SyncSettings::default()
        };
        assert!(reserved.validate().unwrap_err().to_string().contains("port"));
    }
}
